//! PKCE (RFC 7636, S256) and OAuth state for the browser login.

use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

/// RFC 7636 §4.1: `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/// A fresh code verifier: 64 unreserved characters from the OS-seeded CSPRNG.
pub fn verifier() -> Secret {
    let mut rng = rand::rng();
    let v: String = (0..64)
        .map(|_| UNRESERVED[rng.random_range(0..UNRESERVED.len())] as char)
        .collect();
    Secret::new(v)
}

/// `BASE64URL(SHA256(verifier))` without padding.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh state: 32 random bytes, base64url (43 characters).
pub fn state() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Is this something [`state`] could have produced (so it can be a cache key)?
pub fn is_valid_state(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `{app_url}/oauth2/authorize?...` with S256.
pub fn authorize_url(
    app_url: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    state: &str,
    challenge: &str,
) -> String {
    let mut url = match reqwest::Url::parse(&format!("{app_url}/oauth2/authorize")) {
        Ok(u) => u,
        Err(_) => return format!("{app_url}/oauth2/authorize"),
    };
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("version", "2021-08-11~experimental");
        q.append_pair("response_type", "code");
        q.append_pair("client_id", client_id);
        q.append_pair("redirect_uri", redirect_uri);
        if !scopes.is_empty() {
            q.append_pair("scope", &scopes.join(" "));
        }
        q.append_pair("state", state);
        q.append_pair("code_challenge", challenge);
        q.append_pair("code_challenge_method", "S256");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636: 43–128 characters of the unreserved alphabet.
    fn is_valid_verifier(v: &str) -> bool {
        (43..=128).contains(&v.len()) && v.bytes().all(|b| UNRESERVED.contains(&b))
    }

    #[test]
    fn rfc7636_appendix_b_test_vector() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_unreserved_43_to_128_and_differ() {
        let a = verifier();
        let b = verifier();
        assert!(is_valid_verifier(a.expose()) && is_valid_verifier(b.expose()));
        assert_ne!(a.expose(), b.expose());
        assert!(!is_valid_verifier("short"));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(50))));
    }

    #[test]
    fn states_are_random_and_checkable() {
        let s = state();
        assert!(is_valid_state(&s));
        assert_ne!(s, state());
        assert!(!is_valid_state("../../etc"));
    }

    #[test]
    fn authorize_url_carries_s256_and_no_secret() {
        // A real verifier: the URL carries its S256 challenge, never the
        // verifier itself, and no parameter beyond the authorization request's.
        let v = verifier();
        let ch = challenge(v.expose());
        let u = authorize_url(
            "https://app.eu.snyk.io",
            "cid",
            "http://127.0.0.1:8080/authorization-code/callback",
            &["org.read".into()],
            "st",
            &ch,
        );
        assert!(!u.contains(v.expose()), "the verifier is in the URL: {u}");
        let query = u.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut names: Vec<&str> = query
            .split('&')
            .map(|p| p.split('=').next().unwrap_or(""))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "client_id",
                "code_challenge",
                "code_challenge_method",
                "redirect_uri",
                "response_type",
                "scope",
                "state",
                "version"
            ],
            "{u}"
        );
        assert!(u.contains(&format!("code_challenge={ch}")), "{u}");
        assert!(u.starts_with("https://app.eu.snyk.io/oauth2/authorize?"));
        for part in [
            "response_type=code",
            "client_id=cid",
            "code_challenge_method=S256",
            "state=st",
            "scope=org.read",
        ] {
            assert!(u.contains(part), "{u}");
        }
        assert!(
            u.contains(
                "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fauthorization-code%2Fcallback"
            ),
            "{u}"
        );
    }
}

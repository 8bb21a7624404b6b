//! The simulated Snyk's OAuth authority: its clients, the tokens it issued
//! and the rules it enforces, with no I/O (the HTTP front is `dev::server`;
//! the test suite's fake Snyk wraps the same type with fault injection and
//! counters).
//!
//! It is as strict as Snyk where snykey's correctness depends on it:
//!
//! * a refresh token works **once**: the grant that accepts it kills it and
//!   issues a successor; sending it again is `invalid_grant` (and reported
//!   as [`Refusal::AlreadyUsed`], so a caller can count replays);
//! * an authorization code works once, only for the client and redirect URI
//!   it was issued to, and only with the PKCE verifier whose S256 challenge
//!   the authorize request carried (43–128 characters);
//! * a confidential client authenticates with its secret on every grant;
//! * an access token is accepted until it expires.
//!
//! Errors are OAuth error bodies (`{"error", "error_description"}`) with
//! Snyk's statuses: 400 for a bad grant, 401 for failed client
//! authentication.

use base64::Engine;
use rand::Rng;
use sha2::Digest;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// An OAuth client (a Snyk App or a service account) the authority knows.
#[derive(Debug, Clone)]
pub struct Client {
    /// `None`: a public client (no secret to check).
    pub secret: Option<String>,
    /// `None`: any loopback redirect URI is accepted (Snyk's CLI apps
    /// register a set of them); `Some`: exactly these.
    pub redirect_uris: Option<Vec<String>>,
}

/// A refresh token the authority issued.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub client_id: String,
    pub revoked: bool,
    /// The grant that consumed it; `Some` means it is dead.
    pub grant: Option<Grant>,
}

impl RefreshToken {
    /// Issued, not yet consumed, not revoked.
    pub fn alive(&self) -> bool {
        self.grant.is_none() && !self.revoked
    }
}

/// One refresh grant: what it issued, and when.
#[derive(Debug, Clone)]
pub struct Grant {
    pub successor: String,
    pub access_token: String,
    pub at: Instant,
}

/// A successful token answer.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    /// Set for the refresh and authorization code grants.
    pub refresh_token: Option<String>,
    pub expires_in: u64,
}

impl Issued {
    /// The token endpoint's JSON body, as Snyk sends it.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": "org.read",
        });
        if let Some(rt) = &self.refresh_token {
            body["refresh_token"] = rt.as_str().into();
            body["refresh_expires_in"] = 7_776_000.into();
        }
        body
    }
}

/// Why a request was refused: an OAuth error answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The client is unknown or its secret is wrong (401 `invalid_client`).
    BadClient,
    /// A confidential client's request without `client_secret`: malformed,
    /// as Snyk answers it (400 `invalid_request`, "missing parameter
    /// client_secret"). Nothing is consumed.
    MissingSecret,
    /// A refresh token sent again after a grant consumed it (400
    /// `invalid_grant`): with Snyk, the account now needs a new login.
    AlreadyUsed { client_id: String },
    /// An authorization code sent again (400 `invalid_grant`).
    CodeAlreadyUsed,
    /// Any other refusal: (status, OAuth `error`, description).
    Other(u16, &'static str, String),
}

impl Refusal {
    fn grant(description: &str) -> Refusal {
        Refusal::Other(400, "invalid_grant", description.to_string())
    }

    /// The HTTP status and the OAuth error body.
    pub fn answer(&self) -> (u16, serde_json::Value) {
        let (status, error, description) = match self {
            Refusal::BadClient => (401, "invalid_client", "authentication failed".to_string()),
            Refusal::MissingSecret => (
                400,
                "invalid_request",
                "missing parameter client_secret".to_string(),
            ),
            Refusal::AlreadyUsed { .. } => (
                400,
                "invalid_grant",
                "refresh token already used".to_string(),
            ),
            Refusal::CodeAlreadyUsed => (
                400,
                "invalid_grant",
                "authorization code already used".to_string(),
            ),
            Refusal::Other(s, e, d) => (*s, *e, d.clone()),
        };
        (
            status,
            serde_json::json!({"error": error, "error_description": description}),
        )
    }
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    challenge: String,
    redirect_uri: String,
    used: bool,
}

/// The simulated authority.
#[derive(Debug)]
pub struct Authority {
    pub clients: HashMap<String, Client>,
    pub refresh: HashMap<String, RefreshToken>,
    /// access token → (client id, expiry).
    pub access: HashMap<String, (String, SystemTime)>,
    codes: HashMap<String, Code>,
    /// Lifetime of the access tokens it issues.
    pub expires_in: u64,
    /// Length of issued access tokens; 0: 43 characters (Snyk's are JWTs
    /// of about a kilobyte; benchmarks ask for that).
    pub access_token_len: usize,
}

impl Default for Authority {
    fn default() -> Authority {
        Authority {
            clients: HashMap::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            codes: HashMap::new(),
            expires_in: 3600,
            access_token_len: 0,
        }
    }
}

/// `prefix` and `len` random alphanumerics.
pub fn random_token(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    let body: String = (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{body}")
}

/// What an authorize request is answered with: a redirect to the client's
/// callback (`Location`), or an error page when the request cannot even be
/// redirected (unknown client, unregistered redirect URI).
#[derive(Debug, Clone, PartialEq)]
pub enum Authorized {
    Redirect(String),
    Refused(Refusal),
}

impl Authority {
    /// Registers a client (replacing one of the same id).
    pub fn register(&mut self, client_id: &str, secret: Option<&str>) {
        self.clients.insert(
            client_id.to_string(),
            Client {
                secret: secret.map(str::to_string),
                redirect_uris: None,
            },
        );
    }

    /// A live refresh token for `client_id`, as a completed login leaves one.
    pub fn issue_refresh_token(&mut self, client_id: &str) -> String {
        let rt = random_token("rt_", 40);
        self.refresh.insert(
            rt.clone(),
            RefreshToken {
                client_id: client_id.to_string(),
                revoked: false,
                grant: None,
            },
        );
        rt
    }

    /// A new access token for `client_id`, valid for `expires_in` seconds.
    pub fn issue_access_token(&mut self, client_id: &str) -> String {
        let at = match self.access_token_len {
            0 => random_token("at_", 40),
            n => random_token("at_", n.saturating_sub(3)),
        };
        let expiry = SystemTime::now() + Duration::from_secs(self.expires_in);
        self.access
            .insert(at.clone(), (client_id.to_string(), expiry));
        at
    }

    /// Is this access token one the authority issued and still accepts?
    pub fn access_token_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|(_, exp)| *exp > SystemTime::now())
    }

    /// Checks a confidential client's secret (a public client has none).
    pub fn authenticate(&self, client_id: &str, secret: Option<&str>) -> Result<(), Refusal> {
        match self.clients.get(client_id) {
            None => Err(Refusal::BadClient),
            Some(Client {
                secret: Some(_), ..
            }) if secret.is_none() => Err(Refusal::MissingSecret),
            Some(Client {
                secret: Some(expected),
                ..
            }) if secret != Some(expected.as_str()) => Err(Refusal::BadClient),
            Some(_) => Ok(()),
        }
    }

    /// `grant_type=refresh_token`: consumes `rt` and issues its successor.
    /// The client must already be authenticated.
    pub fn refresh(&mut self, client_id: &str, rt: &str) -> Result<Issued, Refusal> {
        let Some(state) = self.refresh.get(rt) else {
            return Err(Refusal::grant("unknown refresh token"));
        };
        if state.client_id != client_id {
            return Err(Refusal::grant("refresh token issued to another client"));
        }
        if state.revoked {
            return Err(Refusal::grant("refresh token revoked"));
        }
        if state.grant.is_some() {
            return Err(Refusal::AlreadyUsed {
                client_id: client_id.to_string(),
            });
        }
        let successor = self.issue_refresh_token(client_id);
        let access_token = self.issue_access_token(client_id);
        if let Some(r) = self.refresh.get_mut(rt) {
            r.grant = Some(Grant {
                successor: successor.clone(),
                access_token: access_token.clone(),
                at: Instant::now(),
            });
        }
        Ok(Issued {
            access_token,
            refresh_token: Some(successor),
            expires_in: self.expires_in,
        })
    }

    /// `grant_type=client_credentials` for an authenticated client.
    pub fn client_credentials(&mut self, client_id: &str) -> Issued {
        Issued {
            access_token: self.issue_access_token(client_id),
            refresh_token: None,
            expires_in: self.expires_in,
        }
    }

    /// Revokes a refresh token (`/oauth2/revoke`); unknown tokens are ignored.
    pub fn revoke(&mut self, rt: &str) {
        if let Some(r) = self.refresh.get_mut(rt) {
            r.revoked = true;
        }
    }

    /// `GET /oauth2/authorize` with `consent` given at once (or refused by
    /// the user when `false`): the redirect back to the client's callback.
    pub fn authorize(&mut self, query: &HashMap<String, String>, consent: bool) -> Authorized {
        let get = |k: &str| query.get(k).cloned().unwrap_or_default();
        let (client_id, redirect_uri, state) =
            (get("client_id"), get("redirect_uri"), get("state"));
        let Some(client) = self.clients.get(&client_id) else {
            return Authorized::Refused(Refusal::Other(
                400,
                "invalid_client",
                "unknown client".into(),
            ));
        };
        let allowed = match &client.redirect_uris {
            Some(list) => list.contains(&redirect_uri),
            None => is_loopback_redirect(&redirect_uri),
        };
        if !allowed {
            return Authorized::Refused(Refusal::Other(
                400,
                "invalid_request",
                "redirect_uri is not registered".into(),
            ));
        }
        if get("response_type") != "code"
            || get("code_challenge_method") != "S256"
            || get("code_challenge").len() != 43
            || state.is_empty()
        {
            return Authorized::Refused(Refusal::Other(
                400,
                "invalid_request",
                "PKCE S256, response_type=code and state are required".into(),
            ));
        }
        let query = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
        if !consent {
            return Authorized::Redirect(format!(
                "{redirect_uri}?{}",
                query(&[
                    ("error", "access_denied"),
                    ("error_description", "The user denied access"),
                    ("state", &state),
                ])
            ));
        }
        let code = random_token("code_", 40);
        self.codes.insert(
            code.clone(),
            Code {
                client_id,
                challenge: get("code_challenge"),
                redirect_uri: redirect_uri.clone(),
                used: false,
            },
        );
        Authorized::Redirect(format!(
            "{redirect_uri}?{}",
            query(&[("code", &code), ("state", &state)])
        ))
    }

    /// `grant_type=authorization_code`: a code works once, for the client
    /// and redirect URI it was issued to, with the PKCE verifier of its
    /// challenge. The client must already be authenticated.
    pub fn exchange_code(
        &mut self,
        client_id: &str,
        form: &HashMap<String, String>,
    ) -> Result<Issued, Refusal> {
        let code = form.get("code").cloned().unwrap_or_default();
        let Some(info) = self.codes.get(&code).cloned() else {
            return Err(Refusal::grant("unknown authorization code"));
        };
        if info.used {
            return Err(Refusal::CodeAlreadyUsed);
        }
        if info.client_id != client_id {
            return Err(Refusal::grant("code issued to another client"));
        }
        if form.get("redirect_uri") != Some(&info.redirect_uri) {
            return Err(Refusal::grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = form.get("code_verifier").map(String::as_str).unwrap_or("");
        if !pkce_s256_matches(verifier, &info.challenge) {
            return Err(Refusal::grant("PKCE verification failed"));
        }
        if let Some(c) = self.codes.get_mut(&code) {
            c.used = true;
        }
        let refresh_token = self.issue_refresh_token(client_id);
        Ok(Issued {
            access_token: self.issue_access_token(client_id),
            refresh_token: Some(refresh_token),
            expires_in: self.expires_in,
        })
    }

    /// The token endpoint for the grants a Snyk App and a client-secret
    /// service account use: the client authenticated by its secret, then
    /// `refresh_token`, `authorization_code` or `client_credentials`.
    pub fn token(&mut self, form: &HashMap<String, String>) -> Result<Issued, Refusal> {
        let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
        self.authenticate(client_id, form.get("client_secret").map(String::as_str))?;
        match form.get("grant_type").map(String::as_str).unwrap_or("") {
            "refresh_token" => {
                let rt = form.get("refresh_token").map(String::as_str).unwrap_or("");
                self.refresh(client_id, rt)
            }
            "authorization_code" => self.exchange_code(client_id, form),
            "client_credentials" => Ok(self.client_credentials(client_id)),
            other => Err(Refusal::Other(
                400,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported"),
            )),
        }
    }
}

/// RFC 7636 S256: `challenge` is the unpadded base64url SHA-256 of a
/// verifier of 43–128 characters.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (43..=128).contains(&verifier.len()) && computed == challenge
}

/// `http://127.0.0.1:PORT/...` or `http://localhost:PORT/...`.
fn is_loopback_redirect(uri: &str) -> bool {
    uri.starts_with("http://127.0.0.1:") || uri.starts_with("http://localhost:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn refresh_form<'a>(rt: &'a str, secret: &'a str) -> HashMap<String, String> {
        form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "app"),
            ("client_secret", secret),
            ("refresh_token", rt),
        ])
    }

    #[test]
    fn a_refresh_token_works_once_and_its_successor_once() {
        let mut a = Authority::default();
        a.register("app", Some("s3cret"));
        let rt = a.issue_refresh_token("app");
        let first = a.token(&refresh_form(&rt, "s3cret")).unwrap();
        assert!(a.access_token_valid(&first.access_token));
        assert_eq!(
            a.token(&refresh_form(&rt, "s3cret")).unwrap_err(),
            Refusal::AlreadyUsed {
                client_id: "app".into()
            }
        );
        let next = first.refresh_token.unwrap();
        assert!(a.token(&refresh_form(&next, "s3cret")).is_ok());
        assert_eq!(
            a.token(&refresh_form(&next, "wrong")).unwrap_err(),
            Refusal::BadClient
        );
        assert!(!a.access_token_valid("at_never_issued"));
    }

    #[test]
    fn a_code_needs_its_pkce_verifier_and_works_once() {
        let mut a = Authority::default();
        a.register("app", Some("s3cret"));
        let verifier = "v".repeat(64);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1:8080/authorization-code/callback";
        let q = form(&[
            ("client_id", "app"),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("code_challenge_method", "S256"),
            ("code_challenge", &challenge),
            ("state", "st"),
        ]);
        let Authorized::Redirect(location) = a.authorize(&q, true) else {
            panic!("no redirect")
        };
        let back: HashMap<String, String> =
            serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
        assert_eq!(back["state"], "st");
        let exchange = |v: &str| {
            form(&[
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("client_secret", "s3cret"),
                ("code", &back["code"]),
                ("redirect_uri", redirect),
                ("code_verifier", v),
            ])
        };
        let wrong = "w".repeat(64);
        assert!(matches!(
            a.token(&exchange(&wrong)),
            Err(Refusal::Other(400, "invalid_grant", _))
        ));
        let issued = a.token(&exchange(&verifier)).unwrap();
        assert!(issued.refresh_token.is_some());
        assert!(a.token(&exchange(&verifier)).is_err(), "a code works once");
        // A plain challenge or another redirect URI is refused up front.
        let mut plain = q.clone();
        plain.insert("code_challenge_method".into(), "plain".into());
        assert!(matches!(a.authorize(&plain, true), Authorized::Refused(_)));
        let mut remote = q.clone();
        remote.insert("redirect_uri".into(), "https://evil.example/cb".into());
        assert!(matches!(a.authorize(&remote, true), Authorized::Refused(_)));
    }
}

//! URLs from configuration and requests, judged by what they parse to.
//!
//! * [`is_loopback_http`] — a redirect URI that can only reach this host: the
//!   URL is parsed and its *host* compared, so `http://127.evil.example/` and
//!   `http://127.0.0.1@evil.example/` (userinfo) are refused, where a string
//!   prefix let them through.
//! * [`redact_password`] — a URL as it may be logged or printed: the password
//!   in its userinfo and every query value that is not known to be harmless
//!   (`redis+unix:///path?pass=…`) replaced by `[redacted]`.
//! * [`shown_value`] — any configuration value as an error message may show
//!   it: as written, except what is secret (URL userinfo, query values, and
//!   text shaped like a token) and except its length beyond one line.
//! * [`SecretUrl`] — a URL that may hold a password, redacted by its type
//!   wherever it is formatted.

use crate::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;

/// True when `u` is an `http://` URL whose host is a loopback address
/// (`127.0.0.0/8`, `[::1]`) or exactly `localhost`, with no userinfo.
///
/// A userinfo part is refused outright: it has no business in a redirect
/// URI, and it is how `http://127.0.0.1@evil.example/` hides its real host.
pub fn is_loopback_http(u: &str) -> bool {
    // The written form too: `http:127.0.0.1/x` parses, but is not what a
    // redirect URI registered at Snyk looks like.
    if !u.starts_with("http://") {
        return false;
    }
    let Ok(parsed) = url::Url::parse(u) else {
        return false;
    };
    if parsed.scheme() != "http" || !parsed.username().is_empty() || parsed.password().is_some() {
        return false;
    }
    match parsed.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        // Exactly `localhost`: not `localhost.` (a search-domain lookup on
        // some resolvers), not `localhost.evil.example`.
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A URL that may carry a password (`cache.url` in every form: `user:pw@`,
/// `?pass=`, `redis+unix://`, Sentinel lists). The type is the redaction:
/// `Display`, `Debug` and `Serialize` (what `check-config` prints) show it
/// through [`redact_password`]; the full text takes an explicit
/// [`SecretUrl::expose`], and the value is zeroized like any [`Secret`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> SecretUrl {
        SecretUrl(Secret::new(url))
    }

    /// The URL with its password. Every call site is a place where it leaves its box.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL as a [`Secret`] (what the Redis client takes).
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// Compares the full text (tests and config checks name addresses as text);
/// nothing is formatted.
impl PartialEq<&str> for SecretUrl {
    fn eq(&self, other: &&str) -> bool {
        self.expose() == *other
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(self.expose()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", redact_password(self.expose()))
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact_password(self.expose()))
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Secret::deserialize(d).map(SecretUrl)
    }
}

/// Query parameters whose values are never secret in the URLs we log
/// (Redis: `db`, `protocol`); every other value is redacted.
const HARMLESS_QUERY_KEYS: &[&str] = &["db", "protocol"];

const REDACTED: &str = "[redacted]";

/// `redis://user:pw@host/0?pass=x` → `redis://user:[redacted]@host/0?pass=[redacted]`.
///
/// Works on the text, not on a parse, because several forms we must redact
/// do not parse as one URL (`redis+sentinel://u:p@h1:1,h2:2/m`). When the
/// text is ambiguous (a `?` before the last `@`: is the `?` in the password or
/// the `@` in the query?) everything after the scheme is redacted.
pub fn redact_password(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(end) => (Some(&url[..end]), &url[end + 3..]),
        // Not a URL (`api.snyk.io`, `htps//api.snyk.io`): shown as written,
        // with whatever could be a user, a password or a query redacted as
        // in a URL (`user:pw@host:6379` is a typo for a Redis URL).
        None => (None, url),
    };
    let prefix = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let at = rest.rfind('@');
    let query_start = rest.find(['?', '#']);
    if let (Some(a), Some(q)) = (at, query_start) {
        if q < a {
            return format!("{prefix}{REDACTED}");
        }
    }
    let mut out = prefix;
    let after_userinfo = match at {
        Some(a) => {
            let userinfo = &rest[..a];
            match userinfo.find(':') {
                Some(c) => {
                    out.push_str(&userinfo[..c]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                // `redis://secret@host`: a lone userinfo may be a password.
                None => out.push_str(REDACTED),
            }
            out.push('@');
            &rest[a + 1..]
        }
        None => rest,
    };
    let (host_path, tail) = match after_userinfo.find(['?', '#']) {
        Some(q) => after_userinfo.split_at(q),
        None => (after_userinfo, ""),
    };
    out.push_str(host_path);
    if tail.is_empty() {
        return out;
    }
    // A fragment has no meaning here; never show it.
    let query = tail
        .strip_prefix('?')
        .map(|q| q.split('#').next().unwrap_or(""));
    let Some(query) = query else {
        out.push('#');
        out.push_str(REDACTED);
        return out;
    };
    out.push('?');
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, _value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode_lossy(key);
            if HARMLESS_QUERY_KEYS
                .iter()
                .any(|k| decoded.eq_ignore_ascii_case(k))
                && pair[key.len()..]
                    .trim_start_matches('=')
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric())
            {
                pair.to_string()
            } else {
                format!("{}={REDACTED}", sanitize_key(key))
            }
        })
        .collect();
    out.push_str(&pairs.join("&"));
    if tail.contains('#') {
        out.push('#');
        out.push_str(REDACTED);
    }
    out
}

/// Values longer than this are described, not quoted: an error stays one line.
const MAX_SHOWN: usize = 120;

/// A configuration value as an error message may show it: as written, so
/// that the operator sees what is wrong with it, except what could be a
/// secret — a URL's password and query values ([`redact_password`]), and a
/// value shaped like a token ([`looks_like_token`]), which is not shown at
/// all. Keys that hold secrets (`store.token`) never show their value; the
/// configuration names them.
pub fn shown_value(value: &str) -> String {
    let shown = redact_tokens(&redact_password(value));
    let n = shown.chars().count();
    if n > MAX_SHOWN {
        format!("(a {n}-character value)")
    } else {
        shown
    }
}

/// Every word of `text` shaped like a token ([`looks_like_token`]) replaced
/// by `[redacted]`: a token with something typed before or after it, or
/// between the slashes of a path or URL, is still found.
fn redact_tokens(text: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || "+/=_.-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_word) {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        let end = word.find(|c: char| !is_word(c)).unwrap_or(word.len());
        if looks_like_token(&word[..end]) {
            out.push_str(REDACTED);
        } else {
            for (i, segment) in word[..end].split('/').enumerate() {
                if i > 0 {
                    out.push('/');
                }
                redact_segment(segment, &mut out);
            }
        }
        rest = &word[end..];
    }
    out.push_str(rest);
    out
}

/// One `/`-free segment, piece by piece between its dots: a token prefix
/// and its body (`hvs` `.` `…`), a JWT's three pieces, or one long piece.
fn redact_segment(segment: &str, out: &mut String) {
    if looks_like_token(segment) {
        out.push_str(REDACTED);
        return;
    }
    let pieces: Vec<&str> = segment.split('.').collect();
    let mut i = 0;
    while i < pieces.len() {
        if i > 0 {
            out.push('.');
        }
        let take = [3, 2, 1]
            .into_iter()
            .find(|n| i + n <= pieces.len() && looks_like_token(&pieces[i..i + n].join(".")));
        match take {
            Some(n) => {
                out.push_str(REDACTED);
                i += n;
            }
            None => {
                out.push_str(pieces[i]);
                i += 1;
            }
        }
    }
}

/// Text shaped like a credential, wherever it was pasted: an OpenBao/Vault
/// token (`hvs.…`, `s.…`), a JWT (`eyJ….….…`), or one long word of base64
/// or hex characters with at least four letters and four digits (a client
/// secret, an API key). A UUID is an id here (org and client ids are UUIDs),
/// not a token; nor is a path or a URL path (`/` and `.` end a word).
pub fn looks_like_token(v: &str) -> bool {
    let word = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b'_' | b'-'))
    };
    for prefix in ["hvs.", "hvb.", "hvr.", "s.", "b.", "r."] {
        if let Some(rest) = v.strip_prefix(prefix) {
            if rest.len() >= 20 && word(rest) {
                return true;
            }
        }
    }
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() == 3 && v.starts_with("eyJ") && v.len() >= 40 && parts.iter().all(|p| word(p)) {
        return true;
    }
    let is_uuid = v.len() == 36
        && v.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    v.len() >= 32
        && !is_uuid
        && word(v)
        && v.bytes().filter(u8::is_ascii_digit).count() >= 4
        && v.bytes().filter(u8::is_ascii_alphabetic).count() >= 4
}

/// A query key as it may be shown: alphanumerics, `_`, `-` and `%` only (a key
/// is not a secret, but an odd one could be a value typed in the wrong place).
fn sanitize_key(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 32
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'%'))
    {
        key.to_string()
    } else {
        "?".to_string()
    }
}

fn percent_decode_lossy(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirect_uris_are_judged_by_their_parsed_host() {
        let accepted = [
            "http://127.0.0.1:8080/authorization-code/callback",
            "http://127.0.0.2:9/cb",
            "http://localhost:8080/cb",
            "http://LOCALHOST/cb",
            "http://[::1]:8080/cb",
            // The URL standard reads these as 127.0.0.1, and so does a browser.
            "http://127.1/cb",
            "http://%31%32%37.0.0.1/cb",
        ];
        for u in accepted {
            assert!(is_loopback_http(u), "{u} should be accepted");
        }
        let refused = [
            "http://127.evil.example/cb",
            "http://127.0.0.1@evil.example/cb",
            "http://127.0.0.1:8080@evil.example/cb",
            "http://user:pw@127.0.0.1/cb",
            "http://127.0.0.1.nip.io/cb",
            "http://localhost.evil.example/cb",
            "http://localhost./cb",
            "http://localhostevil.example/cb",
            "http://[::1].evil.example/cb",
            "http://[::ffff:8.8.8.8]/cb",
            "http://0.0.0.0/cb",
            "http://10.0.0.1/cb",
            "https://127.0.0.1/cb",
            "javascript://127.0.0.1/cb",
            "http:127.0.0.1/cb@evil.example",
            "127.0.0.1:8080/cb",
            "",
        ];
        for u in refused {
            assert!(!is_loopback_http(u), "{u} should be refused");
        }
    }

    #[test]
    fn every_redis_url_form_loses_its_password() {
        let cases = [
            (
                "redis://snykey:hunter2@redis:6379/1",
                "redis://snykey:[redacted]@redis:6379/1",
            ),
            ("redis://hunter2@redis/0", "redis://[redacted]@redis/0"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter2",
                "redis+unix:///run/redis.sock?db=1&pass=[redacted]",
            ),
            (
                "unix:///run/redis.sock?pass=hunter2&user=snykey",
                "unix:///run/redis.sock?pass=[redacted]&user=[redacted]",
            ),
            (
                "redis+unix:///run/redis.sock?p%61ss=hunter2",
                "redis+unix:///run/redis.sock?p%61ss=[redacted]",
            ),
            (
                "redis+sentinel://u:hunter2@h1:26379,h2:26379/mymaster/0",
                "redis+sentinel://u:[redacted]@h1:26379,h2:26379/mymaster/0",
            ),
            ("rediss://u:hun@ter2@h/0", "rediss://u:[redacted]@h/0"),
            ("redis://u:hun?ter2@h/0", "redis://[redacted]"),
            ("redis://h/0#hunter2", "redis://h/0#[redacted]"),
            ("redis://h/0?db=hunter2%00", "redis://h/0?db=[redacted]"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("hunter2@h", "[redacted]@h"),
            ("u:hunter2@h:6379/0", "u:[redacted]@h:6379/0"),
        ];
        for (input, want) in cases {
            let got = redact_password(input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("hunter2") && !got.contains("ter2"), "{got}");
        }
    }
}

#[cfg(test)]
mod shown_value_tests {
    use super::{looks_like_token, shown_value};

    #[test]
    fn values_are_shown_as_written_unless_they_could_be_a_secret() {
        // Not secret: shown whole, so the operator sees the typo.
        for v in [
            "htps//api.snyk.io",
            "api.snyk.io",
            "https://api.snyk.io/",
            "0x10",
            "5 parsecs",
            "localhost:80800",
            "/etc/snykey/bao-token",
            "7f3c0c2e-1a9b-4c55-8f0e-2b6d1c9a7e31",
        ] {
            assert_eq!(shown_value(v), v);
        }
        // Secret: the password, the query values, a token-shaped value.
        for (v, want) in [
            ("redis://u:hunter2@h/0", "redis://u:[redacted]@h/0"),
            ("u:hunter2@h:6379", "u:[redacted]@h:6379"),
            (
                "unix:///r.sock?pass=hunter2",
                "unix:///r.sock?pass=[redacted]",
            ),
            ("hvs.CAESIhunter2AbCdEfGhIjKlMnOpQr", "[redacted]"),
            ("s.hunter2AbCdEfGhIjKlMnOpQr", "[redacted]"),
            (
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJodW50ZXIyIn0.c2lnbmF0dXJlaHVudGVyMg",
                "[redacted]",
            ),
            ("3f9a1c0b7e2d4hunter25a6b8c9d0e1f2a3b4c5d6", "[redacted]"),
        ] {
            assert_eq!(shown_value(v), want, "{v}");
        }
        assert!(shown_value(&"a".repeat(500)).contains("500-character"));
    }

    #[test]
    fn long_words_are_tokens_only_with_letters_and_digits() {
        assert!(!looks_like_token("/var/lib/snykey/credentials.json"));
        assert!(!looks_like_token("abcdefghijklmnopqrstuvwxyzabcdefgh"));
        assert!(!looks_like_token("127.0.0.1:8080"));
        assert!(looks_like_token("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2Q="));
        assert!(!looks_like_token("8080/authorization-code/callback"));
        assert_eq!(
            super::shown_value("http://127.0.0.1:8080/authorization-code/callback"),
            "http://127.0.0.1:8080/authorization-code/callback"
        );
        // Before a dot, between slashes: a token is still a token.
        assert_eq!(
            super::shown_value("/run/hvs.CAESIhunter2AbCdEfGhIjKlMnOpQr./x"),
            "/run/[redacted]./x"
        );
        assert_eq!(
            super::shown_value("https://h/3f9a1c0b7e2d4a5a6b8c9d0e1f2a3b4c5d6/x"),
            "https://h/[redacted]/x"
        );
    }
}

#[cfg(test)]
mod secret_url_tests {
    use super::SecretUrl;

    #[test]
    fn a_secret_url_never_formats_its_password() {
        let u = SecretUrl::new("redis+sentinel://u:hunter2@h1:1,h2:2/m/0?pass=hunter3");
        for shown in [
            format!("{u}"),
            format!("{u:?}"),
            format!("{u:#?}"),
            toml::Value::try_from(&u).unwrap().to_string(),
        ] {
            assert!(!shown.contains("hunter"), "{shown}");
            assert!(shown.contains("h1:1,h2:2/m/0"), "{shown}");
        }
        assert!(u.expose().contains("hunter2"));
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_no_password_survives_redaction(
            scheme in "redis|rediss|redis\\+unix|unix|redis\\+sentinel|http",
            user in proptest::option::of("[a-z]{0,6}"),
            pw in "PW[A-Za-z0-9@?#:/%&=+]{4,16}",
            host in "[a-z0-9.]{1,12}(:[0-9]{1,5})?(,[a-z0-9.]{1,12}:[0-9]{1,5})?",
            path in "(/[A-Za-z0-9._-]{0,10}){0,3}",
            qpw in proptest::option::of("PQ[A-Za-z0-9%+=-]{4,16}"),
            key in "pass|password|p%61ss|PASS|auth|token",
        ) {
            // Without a user, a ':' would make the part before it a user name
            // (shown, by design): the password-only form is `:pw@` or `pw@`.
            let userinfo = match &user {
                Some(u) => format!("{u}:{pw}@"),
                None if pw.contains(':') => format!(":{pw}@"),
                None => format!("{pw}@"),
            };
            let query = qpw.as_ref().map(|q| format!("?db=1&{key}={q}")).unwrap_or_default();
            let url = format!("{scheme}://{userinfo}{host}{path}{query}");
            let shown = redact_password(&url);
            for secret in std::iter::once(pw.as_str()).chain(qpw.as_deref()) {
                prop_assert!(!shown.contains(secret), "{} -> {}", url, shown);
                // Nor the part after its first ':' or '@' (what a parser might
                // take for the password).
                for tail in secret.split([':', '@']).skip(1).filter(|t| t.len() >= 4) {
                    prop_assert!(!shown.contains(tail), "{} -> {}", url, shown);
                }
            }
        }
    }
}

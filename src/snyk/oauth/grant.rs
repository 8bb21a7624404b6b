//! What the token endpoint answered: a [`TokenGrant`], or a [`GrantError`]
//! saying what the failure means for the token that was sent, and the
//! parsing of a success answer (untrusted bytes) into a grant.

use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// A successful token endpoint answer.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    pub token_type: String,
    pub scope: Option<String>,
    /// The rotated refresh token (`oauth_app` only). The one that was sent is dead from now on.
    pub refresh_token: Option<Secret>,
    pub refresh_expires_in: Option<Duration>,
}

#[derive(Debug, Error, Clone)]
pub enum GrantError {
    // No remedy here: the broker's needs_login message names it once.
    #[error("Snyk refused the credential ({error}{})", desc(.description))]
    Permanent {
        error: String,
        description: Option<String>,
    },
    #[error("Snyk rejected the request with HTTP {status} ({error}{})", desc(.description))]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("Snyk is unavailable (HTTP {status}){}", retry(.retry_after))]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach Snyk at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("Snyk's answer was lost ({message}); it may or may not have processed the request")]
    Unknown { timed_out: bool, message: String },
}

fn desc(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

fn retry(r: &Option<Duration>) -> String {
    r.map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl GrantError {
    /// Did Snyk certainly not consume the refresh token that was sent?
    pub fn token_not_consumed(&self) -> bool {
        !matches!(
            self,
            GrantError::Unknown { .. } | GrantError::Permanent { .. }
        )
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, GrantError::Permanent { .. })
    }

    /// Did Snyk refuse the request itself as malformed (RFC 6749 §5.2:
    /// `invalid_request` — a missing client secret, say — or
    /// `unsupported_grant_type`, `invalid_scope`)? Nothing was consumed, but
    /// the same request gets the same answer: only a change of the record
    /// (a put, a login) can help, so it is not retried until then.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            GrantError::Refused { error, .. }
                if matches!(error.as_str(), "invalid_request" | "unsupported_grant_type" | "invalid_scope")
        )
    }

    /// Did Snyk refuse the client's authentication (`invalid_client`,
    /// `unauthorized_client`: a wrong or revoked client secret)? RFC 6749
    /// §5.2: the client is authenticated before the grant is looked at, so
    /// the refresh token sent with it was not consumed; the same request
    /// gets the same answer until the secret changes.
    pub fn refuses_client(&self) -> bool {
        matches!(
            self,
            GrantError::Permanent { error, .. }
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client")
        )
    }

    /// How long Snyk asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GrantError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    token_type: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
    #[serde(default)]
    refresh_expires_in: Option<serde_json::Value>,
}

/// The longest lifetime believed from Snyk (an absurd `expires_in` must not
/// overflow the clock or keep a dead token for years).
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// `expires_in` as Snyk may send it: a whole number, a float or a numeric
/// string. Missing or unreadable: an hour (Snyk's lifetime). Never above
/// [`MAX_LIFETIME`]; 0 stays 0 (the scheduler has a floor of its own).
fn lifetime(v: Option<&serde_json::Value>) -> Duration {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64()))
        }
        _ => Duration::from_secs(3600),
    }
}

/// A token endpoint's success answer (untrusted bytes) as a grant.
pub(super) fn parse_grant(body: &[u8]) -> Result<TokenGrant, GrantError> {
    let raw: RawGrant = serde_json::from_slice(body).map_err(|_| GrantError::Unknown {
        timed_out: false,
        message: "the answer was not the expected JSON".into(),
    })?;
    let refresh_token = raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new);
    let access_token = match raw.access_token.filter(|t| !t.is_empty()) {
        Some(t) => Secret::new(t),
        // A new refresh token without an access token is still an answer: the
        // sent token is spent and the new one must be kept (I2). The grant
        // carries an empty access token, which is never handed out.
        None if refresh_token.is_some() => Secret::new(""),
        None => {
            return Err(GrantError::Unknown {
                timed_out: false,
                message: "the answer had no access_token".into(),
            });
        }
    };
    let expires_in = if access_token.is_empty() {
        Duration::ZERO
    } else {
        lifetime(raw.expires_in.as_ref())
    };
    Ok(TokenGrant {
        access_token,
        expires_in,
        token_type: raw.token_type.unwrap_or_else(|| "bearer".into()),
        scope: raw.scope,
        refresh_token,
        refresh_expires_in: raw.refresh_expires_in.as_ref().map(|v| lifetime(Some(v))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_expires_in_values_never_lose_the_answer() {
        use serde_json::json;
        assert_eq!(lifetime(Some(&json!(3600))), Duration::from_secs(3600));
        assert_eq!(lifetime(Some(&json!(59.9))), Duration::from_secs_f64(59.9));
        assert_eq!(lifetime(Some(&json!("120"))), Duration::from_secs(120));
        assert_eq!(lifetime(Some(&json!(1e20))), MAX_LIFETIME);
        assert_eq!(lifetime(Some(&json!(u64::MAX))), MAX_LIFETIME);
        assert_eq!(lifetime(Some(&json!(-5))), Duration::from_secs(3600));
        assert_eq!(lifetime(Some(&json!(0))), Duration::ZERO);
        assert_eq!(lifetime(None), Duration::from_secs(3600));
        let raw: RawGrant =
            serde_json::from_str(r#"{"access_token":"a","expires_in":1e20,"refresh_token":"r"}"#)
                .unwrap();
        assert_eq!(lifetime(raw.expires_in.as_ref()), MAX_LIFETIME);
    }

    #[test]
    fn a_new_refresh_token_without_an_access_token_is_kept_not_lost() {
        let g = parse_grant(br#"{"refresh_token":"rt-new","expires_in":3600}"#).unwrap();
        assert_eq!(g.refresh_token.unwrap().expose(), "rt-new");
        assert!(g.access_token.is_empty());
        assert_eq!(g.expires_in, Duration::ZERO);
        // Neither token: nothing to keep, and the outcome is unknown.
        assert!(matches!(
            parse_grant(br#"{"expires_in":3600}"#),
            Err(GrantError::Unknown { .. })
        ));
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET_MARK: &str = "rt-SECRET-a8f3e1";

    fn expires_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,12}|1e400|-1|inf|NaN| 3600 ".prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            Just(serde_json::json!({"x": 1})),
        ]
    }

    fn message_of(e: &GrantError) -> String {
        e.to_string()
    }

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_any_bytes_as_a_grant_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_grant(&raw);
        }

        #[test]
        fn prop_grants_keep_their_tokens_and_a_bounded_lifetime(
            access in "[A-Za-z0-9._-]{1,64}",
            refresh in proptest::option::of("[A-Za-z0-9._-]{1,64}"),
            expires in expires_value(),
            refresh_expires in expires_value(),
        ) {
            let mut v = serde_json::json!({
                "access_token": access,
                "expires_in": expires,
                "refresh_expires_in": refresh_expires,
                "token_type": "bearer",
            });
            if let Some(r) = &refresh {
                v["refresh_token"] = serde_json::Value::from(r.clone());
            }
            let g = parse_grant(&serde_json::to_vec(&v).unwrap()).unwrap();
            prop_assert_eq!(g.access_token.expose(), access.as_str());
            prop_assert_eq!(g.refresh_token.as_ref().map(|s| s.expose().to_string()), refresh);
            prop_assert!(g.expires_in <= MAX_LIFETIME);
            prop_assert!(g.refresh_expires_in.unwrap_or_default() <= MAX_LIFETIME);
        }

        #[test]
        fn prop_a_refused_grant_never_quotes_a_token(
            shape in 0u8..4,
            junk in "\\PC{0,40}",
        ) {
            let body = match shape {
                0 => serde_json::json!({"refresh_token": SECRET_MARK, "x": junk}).to_string(),
                1 => serde_json::json!({"access_token": "", "refresh_token": SECRET_MARK}).to_string(),
                2 => format!("{{\"access_token\":\"{SECRET_MARK}\",{junk}"),
                _ => format!("{SECRET_MARK}{junk}"),
            };
            if let Err(e) = parse_grant(body.as_bytes()) {
                prop_assert!(!message_of(&e).contains(SECRET_MARK), "{}", message_of(&e));
            }
        }
    }
}

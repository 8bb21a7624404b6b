//! The whole client/agent contract (docs/api.md): the request and answer bodies,
//! the routes ([`paths`]), and the error codes ([`ErrorCode`]) with their
//! HTTP statuses. The agent's router, the admin CLI and `snykey-helper` all
//! take them from here; the helper, std-only, reads only [`paths`] and
//! [`ErrorCode`] and parses the JSON with its own small reader.
//!
//! The tests at the bottom pin the exact JSON of every body and error:
//! changing one is changing the contract.

mod code;
pub mod paths;
pub mod published;

pub use code::ErrorCode;

use crate::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The domain's words, named in the contract as they are: snake_case strings.
pub use crate::credential::{Kind, LoginState, State};

/// `PUT /v1/credentials`. Unknown fields are refused so that a typo in a
/// secret's field name cannot silently store nothing.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PutCredential {
    pub org_id: String,
    pub client_id: String,
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `api_key`: a service account's Snyk API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The Snyk region's API (`https://api.eu.snyk.io`), checked as
    /// `snyk.api_url` is; absent: the agent's `snyk.api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PutCredentialResponse {
    pub org_id: String,
    pub client_id: String,
    pub kind: Kind,
    pub expires_at: String,
}

/// `GET /v1/credentials/{org}/{client}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: String,
    pub expires_at: String,
    /// The agent's Snyk region (`snyk.api_url`), so that `snykey-helper
    /// --format env` / `exec` export `SNYK_API`; absent from the answers of
    /// agents older than issue 24, which sent it only for other regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snyk_api: Option<String>,
}

/// One row of `GET /v1/credentials`: no secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialStatus {
    pub org_id: String,
    pub client_id: String,
    pub kind: Kind,
    pub state: State,
    pub expires_at: Option<String>,
    pub next_refresh_at: Option<String>,
    pub last_refresh_at: Option<String>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// The credential's own Snyk region, when its record names one (absent:
    /// the agent's `snyk.api_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Where the agent publishes this credential's token for jobs
    /// (`[publish]`), and how that goes; absent when it is not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishStatus>,
}

/// How publishing one credential's token goes, as this agent saw it last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishStatus {
    /// The KV path jobs read (`kv/snyk-tokens/ORG_ID/CLIENT_ID`).
    pub path: String,
    /// The expiry of the token the path holds, RFC 3339; absent when it
    /// holds none (or this agent has not looked yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Why the path holds no token, when it holds a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<published::Withdrawn>,
    /// Failed attempts in a row to write it (retried with backoff).
    pub failures: u32,
    /// The last failure, or why a token could not be published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialList {
    pub credentials: Vec<CredentialStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
}

/// `POST /v1/reload`: the agent re-read its configuration and applied it.
/// (A file it refused is an error answer, code `config_invalid`.)
#[derive(Debug, Serialize, Deserialize)]
pub struct Reloaded {
    /// The config file re-read; none when the agent runs on defaults and
    /// environment variables alone.
    pub file: Option<String>,
    /// Keys that changed and are in force now.
    pub applied: Vec<String>,
    /// Keys that changed but keep their old value until the agent restarts.
    pub restart_needed: Vec<String>,
    /// Which log filter is in force, in a sentence.
    pub log_filter: String,
}

/// `POST /v1/login`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub org_id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The Snyk region's API (`https://api.eu.snyk.io`), checked as
    /// `snyk.api_url` is; absent: the agent's `snyk.api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// `POST /v1/login` and `POST /v1/register-app` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginStarted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub authorize_url: String,
    pub state: String,
    pub expires_at: String,
}

/// `GET /v1/login/{state}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginStatus {
    pub state: LoginState,
    pub org_id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/register-app`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAppRequest {
    pub org_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub auth_token: Secret,
    /// The Snyk region's API (`https://api.eu.snyk.io`), checked as
    /// `snyk.api_url` is; absent: the agent's `snyk.api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// The service-account routes' request (`POST /v1/service-accounts/{list,create,show,rename,delete,rotate-secret}`).
#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    pub auth_token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The Snyk region's API (`https://api.eu.snyk.io`), checked as
    /// `snyk.api_url` is; absent: the agent's `snyk.api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceAccountResult {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceAccountList {
    pub service_accounts: Vec<ServiceAccount>,
}

/// A Snyk service account as the agent shows it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub auth_type: String,
    pub client_id: String,
    #[serde(default)]
    pub role_id: Option<String>,
}

/// Every error answer: `{"error": "<human sentence>", "code": "<snake_case>"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A code this side does not know reads as [`ErrorCode::Unknown`] (what
/// `#[serde(other)]` would do), never as an error: a newer agent may add codes.
impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

#[cfg(test)]
mod contract_tests {
    //! The exact JSON of every body and error: a change here is a change of
    //! the contract with every client already deployed.
    use super::*;
    use serde_json::{Value, json};

    /// `body` serializes to exactly `expected`, and `expected` reads back
    /// into something that serializes the same.
    fn pinned<T: Serialize + serde::de::DeserializeOwned>(body: &T, expected: Value) {
        let got = serde_json::to_value(body).unwrap();
        assert_eq!(got, expected);
        let back: T = serde_json::from_value(expected.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), expected);
    }

    #[test]
    fn kinds_and_states_are_snake_case_strings() {
        let kinds = [
            Kind::OauthApp,
            Kind::ClientSecret,
            Kind::PrivateKeyJwt,
            Kind::ApiKey,
        ];
        let names = ["oauth_app", "client_secret", "private_key_jwt", "api_key"];
        for (k, n) in kinds.iter().zip(names) {
            assert_eq!(serde_json::to_value(k).unwrap(), json!(n));
            assert_eq!(k.as_str(), n);
            assert_eq!(Kind::parse(n), Some(*k));
        }
        let states = State::ALL;
        let names = ["pending", "ok", "refreshing", "degraded", "needs_login"];
        for (st, n) in states.iter().zip(names) {
            assert_eq!(serde_json::to_value(st).unwrap(), json!(n));
            assert_eq!(st.as_str(), n);
        }
        for (st, n) in [
            (LoginState::Pending, "pending"),
            (LoginState::Complete, "complete"),
            (LoginState::Failed, "failed"),
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), json!(n));
        }
    }

    #[test]
    fn put_bodies_are_pinned() {
        pinned(
            &PutCredential {
                org_id: "o".into(),
                client_id: "c".into(),
                kind: Some(Kind::PrivateKeyJwt),
                client_secret: Some(Secret::new("s")),
                refresh_token: Some(Secret::new("r")),
                private_key_pem: Some(Secret::new("p")),
                key_id: Some("k".into()),
                api_key: Some(Secret::new("a")),
                api_url: Some("https://api.eu.snyk.io".into()),
            },
            json!({"org_id": "o", "client_id": "c", "kind": "private_key_jwt",
                   "client_secret": "s", "refresh_token": "r", "private_key_pem": "p", "key_id": "k",
                   "api_key": "a", "api_url": "https://api.eu.snyk.io"}),
        );
        pinned(
            &PutCredential {
                org_id: "o".into(),
                client_id: "c".into(),
                kind: None,
                client_secret: None,
                refresh_token: None,
                private_key_pem: None,
                key_id: None,
                api_key: None,
                api_url: None,
            },
            json!({"org_id": "o", "client_id": "c", "kind": null}),
        );
        // docs/api.md: `kind` may be left out.
        let p: PutCredential =
            serde_json::from_value(json!({"org_id": "o", "client_id": "c"})).unwrap();
        assert_eq!(p.kind, None);
        pinned(
            &PutCredentialResponse {
                org_id: "o".into(),
                client_id: "c".into(),
                kind: Kind::OauthApp,
                expires_at: "2026-01-01T00:00:00Z".into(),
            },
            json!({"org_id": "o", "client_id": "c", "kind": "oauth_app", "expires_at": "2026-01-01T00:00:00Z"}),
        );
    }

    #[test]
    fn token_and_list_answers_are_pinned() {
        pinned(
            &TokenResponse {
                access_token: Secret::new("a"),
                token_type: "bearer".into(),
                expires_at: "2026-01-01T00:00:00Z".into(),
                snyk_api: None,
            },
            json!({"access_token": "a", "token_type": "bearer", "expires_at": "2026-01-01T00:00:00Z"}),
        );
        pinned(
            &TokenResponse {
                access_token: Secret::new("a"),
                token_type: "bearer".into(),
                expires_at: "t".into(),
                snyk_api: Some("https://api.eu.snyk.io".into()),
            },
            json!({"access_token": "a", "token_type": "bearer", "expires_at": "t",
                   "snyk_api": "https://api.eu.snyk.io"}),
        );
        pinned(
            &CredentialList {
                credentials: vec![CredentialStatus {
                    org_id: "o".into(),
                    client_id: "c".into(),
                    kind: Kind::ClientSecret,
                    state: State::NeedsLogin,
                    expires_at: None,
                    next_refresh_at: Some("n".into()),
                    last_refresh_at: Some("l".into()),
                    failures: 2,
                    last_error: Some("e".into()),
                    api_url: None,
                    published: None,
                }],
            },
            json!({"credentials": [{"org_id": "o", "client_id": "c", "kind": "client_secret",
                   "state": "needs_login", "expires_at": null, "next_refresh_at": "n",
                   "last_refresh_at": "l", "failures": 2, "last_error": "e"}]}),
        );
        // A published credential (`[publish]`): where, until when, how it goes.
        pinned(
            &PublishStatus {
                path: "kv/snyk-tokens/o/c".into(),
                expires_at: Some("t".into()),
                withdrawn: None,
                failures: 0,
                last_error: None,
            },
            json!({"path": "kv/snyk-tokens/o/c", "expires_at": "t", "failures": 0}),
        );
        pinned(
            &PublishStatus {
                path: "kv/snyk-tokens/o/c".into(),
                expires_at: None,
                withdrawn: Some(published::Withdrawn::Stale),
                failures: 3,
                last_error: Some("e".into()),
            },
            json!({"path": "kv/snyk-tokens/o/c", "withdrawn": "stale", "failures": 3, "last_error": "e"}),
        );
        pinned(
            &Message {
                message: "m".into(),
            },
            json!({"message": "m"}),
        );
    }

    #[test]
    fn login_bodies_are_pinned() {
        pinned(
            &LoginRequest {
                org_id: "o".into(),
                client_id: "c".into(),
                client_secret: Some(Secret::new("s")),
                redirect_uri: Some("http://127.0.0.1:8080/authorization-code/callback".into()),
                scopes: vec!["org.read".into()],
                api_url: Some("https://api.eu.snyk.io".into()),
            },
            json!({"org_id": "o", "client_id": "c", "client_secret": "s",
                   "redirect_uri": "http://127.0.0.1:8080/authorization-code/callback",
                   "scopes": ["org.read"], "api_url": "https://api.eu.snyk.io"}),
        );
        pinned(
            &LoginStarted {
                client_id: None,
                authorize_url: "u".into(),
                state: "s".into(),
                expires_at: "t".into(),
            },
            json!({"authorize_url": "u", "state": "s", "expires_at": "t"}),
        );
        pinned(
            &LoginStarted {
                client_id: Some("c".into()),
                authorize_url: "u".into(),
                state: "s".into(),
                expires_at: "t".into(),
            },
            json!({"client_id": "c", "authorize_url": "u", "state": "s", "expires_at": "t"}),
        );
        pinned(
            &LoginStatus {
                state: LoginState::Failed,
                org_id: "o".into(),
                client_id: "c".into(),
                error: Some("e".into()),
            },
            json!({"state": "failed", "org_id": "o", "client_id": "c", "error": "e"}),
        );
        pinned(
            &RegisterAppRequest {
                org_id: "o".into(),
                name: "n".into(),
                scopes: vec!["org.read".into()],
                redirect_uris: vec![],
                context: Some("tenant".into()),
                auth_token: Secret::new("t"),
                api_url: Some("https://api.eu.snyk.io".into()),
            },
            json!({"org_id": "o", "name": "n", "scopes": ["org.read"], "context": "tenant",
                   "auth_token": "t", "api_url": "https://api.eu.snyk.io"}),
        );
    }

    #[test]
    fn service_account_bodies_are_pinned() {
        pinned(
            &ServiceAccountRequest {
                org_id: Some("o".into()),
                auth_token: Secret::new("t"),
                name: Some("n".into()),
                auth_type: Some("oauth_client_secret".into()),
                role_id: Some("r".into()),
                access_token_ttl_seconds: Some(3600),
                ..Default::default()
            },
            json!({"org_id": "o", "auth_token": "t", "name": "n",
                   "auth_type": "oauth_client_secret", "role_id": "r",
                   "access_token_ttl_seconds": 3600}),
        );
        pinned(
            &ServiceAccountRequest {
                group_id: Some("g".into()),
                auth_token: Secret::new("t"),
                service_account_id: Some("s".into()),
                client_id: Some("c".into()),
                jwks_url: Some("https://j".into()),
                mode: Some("replace".into()),
                api_url: Some("https://api.eu.snyk.io".into()),
                ..Default::default()
            },
            json!({"group_id": "g", "auth_token": "t", "service_account_id": "s",
                   "client_id": "c", "jwks_url": "https://j", "mode": "replace",
                   "api_url": "https://api.eu.snyk.io"}),
        );
        let account = ServiceAccount {
            id: "i".into(),
            name: "n".into(),
            auth_type: "oauth_client_secret".into(),
            client_id: "c".into(),
            role_id: None,
        };
        let account_json = json!({"id": "i", "name": "n", "auth_type": "oauth_client_secret",
                                  "client_id": "c", "role_id": null});
        pinned(
            &ServiceAccountResult {
                message: "m".into(),
                service_account: Some(account.clone()),
            },
            json!({"message": "m", "service_account": account_json}),
        );
        pinned(
            &ServiceAccountResult {
                message: "m".into(),
                service_account: None,
            },
            json!({"message": "m"}),
        );
        pinned(
            &ServiceAccountList {
                service_accounts: vec![account],
            },
            json!({"service_accounts": [account_json]}),
        );
    }

    #[test]
    fn the_reload_answer_is_pinned() {
        pinned(
            &Reloaded {
                file: Some("/etc/snykey/config.toml".into()),
                applied: vec!["server.log_level".into()],
                restart_needed: vec!["snyk.timeout".into()],
                log_filter: "log filter is now \"debug\"".into(),
            },
            json!({"file": "/etc/snykey/config.toml", "applied": ["server.log_level"],
                   "restart_needed": ["snyk.timeout"], "log_filter": "log filter is now \"debug\""}),
        );
    }

    #[test]
    fn every_error_is_pinned_with_its_status() {
        let expected: &[(&str, u16)] = &[
            ("bad_request", 400),
            ("body_too_large", 413),
            ("method_not_allowed", 405),
            ("no_such_route", 404),
            ("peer_not_allowed", 403),
            ("forbidden", 403),
            ("not_found", 404),
            ("needs_login", 409),
            ("snyk_refused", 502),
            ("snyk_rate_limited", 502),
            ("snyk_unavailable", 502),
            ("snyk_unreachable", 502),
            ("snyk_timeout", 504),
            ("snyk_answer_lost", 502),
            ("store_sealed", 503),
            ("store_conflict", 503),
            ("store_unavailable", 503),
            ("store_denied", 503),
            ("cache_unavailable", 503),
            ("refresh_in_progress", 503),
            ("not_ready", 503),
            ("callback_unavailable", 503),
            ("config_invalid", 422),
            ("internal", 500),
            ("usage", 400),
            ("login_failed", 409),
        ];
        assert_eq!(expected.len(), ErrorCode::ALL.len());
        for (code, (name, status)) in ErrorCode::ALL.iter().zip(expected) {
            pinned(
                &ErrorBody {
                    error: "what failed".into(),
                    code: *code,
                },
                json!({"error": "what failed", "code": name}),
            );
            assert_eq!(code.status(), *status, "{name}");
        }
    }

    #[test]
    fn a_code_from_a_newer_agent_reads_as_unknown() {
        let b: ErrorBody =
            serde_json::from_value(json!({"error": "e", "code": "quota_exceeded"})).unwrap();
        assert_eq!(b.code, ErrorCode::Unknown);
        assert_eq!(b.error, "e");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    const MARK: &str = "rt-SECRET-91d0aa";

    fn strings() -> impl Strategy<Value = String> + Clone {
        prop_oneof![Just(MARK.to_string()), "\\PC{0,10}".prop_map(String::from)]
    }

    /// Parses `v` as `T` the way the agent does and checks the refusal.
    fn judged<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<(), TestCaseError> {
        let bytes = serde_json::to_vec(v).unwrap();
        if let Err(e) = serde_json::from_slice::<T>(&bytes) {
            let shown = crate::secret::json_error(&e);
            prop_assert!(!shown.contains(MARK), "{}", shown);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_request_body_is_refused_without_its_values(v in crate::prop::json_value(strings())) {
            judged::<PutCredential>(&v)?;
            judged::<LoginRequest>(&v)?;
            judged::<RegisterAppRequest>(&v)?;
            judged::<ServiceAccountRequest>(&v)?;
        }

        #[test]
        fn prop_put_bodies_round_trip(
            org in "[A-Za-z0-9._-]{0,20}",
            client in "[A-Za-z0-9._-]{0,20}",
            rt in proptest::option::of("[A-Za-z0-9._~-]{1,40}"),
            secret in proptest::option::of("\\PC{1,40}"),
            key_id in proptest::option::of("\\PC{0,20}"),
        ) {
            let put = PutCredential {
                org_id: org,
                client_id: client,
                kind: Some(Kind::default()),
                client_secret: secret.map(Secret::new),
                refresh_token: rt.map(Secret::new),
                private_key_pem: None,
                key_id,
                api_key: None,
                api_url: None,
            };
            let bytes = crate::secret::to_json_wiped(&put).unwrap();
            let back: PutCredential = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back.org_id, &put.org_id);
            prop_assert_eq!(&back.client_id, &put.client_id);
            prop_assert_eq!(back.kind, put.kind);
            prop_assert!(back.refresh_token == put.refresh_token);
            prop_assert!(back.client_secret == put.client_secret);
            prop_assert_eq!(back.key_id, put.key_id);
        }
    }
}

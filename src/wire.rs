//! The agent API's request and response bodies (SPEC §4), shared by the agent
//! and the admin CLI. `snykey-helper` reads the same JSON with its own
//! std-only parser.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// The credential kinds of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    OauthApp,
    ClientSecret,
    PrivateKeyJwt,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OauthApp => "oauth_app",
            Kind::ClientSecret => "client_secret",
            Kind::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "oauth_app" => Some(Kind::OauthApp),
            "client_secret" => Some(Kind::ClientSecret),
            "private_key_jwt" => Some(Kind::PrivateKeyJwt),
            _ => None,
        }
    }
}

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
    /// Set when the agent talks to a non-default Snyk region, so that
    /// `snykey-helper --format env` / `exec` can export `SNYK_API`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snyk_api: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Refreshing,
    Degraded,
    NeedsLogin,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Refreshing => "refreshing",
            State::Degraded => "degraded",
            State::NeedsLogin => "needs_login",
        }
    }
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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CredentialList {
    pub credentials: Vec<CredentialStatus>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub message: String,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    Pending,
    Complete,
    Failed,
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
}

/// The service-account routes' request (`POST /v1/service-accounts/{list,create,delete,rotate-secret}`).
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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceAccountResult {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<crate::snyk::rest::ServiceAccount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceAccountList {
    pub service_accounts: Vec<crate::snyk::rest::ServiceAccount>,
}

/// Every error answer: `{"error": "<human sentence>", "code": "<snake_case>"}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
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

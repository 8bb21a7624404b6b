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

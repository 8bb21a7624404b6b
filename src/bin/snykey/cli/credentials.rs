//! `put`, `delete`, `login` and `register-app`: storing, removing and
//! obtaining a credential.

use super::common::{AgentOpts, Id, id};
use clap::{Args, ValueEnum};
use snykey::wire::Kind;
use std::path::PathBuf;

/// The positional `ORG_ID CLIENT_ID` of `delete` (never from the
/// environment: a variable left set must not choose what is deleted).
#[derive(Args, Clone)]
pub struct Credential {
    /// The Snyk organization (or group) id.
    #[arg(value_parser = id("org_id"))]
    pub org_id: Id,
    /// The OAuth client id of the app or service account.
    #[arg(value_parser = id("client_id"))]
    pub client_id: Id,
}

/// `put --kind` (docs/storage.md, `kind`).
#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KindArg {
    /// A Snyk App: client secret and a rotating refresh token.
    OauthApp,
    /// A service account with a client secret.
    ClientSecret,
    /// A service account with a private key (JWT assertion).
    PrivateKeyJwt,
    /// A service account's Snyk API key (handed out as SNYK_TOKEN; it does not expire).
    ApiKey,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::OauthApp => Kind::OauthApp,
            KindArg::ClientSecret => Kind::ClientSecret,
            KindArg::PrivateKeyJwt => Kind::PrivateKeyJwt,
            KindArg::ApiKey => Kind::ApiKey,
        }
    }
}

#[derive(Args)]
pub struct PutArgs {
    /// The Snyk organization (or group) id.
    #[arg(long, value_parser = id("org_id"))]
    pub org_id: Id,
    /// The OAuth client id.
    #[arg(long, value_parser = id("client_id"))]
    pub client_id: Id,
    /// oauth_app (default), client_secret or private_key_jwt.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// The client secret (a file, or - for stdin).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// oauth_app: the refresh token (a file, or - for stdin); it is rotated at once.
    #[arg(long)]
    pub refresh_token_file: Option<PathBuf>,
    /// private_key_jwt: the RSA private key, PEM (a file, or - for stdin).
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    /// private_key_jwt: the key id (`kid`) Snyk knows the key by.
    #[arg(long)]
    pub key_id: Option<String>,
    /// api_key: the service account's Snyk API key (a file, or - for stdin).
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// The Snyk region's API (e.g. https://api.eu.snyk.io); default: the agent's snyk.api_url.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub agent: AgentOpts,
}

#[derive(Args)]
pub struct LoginArgs {
    /// The Snyk organization id the app is installed in.
    #[arg(long, value_parser = id("org_id"))]
    pub org_id: Id,
    /// The Snyk App's client id.
    #[arg(long, value_parser = id("client_id"))]
    pub client_id: Id,
    /// The app's client secret (a file, or - for stdin); default: the one stored.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to request, comma-separated (default: the app's).
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Only print the URL; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// The Snyk region's API (e.g. https://api.eu.snyk.io); default: the agent's snyk.api_url.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub agent: AgentOpts,
}

#[derive(Args)]
pub struct RegisterAppArgs {
    /// The Snyk organization to register the app in.
    #[arg(long)]
    pub org_id: String,
    /// The app's name, as shown to users.
    #[arg(long)]
    pub name: String,
    /// Scopes, comma-separated (e.g. org.read,org.project.read).
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// Redirect URIs (repeatable); default: the agent's callback listener.
    #[arg(long)]
    pub redirect_uri: Vec<String>,
    /// "tenant" (default) or "user".
    #[arg(long)]
    pub context: Option<String>,
    /// A Snyk API token allowed to create apps (a file, or - for stdin).
    #[arg(long)]
    pub auth_token_file: PathBuf,
    /// Only print the URL; do not open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// The Snyk region's API (e.g. https://api.eu.snyk.io); default: the agent's snyk.api_url.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub agent: AgentOpts,
}

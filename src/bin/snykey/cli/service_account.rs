//! `service-account ...`: Snyk service accounts at org or group level.

use super::common::{AgentOpts, duration};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum SaCommand {
    /// List the service accounts (a table; --json for JSON).
    List {
        #[command(flatten)]
        scope: SaScope,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create one; an oauth_client_secret or api_key account is stored and managed at once.
    Create {
        #[command(flatten)]
        scope: SaScope,
        /// Its name at Snyk.
        #[arg(long)]
        name: String,
        /// How it authenticates: a client secret, a private key JWT (needs --jwks-url), or an API key.
        #[arg(long, value_enum)]
        auth_type: AuthType,
        /// The role it gets (a role id from Snyk).
        #[arg(long)]
        role_id: String,
        /// Where Snyk finds its public keys (oauth_private_key_jwt).
        #[arg(long)]
        jwks_url: Option<String>,
        /// Access token lifetime (e.g. 1h, "90 minutes").
        #[arg(long, value_parser = duration)]
        access_token_ttl: Option<Duration>,
    },
    /// Show one (a table; --json for JSON).
    Show {
        #[command(flatten)]
        scope: SaScope,
        #[command(flatten)]
        target: SaTarget,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give it a new name at Snyk.
    Rename {
        #[command(flatten)]
        scope: SaScope,
        #[command(flatten)]
        target: SaTarget,
        /// Its new name.
        #[arg(long)]
        name: String,
    },
    /// Delete it at Snyk and here.
    Delete {
        #[command(flatten)]
        scope: SaScope,
        #[command(flatten)]
        target: SaTarget,
    },
    /// Rotate its secret with no downtime (or --mode replace for a compromised one).
    RotateSecret {
        #[command(flatten)]
        scope: SaScope,
        #[command(flatten)]
        target: SaTarget,
        /// `replace`: revoke the old secret at once (for a compromised one).
        #[arg(long, value_enum)]
        mode: Option<RotateMode>,
    },
}

impl SaCommand {
    pub fn scope(&self) -> &SaScope {
        match self {
            SaCommand::List { scope, .. }
            | SaCommand::Create { scope, .. }
            | SaCommand::Show { scope, .. }
            | SaCommand::Rename { scope, .. }
            | SaCommand::Delete { scope, .. }
            | SaCommand::RotateSecret { scope, .. } => scope,
        }
    }
}

#[derive(Args, Clone)]
pub struct SaScope {
    /// An org-level service account: the org id.
    #[arg(
        long,
        conflicts_with = "group_id",
        required_unless_present = "group_id"
    )]
    pub org_id: Option<String>,
    /// A group-level service account: the group id.
    #[arg(long)]
    pub group_id: Option<String>,
    /// A Snyk API token allowed to manage service accounts (a file, or - for stdin).
    #[arg(long)]
    pub auth_token_file: PathBuf,
    /// The Snyk region's API (e.g. https://api.eu.snyk.io); default: the agent's snyk.api_url.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    #[command(flatten)]
    pub agent: AgentOpts,
}

#[derive(Args, Clone)]
pub struct SaTarget {
    /// The service account's id at Snyk.
    #[arg(
        long,
        conflicts_with = "client_id",
        required_unless_present = "client_id"
    )]
    pub service_account_id: Option<String>,
    /// Or its OAuth client id.
    #[arg(long)]
    pub client_id: Option<String>,
}

/// `service-account create --auth-type`.
#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum AuthType {
    /// A client secret, stored and managed by the agent at once.
    OauthClientSecret,
    /// A private key JWT (needs --jwks-url).
    OauthPrivateKeyJwt,
    /// A Snyk API key, stored and handed out by the agent at once (as SNYK_TOKEN).
    ApiKey,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::OauthClientSecret => "oauth_client_secret",
            AuthType::OauthPrivateKeyJwt => "oauth_private_key_jwt",
            AuthType::ApiKey => "api_key",
        }
    }
}

/// `service-account rotate-secret --mode`.
#[derive(Clone, Copy, ValueEnum)]
pub enum RotateMode {
    /// Revoke the old secret at once (for a compromised one).
    Replace,
}

impl RotateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RotateMode::Replace => "replace",
        }
    }
}

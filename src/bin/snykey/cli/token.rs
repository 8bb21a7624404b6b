//! `token` and `refresh`: which credential, the output format, and
//! `token --from-openbao`'s options.

use super::common::{Id, id};
use super::credentials::Credential;
use clap::{Args, ValueEnum};
use snykey::render::Format;
use std::path::PathBuf;

/// `--format` of `token` and `refresh` (the README's "Getting a token into a tool").
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// The token alone.
    Token,
    /// Token and expiry as JSON.
    Json,
    /// `export SNYK_OAUTH_TOKEN=...`.
    Env,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Token => Format::Token,
            FormatArg::Json => Format::Json,
            FormatArg::Env => Format::Env,
        }
    }
}

/// The positional `ORG_ID CLIENT_ID` of `token` and `refresh`, which may
/// come from `SNYKEY_ORG_ID` / `SNYKEY_CLIENT_ID` as for `snykey-helper`.
#[derive(Args, Clone)]
pub struct TokenCredential {
    /// The Snyk organization (or group) id.
    #[arg(value_parser = id("org_id"), env = "SNYKEY_ORG_ID")]
    pub org_id: Id,
    /// The OAuth client id of the app or service account.
    #[arg(value_parser = id("client_id"), env = "SNYKEY_CLIENT_ID")]
    pub client_id: Id,
}

impl From<TokenCredential> for Credential {
    fn from(c: TokenCredential) -> Credential {
        Credential {
            org_id: c.org_id,
            client_id: c.client_id,
        }
    }
}

/// `snykey token --from-openbao`: a job reads a published token (`[publish]`).
#[derive(Args, Clone, Default)]
pub struct FromOpenBaoArgs {
    /// Read the token an agent published in OpenBao instead of asking an agent on a socket.
    #[arg(long)]
    pub from_openbao: bool,
    /// OpenBao's address (--from-openbao); default $BAO_ADDR, else $VAULT_ADDR.
    #[arg(long, value_name = "URL", requires = "from_openbao")]
    pub addr: Option<String>,
    /// A PEM CA certificate to trust for OpenBao; default $BAO_CACERT, else $VAULT_CACERT.
    #[arg(long, value_name = "FILE", requires = "from_openbao")]
    pub ca_cert: Option<PathBuf>,
    /// The mount of OpenBao's JWT auth method [default: jwt].
    #[arg(long, value_name = "MOUNT", requires = "from_openbao")]
    pub auth_mount: Option<String>,
    /// The JWT auth role to log in with (default: the method's default_role).
    #[arg(long, requires = "from_openbao")]
    pub role: Option<String>,
    /// The job's JWT from a file (a Kubernetes service-account token, or one a CI system wrote).
    #[arg(long, value_name = "FILE", requires = "from_openbao", conflicts_with_all = ["jwt_env", "github_oidc"])]
    pub jwt_file: Option<PathBuf>,
    /// The job's JWT from this environment variable (GitLab CI: the variable named under the job's id_tokens).
    #[arg(
        long,
        value_name = "NAME",
        requires = "from_openbao",
        conflicts_with = "github_oidc"
    )]
    pub jwt_env: Option<String>,
    /// The job's JWT from GitHub Actions' OIDC provider ($ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN; the job needs `permissions: id-token: write`).
    #[arg(long, requires = "from_openbao")]
    pub github_oidc: bool,
    /// The audience (aud) to ask GitHub's OIDC token for: what the role's bound_audiences names (default: GitHub's, https://github.com/OWNER).
    #[arg(long, requires = "github_oidc")]
    pub audience: Option<String>,
    /// The KV v2 mount the agent publishes on (its publish.mount) [default: kv].
    #[arg(long, requires = "from_openbao")]
    pub mount: Option<String>,
    /// The path under it (the agent's publish.prefix) [default: snyk-tokens].
    #[arg(long, requires = "from_openbao")]
    pub prefix: Option<String>,
}

//! The command line (SPEC §6), as clap derive types. Everything a user can
//! get wrong locally — an id, a duration, a kind, a format — is parsed here,
//! so it is a clap usage error (exit 64) before anything is sent.

use clap::{Args, Parser, Subcommand, ValueEnum};
use snykey::render::Format;
use snykey::wire::Kind;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "snykey",
    version = snykey::LONG_VERSION,
    about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket",
    long_about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket.\n\n`snykey serve` is the agent: it keeps each credential's refresh token or client secret in a secret store and mints access tokens. The other subcommands talk to a running agent over its socket. Tools get a token with `snykey-helper ORG_ID CLIENT_ID`.",
    after_help = "Exit codes: 0 ok, 64 usage, 66 unknown credential, 69 agent unreachable, 75 temporary failure (retry), 77 not permitted (log in again, or this uid is not allowed), 78 invalid configuration."
)]
pub struct Cli {
    /// The agent socket, for the commands that talk to the agent (also accepted after them); default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock or /run/snykey/snykey.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// `snykey serve`'s options, also accepted before the subcommand.
    #[command(flatten)]
    pub log: LogOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// `--socket` of the commands that talk to the agent (and only of those:
/// `man`, `completions`, `check-config`, `config-reference`, `audit` and
/// `serve` take none).
#[derive(Args, Clone, Default)]
pub struct AgentOpts {
    /// The agent socket; default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock or /run/snykey/snykey.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
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

/// `snykey serve`'s logging options.
#[derive(Args, Clone, Default)]
pub struct LogOpts {
    /// Log filter (tracing syntax, e.g. `info`, `snykey=debug`); default $SNYKEY_LOG, else server.log_level.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format on stderr (default text).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `--format` of `token` and `refresh` (SPEC §5).
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

/// `put --kind` (SPEC §2).
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

/// An org, group or client id (SPEC §3), checked before anything is sent.
#[derive(Clone, Debug)]
pub struct Id(pub String);

fn id(name: &'static str) -> impl Fn(&str) -> Result<Id, String> + Clone {
    move |v: &str| {
        snykey::ids::check_id(name, v)
            .map(|()| Id(v.to_string()))
            .map_err(|e| e.to_string())
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    snykey::duration::parse_duration(v)
}

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

#[derive(Subcommand)]
pub enum Command {
    /// Run the agent.
    Serve {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        log: LogOpts,
    },
    /// Try snykey without a Snyk App: the agent on a temp directory against a simulated Snyk.
    ///
    /// Starts the agent on a fresh temporary directory (file store, memory
    /// cache, its own socket) with snykey's simulated Snyk on a loopback
    /// address, stores a demo credential (org demo-org, client demo-app) and
    /// prints the commands to try next: the helper, `exec`, `status`, and a
    /// `login --no-browser` whose URL the simulated Snyk completes. Nothing
    /// is sent to Snyk: a SNYKEY_SNYK_API_URL or SNYKEY_SNYK_APP_URL that is
    /// not a loopback address is refused (exit 78); other SNYKEY_* settings
    /// except [refresh] ones are ignored. Ctrl-C stops it and deletes the
    /// directory.
    Dev {
        #[command(flatten)]
        log: LogOpts,
    },
    /// Store a credential in the agent (secrets from files, `-` for stdin; never from argv).
    Put(PutArgs),
    /// Print a token (same as snykey-helper: ORG_ID and CLIENT_ID may come from SNYKEY_ORG_ID and SNYKEY_CLIENT_ID), or run a command with it.
    ///
    /// From the agent on the socket; or, with --from-openbao, as a CI job on
    /// a machine without an agent: the token an agent published in OpenBao
    /// ([publish]), read with the job's own identity (OpenBao's JWT auth: a
    /// JWT from --jwt-file, --jwt-env or --github-oidc). The OpenBao token
    /// the job gets is revoked after the read and never shown. A published
    /// token with less than --min-validity left is refused (exit 75).
    ///
    /// `snykey token ORG_ID CLIENT_ID -- COMMAND [ARG...]` runs COMMAND with
    /// SNYK_OAUTH_TOKEN, SNYK_API and SNYK_CFG_ORG (unless already set) in its
    /// environment and exits with its status, like `snykey-helper exec`.
    Token {
        #[command(flatten)]
        credential: TokenCredential,
        /// The token must stay valid at least this long (300, 5m, 1h30m, "5 minutes"); with --from-openbao default 5m.
        #[arg(long, value_parser = duration)]
        min_validity: Option<Duration>,
        /// token: the token alone; json: token and expiry; env: `export SNYK_OAUTH_TOKEN=...`.
        #[arg(long, value_enum, default_value_t = FormatArg::Token)]
        format: FormatArg,
        #[command(flatten)]
        openbao: FromOpenBaoArgs,
        #[command(flatten)]
        agent: AgentOpts,
        /// A command to run with the token in its environment instead of printing it (after `--`).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Mint a new access token now (e.g. after a 401 for a revoked token).
    ///
    /// At most one forced refresh per credential per refresh.force_interval
    /// (10 s); requests inside it get the token that one minted.
    Refresh {
        #[command(flatten)]
        credential: TokenCredential,
        /// Print the new token like `snykey token` (default: one line saying until when it is valid).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Show every credential the secret store holds, with its state in this agent.
    ///
    /// Exits 75 and says "store unreachable" when the agent cannot read the
    /// store (never an empty list that only looks true).
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Delete a credential (and with --revoke, revoke its refresh token at Snyk first).
    Delete {
        #[command(flatten)]
        credential: Credential,
        /// Revoke the refresh token at Snyk before deleting it here.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Log in through the browser (OAuth with PKCE) and let the agent manage the credential.
    Login(LoginArgs),
    /// Register a Snyk App (its secret goes straight into the store) and log in to it.
    RegisterApp(RegisterAppArgs),
    /// Manage Snyk service accounts (org or group level).
    #[command(subcommand)]
    ServiceAccount(SaCommand),
    /// Make the running agent re-read its config file, and say what changed.
    ///
    /// Waits until the agent applied the file or refused it. Exit 0 when
    /// applied (keys that cannot change live are named: they need a restart);
    /// 78 with the reason when the file is invalid, and the agent keeps
    /// running on the configuration it had. The systemd unit's ExecReload=
    /// (`systemctl reload snykey`). Admins only; SIGHUP does the same without
    /// an answer.
    Reload {
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Exit 0 when the agent can serve tokens (`/v1/ready`), else 75 with the reason.
    ///
    /// For probes (a Kubernetes startupProbe or readinessProbe of the agent
    /// container): the store and the cache answer, and the store is unsealed.
    Ready {
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Print the effective configuration (secrets redacted), or say what is wrong with it.
    CheckConfig {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check everything and say for each failure what to do (exit 0 only when all pass).
    ///
    /// In order: the socket, the agent and the allow-list, the config, store
    /// and cache, the store kind, the cache's role, Snyk and the clock, file
    /// modes, every credential's state. Exit 0 when all pass, else 1.
    Doctor {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON for scripts: {"ok": bool, "checks": [{name, ok, detail, remedy?}]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Print a shell completion script (e.g. `snykey completions bash > /etc/bash_completion.d/snykey`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the configuration reference of this build (docs/configuration.md, Markdown).
    ///
    /// Every key of the config file with its type, default, SNYKEY_* variable,
    /// whether `snykey reload` applies it at once, and what is checked;
    /// written from the code that reads the configuration.
    ConfigReference,
    /// Print the man page snykey(1), or with --dir write it and one page per subcommand there.
    Man {
        /// Write snykey.1 and snykey-SUBCOMMAND.1 into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The audit log (server.audit_log).
    #[command(subcommand)]
    Audit(AuditCommand),
}

impl Command {
    /// `--socket` given after the subcommand, for those that talk to the agent.
    pub fn agent_opts(&self) -> Option<&AgentOpts> {
        match self {
            Command::Put(PutArgs { agent, .. })
            | Command::Token { agent, .. }
            | Command::Refresh { agent, .. }
            | Command::Status { agent, .. }
            | Command::Reload { agent }
            | Command::Ready { agent }
            | Command::Delete { agent, .. }
            | Command::Doctor { agent, .. }
            | Command::Login(LoginArgs { agent, .. })
            | Command::RegisterApp(RegisterAppArgs { agent, .. }) => Some(agent),
            Command::ServiceAccount(sa) => Some(&sa.scope().agent),
            Command::Serve { .. }
            | Command::Dev { .. }
            | Command::CheckConfig { .. }
            | Command::ConfigReference
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Audit(_) => None,
        }
    }
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

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain through FILEs, oldest first (e.g. audit.log.1 audit.log);
    /// exit 0 when intact, 65 naming the first broken line otherwise.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
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

#[cfg(test)]
mod tests {
    use super::{Cli, Command, FormatArg};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("snykey").chain(args.iter().copied()))
    }

    #[test]
    fn an_unknown_kind_or_format_is_a_usage_error_not_none() {
        let base = ["put", "--org-id", "o", "--client-id", "c", "--kind"];
        let e = parse(&[&base[..], &["bogus"]].concat())
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidValue));
        assert!(parse(&[&base[..], &["private_key_jwt"]].concat()).is_ok());
        let e = parse(&["token", "o", "c", "--format", "yaml"])
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidValue));
        match parse(&["refresh", "o", "c", "--format", "env"]).map(|c| c.command) {
            Ok(Command::Refresh { format, .. }) => {
                assert!(matches!(format, Some(FormatArg::Env)))
            }
            _ => panic!("refresh --format env did not parse"),
        }
    }

    /// The options a subcommand's help lists (issue 24: `--socket` was on
    /// every page, `man` included).
    fn options_of(path: &[&str]) -> Vec<String> {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let mut at = &cmd;
        for name in path {
            at = at.find_subcommand(name).unwrap();
        }
        at.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    #[test]
    fn each_subcommand_lists_only_the_options_it_uses() {
        for local in [
            &["man"][..],
            &["completions"],
            &["check-config"],
            &["audit", "verify"],
        ] {
            let opts = options_of(local);
            for o in ["socket", "log-level", "log-format"] {
                assert!(
                    !opts.contains(&o.to_string()),
                    "{local:?} lists --{o}: {opts:?}"
                );
            }
        }
        let serve = options_of(&["serve"]);
        assert!(serve.contains(&"log-level".into()) && serve.contains(&"log-format".into()));
        assert!(!serve.contains(&"socket".into()), "{serve:?}");
        for client in [
            &["status"][..],
            &["token"],
            &["put"],
            &["login"],
            &["doctor"],
            &["service-account", "list"],
        ] {
            let opts = options_of(client);
            assert!(opts.contains(&"socket".into()), "{client:?}: {opts:?}");
            assert!(!opts.contains(&"log-level".into()), "{client:?}: {opts:?}");
        }
        // Both places still work, the one after the subcommand winning.
        let c = parse(&["--socket", "/a", "status", "--socket", "/b"])
            .ok()
            .unwrap();
        assert_eq!(c.command.agent_opts().unwrap().socket, Some("/b".into()));
        assert_eq!(c.socket, Some("/a".into()));
        let c = parse(&["--log-format", "json", "serve"]).ok().unwrap();
        assert!(matches!(c.log.log_format, Some(super::LogFormat::Json)));
    }

    #[test]
    fn bad_ids_and_durations_are_refused_before_anything_is_sent() {
        for args in [
            &["token", "o", "a:b"][..],
            &["delete", "../x", "c"],
            &["token", "o", "c", "--min-validity", "5 parsecs"],
            &["login", "--org-id", "o o", "--client-id", "c"],
        ] {
            let e = parse(args).err().map(|e| e.kind());
            assert_eq!(e, Some(ErrorKind::ValueValidation), "{args:?}");
        }
        for given in ["1h30m", "90 minutes", "5400"] {
            match parse(&["token", "o", "c", "--min-validity", given]).map(|c| c.command) {
                Ok(Command::Token { min_validity, .. }) => {
                    assert_eq!(min_validity, Some(std::time::Duration::from_secs(5400)))
                }
                _ => panic!("token --min-validity {given} did not parse"),
            }
        }
    }
}

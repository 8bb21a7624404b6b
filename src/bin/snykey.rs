//! `snykey`: the agent (`snykey serve`) and the admin CLI (SPEC §6).
//! Thin: parses arguments, calls the library, maps errors to exit codes.

use clap::{Args, Parser, Subcommand, ValueEnum};
use hyper::Method;
use snykey::client::{AgentClient, ClientError};
use snykey::config::Config;
use snykey::exit;
use snykey::render::{Format, token_output};
use snykey::secret::Secret;
use snykey::wire::{
    CredentialList, Kind, LoginStarted, LoginState, LoginStatus, Message, PutCredential,
    PutCredentialResponse, TokenResponse,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// jemalloc instead of glibc's malloc: an agent holding 10 000 credentials
/// allocates its long-lived per-credential state in the middle of a burst of
/// short-lived buffers (10 000 start-up grants, HTTP bodies, store rewrites).
/// glibc's malloc strands the freed memory between the survivors (43–46 MiB
/// resident for 23 MiB in use, even after `malloc_trim`); jemalloc's size
/// classes keep the survivors packed and return the rest (32 MiB resident,
/// BENCHMARKS.md). mimalloc was measured too and kept 68 MiB.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (read once, before the first allocation):
/// a background thread returns freed pages after a second even while the
/// agent is idle (otherwise purging waits for the next allocation), straight
/// to the system (`muzzy_decay_ms:0`), and two arenas instead of four per core
/// (the agent's few threads do not contend; fewer arenas strand less memory).
/// `_RJEM_MALLOC_CONF` in the environment can still override them (the
/// crate builds jemalloc with the `_rjem_` prefix).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "snykey",
    version = snykey::LONG_VERSION,
    about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket",
    long_about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket.\n\n`snykey serve` is the agent: it keeps each credential's refresh token or client secret in a secret store and mints access tokens. The other subcommands talk to a running agent over its socket. Tools get a token with `snykey-helper ORG_ID CLIENT_ID`.",
    after_help = "Exit codes: 0 ok, 64 usage, 66 unknown credential, 69 agent unreachable, 75 temporary failure (retry), 77 not permitted (log in again, or this uid is not allowed), 78 invalid configuration."
)]
struct Cli {
    /// The agent socket (clients); default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock or /run/snykey/snykey.sock.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Log filter (tracing syntax, e.g. `info`, `snykey=debug`); default $SNYKEY_LOG or `info`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Serve {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Store a credential in the agent (secrets from files, `-` for stdin; never from argv).
    Put(PutArgs),
    /// Print a token (same as snykey-helper).
    Token {
        /// The Snyk organization (or group) id.
        org_id: String,
        /// The OAuth client id of the app or service account.
        client_id: String,
        /// The token must stay valid at least this long (300, 5m, 1h30m).
        #[arg(long)]
        min_validity: Option<String>,
        /// token: the token alone; json: token and expiry; env: `export SNYK_OAUTH_TOKEN=...`.
        #[arg(long, default_value = "token", value_parser = ["token", "json", "env"])]
        format: String,
    },
    /// Mint a new access token now (e.g. after a 401 for a revoked token).
    ///
    /// At most one forced refresh per credential per refresh.force_interval
    /// (10 s); requests inside it get the token that one minted.
    Refresh {
        /// The Snyk organization (or group) id.
        org_id: String,
        /// The OAuth client id of the app or service account.
        client_id: String,
        /// Print the new token like `snykey token` (default: one line saying until when it is valid).
        #[arg(long, value_parser = ["token", "json", "env"])]
        format: Option<String>,
    },
    /// Show every credential's state.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a credential (and with --revoke, revoke its refresh token at Snyk first).
    Delete {
        /// The Snyk organization (or group) id.
        org_id: String,
        /// The OAuth client id.
        client_id: String,
        /// Revoke the refresh token at Snyk before deleting it here.
        #[arg(long)]
        revoke: bool,
    },
    /// Log in through the browser (OAuth with PKCE) and let the agent manage the credential.
    Login {
        /// The Snyk organization id the app is installed in.
        #[arg(long)]
        org_id: String,
        /// The Snyk App's client id.
        #[arg(long)]
        client_id: String,
        /// The app's client secret (a file, or - for stdin); default: the one stored.
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        /// Scopes to request, comma-separated (default: the app's).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Only print the URL; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Register a Snyk App (its secret goes straight into the store) and log in to it.
    RegisterApp {
        /// The Snyk organization to register the app in.
        #[arg(long)]
        org_id: String,
        /// The app's name, as shown to users.
        #[arg(long)]
        name: String,
        /// Scopes, comma-separated (e.g. org.read,org.project.read).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Redirect URIs (repeatable); default: the agent's callback listener.
        #[arg(long)]
        redirect_uri: Vec<String>,
        /// "tenant" (default) or "user".
        #[arg(long)]
        context: Option<String>,
        /// A Snyk API token allowed to create apps (a file, or - for stdin).
        #[arg(long)]
        auth_token_file: PathBuf,
        /// Only print the URL; do not open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Manage Snyk service accounts (org or group level).
    #[command(subcommand)]
    ServiceAccount(SaCommand),
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
    },
    /// Print a shell completion script (e.g. `snykey completions bash > /etc/bash_completion.d/snykey`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain through FILEs, oldest first (e.g. audit.log.1 audit.log);
    /// exit 0 when intact, 65 naming the first broken line otherwise.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct SaScope {
    /// An org-level service account: the org id.
    #[arg(
        long,
        conflicts_with = "group_id",
        required_unless_present = "group_id"
    )]
    org_id: Option<String>,
    /// A group-level service account: the group id.
    #[arg(long)]
    group_id: Option<String>,
    /// A Snyk API token allowed to manage service accounts (a file, or - for stdin).
    #[arg(long)]
    auth_token_file: PathBuf,
}

#[derive(Args, Clone)]
struct SaTarget {
    /// The service account's id at Snyk.
    #[arg(
        long,
        conflicts_with = "client_id",
        required_unless_present = "client_id"
    )]
    service_account_id: Option<String>,
    /// Or its OAuth client id.
    #[arg(long)]
    client_id: Option<String>,
}

#[derive(Subcommand)]
enum SaCommand {
    /// List the service accounts (a table; --json for JSON).
    List {
        #[command(flatten)]
        scope: SaScope,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create one; an oauth_client_secret account is stored and managed at once.
    Create {
        #[command(flatten)]
        scope: SaScope,
        /// Its name at Snyk.
        #[arg(long)]
        name: String,
        /// How it authenticates: a client secret, or a private key JWT (needs --jwks-url).
        #[arg(long, value_parser = ["oauth_client_secret", "oauth_private_key_jwt"])]
        auth_type: String,
        /// The role it gets (a role id from Snyk).
        #[arg(long)]
        role_id: String,
        /// Where Snyk finds its public keys (oauth_private_key_jwt).
        #[arg(long)]
        jwks_url: Option<String>,
        /// Access token lifetime (e.g. 1h).
        #[arg(long)]
        access_token_ttl: Option<String>,
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
        #[arg(long, value_parser = ["replace"])]
        mode: Option<String>,
    },
}

#[derive(Args)]
struct PutArgs {
    /// The Snyk organization (or group) id.
    #[arg(long)]
    org_id: String,
    /// The OAuth client id.
    #[arg(long)]
    client_id: String,
    /// oauth_app (default), client_secret or private_key_jwt.
    #[arg(long, value_parser = ["oauth_app", "client_secret", "private_key_jwt"])]
    kind: Option<String>,
    /// The client secret (a file, or - for stdin).
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// oauth_app: the refresh token (a file, or - for stdin); it is rotated at once.
    #[arg(long)]
    refresh_token_file: Option<PathBuf>,
    /// private_key_jwt: the RSA private key, PEM (a file, or - for stdin).
    #[arg(long)]
    private_key_file: Option<PathBuf>,
    /// private_key_jwt: the key id (`kid`) Snyk knows the key by.
    #[arg(long)]
    key_id: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors; everything else is a
            // usage error, and usage errors exit 64 everywhere (not clap's 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::Serve { ref config } => serve(&cli, config.as_deref()),
        Command::CheckConfig { ref config } => check_config(config.as_deref()),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "snykey", &mut std::io::stdout());
            exit::OK
        }
        Command::Man { ref dir } => man(dir.as_deref()),
        Command::Doctor { ref config, json } => doctor(&cli, config.as_deref(), json),
        Command::Audit(AuditCommand::Verify { ref files }) => audit_verify(files),
        _ => client_command(cli),
    };
    ExitCode::from(code as u8)
}

/// `snykey doctor`: exit 0 only when every check passes, 1 otherwise.
fn doctor(cli: &Cli, config: Option<&Path>, json: bool) -> i32 {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(snykey::paths::default_socket);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("snykey: cannot start: {e}");
            return exit::SOFTWARE;
        }
    };
    let report = runtime.block_on(snykey::doctor::run(config, &socket));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.ok { exit::OK } else { 1 }
}

/// `snykey man`: snykey(1) on stdout, or every page into a directory.
fn man(dir: Option<&Path>) -> i32 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let result = match dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(d) => std::fs::create_dir_all(d).and_then(|_| clap_mangen::generate_to(cmd, d)),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("snykey: cannot write the man page: {e}");
            exit::CANT_CREATE
        }
    }
}

/// Sets up logging on stderr; returns a function that changes the filter (SIGHUP).
/// The function that changes the log filter later.
type ApplyFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

fn init_logging(level: Option<&str>, format: LogFormat) -> ApplyFilter {
    let filter_text = snykey::agent::effective_log_filter(level.unwrap_or("info"));
    let filter = EnvFilter::try_new(&filter_text).unwrap_or_else(|e| {
        eprintln!("snykey: invalid log filter {filter_text:?} ({e}); using info");
        EnvFilter::new("info")
    });
    let (filter, handle) = reload::Layer::new(filter);
    // Under systemd with stderr connected to the journal, log to journald
    // natively (structured fields, levels as priorities).
    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let fmt = match (journald, format) {
        (Some(j), _) => j.with_syslog_identifier("snykey".into()).boxed(),
        (None, LogFormat::Text) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        (None, LogFormat::Json) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
    Box::new(move |text: &str| {
        let f = EnvFilter::try_new(snykey::agent::effective_log_filter(text))
            .map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

/// `JOURNAL_STREAM=dev:inode` names the journal's stream; it is ours only if
/// stderr is that very file (systemd(1), "JOURNAL_STREAM").
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    let fd = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned();
    let Ok(fd) = fd else { return false };
    let file = std::fs::File::from(fd);
    file.metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

fn serve(cli: &Cli, config: Option<&Path>) -> i32 {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snykey: invalid configuration: {e}");
            return exit::CONFIG;
        }
    };
    // --log-level, then SNYKEY_LOG, pin the filter; otherwise the file's
    // server.log_level (which SIGHUP re-reads), else info.
    let pinned = cli
        .log_level
        .clone()
        .or_else(|| std::env::var("SNYKEY_LOG").ok())
        .filter(|l| !l.is_empty());
    let apply = init_logging(
        pinned.as_deref().or(cfg.server.log_level.as_deref()),
        cli.log_format,
    );
    let reloader: snykey::agent::LogReloader = Box::new(move |file_level: Option<&str>| {
        match &pinned {
            Some(p) => Ok(format!(
                "log filter stays {p:?} (set by --log-level or SNYKEY_LOG, which override server.log_level)"
            )),
            None => {
                let level = file_level.unwrap_or("info");
                apply(level)?;
                Ok(format!("log filter is now {level:?}"))
            }
        }
    });
    // Everything that touches the process (umask, env) happens before threads exist.
    snykey::dirs::allow_shared_dirs(cfg.server.allow_shared_dirs);
    let notifier = snykey::systemd::Notifier::from_env();
    let bound = match snykey::api::socket::from_systemd(&cfg.server.socket) {
        Ok(Some(b)) => b,
        Ok(None) => match snykey::api::socket::bind(&cfg.server.socket, cfg.server.socket_mode) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{e}");
                return exit::UNAVAILABLE;
            }
        },
        Err(e) => {
            tracing::error!("{e}");
            return exit::UNAVAILABLE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("snykey")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return exit::SOFTWARE;
        }
    };
    let socket_path = bound.path.clone();
    let created = bound.created;
    match runtime.block_on(snykey::agent::run(cfg, bound, notifier, Some(reloader))) {
        Ok(()) => exit::OK,
        Err(e) => {
            tracing::error!("{e}");
            if created {
                let _ = std::fs::remove_file(&socket_path);
            }
            exit::SOFTWARE
        }
    }
}

/// `snykey audit verify FILE...`.
fn audit_verify(files: &[PathBuf]) -> i32 {
    match snykey::audit::verify(files) {
        Ok(v) => {
            println!(
                "ok: {} line(s) in {} file(s), the hash chain is intact; the last line's SHA-256 is {}",
                v.lines,
                files.len(),
                v.last_hash
            );
            if v.starts_mid_chain {
                println!(
                    "note: the first line continues a chain from an earlier file that was not given (a rotated log?)"
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("snykey: audit log check failed: {e}");
            exit::DATA_ERR
        }
    }
}

fn check_config(config: Option<&Path>) -> i32 {
    match Config::load(config) {
        Ok(c) => {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            println!("# access: {}", c.access.policy(&c.server, uid).summary());
            print!("{}", c.to_redacted_toml());
            if let Some(w) = c.protection_warning() {
                eprintln!("snykey: warning: {w}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("snykey: invalid configuration: {e}");
            exit::CONFIG
        }
    }
}

/// Reads a secret from a file or `-` (stdin). Never from argv.
fn read_secret(what: &str, path: &Path, stdin_used: &mut bool) -> Result<Secret, String> {
    let mut text = String::new();
    if path == Path::new("-") {
        if *stdin_used {
            return Err(format!(
                "only one secret can come from stdin ({what} asks for it too)"
            ));
        }
        *stdin_used = true;
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {what} from stdin: {e}"))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {what} from {}: {e}", path.display()))?;
    }
    let s = Secret::new(text);
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(s)
}

fn client_command(cli: Cli) -> i32 {
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(snykey::paths::default_socket);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("snykey: cannot start: {e}");
            return exit::SOFTWARE;
        }
    };
    // A put may wait on Snyk (with its retries); the agent's own timeouts come first.
    let client = AgentClient::new(&socket, Duration::from_secs(120));
    let result: Result<(), ClientError> = runtime.block_on(async {
        match cli.command {
            Command::Put(args) => put(&client, args).await,
            Command::Token {
                org_id,
                client_id,
                min_validity,
                format,
            } => {
                for (name, v) in [("org_id", &org_id), ("client_id", &client_id)] {
                    snykey::ids::check_id(name, v).map_err(|e| usage(e.to_string()))?;
                }
                let mut path = format!("/v1/credentials/{org_id}/{client_id}");
                if let Some(mv) = min_validity {
                    let d = snykey::duration::parse_duration(&mv)
                        .map_err(|e| usage(format!("--min-validity: {e}")))?;
                    path.push_str(&format!("?min_validity={}", d.as_secs()));
                }
                let t: TokenResponse = client.call(Method::GET, &path, None).await?;
                let format = Format::parse(&format).unwrap_or(Format::Token);
                print!(
                    "{}",
                    token_output(
                        format,
                        t.access_token.expose(),
                        &t.expires_at,
                        t.snyk_api.as_deref()
                    )
                );
                Ok(())
            }
            Command::Refresh {
                org_id,
                client_id,
                format,
            } => {
                for (name, v) in [("org_id", &org_id), ("client_id", &client_id)] {
                    snykey::ids::check_id(name, v).map_err(|e| usage(e.to_string()))?;
                }
                let path = format!("/v1/credentials/{org_id}/{client_id}/refresh");
                let t: TokenResponse = client.call(Method::POST, &path, None).await?;
                match format.as_deref().and_then(Format::parse) {
                    Some(f) => print!(
                        "{}",
                        token_output(f, t.access_token.expose(), &t.expires_at, t.snyk_api.as_deref())
                    ),
                    None => println!(
                        "{org_id}/{client_id}: a new access token, valid until {}",
                        t.expires_at
                    ),
                }
                Ok(())
            }
            Command::Status { json } => {
                let list: CredentialList =
                    client.call(Method::GET, "/v1/credentials", None).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&list).unwrap_or_default()
                    );
                } else {
                    print!("{}", status_table(&list));
                }
                Ok(())
            }
            Command::Delete {
                org_id,
                client_id,
                revoke,
            } => {
                for (name, v) in [("org_id", &org_id), ("client_id", &client_id)] {
                    snykey::ids::check_id(name, v).map_err(|e| usage(e.to_string()))?;
                }
                let path = format!(
                    "/v1/credentials/{org_id}/{client_id}{}",
                    if revoke { "?revoke=true" } else { "" }
                );
                let m: Message = client.call(Method::DELETE, &path, None).await?;
                println!("{}", m.message);
                Ok(())
            }
            Command::Login { org_id, client_id, client_secret_file, scopes, no_browser } => {
                let mut stdin_used = false;
                let client_secret = client_secret_file
                    .as_deref()
                    .map(|p| read_secret("the client secret", p, &mut stdin_used))
                    .transpose()
                    .map_err(usage)?;
                if client_secret.is_none() {
                    refuse_login_without_secret(&client, &org_id, &client_id).await?;
                }
                let req = snykey::wire::LoginRequest { org_id, client_id, client_secret, redirect_uri: None, scopes };
                let body = serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
                let started: LoginStarted = client.call(Method::POST, "/v1/login", Some(body)).await?;
                follow_login(&client, started, no_browser).await
            }
            Command::RegisterApp { org_id, name, scopes, redirect_uri, context, auth_token_file, no_browser } => {
                let mut stdin_used = false;
                let auth_token = read_secret("the Snyk auth token", &auth_token_file, &mut stdin_used).map_err(usage)?;
                let req = snykey::wire::RegisterAppRequest { org_id, name, scopes, redirect_uris: redirect_uri, context, auth_token };
                let body = serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
                let started: LoginStarted = client.call(Method::POST, "/v1/register-app", Some(body)).await?;
                if let Some(id) = &started.client_id {
                    println!("registered the Snyk App; its client id is {id} (the client secret is in the secret store)");
                }
                follow_login(&client, started, no_browser).await
            }
            Command::ServiceAccount(sa) => service_account(&client, sa).await,
            Command::Serve { .. }
            | Command::CheckConfig { .. }
            | Command::Completions { .. }
            | Command::Doctor { .. }
            | Command::Man { .. }
            | Command::Audit(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("snykey: {}", e.report());
            e.exit_code()
        }
    }
}

async fn service_account(client: &AgentClient, cmd: SaCommand) -> Result<(), ClientError> {
    let base = |scope: &SaScope| -> Result<snykey::wire::ServiceAccountRequest, ClientError> {
        let mut stdin_used = false;
        let auth_token = read_secret(
            "the Snyk auth token",
            &scope.auth_token_file,
            &mut stdin_used,
        )
        .map_err(usage)?;
        Ok(snykey::wire::ServiceAccountRequest {
            org_id: scope.org_id.clone(),
            group_id: scope.group_id.clone(),
            auth_token,
            ..Default::default()
        })
    };
    let (op, req, list_json) = match cmd {
        SaCommand::List { scope, json } => ("list", base(&scope)?, Some(json)),
        SaCommand::Create {
            scope,
            name,
            auth_type,
            role_id,
            jwks_url,
            access_token_ttl,
        } => {
            let ttl = access_token_ttl
                .map(|t| {
                    snykey::duration::parse_duration(&t)
                        .map(|d| d.as_secs())
                        .map_err(|e| usage(format!("--access-token-ttl: {e}")))
                })
                .transpose()?;
            let req = snykey::wire::ServiceAccountRequest {
                name: Some(name),
                auth_type: Some(auth_type),
                role_id: Some(role_id),
                jwks_url,
                access_token_ttl_seconds: ttl,
                ..base(&scope)?
            };
            ("create", req, None)
        }
        SaCommand::Delete { scope, target } => (
            "delete",
            snykey::wire::ServiceAccountRequest {
                service_account_id: target.service_account_id,
                client_id: target.client_id,
                ..base(&scope)?
            },
            None,
        ),
        SaCommand::RotateSecret {
            scope,
            target,
            mode,
        } => (
            "rotate-secret",
            snykey::wire::ServiceAccountRequest {
                service_account_id: target.service_account_id,
                client_id: target.client_id,
                mode,
                ..base(&scope)?
            },
            None,
        ),
    };
    let body = serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let path = format!("/v1/service-accounts/{op}");
    if let Some(json) = list_json {
        let list: snykey::wire::ServiceAccountList =
            client.call(Method::POST, &path, Some(body)).await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        } else if list.service_accounts.is_empty() {
            println!("no service accounts");
        } else {
            let w = |f: &dyn Fn(&snykey::wire::ServiceAccount) -> usize, min: usize| {
                list.service_accounts
                    .iter()
                    .map(f)
                    .max()
                    .unwrap_or(0)
                    .max(min)
            };
            let (wi, wn, wa) = (
                w(&|s| s.id.len(), 2),
                w(&|s| s.name.len(), 4),
                w(&|s| s.auth_type.len(), 9),
            );
            println!(
                "{:<wi$}  {:<wn$}  {:<wa$}  CLIENT ID",
                "ID", "NAME", "AUTH TYPE"
            );
            for s in &list.service_accounts {
                println!(
                    "{:<wi$}  {:<wn$}  {:<wa$}  {}",
                    s.id, s.name, s.auth_type, s.client_id
                );
            }
        }
        return Ok(());
    }
    let r: snykey::wire::ServiceAccountResult =
        client.call(Method::POST, &path, Some(body)).await?;
    println!("{}", r.message);
    Ok(())
}

/// Prints the authorize URL, opens the browser if it can, and waits with a
/// visible countdown until the agent reports the login complete or failed.
async fn follow_login(
    client: &AgentClient,
    started: LoginStarted,
    no_browser: bool,
) -> Result<(), ClientError> {
    println!(
        "Open this URL in a browser and approve the app:\n\n  {}\n",
        started.authorize_url
    );
    let has_display = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos");
    if !no_browser && has_display {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(&started.authorize_url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => eprintln!("(opened it with {opener})"),
            Err(e) => eprintln!("(could not run {opener}: {e}; open the URL by hand)"),
        }
    }
    let deadline = humantime::parse_rfc3339(&started.expires_at)
        .unwrap_or_else(|_| std::time::SystemTime::now() + Duration::from_secs(600));
    let path = format!("/v1/login/{}?wait=5", started.state);
    // On a terminal, one line redrawn in place; elsewhere (a log, a pipe) one
    // line per minute instead of a pile of `\r` frames.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_minute = None;
    loop {
        let left = deadline
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let (m, sec) = (left.as_secs() / 60, left.as_secs() % 60);
        if terminal {
            eprint!(
                "\rwaiting for the browser to come back to the agent's callback ({m}m{sec:02}s left) "
            );
        } else if last_minute != Some(m) {
            last_minute = Some(m);
            eprintln!(
                "waiting for the browser to come back to the agent's callback ({m}m{sec:02}s left)"
            );
        }
        let status: LoginStatus = client.call(Method::GET, &path, None).await?;
        match status.state {
            LoginState::Pending => continue,
            LoginState::Complete => {
                if terminal {
                    eprintln!();
                }
                println!(
                    "login complete: snykey now manages {}/{}",
                    status.org_id, status.client_id
                );
                return Ok(());
            }
            LoginState::Failed => {
                if terminal {
                    eprintln!();
                }
                let error = status.error.unwrap_or_else(|| "the login failed".into());
                let expired = error.contains("expired");
                return Err(ClientError::Api {
                    status: if expired { 504 } else { 409 },
                    code: "login_failed".into(),
                    error,
                });
            }
        }
    }
}

/// `snykey login` without `--client-secret-file` logs in with the stored
/// secret: refuse at once when the agent holds no such credential, instead of
/// waiting for a browser login that cannot succeed.
async fn refuse_login_without_secret(
    client: &AgentClient,
    org_id: &str,
    client_id: &str,
) -> Result<(), ClientError> {
    let list: CredentialList = client.call(Method::GET, "/v1/credentials", None).await?;
    if list
        .credentials
        .iter()
        .any(|c| c.org_id == org_id && c.client_id == client_id)
    {
        return Ok(());
    }
    Err(ClientError::Api {
        status: 404,
        code: "usage".into(),
        error: format!(
            "the agent holds no credential {org_id}/{client_id}, so it has no client secret to log in with: give it with --client-secret-file FILE (or - for stdin)"
        ),
    })
}

fn usage(message: String) -> ClientError {
    ClientError::Api {
        status: 400,
        code: "usage".into(),
        error: message,
    }
}

async fn put(client: &AgentClient, args: PutArgs) -> Result<(), ClientError> {
    let mut stdin_used = false;
    let kind = args.kind.as_deref().and_then(Kind::parse);
    let mut read = |what: &str, p: &Option<PathBuf>| -> Result<Option<Secret>, ClientError> {
        p.as_deref()
            .map(|p| read_secret(what, p, &mut stdin_used))
            .transpose()
            .map_err(usage)
    };
    let body = PutCredential {
        org_id: args.org_id,
        client_id: args.client_id,
        kind,
        client_secret: read("the client secret", &args.client_secret_file)?,
        refresh_token: read("the refresh token", &args.refresh_token_file)?,
        private_key_pem: read("the private key", &args.private_key_file)?,
        key_id: args.key_id,
    };
    for (name, v) in [("org_id", &body.org_id), ("client_id", &body.client_id)] {
        snykey::ids::check_id(name, v).map_err(|e| usage(e.to_string()))?;
    }
    let json = serde_json::to_vec(&body).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let r: PutCredentialResponse = client
        .call(Method::PUT, "/v1/credentials", Some(json))
        .await?;
    println!(
        "stored {} credential {}/{}; its access token is valid until {}",
        r.kind.as_str(),
        r.org_id,
        r.client_id,
        r.expires_at
    );
    Ok(())
}

fn status_table(list: &CredentialList) -> String {
    if list.credentials.is_empty() {
        return "no credentials: add one with `snykey put` or `snykey login`\n".into();
    }
    let header = [
        "ORG",
        "CLIENT",
        "KIND",
        "STATE",
        "EXPIRES",
        "NEXT REFRESH",
        "LAST REFRESH",
        "FAILURES",
        "LAST ERROR",
    ];
    let rows: Vec<[String; 9]> = list
        .credentials
        .iter()
        .map(|c| {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            [
                c.org_id.clone(),
                c.client_id.clone(),
                c.kind.as_str().into(),
                c.state.as_str().into(),
                dash(&c.expires_at),
                dash(&c.next_refresh_at),
                dash(&c.last_refresh_at),
                c.failures.to_string(),
                dash(&c.last_error),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(8) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 8 {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

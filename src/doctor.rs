//! `snykey doctor`: every check an operator would make by hand, in order,
//! each with what it found and, when it fails, what to do. Runs as the
//! calling user, against the agent's socket and the config file.
//!
//! The store and cache are checked through the agent (`/v1/ready`): it holds
//! their credentials, the calling user normally does not.

use crate::client::{AgentClient, ClientError};
use crate::config::on_disk::Problem;
use crate::config::{CacheBackend, Config, StoreBackend};
use crate::wire::{CredentialList, CredentialStatus, ErrorCode, Message, State, paths};
use hyper::Method;
use serde::Serialize;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The largest clock difference with Snyk that passes: a `private_key_jwt`
/// assertion lives 5 minutes, and expiry times are computed locally.
const MAX_SKEW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// What to do, for a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    /// One line per check: `✓ name: detail` or `✗ name: detail → remedy`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(if c.ok { "✓ " } else { "✗ " });
            out.push_str(c.name);
            out.push_str(": ");
            out.push_str(&c.detail);
            if let Some(r) = &c.remedy {
                out.push_str(" → ");
                out.push_str(r);
            }
            out.push('\n');
        }
        out.push_str(if self.ok {
            "all checks passed\n"
        } else {
            "some checks failed: see the lines marked ✗\n"
        });
        out
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        remedy: None,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, remedy: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        remedy: Some(remedy.into()),
    }
}

/// Runs every check. `socket`: the one the CLI would use.
pub async fn run(config: Option<&Path>, socket: &Path) -> Report {
    let mut checks = Vec::new();
    checks.push(socket_check(socket));
    let client = AgentClient::new(socket, Duration::from_secs(15));
    let agent_up = agent_check(&client, socket, &mut checks).await;
    let cfg = config_check(config, &mut checks);
    if let Some(cfg) = &cfg {
        checks.extend(files(cfg));
    }
    if agent_up {
        checks.push(ready_check(&client).await);
    }
    if agent_up {
        checks.push(store_writable(&client, cfg.as_ref()).await);
    }
    if let Some(cfg) = &cfg {
        checks.push(store_kind(cfg));
        checks.push(cache_role(cfg));
        checks.extend(snyk_and_clock(cfg).await);
        checks.extend(modes(cfg));
    }
    if agent_up {
        credential_checks(&client, &mut checks).await;
    }
    let ok = checks.iter().all(|c| c.ok);
    Report { ok, checks }
}

/// Whether the agent answers on `socket` (and lets us in).
async fn agent_check(client: &AgentClient, socket: &Path, checks: &mut Vec<Check>) -> bool {
    match client
        .call::<Message>(Method::GET, paths::HEALTH, None)
        .await
    {
        Ok(_) => {
            checks.push(pass("agent", format!("answers on {}", socket.display())));
            true
        }
        Err(ClientError::Api {
            status: 403, error, ..
        }) => {
            checks.push(fail(
                "agent",
                error,
                "ask the agent's operator to add your uid or a group of yours to server.allowed_uids / allowed_gids",
            ));
            false
        }
        Err(e) => {
            checks.push(fail(
                "agent",
                e.to_string(),
                "start it (`systemctl start snykey.socket` or `snykey serve`), or point --socket / SNYKEY_SOCKET at it",
            ));
            false
        }
    }
}

/// The config file (or the defaults), loaded as the agent would.
fn config_check(config: Option<&Path>, checks: &mut Vec<Check>) -> Option<Config> {
    match Config::load(config) {
        Ok(c) => {
            checks.push(pass(
                "config",
                match &c.file {
                    Some(f) => format!("{} is valid", f.display()),
                    None => "no config file: the embedded defaults and SNYKEY_* variables".into(),
                },
            ));
            Some(c)
        }
        Err(e) => {
            checks.push(fail(
                "config",
                e.to_string(),
                "fix the named key (`snykey check-config` prints the effective configuration); if it is not readable by you, run doctor as the agent's user or root",
            ));
            None
        }
    }
}

/// The agent reaches its store and cache (`/v1/ready`). The remedy follows
/// the code the agent answers: the store's own (sealed, denied,
/// unavailable), the cache's, or a journaled token waiting.
async fn ready_check(client: &AgentClient) -> Check {
    let name = "store and cache";
    match client
        .call::<Message>(Method::GET, paths::READY, None)
        .await
    {
        Ok(_) => pass(
            name,
            "the agent reaches its secret store (unsealed) and its token cache",
        ),
        Err(ClientError::Api { code, error, .. }) => {
            let remedy = match code {
                ErrorCode::StoreSealed => {
                    "unseal OpenBao (`bao operator unseal`); the agent resumes by itself"
                }
                ErrorCode::StoreDenied => {
                    "the agent's own OpenBao credentials are missing, unreadable or refused: fix the file or setting named (store.token_file, store.token, the AppRole or Kubernetes files; see the files line above), then restart the agent or let it log in again"
                }
                ErrorCode::StoreUnavailable => {
                    "start OpenBao or make store.addr reach an active node (file store: make the named file or directory usable by the agent); the agent resumes by itself"
                }
                ErrorCode::CacheUnavailable => {
                    "start Redis or make cache.url reach it; the agent resumes by itself"
                }
                _ => "fix what the agent names; it resumes by itself",
            };
            fail(name, error, remedy)
        }
        Err(e) => fail(name, e.to_string(), "see the agent's log"),
    }
}

/// Every file and directory the configuration names, judged as the agent
/// judges them at start ([`Config::check_files`]). A file this user may not
/// look at is not judged here (run doctor as the agent's user or root).
fn files(cfg: &Config) -> Vec<Check> {
    let name = "files";
    let allow_shared = cfg.server.allow_shared_dirs;
    let mut checks = Vec::new();
    let mut hidden = 0;
    for f in cfg.file_findings() {
        if f.is_permission_denied() {
            hidden += 1;
            continue;
        }
        let detail = format!("{}: {}", f.key, f.message());
        let remedy = match &f.problem {
            Problem::Missing => format!(
                "create it, or point {} at the right file; the agent refuses to start without it",
                f.key
            ),
            _ => format!("fix the file {} names, as said", f.key),
        };
        if f.is_fatal(allow_shared) || matches!(f.problem, Problem::ReadableByAll(_)) {
            checks.push(fail(name, detail, remedy));
        } else {
            checks.push(pass(name, detail));
        }
    }
    if checks.is_empty() {
        checks.push(pass(
            name,
            if hidden == 0 {
                "every file and directory the configuration names is in place".to_string()
            } else {
                format!(
                    "every file the configuration names is in place, but {hidden} could not be looked at as this user: run doctor as the agent's user or root to check them"
                )
            },
        ));
    }
    checks
}

/// Every credential the agent holds, each a check.
async fn credential_checks(client: &AgentClient, checks: &mut Vec<Check>) {
    match client
        .call::<CredentialList>(Method::GET, paths::CREDENTIALS, None)
        .await
    {
        Ok(list) if list.credentials.is_empty() => checks.push(pass(
            "credentials",
            "none yet: add one with `snykey put` or `snykey login`",
        )),
        Ok(list) => {
            for c in list.credentials {
                let publish = publish_check(&c);
                checks.push(credential_check(c));
                checks.extend(publish);
            }
        }
        Err(e) => checks.push(fail("credentials", e.to_string(), "see the agent's log")),
    }
}

/// One credential as the agent reports it.
fn credential_check(c: CredentialStatus) -> Check {
    let id = format!("{}/{}", c.org_id, c.client_id);
    let expires = c.expires_at.as_deref().unwrap_or("-");
    let next = c.next_refresh_at.as_deref().unwrap_or("-");
    match c.state {
        State::Pending if c.failures == 0 => pass(
            "credential",
            format!("{id}: pending, its first access token is being minted"),
        ),
        State::Pending => fail(
            "credential",
            format!(
                "{id}: pending, no access token yet after {} failed attempt(s), last: {}",
                c.failures,
                c.last_error.as_deref().unwrap_or("-")
            ),
            format!(
                "the agent retries by itself (next at {next}); fix what the error names (is Snyk reachable? `snyk.api_url`)"
            ),
        ),
        State::Ok | State::Refreshing if c.failures == 0 => pass(
            "credential",
            format!(
                "{id}: {}, token valid until {expires}, next refresh {next}",
                c.state.as_str()
            ),
        ),
        State::Ok | State::Refreshing => fail(
            "credential",
            format!(
                "{id}: {} failed refresh(es), last: {}",
                c.failures,
                c.last_error.as_deref().unwrap_or("-")
            ),
            format!("the agent retries by itself (next at {next}); fix what the error names"),
        ),
        State::NeedsLogin => fail(
            "credential",
            format!(
                "{id}: needs a new login ({})",
                c.last_error
                    .as_deref()
                    .unwrap_or("its refresh token was refused")
            ),
            format!(
                "snykey login --org-id {} --client-id {}",
                c.org_id, c.client_id
            ),
        ),
        State::Degraded => fail(
            "credential",
            format!("{id}: degraded, its newest refresh token is only in the recovery journal"),
            "make the secret store writable again; the agent lands the token by itself",
        ),
    }
}

/// A published credential (`[publish]`): where jobs read its token, and
/// whether the agent can write it there.
fn publish_check(c: &CredentialStatus) -> Option<Check> {
    let p = c.published.as_ref()?;
    let id = format!("{}/{}", c.org_id, c.client_id);
    Some(if p.failures > 0 {
        fail(
            "publish",
            format!(
                "{id}: its token cannot be written to {} ({} failed attempt(s), last: {})",
                p.path,
                p.failures,
                p.last_error.as_deref().unwrap_or("-")
            ),
            format!(
                "the agent's OpenBao policy needs create, read and update on the published path's data ({}), read on its metadata and update on its destroy path (examples/ci/openbao-jwt.sh, policy snykey-publish); jobs find no token or an old one meanwhile, and the agent retries by itself",
                data_path(&p.path)
            ),
        )
    } else if let Some(w) = p.withdrawn {
        fail(
            "publish",
            format!(
                "{id}: {} holds no token ({}): {}",
                p.path,
                w.as_str(),
                w.explain()
            ),
            "a new token replaces it once the agent mints one: see the credential's line above",
        )
    } else if let Some(e) = &p.last_error {
        fail("publish", format!("{id}: {e}"), "do what the message says")
    } else {
        pass(
            "publish",
            match &p.expires_at {
                Some(exp) => format!(
                    "{id}: its token is published at {} (valid until {exp})",
                    p.path
                ),
                None => format!(
                    "{id}: published at {} (this agent has not written or read it yet)",
                    p.path
                ),
            },
        )
    })
}

/// `kv/snyk-tokens/o/c` as a policy names its data: `kv/data/snyk-tokens/o/c`.
fn data_path(path: &str) -> String {
    match path.split_once('/') {
        Some((mount, rest)) => format!("{mount}/data/{rest}"),
        None => path.to_string(),
    }
}

fn socket_check(socket: &Path) -> Check {
    let name = "socket";
    let meta = match std::fs::metadata(socket) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                name,
                format!("{}: {e}", socket.display()),
                "start the agent (`systemctl start snykey.socket` or `snykey serve`), or point --socket / SNYKEY_SOCKET at its socket",
            );
        }
    };
    if !meta.file_type().is_socket() {
        return fail(
            name,
            format!("{} is not a socket", socket.display()),
            "remove it, or point --socket / SNYKEY_SOCKET at the agent's socket",
        );
    }
    let Ok(c) = std::ffi::CString::new(socket.as_os_str().as_encoded_bytes()) else {
        return fail(name, "the path holds a NUL byte", "use another path");
    };
    // SAFETY: a valid NUL-terminated path.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    let mode = meta.permissions().mode() & 0o777;
    if writable {
        pass(
            name,
            format!(
                "{} (mode {mode:04o}, uid {}, gid {}) is usable by you",
                socket.display(),
                meta.uid(),
                meta.gid()
            ),
        )
    } else {
        fail(
            name,
            format!(
                "{} (mode {mode:04o}, gid {}) is not writable by you",
                socket.display(),
                meta.gid()
            ),
            format!(
                "join the socket's group (gid {}; `usermod -aG snykey-clients $USER`, then log in again)",
                meta.gid()
            ),
        )
    }
}

/// Writable, through the agent (it holds the store's credentials): a claim
/// written by check-and-set on a scratch record, read back and removed.
async fn store_writable(client: &AgentClient, cfg: Option<&Config>) -> Check {
    let name = "store writable";
    let paths = match cfg {
        Some(c) if c.store.backend == StoreBackend::OpenBao && c.store.kv_version == 2 => format!(
            "{m}/data/{p}/* and {m}/metadata/{p}/*",
            m = c.store.mount,
            p = c.store.prefix
        ),
        Some(c) if c.store.backend == StoreBackend::OpenBao => {
            format!("{}/{}/*", c.store.mount, c.store.prefix)
        }
        _ => "the store's mount and prefix".into(),
    };
    match client
        .call::<Message>(
            Method::GET,
            &format!("{}?{}=true", paths::READY, paths::WRITE),
            None,
        )
        .await
    {
        Ok(m) => pass(name, m.message),
        Err(ClientError::Api { code, error, .. }) => {
            let remedy = match code {
                ErrorCode::Forbidden => "the write check is an admin operation: run `snykey doctor` as the agent's user, root, or a uid/gid in server.admin_uids / admin_gids".to_string(),
                ErrorCode::StoreSealed => "unseal it (`bao operator unseal`); the agent resumes by itself".to_string(),
                ErrorCode::StoreDenied => format!(
                    "give the agent's OpenBao token (or its AppRole / Kubernetes role) a policy with create, read, update, delete and list on {paths}"
                ),
                _ => "make the named file or directory writable by the agent's user (file store), or bring an active, unsealed OpenBao node back (openbao)".to_string(),
            };
            fail(name, error, remedy)
        }
        Err(e) => fail(name, e.to_string(), "see the agent's log"),
    }
}

fn store_kind(cfg: &Config) -> Check {
    let name = "store";
    match cfg.store.backend {
        StoreBackend::File => pass(
            name,
            format!(
                "file store {} (locked with flock: one agent per file)",
                cfg.store.path.display()
            ),
        ),
        StoreBackend::OpenBao if cfg.store.kv_version == 2 => pass(
            name,
            format!(
                "OpenBao {} KV v2 at {}/{}: check-and-set protects agents that share it",
                cfg.store.addr, cfg.store.mount, cfg.store.prefix
            ),
        ),
        StoreBackend::OpenBao => fail(
            name,
            format!(
                "OpenBao {} KV v1 at {}/{}: no check-and-set, so agents sharing this store are not protected from replaying a refresh token",
                cfg.store.addr, cfg.store.mount, cfg.store.prefix
            ),
            "use a KV v2 mount (store.kv_version = 2), or run a single agent on this prefix",
        ),
    }
}

fn cache_role(cfg: &Config) -> Check {
    match cfg.cache.backend {
        CacheBackend::Memory => pass(
            "cache",
            "memory: this agent only (several agents sharing credentials need cache.backend = \"redis\")",
        ),
        CacheBackend::Redis => pass(
            "cache",
            format!(
                "redis {}: shared by every agent using it (tokens and the refresh lock)",
                crate::config::redact_url_password(cfg.cache.url.expose())
            ),
        ),
    }
}

/// Snyk reachable on the configured region (an unauthenticated request to
/// the token endpoint: any HTTP answer will do), and the local clock against
/// its `Date` header.
async fn snyk_and_clock(cfg: &Config) -> Vec<Check> {
    let url = format!("{}/oauth2/token", cfg.snyk.api_url);
    let http = match reqwest::Client::builder()
        .timeout(cfg.snyk.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            return vec![fail(
                "snyk",
                format!("cannot build an HTTP client: {e}"),
                "report this as a bug",
            )];
        }
    };
    let sent = SystemTime::now();
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            return vec![fail(
                "snyk",
                crate::snyk::describe_transport(&e),
                format!(
                    "check DNS, proxies and firewalls for {} (snyk.api_url picks the region)",
                    cfg.snyk.api_url
                ),
            )];
        }
    };
    let received = SystemTime::now();
    let mut checks = vec![pass(
        "snyk",
        format!(
            "{} answers (HTTP {})",
            cfg.snyk.api_url,
            resp.status().as_u16()
        ),
    )];
    let date = resp
        .headers()
        .get(hyper::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    checks.push(match date {
        None => fail(
            "clock",
            "Snyk's answer had no Date header to compare with",
            "check that nothing between here and Snyk rewrites its answers",
        ),
        Some(theirs) => {
            // Their second falls somewhere in our round trip; HTTP dates have
            // whole seconds.
            let mid = sent + received.duration_since(sent).unwrap_or_default() / 2;
            let skew = match mid.duration_since(theirs) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            if skew.abs() <= MAX_SKEW.as_secs_f64() + 1.0 {
                pass("clock", format!("within {:.0} s of Snyk's", skew.abs().ceil()))
            } else {
                fail(
                    "clock",
                    format!(
                        "{:.0} s {} Snyk's",
                        skew.abs(),
                        if skew > 0.0 { "ahead of" } else { "behind" }
                    ),
                    "synchronise the clock (`timedatectl set-ntp true`, chrony or ntpd): token expiry and JWT assertions depend on it",
                )
            }
        }
    });
    checks
}

/// The modes of what the agent keeps on disk, where this user can see them.
fn modes(cfg: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut check = |what: &str, path: &Path, max: u32, dir: bool| {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            // Not created yet, or not visible to this user: nothing to judge.
            Err(_) => return,
        };
        let mode = meta.permissions().mode() & 0o7777;
        let kind = if dir { "directory" } else { "file" };
        if meta.file_type().is_symlink() {
            checks.push(fail(
                "modes",
                format!("{what} {} is a symlink", path.display()),
                "point the setting at the real path",
            ));
        } else if mode & !max != 0 {
            checks.push(fail(
                "modes",
                format!(
                    "{what} {} is {mode:04o}, more open than {max:04o}",
                    path.display()
                ),
                format!("chmod {max:04o} {}", path.display()),
            ));
        } else {
            checks.push(pass(
                "modes",
                format!("{what} {kind} {} is {mode:04o}", path.display()),
            ));
        }
    };
    if let Some(f) = &cfg.file {
        // It may name secret files and hold a token: not for everyone.
        check("config", f, 0o640, false);
    }
    if cfg.store.backend == StoreBackend::File {
        check("file store", &cfg.store.path, 0o600, false);
        if let Some(parent) = cfg.store.path.parent() {
            check("store", parent, 0o700, true);
        }
    }
    check("journal", &cfg.store.journal_dir, 0o700, true);
    // The secret files (`*_file`, `ca_cert`) are judged by `files`.
    checks
}

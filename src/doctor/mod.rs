//! `snykey doctor`: every check an operator would make by hand, in order,
//! each with what it found and, when it fails, what to do. Runs as the
//! calling user, against the agent's socket and the config file.
//!
//! The store and cache are checked through the agent (`/v1/ready`): it holds
//! their credentials, the calling user normally does not.
//!
//! The checks live by what they look at: `local` (the socket, the files and
//! modes the configuration names, what the store and cache kinds imply),
//! `remote` (Snyk and the clock), `credentials` (each credential the agent
//! holds, and its published token); the agent's own answers are here.

use crate::client::{AgentClient, ClientError};
use crate::config::{Config, StoreBackend};
use crate::wire::{ErrorCode, Message, paths};
use hyper::Method;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

mod credentials;
mod local;
mod remote;

use credentials::credential_checks;
use local::{cache_role, files, modes, socket_check, store_kind};
use remote::snyk_and_clock;

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

//! `snykey doctor`: what can be judged on this machine without the agent:
//! the socket, the files and modes the configuration names, and what the
//! store and cache kinds imply.

use super::{Check, fail, pass};
use crate::config::on_disk::Problem;
use crate::config::{CacheBackend, Config, StoreBackend};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Every file and directory the configuration names, judged as the agent
/// judges them at start ([`Config::check_files`]). A file this user may not
/// look at is not judged here (run doctor as the agent's user or root).
pub(super) fn files(cfg: &Config) -> Vec<Check> {
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

pub(super) fn socket_check(socket: &Path) -> Check {
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

pub(super) fn store_kind(cfg: &Config) -> Check {
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

pub(super) fn cache_role(cfg: &Config) -> Check {
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

/// The modes of what the agent keeps on disk, where this user can see them.
pub(super) fn modes(cfg: &Config) -> Vec<Check> {
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

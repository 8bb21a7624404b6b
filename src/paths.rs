//! Default locations, shared by the agent, the admin CLI and `snykey-helper`
//! (std-only, so the helper can use it without pulling in a runtime).

use std::path::PathBuf;

/// A way to read an environment variable (the real environment, or a test's).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The agent socket: `$SNYKEY_SOCKET`, else `$XDG_RUNTIME_DIR/snykey/snykey.sock`,
/// else `/run/snykey/snykey.sock` (SPEC §7).
pub fn default_socket() -> PathBuf {
    default_socket_in(&process_env)
}

pub fn default_socket_in(env: Lookup<'_>) -> PathBuf {
    if let Some(p) = env("SNYKEY_SOCKET") {
        return PathBuf::from(p);
    }
    if let Some(dir) = env("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("snykey").join("snykey.sock");
    }
    PathBuf::from("/run/snykey/snykey.sock")
}

/// Where the agent keeps state (file store, recovery journal):
/// `$XDG_STATE_HOME/snykey`; for root without it `/var/lib/snykey`; for any
/// other user without it the XDG default `$HOME/.local/state/snykey`, because
/// an unprivileged agent cannot write to `/var/lib`.
pub fn default_state_dir_in(env: Lookup<'_>) -> PathBuf {
    if let Some(dir) = env("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("snykey");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        if let Some(home) = env("HOME") {
            return PathBuf::from(home).join(".local/state/snykey");
        }
    }
    PathBuf::from("/var/lib/snykey")
}

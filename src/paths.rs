//! Default locations, shared by the agent, the admin CLI and `snykey-helper`
//! (std-only, so the helper can use it without pulling in a runtime).

use std::path::PathBuf;

/// A way to read an environment variable (the real environment, or a test's).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty values treated as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The socket clients (the admin CLI, `snykey-helper`) connect to:
/// `$SNYKEY_SOCKET`, else `$XDG_RUNTIME_DIR/snykey/snykey.sock`, else
/// `/run/snykey/snykey.sock`. Unlike the agent, clients ignore
/// `$RUNTIME_DIRECTORY`: a client running inside some other unit would get
/// that unit's directory.
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

/// The agent's own socket when the config names none: `$SNYKEY_SOCKET`, else
/// `$RUNTIME_DIRECTORY/snykey.sock` (systemd's `RuntimeDirectory=snykey`:
/// `/run/snykey`, the same path clients default to), else as [`default_socket`].
pub fn agent_socket_in(env: Lookup<'_>) -> PathBuf {
    if let Some(p) = env("SNYKEY_SOCKET") {
        return PathBuf::from(p);
    }
    if let Some(dir) = first_dir(env, "RUNTIME_DIRECTORY") {
        return dir.join("snykey.sock");
    }
    default_socket_in(env)
}

/// The first directory of a systemd directory variable (`$STATE_DIRECTORY`
/// and friends hold a colon-separated list when the unit names several).
/// Relative entries are ignored: systemd always sets absolute paths.
pub fn first_dir(env: Lookup<'_>, name: &str) -> Option<PathBuf> {
    env(name)?
        .split(':')
        .map(PathBuf::from)
        .find(|p| p.is_absolute())
}

/// Where the agent keeps state (file store, recovery journal):
/// `$STATE_DIRECTORY` (systemd's `StateDirectory=snykey`, already the
/// agent's own directory), else `$XDG_STATE_HOME/snykey`; for root without
/// them `/var/lib/snykey`; for any other user the XDG default
/// `$HOME/.local/state/snykey`, because an unprivileged agent cannot write to `/var/lib`.
pub fn default_state_dir_in(env: Lookup<'_>) -> PathBuf {
    if let Some(dir) = first_dir(env, "STATE_DIRECTORY") {
        return dir;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn systemd_state_directory_comes_before_xdg_and_var_lib() {
        let e = env_of(&[
            ("STATE_DIRECTORY", "/var/lib/snykey:/var/lib/other"),
            ("XDG_STATE_HOME", "/home/u/.state"),
        ]);
        assert_eq!(default_state_dir_in(&e), PathBuf::from("/var/lib/snykey"));
        let e = env_of(&[("XDG_STATE_HOME", "/home/u/.state")]);
        assert_eq!(
            default_state_dir_in(&e),
            PathBuf::from("/home/u/.state/snykey")
        );
        let e = env_of(&[("STATE_DIRECTORY", "relative"), ("XDG_STATE_HOME", "/x")]);
        assert_eq!(default_state_dir_in(&e), PathBuf::from("/x/snykey"));
    }

    #[test]
    fn the_agent_binds_in_its_runtime_directory_but_clients_ignore_it() {
        let e = env_of(&[
            ("RUNTIME_DIRECTORY", "/run/snykey"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ]);
        assert_eq!(
            agent_socket_in(&e),
            PathBuf::from("/run/snykey/snykey.sock")
        );
        assert_eq!(
            default_socket_in(&e),
            PathBuf::from("/run/user/1000/snykey/snykey.sock")
        );
        let e = env_of(&[
            ("SNYKEY_SOCKET", "/tmp/s.sock"),
            ("RUNTIME_DIRECTORY", "/run/snykey"),
        ]);
        assert_eq!(agent_socket_in(&e), PathBuf::from("/tmp/s.sock"));
        let e = env_of(&[]);
        assert_eq!(
            agent_socket_in(&e),
            PathBuf::from("/run/snykey/snykey.sock")
        );
    }
}

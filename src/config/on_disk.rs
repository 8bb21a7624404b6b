//! What the configuration names on disk, checked by `snykey check-config`
//! and before `snykey serve` binds anything (issue 24 item 4): every
//! `*_file` the chosen store and cache read (`store.token_file`,
//! `role_id_file`, `secret_id_file`, `kubernetes_jwt_file`,
//! `cache.password_file`), `store.ca_cert`, the file store and the
//! directories the agent writes in (the file store's, `store.journal_dir`,
//! `cache.snapshot_path`'s, `server.audit_log`'s, the socket's). Each finding names the key and the
//! file, so a missing token file is said to be missing — not reported later
//! as OpenBao refusing a token it was never sent.
//!
//! What is judged: a file exists, is a regular file (symlinks followed: a
//! Kubernetes secret is one), can be read, is not empty (a secret) or holds
//! a PEM certificate (the CA); a secret file or the CA is not writable by
//! group or others (whoever could replace it chooses what the agent
//! authenticates as, or whom it trusts; a read-only mount is exempt); a
//! directory the agent writes in is a directory, or can be created. A
//! secret file readable by every user is a warning, not an error: a
//! Kubernetes secret volume is 0644 unless its `defaultMode` says otherwise.
//! Ownership is judged by the agent itself at start (`crate::dirs`): only
//! the agent knows which uid it runs as.

use super::{BaoAuth, CacheBackend, Config, ConfigError, StoreBackend};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One thing wrong (or worth a warning) with a path the configuration names.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The setting, as `section.key`.
    pub key: &'static str,
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Missing,
    NotAFile,
    NotADirectory,
    /// It cannot be read (or inspected) by this process: the reason.
    Unreadable {
        reason: String,
        denied: bool,
    },
    Empty,
    /// Not a PEM certificate (`store.ca_cert`).
    NotPem,
    /// Group or others may write it (its mode).
    WritableByOthers(u32),
    /// Every user may read this secret (its mode): a warning.
    ReadableByAll(u32),
    /// The file store open to group or others (its mode).
    NotPrivate(u32),
    /// A directory to be created under something that is not a directory.
    CannotCreate(PathBuf),
}

impl Finding {
    /// Whether the agent must refuse to start over it. `allow_shared` is
    /// `server.allow_shared_dirs` (group/other-writable accepted, warned).
    pub fn is_fatal(&self, allow_shared: bool) -> bool {
        match self.problem {
            Problem::ReadableByAll(_) => false,
            Problem::WritableByOthers(_) => !allow_shared,
            _ => true,
        }
    }

    /// This process may not look (`EACCES`): another user (the agent's, or
    /// root) may. `snykey doctor` run as a client cannot judge such a file.
    pub fn is_permission_denied(&self) -> bool {
        matches!(self.problem, Problem::Unreadable { denied: true, .. })
    }

    /// What is wrong and what to do, one sentence, without the key.
    pub fn message(&self) -> String {
        let p = self.path.display();
        match &self.problem {
            Problem::Missing => format!("{p} does not exist"),
            Problem::NotAFile => format!("{p} is not a regular file"),
            Problem::NotADirectory => format!("{p} is not a directory"),
            Problem::Unreadable { reason, .. } => format!("cannot read {p}: {reason}"),
            Problem::Empty => format!("{p} is empty"),
            Problem::NotPem => {
                format!("{p} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            }
            Problem::WritableByOthers(mode) => format!(
                "{p} is writable by {} (mode {mode:04o}): whoever can replace it decides what the agent uses; `chmod go-w {p}`",
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                }
            ),
            Problem::ReadableByAll(mode) => format!(
                "{p} is readable by every user (mode {mode:04o}): `chmod 0640 {p}` (or 0600)"
            ),
            Problem::NotPrivate(mode) => format!(
                "{p} is open to group or others (mode {mode:04o}) and holds every refresh token: `chmod 600 {p}`"
            ),
            Problem::CannotCreate(at) => {
                format!("{p} cannot be created: {} is not a directory", at.display())
            }
        }
    }
}

/// What a path is to the agent.
#[derive(Clone, Copy)]
enum Role {
    /// Read once or at every login; must stay private to its writers.
    Secret,
    /// `store.ca_cert`: public, but whoever replaces it picks whom the agent trusts.
    CaCert,
    /// The file store's document (created if missing, must be 0600).
    StoreFile,
    /// A file the agent creates if missing (the audit log).
    CreatedFile,
    /// A directory the agent writes in (created 0700 if missing).
    Dir,
}

impl Config {
    /// Every path the configuration names that this agent will use, with
    /// the key that names it.
    fn paths_used(&self) -> Vec<(&'static str, PathBuf, Role)> {
        let mut out = Vec::new();
        let st = &self.store;
        if st.backend == StoreBackend::OpenBao {
            match st.auth {
                BaoAuth::Token => {
                    if let Some(f) = &st.token_file {
                        out.push(("store.token_file", f.clone(), Role::Secret));
                    }
                }
                BaoAuth::AppRole => {
                    for (k, f) in [
                        ("store.role_id_file", &st.role_id_file),
                        ("store.secret_id_file", &st.secret_id_file),
                    ] {
                        if let Some(f) = f {
                            out.push((k, f.clone(), Role::Secret));
                        }
                    }
                }
                BaoAuth::Kubernetes => out.push((
                    "store.kubernetes_jwt_file",
                    st.kubernetes_jwt_file.clone(),
                    Role::Secret,
                )),
            }
            if let Some(ca) = &st.ca_cert {
                out.push(("store.ca_cert", ca.clone(), Role::CaCert));
            }
        } else {
            out.push(("store.path", st.path.clone(), Role::StoreFile));
            if let Some(dir) = st.path.parent() {
                out.push(("store.path", dir.to_path_buf(), Role::Dir));
            }
        }
        out.push(("store.journal_dir", st.journal_dir.clone(), Role::Dir));
        if self.cache.backend == CacheBackend::Redis {
            if let Some(f) = &self.cache.password_file {
                out.push(("cache.password_file", f.clone(), Role::Secret));
            }
        } else if self.cache.snapshot {
            if let Some(dir) = self.cache.snapshot_path.parent() {
                out.push(("cache.snapshot_path", dir.to_path_buf(), Role::Dir));
            }
        }
        if let Some(log) = &self.server.audit_log {
            out.push(("server.audit_log", log.clone(), Role::CreatedFile));
            if let Some(dir) = log.parent() {
                out.push(("server.audit_log", dir.to_path_buf(), Role::Dir));
            }
        }
        if let Some(dir) = self.server.socket.parent() {
            out.push(("server.socket", dir.to_path_buf(), Role::Dir));
        }
        out
    }

    /// Everything found wrong with the paths the configuration names
    /// (warnings included; see [`Finding::is_fatal`]).
    pub fn file_findings(&self) -> Vec<Finding> {
        self.paths_used()
            .into_iter()
            .filter_map(|(key, path, role)| {
                judge(&path, role).map(|problem| Finding { key, path, problem })
            })
            .collect()
    }

    /// `check-config` and start-up: the first fatal finding as an error
    /// naming its key and file; otherwise the warnings, one line each.
    pub fn check_files(&self) -> Result<Vec<String>, ConfigError> {
        let allow_shared = self.server.allow_shared_dirs;
        let mut warnings = Vec::new();
        for f in self.file_findings() {
            if f.is_fatal(allow_shared) {
                return Err(ConfigError::File {
                    key: f.key.to_string(),
                    message: f.message(),
                });
            }
            warnings.push(format!("{}: {}", f.key, f.message()));
        }
        Ok(warnings)
    }
}

/// What is wrong with `path` for its role, if anything.
fn judge(path: &Path, role: Role) -> Option<Problem> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // (A file where a directory of the path should be: ENOTDIR.)
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return match role {
                Role::Secret | Role::CaCert => Some(Problem::Missing),
                // Created by the agent: its directory must be able to hold it.
                Role::StoreFile | Role::CreatedFile => None,
                Role::Dir => creatable(path),
            };
        }
        Err(e) => return Some(unreadable(&e)),
    };
    let mode = meta.mode() & 0o7777;
    match role {
        Role::Dir => (!meta.is_dir()).then_some(Problem::NotADirectory),
        Role::CreatedFile => (!meta.is_file()).then_some(Problem::NotAFile),
        Role::StoreFile => {
            if !meta.is_file() {
                Some(Problem::NotAFile)
            } else if mode & 0o077 != 0 {
                // The agent refuses it too (it holds every refresh token).
                Some(Problem::NotPrivate(mode))
            } else {
                readable(path).err()
            }
        }
        Role::Secret | Role::CaCert => {
            if !meta.is_file() {
                return Some(Problem::NotAFile);
            }
            let text = match readable(path) {
                Ok(t) => t,
                Err(p) => return Some(p),
            };
            if mode & 0o022 != 0 && !read_only_mount(path) {
                return Some(Problem::WritableByOthers(mode));
            }
            match role {
                Role::Secret if text.iter().all(u8::is_ascii_whitespace) => Some(Problem::Empty),
                Role::Secret if mode & 0o004 != 0 => Some(Problem::ReadableByAll(mode)),
                Role::CaCert if !contains(&text, b"-----BEGIN CERTIFICATE-----") => {
                    Some(Problem::NotPem)
                }
                _ => None,
            }
        }
    }
}

/// Reads the file (a secret's bytes are wiped when dropped).
fn readable(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Problem> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| unreadable(&e))
}

fn unreadable(e: &std::io::Error) -> Problem {
    Problem::Unreadable {
        reason: e.to_string(),
        denied: e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// A missing directory: the nearest existing ancestor must be a directory.
fn creatable(path: &Path) -> Option<Problem> {
    let mut at = path.parent();
    while let Some(p) = at {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return None,
            Ok(_) => return Some(Problem::CannotCreate(p.to_path_buf())),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                at = p.parent()
            }
            Err(e) => return Some(unreadable(&e)),
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// On a read-only mount (a Kubernetes secret volume) no mode bit makes a
/// file writable.
fn read_only_mount(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_flag & libc::ST_RDONLY != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn each_kind_of_file_is_judged_for_its_role() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let secret = d.join("token");
        assert_eq!(judge(&secret, Role::Secret), Some(Problem::Missing));
        std::fs::write(&secret, "\n").unwrap();
        chmod(&secret, 0o600);
        assert_eq!(judge(&secret, Role::Secret), Some(Problem::Empty));
        std::fs::write(&secret, "s.token\n").unwrap();
        assert_eq!(judge(&secret, Role::Secret), None);
        chmod(&secret, 0o644);
        assert_eq!(
            judge(&secret, Role::Secret),
            Some(Problem::ReadableByAll(0o644))
        );
        chmod(&secret, 0o662);
        assert_eq!(
            judge(&secret, Role::Secret),
            Some(Problem::WritableByOthers(0o662))
        );
        assert_eq!(judge(d, Role::Secret), Some(Problem::NotAFile));

        let ca = d.join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        assert_eq!(judge(&ca, Role::CaCert), Some(Problem::NotPem));
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        chmod(&ca, 0o644);
        assert_eq!(judge(&ca, Role::CaCert), None);

        // Directories the agent creates: fine when missing under a directory.
        assert_eq!(judge(&d.join("a/b/journal"), Role::Dir), None);
        assert_eq!(
            judge(&secret.join("journal"), Role::Dir),
            Some(Problem::CannotCreate(secret.clone()))
        );
        assert_eq!(judge(&secret, Role::Dir), Some(Problem::NotADirectory));

        // The file store: absent is fine; present, it must be private.
        let store = d.join("credentials.json");
        assert_eq!(judge(&store, Role::StoreFile), None);
        std::fs::write(&store, "{}").unwrap();
        chmod(&store, 0o600);
        assert_eq!(judge(&store, Role::StoreFile), None);
        chmod(&store, 0o640);
        assert_eq!(
            judge(&store, Role::StoreFile),
            Some(Problem::NotPrivate(0o640))
        );
    }

    #[test]
    fn an_unreadable_secret_is_named_with_the_reason() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return; // root reads anything: nothing to see here
        }
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s.token").unwrap();
        chmod(&secret, 0o000);
        let p = judge(&secret, Role::Secret).unwrap();
        assert!(
            matches!(p, Problem::Unreadable { denied: true, .. }),
            "{p:?}"
        );
    }
}

//! Token files ("sinks", `[[sink]]` in the config): for apps that can read a
//! file but cannot run `snykey-helper`, the agent keeps a credential's
//! current access token in a file, e.g. on a volume shared with the app's
//! container.
//!
//! * Written atomically: a temp file in the same directory (created with the
//!   asked mode, never wider), fsync, the asked group, rename over the sink,
//!   fsync of the directory. A reader sees the old token or the new one,
//!   never half of one.
//! * Written at start and after every refresh: each sink's task watches the
//!   agent's current token (the in-process copy, no Snyk call while it is
//!   valid) once a second and rewrites the file when the token changed.
//! * Never an expired token: when the credential cannot give a token and the
//!   one in the file has expired (or the credential is gone), the file is
//!   **removed**, and a warning says why. An app finds no file rather than a
//!   token Snyk refuses; the file comes back with the next token.
//! * Only inside an allowed directory (`server.sink_dirs`, default the
//!   socket's directory) and never over a symlink: a sink path whose real
//!   directory is elsewhere, or whose file is a symlink, is refused.

use crate::broker::Broker;
use crate::cache::CachedToken;
use crate::clock::rfc3339;
use crate::credential::CredKey;
use crate::render::{Format, SnykEnv, token_output};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// One `[[sink]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    pub org_id: String,
    pub client_id: String,
    pub path: PathBuf,
    pub format: Format,
    /// File mode: 0600 to 0660 (never readable by others).
    pub mode: u32,
    /// The file's group (a numeric gid; names are resolved when the config is read).
    pub gid: Option<u32>,
}

/// How often each sink looks at its credential's token.
const POLL: Duration = Duration::from_secs(1);

/// Checks that `path` is a plain file name inside one of `allowed` (after
/// resolving symlinks in its directory) and is not itself a symlink.
pub fn check_path(path: &Path, allowed: &[PathBuf]) -> Result<(), String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("{} is not a file path", path.display()));
    };
    let real_dir = std::fs::canonicalize(dir)
        .map_err(|e| format!("the directory of {}: {e}", path.display()))?;
    let inside = allowed.iter().any(|a| {
        std::fs::canonicalize(a)
            .map(|a| real_dir.starts_with(a))
            .unwrap_or(false)
    });
    if !inside {
        return Err(format!(
            "{} is outside the directories sinks may write to ({}); add its directory to server.sink_dirs",
            path.display(),
            allowed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match std::fs::symlink_metadata(real_dir.join(name)) {
        Ok(m) if m.file_type().is_symlink() => Err(format!(
            "{} is a symlink; a sink never writes through one",
            path.display()
        )),
        Ok(m) if !m.file_type().is_file() => Err(format!(
            "{} exists and is not a regular file",
            path.display()
        )),
        _ => Ok(()),
    }
}

/// Writes `content` to `path` atomically with `mode` and `gid`.
pub fn write_atomically(
    path: &Path,
    content: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a sink path needs a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a sink path needs a file name"))?;
    // Refuse a symlink that appeared since start (rename would replace the
    // link itself, but a sink that someone redirects is worth a loud error).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(std::io::Error::other(format!(
            "{} became a symlink; not writing through it",
            path.display()
        )));
    }
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set exactly what was asked.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        if let Some(g) = gid {
            std::os::unix::fs::fchown(&f, None, Some(g))?;
        }
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A sink file's text. `env` files carry the region but not `SNYK_CFG_ORG`:
/// a file sourced into an app's environment must not override an org the
/// app set for itself (`snykey-helper` can tell; a file cannot).
fn render(sink: &SinkConfig, t: &CachedToken, snyk_api: Option<&str>, token_type: &str) -> String {
    let env = SnykEnv {
        snyk_api,
        org: None,
        api_key: false,
    }
    .token_type(Some(token_type));
    token_output(
        sink.format,
        t.access_token.expose(),
        &rfc3339(t.expires_at),
        env,
    )
}

/// Keeps every sink's file current until shutdown.
pub fn spawn_all(
    sinks: Vec<SinkConfig>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    sinks
        .into_iter()
        .map(|s| tokio::spawn(keep(s, Arc::clone(&broker), shutdown.clone())))
        .collect()
}

async fn keep(sink: SinkConfig, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let Ok(key) = CredKey::parse(&sink.org_id, &sink.client_id) else {
        return;
    };
    let path = sink.path.display().to_string();
    // Fingerprint of the token in the file.
    let mut written: Option<String> = None;
    let mut last_error: Option<String> = None;
    // Longer between looks while the credential gives no token: a sink must
    // not turn a Snyk outage into a grant attempt every second.
    let mut delay = POLL;
    loop {
        // With a validity of zero the agent answers from its in-process copy
        // whenever it has one (even an expired one: judged below); it mints
        // only when it holds no token at all.
        let outcome = match broker.token(&key, Some(Duration::ZERO)).await {
            Ok(t) if t.remaining(SystemTime::now()) > Duration::from_secs(1) => Ok(t),
            Ok(_) => Err("its token has expired and no new one could be had".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(t) => {
                delay = POLL;
                let fp = t.access_token.fingerprint();
                if written.as_ref() != Some(&fp) {
                    let (snyk_api, token_type) = broker.answer_details(&key);
                    let text = render(&sink, &t, snyk_api.as_deref(), token_type);
                    match write_atomically(&sink.path, text.as_bytes(), sink.mode, sink.gid) {
                        Ok(()) => {
                            tracing::debug!(org_id = %key.org, client_id = %key.client, sink = %path, "token file written");
                            written = Some(fp);
                            last_error = None;
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            if last_error.as_deref() != Some(&msg) {
                                tracing::warn!(org_id = %key.org, client_id = %key.client, sink = %path, error = %msg, "cannot write the token file");
                                last_error = Some(msg);
                            }
                        }
                    }
                }
            }
            Err(why) => {
                delay = (delay * 2).min(Duration::from_secs(30));
                // Whatever the file holds is expired or about to be, or its
                // credential is gone: no file rather than a refused token.
                match std::fs::remove_file(&sink.path) {
                    Ok(()) => {
                        tracing::warn!(org_id = %key.org, client_id = %key.client, sink = %path, error = %why, "removed the token file: no valid token to put in it");
                    }
                    Err(re) if re.kind() == std::io::ErrorKind::NotFound => {}
                    Err(re) => {
                        tracing::warn!(sink = %path, error = %re, "cannot remove the token file")
                    }
                }
                written = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn a_sink_outside_the_allowed_directories_or_over_a_symlink_is_refused() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let ok = allowed.path().join("token");
        check_path(&ok, &[allowed.path().to_path_buf()]).unwrap();
        let e =
            check_path(&other.path().join("token"), &[allowed.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("server.sink_dirs"), "{e}");
        // A symlinked directory that leads outside is outside.
        std::os::unix::fs::symlink(other.path(), allowed.path().join("escape")).unwrap();
        assert!(
            check_path(
                &allowed.path().join("escape/token"),
                &[allowed.path().to_path_buf()]
            )
            .is_err()
        );
        // The sink itself a symlink: refused, also at write time.
        std::os::unix::fs::symlink(other.path().join("t"), allowed.path().join("link")).unwrap();
        let link = allowed.path().join("link");
        let e = check_path(&link, &[allowed.path().to_path_buf()]).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert!(write_atomically(&link, b"x", 0o600, None).is_err());
        assert!(!other.path().join("t").exists());
    }

    #[test]
    fn writes_replace_the_file_whole_with_the_mode_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        write_atomically(&p, b"one\n", 0o640, None).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        write_atomically(&p, b"two\n", 0o600, Some(0)).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two\n");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(m.gid(), 0);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

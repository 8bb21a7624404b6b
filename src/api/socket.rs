//! The agent socket: bound with its mode applied through the umask at bind
//! time (no window with looser permissions), or inherited from systemd.
//!
//! Socket activation is read here rather than through a crate: what a crate
//! would take over is the dozen lines that read `LISTEN_PID`/`LISTEN_FDS`;
//! the rest (is fd 3 a Unix socket, which path it listens on, the warning
//! for extra sockets, never removing a file we did not create) is ours
//! either way. Of the small crates, `listenfd` (1.0) also adopts the fds
//! when `LISTEN_PID` is absent (its cargo-watch extension), which
//! sd_listen_fds(3) forbids: an agent started from a shell that inherited
//! `LISTEN_FDS` would take someone else's fd 3. `sd-notify`'s `listen_fds`
//! checks the pid but is not used for notifications either (see
//! `crate::systemd`), so it would be a dependency for those dozen lines.

use crate::access::Policy;
use crate::credential::CredKey;
use crate::locks::Recover;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A listening socket and whether we created its file (and so must remove it).
pub struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    pub created: bool,
}

/// Binds `path` with permissions `mode`.
///
/// Must run before any other thread exists: the umask is process-wide.
/// The parent directory is created 0700 when missing; an existing one is
/// refused when another user could write to it (see [`crate::dirs`]). A stale socket file (nobody
/// listening) is replaced; a live one is an error.
pub fn bind(path: &Path, mode: u32) -> Result<Bound, String> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    format!("cannot create the socket directory {}: {e}", dir.display())
                })?;
        }
        crate::dirs::check_private_dir(dir, "the socket directory", "server.socket")?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "another process is already listening on {}: stop it or choose another server.socket",
                    path.display()
                ));
            }
            Err(_) => std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?,
        },
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            ));
        }
        Err(_) => {}
    }
    let mask = (!mode) & 0o777;
    // SAFETY: umask has no preconditions; we restore the old value right after bind.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let result = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = result.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    // The umask can only remove bits; make the mode exact (it is already right).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(Bound {
        listener,
        path: path.to_path_buf(),
        created: true,
    })
}

/// Takes the first socket passed by systemd (`LISTEN_FDS`/`LISTEN_PID`), if
/// any was passed to this process. The variables are removed so that child
/// processes do not inherit them. The socket file is never ours to remove.
pub fn from_systemd(expected_path: &Path) -> Result<Option<Bound>, String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !pid_ok || fds < 1 {
        return Ok(None);
    }
    // SAFETY: called before any other thread exists.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    const SD_LISTEN_FDS_START: RawFd = 3;
    let fd = SD_LISTEN_FDS_START;
    // Check it is a listening Unix stream socket before trusting it.
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd 3 was handed to us by the service manager; getsockopt only reads.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || domain != libc::AF_UNIX {
        return Err("the socket passed by systemd (fd 3) is not a Unix socket: use ListenStream=/path in snykey.socket".into());
    }
    // SAFETY: the fd is ours from here on (FD_CLOEXEC is set below).
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        .unwrap_or_else(|| expected_path.to_path_buf());
    if fds > 1 {
        tracing::warn!(fds, "systemd passed more than one socket; using the first");
    }
    Ok(Some(Bound {
        listener,
        path,
        created: false,
    }))
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (`SO_PEERGROUPS`), so a client in a shared group
    /// (a Kubernetes fsGroup) is recognised even when it is not its primary gid.
    pub groups: Vec<u32>,
    /// `/proc/PID/exe` read at accept time, only while the audit log is on
    /// (and only when the agent may read it: same uid, or root). A pid can be
    /// reused once the peer exits, so this is evidence, not proof.
    pub exe: Option<String>,
    /// What this connection was already allowed and handed (see [`ConnMemo`]).
    pub memo: ConnMemo,
}

/// Per connection, so its lock is uncontended: a keep-alive client's
/// repeated reads of one credential skip the policy walk (while the same
/// policy is in force: a SIGHUP installs a new `Arc`) and the audit log's
/// process-wide set of hand-outs.
#[derive(Debug, Default)]
pub struct ConnMemo(std::sync::Mutex<Memo>);

#[derive(Debug, Default, Clone)]
struct Memo {
    /// Holding the `Arc` keeps its address from being reused by a later policy.
    read_allowed: Option<(Arc<Policy>, CredKey)>,
    handed: Option<(CredKey, SystemTime)>,
}

impl Clone for ConnMemo {
    fn clone(&self) -> Self {
        ConnMemo(std::sync::Mutex::new(self.0.lock().recover().clone()))
    }
}

impl Peer {
    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.memo.0.lock().recover()
    }

    /// `policy` already allowed this connection to read `key`.
    pub fn read_allowed_before(&self, policy: &Arc<Policy>, key: &CredKey) -> bool {
        self.memo()
            .read_allowed
            .as_ref()
            .is_some_and(|(p, k)| Arc::ptr_eq(p, policy) && k == key)
    }

    pub fn remember_read_allowed(&self, policy: &Arc<Policy>, key: &CredKey) {
        self.memo().read_allowed = Some((Arc::clone(policy), key.clone()));
    }

    /// Whether this connection has not been handed this token yet (and
    /// remembers that it now has).
    pub fn first_hand_out(&self, key: &CredKey, expires_at: SystemTime) -> bool {
        let mut memo = self.memo();
        if memo
            .handed
            .as_ref()
            .is_some_and(|(k, e)| k == key && *e == expires_at)
        {
            return false;
        }
        memo.handed = Some((key.clone(), expires_at));
        true
    }

    /// The ids the access policy decides on.
    pub fn who(&self) -> crate::access::Who<'_> {
        crate::access::Who {
            uid: self.uid,
            gid: self.gid,
            groups: &self.groups,
        }
    }

    /// The peer as the audit log records it.
    pub fn audit(&self) -> crate::audit::PeerInfo {
        crate::audit::PeerInfo {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            exe: self.exe.clone(),
        }
    }
}

/// Reads the peer's credentials from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`).
pub fn peer_of(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    let pid = cred.pid();
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid,
        groups: peer_groups(stream.as_raw_fd()),
        exe: match pid {
            Some(pid) if crate::audit::enabled() => std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string()),
            _ => None,
        },
        memo: ConnMemo::default(),
    })
}

fn peer_groups(fd: RawFd) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
    for _ in 0..2 {
        // SAFETY: the buffer is valid for `len` bytes; the kernel writes at most that.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
            return groups;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) {
            groups = vec![0; len as usize / std::mem::size_of::<libc::gid_t>() + 1];
            continue;
        }
        break;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_has_its_mode_when_it_appears_and_its_dir_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/snykey.sock");
        let b = bind(&path, 0o660).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        // A live socket is not replaced.
        let e = bind(&path, 0o660).err().unwrap();
        assert!(e.contains("already listening"), "{e}");
        drop(b);
        // A stale one is.
        assert!(bind(&path, 0o600).is_ok());
    }

    #[test]
    fn a_connection_remembers_a_read_only_under_the_same_policy() {
        let peer = Peer {
            uid: 1001,
            gid: 1001,
            pid: None,
            groups: vec![],
            exe: None,
            memo: ConnMemo::default(),
        };
        let key = CredKey::parse("o", "c").unwrap();
        let other = CredKey::parse("o", "d").unwrap();
        let p1 = Arc::new(Policy::default());
        assert!(!peer.read_allowed_before(&p1, &key));
        peer.remember_read_allowed(&p1, &key);
        assert!(peer.read_allowed_before(&p1, &key));
        assert!(!peer.read_allowed_before(&p1, &other));
        // A reload installs a new policy: decided again, even if equal.
        let p2 = Arc::new(Policy::default());
        assert!(!peer.read_allowed_before(&p2, &key));
        let t = SystemTime::now();
        assert!(peer.first_hand_out(&key, t));
        assert!(!peer.first_hand_out(&key, t));
        assert!(peer.first_hand_out(&key, t + std::time::Duration::from_secs(1)));
    }

    #[test]
    fn a_socket_directory_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = run.join("snykey.sock");
        let e = bind(&path, 0o660).err().unwrap();
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn a_regular_file_in_the_way_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sock");
        std::fs::write(&path, "data").unwrap();
        assert!(bind(&path, 0o660).err().unwrap().contains("not a socket"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }
}

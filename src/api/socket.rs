//! The agent socket: bound with its mode applied through the umask at bind
//! time (no window with looser permissions), or inherited from systemd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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
}

/// Reads the peer's credentials from the kernel (`SO_PEERCRED`, `SO_PEERGROUPS`).
pub fn peer_of(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
        groups: peer_groups(stream.as_raw_fd()),
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

//! Directories that hold secrets or the agent's socket: an existing one is
//! used only if no other user can change what is in it.
//!
//! A new directory is created 0700 by its user (socket, file store, journal).
//! An existing one (made by an operator, a package, systemd's
//! `RuntimeDirectory=`/`StateDirectory=`) may be readable by a group — a
//! shared socket group needs that, and `RuntimeDirectoryMode=0750` sets it —
//! but it must not be writable by group or others, and it must belong to this
//! agent's user (or root): whoever can write to the directory can replace the
//! socket, plant a journal entry that the agent replays as a refresh token,
//! or swap the file store. Such a directory is refused, never "fixed":
//! changing an operator's modes behind their back would hide the mistake.
//! `server.allow_shared_dirs = true` accepts it with a warning, for volumes
//! the agent cannot chmod (a Kubernetes `emptyDir` is 0777).
//! Std-only (no tokio), like the rest of the path handling.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// `server.allow_shared_dirs`: set once at start, before any directory is
/// used. A Kubernetes `emptyDir` is created 0777 and the agent (not root)
/// cannot change that; an operator who shares such a volume between the
/// containers of one pod accepts that each of them could replace its contents.
static ALLOW_SHARED: AtomicBool = AtomicBool::new(false);

/// Accept (with a warning) directories that group or others can write to.
pub fn allow_shared_dirs(allow: bool) {
    ALLOW_SHARED.store(allow, Ordering::SeqCst);
}

/// Checks that `dir` (an existing directory) is safe to keep secrets in.
/// `what` names it for the message ("the journal directory") and `key` the
/// setting that chooses it (`store.journal_dir`).
pub fn check_private_dir(dir: &Path, what: &str, key: &str) -> Result<(), String> {
    check_dir(dir, what, key, ALLOW_SHARED.load(Ordering::SeqCst))
}

fn check_dir(dir: &Path, what: &str, key: &str, allow_shared: bool) -> Result<(), String> {
    // `Path::new("x.sock").parent()` is the empty path: the current directory.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot inspect {what} {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{what} {} is not a directory", dir.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let owner = meta.uid();
    if owner != me && owner != 0 {
        return Err(format!(
            "{what} {} belongs to uid {owner}, not to this agent's uid {me}: another user could change what is in it; `chown {me} {}` or choose another {key}",
            dir.display(),
            dir.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && allow_shared {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:04o}"),
            "{what} is writable by others; accepted because server.allow_shared_dirs = true"
        );
        return Ok(());
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{what} {} is writable by {} (mode {mode:04o}): another user could replace what is in it; `chmod go-w {}` (0700, or 0750 to share the socket with a group), choose another {key}, or set server.allow_shared_dirs = true for a volume you cannot chmod (a Kubernetes emptyDir)",
            dir.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir_with_mode(mode: u32) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn group_or_world_writable_directories_are_refused_with_the_fix() {
        for mode in [0o777, 0o1777, 0o770, 0o702, 0o720] {
            let d = dir_with_mode(mode);
            let e = check_private_dir(d.path(), "the journal directory", "store.journal_dir")
                .unwrap_err();
            assert!(
                e.contains("chmod go-w") && e.contains("store.journal_dir"),
                "{mode:o}: {e}"
            );
        }
        for mode in [0o700, 0o750, 0o755, 0o500] {
            let d = dir_with_mode(mode);
            assert!(
                check_private_dir(d.path(), "x", "k").is_ok(),
                "{mode:o} should be accepted"
            );
        }
    }

    #[test]
    fn allow_shared_dirs_accepts_a_world_writable_volume() {
        let d = dir_with_mode(0o777);
        check_dir(d.path(), "the socket directory", "server.socket", true).unwrap();
        let e = check_dir(d.path(), "the socket directory", "server.socket", false).unwrap_err();
        assert!(e.contains("allow_shared_dirs"), "{e}");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert!(
            check_private_dir(&f, "the journal directory", "k")
                .unwrap_err()
                .contains("not a directory")
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let d = dir_with_mode(0o700);
        let path = std::ffi::CString::new(d.path().to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::chown(path.as_ptr(), 4242, 4242) } != 0 {
            // Only root can give a directory away; as anyone else, a
            // directory of our own must pass.
            check_private_dir(d.path(), "x", "k").unwrap();
            return;
        }
        let e = check_private_dir(d.path(), "the socket directory", "server.socket").unwrap_err();
        assert!(
            e.contains("uid 4242") && e.contains("chown") && e.contains("server.socket"),
            "{e}"
        );
    }

    #[test]
    fn a_root_owned_directory_without_write_bits_is_accepted() {
        // `/` belongs to root, mode 0755: only root could change it.
        check_private_dir(Path::new("/"), "x", "k").unwrap();
    }
}

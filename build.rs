//! Build script: links `snykey-helper` with gcc's static unwinder.
//!
//! std on `*-linux-gnu` links `libgcc_s.so` for its unwinder, and mapping it is
//! a measurable part of the helper's start-up (the helper runs in every CI
//! job; BENCHMARKS.md: an empty Rust program is 1.22× `/bin/true` with it,
//! 1.10× without). Only the helper gets the static `libgcc_eh.a` instead,
//! through a `libgcc_s.a` stand-in on its link path; the agent is unchanged.
//! Anything unusual (another OS or libc, a static or cross build, no
//! `libgcc_eh.a`) leaves the default link as it is.
//!
//! It also records the git commit the binaries are built from
//! (`SNYKEY_GIT_COMMIT`, for `--version` and the `snykey_build_info` gauge):
//! `git rev-parse --short=12 HEAD`, with `-dirty` for uncommitted changes, or
//! `$SNYKEY_GIT_COMMIT` when set (a package build from a tarball), else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    git_commit();
    static_unwinder();
}

/// `SNYKEY_GIT_COMMIT` for the crate's code (`env!("SNYKEY_GIT_COMMIT")`).
fn git_commit() {
    println!("cargo:rerun-if-env-changed=SNYKEY_GIT_COMMIT");
    let commit = std::env::var("SNYKEY_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let git = |args: &[&str]| {
                Command::new("git")
                    .args(args)
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            };
            let head = git(&["rev-parse", "--short=12", "HEAD"]).filter(|h| !h.is_empty())?;
            // Rebuild when HEAD moves (a commit, a checkout). `--git-path`
            // finds the files in a worktree too. The index is not watched (a
            // rebuild on every `git add`): "-dirty" is as of the last build.
            for p in ["HEAD", "packed-refs"]
                .into_iter()
                .map(String::from)
                .chain(git(&["symbolic-ref", "-q", "HEAD"]))
            {
                // A missing file would rerun this script on every build.
                if let Some(f) = git(&["rev-parse", "--path-format=absolute", "--git-path", &p])
                    .filter(|f| Path::new(f).exists())
                {
                    println!("cargo:rerun-if-changed={f}");
                }
            }
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            Some(if dirty { format!("{head}-dirty") } else { head })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SNYKEY_GIT_COMMIT={commit}");
}

/// The helper's link with the static unwinder (see the module comment).
fn static_unwinder() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "crt-static");
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || static_crt
        || var("TARGET") != var("HOST")
    {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let Ok(out) = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let found = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    // cc prints the bare name back when it has no such file.
    if !out.status.success() || !found.is_absolute() || !found.is_file() {
        return;
    }
    let dir = Path::new(&var("OUT_DIR")).join("static-unwinder");
    let stand_in = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&stand_in);
    if std::fs::create_dir_all(&dir).is_err()
        || std::os::unix::fs::symlink(&found, &stand_in).is_err()
    {
        return;
    }
    println!("cargo:rustc-link-arg-bin=snykey-helper=-L{}", dir.display());
}

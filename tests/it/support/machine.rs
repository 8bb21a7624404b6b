//! A real systemd booted as PID 1 in a container on this machine, for the
//! packaged host agent (issue 23, item 5): a minimal Debian 12 root made with
//! `mmdebstrap` (cached between runs), booted with `systemd-nspawn`, and driven
//! with `nsenter` into its namespaces. This machine's own PID 1 need not be
//! systemd (hence `--register=no --keep-unit`).
//!
//! * The root is made once per recipe ([`ROOT_PACKAGES`], the suite, the
//!   Debian mirror apt uses here) under `~/.cache/snykey-test/` and reused; a
//!   changed recipe gets a new directory, so a stale root is never booted.
//! * Each boot is a fresh copy: `--volatile=overlay` puts a tmpfs over the
//!   cached root, which stays untouched, and the copy is gone at power-off.
//! * The container has its own network namespace (loopback only): nothing in
//!   it can reach this machine's services or the network.
//!
//! Every missing piece fails the test with what to install or what went
//! wrong; nothing is skipped.

#![allow(dead_code)]

use super::agent::{stderr, stdout, wait_for};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The Debian release the container runs: systemd 252, as Debian 12 ships.
pub const SUITE: &str = "bookworm";
/// What the root holds besides `minbase`: systemd as PID 1 and what the
/// package depends on (so installing it needs no network). `ca-certificates`
/// is purged in the test that needs it gone.
pub const ROOT_PACKAGES: &str = "systemd,systemd-sysv,dbus,ca-certificates,init-system-helpers";
/// Bump when the way the root is made changes without the strings above changing.
const RECIPE_VERSION: u32 = 1;

fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "{tool} is required to boot a systemd container: apt-get install --no-install-recommends {package} (scripts/test does)"
    );
}

/// The Debian mirror this machine's apt uses (`SNYKEY_TEST_DEBIAN_MIRROR`
/// overrides it): the first non-security `deb` source of
/// `/etc/apt/sources.list.d/*.sources` (deb822) or `/etc/apt/sources.list`.
pub fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("SNYKEY_TEST_DEBIAN_MIRROR") {
        if !m.is_empty() {
            return m;
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "sources" || e == "list"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        // deb822: a stanza with "Types: deb" and "URIs: ...".
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            if let (Some(types), Some(uris)) = (field("Types:"), field("URIs:")) {
                if types.split_whitespace().any(|t| t == "deb") && !uris.contains("security") {
                    if let Some(uri) = uris.split_whitespace().next() {
                        return uri.to_string();
                    }
                }
            }
        }
        // One-line form: deb [options] URI SUITE COMPONENTS...
        for line in text.lines().map(str::trim) {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                continue;
            }
            let uri = words.find(|w| !w.starts_with('['));
            if let Some(uri) = uri.filter(|u| !u.contains("security") && u.contains("://")) {
                return uri.to_string();
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

/// The cached root for the current recipe, made with `mmdebstrap` if it is
/// not there yet (about a minute; once per machine and recipe).
pub fn cached_root() -> PathBuf {
    require("mmdebstrap", "mmdebstrap");
    let mirror = debian_mirror();
    let recipe =
        format!("v{RECIPE_VERSION} --variant=minbase --include={ROOT_PACKAGES} {SUITE} {mirror}");
    let key = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(recipe.as_bytes());
        digest
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("snykey-test");
    std::fs::create_dir_all(&base).unwrap();
    let root = base.join(format!("{SUITE}-{key}"));
    // One maker at a time, across test processes and worktrees.
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    // SAFETY: a valid open file descriptor.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "cannot lock {}", base.display());
    if root.join("etc/os-release").exists() {
        return root;
    }
    let partial = base.join(format!(".{SUITE}-{key}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    eprintln!(
        "making the test container's root with mmdebstrap ({recipe}) into {}",
        root.display()
    );
    let out = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase"])
        .arg(format!("--include={ROOT_PACKAGES}"))
        .arg(SUITE)
        .arg(&partial)
        .arg(&mirror)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mmdebstrap could not make a {SUITE} root from {mirror} (set SNYKEY_TEST_DEBIAN_MIRROR to another mirror):\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    // Complete or absent: the final name appears only once it is whole.
    std::fs::rename(&partial, &root).unwrap();
    root
}

/// A booted container. Power-off on drop.
pub struct Machine {
    pub name: String,
    nspawn: Child,
    /// The container's PID 1, seen from here.
    leader: u32,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Machine {
    /// Boots a fresh copy of `root` with `share` bind-mounted read-only at
    /// `/mnt/host`; returns once the boot is complete (`running` or
    /// `degraded`), or fails saying what it saw.
    pub fn boot(root: &Path, share: &Path) -> Machine {
        require("systemd-nspawn", "systemd-container");
        require("nsenter", "util-linux");
        assert!(
            unsafe { libc::geteuid() } == 0,
            "booting a systemd container needs root (systemd-nspawn); run the suite as root"
        );
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "snykey-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("snykey-machine-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("console.log");
        let console = std::fs::File::create(&log).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--register=no", "--keep-unit"])
            .args(["--volatile=overlay", "--private-network", "--console=pipe"])
            .arg(format!("--machine={name}"))
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--bind-ro={}:/mnt/host", share.display()))
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e}"));
        let mut m = Machine {
            name,
            leader: 0,
            nspawn,
            log,
            _dir: dir,
        };
        let pid = m.nspawn.id();
        m.leader = wait_for("the container's PID 1 to appear", 30, || {
            if let Ok(Some(st)) = m.nspawn.try_wait() {
                return Err(format!(
                    "systemd-nspawn exited ({st}) before booting; its output:\n{}",
                    m.console()
                ));
            }
            children(pid)
                .into_iter()
                .find(|c| comm(*c).as_deref() == Some("systemd"))
                .ok_or_else(|| format!("children of systemd-nspawn: {:?}", children(pid)))
        });
        let state = wait_for("the container to finish booting", 90, || {
            let out = m.run(&["systemctl", "is-system-running"]);
            match stdout(&out).trim() {
                s @ ("running" | "degraded") => Ok(s.to_string()),
                other => Err(format!(
                    "{other:?} {}; console:\n{}",
                    stderr(&out).trim(),
                    tail(&m.console(), 15)
                )),
            }
        });
        if state == "degraded" {
            let failed = m.sh("systemctl --failed --no-legend --plain");
            eprintln!("{}: booted degraded: {}", m.name, stdout(&failed));
        }
        m
    }

    /// A command inside the container, as root, in all its namespaces.
    pub fn run(&self, argv: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A shell script inside the container, as root.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["/bin/sh", "-c", script])
    }

    /// [`Machine::sh`] that must exit 0; its stdout.
    pub fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: `{script}` failed ({}):\n{}{}",
            self.name,
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// What the container printed on its console (systemd's boot messages).
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes `text` into `path` inside the container.
    pub fn write(&self, path: &str, text: &str) {
        let mut child = Command::new("nsenter")
            .arg("--target")
            .arg(self.leader.to_string())
            .args(["--all", "--", "/bin/sh", "-c", "cat > \"$0\"", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "writing {path}: {}", stderr(&out));
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // systemd-nspawn powers the container off on SIGTERM (SIGRTMIN+3 to
        // its PID 1); kill it if that takes too long.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.nspawn.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|t| t.ok())
                .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect::<Vec<u32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

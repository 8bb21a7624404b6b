//! systemd integration: `sd_notify` (READY, STATUS, WATCHDOG, RELOADING,
//! STOPPING) without libsystemd. Socket activation lives in `api::socket`.
//!
//! Hand-written rather than the `sd-notify` crate (0.5.0, the newest), for
//! what it does differently, measured:
//!
//! * It reads `$NOTIFY_SOCKET` at every call and connects to it as a file
//!   path, so an abstract-namespace address (`@name`, which sd_notify(3)
//!   specifies and some service managers and containers hand out) fails:
//!   `connect("@name")` is ENOENT while a datagram sent to the abstract
//!   address arrives (the test below sends one).
//! * Since it reads the variable at every call, the variable would have to
//!   stay in the environment for the agent's whole life (it notifies until
//!   `STOPPING=1`). This module reads it once, at start-up before any thread
//!   exists, and removes it, so nothing started later talks to the service
//!   manager as the agent (and no `remove_var` runs once threads do).
//!
//! What is left to write is a datagram send, the watchdog's two variables
//! and one `clock_gettime`: fewer lines than the wrapper the crate would need.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Sends notifications to `$NOTIFY_SOCKET` when the service manager set it.
pub struct Notifier {
    target: Option<Target>,
}

enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Target {
    /// `$NOTIFY_SOCKET`: a path, or `@name` in the abstract namespace.
    fn parse(s: &str) -> Option<Target> {
        if let Some(name) = s.strip_prefix('@') {
            Some(Target::Abstract(name.as_bytes().to_vec()))
        } else if s.starts_with('/') {
            Some(Target::Path(PathBuf::from(s)))
        } else {
            None
        }
    }
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and removes it from the environment so that
    /// processes we might spawn do not talk to the service manager as us.
    pub fn from_env() -> Notifier {
        let target =
            std::env::var_os("NOTIFY_SOCKET").and_then(|v| Target::parse(&v.to_string_lossy()));
        // SAFETY: called at start-up before other threads exist.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        Notifier { target }
    }

    /// Sends one notification (e.g. `READY=1\nSTATUS=...`). Failures are logged, not fatal.
    pub fn notify(&self, message: &str) {
        let Some(target) = &self.target else { return };
        let result = UnixDatagram::unbound().and_then(|sock| match target {
            Target::Path(p) => sock.send_to(message.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(message.as_bytes(), &addr).map(|_| ())
            }
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC` systemd 253+ asks for.
    pub fn reloading(&self) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading configuration"
        ));
    }
}

/// Half of `WATCHDOG_USEC` when the watchdog is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    {
        if pid != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    #[test]
    fn notifications_reach_an_abstract_socket_and_a_path() {
        let name = format!("snykey-test-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_rx = UnixDatagram::bind_addr(&addr).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let path_rx = UnixDatagram::bind(&path).unwrap();
        for (target, rx) in [
            (format!("@{name}"), &abstract_rx),
            (path.display().to_string(), &path_rx),
        ] {
            let notifier = Notifier {
                target: Target::parse(&target),
            };
            notifier.notify("READY=1\nSTATUS=test");
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1\nSTATUS=test", "{target}");
        }
        assert!(Target::parse("relative/notify").is_none());
    }
}

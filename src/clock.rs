//! Wall-clock seam: expiry and refresh timing read the time through
//! [`Clock`], so a test can give the broker a clock of its own.

use std::time::{Duration, SystemTime};

pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Time since boot, suspend included (`CLOCK_BOOTTIME`): the clock claims
/// are timed on (docs/protocol.md rules 3, 5, 6). A monotonic clock that stops while
/// the machine is suspended would let a send window outlast a suspend and a
/// takeover period ignore one; this one counts them. Falls back to the
/// monotonic clock where the kernel has no `CLOCK_BOOTTIME`.
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec the call fills.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0 {
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0).min(999_999_999);
        return Duration::new(secs, nanos);
    }
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// RFC 3339 in UTC with whole seconds: `2026-11-22T21:30:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `base` ± `fraction` at random (never negative).
pub fn jittered(base: Duration, fraction: f64) -> Duration {
    let f = 1.0 + fraction * (rand::random::<f64>() * 2.0 - 1.0);
    base.mul_f64(f.max(0.0))
}

#[cfg(test)]
mod boottime_tests {
    #[test]
    fn boottime_goes_on_and_at_least_as_fast_as_the_monotonic_clock() {
        let (b0, m0) = (super::boottime(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (b1, m1) = (super::boottime(), std::time::Instant::now());
        assert!(b1 > b0);
        // Both measured the same 20 ms (boottime also counts suspend).
        assert!(b1 - b0 + std::time::Duration::from_millis(5) >= m1 - m0);
    }
}

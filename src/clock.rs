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

/// RFC 3339 in UTC with whole seconds: `2026-11-22T21:30:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `base` ± `fraction` at random (never negative).
pub fn jittered(base: Duration, fraction: f64) -> Duration {
    let f = 1.0 + fraction * (rand::random::<f64>() * 2.0 - 1.0);
    base.mul_f64(f.max(0.0))
}

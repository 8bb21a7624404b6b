//! Waiting without timing luck: every wait polls something observable until a
//! generous deadline and, when it gives up, says what it last saw; tests that
//! measure rates or intervals take the [`timing`] lock so that none of them
//! measures while another loads the machine on purpose.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a probe of [`wait_for`] answers: done (with a value), or what it saw.
pub trait Probe {
    type Done;
    fn seen(self) -> Result<Self::Done, String>;
}

impl Probe for bool {
    type Done = ();
    fn seen(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err(
                "the condition did not hold (a bool probe: return Err(what you saw) to see more)"
                    .into(),
            )
        }
    }
}

impl<T, E: std::fmt::Display> Probe for Result<T, E> {
    type Done = T;
    fn seen(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `probe` every 50 ms until it is done and returns its value, or
/// panics after `secs` seconds naming what was awaited, how often it was
/// probed and what the last probe saw.
pub fn wait_for<P: Probe>(what: &str, secs: u64, mut probe: impl FnMut() -> P) -> P::Done {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut probes = 0u32;
    loop {
        probes += 1;
        let last = match probe().seen() {
            Ok(done) => return done,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:?} waiting for {what} ({probes} probes); last seen: {last}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static TIMING: Mutex<()> = Mutex::new(());

/// The serial group of tests that measure rates, intervals or latencies (and
/// of the chaos test, which loads the machine on purpose): hold the guard for
/// the whole test. A test that failed while holding it does not poison it.
pub fn timing() -> MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

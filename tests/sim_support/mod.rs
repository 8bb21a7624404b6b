//! What both deterministic simulations (`tests/sim.rs`, the rotation rule;
//! `tests/sim_secrets.rs`, the other single-copy secrets) share: the seeded
//! random source, the one-step yield that lets the scheduler interleave the
//! real protocol code between any two calls to the world, the seed range
//! from the environment, and tracing. Kept in a directory so that Cargo
//! does not build it as a test of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// SplitMix64: tiny, fast, and the same on every platform.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Pending once, then ready: one step of the simulation.
pub struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// Yields to the scheduler: other agents move, time passes, faults strike.
pub fn step() -> YieldOnce {
    YieldOnce(false)
}

/// `SNYKEY_SIM_TRACE` set: every step is printed.
pub fn tracing_on() -> bool {
    std::env::var("SNYKEY_SIM_TRACE").is_ok()
}

/// (first seed, how many): `SNYKEY_SIM_SEED=N` replays one seed,
/// `SNYKEY_SIM_SEEDS=N` and `SNYKEY_SIM_BASE=B` run N from B; else
/// `default` seeds from 1.
pub fn seeds(default: u64) -> (u64, u64) {
    if let Some(s) = std::env::var("SNYKEY_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return (s, 1);
    }
    let n = std::env::var("SNYKEY_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let base = std::env::var("SNYKEY_SIM_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    (base, n)
}

//! Proactive refresh: every managed credential has one next-refresh time,
//! kept in a timer queue (a `BTreeMap` ordered by deadline) that one task
//! sleeps on. Nothing scans all credentials; between refreshes the task is
//! parked in a single `sleep`, so an idle agent uses no CPU.
//!
//! When to refresh ([`next_refresh`]): at `at` (default 0.67) of the token's
//! lifetime, jittered per credential by `jitter` (±10%) so that credentials
//! created together spread out, and never later than the point where the
//! token would have less than the default `min_validity` left (capped at half
//! its lifetime, as for callers). On failure ([`backoff`]): capped
//! exponential backoff with jitter and a floor, honouring `Retry-After`;
//! permanent errors stop retries (the credential needs a login).
//!
//! No retry crate (`backon`, in the tree through `redis`, or `backoff`): they
//! wrap a future in a loop that sleeps between its attempts, one sleeping
//! task per retrying call, and own the attempt count. Here a failed refresh
//! is not retried in place: the next attempt is planned in the one timer
//! queue every credential shares (10 000 credentials backing off are 10 000
//! entries, not 10 000 tasks), the failure count lives with the credential
//! (`snykey status` shows it), and the wait is [`backoff`], a pure function
//! of that count, Snyk's `Retry-After` and a random draw passed in, so that
//! its tests are exact.

use crate::credential::CredKey;
use crate::locks::Recover;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

/// The shortest wait after a failure: no failure path can spin.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How many refreshes run at once (a burst of due credentials queues here).
pub const CONCURRENT_REFRESHES: usize = 16;

/// When the token (issued at `issued`, expiring at `expires`) should be
/// refreshed. `r` is a uniform random number in [0, 1) (the jitter draw).
pub fn next_refresh(
    issued: SystemTime,
    expires: SystemTime,
    at: f64,
    jitter: f64,
    min_validity: Duration,
    r: f64,
) -> SystemTime {
    let lifetime = expires.duration_since(issued).unwrap_or(Duration::ZERO);
    let factor = (at * (1.0 + jitter * (2.0 * r - 1.0))).clamp(0.05, 0.95);
    let by_fraction = issued + lifetime.mul_f64(factor);
    // A caller asking for the default validity must never find the token too
    // old: finish refreshing before that point, with a tenth of the lifetime
    // to spare for the grant itself.
    let keep = min_validity.min(lifetime / 2) + lifetime / 10;
    let latest = expires.checked_sub(keep).unwrap_or(issued);
    by_fraction.min(latest).max(issued)
}

/// The wait before attempt `failures + 1` after `failures` consecutive
/// failures: 1 s, 2 s, 4 s … capped at [`BACKOFF_CAP`], ±20% jitter, never
/// under [`BACKOFF_FLOOR`], and never shorter than Snyk's `Retry-After`.
pub fn backoff(failures: u32, retry_after: Option<Duration>, r: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_FLOOR.saturating_mul(1u32 << exp).min(BACKOFF_CAP);
    let jittered = base
        .mul_f64(0.8 + 0.4 * r)
        .clamp(BACKOFF_FLOOR, BACKOFF_CAP);
    match retry_after {
        Some(ra) => jittered.max(ra.min(BACKOFF_CAP * 4)),
        None => jittered,
    }
}

#[derive(Default)]
struct Queue {
    by_time: BTreeMap<(Instant, u64), CredKey>,
    by_key: HashMap<CredKey, (Instant, u64)>,
    seq: u64,
}

/// The timer queue of next refreshes.
#[derive(Default)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Scheduler {
    pub fn new() -> Arc<Scheduler> {
        Arc::new(Scheduler::default())
    }

    fn q(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().recover()
    }

    /// Sets (or moves) the next refresh of `key` to `when`.
    pub fn schedule(&self, key: &CredKey, when: Instant) {
        let mut q = self.q();
        if let Some(old) = q.by_key.remove(key) {
            q.by_time.remove(&old);
        }
        q.seq += 1;
        let slot = (when, q.seq);
        q.by_time.insert(slot, key.clone());
        q.by_key.insert(key.clone(), slot);
        let earliest = q.by_time.keys().next().map(|k| k.1) == Some(slot.1);
        drop(q);
        if earliest {
            self.wake.notify_one();
        }
    }

    pub fn cancel(&self, key: &CredKey) {
        let mut q = self.q();
        if let Some(old) = q.by_key.remove(key) {
            q.by_time.remove(&old);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.q().by_key.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns every key due at `now`.
    fn due(&self, now: Instant) -> (Vec<CredKey>, Option<Instant>) {
        let mut q = self.q();
        let mut out = Vec::new();
        while let Some((&(when, seq), _)) = q.by_time.iter().next() {
            if when > now {
                break;
            }
            if let Some(key) = q.by_time.remove(&(when, seq)) {
                q.by_key.remove(&key);
                out.push(key);
            }
        }
        let next = q.by_time.keys().next().map(|k| k.0);
        (out, next)
    }

    /// Runs due refreshes (at most [`CONCURRENT_REFRESHES`] at once) until shutdown.
    pub async fn run<F, Fut>(self: Arc<Self>, refresh: F, mut shutdown: watch::Receiver<bool>)
    where
        F: Fn(CredKey) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(CONCURRENT_REFRESHES));
        let refresh = Arc::new(refresh);
        loop {
            let (due, next) = self.due(Instant::now());
            for key in due {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let fut = refresh(key);
                tokio::spawn(async move {
                    fut.await;
                    drop(permit);
                });
            }
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep_until(sleep_until) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn refresh_happens_at_two_thirds_of_the_lifetime() {
        let issued = t0();
        let expires = issued + Duration::from_secs(3600);
        // r = 0.5: no jitter.
        let when = next_refresh(issued, expires, 0.67, 0.1, Duration::from_secs(300), 0.5);
        assert_eq!(
            when.duration_since(issued).unwrap(),
            Duration::from_secs(2412)
        );
    }

    #[test]
    fn min_validity_can_pull_the_refresh_earlier() {
        let issued = t0();
        let expires = issued + Duration::from_secs(3600);
        // Keeping 30 minutes of validity (plus 6 minutes for the grant) means
        // refreshing by minute 24.
        let when = next_refresh(issued, expires, 0.67, 0.0, Duration::from_secs(1800), 0.5);
        assert_eq!(
            when.duration_since(issued).unwrap(),
            Duration::from_secs(1440)
        );
        // For a 10 s token the default 5 min is capped at half the lifetime: 4 s.
        let expires = issued + Duration::from_secs(10);
        let when = next_refresh(issued, expires, 0.67, 0.0, Duration::from_secs(300), 0.5);
        assert_eq!(when.duration_since(issued).unwrap(), Duration::from_secs(4));
    }

    #[test]
    fn jitter_spreads_ten_thousand_credentials_created_together() {
        let issued = t0();
        let expires = issued + Duration::from_secs(3600);
        let mut times: Vec<u64> = (0..10_000)
            .map(|i| {
                let r = (i as f64 + 0.5) / 10_000.0;
                next_refresh(issued, expires, 0.67, 0.1, Duration::from_secs(300), r)
                    .duration_since(issued)
                    .unwrap()
                    .as_secs()
            })
            .collect();
        times.sort();
        let (min, max) = (times[0], times[times.len() - 1]);
        // ±10% of 2412 s: about 2171..2653 s, and no second holds more than a handful.
        assert!(
            (2170..=2175).contains(&min) && (2649..=2654).contains(&max),
            "{min}..{max}"
        );
        let mut per_second: HashMap<u64, u32> = HashMap::new();
        for t in &times {
            *per_second.entry(*t).or_default() += 1;
        }
        assert!(
            per_second.values().all(|n| *n <= 25),
            "too many refreshes in one second"
        );
    }

    #[test]
    fn backoff_grows_caps_and_never_spins() {
        let mid = |f| backoff(f, None, 0.5);
        assert_eq!(mid(1), Duration::from_secs(1));
        assert_eq!(mid(2), Duration::from_secs(2));
        assert_eq!(mid(3), Duration::from_secs(4));
        assert_eq!(mid(9), Duration::from_secs(256));
        assert_eq!(mid(10), BACKOFF_CAP);
        assert_eq!(mid(1000), BACKOFF_CAP);
        for f in 0..40 {
            for r in [0.0, 0.3, 0.999] {
                let b = backoff(f, None, r);
                assert!(b >= BACKOFF_FLOOR && b <= BACKOFF_CAP, "{f} {r}: {b:?}");
            }
        }
        // Jitter: ±20%.
        assert_eq!(backoff(3, None, 0.0), Duration::from_millis(3200));
        assert_eq!(backoff(3, None, 1.0), Duration::from_millis(4800));
    }

    #[test]
    fn retry_after_is_honoured() {
        assert_eq!(
            backoff(1, Some(Duration::from_secs(30)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(6, Some(Duration::from_secs(3)), 0.5),
            Duration::from_secs(32)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_fires_in_deadline_order_and_reschedules_replace() {
        let s = Scheduler::new();
        let a = CredKey::parse("o", "a").unwrap();
        let b = CredKey::parse("o", "b").unwrap();
        let now = Instant::now();
        s.schedule(&a, now + Duration::from_secs(10));
        s.schedule(&b, now + Duration::from_secs(5));
        s.schedule(&a, now + Duration::from_secs(3));
        assert_eq!(s.len(), 2);
        let (due, next) = s.due(now + Duration::from_secs(4));
        assert_eq!(due, vec![a.clone()]);
        assert_eq!(next, Some(now + Duration::from_secs(5)));
        s.cancel(&b);
        assert!(s.is_empty());

        let fired = Arc::new(Mutex::new(Vec::new()));
        let f2 = Arc::clone(&fired);
        let (_tx, rx) = watch::channel(false);
        s.schedule(&b, Instant::now() + Duration::from_secs(60));
        s.schedule(&a, Instant::now() + Duration::from_secs(30));
        let runner = tokio::spawn(Arc::clone(&s).run(
            move |k| {
                let f = Arc::clone(&f2);
                async move { f.lock().unwrap().push((k, Instant::now())) }
            },
            rx,
        ));
        tokio::time::sleep(Duration::from_secs(61)).await;
        let got = fired.lock().unwrap().clone();
        assert_eq!(
            got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            vec![a, b]
        );
        runner.abort();
    }
}

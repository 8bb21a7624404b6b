//! The publisher against an in-memory shelf with faults on demand, on
//! tokio's paused clock (the wall clock follows it).

use super::*;
use crate::store::StoreError;
use crate::wire::published::PublishedToken;
use std::sync::atomic::{AtomicU32, Ordering};

/// KV v2 as far as publishing goes: versions, check-and-set, destroy.
#[derive(Default)]
struct MemoryShelf {
    versions: Mutex<HashMap<CredKey, Vec<Option<PublishedToken>>>>,
    /// Writes to refuse (as an unreachable OpenBao would) before taking any.
    refuse: AtomicU32,
    writes: AtomicU32,
}

#[async_trait::async_trait]
impl TokenShelf for MemoryShelf {
    async fn read(&self, key: &CredKey) -> Result<crate::store::OnShelf, StoreError> {
        let m = self.versions.lock().recover();
        let v = m.get(key).cloned().unwrap_or_default();
        Ok(crate::store::OnShelf {
            record: v.last().cloned().flatten(),
            version: v.len() as u64,
        })
    }

    async fn write(
        &self,
        key: &CredKey,
        record: &PublishedToken,
        cas: u64,
    ) -> Result<u64, StoreError> {
        if self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("OpenBao is down".into()));
        }
        let mut m = self.versions.lock().recover();
        let v = m.entry(key.clone()).or_default();
        if v.len() as u64 != cas {
            return Err(StoreError::Conflict { expected: cas });
        }
        v.push(Some(record.clone()));
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(v.len() as u64)
    }

    async fn destroy_before(&self, key: &CredKey, version: u64) -> Result<(), StoreError> {
        let mut m = self.versions.lock().recover();
        if let Some(v) = m.get_mut(key) {
            for (i, slot) in v.iter_mut().enumerate() {
                if (i as u64) + 1 < version {
                    *slot = None;
                }
            }
        }
        Ok(())
    }

    fn path(&self, key: &CredKey) -> String {
        format!("kv/snyk-tokens/{key}")
    }
}

/// The wall clock, moving with tokio's (paused) clock.
struct TokioClock {
    origin: SystemTime,
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.origin + self.start.elapsed()
    }
}

const V: Duration = Duration::from_secs(600);

fn setup() -> (
    Arc<MemoryShelf>,
    Arc<Publisher>,
    Arc<TokioClock>,
    watch::Sender<bool>,
) {
    let shelf = Arc::new(MemoryShelf::default());
    let clock = Arc::new(TokioClock {
        origin: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        start: tokio::time::Instant::now(),
    });
    let publisher = Publisher::new(
        Arc::clone(&shelf) as Arc<dyn TokenShelf>,
        PublishSettings {
            min_validity: V,
            credentials: vec![crate::access::Pattern::parse("org/*").unwrap()],
        },
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let (tx, rx) = watch::channel(false);
    publisher.spawn(rx);
    (shelf, publisher, clock, tx)
}

fn key() -> CredKey {
    CredKey::parse("org", "app").unwrap()
}

fn minted(clock: &TokioClock, at: &str, lifetime: u64) -> CachedToken {
    let now = clock.now();
    CachedToken {
        access_token: Secret::new(at),
        expires_at: now + Duration::from_secs(lifetime),
        issued_at: Some(now),
    }
}

fn current(shelf: &MemoryShelf) -> Option<PublishedToken> {
    shelf
        .versions
        .lock()
        .recover()
        .get(&key())
        .and_then(|v| v.last().cloned().flatten())
}

#[tokio::test(start_paused = true)]
async fn a_minted_token_is_published_and_an_older_one_never_replaces_it() {
    let (shelf, p, clock, _stop) = setup();
    p.offer_token(
        &key(),
        &minted(&clock, "at-2", 3600),
        2,
        Some("https://api.snyk.io"),
    );
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    let got = current(&shelf).unwrap();
    assert_eq!(got.access_token.as_ref().unwrap().expose(), "at-2");
    assert_eq!((got.generation, got.org_id.as_str()), (2, "org"));
    assert_eq!(got.api_url.as_deref(), Some("https://api.snyk.io"));
    // Another agent's slower offer of an older generation, with a later expiry.
    tokio::time::sleep(Duration::from_secs(5)).await;
    p.offer_token(&key(), &minted(&clock, "at-1", 3600), 1, None);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        current(&shelf).unwrap().access_token.unwrap().expose(),
        "at-2"
    );
    assert_eq!(shelf.writes.load(Ordering::SeqCst), 1);
    // A credential outside [publish].credentials is never written.
    let other = CredKey::parse("elsewhere", "app").unwrap();
    p.offer_token(&other, &minted(&clock, "at-x", 3600), 9, None);
    assert!(p.status(&other).is_none());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shelf.versions.lock().recover().get(&other).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_is_retried_and_shown_and_the_offer_returns_at_once() {
    let (shelf, p, clock, _stop) = setup();
    shelf.refuse.store(3, Ordering::SeqCst);
    let before = std::time::Instant::now();
    p.offer_token(&key(), &minted(&clock, "at-1", 3600), 1, None);
    assert!(before.elapsed() < Duration::from_millis(50), "offer waited");
    let e = p.settle(&key(), Duration::from_secs(5)).await.unwrap_err();
    assert!(e.contains("OpenBao is down"), "{e}");
    let st = p.status(&key()).unwrap();
    assert_eq!(st.failures, 1);
    assert_eq!(st.path, "kv/snyk-tokens/org/app");
    assert_eq!(p.failing().0, 1);
    // Backoff: 1 s, 2 s, 4 s (±20%); then it lands.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let st = p.status(&key()).unwrap();
    assert_eq!((st.failures, st.last_error.as_deref()), (0, None), "{st:?}");
    assert!(st.expires_at.is_some());
    assert_eq!(p.failing().0, 0);
    assert_eq!(
        current(&shelf).unwrap().access_token.unwrap().expose(),
        "at-1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delete_marks_the_path_and_destroys_every_version_before_the_marker() {
    let (shelf, p, clock, _stop) = setup();
    for (g, at) in [(1, "at-1"), (2, "at-2")] {
        p.offer_token(&key(), &minted(&clock, at, 3600), g, None);
        p.settle(&key(), Duration::from_secs(5)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    p.withdraw(&key(), 3, Withdrawn::Deleted);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    let versions = shelf
        .versions
        .lock()
        .recover()
        .get(&key())
        .cloned()
        .unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[..2].iter().all(Option::is_none), "{versions:?}");
    let marker = versions[2].clone().unwrap();
    assert_eq!(marker.withdrawn, Some(Withdrawn::Deleted));
    assert_eq!(marker.generation, 3);
    assert!(marker.access_token.is_none());
    // A token minted before the delete (generation 2), arriving late.
    p.offer_token(&key(), &minted(&clock, "at-late", 3600), 2, None);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(current(&shelf).unwrap().withdrawn, Some(Withdrawn::Deleted));
    // A put after the delete publishes again.
    p.offer_token(&key(), &minted(&clock, "at-new", 3600), 4, None);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        current(&shelf).unwrap().access_token.unwrap().expose(),
        "at-new"
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_not_replaced_in_time_is_withdrawn_before_it_has_less_than_the_validity() {
    let (shelf, p, clock, _stop) = setup();
    p.offer_token(&key(), &minted(&clock, "at-1", 3600), 1, None);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    let expires = current(&shelf).unwrap().expiry().unwrap();
    // No refresh comes (Snyk down). Just before the token would have less
    // than V left, it is withdrawn; it never sits there with less.
    tokio::time::sleep(Duration::from_secs(3600 - 600 - 31)).await;
    assert!(current(&shelf).unwrap().access_token.is_some());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let marker = current(&shelf).unwrap();
    assert_eq!(marker.withdrawn, Some(Withdrawn::Stale));
    assert!(expires.duration_since(clock.now()).unwrap() >= V);
    assert_eq!(p.status(&key()).unwrap().withdrawn, Some(Withdrawn::Stale));
    // The next token replaces the marker.
    p.offer_token(&key(), &minted(&clock, "at-2", 3600), 1, None);
    p.settle(&key(), Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        current(&shelf).unwrap().access_token.unwrap().expose(),
        "at-2"
    );
}

#[tokio::test(start_paused = true)]
async fn offers_queued_behind_a_failing_write_keep_only_the_newest() {
    let (shelf, p, clock, _stop) = setup();
    shelf.refuse.store(1, Ordering::SeqCst);
    p.offer_token(&key(), &minted(&clock, "at-1", 3600), 1, None);
    let _ = p.settle(&key(), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A newer token and then an older one are offered while the retry waits.
    p.offer_token(&key(), &minted(&clock, "at-3", 3600), 3, None);
    p.offer_token(&key(), &minted(&clock, "at-2", 3600), 2, None);
    p.settle(&key(), Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        current(&shelf).unwrap().access_token.unwrap().expose(),
        "at-3"
    );
    let written: Vec<u64> = shelf.versions.lock().recover()[&key()]
        .iter()
        .flatten()
        .map(|r| r.generation)
        .collect();
    assert!(written.windows(2).all(|w| w[0] <= w[1]), "{written:?}");
}

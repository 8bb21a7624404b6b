//! The embedded default cache: a map in this process. Tokens vanish with the
//! process unless `cache.snapshot` keeps them ([`super::snapshot`]); either
//! way harmless: the refresh token is in the store.

use super::snapshot::Saved;
use super::{CacheError, CachedToken, LockGuard, TokenCache};
use crate::credential::CredKey;
use crate::locks::Recover;
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

#[derive(Default)]
pub struct MemoryCache {
    /// Each token with the store generation it was minted at (for the snapshot).
    tokens: RwLock<HashMap<CredKey, (CachedToken, u64)>>,
    pending: std::sync::Mutex<HashMap<String, (Secret, SystemTime)>>,
    /// Counts every change of `tokens`: the snapshot is written only when it moved.
    changes: AtomicU64,
    /// Told when a token is dropped: the snapshot is written at once, not
    /// at the next interval, so a dropped token is not revived after a crash.
    dropped: tokio::sync::Notify,
}

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache::default()
    }

    /// How many changes the cache has seen (a counter, not a size).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Every token still valid, with its generation (what the snapshot writes).
    pub fn saved(&self) -> Vec<Saved> {
        let now = SystemTime::now();
        let map = self.tokens.read().recover();
        map.iter()
            .filter(|(_, (t, _))| t.expires_at > now)
            .map(|(key, (token, generation))| Saved {
                key: key.clone(),
                token: token.clone(),
                generation: *generation,
            })
            .collect()
    }

    /// Waits until a token is dropped.
    pub async fn dropped(&self) {
        self.dropped.notified().await
    }
}

#[async_trait]
impl TokenCache for MemoryCache {
    async fn get(&self, key: &CredKey) -> Result<Option<CachedToken>, CacheError> {
        let now = SystemTime::now();
        let map = self.tokens.read().recover();
        Ok(map
            .get(key)
            .map(|(t, _)| t)
            .filter(|t| t.expires_at > now)
            .cloned())
    }

    async fn put(
        &self,
        key: &CredKey,
        token: &CachedToken,
        generation: u64,
    ) -> Result<(), CacheError> {
        let mut map = self.tokens.write().recover();
        let now = SystemTime::now();
        // Drop expired entries now and then so deleted credentials do not pile up.
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, (t, _)| t.expires_at > now);
        }
        map.insert(key.clone(), (token.clone(), generation));
        self.changes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn delete(&self, key: &CredKey) -> Result<(), CacheError> {
        if self.tokens.write().recover().remove(key).is_some() {
            self.changes.fetch_add(1, Ordering::SeqCst);
            self.dropped.notify_one();
        }
        Ok(())
    }

    async fn lock(
        &self,
        key: &CredKey,
        _ttl: Duration,
        _wait: Duration,
    ) -> Result<LockGuard, CacheError> {
        Ok(LockGuard {
            key: key.clone(),
            fence: String::new(),
        })
    }

    async fn unlock(&self, _guard: LockGuard) -> Result<(), CacheError> {
        Ok(())
    }

    async fn put_pending(
        &self,
        state: &str,
        value: &Secret,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut p = self.pending.lock().recover();
        let now = SystemTime::now();
        p.retain(|_, (_, exp)| *exp > now);
        p.insert(state.to_string(), (value.clone(), now + ttl));
        Ok(())
    }

    async fn take_pending(&self, state: &str) -> Result<Option<Secret>, CacheError> {
        let mut p = self.pending.lock().recover();
        Ok(p.remove(state)
            .filter(|(_, exp)| *exp > SystemTime::now())
            .map(|(v, _)| v))
    }

    async fn ready(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

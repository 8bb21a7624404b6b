//! The embedded default cache: a map in this process. Tokens vanish with the
//! process, which is harmless: the refresh token is in the store.

use super::{CacheError, CachedToken, LockGuard, TokenCache};
use crate::credential::CredKey;
use crate::locks::Recover;
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

#[derive(Default)]
pub struct MemoryCache {
    tokens: RwLock<HashMap<CredKey, CachedToken>>,
    pending: std::sync::Mutex<HashMap<String, (Secret, SystemTime)>>,
}

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache::default()
    }
}

#[async_trait]
impl TokenCache for MemoryCache {
    async fn get(&self, key: &CredKey) -> Result<Option<CachedToken>, CacheError> {
        let now = SystemTime::now();
        let map = self.tokens.read().recover();
        Ok(map.get(key).filter(|t| t.expires_at > now).cloned())
    }

    async fn put(&self, key: &CredKey, token: &CachedToken) -> Result<(), CacheError> {
        let mut map = self.tokens.write().recover();
        let now = SystemTime::now();
        // Drop expired entries now and then so deleted credentials do not pile up.
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, t| t.expires_at > now);
        }
        map.insert(key.clone(), token.clone());
        Ok(())
    }

    async fn delete(&self, key: &CredKey) -> Result<(), CacheError> {
        self.tokens.write().recover().remove(key);
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

//! Where access tokens live until they expire.
//!
//! [`TokenCache`] is the seam: [`memory::MemoryCache`] is the embedded
//! default; the Redis cache sits beside it and adds the cross-agent refresh
//! lock (`lock`/`unlock`), which the memory cache grants at once because the
//! in-process single-flight already serialises refreshes in one agent.
//!
//! Nothing here is needed for safety (docs/protocol.md rule 2): the lock only saves
//! agents from doing the same work twice, and a flush costs refreshes,
//! never a credential. The secret store's claims arbitrate.

pub(crate) mod memory;
pub mod redis;
pub mod snapshot;

use crate::credential::CredKey;
use crate::secret::Secret;
use async_trait::async_trait;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// An access token and when it stops working.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: Secret,
    pub expires_at: SystemTime,
    /// When it was minted, if known (a token read back from Redis has only a TTL).
    pub issued_at: Option<SystemTime>,
}

impl CachedToken {
    /// Time left at `now` (zero when expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Its whole lifetime, if known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.issued_at
            .and_then(|i| self.expires_at.duration_since(i).ok())
    }
}

/// Proof of holding the cross-agent refresh lock of one credential.
#[derive(Debug)]
pub struct LockGuard {
    pub key: CredKey,
    /// Random fencing value: only the holder can release it.
    pub fence: String,
}

#[derive(Debug, Error, Clone)]
pub enum CacheError {
    #[error("the token cache is unavailable: {0}")]
    Unavailable(String),
    #[error("another agent is refreshing this credential and did not finish within {0:?}")]
    LockTimeout(Duration),
}

#[async_trait]
pub trait TokenCache: Send + Sync {
    async fn get(&self, key: &CredKey) -> Result<Option<CachedToken>, CacheError>;
    /// Stores a token with a TTL equal to its remaining lifetime.
    /// `generation`: the store generation of the credential it was minted at
    /// (docs/protocol.md rule 4), which the memory cache's snapshot checks at start
    /// ([`snapshot::revives`]); Redis keeps tokens across restarts by itself
    /// and ignores it.
    async fn put(
        &self,
        key: &CredKey,
        token: &CachedToken,
        generation: u64,
    ) -> Result<(), CacheError>;
    async fn delete(&self, key: &CredKey) -> Result<(), CacheError>;
    /// Takes the cross-agent refresh lock, waiting at most `wait`; held at most `ttl`.
    async fn lock(
        &self,
        key: &CredKey,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, CacheError>;
    /// Releases the lock if (and only if) it is still ours.
    async fn unlock(&self, guard: LockGuard) -> Result<(), CacheError>;
    /// Stores a pending browser login under its state (`pkce:{state}`), for
    /// `ttl`. The value holds the PKCE verifier and ids, never a client secret.
    async fn put_pending(
        &self,
        state: &str,
        value: &Secret,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Claims a pending login: returns it and removes it in one atomic step,
    /// so a state can be used once.
    async fn take_pending(&self, state: &str) -> Result<Option<Secret>, CacheError>;
    async fn ready(&self) -> Result<(), CacheError>;
    fn describe(&self) -> String;
}

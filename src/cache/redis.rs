//! The Redis token cache, shared by every agent that points at it.
//!
//! Layout (seed-compatible, SPEC §8): `{key_prefix}:{org}:{client}` holds the
//! access token string with a TTL equal to its remaining lifetime; the refresh
//! lock is `{key_prefix}:lock:{org}:{client}` = a random fencing value, taken
//! with `SET NX PX` and released by a compare-and-delete script, so an agent
//! whose lock expired can never release someone else's.
//!
//! The connection manager reconnects by itself; every command has a response
//! timeout so a dead Redis fails fast instead of stalling callers.

use super::{CacheError, CachedToken, LockGuard, TokenCache};
use crate::ids::CredKey;
use crate::secret::Secret;
use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::{Duration, SystemTime};

const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

pub struct RedisCache {
    client: redis::Client,
    /// Created on first use and kept; the manager reconnects by itself.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    prefix: String,
    describe: String,
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(format!("redis: {e}"))
}

impl RedisCache {
    /// Connects (the URL may carry `user:password@` and `/db`; `rediss://` is TLS).
    pub async fn connect(
        url: &Secret,
        prefix: &str,
        describe: String,
    ) -> Result<RedisCache, CacheError> {
        let client = redis::Client::open(url.expose())
            .map_err(|e| CacheError::Unavailable(format!("invalid cache.url: {:?}", e.kind())))?;
        let cache = RedisCache {
            client,
            conn: tokio::sync::Mutex::new(None),
            prefix: prefix.to_string(),
            describe,
        };
        // Connect now if Redis is there; if not, the agent still starts (ready
        // says why) and connects on first use.
        if let Err(e) = cache.conn().await {
            tracing::warn!(error = %e, "Redis is not reachable at start; the agent will keep trying");
        }
        Ok(cache)
    }

    async fn conn(&self) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let c = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn key(&self, key: &CredKey) -> String {
        format!("{}:{}:{}", self.prefix, key.org, key.client)
    }

    fn lifetime_key(&self, key: &CredKey) -> String {
        format!("{}:life:{}:{}", self.prefix, key.org, key.client)
    }

    fn lock_key(&self, key: &CredKey) -> String {
        format!("{}:lock:{}:{}", self.prefix, key.org, key.client)
    }
}

fn fence() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..24)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[async_trait]
impl TokenCache for RedisCache {
    async fn get(&self, key: &CredKey) -> Result<Option<CachedToken>, CacheError> {
        let mut c = self.conn().await?;
        let k = self.key(key);
        let (token, pttl, life): (Option<String>, i64, Option<u64>) = redis::pipe()
            .get(&k)
            .pttl(&k)
            .get(self.lifetime_key(key))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        let now = SystemTime::now();
        Ok(match token {
            Some(t) if pttl > 0 => {
                let expires_at = now + Duration::from_millis(pttl as u64);
                Some(CachedToken {
                    access_token: Secret::new(t),
                    expires_at,
                    issued_at: life.and_then(|l| expires_at.checked_sub(Duration::from_secs(l))),
                })
            }
            _ => None,
        })
    }

    async fn put(&self, key: &CredKey, token: &CachedToken) -> Result<(), CacheError> {
        let remaining = token.remaining(SystemTime::now());
        if remaining.is_zero() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let ttl_ms = remaining.as_millis().max(1) as u64;
        let mut pipe = redis::pipe();
        pipe.pset_ex(self.key(key), token.access_token.expose(), ttl_ms)
            .ignore();
        // The lifetime rides beside the token (same TTL), so another agent can
        // judge how fresh the token is; the token key stays seed-compatible.
        if let Some(life) = token.lifetime() {
            pipe.pset_ex(self.lifetime_key(key), life.as_secs().max(1), ttl_ms)
                .ignore();
        }
        let _: () = pipe.query_async(&mut c).await.map_err(unavailable)?;
        Ok(())
    }

    async fn delete(&self, key: &CredKey) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let _: i64 = c
            .del(&[self.key(key), self.lifetime_key(key)])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn lock(
        &self,
        key: &CredKey,
        ttl: Duration,
        wait: Duration,
    ) -> Result<LockGuard, CacheError> {
        let lock_key = self.lock_key(key);
        let value = fence();
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(20);
        loop {
            let mut c = self.conn().await?;
            let taken: Option<String> = redis::cmd("SET")
                .arg(&lock_key)
                .arg(&value)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut c)
                .await
                .map_err(unavailable)?;
            if taken.is_some() {
                return Ok(LockGuard {
                    key: key.clone(),
                    fence: value,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CacheError::LockTimeout(wait));
            }
            tokio::time::sleep(crate::clock::jittered(pause, 0.5)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    async fn unlock(&self, guard: LockGuard) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let released: i64 = redis::Script::new(RELEASE)
            .key(self.lock_key(&guard.key))
            .arg(&guard.fence)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)?;
        if released == 0 {
            tracing::warn!(org_id = %guard.key.org, client_id = %guard.key.client,
                "the refresh lock had expired before it was released (the refresh took longer than its TTL)");
        }
        Ok(())
    }

    async fn put_pending(
        &self,
        state: &str,
        value: &Secret,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let _: () = c
            .set_ex(
                format!("pkce:{state}"),
                value.expose(),
                ttl.as_secs().max(1),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_pending(&self, state: &str) -> Result<Option<Secret>, CacheError> {
        let mut c = self.conn().await?;
        // GETDEL: read and delete in one step, so a state is claimed once.
        let v: Option<String> = redis::cmd("GETDEL")
            .arg(format!("pkce:{state}"))
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        Ok(v.map(Secret::new))
    }

    async fn ready(&self) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(unavailable)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Unavailable(format!(
                "redis answered {pong:?} to PING"
            )))
        }
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

//! The Redis token cache, shared by every agent that points at it.
//!
//! Layout (seed-compatible, docs/storage.md): `{key_prefix}:{org}:{client}` holds the
//! access token string with a TTL equal to its remaining lifetime; the refresh
//! lock is `{key_prefix}:lock:{org}:{client}` = a random fencing value, taken
//! with `SET NX PX` and released by a compare-and-delete script, so an agent
//! whose lock expired can never release someone else's.
//!
//! The connection manager reconnects by itself; every command has a response
//! timeout so a dead Redis fails fast instead of stalling callers.
//!
//! With Redis Sentinel (`redis+sentinel://` / `rediss+sentinel://`, docs/configuration.md)
//! the master is asked of the sentinels, and asked again after any error that
//! can mean a failover (a dropped or refused connection, a timeout, or
//! `READONLY` from a demoted master): the connection manager alone would keep
//! reconnecting to the old address (redis-rs#1438). Nothing here is needed for
//! safety (docs/protocol.md): a failover may lose the lock, and the store arbitrates.
//!
//! Waiting for the lock is a hand-written poll (20 ms doubling to 250 ms,
//! jittered, until a deadline), not `backon`: a retry crate retries an
//! operation that *failed*, and here a failed Redis call must end the wait
//! at once (the caller then refreshes without the lock) while "someone else
//! holds it" is the case to wait out; saying that to `backon` takes an error
//! type of its own and a `when` filter, more lines than the loop.

use super::{CacheError, CachedToken, LockGuard, TokenCache};
use crate::credential::CredKey;
use crate::secret::Secret;
use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Where the connection goes: one address, or the master the sentinels name.
enum Target {
    Direct(redis::Client),
    Sentinel {
        client: tokio::sync::Mutex<redis::sentinel::SentinelClient>,
        master: String,
    },
}

pub struct RedisCache {
    target: Target,
    /// Created on first use and kept; the manager reconnects by itself.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Sentinel only: the master may have moved; ask the sentinels again
    /// before the next command.
    stale: AtomicBool,
    prefix: String,
    describe: String,
}

/// Errors after which the sentinels are asked for the master again.
fn may_be_failover(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

impl RedisCache {
    /// Connects (the URL may carry `user:password@` and `/db`; `rediss://` is TLS).
    pub async fn connect(
        url: &Secret,
        prefix: &str,
        describe: String,
    ) -> Result<RedisCache, CacheError> {
        let target = match parse_sentinel_url(url.expose())
            .map_err(|m| CacheError::Unavailable(format!("invalid cache.url: {m}")))?
        {
            Some(s) => Target::Sentinel {
                master: s.master.clone(),
                client: tokio::sync::Mutex::new(s.client().map_err(|e| {
                    CacheError::Unavailable(format!("invalid cache.url: {:?}", e.kind()))
                })?),
            },
            None => Target::Direct(redis::Client::open(url.expose()).map_err(|e| {
                CacheError::Unavailable(format!("invalid cache.url: {:?}", e.kind()))
            })?),
        };
        let cache = RedisCache {
            target,
            conn: tokio::sync::Mutex::new(None),
            stale: AtomicBool::new(false),
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

    /// Maps a command's error, and marks the master as possibly moved.
    fn unavailable(&self, e: redis::RedisError) -> CacheError {
        if matches!(self.target, Target::Sentinel { .. }) && may_be_failover(&e) {
            self.stale.store(true, Ordering::Release);
        }
        CacheError::Unavailable(format!("redis: {e}"))
    }

    /// The client for the current master (Sentinel) or the one address.
    async fn client(&self) -> Result<redis::Client, CacheError> {
        match &self.target {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel { client, master } => {
                // A stopped sentinel must not stall callers: bounded like
                // every other Redis command.
                let mut sentinel = client.lock().await;
                let c = tokio::time::timeout(Duration::from_secs(3), sentinel.async_get_client())
                    .await
                    .map_err(|_| {
                        CacheError::Unavailable(format!(
                            "redis sentinel: no answer about master {master:?} within 3s"
                        ))
                    })?
                    .map_err(|e| {
                        CacheError::Unavailable(format!(
                            "redis sentinel: no reachable master {master:?}: {e}"
                        ))
                    })?;
                tracing::info!(master = %master, addr = %c.get_connection_info().addr(),
                    "Redis Sentinel named the master");
                Ok(c)
            }
        }
    }

    async fn conn(&self) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.conn.lock().await;
        if self.stale.swap(false, Ordering::AcqRel) && slot.take().is_some() {
            tracing::info!("asking Redis Sentinel for the master again after an error");
        }
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let client = self.client().await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let c = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
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

    async fn put(
        &self,
        key: &CredKey,
        token: &CachedToken,
        _generation: u64,
    ) -> Result<(), CacheError> {
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
        let _: () = pipe
            .query_async(&mut c)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn delete(&self, key: &CredKey) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let _: i64 = c
            .del(&[self.key(key), self.lifetime_key(key)])
            .await
            .map_err(|e| self.unavailable(e))?;
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
                .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
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
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    async fn take_pending(&self, state: &str) -> Result<Option<Secret>, CacheError> {
        let mut c = self.conn().await?;
        // GETDEL: read and delete in one step, so a state is claimed once.
        let v: Option<String> = redis::cmd("GETDEL")
            .arg(format!("pkce:{state}"))
            .query_async(&mut c)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(v.map(Secret::new))
    }

    async fn ready(&self) -> Result<(), CacheError> {
        let mut c = self.conn().await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(|e| self.unavailable(e))?;
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

/// A parsed `redis+sentinel://[user:pass@]host:port[,host:port...]/MASTER[/DB]`
/// URL (docs/configuration.md); `rediss+sentinel://` uses TLS to the sentinels and to the
/// master. The user and password are the Redis ones (ACL user of the master
/// and its replicas); sentinels are reached without credentials.
#[derive(Debug)]
pub struct SentinelUrl {
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
}

/// Sentinel's default port, used when an address names none.
const SENTINEL_PORT: u16 = 26379;

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password is not UTF-8".to_string())
}

/// `Ok(None)` for a URL that is not a Sentinel URL. Error messages never
/// quote the URL: it may hold a password.
pub fn parse_sentinel_url(url: &str) -> Result<Option<SentinelUrl>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
        (true, r)
    } else {
        return Ok(None);
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or(("", u));
            let user = percent_decode(user)?;
            let pass = percent_decode(pass)?;
            (
                (!user.is_empty()).then_some(user),
                (!pass.is_empty()).then(|| Secret::new(pass)),
            )
        }
    };
    let (hosts, path) = rest.split_once('/').ok_or(
        "a Sentinel URL names the master after the addresses: redis+sentinel://host:26379/MASTER",
    )?;
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        let (host, port) = if let Some(v6) = h.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or("an IPv6 sentinel address lacks its ']'")?;
            (host, after.strip_prefix(':'))
        } else {
            match h.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (h, None),
            }
        };
        if host.is_empty() {
            return Err("an empty sentinel address (the list is host:port,host:port)".into());
        }
        let port = match port {
            None => SENTINEL_PORT,
            Some(p) => p
                .parse()
                .map_err(|_| "a sentinel port is not a number between 1 and 65535")?,
        };
        sentinels.push((host.to_string(), port));
    }
    let (master, db) = match path.split_once('/') {
        Some((m, db)) if !db.is_empty() => (
            m,
            db.parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or("the database after the master name is not a number")?,
        ),
        Some((m, _)) => (m, 0),
        None => (path, 0),
    };
    if master.is_empty() || master.contains(|c: char| c.is_whitespace() || c == '?') {
        return Err("the master name (after the addresses) is missing or malformed".into());
    }
    Ok(Some(SentinelUrl {
        tls,
        username,
        password,
        sentinels,
        master: master.to_string(),
        db,
    }))
}

impl SentinelUrl {
    fn client(&self) -> redis::RedisResult<redis::sentinel::SentinelClient> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        let addrs = self.sentinels.iter().map(|(host, port)| {
            if self.tls {
                redis::ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                redis::ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut b = SentinelClientBuilder::new(addrs, &self.master, SentinelServerType::Master)?
            .set_client_to_redis_db(self.db);
        if let Some(u) = &self.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &self.password {
            b = b.set_client_to_redis_password(p.expose());
        }
        if self.tls {
            b = b
                .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_of_spec_section_7_are_parsed() {
        let s = parse_sentinel_url("redis+sentinel://s1:26379,s2:26380,s3/mymaster/3")
            .unwrap()
            .unwrap();
        assert!(!s.tls);
        assert_eq!(
            s.sentinels,
            vec![
                ("s1".to_string(), 26379),
                ("s2".to_string(), 26380),
                ("s3".to_string(), SENTINEL_PORT)
            ]
        );
        assert_eq!((s.master.as_str(), s.db), ("mymaster", 3));
        assert!(s.username.is_none() && s.password.is_none());

        let s = parse_sentinel_url("rediss+sentinel://snykey:p%40ss@[::1]:26379/m")
            .unwrap()
            .unwrap();
        assert!(s.tls);
        assert_eq!(s.username.as_deref(), Some("snykey"));
        assert_eq!(s.password.unwrap().expose(), "p@ss");
        assert_eq!(s.sentinels, vec![("::1".to_string(), 26379)]);
        assert_eq!((s.master.as_str(), s.db), ("m", 0));

        let s = parse_sentinel_url("redis+sentinel://:onlypw@h:1/m/")
            .unwrap()
            .unwrap();
        assert!(s.username.is_none());
        assert_eq!(s.password.unwrap().expose(), "onlypw");

        assert!(
            parse_sentinel_url("redis://127.0.0.1:6379/0")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_sentinel_urls_are_refused_without_quoting_the_password() {
        for bad in [
            "redis+sentinel://u:hunter2@h:26379",
            "redis+sentinel://u:hunter2@h:26379/",
            "redis+sentinel://u:hunter2@h:port/m",
            "redis+sentinel://u:hunter2@,h/m",
            "redis+sentinel://u:hunter2@h/m/x",
            "redis+sentinel://u:hunter2@[::1/m",
        ] {
            let e = parse_sentinel_url(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }
}

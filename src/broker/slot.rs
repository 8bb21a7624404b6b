//! One credential's state in this agent: its single-flight lock (with what
//! the rotation protocol remembers), the hot access token, and its status.

use super::rotation::Memory;
use crate::cache::CachedToken;
use crate::credential::CredKey;
use crate::credential::{Kind, State};
use crate::locks::Recover;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// Guarded by the single-flight lock: whoever holds it is the only one in
/// this process talking to Snyk or the store for this credential.
#[derive(Default)]
pub(crate) struct Flight {
    /// What the rotation protocol remembers (mirrored in the journal).
    pub mem: Memory,
    /// An access token whose refresh token is not durable yet (held back, I2).
    pub held: Option<CachedToken>,
    /// The successor `held` waits for ([`unlanded_digest`]): published only
    /// once that one is durable. A later login or rotation that replaced it
    /// in memory dropped it for good, and the held token with it.
    pub held_for: Option<String>,
    pub lander_running: bool,
}

/// The digest of the secret `mem.unlanded` brings (its refresh token, else
/// its client secret): what a held access token waits for.
pub(crate) fn unlanded_digest(mem: &Memory) -> Option<String> {
    let r = &mem.unlanded.as_ref()?.record;
    r.refresh_token
        .as_ref()
        .or(r.client_secret.as_ref())
        .map(crate::secret::Secret::digest)
}

#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub kind: Kind,
    pub state: State,
    pub expires_at: Option<SystemTime>,
    pub next_refresh_at: Option<SystemTime>,
    pub last_refresh_at: Option<SystemTime>,
    pub failures: u32,
    pub last_error: Option<String>,
    pub lifetime: Option<Duration>,
    pub deleted: bool,
    /// Grants in a row whose token lifetime was below the floor
    /// ([`super::schedule::LIFETIME_FLOOR`]), and until when the last one's
    /// token is served instead of a new grant.
    pub short_lifetimes: u32,
    pub anomaly_until: Option<SystemTime>,
}

pub struct Slot {
    pub key: CredKey,
    pub(crate) flight: tokio::sync::Mutex<Flight>,
    hot: RwLock<Option<CachedToken>>,
    status: Mutex<Status>,
    /// The region its record names (`Record::api_url`), as last read or
    /// written; `None`: the agent's `snyk.api_url`.
    api_url: RwLock<Option<Arc<str>>>,
}

impl Slot {
    pub(crate) fn new(key: CredKey, kind: Kind) -> Slot {
        Slot {
            key,
            flight: tokio::sync::Mutex::new(Flight::default()),
            hot: RwLock::new(None),
            api_url: RwLock::new(None),
            status: Mutex::new(Status {
                kind,
                // No token yet: `mint` or `adopt` makes it `ok`.
                state: State::Pending,
                expires_at: None,
                next_refresh_at: None,
                last_refresh_at: None,
                failures: 0,
                last_error: None,
                lifetime: None,
                deleted: false,
                short_lifetimes: 0,
                anomaly_until: None,
            }),
        }
    }

    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().recover()
    }

    pub(crate) fn hot(&self) -> Option<CachedToken> {
        self.hot.read().recover().clone()
    }

    pub(crate) fn set_hot(&self, token: Option<CachedToken>) {
        *self.hot.write().recover() = token;
    }

    /// The region its record names, if any.
    pub(crate) fn api_url(&self) -> Option<Arc<str>> {
        self.api_url.read().recover().clone()
    }

    /// Notes the region of the record just read, written or granted with.
    pub(crate) fn set_api_url(&self, api_url: Option<&str>) {
        let mut cur = self.api_url.write().recover();
        if cur.as_deref() != api_url {
            *cur = api_url.map(Arc::from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::journal::Base;
    use crate::broker::rotation::Unlanded;
    use crate::secret::Secret;
    use crate::store::Record;

    fn successor(refresh: Option<&str>, secret: Option<&str>) -> Memory {
        Memory {
            unlanded: Some(Unlanded {
                record: Record {
                    refresh_token: refresh.map(Secret::new),
                    client_secret: secret.map(Secret::new),
                    ..Default::default()
                },
                base: Base {
                    fp: None,
                    generation: 0,
                    login: false,
                    via: Vec::new(),
                },
                journaled: false,
                fresh_login: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_held_token_waits_for_exactly_the_successor_it_came_with() {
        let login = successor(Some("rt-1"), Some("app-secret"));
        let later = successor(Some("rt-2"), Some("app-secret"));
        let secret = successor(None, Some("cs-1"));
        assert_eq!(unlanded_digest(&login), Some(Secret::new("rt-1").digest()));
        assert_eq!(unlanded_digest(&secret), Some(Secret::new("cs-1").digest()));
        // A later login replaced it: the held token no longer matches.
        assert_ne!(unlanded_digest(&login), unlanded_digest(&later));
        assert_eq!(unlanded_digest(&Memory::default()), None);
    }
}

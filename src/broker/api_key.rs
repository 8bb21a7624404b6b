//! A service account's Snyk API key (`auth_type = api_key`, kind `api_key`):
//! no grant and no refresh — the stored key is the token, handed out as it
//! is (`token_type` `token`, the scheme the Snyk CLI sends for API keys:
//! `SNYK_TOKEN`). It is kept in memory (the hot copy) and the secret store
//! only: never in the shared cache, never published for jobs, since it
//! does not expire.

use super::journal::Base;
use super::slot::{Flight, Slot};
use super::{Broker, BrokerError};
use crate::cache::CachedToken;
use crate::credential::{Kind, Record, State};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What an API key's answers name as its expiry: it has none
/// (`9999-12-31T23:59:59Z`, the last second RFC 3339 can write).
pub const API_KEY_EXPIRY: Duration = Duration::from_secs(253_402_300_799);

/// The expiry an API key's token carries ([`API_KEY_EXPIRY`]).
pub fn never() -> SystemTime {
    SystemTime::UNIX_EPOCH + API_KEY_EXPIRY
}

impl Broker {
    /// An API key from the store (or from a put or a creation, `given`,
    /// made durable first: Snyk shows a new key once) as the credential's token.
    pub(super) async fn hand_api_key(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<Record>,
        record: Record,
        generation: u64,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;
        flight.mem.generation = flight.mem.generation.max(generation);
        let Some(api_key) = record.api_key.clone().filter(|k| !k.is_empty()) else {
            return Err(BrokerError::NeedsLogin(format!(
                "credential {key} holds no API key: put it again with `snykey put --kind api_key --org-id {} --client-id {} --api-key-file FILE`",
                key.org, key.client
            )));
        };
        if let Some(to_store) = given {
            self.store_given(slot, flight, to_store, generation).await?;
        }
        self.note_region(key, record.api_url.as_deref());
        let token = CachedToken {
            access_token: api_key,
            expires_at: never(),
            issued_at: None,
        };
        slot.set_hot(Some(token.clone()));
        let mut st = slot.status();
        st.kind = Kind::ApiKey;
        st.state = State::Ok;
        st.next_refresh_at = None;
        drop(st);
        self.scheduler.cancel(key);
        Ok(token)
    }

    /// A record given by a put or a service-account creation (a secret
    /// perhaps shown once): the journal, then the store, like every new
    /// credential; it replaces whatever is stored unless something newer
    /// landed meanwhile (a put is a human reset, like a login).
    pub(super) async fn store_given(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        mut to_store: Record,
        generation: u64,
    ) -> Result<bool, BrokerError> {
        to_store.updated_at = Some(crate::clock::rfc3339(self.clock.now()));
        to_store.generation = generation.max(flight.mem.generation) + 1;
        let base = Base {
            fp: None,
            generation,
            login: true,
            via: Vec::new(),
        };
        self.persist_record(slot, flight, to_store, base).await
    }
}

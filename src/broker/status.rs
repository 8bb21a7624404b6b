//! What the agent shows about its credentials: `GET /v1/credentials`,
//! `/v1/ready`, and the gauges read at each metrics scrape.

use super::slot::Slot;
use super::{Broker, BrokerError, rotation};
use crate::credential::{CredKey, Kind, Record, State, Summary};
use crate::locks::Recover;
use crate::store::StoreError;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Why the agent is not ready (`GET /v1/ready`): the sentence, and the
/// store's failure when it is one of the reasons (its code is answered, so
/// that `snykey doctor` can say what to do: unseal, fix a file, start it).
#[derive(Debug)]
pub struct Unready {
    pub store: Option<StoreError>,
    pub cache: bool,
    pub message: String,
}

impl Broker {
    /// `GET /v1/credentials`: every credential **the store holds** (not only
    /// those this agent has served: a fleet agent lists what another agent
    /// put), with the state this agent knows of each, sorted, no secrets; a
    /// credential whose newest refresh token waits in this agent's journal
    /// (degraded) is listed too. A store that cannot be read is an error,
    /// never an empty list.
    ///
    /// A credential this agent has not loaded yet is loaded here as at
    /// start-up (its kind and `needs_login` from the record, a token still
    /// valid in the shared cache adopted): `pending` until it has a token.
    pub async fn list(self: &Arc<Self>) -> Result<Vec<Summary>, BrokerError> {
        let keys: BTreeSet<CredKey> = self.store.list().await?.into_iter().collect();
        let mut slots = Vec::with_capacity(keys.len());
        for key in &keys {
            // Each record is read: a listed key may be a tombstone (OpenBao
            // lists a deleted credential's metadata), deleted by another agent.
            let Some(v) = self.store.get(key).await? else {
                continue;
            };
            if v.record.deleted {
                continue;
            }
            let slot = match self.existing_slot(key) {
                Some(s) => s,
                // Its data removed by another tool: nothing to load.
                None if v.hidden => continue,
                None => match self.slot_for_record(key, &v.record) {
                    Some(s) => {
                        self.adopt_cached(&s).await;
                        s
                    }
                    None => continue,
                },
            };
            slots.push(slot);
        }
        slots.extend(
            self.snapshot()
                .into_iter()
                .filter(|s| s.status().state == State::Degraded && !keys.contains(&s.key)),
        );
        let now = self.clock.now();
        let mut out: Vec<Summary> = slots
            .iter()
            .map(|s| {
                let st = s.status().clone();
                let expires_at = s
                    .hot()
                    .map(|t| t.expires_at)
                    .or(st.expires_at)
                    .filter(|e| *e > now)
                    // An API key does not expire.
                    .filter(|_| st.kind != Kind::ApiKey);
                Summary {
                    key: s.key.clone(),
                    kind: st.kind,
                    state: st.state,
                    expires_at,
                    next_refresh_at: st.next_refresh_at,
                    last_refresh_at: st.last_refresh_at,
                    failures: st.failures,
                    last_error: st.last_error,
                    api_url: s.api_url().map(|u| u.to_string()),
                    published: self.published_status(&s.key),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The slot of a credential read from the store: its kind, and
    /// `needs_login` with the reason when the record says so (every agent
    /// sees it). `None` for a tombstone.
    pub(super) fn slot_for_record(&self, key: &CredKey, record: &Record) -> Option<Arc<Slot>> {
        if record.deleted {
            return None;
        }
        let slot = self.slot_or_insert(key, record.kind());
        slot.set_api_url(record.api_url.as_deref());
        if let Some(why) = record.needs_login() {
            let mut st = slot.status();
            st.state = State::NeedsLogin;
            st.last_error = Some(why.to_string());
        }
        Some(slot)
    }

    /// A token another agent minted, still valid in the shared cache, taken
    /// as this agent's own (no grant). Whether one was.
    pub(super) async fn adopt_cached(&self, slot: &Slot) -> bool {
        match self.cache.get(&slot.key).await {
            Ok(Some(t)) if t.remaining(self.clock.now()) > std::time::Duration::from_secs(1) => {
                self.adopt(slot, &t);
                true
            }
            _ => false,
        }
    }

    /// Counts of credentials by state (metrics, sd_notify STATUS).
    pub fn state_counts(&self) -> [(State, usize); 5] {
        let mut counts = State::ALL.map(|s| (s, 0));
        for s in self.slots.read().recover().values() {
            let state = s.status().state;
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == state) {
                c.1 += 1;
            }
        }
        counts
    }

    /// Sets the gauges that describe current state, just before a scrape.
    pub fn export_gauges(&self) {
        let m = crate::metrics::get();
        for (state, n) in self.state_counts() {
            crate::metrics::set_credentials(state.as_str(), n);
        }
        let now = self.clock.now();
        let min = self
            .slots
            .read()
            .recover()
            .values()
            .filter_map(|s| s.hot().map(|t| t.remaining(now).as_secs()))
            .min();
        m.min_time_to_expiry.set(min.map(|v| v as i64).unwrap_or(0));
        self.export_publish_gauge();
    }

    /// `GET /v1/ready`: the store and cache answer and no rotated token is
    /// waiting for the store. Each reason says which part is at fault:
    /// "store unreachable: …", "cache unreachable: …".
    pub async fn ready(&self) -> Result<(), Unready> {
        let mut reasons = Vec::new();
        let degraded = self
            .state_counts()
            .iter()
            .find(|(s, _)| *s == State::Degraded)
            .map_or(0, |(_, n)| *n);
        if degraded > 0 {
            reasons.push(format!(
                "{degraded} credential(s) degraded: rotated refresh tokens are held in the recovery journal until the secret store takes them"
            ));
        }
        let store = self.store.ready().await.err();
        if let Some(e) = &store {
            reasons.push(format!("store unreachable: {e}"));
        }
        let cache = self.cache.ready().await.err();
        if let Some(e) = &cache {
            reasons.push(format!("cache unreachable: {e}"));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Unready {
                store,
                cache: cache.is_some(),
                message: reasons.join("; "),
            })
        }
    }

    /// `GET /v1/ready?write=true` (`snykey doctor`): the store takes a
    /// claim's writes ([`crate::store::write_check`]). One check at a time
    /// per agent, and a result is reused for a second: any peer on the
    /// socket may ask, so a loop of askers costs the store at most one round
    /// trip a second.
    pub async fn write_check(&self) -> Result<String, crate::store::StoreError> {
        let mut last = self.write_checked.lock().await;
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(1) {
                return r.clone();
            }
        }
        let r = crate::store::write_check(&*self.store, &self.agent_id, self.clock.now()).await;
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }

    /// docs/protocol.md, "Where claims live": said at start, by `check-config` and in `/v1/ready`'s body.
    pub fn protection_warning(&self) -> Option<&'static str> {
        (self.rules.claims == rotation::Claims::Unprotected)
            .then_some(crate::broker::rotation::UNPROTECTED)
    }
}

//! Start-up ([`Broker::start`]): the recovery journal replayed, `cas_required`
//! set on every stored record, a slot for every stored credential, and the
//! access tokens of the memory cache's snapshot taken back where the store
//! still vouches for them (the rule is [`crate::cache::snapshot::revives`]; the file and when it is
//! written are [`crate::cache::snapshot`]).

use super::{Broker, BrokerError, agent_io, journal, rotation};
use crate::cache::snapshot::{Saved, revives};
use crate::credential::{CredKey, Kind, State};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What became of the snapshot's tokens, for the start-up log line.
#[derive(Debug, Default)]
struct Counts {
    revived: usize,
    /// The store moved on (a rotation elsewhere, a `put`, login or delete),
    /// the record is gone or unreadable, or the token is too close to its end.
    not_revived: usize,
}

impl Broker {
    /// Start-up: replay the recovery journal, then load every stored
    /// credential, taking back the tokens of `saved` (the memory cache's
    /// snapshot) that the store still vouches for ([`Broker::load_records`]). Nothing is
    /// served before this returns.
    pub async fn start(
        self: &Arc<Self>,
        saved: Vec<crate::cache::snapshot::Saved>,
    ) -> Result<usize, BrokerError> {
        let entries = self.journal.read_all().map_err(BrokerError::NotDurable)?;
        for (key, entry) in entries {
            self.replay(&key, entry).await;
        }
        // A store that does not answer at start is not fatal: the agent serves
        // what it can (ready says why not) and picks credentials up on demand.
        let keys = match self.store.list().await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the secret store at start; credentials are loaded on first use");
                Vec::new()
            }
        };
        let n = keys.len();
        self.require_cas_at_start(&keys).await;
        self.load_records(keys, saved).await;
        // Schedule everything: a credential whose token is still valid in the
        // cache (shared, or revived from the snapshot) is planned from that
        // token (no needless grant); the others are refreshed now, spread over
        // a short window.
        let slots = self.snapshot();
        let spread = Duration::from_millis(2 * slots.len() as u64).min(Duration::from_secs(30));
        for slot in &slots {
            if self.adopt_cached(slot).await {
                continue;
            }
            let needs_login = slot.status().state == State::NeedsLogin;
            if !needs_login {
                let when = tokio::time::Instant::now() + spread.mul_f64(rand::random::<f64>());
                self.scheduler.schedule(&slot.key, when);
            }
        }
        self.start_publisher();
        let broker = Arc::clone(self);
        tokio::spawn(Arc::clone(&self.scheduler).run(
            move |key| {
                let broker = Arc::clone(&broker);
                async move { broker.proactive(key).await }
            },
            self.shutdown.clone(),
        ));
        Ok(n)
    }

    /// Start-up: every stored record refuses blind writes (`cas_required`,
    /// docs/protocol.md rule 10), including those another tool created; what could
    /// not be set is said once per record.
    async fn require_cas_at_start(&self, keys: &[CredKey]) {
        let (mut set_now, mut failed) = (0, 0);
        let mut first_failure = None;
        for key in keys {
            match self.store.require_cas(key).await {
                Ok(crate::store::CasRequired::SetNow) => set_now += 1,
                Ok(crate::store::CasRequired::NotApplicable) => return,
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    first_failure.get_or_insert((key.clone(), e));
                }
            }
        }
        if let Some((key, e)) = first_failure {
            tracing::warn!(records = failed, first = %key, error = %e, "cannot set cas_required on every record: a blind write by another tool can erase a claim on those (give the agent's policy update on the metadata path; snykey doctor checks again)");
        }
        if set_now > 0 {
            tracing::info!(
                records = set_now,
                "cas_required set on records other tools wrote (the seed service, bao kv put): blind writes to them are refused from now on"
            );
        }
    }

    /// Start-up, one journal entry: what was in flight is an unknown outcome
    /// (rule 6); a journaled successor lands by succession (rule 9).
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    async fn replay(self: &Arc<Self>, key: &CredKey, entry: journal::Entry) {
        let kind = entry.record.as_ref().map(|r| r.kind()).unwrap_or_default();
        let slot = self.slot_or_insert(key, kind);
        let mut flight = slot.flight.lock().await;
        if entry.claim.as_ref().is_some_and(|c| c.sent) || entry.sent.is_some() {
            tracing::warn!(
                "the agent stopped while a refresh was at Snyk: that answer is lost, so the token is sent once more after a quiet period (docs/protocol.md rule 6)"
            );
        }
        flight.mem = rotation::Memory::recover(entry, self.mono());
        if flight.mem.unlanded.is_some() {
            tracing::info!("landing a refresh token from the recovery journal");
            let mut io = agent_io::AgentIo::new(self, key);
            if rotation::land(&mut io, &mut flight.mem, &self.rules).await
                == rotation::Landing::Pending
            {
                self.spawn_lander(&slot, &mut flight);
            }
        }
    }

    /// Reads every stored record once: a slot for each credential not
    /// replayed from the journal already, and its saved token put back in
    /// the cache when [`revives`] says so (the cache then serves it, and
    /// start-up plans its refresh from it instead of a grant now). A
    /// credential replayed from the journal is read after its replay, so a
    /// successor landed there has already moved its generation.
    pub(super) async fn load_records(self: &Arc<Self>, keys: Vec<CredKey>, saved: Vec<Saved>) {
        let mut saved: HashMap<CredKey, Saved> =
            saved.into_iter().map(|s| (s.key.clone(), s)).collect();
        let offered = saved.len();
        let mut counts = Counts::default();
        let min_validity = self.settings().min_validity;
        for key in keys {
            let token = saved.remove(&key);
            let had_slot = self.existing_slot(&key).is_some();
            if had_slot && token.is_none() {
                continue;
            }
            let read = self.store.get(&key).await.ok().flatten();
            if !had_slot {
                match &read {
                    Some(v) => {
                        self.slot_for_record(&key, &v.record);
                    }
                    None => {
                        self.slot_or_insert(&key, Kind::OauthApp);
                    }
                }
            }
            let Some(s) = token else { continue };
            // A version another tool deleted (`bao kv delete`) vouches for nothing.
            let record = read.as_ref().filter(|v| !v.hidden).map(|v| &v.record);
            let now = self.clock.now();
            if revives(s.generation, s.token.expires_at, record, now, min_validity) {
                self.revive(&s).await;
                counts.revived += 1;
            } else {
                counts.not_revived += 1;
            }
        }
        // Tokens of credentials the store no longer lists.
        counts.not_revived += saved.len();
        if offered > 0 {
            tracing::info!(
                revived = counts.revived,
                not_revived = counts.not_revived,
                "access tokens taken back from the snapshot (the others belong to credentials the store moved on from, put, logged in again, deleted, or are too close to their end: minted again)"
            );
        }
    }

    /// One saved token back in the cache (and offered for publishing, which
    /// writes only if the published path holds something older).
    async fn revive(&self, s: &Saved) {
        if let Err(e) = self.cache.put(&s.key, &s.token, s.generation).await {
            tracing::warn!(org_id = %s.key.org, client_id = %s.key.client, error = %e, "could not put a revived token in the cache; it is minted again");
            return;
        }
        if let Some(slot) = self.existing_slot(&s.key) {
            self.offer_published(&slot, s.generation, &s.token);
        }
    }
}

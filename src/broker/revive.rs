//! Start-up: a slot for every stored credential, and the access tokens of the
//! memory cache's snapshot taken back where the store still vouches for them
//! (the rule is [`crate::cache::snapshot::revives`]; the file and when it is
//! written are [`crate::cache::snapshot`]).

use super::Broker;
use crate::cache::snapshot::{Saved, revives};
use crate::credential::{CredKey, Kind};
use std::collections::HashMap;
use std::sync::Arc;

/// What became of the snapshot's tokens, for the start-up log line.
#[derive(Debug, Default)]
struct Counts {
    revived: usize,
    /// The store moved on (a rotation elsewhere, a `put`, login or delete),
    /// the record is gone or unreadable, or the token is too close to its end.
    not_revived: usize,
}

impl Broker {
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

//! What the agent shows about its credentials: `GET /v1/credentials`,
//! `/v1/ready`, and the gauges read at each metrics scrape.

use super::{Broker, rotation};
use crate::credential::{State, Summary};
use crate::locks::Recover;

impl Broker {
    /// `GET /v1/credentials`: every credential's status, sorted, no secrets.
    pub fn list(&self) -> Vec<Summary> {
        let slots = self.snapshot();
        let now = self.clock.now();
        let mut out: Vec<Summary> = slots
            .iter()
            .map(|s| {
                let st = s.status().clone();
                let expires_at = s
                    .hot()
                    .map(|t| t.expires_at)
                    .or(st.expires_at)
                    .filter(|e| *e > now);
                Summary {
                    key: s.key.clone(),
                    kind: st.kind,
                    state: st.state,
                    expires_at,
                    next_refresh_at: st.next_refresh_at,
                    last_refresh_at: st.last_refresh_at,
                    failures: st.failures,
                    last_error: st.last_error,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Counts of credentials by state (metrics, sd_notify STATUS).
    pub fn state_counts(&self) -> [(State, usize); 4] {
        let mut counts = [
            (State::Ok, 0),
            (State::Refreshing, 0),
            (State::Degraded, 0),
            (State::NeedsLogin, 0),
        ];
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
    }

    /// `GET /v1/ready`: the store and cache answer and no rotated token is waiting for the store.
    pub async fn ready(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        let degraded = self.state_counts()[2].1;
        if degraded > 0 {
            reasons.push(format!(
                "{degraded} credential(s) degraded: rotated refresh tokens are held in the recovery journal until the secret store takes them"
            ));
        }
        if let Err(e) = self.store.ready().await {
            reasons.push(e.to_string());
        }
        if let Err(e) = self.cache.ready().await {
            reasons.push(e.to_string());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
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

    /// SPEC §2, KV v1 paragraph: said at start, by `check-config` and in `/v1/ready`'s body.
    pub fn protection_warning(&self) -> Option<&'static str> {
        (self.rules.claims == rotation::Claims::Unprotected)
            .then_some(crate::broker::rotation::UNPROTECTED)
    }
}

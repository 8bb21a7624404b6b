//! When credentials are refreshed: the proactive refresh the scheduler
//! fires, the plan after each success or failure, and the bookkeeping around
//! every run of the rotation protocol ([`Broker::mint`]).

use super::slot::{Flight, Slot};
use super::{Broker, BrokerError, Want, scheduler};
use crate::cache::CachedToken;
use crate::credential::CredKey;
use crate::credential::State;
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// A scheduled refresh: mint a token newer than the one held, unless the
    /// credential is gone or needs a login. Success and failure both plan
    /// the next attempt (see [`Broker::mint`]).
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    pub(super) async fn proactive(self: Arc<Self>, key: CredKey) {
        let Some(slot) = self.existing_slot(&key) else {
            return;
        };
        {
            let st = slot.status();
            if st.deleted || st.state == State::NeedsLogin {
                return;
            }
        }
        let want = Want {
            validity: Duration::MAX,
            seen: slot.hot().map(|t| t.access_token.fingerprint()),
        };
        let broker = Arc::clone(&self);
        let result = self
            .spawn_grant(async move {
                let mut flight = slot.flight.lock().await;
                broker.mint(&slot, &mut flight, None, &want).await
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "proactive refresh failed");
        }
    }

    /// Plans the next proactive refresh of a credential holding `t`.
    pub(super) fn plan(&self, slot: &Slot, t: &CachedToken) {
        let s = self.settings();
        let now = self.clock.now();
        let mut st = slot.status();
        let lifetime = t
            .lifetime()
            .or(st.lifetime)
            .unwrap_or_else(|| t.remaining(now));
        let issued = t
            .issued_at
            .unwrap_or_else(|| t.expires_at.checked_sub(lifetime).unwrap_or(now));
        let when = scheduler::next_refresh(
            issued,
            t.expires_at,
            s.at,
            s.jitter,
            s.min_validity,
            rand::random::<f64>(),
        );
        // However short the token's life (Snyk may say `expires_in: 0`),
        // a credential is not refreshed more than once a second.
        let when = when.max(now + Duration::from_secs(1));
        st.next_refresh_at = Some(when);
        drop(st);
        let delay = when.duration_since(now).unwrap_or(Duration::ZERO);
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + delay);
    }

    /// Plans a retry after a failure.
    fn plan_retry(&self, slot: &Slot, failures: u32, retry_after: Option<Duration>) {
        let wait = scheduler::backoff(failures, retry_after, rand::random::<f64>());
        slot.status().next_refresh_at = Some(self.clock.now() + wait);
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + wait);
    }

    /// Runs the rotation rule and keeps the status up to date.
    pub(super) async fn mint(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<crate::store::Record>,
        want: &Want,
    ) -> Result<CachedToken, BrokerError> {
        let before = slot.status().state;
        if before != State::NeedsLogin && before != State::Degraded {
            slot.status().state = State::Refreshing;
        }
        let result = self.rotate(slot, flight, given, want).await;
        let mut st = slot.status();
        match &result {
            Ok(t) => {
                st.expires_at = Some(t.expires_at);
                if let Some(l) = t.lifetime() {
                    st.lifetime = Some(l);
                }
                st.failures = 0;
                st.last_error = None;
                st.state = if flight.mem.unlanded.is_some() {
                    State::Degraded
                } else {
                    State::Ok
                };
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.last_error = Some(e.to_string());
                st.state = match e {
                    BrokerError::NeedsLogin(_) => State::NeedsLogin,
                    _ if flight.mem.unlanded.is_some() => State::Degraded,
                    _ if before == State::Refreshing => State::Ok,
                    _ => before,
                };
                let failures = st.failures;
                drop(st);
                match e {
                    // Permanent: no more attempts until someone logs in again.
                    BrokerError::NeedsLogin(_)
                    | BrokerError::NotFound(_)
                    | BrokerError::BadInput(_) => {
                        slot.status().next_refresh_at = None;
                        self.scheduler.cancel(&slot.key);
                    }
                    BrokerError::Snyk(g) => self.plan_retry(slot, failures, g.retry_after()),
                    // Rule 6's quiet period: the retry is planned after it.
                    BrokerError::Busy(_) => {
                        self.plan_retry(slot, failures, Some(self.rules.quiet()))
                    }
                    _ => self.plan_retry(slot, failures, None),
                }
            }
        }
        result
    }
}

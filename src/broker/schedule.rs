//! When credentials are refreshed: the proactive refresh the scheduler
//! fires, the plan after each success or failure, and the bookkeeping around
//! every run of the rotation protocol ([`Broker::mint`]).

use super::slot::{Flight, Slot};
use super::{Broker, BrokerError, Want, scheduler};
use crate::cache::CachedToken;
use crate::credential::CredKey;
use crate::credential::{Kind, State};
use std::sync::Arc;
use std::time::Duration;

/// The shortest token lifetime taken as real. Snyk's access tokens live an
/// hour; one that is gone in under two seconds cannot reach a caller and be
/// used, so a shorter `expires_in` (0, say) is an anomaly of the answer, not
/// a reason to refresh at once: the token is served as it is, and the next
/// refreshes back off ([`Broker::plan_anomaly`]).
pub(super) const LIFETIME_FLOOR: Duration = Duration::from_secs(2);

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
        // A published token keeps `publish.min_validity`: its successor is
        // minted and published before it falls below that.
        let when = match self.publish_validity(&slot.key) {
            Some(v) => when.min(super::publish::decide::refresh_by(issued, t.expires_at, v)),
            None => when,
        };
        // However short the token's life (Snyk may say `expires_in: 0`),
        // a credential is not refreshed more than once a second.
        let when = when.max(now + Duration::from_secs(1));
        st.next_refresh_at = Some(when);
        drop(st);
        let delay = when.duration_since(now).unwrap_or(Duration::ZERO);
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + delay);
    }

    /// Plans the next refresh after a grant whose token lifetime is below
    /// [`LIFETIME_FLOOR`]: capped exponential backoff (as after failures),
    /// counted per credential, with a warning and a metric. Until then,
    /// callers are served that token ([`Broker::held_through_anomaly`]).
    pub(super) fn plan_anomaly(&self, slot: &Slot, lifetime: Duration) {
        let now = self.clock.now();
        let mut st = slot.status();
        st.short_lifetimes = st.short_lifetimes.saturating_add(1);
        let wait = scheduler::backoff(st.short_lifetimes, None, rand::random::<f64>());
        st.next_refresh_at = Some(now + wait);
        st.anomaly_until = Some(now + wait);
        let in_a_row = st.short_lifetimes;
        drop(st);
        crate::metrics::lifetime_anomaly();
        tracing::warn!(
            lifetime_ms = lifetime.as_millis() as u64,
            in_a_row,
            next_refresh_in_s = wait.as_secs_f64(),
            "Snyk answered with a token lifetime below the {}s floor: the token is served as it is, and refreshes back off instead of following it",
            LIFETIME_FLOOR.as_secs()
        );
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + wait);
    }

    /// The token of a grant whose lifetime was below the floor, while its
    /// backoff runs: served as it is instead of a grant per caller.
    pub(super) fn held_through_anomaly(&self, slot: &Slot) -> Option<CachedToken> {
        let until = slot.status().anomaly_until?;
        if self.clock.now() < until {
            slot.hot()
        } else {
            None
        }
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
                // An API key does not expire: status shows no expiry.
                st.expires_at = (st.kind != Kind::ApiKey).then_some(t.expires_at);
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

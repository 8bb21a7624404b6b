//! The token path: `GET /v1/credentials/{org}/{client}` answered from the
//! hot copy, then the shared cache, then the single flight (one caller
//! mints, the others wait and take its token); and what a waiting caller
//! will accept ([`Want`]).

use super::slot::Slot;
use super::{Broker, BrokerError, region};
use crate::cache::CachedToken;
use crate::credential::{CredKey, State};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// What a caller gets when the lifetime of tokens is unknown.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// What a waiting caller will accept.
pub(crate) struct Want {
    /// The token must stay valid this long...
    pub validity: Duration,
    /// ...unless it is newer than the one the caller saw when it arrived
    /// (its fingerprint): someone refreshed while the caller waited, and that
    /// token is the freshest there is.
    pub seen: Option<String>,
}

impl Want {
    pub fn accepts(&self, t: &CachedToken, now: SystemTime) -> bool {
        let left = t.remaining(now);
        left >= self.validity
            || (left > Duration::from_secs(1)
                && self.seen.as_deref() != Some(t.access_token.fingerprint().as_str()))
    }
}

impl Broker {
    /// How long a token must still be valid for a caller that asked for
    /// `requested`: capped at half the token lifetime, so a caller asking for
    /// more than any token can give gets the freshest token instead of
    /// forcing a grant on every call.
    fn wanted_validity(
        &self,
        slot: &Slot,
        requested: Option<Duration>,
        candidate: Option<&CachedToken>,
    ) -> Duration {
        let requested = requested.unwrap_or_else(|| self.settings().min_validity);
        let lifetime = candidate
            .and_then(|t| t.lifetime())
            .or_else(|| slot.hot().and_then(|t| t.lifetime()))
            .or(slot.status().lifetime)
            .unwrap_or(DEFAULT_LIFETIME);
        requested.min(lifetime / 2)
    }

    /// `GET /v1/credentials/{org}/{client}`: a token valid for at least
    /// `min_validity` (see [`Broker::wanted_validity`]).
    pub async fn token(
        self: &Arc<Self>,
        key: &CredKey,
        min_validity: Option<Duration>,
    ) -> Result<CachedToken, BrokerError> {
        let arrived = self.clock.now();
        let slot = self.slot(key).await?;
        self.token_of(key, slot, min_validity, arrived).await
    }

    /// [`Broker::token`] with what a token answer says besides the token
    /// (its region and scheme, [`Broker::answer_details`]), read from the
    /// slot the token came from: no second lookup on the cache-hit path.
    pub async fn token_answer(
        self: &Arc<Self>,
        key: &CredKey,
        min_validity: Option<Duration>,
    ) -> Result<(CachedToken, region::Details), BrokerError> {
        let arrived = self.clock.now();
        let slot = self.slot(key).await?;
        let t = self
            .token_of(key, Arc::clone(&slot), min_validity, arrived)
            .await?;
        Ok((t, self.details_of(Some(&slot))))
    }

    /// [`Broker::token`] for the credential's slot.
    async fn token_of(
        self: &Arc<Self>,
        key: &CredKey,
        slot: Arc<Slot>,
        min_validity: Option<Duration>,
        arrived: SystemTime,
    ) -> Result<CachedToken, BrokerError> {
        let want = self.wanted_validity(&slot, min_validity, None);

        // The hot copy: no await, no backend, and no span (this is the path
        // nearly every call takes; a span's fields are formatted per call).
        let hot = slot.hot();
        if let Some(t) = hot.as_ref().filter(|t| t.remaining(arrived) >= want) {
            crate::metrics::get().cache_hits.inc();
            return Ok(t.clone());
        }
        let span = tracing::error_span!("credential", org_id = %key.org, client_id = %key.client);
        self.token_past_hot(key, slot, min_validity, arrived, want, hot)
            .instrument(span)
            .await
    }

    /// [`Broker::token`] when the hot copy will not do: the shared cache,
    /// then the single flight.
    async fn token_past_hot(
        self: &Arc<Self>,
        key: &CredKey,
        slot: Arc<Slot>,
        min_validity: Option<Duration>,
        arrived: SystemTime,
        want: Duration,
        hot: Option<CachedToken>,
    ) -> Result<CachedToken, BrokerError> {
        // The shared cache: another agent may have refreshed.
        let mut want = Want {
            validity: want,
            seen: hot.map(|t| t.access_token.fingerprint()),
        };
        match self.cache.get(key).await {
            Ok(Some(t))
                if t.remaining(arrived) >= self.wanted_validity(&slot, min_validity, Some(&t)) =>
            {
                crate::metrics::get().cache_hits.inc();
                self.adopt(&slot, &t);
                return Ok(t);
            }
            Ok(Some(t)) => want.seen = Some(t.access_token.fingerprint()),
            Ok(None) => {}
            Err(e) => {
                crate::metrics::backend_error("cache");
                tracing::warn!(error = %e, "token cache read failed; minting through the single-flight path");
            }
        }

        // Single flight: one caller mints, the others wait and take its
        // token. The mint runs in a task of its own: a caller that hangs up
        // never cuts a grant short (docs/protocol.md rule 1).
        let broker = Arc::clone(self);
        let grant = self.spawn_grant(async move {
            let mut flight = slot.flight.lock().await;
            if let Some(t) = slot
                .hot()
                .filter(|t| want.accepts(t, broker.clock.now()))
                .or_else(|| broker.held_through_anomaly(&slot))
            {
                crate::metrics::get().cache_hits.inc();
                return Ok(t);
            }
            crate::metrics::get().cache_misses.inc();
            broker.mint(&slot, &mut flight, None, &want).await
        });
        // A caller waits a bounded time (the helper waits longer than this);
        // the refresh itself runs on and serves the next call.
        let budget = self.rules.snyk_max * 2 + Duration::from_secs(10);
        match tokio::time::timeout(budget, grant).await {
            Ok(r) => r,
            Err(_) => Err(BrokerError::Busy(format!(
                "the refresh of {key} is taking longer than {}s; it goes on in the agent: try again shortly",
                budget.as_secs()
            ))),
        }
    }

    /// Takes a token another agent minted (read from the shared cache) as
    /// this agent's hot copy. Its lifetime is unknown (Redis keeps only a
    /// TTL); the remaining time at first sight is a safe lower bound.
    pub(super) fn adopt(&self, slot: &Slot, t: &CachedToken) {
        slot.set_hot(Some(t.clone()));
        let mut st = slot.status();
        if st.state == State::Pending {
            st.state = State::Ok;
        }
        st.expires_at = Some(t.expires_at);
        if st.lifetime.is_none() {
            st.lifetime = Some(
                t.lifetime()
                    .unwrap_or_else(|| t.remaining(self.clock.now())),
            );
        }
        drop(st);
        self.plan(slot, t);
    }
}

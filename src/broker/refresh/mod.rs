//! The broker's side of a refresh: runs the protocol of [`super::rotation`]
//! against the real store, journal and Snyk ([`AgentIo`]), then publishes
//! and schedules from its [`Outcome`]. Every grant runs in a task of its own
//! (see [`Broker::spawn_grant`]): a caller that hangs up only stops waiting.
//!
//! * `mod.rs` — the protocol's run for one caller and what each outcome
//!   means for it; handing a minted token out ([`Broker::publish`]).
//! * [`land`] — single-copy secrets kept: persisting a successor that needs
//!   no send, and the background lander that takes a journaled or in-memory
//!   successor to the store.

use super::agent_io::AgentIo;
use super::rotation::{self, Outcome, Why};
use super::slot::{Flight, Slot};
use super::{Broker, BrokerError, Want, needs_login_message};
use crate::cache::CachedToken;
use crate::credential::CredKey;
use crate::credential::{Kind, State};
use crate::secret::Secret;
use crate::snyk::GrantError;
use crate::store::{Record, StoreError};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

mod land;

/// How long a caller waits for another agent's claim to land before it is
/// told to try again (cached tokens are served meanwhile).
pub(super) const WAIT_FOR_OTHER_AGENT: Duration = Duration::from_secs(30);
/// Snyk errors that did not consume the token are retried this often inside
/// one request; longer backoff belongs to the proactive scheduler.
const REQUEST_RETRIES: u32 = 2;
/// The longest `Retry-After` a waiting caller sits out.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(2);

/// The stored token is dead at Snyk: only a new login helps.
fn needs_login(key: &CredKey, why: &str) -> BrokerError {
    crate::metrics::refresh("permanent");
    tracing::error!(error = %why, "credential needs a new login");
    BrokerError::NeedsLogin(needs_login_message(key, why))
}

/// Snyk refused the stored record's request as malformed: nothing is sent
/// again until a put or a login changes the record. The credential shows
/// `needs_login` (it needs a human), and the message names the put that
/// supplies what a record from the seed service lacks.
fn malformed(key: &CredKey, why: &str) -> BrokerError {
    crate::metrics::refresh("malformed");
    tracing::error!(error = %why, "Snyk refused the refresh request as malformed; it is not sent again until the record changes");
    BrokerError::NeedsLogin(format!(
        "credential {key} is not refreshed: {why}, and the same request would be refused again. Give the app's client secret with `snykey put --org-id {} --client-id {} --client-secret-file FILE`, or log in again",
        key.org, key.client
    ))
}

impl Broker {
    /// Mints an access token for `slot` (the caller holds its single-flight
    /// lock). `given` is a record from `PUT` (its refresh token is rotated at
    /// once); `None` refreshes what is stored.
    pub(super) async fn rotate(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<Record>,
        want: &Want,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;
        let kind = given
            .as_ref()
            .map(Record::kind)
            .unwrap_or(slot.status().kind);
        if kind != Kind::OauthApp {
            return self.mint_service_account(slot, flight, given).await;
        }
        // The cross-agent lock saves work; it is never the safety (rule 2).
        let guard = match self.cache.lock(key, self.lock_ttl, self.lock_wait).await {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::debug!(error = %e, "going on without the refresh lock; the secret store arbitrates");
                None
            }
        };
        let result = self.run_protocol(slot, flight, given, want).await;
        if let Some(guard) = guard {
            if let Err(e) = self.cache.unlock(guard).await {
                tracing::warn!(error = %e, "could not release the refresh lock; it expires by itself");
            }
        }
        result
    }

    async fn run_protocol(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        mut given: Option<Record>,
        want: &Want,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;
        let waiting_since = tokio::time::Instant::now();
        let mut moved = 0;
        let mut transient = 0;
        loop {
            // Another agent may have refreshed while we waited.
            if given.is_none() {
                if let Some(t) = self.cached_for(slot, want).await {
                    return Ok(t);
                }
            }
            let mut io = AgentIo::new(self, key);
            let outcome =
                rotation::refresh(&mut io, &mut flight.mem, &self.rules, given.clone()).await;
            match outcome {
                Outcome::Minted {
                    access_token,
                    landed,
                    ..
                } if access_token.is_empty() => {
                    return Err(self.minted_without_access_token(slot, flight, landed));
                }
                Outcome::Minted {
                    access_token,
                    expires_in,
                    landed,
                } => {
                    return Ok(self
                        .minted(slot, flight, access_token, expires_in, landed)
                        .await);
                }
                Outcome::NotDurable {
                    access_token,
                    expires_in,
                } => return Err(self.not_durable(slot, flight, access_token, expires_in)),
                Outcome::Moved => {
                    if let ControlFlow::Break(r) =
                        self.after_moved(slot, &mut given, want, &mut moved)
                    {
                        return r;
                    }
                }
                Outcome::Wait(why) => {
                    if let ControlFlow::Break(r) =
                        self.wait_for_other(slot, why, waiting_since).await
                    {
                        return r;
                    }
                    // A waiting put rotates the stored token if it is still R.
                }
                // Snyk did not take the token (an OAuth error, a 429): a
                // waiting caller sits out a short wait and tries again, each
                // time under a fresh claim; longer waits go to the scheduler.
                Outcome::Later {
                    after,
                    why: Why::Snyk(e),
                } if e.token_not_consumed() && transient < REQUEST_RETRIES => {
                    if let ControlFlow::Break(e) =
                        self.retry_inline(key, after, e, &mut transient).await
                    {
                        return Err(e);
                    }
                }
                Outcome::Later { after, why } => return Err(self.later(key, after, why)),
                Outcome::NeedsLogin(why) => return Err(needs_login(key, &why)),
                Outcome::Malformed(why) => return Err(malformed(key, &why)),
                Outcome::NotFound => return Err(BrokerError::NotFound(key.clone())),
            }
        }
    }

    /// Someone else moved the record: a put of a token already rotated
    /// answers from the current token; anything else reads again (up to a
    /// point).
    fn after_moved(
        &self,
        slot: &Slot,
        given: &mut Option<Record>,
        want: &Want,
        moved: &mut u32,
    ) -> ControlFlow<Result<CachedToken, BrokerError>> {
        if given.take().is_some() {
            if let Some(t) = slot.hot().filter(|t| want.accepts(t, self.clock.now())) {
                return ControlFlow::Break(Ok(t));
            }
        }
        *moved += 1;
        if *moved > 5 {
            return ControlFlow::Break(Err(BrokerError::Busy(format!(
                "the stored record of {} keeps changing under this agent; try again",
                slot.key
            ))));
        }
        ControlFlow::Continue(())
    }

    /// A token in the shared cache that `want` accepts, adopted.
    async fn cached_for(&self, slot: &Slot, want: &Want) -> Option<CachedToken> {
        if let Ok(Some(t)) = self.cache.get(&slot.key).await {
            if want.accepts(&t, self.clock.now()) {
                self.adopt(slot, &t);
                return Some(t);
            }
        }
        None
    }

    /// Snyk rotated but sent no access token: the new refresh token is
    /// kept; the next call mints from it.
    fn minted_without_access_token(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        landed: bool,
    ) -> BrokerError {
        if !landed {
            self.spawn_lander(slot, flight);
        }
        BrokerError::Busy(format!(
            "Snyk's answer for {} carried a new refresh token (saved) but no access token: try again",
            slot.key
        ))
    }

    /// The new refresh token is durable (in the store, or the journal while
    /// a lander takes it there): the access token goes out.
    async fn minted(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        access_token: Secret,
        expires_in: Duration,
        landed: bool,
    ) -> CachedToken {
        let token = self.token_from(access_token, expires_in);
        slot.status().last_refresh_at = token.issued_at;
        crate::metrics::refresh("ok");
        tracing::info!(landed, "refreshed");
        if !landed {
            self.degraded(slot, "the rotated refresh token is in the recovery journal until the secret store takes it");
            self.spawn_lander(slot, flight);
        }
        self.publish(slot, flight.mem.generation, token.clone())
            .await;
        token
    }

    /// The new refresh token is in memory only: the access token is held
    /// back until a lander makes it durable (I2).
    fn not_durable(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        access_token: Secret,
        expires_in: Duration,
    ) -> BrokerError {
        flight.held = Some(self.token_from(access_token, expires_in));
        flight.held_for = super::slot::unlanded_digest(&flight.mem);
        self.degraded(slot, "a rotated refresh token is held in memory only");
        self.spawn_lander(slot, flight);
        crate::metrics::refresh("not_durable");
        BrokerError::NotDurable(format!(
            "Snyk issued a new refresh token for {} but neither the secret store nor the recovery journal ({}) accepts writes; it is held in memory and retried, and no access token is handed out until it is durable",
            slot.key,
            self.journal.dir().display()
        ))
    }

    /// Another agent holds a live claim: a cached token still good for a
    /// second answers; past the wait, the caller is told to try again;
    /// otherwise a short sleep before the next read.
    async fn wait_for_other(
        &self,
        slot: &Slot,
        why: String,
        waiting_since: tokio::time::Instant,
    ) -> ControlFlow<Result<CachedToken, BrokerError>> {
        if let Some(t) = slot
            .hot()
            .filter(|t| t.remaining(self.clock.now()) > Duration::from_secs(1))
        {
            return ControlFlow::Break(Ok(t));
        }
        if waiting_since.elapsed() > WAIT_FOR_OTHER_AGENT.min(self.rules.takeover) {
            return ControlFlow::Break(Err(BrokerError::Busy(format!(
                "{why}; no valid token is cached yet: try again shortly"
            ))));
        }
        tokio::time::sleep(crate::clock::jittered(Duration::from_millis(500), 0.5)).await;
        ControlFlow::Continue(())
    }

    /// Snyk did not take the token: sits out a short wait (Snyk's
    /// `Retry-After`, else a backoff) before the next try, or gives the
    /// error back when the wait is too long for a waiting caller.
    async fn retry_inline(
        &self,
        key: &CredKey,
        after: Duration,
        e: GrantError,
        transient: &mut u32,
    ) -> ControlFlow<BrokerError> {
        let wait = if after.is_zero() {
            crate::clock::jittered(Duration::from_millis(200) * 2u32.pow(*transient), 0.3)
        } else {
            after
        };
        if wait > MAX_INLINE_WAIT {
            return ControlFlow::Break(self.later(key, after, Why::Snyk(e)));
        }
        *transient += 1;
        crate::metrics::refresh("transient");
        tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, "Snyk did not take the refresh; trying again");
        tokio::time::sleep(wait).await;
        ControlFlow::Continue(())
    }

    fn later(&self, key: &CredKey, after: Duration, why: Why) -> BrokerError {
        match why {
            Why::Store(e) => BrokerError::Store(e),
            Why::Journal(e) => BrokerError::NotDurable(format!(
                "the recovery journal ({}) does not accept writes, so no refresh token is sent: {e}",
                self.journal.dir().display()
            )),
            Why::Snyk(e) => {
                crate::metrics::refresh(if e.token_not_consumed() {
                    "transient"
                } else {
                    "lost_answer"
                });
                if !e.token_not_consumed() {
                    tracing::warn!(error = %e, retry_in_s = after.as_secs(),
                        "Snyk's answer was lost; the same refresh token is sent once more after a quiet period");
                }
                BrokerError::Snyk(e)
            }
            Why::Quiet => BrokerError::Busy(format!(
                "an earlier answer from Snyk for {key} was lost; the one permitted retry waits {}s so that the lost request cannot still be in progress",
                after.as_secs()
            )),
            Why::RolledBack { stored, seen } => {
                BrokerError::Store(StoreError::Unavailable(format!(
                    "the secret store holds generation {stored} of {key} but this agent has seen {seen}: it was rolled back or restored, and its refresh token may be spent; nothing is sent (log in again, or restore the newest version)"
                )))
            }
        }
    }

    pub(super) fn token_from(&self, access_token: Secret, expires_in: Duration) -> CachedToken {
        let now = self.clock.now();
        CachedToken {
            access_token,
            expires_at: now.checked_add(expires_in).unwrap_or(now),
            issued_at: Some(now),
        }
    }

    pub(super) fn degraded(&self, slot: &Slot, why: &str) {
        let mut st = slot.status();
        st.state = State::Degraded;
        st.last_error = Some(why.to_string());
    }

    /// Hands a token to everyone: the hot layer, the cache (with the store
    /// generation it was minted at, `generation`, which the memory cache's
    /// snapshot keeps) and the publisher for jobs.
    pub(super) async fn publish(&self, slot: &Slot, generation: u64, token: CachedToken) {
        if token.access_token.is_empty() {
            return;
        }
        slot.set_hot(Some(token.clone()));
        match token
            .lifetime()
            .filter(|l| *l < super::schedule::LIFETIME_FLOOR)
        {
            Some(short) => self.plan_anomaly(slot, short),
            None => {
                {
                    let mut st = slot.status();
                    st.short_lifetimes = 0;
                    st.anomaly_until = None;
                }
                self.plan(slot, &token);
            }
        }
        {
            let mut st = slot.status();
            st.expires_at = Some(token.expires_at);
            if let Some(l) = token.lifetime() {
                st.lifetime = Some(l);
            }
        }
        if let Err(e) = self.cache.put(&slot.key, &token, generation).await {
            crate::metrics::backend_error("cache");
            tracing::warn!(error = %e, "could not write the access token to the shared cache; serving it from memory");
        }
        self.offer_published(slot, generation, &token);
    }
}

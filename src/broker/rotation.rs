//! The rotation rule of SPEC §2, in one function: [`Broker::rotate`].
//!
//! Snyk refresh tokens are single-use. Sending one twice, or losing the answer
//! to one, locks the credential out until a human logs in again. So:
//! never send a token Snyk accepted; never hand out an access token before the
//! rotated refresh token is durable; never drop a rotated refresh token.

use super::journal::Entry;
use super::{Broker, BrokerError, Flight, Slot, Unlanded, Want, needs_login_message};
use crate::cache::CachedToken;
use crate::clock::rfc3339;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::{Record, StoreError};
use crate::wire::Kind;
use std::sync::Arc;
use std::time::Duration;

/// Transient Snyk errors are retried this often inside one request; longer
/// backoff belongs to the proactive scheduler, not to a waiting caller.
const REQUEST_RETRIES: u32 = 2;
/// The longest `Retry-After` a waiting caller sits out.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(2);

/// Where a rotated record ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// In the secret store: nothing left to do.
    Stored,
    /// In the fsync'd recovery journal: durable; the store write is retried.
    Journaled,
    /// Only in memory: not durable, the access token must not be handed out.
    Memory,
    /// The store holds a different live refresh token written by someone else
    /// since we read it; ours was discarded in its favour.
    Superseded,
}

impl Broker {
    /// Mints an access token for `slot`, following SPEC §2 step by step.
    ///
    /// The caller holds `slot.flight` (the in-process single flight), so in
    /// this agent nobody else refreshes this credential until we return.
    /// `given` is a record from `PUT /v1/credentials` (its refresh token is
    /// rotated at once); `None` means "refresh what is stored".
    pub(super) async fn rotate(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<Record>,
        want: &Want,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;

        // 0. A rotated token that lives only in memory must become durable
        //    before anything else: we never mint from a token we could still lose.
        if given.is_none() && flight.unlanded.as_ref().is_some_and(|u| !u.journaled) {
            if self.land(slot, flight, None).await == Durability::Memory {
                return Err(BrokerError::NotDurable(format!(
                    "a rotated refresh token for {key} is held in memory only: neither the secret store nor the recovery journal ({}) accepts writes; fix them and the agent lands it by itself",
                    self.journal.dir().display()
                )));
            }
            self.publish_unpublished(slot, flight).await;
            if let Some(t) = slot.hot().filter(|t| want.accepts(t, self.clock.now())) {
                return Ok(t);
            }
        }

        // 1. One refresh at a time across every agent sharing the cache: take
        //    the cross-agent lock (a no-op for the in-process memory cache).
        let guard = self.cache.lock(key, self.lock_ttl, self.lock_ttl).await?;
        let result = async {
            // Another agent may have refreshed while we waited for its lock.
            if given.is_none() {
                if let Ok(Some(t)) = self.cache.get(key).await {
                    if want.accepts(&t, self.clock.now()) {
                        self.adopt(slot, &t);
                        return Ok(t);
                    }
                }
            }

            // 2. Re-read the stored record now that we hold the lock: another
            //    agent may have rotated it. A rotated token of ours that the
            //    store has not taken yet is newer than anything stored.
            //    While the store cannot be read (sealed, down), the record this
            //    agent last saw is used only if the shared cache confirms its
            //    refresh token is still the newest one (by fingerprint).
            let stored = self.store.get(key).await;
            let refresh_from_given = given.is_some();
            let (mut record, version) = match (given, &flight.unlanded, stored) {
                (Some(r), _, Ok(v)) => (r, Some(v.map(|v| v.version).unwrap_or(0))),
                (Some(_), _, Err(e)) => return Err(e.into()),
                (None, Some(u), _) => (u.record.clone(), None),
                (None, None, Ok(Some(v))) => (v.record, Some(v.version)),
                (None, None, Ok(None)) => return Err(BrokerError::NotFound(key.clone())),
                (None, None, Err(e)) => match self.known_is_latest(key, flight).await {
                    Some(r) => {
                        tracing::info!(org_id = %key.org, client_id = %key.client, error = %e,
                            "the store cannot be read; refreshing from the record this agent last saw, which the shared cache confirms is the newest");
                        (r, None)
                    }
                    None => return Err(e.into()),
                },
            };
            // The store may be behind: another agent may hold a newer rotated
            //    token in its recovery journal while the store refuses writes.
            //    The shared cache knows the newest token's fingerprint; never
            //    send one that is not the newest (it was already accepted).
            if !refresh_from_given && flight.unlanded.is_none() {
                if let (Some(rt), Ok(Some(latest))) = (&record.refresh_token, self.cache.latest_refresh(key).await) {
                    if rt.fingerprint() != latest {
                        crate::metrics::refresh("store_behind");
                        return Err(BrokerError::Store(StoreError::Unavailable(
                            "the secret store has not yet taken the newest refresh token (another agent holds it in its recovery journal); not refreshing from the older one".into(),
                        )));
                    }
                }
            }
            flight.known = Some(record.clone());
            if record.kind() != Kind::OauthApp {
                return self.mint_service_account(slot, record, version, refresh_from_given).await;
            }
            let Some(sent) = record.refresh_token.clone() else {
                return Err(BrokerError::NeedsLogin(needs_login_message(key, "no refresh token is stored")));
            };
            if flight.dead_token.as_deref() == Some(sent.fingerprint().as_str()) {
                let why = slot.status().last_error.clone().unwrap_or_else(|| "Snyk refused its refresh token".into());
                return Err(BrokerError::NeedsLogin(why));
            }

            // 3. Call Snyk. The journal notes first that this token is in
            //    flight, so that an agent killed mid-request knows at restart
            //    that the answer was lost.
            self.journal_write(key, flight, Some(sent.fingerprint()));
            let grant = self.send_refresh(slot, flight, &record, &sent).await;
            if grant.is_ok() && !self.cache.still_held(&guard).await.unwrap_or(true) {
                // Our lock expired while Snyk answered: another agent may hold it
                // now. The check-and-set write below keeps us from overwriting
                // a record it wrote; ours is still the live successor of `sent`.
                tracing::warn!(org_id = %key.org, client_id = %key.client, "the refresh lock expired during the refresh");
            }
            let grant = match grant {
                Ok(g) => g,
                Err(e) => {
                    if !flight.in_doubt {
                        // Snyk answered: the token is not in flight any more.
                        self.journal_write(key, flight, None);
                    }
                    return Err(e);
                }
            };

            // 4. Persist the new refresh token durably BEFORE the access token
            //    is handed to anyone: journal (fsync), then the store with
            //    check-and-set against the version read in step 2.
            let now = self.clock.now();
            record.refresh_token = grant.refresh_token;
            record.updated_at = Some(rfc3339(now));
            let token = CachedToken {
                access_token: grant.access_token,
                expires_at: now + grant.expires_in,
                issued_at: Some(now),
            };
            self.persist(slot, flight, record, Some(sent.fingerprint()), version, &token).await?;

            // 5. Only then cache and return the access token.
            crate::metrics::refresh("ok");
            self.publish(slot, token.clone()).await;
            Ok(token)
        }
        .await;
        if let Err(e) = self.cache.unlock(guard).await {
            tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "could not release the refresh lock; it expires by itself");
        }
        result
    }

    /// Step 4 in detail: the new record goes to the journal (fsync) and then to
    /// the store (check-and-set against `version`). Ok once it is durable in
    /// either; if neither takes it, the record and `token` are held in memory
    /// (a lander keeps retrying) and the caller gets `NotDurable`.
    pub(super) async fn persist(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        record: Record,
        replaces: Option<String>,
        version: Option<u64>,
        token: &CachedToken,
    ) -> Result<(), BrokerError> {
        let key = &slot.key;
        flight.in_doubt = false;
        flight.dead_token = None;
        flight.unlanded = Some(Box::new(Unlanded {
            record,
            journaled: false,
            replaces,
            unpublished: None,
        }));
        self.journal_write(key, flight, None);
        slot.status().last_refresh_at = token.issued_at;
        match self.land(slot, flight, version).await {
            Durability::Stored | Durability::Superseded => Ok(()),
            Durability::Journaled => {
                self.spawn_lander(slot, flight);
                Ok(())
            }
            Durability::Memory => {
                if let Some(u) = flight.unlanded.as_mut() {
                    u.unpublished = Some(token.clone());
                }
                self.spawn_lander(slot, flight);
                crate::metrics::refresh("not_durable");
                Err(BrokerError::NotDurable(format!(
                    "Snyk issued a new refresh token for {key} but neither the secret store nor the recovery journal ({}) accepts writes; the token is held in memory and retried, and no access token is handed out until it is durable",
                    self.journal.dir().display()
                )))
            }
        }
    }

    /// Step 3 in detail: sends `sent` to Snyk, retrying only where that is safe.
    /// * Snyk answered with an error that did not consume the token (5xx, 429,
    ///   other 4xx, nothing reached it): retried after a short backoff.
    /// * The answer was lost (timeout, dropped connection): the same token is
    ///   sent exactly once more; `invalid_grant` then means the lost answer
    ///   had rotated it.
    async fn send_refresh(
        &self,
        slot: &Slot,
        flight: &mut Flight,
        record: &Record,
        sent: &crate::secret::Secret,
    ) -> Result<TokenGrant, BrokerError> {
        let key = &slot.key;
        let mut transient_retries = 0;
        let mut lost_answer_retried = false;
        loop {
            let result = self
                .snyk
                .refresh(key.client.as_str(), record.client_secret.as_ref(), sent)
                .await;
            let err = match result {
                Ok(grant) => return Ok(grant),
                Err(e) => e,
            };
            match &err {
                GrantError::Permanent { .. } => {
                    crate::metrics::refresh("permanent");
                    flight.dead_token = Some(sent.fingerprint());
                    let why = if flight.in_doubt {
                        format!(
                            "{err} after an earlier answer from Snyk was lost in transit (timeout or dropped connection), which most likely rotated the token"
                        )
                    } else {
                        err.to_string()
                    };
                    flight.in_doubt = false;
                    tracing::error!(org_id = %key.org, client_id = %key.client, error = %why, "credential needs a new login");
                    return Err(BrokerError::NeedsLogin(needs_login_message(key, &why)));
                }
                GrantError::Unknown { .. } => {
                    crate::metrics::refresh("lost_answer");
                    if lost_answer_retried || flight.in_doubt {
                        // This send was already the one permitted retry.
                        flight.in_doubt = true;
                        return Err(BrokerError::Snyk(err));
                    }
                    tracing::warn!(org_id = %key.org, client_id = %key.client, error = %err,
                        "Snyk's answer was lost; sending the same refresh token once more, as SPEC §2 prescribes");
                    flight.in_doubt = true;
                    lost_answer_retried = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => {
                    crate::metrics::refresh("transient");
                    let wait = err.retry_after().unwrap_or_else(|| {
                        jittered(
                            Duration::from_millis(200) * 2u32.pow(transient_retries),
                            0.3,
                        )
                    });
                    if transient_retries >= REQUEST_RETRIES || wait > MAX_INLINE_RETRY_AFTER {
                        return Err(BrokerError::Snyk(err));
                    }
                    transient_retries += 1;
                    tracing::info!(org_id = %key.org, client_id = %key.client, error = %err, wait_ms = wait.as_millis() as u64, "Snyk did not take the refresh; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The record this agent last saw, if the shared cache confirms that its
    /// refresh token is still the newest one any agent published.
    async fn known_is_latest(&self, key: &crate::ids::CredKey, flight: &Flight) -> Option<Record> {
        let known = flight.known.as_ref()?;
        let ours = known.refresh_token.as_ref()?.fingerprint();
        match self.cache.latest_refresh(key).await {
            Ok(Some(latest)) if latest == ours => Some(known.clone()),
            _ => None,
        }
    }

    /// Service accounts have no refresh token: "refresh" repeats the grant.
    /// A record from `PUT` (`given`) is stored only after Snyk accepted it.
    async fn mint_service_account(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        record: Record,
        version: Option<u64>,
        given: bool,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;
        let grant = match record.kind() {
            Kind::ClientSecret => {
                let Some(secret) = record.client_secret.as_ref() else {
                    return Err(BrokerError::NeedsLogin(needs_login_message(
                        key,
                        "no client secret is stored",
                    )));
                };
                self.snyk
                    .client_credentials(key.client.as_str(), secret)
                    .await
            }
            Kind::PrivateKeyJwt => {
                let (Some(pem), Some(kid)) =
                    (record.private_key_pem.as_ref(), record.key_id.as_deref())
                else {
                    return Err(BrokerError::NeedsLogin(needs_login_message(
                        key,
                        "no private key is stored",
                    )));
                };
                let assertion = crate::snyk::jwt::assertion(
                    key.client.as_str(),
                    self.snyk.token_url(),
                    pem,
                    kid,
                    self.clock.now(),
                )
                .map_err(BrokerError::BadInput)?;
                self.snyk
                    .client_assertion(key.client.as_str(), &assertion)
                    .await
            }
            Kind::OauthApp => {
                return Err(BrokerError::BadInput(format!(
                    "credential {key} is an oauth_app"
                )));
            }
        };
        let grant = match grant {
            Ok(g) => g,
            Err(e) if e.is_permanent() => {
                crate::metrics::refresh("permanent");
                return Err(BrokerError::NeedsLogin(needs_login_message(
                    key,
                    &e.to_string(),
                )));
            }
            Err(e) => {
                crate::metrics::refresh("transient");
                return Err(BrokerError::Snyk(e));
            }
        };
        let now = self.clock.now();
        // Only a record given by `put` is new; one read in step 2 is already stored.
        if given {
            let mut to_store = record.clone();
            to_store.updated_at = Some(rfc3339(now));
            self.store.put(key, &to_store, version.or(Some(0))).await?;
        }
        let token = CachedToken {
            access_token: grant.access_token,
            expires_at: now + grant.expires_in,
            issued_at: Some(now),
        };
        slot.status().last_refresh_at = Some(now);
        crate::metrics::refresh("ok");
        self.publish(slot, token.clone()).await;
        Ok(token)
    }

    /// Writes the journal entry of `key`: the unlanded record (if any) and the
    /// in-flight marker `sent`. A journal failure here is logged: the
    /// durability decision is made in [`Broker::land`].
    fn journal_write(&self, key: &crate::ids::CredKey, flight: &mut Flight, sent: Option<String>) {
        let record = flight.unlanded.as_ref().map(|u| u.record.clone());
        let result = if record.is_none() && sent.is_none() {
            self.journal.remove(key)
        } else {
            self.journal.write(
                key,
                &Entry {
                    record,
                    sent,
                    at: rfc3339(self.clock.now()),
                },
            )
        };
        match result {
            Ok(()) => {
                if let Some(u) = flight.unlanded.as_mut() {
                    u.journaled = true;
                }
            }
            Err(e) => {
                crate::metrics::backend_error("journal");
                if let Some(u) = flight.unlanded.as_mut() {
                    u.journaled = false;
                }
                tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "recovery journal write failed");
            }
        }
    }

    /// Makes the unlanded record durable: the store (check-and-set against
    /// `cas`, or the version read now), else the journal.
    pub(super) async fn land(
        &self,
        slot: &Slot,
        flight: &mut Flight,
        cas: Option<u64>,
    ) -> Durability {
        let key = &slot.key;
        if let Some(fp) = flight
            .unlanded
            .as_ref()
            .and_then(|u| u.record.refresh_token.as_ref())
            .map(|t| t.fingerprint())
        {
            if let Some(u) = flight.unlanded.as_ref() {
                flight.known = Some(u.record.clone());
            }
            if let Err(e) = self.cache.set_latest_refresh(key, &fp).await {
                tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "could not publish the refresh token's fingerprint to the shared cache");
            }
        }
        let Some(u) = flight.unlanded.as_ref() else {
            return Durability::Stored;
        };
        let mut cas = cas;
        let mut result = Err(StoreError::Unavailable("not attempted".into()));
        for _ in 0..3 {
            let version = match cas {
                Some(v) => v,
                None => match self.store.get(key).await {
                    Ok(v) => v.map(|v| v.version).unwrap_or(0),
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                },
            };
            result = self.store.put(key, &u.record, Some(version)).await;
            let Err(StoreError::Conflict { .. }) = &result else {
                break;
            };
            // Someone wrote the record since we read it. If they changed its
            // refresh token, theirs is a live token we must not overwrite.
            match self.store.get(key).await {
                Ok(Some(current)) => {
                    let theirs = current
                        .record
                        .refresh_token
                        .as_ref()
                        .map(|t| t.fingerprint());
                    let ours = u.record.refresh_token.as_ref().map(|t| t.fingerprint());
                    if theirs != u.replaces && theirs != ours {
                        tracing::warn!(org_id = %key.org, client_id = %key.client,
                            "another writer stored a different refresh token since we read it; keeping theirs");
                        flight.unlanded = None;
                        self.journal_write(key, flight, None);
                        return Durability::Superseded;
                    }
                    cas = Some(current.version);
                }
                Ok(None) => cas = Some(0),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            Ok(_) => {
                if let Some(t) = flight.unlanded.take().and_then(|u| u.unpublished) {
                    flight.held_back = Some(t);
                }
                // Keep the in-flight marker only while a send is unanswered.
                self.journal_write(
                    key,
                    flight,
                    if flight.in_doubt {
                        Some(String::new())
                    } else {
                        None
                    },
                );
                if slot.status().state == crate::wire::State::Degraded {
                    slot.status().state = crate::wire::State::Ok;
                }
                slot.status().last_error = None;
                Durability::Stored
            }
            Err(e) => {
                crate::metrics::backend_error("store");
                tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e,
                    "the secret store did not take the rotated refresh token; keeping it in the recovery journal and retrying");
                if flight.unlanded.as_ref().is_some_and(|u| !u.journaled) {
                    self.journal_write(key, flight, None);
                }
                let journaled = flight.unlanded.as_ref().is_some_and(|u| u.journaled);
                let mut st = slot.status();
                st.state = crate::wire::State::Degraded;
                st.last_error = Some(format!(
                    "rotated refresh token not yet in the secret store: {e}"
                ));
                if journaled {
                    Durability::Journaled
                } else {
                    tracing::error!(org_id = %key.org, client_id = %key.client,
                        "neither the secret store nor the recovery journal holds the rotated refresh token; it is kept in memory");
                    Durability::Memory
                }
            }
        }
    }

    /// Publishes an access token that was held back until its refresh token was durable.
    pub(super) async fn publish_unpublished(&self, slot: &Slot, flight: &mut Flight) {
        let durable = flight.unlanded.as_ref().is_none_or(|u| u.journaled);
        if !durable {
            return;
        }
        if let Some(t) = flight.unlanded.as_mut().and_then(|u| u.unpublished.take()) {
            self.publish(slot, t).await;
        } else if let Some(t) = flight.held_back.take() {
            self.publish(slot, t).await;
        }
    }
}

/// `base` ± `fraction` at random (never negative).
pub fn jittered(base: Duration, fraction: f64) -> Duration {
    let f = 1.0 + fraction * (rand::random::<f64>() * 2.0 - 1.0);
    base.mul_f64(f.max(0.0))
}

//! Adding and removing credentials: `PUT` (rule 8: the given refresh token
//! is stored with a claim, then rotated at once), `DELETE` (rule 10: a
//! tombstone first), and dropping a cached access token.

use super::agent_io::AgentIo;
use super::{Broker, BrokerError, Want, rotation};
use crate::credential::{CredKey, Kind, NewCredential, Record, State, Withdrawn};
use crate::locks::Recover;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Broker {
    /// `PUT /v1/credentials`: store a credential and mint its first token.
    /// For `oauth_app` the given refresh token is rotated at once, so no other
    /// holder can use it. Nothing is stored when Snyk refuses the credential.
    /// Answers when the first access token expires.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %req.key.org, client_id = %req.key.client))]
    pub async fn put(self: &Arc<Self>, req: NewCredential) -> Result<SystemTime, BrokerError> {
        let (key, kind) = (req.key.clone(), req.kind);
        check_put_fields(&req)?;
        // Refuse before anything is consumed when the store cannot take a write.
        self.store.ready().await?;
        let existing = self.store.get(&key).await?;
        let live = existing.as_ref().map(|v| &v.record);
        let record = put_record(live, req)?;
        let slot = self.slot_or_insert(&key, kind);
        // The rotation of R runs in a task of its own: a `snykey put` killed
        // mid-rotation neither loses the new token nor leaves R half used.
        let broker = Arc::clone(self);
        let had_record = existing.as_ref().is_some_and(|v| !v.record.deleted);
        let generation_before = existing.as_ref().map_or(0, |v| v.record.generation);
        let put_shape = given_shape(&record);
        self.spawn_grant(async move {
            let mut flight = slot.flight.lock().await;
            let status_before = slot.status().clone();
            {
                let mut st = slot.status();
                st.deleted = false;
                st.kind = kind;
                // A new chain: pending until its first grant (Snyk may be
                // unreachable; the record is stored and retried all the same).
                if st.state != State::Degraded {
                    st.state = State::Pending;
                }
            }
            let result = broker
                .mint(
                    &slot,
                    &mut flight,
                    Some(record),
                    &Want {
                        validity: Duration::ZERO,
                        seen: None,
                    },
                )
                .await;
            match result {
                Ok(t) => Ok(t.expires_at),
                Err(e) => {
                    let stored = broker.store.get(&key).await.ok().flatten();
                    if had_record
                        && flight.mem.unlanded.is_none()
                        && changed_nothing(stored.as_ref(), &put_shape)
                        && refused_by_snyk(&e)
                    {
                        // Snyk refused what the put gave (a wrong client
                        // secret, a dead refresh token) and the store holds
                        // what it held before: the credential's state and
                        // schedule stay too.
                        broker.undo_put_status(&slot, status_before);
                        return Err(BrokerError::Partial {
                            message: format!(
                                "Snyk refused the credential the put gave ({e}); nothing was changed: {key} is stored and served as before"
                            ),
                            cause: Box::new(e),
                        });
                    }
                    if !had_record && stored.is_none() && flight.mem.unlanded.is_none() {
                        // Nothing was stored: forget the slot again.
                        slot.status().deleted = true;
                        broker.scheduler.cancel(&key);
                        drop(flight);
                        broker.slots.write().recover().remove(&key);
                    } else if let Some(v) = stored
                        .as_ref()
                        .filter(|v| !v.record.deleted && v.record.generation > generation_before)
                    {
                        // The put replaced the credential and has no token
                        // yet: the replaced one's published token goes.
                        broker.withdraw_published(&key, v.record.generation, Withdrawn::Superseded);
                    }
                    Err(e)
                }
            }
        })
        .await
    }

    /// A put that changed nothing: the status it found comes back, with
    /// its planned refresh (a refused put cancelled it).
    fn undo_put_status(&self, slot: &super::slot::Slot, before: super::slot::Status) {
        let next = before.next_refresh_at;
        *slot.status() = before;
        if let Some(at) = next {
            let wait = at.duration_since(self.clock.now()).unwrap_or_default();
            self.scheduler
                .schedule(&slot.key, tokio::time::Instant::now() + wait);
        }
    }

    /// `DELETE /v1/credentials/{org}/{client}`, optionally revoking at Snyk first.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    pub async fn delete(
        self: &Arc<Self>,
        key: &CredKey,
        revoke: bool,
    ) -> Result<String, BrokerError> {
        let slot = self.slot(key).await?;
        let broker = Arc::clone(self);
        let key = key.clone();
        // Revoking changes state at Snyk: it runs to completion once started.
        self.spawn_grant(async move { broker.delete_now(&slot, &key, revoke).await })
            .await
    }

    async fn delete_now(
        self: &Arc<Self>,
        slot: &Arc<super::slot::Slot>,
        key: &CredKey,
        revoke: bool,
    ) -> Result<String, BrokerError> {
        // Take turns with other agents (an optimisation), and with this
        // agent's own refresh of the credential (its single flight).
        let guard = self
            .cache
            .lock(key, self.lock_ttl, self.lock_wait)
            .await
            .ok();
        let mut flight = slot.flight.lock().await;
        let record = match &flight.mem.unlanded {
            Some(u) => Some(u.record.clone()),
            None => self
                .store
                .get(key)
                .await?
                .map(|v| v.record)
                .filter(|r| !r.deleted),
        };
        let mut revoked = false;
        if revoke {
            if let Some(rec) = &record {
                if let Some(rt) = &rec.refresh_token {
                    self.oauth_at(rec.api_url.as_deref())
                        .revoke(key.client.as_str(), rec.client_secret.as_ref(), rt)
                        .await
                        .map_err(BrokerError::Snyk)?;
                    revoked = true;
                }
            }
        }
        // Rule 10: a tombstone by check-and-set, so that a landing in flight
        // anywhere cannot bring the credential back; then every version goes.
        let mut io = AgentIo::new(self, key);
        if self.store.checks_versions() {
            rotation::tombstone(&mut io, &mut flight.mem).await?;
        }
        // Above every generation minted before the tombstone: nothing from
        // before the delete is published after it.
        self.withdraw_published(key, flight.mem.generation, Withdrawn::Deleted);
        self.store.delete(key).await?;
        flight.mem = rotation::Memory {
            generation: flight.mem.generation,
            ..Default::default()
        };
        flight.held = None;
        flight.held_for = None;
        if let Err(e) = self.journal.remove(key) {
            tracing::warn!(error = %e, "could not remove the journal entry of a deleted credential");
        }
        slot.set_hot(None);
        if let Err(e) = self.cache.delete(key).await {
            tracing::warn!(error = %e, "could not remove the cached token of a deleted credential");
        }
        slot.status().deleted = true;
        self.scheduler.cancel(key);
        drop(flight);
        if let Some(g) = guard {
            let _ = self.cache.unlock(g).await;
        }
        self.slots.write().recover().remove(key);
        tracing::info!(revoked, "credential deleted");
        let message = if revoked {
            format!("credential {key} revoked at Snyk and deleted")
        } else if revoke {
            format!("credential {key} deleted (it held no refresh token to revoke)")
        } else {
            format!("credential {key} deleted")
        };
        Ok(match self.published_removal(key).await {
            Some(published) => format!("{message}; {published}"),
            None => message,
        })
    }

    /// `DELETE /v1/cache/{org}/{client}`: drop the access token; the next request mints one.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    pub async fn clear_cache(self: &Arc<Self>, key: &CredKey) -> Result<String, BrokerError> {
        let slot = self.slot(key).await?;
        let _flight = slot.flight.lock().await;
        self.cache.delete(key).await?;
        slot.set_hot(None);
        slot.status().expires_at = None;
        Ok(format!("cached token of {key} dropped"))
    }
}

/// What a put gives that Snyk sees: the kind, refresh token, client secret
/// and key (digests).
fn given_shape(r: &Record) -> (Kind, String, String) {
    let key = r
        .private_key_pem
        .as_ref()
        .map(crate::secret::Secret::digest)
        .unwrap_or_default();
    (r.kind(), rotation::request_shape(r), key)
}

/// The store holds a live record, and not what the put gave: the put's own
/// write was put back, or never made.
fn changed_nothing(stored: Option<&crate::store::Versioned>, put: &(Kind, String, String)) -> bool {
    stored.is_some_and(|v| {
        !v.record.deleted && v.record.needs_login().is_none() && given_shape(&v.record) != *put
    })
}

/// Did Snyk refuse what a put gave (not an outage, not a lost answer)?
fn refused_by_snyk(e: &BrokerError) -> bool {
    matches!(e, BrokerError::NeedsLogin(_))
        || matches!(e, BrokerError::Snyk(g) if g.is_permanent() || g.is_malformed())
}

/// The record `PUT` stores: what is stored already for the same kind, with
/// the given fields over it, checked complete for its kind, its rotation
/// fields reset (a put starts a new chain, rule 8).
fn put_record(existing: Option<&Record>, req: NewCredential) -> Result<Record, BrokerError> {
    let kind = req.kind;
    let mut record = match existing {
        Some(r) if r.kind() == kind => r.clone(),
        _ => Record {
            kind: Some(kind),
            ..Default::default()
        },
    };
    record.kind = Some(kind);
    if let Some(s) = req.client_secret {
        record.client_secret = Some(s);
    }
    if let Some(rt) = req.refresh_token {
        record.refresh_token = Some(rt);
    }
    if let Some(pem) = req.private_key_pem {
        record.private_key_pem = Some(pem);
    }
    if let Some(kid) = req.key_id {
        record.key_id = Some(kid);
    }
    if let Some(key) = req.api_key {
        record.api_key = Some(key);
    }
    // The put's region; one that names none keeps the stored region of a
    // credential of the same kind (its secrets were issued there).
    if req.api_url.is_some() {
        record.api_url = req.api_url;
    }
    match kind {
        Kind::OauthApp if record.refresh_token.is_none() => {
            return Err(BrokerError::BadInput(
                "an oauth_app credential needs a refresh_token (none is stored yet): give one, or run `snykey login`".into(),
            ));
        }
        Kind::ClientSecret if record.client_secret.is_none() => {
            return Err(BrokerError::BadInput(
                "a client_secret credential needs client_secret".into(),
            ));
        }
        Kind::ApiKey if record.api_key.is_none() => {
            return Err(BrokerError::BadInput(
                "an api_key credential needs api_key".into(),
            ));
        }
        Kind::PrivateKeyJwt => {
            let (Some(pem), Some(kid)) = (&record.private_key_pem, &record.key_id) else {
                return Err(BrokerError::BadInput(
                    "a private_key_jwt credential needs private_key_pem and key_id".into(),
                ));
            };
            if kid.is_empty() || kid.len() > 256 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(BrokerError::BadInput(
                    "key_id must be 1-256 printable characters".into(),
                ));
            }
            crate::snyk::jwt::validate_key(pem.expose()).map_err(BrokerError::BadInput)?;
        }
        _ => {}
    }
    record.generation = 0;
    record.claim = None;
    record.state = None;
    record.prev_fp = None;
    record.deleted = false;
    Ok(record)
}

fn check_put_fields(req: &NewCredential) -> Result<(), BrokerError> {
    let bad = |m: &str| Err(BrokerError::BadInput(m.to_string()));
    for (name, s) in [
        ("client_secret", &req.client_secret),
        ("refresh_token", &req.refresh_token),
        ("private_key_pem", &req.private_key_pem),
        ("api_key", &req.api_key),
    ] {
        if let Some(s) = s {
            if s.is_empty() {
                return bad(&format!("{name} is empty"));
            }
            if s.expose().len() > 16 * 1024 {
                return bad(&format!("{name} is longer than 16 KiB"));
            }
        }
    }
    if req.api_key.is_some() && req.kind != Kind::ApiKey {
        return bad("api_key belongs to kind api_key");
    }
    match req.kind {
        Kind::ApiKey
            if req.refresh_token.is_some()
                || req.client_secret.is_some()
                || req.private_key_pem.is_some()
                || req.key_id.is_some() =>
        {
            bad("an api_key credential takes only api_key")
        }
        Kind::OauthApp if req.private_key_pem.is_some() || req.key_id.is_some() => {
            bad("private_key_pem and key_id belong to kind private_key_jwt, not oauth_app")
        }
        Kind::ClientSecret if req.refresh_token.is_some() || req.private_key_pem.is_some() => bad(
            "a client_secret credential takes only client_secret (no refresh_token or private key)",
        ),
        Kind::PrivateKeyJwt if req.refresh_token.is_some() || req.client_secret.is_some() => bad(
            "a private_key_jwt credential takes private_key_pem and key_id (no refresh_token or client_secret)",
        ),
        _ => Ok(()),
    }
}

//! A service account's access token (docs/protocol.md): it has no refresh token, so
//! "refresh" repeats the grant (`client_credentials`, or a `private_key_jwt`
//! assertion). A record from `PUT` is stored only after Snyk accepted it.

use super::slot::{Flight, Slot};
use super::{Broker, BrokerError, needs_login_message};
use crate::cache::CachedToken;
use crate::credential::CredKey;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::Record;
use crate::wire::Kind;
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// Service accounts have no refresh token: "refresh" repeats the grant.
    /// A record from `PUT` (`given`) is stored only after Snyk accepted it.
    pub(super) async fn mint_service_account(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<Record>,
    ) -> Result<CachedToken, BrokerError> {
        let key = &slot.key;
        let (record, generation) = match (&given, &flight.mem.unlanded) {
            // A new secret the store has not taken yet (a rotation's,
            // journaled or held for a lander) is the newest one: with
            // `replace`, the stored one is already revoked at Snyk.
            (None, Some(u)) if !u.record.deleted => (u.record.clone(), u.base.generation),
            (None, _) => match self.sa_unclaimed(slot, flight, true).await? {
                Ok(Some(found)) => found,
                Ok(None) => return Err(BrokerError::NotFound(key.clone())),
                // Another agent's rotation ended while we waited: its token.
                Err(token) => return Ok(token),
            },
            // A put waits for a rotation under way on another agent: it
            // would replace the claimed record, and the rotation's new
            // secret (with `replace`, the only one Snyk accepts) would be
            // dropped at its landing.
            (Some(r), _) => match self.sa_unclaimed(slot, flight, false).await? {
                Ok(stored) => (r.clone(), stored.map_or(0, |(_, g)| g)),
                Err(token) => return Ok(token),
            },
        };
        if record.kind() == Kind::ApiKey {
            return self
                .hand_api_key(slot, flight, given, record, generation)
                .await;
        }
        self.note_region(key, record.api_url.as_deref());
        // The highest generation read (what a published token is ordered by).
        flight.mem.generation = flight.mem.generation.max(generation);
        let answer = self.sa_grant(key, &record).await?;
        crate::audit::grant_result(
            crate::audit::GrantKind::ClientCredentials,
            Some(key),
            &answer,
        );
        let grant = granted(key, answer)?;
        if let Some(to_store) = given {
            // A secret (perhaps one Snyk just created, shown once).
            self.store_given(slot, flight, to_store, generation).await?;
        }
        let token = self.token_from(grant.access_token, grant.expires_in);
        slot.status().last_refresh_at = token.issued_at;
        crate::metrics::refresh("ok");
        self.publish(slot, flight.mem.generation, token.clone())
            .await;
        Ok(token)
    }

    /// The stored record and its generation (`None`: nothing stored), once
    /// no other agent's claim on it is live: a claim means a rotation of
    /// its secret is under way (`rotate-secret`), and the secret read now
    /// may be revoked before the grant arrives. Meanwhile a cached token
    /// still good for a second is served (`Err`; only if `serve_cached`);
    /// past the wait, the caller is told to try again.
    async fn sa_unclaimed(
        &self,
        slot: &Slot,
        flight: &mut Flight,
        serve_cached: bool,
    ) -> Result<Result<Option<(Record, u64)>, CachedToken>, BrokerError> {
        let key = &slot.key;
        let since = tokio::time::Instant::now();
        loop {
            let v = match self.store.get(key).await? {
                Some(v) if !v.record.deleted => v,
                _ => return Ok(Ok(None)),
            };
            let live = crate::broker::rotation::secrets::live_foreign_claim(
                &v.record,
                v.version,
                &mut flight.mem,
                &self.rules,
                self.mono(),
            );
            let Some(why) = live else {
                let generation = v.record.generation;
                return Ok(Ok(Some((v.record, generation))));
            };
            if let Some(t) = slot
                .hot()
                .filter(|t| serve_cached && t.remaining(self.clock.now()) > Duration::from_secs(1))
            {
                return Ok(Err(t));
            }
            if since.elapsed() > super::refresh::WAIT_FOR_OTHER_AGENT.min(self.rules.takeover) {
                return Err(BrokerError::Busy(format!(
                    "{why}; no valid token is cached yet: try again shortly"
                )));
            }
            tokio::time::sleep(crate::clock::jittered(Duration::from_millis(500), 0.5)).await;
        }
    }

    /// Asks Snyk for an access token with the record's secret or key. The
    /// outer error: nothing could be sent; the inner one: Snyk's answer.
    async fn sa_grant(
        &self,
        key: &CredKey,
        record: &Record,
    ) -> Result<Result<TokenGrant, GrantError>, BrokerError> {
        let snyk = self.oauth_at(record.api_url.as_deref());
        Ok(match record.kind() {
            Kind::ClientSecret => {
                let Some(secret) = record.client_secret.as_ref() else {
                    return Err(BrokerError::NeedsLogin(needs_login_message(
                        key,
                        "no client secret is stored",
                    )));
                };
                snyk.client_credentials(key.client.as_str(), secret).await
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
                    snyk.token_url(),
                    pem,
                    kid,
                    self.clock.now(),
                )
                .map_err(BrokerError::BadInput)?;
                snyk.client_assertion(key.client.as_str(), &assertion).await
            }
            Kind::OauthApp | Kind::ApiKey => {
                return Err(BrokerError::BadInput(format!(
                    "credential {key} is an {}, not a service account with a grant",
                    record.kind().as_str()
                )));
            }
        })
    }
}

/// Snyk's answer to a service account's grant: a refused secret or key
/// needs a new one; anything else is retried.
fn granted(
    key: &CredKey,
    grant: Result<TokenGrant, GrantError>,
) -> Result<TokenGrant, BrokerError> {
    match grant {
        Ok(g) => Ok(g),
        Err(e) if e.is_permanent() => {
            crate::metrics::refresh("permanent");
            Err(BrokerError::NeedsLogin(needs_login_message(
                key,
                &e.to_string(),
            )))
        }
        Err(e) => {
            crate::metrics::refresh("transient");
            Err(BrokerError::Snyk(e))
        }
    }
}

//! A service account's access token (SPEC §2): it has no refresh token, so
//! "refresh" repeats the grant (`client_credentials`, or a `private_key_jwt`
//! assertion). A record from `PUT` is stored only after Snyk accepted it.

use super::journal::Base;
use super::slot::{Flight, Slot};
use super::{Broker, BrokerError, needs_login_message};
use crate::cache::CachedToken;
use crate::clock::rfc3339;
use crate::credential::CredKey;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::Record;
use crate::wire::Kind;
use std::sync::Arc;

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
        let (record, generation) = self.sa_record(key, &given).await?;
        // The highest generation read (what a published token is ordered by).
        flight.mem.generation = flight.mem.generation.max(generation);
        let answer = self.sa_grant(key, &record).await?;
        crate::audit::grant_result(
            crate::audit::GrantKind::ClientCredentials,
            Some(key),
            &answer,
        );
        let grant = granted(key, answer)?;
        if let Some(mut to_store) = given {
            // A secret (perhaps one Snyk just created, shown once): journal,
            // then the store, like every new credential.
            to_store.updated_at = Some(rfc3339(self.clock.now()));
            to_store.generation = generation.max(flight.mem.generation) + 1;
            // A put is a human reset, like a login: it replaces whatever is
            // stored unless something newer landed meanwhile.
            let base = Base {
                fp: None,
                generation,
                login: true,
                via: Vec::new(),
            };
            self.persist_record(slot, flight, to_store, base).await?;
        }
        let token = self.token_from(grant.access_token, grant.expires_in);
        slot.status().last_refresh_at = token.issued_at;
        crate::metrics::refresh("ok");
        self.publish(slot, flight.mem.generation, token.clone())
            .await;
        Ok(token)
    }

    /// The record to grant with (`given`, or the stored one) and the stored
    /// generation.
    async fn sa_record(
        &self,
        key: &CredKey,
        given: &Option<Record>,
    ) -> Result<(Record, u64), BrokerError> {
        Ok(match given {
            Some(r) => (
                r.clone(),
                self.store
                    .get(key)
                    .await?
                    .map(|v| v.record.generation)
                    .unwrap_or(0),
            ),
            None => match self.store.get(key).await? {
                Some(v) if !v.record.deleted => {
                    let generation = v.record.generation;
                    (v.record, generation)
                }
                _ => return Err(BrokerError::NotFound(key.clone())),
            },
        })
    }

    /// Asks Snyk for an access token with the record's secret or key. The
    /// outer error: nothing could be sent; the inner one: Snyk's answer.
    async fn sa_grant(
        &self,
        key: &CredKey,
        record: &Record,
    ) -> Result<Result<TokenGrant, GrantError>, BrokerError> {
        Ok(match record.kind() {
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

//! Snyk service accounts: list, create (and manage at once), delete, and
//! secret rotation with no downtime.
//!
//! These run in the agent because rotation needs the stored secret (Snyk's
//! `mode=delete` names the secret to remove) and only the agent holds it; the
//! Snyk auth token arrives in the request body and is never stored.

use super::slot::Slot;
use super::{Broker, BrokerError};
use crate::audit::GrantKind;
use crate::cache::CachedToken;
use crate::clock::rfc3339;
use crate::credential::CredKey;
use crate::credential::{Kind, NewCredential};
use crate::secret::Secret;
use crate::snyk::rest::{Scope, ServiceAccount};
use crate::store::{Record, Versioned};
use std::sync::Arc;

/// Whom a service-account call acts for (an org or a group) and the Snyk
/// token it acts with: given per request, never stored.
#[derive(Debug)]
pub struct SaAuth {
    pub scope: Scope,
    pub auth_token: Secret,
}

/// Which service account a call means.
#[derive(Debug, Clone)]
pub enum SaTarget {
    Id(String),
    ClientId(String),
}

/// A service account to create.
#[derive(Debug)]
pub struct SaCreate {
    pub name: String,
    pub role_id: String,
    /// `oauth_client_secret` (stored and managed at once) or `oauth_private_key_jwt`.
    pub auth_type: String,
    pub jwks_url: Option<String>,
    pub access_token_ttl_seconds: Option<u64>,
}

/// What a service-account call did, and the account it did it to.
#[derive(Debug)]
pub struct SaDone {
    pub message: String,
    pub account: Option<ServiceAccount>,
}

impl Broker {
    /// Lists the service accounts of an org or group.
    pub async fn sa_list(&self, auth: &SaAuth) -> Result<Vec<ServiceAccount>, BrokerError> {
        self.rest
            .list_service_accounts(&auth.scope, &auth.auth_token)
            .await
            .map_err(BrokerError::Rest)
    }

    /// Finds the account named by `service_account_id` or `client_id`.
    async fn sa_find(
        &self,
        auth: &SaAuth,
        target: &SaTarget,
    ) -> Result<ServiceAccount, BrokerError> {
        let all = self.sa_list(auth).await?;
        let found = match target {
            SaTarget::Id(id) => all.into_iter().find(|s| &s.id == id),
            SaTarget::ClientId(c) => all.into_iter().find(|s| &s.client_id == c),
        };
        found.ok_or_else(|| {
            BrokerError::BadInput(format!("no such service account in {}", auth.scope.id()))
        })
    }

    /// Creates a service account at Snyk; an `oauth_client_secret` account is
    /// stored and managed at once (its secret is never returned).
    /// Runs to completion in a task of its own: the new secret Snyk hands out
    /// once must reach the store (through the journal) whoever hangs up.
    pub async fn sa_create(
        self: &Arc<Self>,
        auth: SaAuth,
        req: SaCreate,
    ) -> Result<SaDone, BrokerError> {
        let broker = Arc::clone(self);
        self.spawn_grant(async move { broker.sa_create_now(auth, req).await })
            .await
    }

    async fn sa_create_now(
        self: &Arc<Self>,
        auth: SaAuth,
        req: SaCreate,
    ) -> Result<SaDone, BrokerError> {
        let scope = &auth.scope;
        let (name, role_id, auth_type) = (req.name.trim(), &req.role_id, &*req.auth_type);
        check_auth_type(auth_type, req.jwks_url.as_deref())?;
        if auth_type == "oauth_client_secret" {
            self.store.ready().await?;
        }
        let (sa, secret) = self
            .rest
            .create_service_account(
                scope,
                &auth.auth_token,
                name,
                auth_type,
                role_id,
                req.jwks_url.as_deref(),
                req.access_token_ttl_seconds,
            )
            .await
            .map_err(BrokerError::Rest)?;
        let Some(secret) = secret else {
            return Ok(SaDone {
                message: format!(
                    "created service account {} (client id {}); store its private key with `snykey put --kind private_key_jwt --org-id {} --client-id {} --private-key-file KEY --key-id KID`",
                    sa.id,
                    sa.client_id,
                    scope.id(),
                    sa.client_id
                ),
                account: Some(sa),
            });
        };
        self.sa_manage_created(scope, sa, secret).await
    }

    /// A created `oauth_client_secret` account: its secret is stored and
    /// managed at once (a failure says how to remove the account).
    async fn sa_manage_created(
        self: &Arc<Self>,
        scope: &Scope,
        sa: ServiceAccount,
        secret: Secret,
    ) -> Result<SaDone, BrokerError> {
        let key = CredKey::parse(scope.id(), &sa.client_id).map_err(|e| {
            BrokerError::BadInput(format!(
                "service account {} was created at Snyk with an unusable client id ({e}). Remove it with `snykey service-account delete --service-account-id {}`",
                sa.id, sa.id
            ))
        })?;
        let put = NewCredential {
            key,
            kind: Kind::ClientSecret,
            client_secret: Some(secret),
            refresh_token: None,
            private_key_pem: None,
            key_id: None,
        };
        match self.put(put).await {
            Ok(_) => Ok(SaDone {
                message: format!(
                    "created service account {} (client id {}); snykey manages it as {}/{}",
                    sa.id,
                    sa.client_id,
                    scope.id(),
                    sa.client_id
                ),
                account: Some(sa),
            }),
            Err(e) => Err(BrokerError::BadInput(format!(
                "service account {} (client id {}) was created at Snyk but could not be stored or used: {e}. Remove it with `snykey service-account delete --service-account-id {}`",
                sa.id, sa.client_id, sa.id
            ))),
        }
    }

    /// Deletes a service account at Snyk and its credential here.
    pub async fn sa_delete(
        self: &Arc<Self>,
        auth: SaAuth,
        target: SaTarget,
    ) -> Result<SaDone, BrokerError> {
        let scope = &auth.scope;
        let sa = self.sa_find(&auth, &target).await?;
        self.rest
            .delete_service_account(scope, &auth.auth_token, &sa.id)
            .await
            .map_err(BrokerError::Rest)?;
        let mut message = format!("deleted service account {} at Snyk", sa.id);
        if let Ok(key) = CredKey::parse(scope.id(), &sa.client_id) {
            match self.delete(&key, false).await {
                Ok(_) => message.push_str(" and its credential here"),
                Err(BrokerError::NotFound(_)) => {}
                Err(e) => message.push_str(&format!(
                    "; removing its credential here failed: {e} (run `snykey delete {} {}`)",
                    key.org, key.client
                )),
            }
        }
        Ok(SaDone {
            message,
            account: Some(sa),
        })
    }

    /// Rotates a client-secret service account's secret.
    ///
    /// Default (no downtime): create a second secret at Snyk, prove it mints a
    /// token, switch the stored secret to it (callers keep being served the
    /// whole time), then delete the old one at Snyk. `mode = "replace"` (a
    /// compromised secret): replace every secret at once and store the new one.
    /// If a step fails, a working secret stays stored and the error says what
    /// is left to clean up.
    /// Runs to completion in a task of its own: the new secret Snyk hands out
    /// once must reach the store (through the journal) whoever hangs up.
    pub async fn sa_rotate(
        self: &Arc<Self>,
        auth: SaAuth,
        target: SaTarget,
        replace: bool,
    ) -> Result<SaDone, BrokerError> {
        let broker = Arc::clone(self);
        self.spawn_grant(async move { broker.sa_rotate_now(auth, target, replace).await })
            .await
    }

    async fn sa_rotate_now(
        self: &Arc<Self>,
        auth: SaAuth,
        target: SaTarget,
        replace: bool,
    ) -> Result<SaDone, BrokerError> {
        let scope = &auth.scope;
        let token = &auth.auth_token;
        let sa = self.sa_find(&auth, &target).await?;
        let key = CredKey::parse(scope.id(), &sa.client_id)
            .map_err(|e| BrokerError::BadInput(e.to_string()))?;
        let (stored, old) = self.sa_stored_secret(&key).await?;
        self.store.ready().await?;

        // 1. A second (or, replacing, the only) secret at Snyk.
        let new = self
            .sa_new_secret(scope, token, &sa.id, &key, replace)
            .await?;

        // 2. Prove it mints a token, 3. store it and switch to it.
        let grant = self
            .snyk
            .client_credentials(key.client.as_str(), &new)
            .await;
        crate::audit::grant_result(GrantKind::ClientCredentials, Some(&key), &grant);
        let grant = grant.map_err(|e| {
            BrokerError::BadInput(left_over(
                replace,
                &format!("the new secret did not mint a token ({e})"),
            ))
        })?;
        let now = self.clock.now();
        let slot = self.slot_or_insert(&key, Kind::ClientSecret);
        self.sa_store_secret(&slot, &stored.record, &new, now, replace)
            .await?;
        self.publish(
            &slot,
            CachedToken {
                access_token: grant.access_token,
                expires_at: now + grant.expires_in,
                issued_at: Some(now),
            },
        )
        .await;
        tracing::info!(org_id = %key.org, client_id = %key.client, "switched to the new service account secret");

        // 4. Delete the old one at Snyk.
        if !replace {
            if let Err(e) = self
                .rest
                .manage_secret(scope, token, &sa.id, "delete", Some(&old))
                .await
            {
                return Err(BrokerError::BadInput(format!(
                    "the new secret is stored and in use, but deleting the old one at Snyk failed ({e}): two secrets are active; run `snykey service-account rotate-secret --mode replace` or delete it in Snyk"
                )));
            }
        }
        Ok(SaDone {
            message: format!(
                "rotated the secret of service account {} ({}); the new one is stored and the old one is gone",
                sa.id, key
            ),
            account: Some(sa),
        })
    }

    /// A rotation's starting point: the stored client_secret record of
    /// `key`, and its secret.
    async fn sa_stored_secret(&self, key: &CredKey) -> Result<(Versioned, Secret), BrokerError> {
        let stored = self.store.get(key).await?.ok_or_else(|| {
            BrokerError::BadInput(format!("credential {key} is not managed here: store it first with `snykey put --kind client_secret`"))
        })?;
        if stored.record.kind() != Kind::ClientSecret {
            return Err(BrokerError::BadInput(format!(
                "credential {key} is not a client_secret service account"
            )));
        }
        let old = stored.record.client_secret.clone().ok_or_else(|| {
            BrokerError::BadInput(format!("credential {key} has no stored secret"))
        })?;
        Ok((stored, old))
    }

    /// Step 1 of a rotation: a new secret at Snyk (a second one, or the
    /// only one when replacing), audited.
    async fn sa_new_secret(
        &self,
        scope: &Scope,
        token: &Secret,
        sa_id: &str,
        key: &CredKey,
        replace: bool,
    ) -> Result<Secret, BrokerError> {
        let new = self
            .rest
            .manage_secret(
                scope,
                token,
                sa_id,
                if replace { "replace" } else { "create" },
                None,
            )
            .await
            .and_then(|s| {
                s.ok_or_else(|| {
                    crate::snyk::rest::RestError::Protocol("Snyk returned no new secret".into())
                })
            });
        match &new {
            Ok(_) => crate::audit::grant(GrantKind::SecretRotation, Some(key), "ok", None),
            Err(e) => crate::audit::grant(
                GrantKind::SecretRotation,
                Some(key),
                "error",
                Some(crate::audit::rest_error_code(e)),
            ),
        }
        let new = new.map_err(BrokerError::Rest)?;
        tracing::info!(org_id = %key.org, client_id = %key.client, replace, "created a new service account secret at Snyk");
        Ok(new)
    }

    /// Step 3 of a rotation: the new secret goes through the journal, then
    /// the store by succession (nothing landed since we read it).
    async fn sa_store_secret(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        stored: &Record,
        new: &Secret,
        now: std::time::SystemTime,
        replace: bool,
    ) -> Result<(), BrokerError> {
        let mut flight = slot.flight.lock().await;
        let current = self.store.get(&slot.key).await?;
        let mut record: Record = current
            .as_ref()
            .map(|v| v.record.clone())
            .unwrap_or_else(|| stored.clone());
        let base = super::journal::Base {
            fp: None,
            generation: record.generation,
            login: false,
            via: Vec::new(),
        };
        record.client_secret = Some(new.clone());
        record.updated_at = Some(rfc3339(now));
        record.generation += 1;
        self.persist_record(slot, &mut flight, record, base)
            .await
            .map_err(|e| {
                BrokerError::BadInput(left_over(
                    replace,
                    &format!("storing the new secret failed ({e})"),
                ))
            })?;
        Ok(())
    }
}

/// What a rotation that failed after step 1 leaves at Snyk, and what to do.
fn left_over(replace: bool, what: &str) -> String {
    if replace {
        format!(
            "{what}; the old secret was already replaced at Snyk, so run `snykey service-account rotate-secret --mode replace` again"
        )
    } else {
        format!(
            "{what}; the stored secret still works. A second secret now exists at Snyk: run rotate-secret again, or remove the extra one with `--mode replace`"
        )
    }
}

/// The auth types a created account may have: a private key JWT needs a
/// JWKS URL Snyk can fetch (https, or a loopback test server).
fn check_auth_type(auth_type: &str, jwks_url: Option<&str>) -> Result<(), BrokerError> {
    match auth_type {
        "oauth_client_secret" => {}
        "oauth_private_key_jwt"
            if jwks_url
                .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://127.")) => {}
        "oauth_private_key_jwt" => {
            return Err(BrokerError::BadInput(
                "oauth_private_key_jwt needs an https jwks_url".into(),
            ));
        }
        other => {
            return Err(BrokerError::BadInput(format!(
                "auth_type {other:?} is not oauth_client_secret or oauth_private_key_jwt"
            )));
        }
    }
    Ok(())
}

//! Snyk service accounts: list, create (and manage at once), show, rename,
//! delete, and secret rotation with no downtime.
//!
//! These run in the agent because rotation needs the stored secret (Snyk's
//! `mode=delete` names the secret to remove) and only the agent holds it; the
//! Snyk auth token arrives in the request body and is never stored.

use super::agent_io::{AgentIo, SaCall};
use super::rotation::{
    self,
    secrets::{Rollback, RotationStopped},
};
use super::{Broker, BrokerError};
use crate::credential::CredKey;
use crate::credential::Kind;
use crate::secret::Secret;
use crate::snyk::rest::{RestError, Scope, ServiceAccount};
use std::sync::Arc;

/// Whom a service-account call acts for (an org or a group) and the Snyk
/// token it acts with: given per request, never stored.
#[derive(Debug)]
pub struct SaAuth {
    pub scope: Scope,
    pub auth_token: Secret,
    /// The Snyk region the calls go to, checked (`None`: the agent's); an
    /// account created there is stored with it.
    pub api_url: Option<String>,
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
    /// `oauth_client_secret` or `api_key` (stored and managed at once), or
    /// `oauth_private_key_jwt`.
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
        self.rest_at(auth.api_url.as_deref())
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
            // An API key account (no client id) is named by its id.
            SaTarget::ClientId(c) => all
                .into_iter()
                .find(|s| &s.client_id == c || (s.client_id.is_empty() && &s.id == c)),
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
        let kind = check_auth_type(auth_type, req.jwks_url.as_deref())?;
        if kind.is_some() {
            // Its secret exists once, in Snyk's answer: refused before it
            // exists when the store cannot take it.
            self.store.ready().await?;
        }
        let (sa, secret) = self
            .rest_at(auth.api_url.as_deref())
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
        let (kind, secret) = match (kind, secret) {
            (Some(kind), Some(secret)) => (kind, secret),
            (Some(_), None) => {
                return Err(BrokerError::Rest(RestError::Protocol(format!(
                    "Snyk created service account {} but its answer carried no {}: delete it (`snykey service-account delete --service-account-id {}`) and create it again",
                    sa.id,
                    if auth_type == "api_key" {
                        "API key"
                    } else {
                        "client secret"
                    },
                    sa.id
                ))));
            }
            (None, _) => {
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
            }
        };
        self.sa_manage_created(&auth, sa, kind, secret).await
    }

    /// A created `oauth_client_secret` or `api_key` account: its secret or
    /// key (shown once, the only copy) is made durable first — the journal,
    /// then the store — and only then used for a first token; a failure
    /// says what is left.
    async fn sa_manage_created(
        self: &Arc<Self>,
        auth: &SaAuth,
        sa: ServiceAccount,
        kind: Kind,
        secret: Secret,
    ) -> Result<SaDone, BrokerError> {
        let scope = &auth.scope;
        let key = sa_key(scope, &sa).map_err(|e| {
            BrokerError::BadInput(format!(
                "service account {} was created at Snyk with an unusable id ({e}). Remove it with `snykey service-account delete --service-account-id {}`",
                sa.id, sa.id
            ))
        })?;
        let slot = self.slot_or_insert(&key, kind);
        slot.set_api_url(auth.api_url.as_deref());
        {
            let mut flight = slot.flight.lock().await;
            {
                let mut st = slot.status();
                st.deleted = false;
                st.kind = kind;
            }
            let generation = match self.store.get(&key).await {
                Ok(v) => v.map(|v| v.record.generation).unwrap_or(0),
                Err(_) => flight.mem.generation,
            };
            let (client_secret, api_key) = match kind {
                Kind::ApiKey => (None, Some(secret)),
                _ => (Some(secret), None),
            };
            let record = crate::store::Record {
                kind: Some(kind),
                client_secret,
                api_key,
                api_url: auth.api_url.clone(),
                updated_at: Some(crate::clock::rfc3339(self.clock.now())),
                generation: generation.max(flight.mem.generation) + 1,
                ..Default::default()
            };
            // A new credential replaces whatever is stored (like a put).
            let base = super::journal::Base {
                fp: None,
                generation,
                login: true,
                via: Vec::new(),
            };
            self.persist_record(&slot, &mut flight, record, base)
                .await
                .map_err(|e| BrokerError::Partial {
                    message: format!(
                        "service account {} was created at Snyk, but its secret is not stored yet: {e}",
                        sa.id
                    ),
                    cause: Box::new(e),
                })?;
        }
        let done = format!(
            "created service account {} ({}); snykey manages it as {key}",
            sa.id,
            match kind {
                Kind::ApiKey => "an API key".to_string(),
                _ => format!("client id {}", sa.client_id),
            },
        );
        match self.token(&key, None).await {
            Ok(_) => Ok(SaDone {
                message: done,
                account: Some(sa),
            }),
            Err(e) => Err(BrokerError::Partial {
                message: format!(
                    "{done}, and its secret is stored, but the first token failed: {e}"
                ),
                cause: Box::new(e),
            }),
        }
    }

    /// Gets one service account (`show`): by id straight from Snyk, by client
    /// id from the list.
    pub async fn sa_show(
        &self,
        auth: &SaAuth,
        target: &SaTarget,
    ) -> Result<ServiceAccount, BrokerError> {
        match target {
            SaTarget::Id(id) => self
                .rest_at(auth.api_url.as_deref())
                .get_service_account(&auth.scope, &auth.auth_token, id)
                .await
                .map_err(BrokerError::Rest),
            SaTarget::ClientId(_) => self.sa_find(auth, target).await,
        }
    }

    /// Renames a service account at Snyk (its credential here keeps its key).
    pub async fn sa_rename(
        &self,
        auth: SaAuth,
        target: SaTarget,
        name: &str,
    ) -> Result<SaDone, BrokerError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(BrokerError::BadInput(
                "name must be 1-200 printable characters".into(),
            ));
        }
        let id = match &target {
            SaTarget::Id(id) => id.clone(),
            SaTarget::ClientId(_) => self.sa_find(&auth, &target).await?.id,
        };
        let sa = self
            .rest_at(auth.api_url.as_deref())
            .rename_service_account(&auth.scope, &auth.auth_token, &id, name)
            .await
            .map_err(BrokerError::Rest)?;
        Ok(SaDone {
            message: format!("renamed service account {} to {:?}", sa.id, sa.name),
            account: Some(sa),
        })
    }

    /// Deletes a service account at Snyk and its credential here.
    pub async fn sa_delete(
        self: &Arc<Self>,
        auth: SaAuth,
        target: SaTarget,
    ) -> Result<SaDone, BrokerError> {
        let scope = &auth.scope;
        let sa = self.sa_find(&auth, &target).await?;
        self.rest_at(auth.api_url.as_deref())
            .delete_service_account(scope, &auth.auth_token, &sa.id)
            .await
            .map_err(BrokerError::Rest)?;
        let mut message = format!("deleted service account {} at Snyk", sa.id);
        if let Ok(key) = sa_key(scope, &sa) {
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
        let sa = self.sa_find(&auth, &target).await?;
        let key = CredKey::parse(scope.id(), &sa.client_id)
            .map_err(|e| BrokerError::BadInput(e.to_string()))?;
        if self.store.get(&key).await?.is_none() {
            return Err(not_managed(
                &key,
                "is not managed here: store it first with `snykey put --kind client_secret`",
            ));
        }
        self.store.ready().await?;
        // The single flight from before Snyk issues the secret: its answer
        // goes to the journal at once, never waiting for the lock.
        let slot = self.slot_or_insert(&key, Kind::ClientSecret);
        let mut flight = slot.flight.lock().await;
        let mut io = AgentIo {
            broker: self,
            key: &key,
            call: SaCall {
                api_url: auth.api_url.as_deref(),
                scope,
                auth_token: &auth.auth_token,
                sa_id: &sa.id,
            },
        };
        let rotated =
            rotation::secrets::rotate_secret(&mut io, &mut flight.mem, &self.rules, replace).await;
        let rotated = match rotated {
            Ok(r) => r,
            Err(stop) => {
                if flight.mem.unlanded.is_some() {
                    // A secret the store does not hold yet (journaled, or
                    // in memory only): a lander takes it there.
                    self.degraded(&slot, "waiting for the secret store to take the secret");
                    self.spawn_lander(&slot, &mut flight);
                }
                return Err(rotation_error(&key, replace, stop));
            }
        };
        let landing = rotated.issued.landing;
        let landed = self.kept(&slot, &mut flight, landing).is_ok();
        let generation = flight.mem.generation;
        drop(flight);
        if landed {
            let token = self.token_from(rotated.issued.access_token, rotated.issued.expires_in);
            self.publish(&slot, generation, token).await;
        }
        tracing::info!(org_id = %key.org, client_id = %key.client, "switched to the new service account secret");
        if let Some(e) = rotated.old_left {
            return Err(BrokerError::Partial {
                message: format!(
                    "the new secret is stored and in use, but deleting the old one at Snyk failed ({e}): two secrets are active; run `snykey service-account rotate-secret --mode replace` or delete it in Snyk"
                ),
                cause: Box::new(BrokerError::Rest(e)),
            });
        }
        Ok(SaDone {
            message: format!(
                "rotated the secret of service account {} ({}); the new one is stored and the old one is gone",
                sa.id, key
            ),
            account: Some(sa),
        })
    }
}

fn not_managed(key: &CredKey, what: &str) -> BrokerError {
    BrokerError::BadInput(format!("credential {key} {what}"))
}

/// A stopped rotation as the caller's error: what failed, its code (a
/// server error is never a usage error), and what is left to do.
fn rotation_error(key: &CredKey, replace: bool, stop: RotationStopped) -> BrokerError {
    let partial = |message: String, cause: BrokerError| BrokerError::Partial {
        message,
        cause: Box::new(cause),
    };
    match stop {
        RotationStopped::NotManaged(what) => not_managed(key, &what),
        RotationStopped::Store(e) => BrokerError::Store(e),
        RotationStopped::Busy(why) => BrokerError::Busy(format!("{key}: {why}")),
        RotationStopped::NotIssued(e) if replace => partial(
            format!(
                "Snyk issued no new secret ({e}). If its answer was lost on the way, every secret was replaced and the new one is gone: run `snykey service-account rotate-secret --mode replace` again"
            ),
            BrokerError::Rest(e),
        ),
        RotationStopped::NotIssued(e) => BrokerError::Rest(e),
        RotationStopped::NotDurable => BrokerError::NotDurable(format!(
            "Snyk issued a new secret for {key}, but neither the secret store nor the recovery journal accepts writes: it is held in memory and written as soon as one of them does (keep the agent running; do not rotate again)"
        )),
        RotationStopped::Superseded => BrokerError::Busy(format!(
            "a newer change to {key} reached the secret store first; the new secret was dropped: run rotate-secret again (with --mode replace if Snyk now holds two secrets)"
        )),
        RotationStopped::NotProven { error, .. } if replace => partial(
            format!(
                "the new secret is stored (it is the only one Snyk accepts now), but the grant that proves it failed ({error}); the agent uses it for the next token"
            ),
            BrokerError::Snyk(error),
        ),
        RotationStopped::NotProven {
            error,
            rolled_back: Rollback::NotTried,
        } => partial(
            format!(
                "the new secret is stored and in use, but the grant that proves it failed ({error}), so the old one was not deleted: two secrets are active; run rotate-secret again with `--mode replace`, or delete the old one in Snyk"
            ),
            BrokerError::Snyk(error),
        ),
        // Snyk refused the new secret for good: where the old one went.
        RotationStopped::NotProven { error, rolled_back } => partial(
            format!(
                "Snyk refused the new secret ({error}); {}. A second secret may now exist at Snyk: remove it with `snykey service-account rotate-secret --mode replace`",
                rolled_back.sentence()
            ),
            BrokerError::Snyk(error),
        ),
    }
}

/// The auth types a created account may have, and the kind it is managed
/// as at once (`None`: its private key stays with its owner). A private key
/// JWT needs a JWKS URL Snyk can fetch (https, or a loopback test server).
fn check_auth_type(auth_type: &str, jwks_url: Option<&str>) -> Result<Option<Kind>, BrokerError> {
    match auth_type {
        "oauth_client_secret" => Ok(Some(Kind::ClientSecret)),
        "api_key" => Ok(Some(Kind::ApiKey)),
        "oauth_private_key_jwt"
            if jwks_url
                .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://127.")) =>
        {
            Ok(None)
        }
        "oauth_private_key_jwt" => Err(BrokerError::BadInput(
            "oauth_private_key_jwt needs an https jwks_url".into(),
        )),
        other => Err(BrokerError::BadInput(format!(
            "auth_type {other:?} is not oauth_client_secret, oauth_private_key_jwt or api_key"
        ))),
    }
}

/// The credential a service account is managed as: `{scope}/{client_id}`,
/// or `{scope}/{id}` for an `api_key` account (it has no client id).
fn sa_key(scope: &Scope, sa: &ServiceAccount) -> Result<CredKey, crate::ids::IdError> {
    let client = if sa.client_id.is_empty() {
        &sa.id
    } else {
        &sa.client_id
    };
    CredKey::parse(scope.id(), client)
}

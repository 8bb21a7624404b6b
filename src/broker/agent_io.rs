//! The protocol's world for one credential of this agent ([`super::rotation::Io`]):
//! the real store, recovery journal and Snyk, with the metrics and log lines
//! of their failures; with the calls that issue single-copy secrets
//! ([`super::rotation::secrets`]) for a login or a service-account rotation.

use super::Broker;
use super::rotation::Io;
use super::rotation::secrets::{Exchange, SecretRotation};
use crate::audit::GrantKind;
use crate::credential::CredKey;
use crate::secret::Secret;
use crate::snyk::rest::{RestError, Scope};
use crate::snyk::{GrantError, TokenGrant};
use crate::store::{Record, StoreError, Versioned};
use std::time::{Duration, SystemTime};

/// The protocol's view of this agent, for one credential; `X` holds what
/// the calls of a single-copy secret path need (`()` for a refresh).
pub(crate) struct AgentIo<'a, X = ()> {
    pub broker: &'a Broker,
    pub key: &'a CredKey,
    pub call: X,
}

impl<'a> AgentIo<'a> {
    pub fn new(broker: &'a Broker, key: &'a CredKey) -> AgentIo<'a> {
        AgentIo {
            broker,
            key,
            call: (),
        }
    }
}

/// A browser login's code exchange: what it sends besides the client secret.
pub(crate) struct LoginCall<'a> {
    /// The login's region (`None`: the agent's).
    pub api_url: Option<&'a str>,
    pub code: &'a Secret,
    pub verifier: &'a Secret,
    pub redirect_uri: &'a str,
}

/// A service-account secret rotation: whom it acts for, with which token.
pub(crate) struct SaCall<'a> {
    /// The service account's region (`None`: the agent's).
    pub api_url: Option<&'a str>,
    pub scope: &'a Scope,
    pub auth_token: &'a Secret,
    pub sa_id: &'a str,
}

impl<X> Io for AgentIo<'_, X> {
    fn mono(&self) -> Duration {
        self.broker.mono()
    }

    fn wall(&self) -> SystemTime {
        self.broker.clock.now()
    }

    fn nonce(&mut self) -> String {
        format!("{:032x}", rand::random::<u128>())
    }

    fn agent(&self) -> String {
        self.broker.agent_id.clone()
    }

    async fn read(&mut self) -> Result<Option<Versioned>, StoreError> {
        let r = self.broker.store.get(self.key).await;
        if r.is_err() {
            crate::metrics::backend_error("store");
        }
        r
    }

    async fn write(&mut self, record: &Record, cas: u64) -> Result<u64, StoreError> {
        let r = self.broker.store.put(self.key, record, Some(cas)).await;
        if matches!(r, Err(ref e) if !matches!(e, StoreError::Conflict { .. })) {
            crate::metrics::backend_error("store");
        }
        r
    }

    async fn note(&mut self, entry: &super::journal::Entry) -> Result<(), String> {
        let r = if entry.is_empty() {
            self.broker.journal.remove(self.key)
        } else {
            self.broker.journal.write(self.key, entry)
        };
        if let Err(e) = &r {
            crate::metrics::backend_error("journal");
            tracing::warn!(error = %e, "recovery journal write failed");
        }
        r
    }

    async fn send(
        &mut self,
        token: &Secret,
        record: &Record,
        deadline: Duration,
    ) -> Result<TokenGrant, GrantError> {
        // The window on the broker's protocol clock, checked by the HTTP
        // client when it writes the request body.
        let origin = self.broker.origin;
        let window = crate::snyk::SendWindow::new(move || {
            crate::clock::boottime().saturating_sub(origin) <= deadline
        });
        // The record's region: a token is valid only where it was issued.
        let api_url = record.api_url.as_deref();
        self.broker.note_region(self.key, api_url);
        let r = self
            .broker
            .oauth_at(api_url)
            .refresh(
                self.key.client.as_str(),
                record.client_secret.as_ref(),
                token,
                Some(window),
            )
            .await;
        // Every send is a grant (on demand, proactive, forced, at PUT).
        crate::audit::grant_result(crate::audit::GrantKind::Refresh, Some(self.key), &r);
        r
    }
}

impl Exchange for AgentIo<'_, LoginCall<'_>> {
    async fn exchange(&mut self, client_secret: Option<&Secret>) -> Result<TokenGrant, GrantError> {
        // (Audited by the callback, with the login's outcome.)
        self.broker
            .oauth_at(self.call.api_url)
            .authorization_code(
                self.key.client.as_str(),
                client_secret,
                self.call.code,
                self.call.verifier,
                self.call.redirect_uri,
            )
            .await
    }
}

impl SecretRotation for AgentIo<'_, SaCall<'_>> {
    async fn new_secret(&mut self, replace: bool) -> Result<Secret, RestError> {
        let new = self
            .broker
            .rest_at(self.call.api_url)
            .manage_secret(
                self.call.scope,
                self.call.auth_token,
                self.call.sa_id,
                if replace { "replace" } else { "create" },
                None,
            )
            .await
            .and_then(|s| {
                s.ok_or_else(|| RestError::Protocol("Snyk returned no new secret".into()))
            });
        match &new {
            Ok(_) => {
                crate::audit::grant(GrantKind::SecretRotation, Some(self.key), "ok", None);
                tracing::info!(replace, "created a new service account secret at Snyk");
            }
            Err(e) => crate::audit::grant(
                GrantKind::SecretRotation,
                Some(self.key),
                "error",
                Some(crate::audit::rest_error_code(e)),
            ),
        }
        new
    }

    async fn prove(&mut self, secret: &Secret) -> Result<TokenGrant, GrantError> {
        let r = self
            .broker
            .oauth_at(self.call.api_url)
            .client_credentials(self.key.client.as_str(), secret)
            .await;
        crate::audit::grant_result(GrantKind::ClientCredentials, Some(self.key), &r);
        r
    }

    async fn retire(&mut self, secret: &Secret) -> Result<(), RestError> {
        self.broker
            .rest_at(self.call.api_url)
            .manage_secret(
                self.call.scope,
                self.call.auth_token,
                self.call.sa_id,
                "delete",
                Some(secret),
            )
            .await
            .map(|_| ())
    }
}

//! The protocol's world for one credential of this agent ([`super::rotation::Io`]):
//! the real store, recovery journal and Snyk, with the metrics and log lines
//! of their failures.

use super::Broker;
use super::rotation::Io;
use crate::credential::CredKey;
use crate::secret::Secret;
use crate::snyk::{GrantError, TokenGrant};
use crate::store::{Record, StoreError, Versioned};
use std::time::{Duration, SystemTime};

/// The protocol's view of this agent, for one credential.
pub(crate) struct AgentIo<'a> {
    pub broker: &'a Broker,
    pub key: &'a CredKey,
}

impl Io for AgentIo<'_> {
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
        client_secret: Option<&Secret>,
        deadline: Duration,
    ) -> Result<TokenGrant, GrantError> {
        // The window on the broker's protocol clock, checked by the HTTP
        // client when it writes the request body.
        let origin = self.broker.origin;
        let window = crate::snyk::SendWindow::new(move || {
            crate::clock::boottime().saturating_sub(origin) <= deadline
        });
        let r = self
            .broker
            .snyk
            .refresh(self.key.client.as_str(), client_secret, token, Some(window))
            .await;
        // Every send is a grant (on demand, proactive, forced, at PUT).
        crate::audit::grant_result(crate::audit::GrantKind::Refresh, Some(self.key), &r);
        r
    }
}

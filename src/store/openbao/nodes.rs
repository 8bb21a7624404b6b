//! Several addresses (the nodes of one Raft cluster): the active node is
//! found by `/v1/sys/health`, and a request that failed on a node that is
//! down, sealed or a standby is retried once on the active one.

use super::OpenBaoStore;
use super::errors::{not_the_active_node, store_to_client};
use crate::locks::Recover;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::urls::SecretUrl;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// What OpenBao's 403 means for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum On403 {
    /// The agent's token may have expired: log in again, retry once (the
    /// store's records, which the agent's policy always covers).
    Relogin,
    /// The policy may not cover the path (published tokens, `[publish]`):
    /// the refusal is the answer. A login per refusal would hammer the auth
    /// method while a policy lacks the path; an expired token is renewed or
    /// replaced by the store's own calls.
    Fail,
}

impl OpenBaoStore {
    pub(super) fn addr_now(&self) -> &SecretUrl {
        &self.addrs[self.active.load(Ordering::Acquire) % self.addrs.len()]
    }

    pub(super) fn build_client(&self, token: &Secret) -> Result<VaultClient, StoreError> {
        self.build_client_for(self.addr_now(), token)
    }

    pub(super) fn build_client_for(
        &self,
        addr: &SecretUrl,
        token: &Secret,
    ) -> Result<VaultClient, StoreError> {
        let mut b = VaultClientSettingsBuilder::default();
        b.address(addr.expose())
            .token(token.expose())
            .timeout(Some(self.timeout))
            .verify(true);
        b.ca_certs(
            self.ca_cert
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        );
        let settings = b
            .build()
            .map_err(|e| StoreError::Unavailable(format!("invalid OpenBao settings: {e}")))?;
        VaultClient::new(settings)
            .map_err(|e| StoreError::Unavailable(format!("cannot build the OpenBao client: {e}")))
    }

    /// [`Self::authenticate`] at the active node (with several addresses),
    /// else at the current one.
    pub(super) async fn authenticate_anywhere(&self) -> Result<Arc<VaultClient>, StoreError> {
        // Start on the active node: a standby may answer a read on a fresh
        // KV v2 mount as if the record were absent (seen on OpenBao 2.7).
        if self.addrs.len() > 1 {
            self.find_active().await;
        }
        match self.authenticate().await {
            Err(e @ (StoreError::Unavailable(_) | StoreError::Sealed)) if self.addrs.len() > 1 => {
                match self.find_active().await {
                    Some(_) => self.authenticate().await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Asks each node's `/v1/sys/health` (the current one last) which is
    /// active, and makes it the current node.
    pub(super) async fn find_active(&self) -> Option<usize> {
        let n = self.addrs.len();
        let from = self.active.load(Ordering::Acquire) % n;
        for step in 1..=n {
            let i = (from + step) % n;
            if self.is_active(&self.addrs[i]).await {
                self.active.store(i, Ordering::Release);
                if i != from {
                    tracing::warn!(
                        from = %self.addrs[from],
                        to = %self.addrs[i],
                        "OpenBao: following the active node"
                    );
                }
                return Some(i);
            }
        }
        None
    }

    /// After `stale`'s node failed: switches to the active node with the
    /// same token. `None` when there is one address or no node is active
    /// (the caller keeps its error).
    pub(super) async fn follow_active(&self, stale: &Arc<VaultClient>) -> Option<Arc<VaultClient>> {
        if self.addrs.len() < 2 {
            return None;
        }
        let _g = self.login.lock().await;
        if let Some(c) = self.client.read().recover().clone() {
            if !Arc::ptr_eq(&c, stale) {
                return Some(c);
            }
        }
        let token = self.token.read().recover().clone()?;
        let i = self.find_active().await?;
        let client = Arc::new(self.build_client_for(&self.addrs[i], &token).ok()?);
        *self.client.write().recover() = Some(Arc::clone(&client));
        Some(client)
    }

    /// Whether `addr` answers `/v1/sys/health` with 200 (active, unsealed).
    /// Asked with plain HTTP: vaultrs 0.8's health type requires a field
    /// (`performance_standby`) OpenBao 2 no longer sends.
    pub(super) async fn is_active(&self, addr: &SecretUrl) -> bool {
        let mut b = reqwest::Client::builder().timeout(self.timeout);
        if let Some(path) = &self.ca_cert {
            match std::fs::read(path).map(|pem| reqwest::Certificate::from_pem(&pem)) {
                Ok(Ok(cert)) => b = b.add_root_certificate(cert),
                _ => {
                    tracing::warn!(ca_cert = %path.display(), "cannot read the OpenBao CA file");
                    return false;
                }
            }
        }
        let Ok(http) = b.build() else {
            return false;
        };
        matches!(
            http.get(format!("{}/v1/sys/health", addr.expose()))
                .send()
                .await,
            Ok(r) if r.status().as_u16() == 200
        )
    }

    /// Runs `op` with the current client; on 403 re-authenticates and
    /// retries once; when the node is down, sealed or a standby and other
    /// nodes are configured, switches to the active node and retries once.
    pub(super) async fn with_client<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.with_client_on(On403::Relogin, op).await
    }

    /// [`Self::with_client`], with what a 403 means said by the caller.
    pub(super) async fn with_client_on<T, F, Fut>(
        &self,
        on403: On403,
        op: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.current().await.map_err(store_to_client)?;
        match op(Arc::clone(&client)).await {
            Err(ClientError::APIError { code: 403, .. }) if on403 == On403::Relogin => {
                let fresh = self
                    .reauthenticate(&client)
                    .await
                    .map_err(store_to_client)?;
                op(fresh).await
            }
            Err(e) if self.addrs.len() > 1 && not_the_active_node(&e) => {
                match self.follow_active(&client).await {
                    Some(fresh) => op(fresh).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }
}

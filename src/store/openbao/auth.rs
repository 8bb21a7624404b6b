//! The agent's own OpenBao token: the login (token, AppRole, Kubernetes),
//! re-authentication after a refusal, and renewal at two thirds of its TTL.

use super::errors::{map_err, map_login_err};
use super::{Auth, OpenBaoStore};
use crate::locks::Recover;
use crate::secret::Secret;
use crate::store::StoreError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vaultrs::client::VaultClient;

pub(super) fn read_secret_file(what: &str, path: &PathBuf) -> Result<Secret, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Denied(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })?;
    let s = Secret::new(text);
    if s.is_empty() {
        return Err(StoreError::Denied(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(s)
}

impl OpenBaoStore {
    /// Logs in (or reads the token) and installs a fresh client.
    pub(super) async fn authenticate(&self) -> Result<Arc<VaultClient>, StoreError> {
        let token = match &self.auth {
            Auth::Token { token, file } => match file {
                // A file wins: an external agent may rotate it.
                Some(f) => read_secret_file("OpenBao token", f)?,
                None => token.clone().ok_or_else(|| {
                    StoreError::Denied(
                        "no OpenBao token configured (store.token, store.token_file or BAO_TOKEN)"
                            .into(),
                    )
                })?,
            },
            Auth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                let role_id = read_secret_file("AppRole role_id", role_id_file)?;
                let secret_id = read_secret_file("AppRole secret_id", secret_id_file)?;
                let anon = self.build_client(&Secret::new(""))?;
                let info = vaultrs::auth::approle::login(
                    &anon,
                    mount,
                    role_id.expose(),
                    secret_id.expose(),
                )
                .await
                .map_err(|e| {
                    map_login_err(
                        "AppRole",
                        "store.role_id_file and store.secret_id_file (an expired secret id needs a new one)",
                        e,
                    )
                })?;
                login_token("AppRole", info)?
            }
            Auth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => {
                let jwt = read_secret_file("Kubernetes service account token", jwt_file)?;
                let anon = self.build_client(&Secret::new(""))?;
                let info = vaultrs::auth::kubernetes::login(&anon, mount, role, jwt.expose())
                    .await
                    .map_err(|e| {
                        map_login_err(
                            "Kubernetes",
                            "store.kubernetes_role and the service account token in store.kubernetes_jwt_file",
                            e,
                        )
                    })?;
                login_token("Kubernetes", info)?
            }
        };
        let client = Arc::new(self.build_client(&token)?);
        *self.token.write().recover() = Some(token);
        *self.client.write().recover() = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(super) async fn current(&self) -> Result<Arc<VaultClient>, StoreError> {
        if let Some(c) = self.client.read().recover().clone() {
            return Ok(c);
        }
        let _g = self.login.lock().await;
        if let Some(c) = self.client.read().recover().clone() {
            return Ok(c);
        }
        self.authenticate_anywhere().await
    }

    /// Re-authenticates after a 403, unless another task already did.
    pub(super) async fn reauthenticate(
        &self,
        stale: &Arc<VaultClient>,
    ) -> Result<Arc<VaultClient>, StoreError> {
        let _g = self.login.lock().await;
        if let Some(c) = self.client.read().recover().clone() {
            if !Arc::ptr_eq(&c, stale) {
                return Ok(c);
            }
        }
        tracing::warn!("OpenBao refused the agent's token; re-authenticating");
        self.authenticate_anywhere().await
    }

    /// Keeps the agent's token alive: renew at 2/3 of its TTL; re-authenticate
    /// when renewal fails. Runs until `shutdown`.
    pub fn spawn_renewer(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let wait = match store.renew_once().await {
                    Ok(Some(ttl)) => renew_wait(ttl),
                    Ok(None) => Duration::from_secs(300),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the OpenBao token; retrying in 5s");
                        Duration::from_secs(5)
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
    }

    /// Renews the token if it has a TTL. Returns the TTL now in force (None: no expiry).
    pub(super) async fn renew_once(&self) -> Result<Option<Duration>, StoreError> {
        let info = self
            .with_client(|c| async move { vaultrs::token::lookup_self(&*c).await })
            .await
            .map_err(map_err)?;
        let client = self.current().await?;
        // A token created without a TTL (a root token) never expires; an
        // expiring token with under a second left also shows ttl 0.
        if info.creation_ttl == 0 && info.expire_time.is_none() {
            return Ok(None);
        }
        if info.renewable != Some(true) {
            // Cannot renew: log in again shortly before it expires.
            if info.ttl <= 10 && !matches!(self.auth, Auth::Token { file: None, .. }) {
                self.reauthenticate(&client).await?;
                return Ok(Some(Duration::from_secs(1)));
            }
            return Ok(Some(Duration::from_secs(info.ttl)));
        }
        match vaultrs::token::renew_self(&*client, None).await {
            Ok(auth) => {
                tracing::debug!(ttl_secs = auth.lease_duration, "renewed the OpenBao token");
                Ok(Some(Duration::from_secs(auth.lease_duration)))
            }
            Err(e) => {
                tracing::warn!(error = %map_err(e), "OpenBao token renewal failed; re-authenticating");
                self.reauthenticate(&client).await?;
                Ok(Some(Duration::from_secs(1)))
            }
        }
    }
}

/// The longest the renewer sleeps, whatever TTL OpenBao names.
pub(super) const MAX_RENEW_WAIT: Duration = Duration::from_secs(86_400);

/// When to renew a token with `ttl` left: at two thirds, at least a second
/// from now and at most a day (OpenBao's TTL is a number from its answer:
/// `u64::MAX` seconds must not overflow the arithmetic).
pub(super) fn renew_wait(ttl: Duration) -> Duration {
    (ttl / 3 * 2).clamp(Duration::from_secs(1), MAX_RENEW_WAIT)
}

/// The client token of a login answer (AppRole, Kubernetes): an empty one
/// is a refusal, not a token.
pub(super) fn login_token(
    method: &str,
    info: vaultrs::api::AuthInfo,
) -> Result<Secret, StoreError> {
    let lease = info.lease_duration;
    // Trimmed as every secret is: blank is empty.
    let token = Secret::new(info.client_token);
    if token.is_empty() {
        return Err(StoreError::Denied(format!(
            "OpenBao's {method} login answer carried no client_token"
        )));
    }
    tracing::info!(
        method = %method.to_ascii_lowercase(),
        ttl_secs = lease,
        "logged in to OpenBao"
    );
    Ok(token)
}

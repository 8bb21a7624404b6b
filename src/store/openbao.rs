//! The OpenBao / Vault KV store (vaultrs), KV v2 (default) or v1.
//!
//! Records live at `{mount}/{prefix}/{org_id}/{client_id}` (KV v2:
//! `{mount}/data/{prefix}/...`) with the seed service's field names, so an
//! existing deployment switches over without migrating data. On KV v2 every
//! write is a check-and-set against the version the caller read; `delete`
//! removes all versions (metadata delete). KV v1 has no versions: there the
//! cross-agent Redis lock is the only guard against concurrent writers.
//!
//! The agent's own OpenBao token is renewed at two thirds of its TTL; when
//! renewal fails or a request is refused (403) the agent re-authenticates
//! (AppRole, Kubernetes, or by re-reading `token_file`) and retries once.

use super::{Record, SecretStore, StoreError, Versioned};
use crate::config::{BaoAuth, StoreConfig};
use crate::ids::{ClientId, CredKey, OrgId};
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

enum Auth {
    Token {
        token: Option<Secret>,
        file: Option<PathBuf>,
    },
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

pub struct OpenBaoStore {
    addr: String,
    ca_cert: Option<PathBuf>,
    mount: String,
    kv_version: u8,
    prefix: String,
    timeout: Duration,
    auth: Auth,
    client: RwLock<Option<Arc<VaultClient>>>,
    /// Serialises logins so a burst of 403s causes one re-authentication.
    login: Mutex<()>,
}

fn read_secret_file(what: &str, path: &PathBuf) -> Result<Secret, StoreError> {
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

fn map_err(e: ClientError) -> StoreError {
    match e {
        ClientError::APIError { code: 503, errors }
            if errors
                .iter()
                .any(|m| m.to_ascii_lowercase().contains("sealed")) =>
        {
            StoreError::Sealed
        }
        ClientError::APIError { code: 403, errors } => StoreError::Denied(format!(
            "OpenBao answered 403 ({}): the agent's token is invalid, expired or lacks a policy on this path",
            errors.join("; ")
        )),
        ClientError::APIError { code: 400, errors }
            if errors.iter().any(|m| m.contains("check-and-set")) =>
        {
            StoreError::Conflict { expected: 0 }
        }
        ClientError::APIError { code, errors } => {
            StoreError::Unavailable(format!("OpenBao answered {code}: {}", errors.join("; ")))
        }
        ClientError::RestClientError { source } => {
            StoreError::Unavailable(format!("cannot reach OpenBao: {source}"))
        }
        other => StoreError::Unavailable(format!("OpenBao: {other}")),
    }
}

fn is_not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, .. })
        || matches!(
            e,
            ClientError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code: 404, .. }
            }
        )
}

impl OpenBaoStore {
    pub fn new(cfg: &StoreConfig, timeout: Duration) -> OpenBaoStore {
        let auth = match cfg.auth {
            BaoAuth::Token => Auth::Token {
                token: cfg.token.clone(),
                file: cfg.token_file.clone(),
            },
            BaoAuth::AppRole => Auth::AppRole {
                mount: if cfg.auth_mount.is_empty() {
                    "approle".into()
                } else {
                    cfg.auth_mount.clone()
                },
                role_id_file: cfg.role_id_file.clone().unwrap_or_default(),
                secret_id_file: cfg.secret_id_file.clone().unwrap_or_default(),
            },
            BaoAuth::Kubernetes => Auth::Kubernetes {
                mount: if cfg.auth_mount.is_empty() {
                    "kubernetes".into()
                } else {
                    cfg.auth_mount.clone()
                },
                role: cfg.kubernetes_role.clone(),
                jwt_file: cfg.kubernetes_jwt_file.clone(),
            },
        };
        OpenBaoStore {
            addr: cfg.addr.clone(),
            ca_cert: cfg.ca_cert.clone(),
            mount: cfg.mount.clone(),
            kv_version: cfg.kv_version,
            prefix: cfg.prefix.clone(),
            timeout,
            auth,
            client: RwLock::new(None),
            login: Mutex::new(()),
        }
    }

    fn build_client(&self, token: &Secret) -> Result<VaultClient, StoreError> {
        let mut b = VaultClientSettingsBuilder::default();
        b.address(&self.addr)
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

    /// Logs in (or reads the token) and installs a fresh client.
    async fn authenticate(&self) -> Result<Arc<VaultClient>, StoreError> {
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
                .map_err(map_err)?;
                tracing::info!(
                    method = "approle",
                    ttl_secs = info.lease_duration,
                    "logged in to OpenBao"
                );
                Secret::new(info.client_token)
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
                    .map_err(map_err)?;
                tracing::info!(
                    method = "kubernetes",
                    ttl_secs = info.lease_duration,
                    "logged in to OpenBao"
                );
                Secret::new(info.client_token)
            }
        };
        let client = Arc::new(self.build_client(&token)?);
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&client));
        Ok(client)
    }

    async fn current(&self) -> Result<Arc<VaultClient>, StoreError> {
        if let Some(c) = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        let _g = self.login.lock().await;
        if let Some(c) = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(c);
        }
        self.authenticate().await
    }

    /// Re-authenticates after a 403, unless another task already did.
    async fn reauthenticate(
        &self,
        stale: &Arc<VaultClient>,
    ) -> Result<Arc<VaultClient>, StoreError> {
        let _g = self.login.lock().await;
        if let Some(c) = self
            .client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            if !Arc::ptr_eq(&c, stale) {
                return Ok(c);
            }
        }
        tracing::warn!("OpenBao refused the agent's token; re-authenticating");
        self.authenticate().await
    }

    /// Runs `op` with the current client; on 403 re-authenticates and retries once.
    async fn with_client<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let client = self.current().await.map_err(store_to_client)?;
        match op(Arc::clone(&client)).await {
            Err(ClientError::APIError { code: 403, .. }) => {
                let fresh = self
                    .reauthenticate(&client)
                    .await
                    .map_err(store_to_client)?;
                op(fresh).await
            }
            other => other,
        }
    }

    fn path(&self, key: &CredKey) -> String {
        format!("{}/{}/{}", self.prefix, key.org, key.client)
    }

    /// Keeps the agent's token alive: renew at 2/3 of its TTL; re-authenticate
    /// when renewal fails. Runs until `shutdown`.
    pub fn spawn_renewer(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let wait = match store.renew_once().await {
                    Ok(Some(ttl)) => (ttl * 2 / 3).max(Duration::from_secs(1)),
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
    async fn renew_once(&self) -> Result<Option<Duration>, StoreError> {
        let client = self.current().await?;
        let info = match vaultrs::token::lookup_self(&*client).await {
            Ok(i) => i,
            Err(ClientError::APIError { code: 403, .. }) => {
                let fresh = self.reauthenticate(&client).await?;
                vaultrs::token::lookup_self(&*fresh)
                    .await
                    .map_err(map_err)?
            }
            Err(e) => return Err(map_err(e)),
        };
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

fn store_to_client(e: StoreError) -> ClientError {
    // Carried through the retry wrapper and mapped back by `map_err`.
    let code = match &e {
        StoreError::Sealed => 503,
        StoreError::Denied(_) => 403,
        _ => 502,
    };
    let message = match e {
        StoreError::Sealed => "Vault is sealed".to_string(),
        other => other.to_string(),
    };
    ClientError::APIError {
        code,
        errors: vec![message],
    }
}

/// The map stored at each path: the seed service's string fields, plus the
/// rotation fields of SPEC §8 (`generation` a number, `claim` an object).
fn to_map(record: &Record) -> Result<HashMap<String, serde_json::Value>, StoreError> {
    match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(m)) => Ok(m.into_iter().collect()),
        _ => Err(StoreError::Unavailable(
            "cannot encode a store record".into(),
        )),
    }
}

/// A write's request map: a plaintext copy of the record's secrets, wiped
/// when it drops, whichever way the write ended. (vaultrs serializes it into
/// its own request body, which is beyond our reach.)
pub(crate) struct RequestMap(pub(crate) HashMap<String, serde_json::Value>);

impl Drop for RequestMap {
    fn drop(&mut self) {
        self.0.values_mut().for_each(crate::secret::wipe_json);
    }
}

fn from_value(key: &CredKey, v: serde_json::Value) -> Result<Record, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: crate::secret::json_error(&e),
    })
}

#[async_trait]
impl SecretStore for OpenBaoStore {
    async fn get(&self, key: &CredKey) -> Result<Option<Versioned>, StoreError> {
        let path = self.path(key);
        if self.kv_version == 2 {
            let r = self
                .with_client(|c| {
                    let path = path.clone();
                    async move {
                        let ep = vaultrs::api::kv2::requests::ReadSecretRequest::builder()
                            .mount(&self.mount)
                            .path(&path)
                            .build()
                            .map_err(|e| ClientError::APIError {
                                code: 400,
                                errors: vec![e.to_string()],
                            })?;
                        vaultrs::api::exec_with_result(&*c, ep).await
                    }
                })
                .await;
            match r {
                Ok(resp) => Ok(Some(Versioned {
                    record: from_value(key, resp.data)?,
                    version: resp.metadata.version,
                    hidden: false,
                })),
                Err(e) if is_not_found(&e) => self.deleted_version(&path).await,
                Err(e) => Err(map_err(e)),
            }
        } else {
            let r = self
                .with_client(|c| {
                    let path = path.clone();
                    async move { vaultrs::kv1::get_raw(&*c, &self.mount, &path).await }
                })
                .await;
            match r {
                Ok(resp) => Ok(Some(Versioned {
                    record: from_value(key, resp.data)?,
                    version: 0,
                    hidden: false,
                })),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(map_err(e)),
            }
        }
    }

    async fn put(
        &self,
        key: &CredKey,
        record: &Record,
        cas: Option<u64>,
    ) -> Result<u64, StoreError> {
        let path = self.path(key);
        let owned = RequestMap(to_map(record)?);
        let data: HashMap<&str, &serde_json::Value> =
            owned.0.iter().map(|(k, v)| (k.as_str(), v)).collect();
        if self.kv_version == 2 {
            // vaultrs names the check-and-set version as a u32: a larger one
            // must not wrap into another version.
            let cas32 = match cas.map(u32::try_from) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(_)) => {
                    return Err(StoreError::Unavailable(format!(
                        "the record at {path} has a version beyond what a check-and-set write can name; nothing was written"
                    )));
                }
            };
            let r = self
                .with_client(|c| {
                    let path = path.clone();
                    let data = &data;
                    async move {
                        match cas32 {
                            Some(cas) => {
                                let opts =
                                    vaultrs::api::kv2::requests::SetSecretRequestOptions { cas };
                                vaultrs::kv2::set_with_options(&*c, &self.mount, &path, data, opts)
                                    .await
                            }
                            None => vaultrs::kv2::set(&*c, &self.mount, &path, data).await,
                        }
                    }
                })
                .await;
            match r {
                Ok(meta) => {
                    if meta.version == 1 {
                        self.require_cas(&path).await;
                    }
                    Ok(meta.version)
                }
                Err(e) => Err(match map_err(e) {
                    StoreError::Conflict { .. } => StoreError::Conflict {
                        expected: cas.unwrap_or(0),
                    },
                    other => other,
                }),
            }
        } else {
            self.with_client(|c| {
                let path = path.clone();
                let data = &data;
                async move { vaultrs::kv1::set(&*c, &self.mount, &path, data).await }
            })
            .await
            .map_err(map_err)?;
            Ok(0)
        }
    }

    async fn delete(&self, key: &CredKey) -> Result<(), StoreError> {
        let path = self.path(key);
        if self.kv_version == 2 {
            // The caller (the broker) has written a tombstone by check-and-set
            // (SPEC §2 rule 10). Every older version is destroyed (its secrets
            // are gone for good) while the metadata and its version counter
            // stay: a check-and-set read before the delete can never match a
            // record created after it.
            let meta = self
                .with_client(|c| {
                    let path = path.clone();
                    async move { vaultrs::kv2::read_metadata(&*c, &self.mount, &path).await }
                })
                .await;
            let meta = match meta {
                Ok(m) => m,
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(map_err(e)),
            };
            let older: Vec<u64> = meta
                .versions
                .keys()
                .filter_map(|v| v.parse::<u64>().ok())
                .filter(|v| *v != meta.current_version)
                .collect();
            if older.is_empty() {
                return Ok(());
            }
            return self
                .with_client(|c| {
                    let path = path.clone();
                    let older = older.clone();
                    async move { vaultrs::kv2::destroy_versions(&*c, &self.mount, &path, older).await }
                })
                .await
                .map_err(map_err);
        }
        let r = self
            .with_client(|c| {
                let path = path.clone();
                async move { vaultrs::kv1::delete(&*c, &self.mount, &path).await }
            })
            .await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn list(&self) -> Result<Vec<CredKey>, StoreError> {
        let list = |dir: String| async move {
            let r = if self.kv_version == 2 {
                self.with_client(|c| {
                    let dir = dir.clone();
                    async move { vaultrs::kv2::list(&*c, &self.mount, &dir).await }
                })
                .await
            } else {
                self.with_client(|c| {
                    let dir = dir.clone();
                    async move {
                        vaultrs::kv1::list(&*c, &self.mount, &dir)
                            .await
                            .map(|r| r.data.keys)
                    }
                })
                .await
            };
            match r {
                Ok(keys) => Ok(keys),
                Err(e) if is_not_found(&e) => Ok(Vec::new()),
                Err(e) => Err(map_err(e)),
            }
        };
        let mut out = Vec::new();
        for org in list(format!("{}/", self.prefix)).await? {
            let Some(org) = org.strip_suffix('/') else {
                continue;
            };
            let Ok(org_id) = OrgId::parse(org) else {
                tracing::warn!(org_id = %org.escape_debug(), "skipping an invalid org id in the store");
                continue;
            };
            for client in list(format!("{}/{org}/", self.prefix)).await? {
                if client.ends_with('/') {
                    continue;
                }
                match ClientId::parse(&client) {
                    Ok(client_id) => out.push(CredKey {
                        org: org_id.clone(),
                        client: client_id,
                    }),
                    Err(_) => {
                        tracing::warn!(client_id = %client.escape_debug(), "skipping an invalid client id in the store")
                    }
                }
            }
        }
        Ok(out)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.with_client(|c| async move { vaultrs::token::lookup_self(&*c).await.map(|_| ()) })
            .await
            .map_err(map_err)
    }

    fn describe(&self) -> String {
        format!(
            "openbao {} (KV v{} at {}/{})",
            self.addr, self.kv_version, self.mount, self.prefix
        )
    }

    fn checks_versions(&self) -> bool {
        self.kv_version == 2
    }
}

impl OpenBaoStore {
    /// A KV v2 path whose current version is deleted (by `bao kv delete`) or
    /// destroyed still has a version counter: it reads as a tombstone at
    /// that version, so that a check-and-set can still be made on it.
    async fn deleted_version(&self, path: &str) -> Result<Option<Versioned>, StoreError> {
        let r = self
            .with_client(
                |c| async move { vaultrs::kv2::read_metadata(&*c, &self.mount, path).await },
            )
            .await;
        match r {
            Ok(m) if m.current_version > 0 => Ok(Some(Versioned {
                record: Record {
                    deleted: true,
                    ..Default::default()
                },
                version: m.current_version,
                hidden: true,
            })),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// SPEC §2 rule 10: `cas_required = true` on every record snykey manages,
    /// so a blind write by another tool (the seed service) fails instead of
    /// erasing a claim. Best effort: a policy without metadata rights only
    /// loses that protection, and says so.
    async fn require_cas(&self, path: &str) {
        let r = self
            .with_client(|c| async move {
                let mut opts = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
                opts.cas_required(true);
                vaultrs::kv2::set_metadata(&*c, &self.mount, path, Some(&mut opts)).await
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %map_err(e), "could not set cas_required on a new record: blind writes by other tools are not refused");
        }
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    const MARK: &str = "rt-SECRET-0b5e9d";

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_stored_map_is_read_or_refused_without_its_values(
            v in crate::prop::json_value(prop_oneof![Just(MARK.to_string()), "[a-z0-9]{0,8}".prop_map(String::from)]),
        ) {
            let key = CredKey::parse("o", "c").unwrap();
            match from_value(&key, v) {
                Ok(record) => {
                    // What was read writes back as a map.
                    let m = to_map(&record).unwrap();
                    drop(RequestMap(m));
                }
                Err(e) => prop_assert!(!e.to_string().contains(MARK), "{}", e),
            }
        }
    }
}

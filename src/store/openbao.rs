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
//!
//! With several addresses (the nodes of one Raft cluster) the store talks to
//! the active node. When a node cannot be reached, is sealed, or answers as a
//! standby (a standby may answer KV v2 with 400 "Waiting for the primary to
//! upgrade..."), the store asks each node's `/v1/sys/health` which one is
//! active, switches to it with the same token, and retries once.

use super::{Record, SecretStore, StoreError, Versioned};
use crate::credential::CredKey;
use crate::ids::{ClientId, OrgId};
use crate::locks::Recover;
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, watch};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// How the agent logs in to OpenBao.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A token given directly, or read from a file (which wins: an external
    /// agent may rotate it).
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

/// What an [`OpenBaoStore`] needs: the cluster, how to log in, where the
/// records live. The agent builds it from `[store]` (`crate::wiring`).
#[derive(Debug, Clone)]
pub struct OpenBaoSettings {
    /// The nodes of one cluster (at least one); the store follows the active one.
    pub addrs: Vec<String>,
    pub auth: Auth,
    pub ca_cert: Option<PathBuf>,
    pub mount: String,
    /// 1 or 2.
    pub kv_version: u8,
    pub prefix: String,
}

pub struct OpenBaoStore {
    /// The nodes of the cluster; `active` indexes the one in use.
    addrs: Vec<String>,
    active: AtomicUsize,
    /// The agent's current OpenBao token, to reach another node with it.
    token: RwLock<Option<Secret>>,
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

/// OpenBao's `errors` as one short line: at most [`MAX_ERRORS`] of them, each
/// cut to [`MAX_ERROR_CHARS`] printable characters. A server (or anything
/// posing as one) decides what it sends; our messages and logs stay bounded.
fn error_text(errors: &[String]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(MAX_ERRORS)
        .map(|m| {
            m.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_ERROR_CHARS)
                .collect()
        })
        .collect();
    if errors.len() > MAX_ERRORS {
        parts.push(format!("{} more", errors.len() - MAX_ERRORS));
    }
    parts.join("; ")
}

const MAX_ERRORS: usize = 3;
const MAX_ERROR_CHARS: usize = 200;

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
            error_text(&errors)
        )),
        ClientError::APIError { code: 400, errors }
            if errors.iter().any(|m| m.contains("check-and-set")) =>
        {
            StoreError::Conflict { expected: 0 }
        }
        ClientError::APIError { code, errors } => {
            StoreError::Unavailable(format!("OpenBao answered {code}: {}", error_text(&errors)))
        }
        ClientError::RestClientError { source } => {
            StoreError::Unavailable(format!("cannot reach OpenBao: {source}"))
        }
        other => StoreError::Unavailable(format!("OpenBao: {other}")),
    }
}

/// A refused login (AppRole, Kubernetes) is "denied", whatever status
/// OpenBao chose for it (400 for a bad or expired secret id, 403 for a JWT
/// the cluster does not vouch for): retrying will not help, new credentials
/// will. Anything else (unreachable, sealed) keeps its usual meaning.
fn map_login_err(method: &str, files: &str, e: ClientError) -> StoreError {
    match e {
        ClientError::APIError { code, errors } if (400..500).contains(&code) => {
            StoreError::Denied(format!(
                "OpenBao refused the {method} login ({code}: {}): check {files}",
                error_text(&errors)
            ))
        }
        other => map_err(other),
    }
}

/// An answer that says "ask another node": unreachable (no HTTP answer),
/// sealed or unavailable (503), a standby (429, or 400 while a standby waits
/// for the primary to upgrade KV), or an active node that lost its cluster
/// (500 "local node not active...").
fn not_the_active_node(e: &ClientError) -> bool {
    match e {
        ClientError::RestClientError { source } => !matches!(
            source,
            rustify::errors::ClientError::ServerResponseError { .. }
        ),
        ClientError::APIError { code, errors } => match code {
            429 | 500 | 502 | 503 | 504 => true,
            400 => errors.iter().any(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("upgrade") || m.contains("standby") || m.contains("not active")
            }),
            _ => false,
        },
        _ => false,
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
    pub fn new(settings: impl Into<OpenBaoSettings>, timeout: Duration) -> OpenBaoStore {
        let s: OpenBaoSettings = settings.into();
        let addrs = if s.addrs.is_empty() {
            vec![String::new()]
        } else {
            s.addrs
        };
        OpenBaoStore {
            addrs,
            active: AtomicUsize::new(0),
            token: RwLock::new(None),
            ca_cert: s.ca_cert,
            mount: s.mount,
            kv_version: s.kv_version,
            prefix: s.prefix,
            timeout,
            auth: s.auth,
            client: RwLock::new(None),
            login: Mutex::new(()),
        }
    }

    fn addr_now(&self) -> &str {
        &self.addrs[self.active.load(Ordering::Acquire) % self.addrs.len()]
    }

    fn build_client(&self, token: &Secret) -> Result<VaultClient, StoreError> {
        self.build_client_for(self.addr_now(), token)
    }

    fn build_client_for(&self, addr: &str, token: &Secret) -> Result<VaultClient, StoreError> {
        let mut b = VaultClientSettingsBuilder::default();
        b.address(addr)
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

    /// [`Self::authenticate`] at the active node (with several addresses),
    /// else at the current one.
    async fn authenticate_anywhere(&self) -> Result<Arc<VaultClient>, StoreError> {
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
    async fn find_active(&self) -> Option<usize> {
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
    async fn follow_active(&self, stale: &Arc<VaultClient>) -> Option<Arc<VaultClient>> {
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

    async fn current(&self) -> Result<Arc<VaultClient>, StoreError> {
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
    async fn reauthenticate(
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

    /// Whether `addr` answers `/v1/sys/health` with 200 (active, unsealed).
    /// Asked with plain HTTP: vaultrs 0.8's health type requires a field
    /// (`performance_standby`) OpenBao 2 no longer sends.
    async fn is_active(&self, addr: &str) -> bool {
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
            http.get(format!("{addr}/v1/sys/health")).send().await,
            Ok(r) if r.status().as_u16() == 200
        )
    }

    /// Runs `op` with the current client; on 403 re-authenticates and
    /// retries once; when the node is down, sealed or a standby and other
    /// nodes are configured, switches to the active node and retries once.
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
            Err(e) if self.addrs.len() > 1 && not_the_active_node(&e) => {
                match self.follow_active(&client).await {
                    Some(fresh) => op(fresh).await,
                    None => Err(e),
                }
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
    async fn renew_once(&self) -> Result<Option<Duration>, StoreError> {
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
const MAX_RENEW_WAIT: Duration = Duration::from_secs(86_400);

/// When to renew a token with `ttl` left: at two thirds, at least a second
/// from now and at most a day (OpenBao's TTL is a number from its answer:
/// `u64::MAX` seconds must not overflow the arithmetic).
fn renew_wait(ttl: Duration) -> Duration {
    (ttl / 3 * 2).clamp(Duration::from_secs(1), MAX_RENEW_WAIT)
}

/// The client token of a login answer (AppRole, Kubernetes): an empty one
/// is a refusal, not a token.
fn login_token(method: &str, info: vaultrs::api::AuthInfo) -> Result<Secret, StoreError> {
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

/// A KV v2 read answer as a record at its version.
fn kv2_record(
    key: &CredKey,
    resp: vaultrs::api::kv2::responses::ReadSecretResponse,
) -> Result<Versioned, StoreError> {
    Ok(Versioned {
        record: from_value(key, resp.data)?,
        version: resp.metadata.version,
        hidden: false,
    })
}

/// KV v2 metadata of a path whose current version cannot be read: a
/// tombstone at that version (`None` when there never was one).
fn hidden_version(
    m: &vaultrs::api::kv2::responses::ReadSecretMetadataResponse,
) -> Option<Versioned> {
    (m.current_version > 0).then(|| Versioned {
        record: Record {
            deleted: true,
            ..Default::default()
        },
        version: m.current_version,
        hidden: true,
    })
}

/// Every version of a KV v2 path but the current one (what a delete
/// destroys); version names that are not plain decimal numbers ("007",
/// "+7") are left alone: they name no version OpenBao would take back.
fn older_versions(m: &vaultrs::api::kv2::responses::ReadSecretMetadataResponse) -> Vec<u64> {
    m.versions
        .keys()
        .filter_map(|name| name.parse::<u64>().ok().filter(|v| v.to_string() == *name))
        .filter(|v| *v != m.current_version)
        .collect()
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
                Ok(resp) => kv2_record(key, resp).map(Some),
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
            let older = older_versions(&meta);
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
            if org == crate::ids::SCRATCH_ORG {
                continue; // doctor's write check, never a credential
            }
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
            self.addrs.join(","),
            self.kv_version,
            self.mount,
            self.prefix
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
            Ok(m) => Ok(hidden_version(&m)),
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

/// OpenBao's answers as they reach our parsing (issue 15): the envelope
/// vaultrs deserializes (`EndpointResult<T>`), then what we make of it.
#[cfg(test)]
mod envelope_prop_tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse};
    use vaultrs::api::{AuthInfo, EndpointResult};

    const MARK: &str = "rt-SECRET-77c1d2";

    fn strings() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            Just(MARK.to_string()),
            "\\PC{0,12}".prop_map(String::from),
            "[0-9]{1,25}|-1|18446744073709551616".prop_map(String::from),
        ]
    }

    /// A field as OpenBao sends it, or anything else in its place.
    fn field(good: Value) -> impl Strategy<Value = Value> {
        prop_oneof![3 => Just(good), 1 => crate::prop::json_value(strings())]
    }

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            Just(json!(1e30)),
            Just(json!("7")),
        ]
    }

    /// The envelope every answer comes in, with `data` / `auth` as given.
    fn envelope(data: Value, auth: Value) -> Vec<u8> {
        json!({"request_id": "9b1f", "lease_id": "", "renewable": false, "lease_duration": 0,
               "data": data, "wrap_info": null, "warnings": null, "auth": auth})
        .to_string()
        .into_bytes()
    }

    fn kv2_read() -> impl Strategy<Value = Vec<u8>> {
        (
            crate::prop::json_value(strings()),
            number(),
            field(json!("2026-11-29T09:00:00Z")),
            field(json!("")),
            field(json!(false)),
        )
            .prop_map(|(data, version, created, deletion, destroyed)| {
                envelope(
                    json!({"data": data, "metadata": {"version": version, "created_time": created,
                        "deletion_time": deletion, "destroyed": destroyed, "custom_metadata": null}}),
                    Value::Null,
                )
            })
    }

    fn kv2_metadata() -> impl Strategy<Value = Vec<u8>> {
        (
            number(),
            proptest::collection::btree_map(
                "[0-9]{1,3}|[0-9]{20,22}|-1|\\+[0-9]|0[0-9]|x|",
                field(json!({"created_time": "t", "deletion_time": "", "destroyed": false})),
                0..8,
            ),
            field(json!(true)),
        )
            .prop_map(|(current, versions, cas)| {
                envelope(
                    json!({"cas_required": cas, "created_time": "t", "current_version": current,
                        "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0,
                        "updated_time": "t", "custom_metadata": null, "versions": versions}),
                    Value::Null,
                )
            })
    }

    fn login() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![Just(String::new()), Just(" \n".to_string()), Just(MARK.to_string()), "\\PC{0,40}".prop_map(String::from)],
            number(),
            field(json!(["default", "snykey"])),
        )
            .prop_map(|(token, lease, policies)| {
                envelope(
                    Value::Null,
                    json!({"client_token": token, "accessor": "a", "policies": policies,
                        "token_policies": ["default"], "metadata": null, "lease_duration": lease,
                        "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true}),
                )
            })
    }

    fn bytes_or(s: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![4 => s, 1 => proptest::collection::vec(any::<u8>(), 0..200)]
    }

    fn no_mark(e: &StoreError) -> Result<(), TestCaseError> {
        let m = e.to_string();
        prop_assert!(!m.contains(MARK), "{}", m);
        prop_assert!(m.chars().count() < 400, "{}", m);
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_kv2_read_answers_become_a_record_at_its_version_or_a_corrupt_error(raw in bytes_or(kv2_read())) {
            let key = CredKey::parse("o", "c").unwrap();
            let Ok(r) = serde_json::from_slice::<EndpointResult<ReadSecretResponse>>(&raw) else {
                return Ok(()); // vaultrs refuses it: a ClientError, mapped below
            };
            let Some(resp) = r.data else { return Ok(()) };
            let version = resp.metadata.version;
            match kv2_record(&key, resp) {
                Ok(v) => {
                    prop_assert_eq!(v.version, version);
                    prop_assert!(!v.hidden);
                    // What was read writes back as the map a put sends.
                    drop(RequestMap(to_map(&v.record).unwrap()));
                }
                Err(e) => {
                    prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{:?}", e);
                    no_mark(&e)?;
                }
            }
        }

        #[test]
        fn prop_kv2_metadata_answers_name_only_real_older_versions(raw in bytes_or(kv2_metadata())) {
            let Ok(r) = serde_json::from_slice::<EndpointResult<ReadSecretMetadataResponse>>(&raw) else {
                return Ok(());
            };
            let Some(m) = r.data else { return Ok(()) };
            let older = older_versions(&m);
            prop_assert!(older.len() <= m.versions.len());
            prop_assert!(!older.contains(&m.current_version));
            for v in &older {
                prop_assert!(m.versions.contains_key(&v.to_string()));
            }
            match hidden_version(&m) {
                Some(h) => {
                    prop_assert_eq!(h.version, m.current_version);
                    prop_assert!(h.hidden && h.record.deleted);
                }
                None => prop_assert_eq!(m.current_version, 0),
            }
        }

        #[test]
        fn prop_login_answers_give_their_token_or_a_refusal_without_it(raw in bytes_or(login())) {
            let Ok(r) = serde_json::from_slice::<EndpointResult<Value>>(&raw) else {
                return Ok(());
            };
            let Some(info): Option<AuthInfo> = r.auth else { return Ok(()) };
            let token = info.client_token.clone();
            match login_token("AppRole", info) {
                Ok(s) => prop_assert_eq!(s.expose(), token.trim()),
                Err(e) => {
                    prop_assert!(token.trim().is_empty());
                    prop_assert!(matches!(e, StoreError::Denied(_)), "{:?}", e);
                    no_mark(&e)?;
                }
            }
        }

        #[test]
        fn prop_any_token_ttl_gives_a_renewal_wait_without_overflow(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
            let ttl = Duration::new(secs, nanos);
            let w = renew_wait(ttl);
            prop_assert!(w >= Duration::from_secs(1) && w <= MAX_RENEW_WAIT);
            if ttl >= Duration::from_secs(2) {
                prop_assert!(w < ttl);
            }
        }

        #[test]
        fn prop_any_error_answer_maps_to_one_bounded_line(
            code in any::<u16>(),
            errors in proptest::collection::vec(prop_oneof![
                Just("Vault is sealed".to_string()),
                Just("check-and-set parameter did not match the current version".to_string()),
                "\\PC{0,600}".prop_map(String::from),
                "[\\n\\r\\t a-z]{0,40}".prop_map(String::from),
            ], 0..40),
        ) {
            let n = errors.len();
            let sealed = errors.iter().any(|m| m.to_ascii_lowercase().contains("sealed"));
            let cas = errors.iter().any(|m| m.contains("check-and-set"));
            let e = map_err(ClientError::APIError { code, errors: errors.clone() });
            let m = e.to_string();
            prop_assert!(m.chars().count() <= 1_000, "{} chars from {} errors", m.chars().count(), n);
            prop_assert!(!m.chars().any(char::is_control), "{:?}", m);
            match code {
                503 if sealed => prop_assert!(matches!(e, StoreError::Sealed), "{:?}", e),
                403 => prop_assert!(matches!(e, StoreError::Denied(_)), "{:?}", e),
                400 if cas => prop_assert!(matches!(e, StoreError::Conflict { .. }), "{:?}", e),
                _ => prop_assert!(matches!(e, StoreError::Unavailable(_) | StoreError::Sealed), "{:?}", e),
            }
            let l = map_login_err("AppRole", "store.secret_id_file", ClientError::APIError { code, errors });
            let m = l.to_string();
            prop_assert!(m.chars().count() <= 1_000 && !m.chars().any(char::is_control), "{:?}", m);
        }
    }

    // Regressions the properties above found.

    #[test]
    fn a_huge_token_ttl_from_openbao_does_not_overflow_the_renewer() {
        // Was `(ttl * 2 / 3)`: Duration overflow, a panic in the renewer task.
        assert_eq!(renew_wait(Duration::from_secs(u64::MAX)), MAX_RENEW_WAIT);
        assert_eq!(renew_wait(Duration::from_secs(3)), Duration::from_secs(2));
        assert_eq!(renew_wait(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn a_flood_of_openbao_errors_is_cut_to_one_short_line() {
        // Was every error joined whole: a megabyte answer made a megabyte
        // log line and HTTP error body.
        let e = map_err(ClientError::APIError {
            code: 500,
            errors: vec!["x\n".repeat(2_000); 1_000],
        });
        let m = e.to_string();
        assert!(m.len() < 1_000, "{}", m.len());
        assert!(m.ends_with("997 more"), "{m}");
        assert!(!m.contains('\n'));
    }

    #[test]
    fn version_names_that_are_not_plain_numbers_are_not_destroyed() {
        // "007" was read as version 7, a version the answer did not name.
        let raw = envelope(
            json!({"cas_required": true, "created_time": "t", "current_version": 9,
                "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0,
                "updated_time": "t", "custom_metadata": null, "versions": {
                    "007": {"created_time": "t", "deletion_time": "", "destroyed": false},
                    "+8": {"created_time": "t", "deletion_time": "", "destroyed": false},
                    "8": {"created_time": "t", "deletion_time": "", "destroyed": false},
                    "9": {"created_time": "t", "deletion_time": "", "destroyed": false}}}),
            Value::Null,
        );
        let r: EndpointResult<ReadSecretMetadataResponse> = serde_json::from_slice(&raw).unwrap();
        assert_eq!(older_versions(&r.data.unwrap()), vec![8]);
    }

    #[test]
    fn a_login_answer_without_a_client_token_is_a_refusal() {
        // Was taken as the empty token (a blank one too: secrets are
        // trimmed), and every request after it refused.
        let raw = envelope(
            Value::Null,
            json!({"client_token": " \n", "accessor": "", "policies": [], "token_policies": [],
                "metadata": null, "lease_duration": 60, "renewable": true, "entity_id": "",
                "token_type": "service", "orphan": true}),
        );
        let r: EndpointResult<Value> = serde_json::from_slice(&raw).unwrap();
        let e = login_token("Kubernetes", r.auth.unwrap()).unwrap_err();
        assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
        assert!(e.to_string().contains("no client_token"), "{e}");
    }
}

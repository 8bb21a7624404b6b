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
//! Published tokens for jobs (`[publish]`, [`OpenBaoShelf`]) go through the
//! same client, at their own KV v2 mount and prefix.
//!
//! With several addresses (the nodes of one Raft cluster) the store talks to
//! the active node. When a node cannot be reached, is sealed, or answers as a
//! standby (a standby may answer KV v2 with 400 "Waiting for the primary to
//! upgrade..."), the store asks each node's `/v1/sys/health` which one is
//! active, switches to it with the same token, and retries once.

mod auth;
mod errors;
mod kv;
mod nodes;
mod shelf;

/// OpenBao's `errors` as one short, printable line.
pub(crate) use errors::error_text;
pub use shelf::OpenBaoShelf;

use super::{CasRequired, Record, SecretStore, StoreError, Versioned};
use crate::credential::CredKey;
use crate::ids::{ClientId, OrgId};
use crate::secret::Secret;
use crate::urls::SecretUrl;
use async_trait::async_trait;
use errors::{is_not_found, map_err};
use kv::{RequestMap, from_value, kv2_record, older_versions, to_map};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Mutex;
use vaultrs::client::VaultClient;

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
    /// The nodes of one cluster (at least one); the store follows the active
    /// one. Each formats with any password redacted (config refuses one).
    pub addrs: Vec<SecretUrl>,
    pub auth: Auth,
    pub ca_cert: Option<PathBuf>,
    pub mount: String,
    /// 1 or 2.
    pub kv_version: u8,
    pub prefix: String,
}

pub struct OpenBaoStore {
    /// The nodes of the cluster; `active` indexes the one in use.
    addrs: Vec<SecretUrl>,
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
    /// Paths whose `cas_required` this process has seen set, or set.
    cas_ensured: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl OpenBaoStore {
    pub fn new(settings: impl Into<OpenBaoSettings>, timeout: Duration) -> OpenBaoStore {
        let s: OpenBaoSettings = settings.into();
        let addrs = if s.addrs.is_empty() {
            vec![SecretUrl::default()]
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
            cas_ensured: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn path(&self, key: &CredKey) -> String {
        format!("{}/{}/{}", self.prefix, key.org, key.client)
    }
}

#[async_trait]
impl SecretStore for OpenBaoStore {
    async fn get(&self, key: &CredKey) -> Result<Option<Versioned>, StoreError> {
        let path = self.path(key);
        if self.kv_version == 2 {
            let r = self
                .kv2_read(nodes::On403::Relogin, &self.mount, &path)
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
            if cas.is_some_and(|v| v > 0) {
                // A record this agent adopts (another tool may have written it).
                self.adopt_cas(&path).await;
            }
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
                    self.adopt_cas(&path).await;
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
            // (docs/protocol.md rule 10). Every older version is destroyed (its secrets
            // are gone for good) while the metadata and its version counter
            // stay: a check-and-set read before the delete can never match a
            // record created after it.
            let meta = self
                .kv2_metadata(nodes::On403::Relogin, &self.mount, &path)
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
            self.addrs
                .iter()
                .map(SecretUrl::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.kv_version,
            self.mount,
            self.prefix
        )
    }

    fn checks_versions(&self) -> bool {
        self.kv_version == 2
    }

    async fn require_cas(&self, key: &CredKey) -> Result<CasRequired, StoreError> {
        if self.kv_version != 2 {
            return Ok(CasRequired::NotApplicable);
        }
        self.ensure_cas(&self.path(key)).await
    }
}

#[cfg(test)]
mod envelope_prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_with_a_password_is_never_shown_whole() {
        // Config refuses such an address; the type would not show one anyway.
        let settings = OpenBaoSettings {
            addrs: vec![SecretUrl::new("https://snykey:pw-7f3a@bao-1:8200")],
            auth: Auth::Token {
                token: None,
                file: None,
            },
            ca_cert: None,
            mount: "kv".into(),
            kv_version: 2,
            prefix: "snyk".into(),
        };
        assert!(!format!("{settings:?}").contains("pw-7f3a"));
        let store = OpenBaoStore::new(settings, Duration::from_secs(1));
        let shown = store.describe();
        assert!(
            shown.contains("bao-1:8200") && !shown.contains("pw-7f3a"),
            "{shown}"
        );
    }
}

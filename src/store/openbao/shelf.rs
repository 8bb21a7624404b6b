//! Published tokens (`[publish]`) on OpenBao: one KV v2 secret per credential
//! at `{mount}/{prefix}/{org_id}/{client_id}`, reached with the store's own
//! client (the same login, renewal and active-node failover), written by
//! check-and-set only.

use super::OpenBaoStore;
use super::errors::{is_not_found, map_err};
use super::kv::{RequestMap, older_versions};
use super::nodes::On403;
use crate::credential::CredKey;
use crate::store::{OnShelf, StoreError, TokenShelf};
use crate::wire::published::PublishedToken;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;

/// The published tokens' KV v2 mount and prefix, on the store's OpenBao.
pub struct OpenBaoShelf {
    store: Arc<OpenBaoStore>,
    mount: String,
    prefix: String,
}

impl OpenBaoStore {
    /// Published tokens under `mount`/`prefix` (a KV v2 mount), through this
    /// store's client.
    pub fn shelf(self: &Arc<Self>, mount: &str, prefix: &str) -> OpenBaoShelf {
        OpenBaoShelf {
            store: Arc::clone(self),
            mount: mount.to_string(),
            prefix: prefix.to_string(),
        }
    }
}

impl OpenBaoShelf {
    fn rel(&self, key: &CredKey) -> String {
        format!("{}/{}/{}", self.prefix, key.org, key.client)
    }
}

#[async_trait]
impl TokenShelf for OpenBaoShelf {
    async fn read(&self, key: &CredKey) -> Result<OnShelf, StoreError> {
        let path = self.rel(key);
        let mount = self.mount.as_str();
        let r = self.store.kv2_read(On403::Fail, mount, &path).await;
        match r {
            Ok(resp) => {
                let version = resp.metadata.version;
                // Not ours to read (another tool wrote something else here):
                // no record, so a token may be written over it.
                let record = serde_json::from_value::<PublishedToken>(resp.data).ok();
                if record.is_none() {
                    tracing::warn!(path = %self.path(key), "the published path holds data that is not a published token; it is written over");
                }
                Ok(OnShelf { record, version })
            }
            Err(e) if is_not_found(&e) => {
                // Never written, or its current version deleted by another
                // tool: the metadata still counts versions.
                let meta = self.store.kv2_metadata(On403::Fail, mount, &path).await;
                match meta {
                    Ok(m) => Ok(OnShelf {
                        record: None,
                        version: m.current_version,
                    }),
                    Err(e) if is_not_found(&e) => Ok(OnShelf::default()),
                    Err(e) => Err(map_err(e)),
                }
            }
            Err(e) => Err(map_err(e)),
        }
    }

    async fn write(
        &self,
        key: &CredKey,
        record: &PublishedToken,
        cas: u64,
    ) -> Result<u64, StoreError> {
        let path = self.rel(key);
        let mount = self.mount.as_str();
        let Ok(cas) = u32::try_from(cas) else {
            return Err(StoreError::Unavailable(format!(
                "the published path {} has a version beyond what a check-and-set write can name; nothing was written",
                self.path(key)
            )));
        };
        // A plaintext copy of the access token, wiped when the write is done.
        let owned = match serde_json::to_value(record) {
            Ok(serde_json::Value::Object(m)) => RequestMap(m.into_iter().collect()),
            _ => {
                return Err(StoreError::Unavailable(
                    "cannot encode a published token".into(),
                ));
            }
        };
        let data: HashMap<&str, &serde_json::Value> =
            owned.0.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let r = self
            .store
            .with_client_on(On403::Fail, |c| {
                let path = path.clone();
                let data = &data;
                async move {
                    let opts = vaultrs::api::kv2::requests::SetSecretRequestOptions { cas };
                    vaultrs::kv2::set_with_options(&*c, mount, &path, data, opts).await
                }
            })
            .await;
        match r {
            Ok(meta) => Ok(meta.version),
            Err(e) => Err(match map_err(e) {
                StoreError::Conflict { .. } => StoreError::Conflict {
                    expected: u64::from(cas),
                },
                other => other,
            }),
        }
    }

    async fn destroy_before(&self, key: &CredKey, version: u64) -> Result<(), StoreError> {
        let path = self.rel(key);
        let mount = self.mount.as_str();
        let meta = self.store.kv2_metadata(On403::Fail, mount, &path).await;
        let meta = match meta {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        };
        let older: Vec<u64> = older_versions(&meta)
            .into_iter()
            .filter(|v| *v < version)
            .filter(|v| {
                // Those not destroyed yet.
                meta.versions
                    .get(&v.to_string())
                    .is_some_and(|m| !m.destroyed)
            })
            .collect();
        if older.is_empty() {
            return Ok(());
        }
        self.store
            .with_client_on(On403::Fail, |c| {
                let path = path.clone();
                let older = older.clone();
                async move { vaultrs::kv2::destroy_versions(&*c, mount, &path, older).await }
            })
            .await
            .map_err(map_err)
    }

    fn path(&self, key: &CredKey) -> String {
        format!("{}/{}", self.mount, self.rel(key))
    }
}

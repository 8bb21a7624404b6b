//! The KV v1/v2 side: the record as the map stored at each path, KV v2 read
//! and metadata answers, and the KV v2 metadata a record carries.

use super::OpenBaoStore;
use super::errors::{is_not_found, map_err};
use super::nodes::On403;
use crate::credential::CredKey;
use crate::locks::Recover;
use crate::store::{CasRequired, Record, StoreError, Versioned};
use std::collections::HashMap;
use vaultrs::error::ClientError;

/// A KV v2 read answer as a record at its version.
pub(super) fn kv2_record(
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
pub(super) fn hidden_version(
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
pub(super) fn older_versions(
    m: &vaultrs::api::kv2::responses::ReadSecretMetadataResponse,
) -> Vec<u64> {
    m.versions
        .keys()
        .filter_map(|name| name.parse::<u64>().ok().filter(|v| v.to_string() == *name))
        .filter(|v| *v != m.current_version)
        .collect()
}

/// The map stored at each path: the seed service's string fields, plus the
/// rotation fields of docs/storage.md (`generation` a number, `claim` an object).
pub(super) fn to_map(record: &Record) -> Result<HashMap<String, serde_json::Value>, StoreError> {
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

pub(super) fn from_value(key: &CredKey, v: serde_json::Value) -> Result<Record, StoreError> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: crate::secret::json_error(&e),
    })
}

impl OpenBaoStore {
    /// The current version of the KV v2 secret `path` on `mount`.
    pub(super) async fn kv2_read(
        &self,
        on403: On403,
        mount: &str,
        path: &str,
    ) -> Result<vaultrs::api::kv2::responses::ReadSecretResponse, ClientError> {
        self.with_client_on(on403, |c| async move {
            let ep = vaultrs::api::kv2::requests::ReadSecretRequest::builder()
                .mount(mount)
                .path(path)
                .build()
                .map_err(|e| ClientError::APIError {
                    code: 400,
                    errors: vec![e.to_string()],
                })?;
            vaultrs::api::exec_with_result(&*c, ep).await
        })
        .await
    }

    /// The metadata of the KV v2 secret `path` on `mount`.
    pub(super) async fn kv2_metadata(
        &self,
        on403: On403,
        mount: &str,
        path: &str,
    ) -> Result<vaultrs::api::kv2::responses::ReadSecretMetadataResponse, ClientError> {
        self.with_client_on(on403, |c| async move {
            vaultrs::kv2::read_metadata(&*c, mount, path).await
        })
        .await
    }

    /// A KV v2 path whose current version is deleted (by `bao kv delete`) or
    /// destroyed still has a version counter: it reads as a tombstone at
    /// that version, so that a check-and-set can still be made on it.
    pub(super) async fn deleted_version(
        &self,
        path: &str,
    ) -> Result<Option<Versioned>, StoreError> {
        let r = self.kv2_metadata(On403::Relogin, &self.mount, path).await;
        match r {
            Ok(m) => Ok(hidden_version(&m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// docs/protocol.md rule 10: `cas_required = true` on `path`, whoever created it,
    /// so that a blind write by another tool (the seed service, `bao kv
    /// put`) fails instead of erasing a claim. Reads the metadata (a record
    /// another tool created has it unset) and sets it where it is not.
    pub(super) async fn ensure_cas(&self, path: &str) -> Result<CasRequired, StoreError> {
        let meta = self.kv2_metadata(On403::Relogin, &self.mount, path).await;
        match meta {
            Ok(m) if m.cas_required => {
                self.cas_known(path);
                return Ok(CasRequired::Already);
            }
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(CasRequired::Absent),
            Err(e) => return Err(map_err(e)),
        }
        self.with_client(|c| async move {
            let mut opts = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
            opts.cas_required(true);
            vaultrs::kv2::set_metadata(&*c, &self.mount, path, Some(&mut opts)).await
        })
        .await
        .map_err(map_err)?;
        self.cas_known(path);
        tracing::info!(
            path,
            "cas_required set on a record another tool wrote: blind writes to it are refused from now on"
        );
        Ok(CasRequired::SetNow)
    }

    /// Before this process's first write to `path` (and after the write
    /// that created it): [`Self::ensure_cas`], once per path. Best effort: a
    /// policy without metadata rights only loses that protection, and says so.
    pub(super) async fn adopt_cas(&self, path: &str) {
        if self.cas_ensured.lock().recover().contains(path) {
            return;
        }
        match self.ensure_cas(path).await {
            Ok(_) => {}
            Err(e @ StoreError::Denied(_)) => {
                // Said once per record: the policy will not change by itself
                // (doctor checks again).
                self.cas_known(path);
                tracing::warn!(error = %e, path, "could not set cas_required: blind writes by other tools to this record are not refused (give the agent's policy update on its metadata path)");
            }
            Err(e) => {
                tracing::debug!(error = %e, path, "could not check cas_required now; checked again at the next write");
            }
        }
    }

    fn cas_known(&self, path: &str) {
        self.cas_ensured.lock().recover().insert(path.to_string());
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

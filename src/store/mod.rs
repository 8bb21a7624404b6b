//! Where refresh tokens, client secrets and private keys live.
//!
//! [`SecretStore`] is the seam: [`file::FileStore`] is the embedded default,
//! the OpenBao/Vault KV store sits beside it. Records follow SPEC §8 so a
//! store written by the seed service is read as is.

pub mod file;
pub mod openbao;

use crate::ids::CredKey;
use crate::secret::Secret;
use crate::wire::Kind;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One credential's secrets, as stored (SPEC §8 field names).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Absent in records written by the seed service: read as `oauth_app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::OauthApp)
    }
}

/// A record with the version it was read at (KV v2 check-and-set; 0 elsewhere).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub record: Record,
    pub version: u64,
}

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error(
        "the secret store is sealed: unseal it (bao operator unseal) and snykey resumes by itself"
    )]
    Sealed,
    #[error("the secret store is unavailable: {0}")]
    Unavailable(String),
    #[error("the secret store refused access: {0}")]
    Denied(String),
    #[error("the stored record changed since it was read (check-and-set version {expected})")]
    Conflict { expected: u64 },
    #[error("the stored record for {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
}

/// The secret store seam. Implementations must make `put` durable before returning.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Reads one record (`None` when there is none).
    async fn get(&self, key: &CredKey) -> Result<Option<Versioned>, StoreError>;
    /// Writes one record. With `cas = Some(v)` the write fails with
    /// [`StoreError::Conflict`] unless the stored version is still `v`
    /// (`Some(0)`: only if absent). Returns the new version.
    async fn put(
        &self,
        key: &CredKey,
        record: &Record,
        cas: Option<u64>,
    ) -> Result<u64, StoreError>;
    /// Removes a record and all its versions. Absent is not an error.
    async fn delete(&self, key: &CredKey) -> Result<(), StoreError>;
    /// Every credential in the store.
    async fn list(&self) -> Result<Vec<CredKey>, StoreError>;
    /// `Ok` when the store answers and can be written; the error says why not.
    async fn ready(&self) -> Result<(), StoreError>;
    /// A one-line description for logs (`file /var/lib/snykey/credentials.json`).
    fn describe(&self) -> String;
}

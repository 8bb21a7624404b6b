//! Where refresh tokens, client secrets and private keys live.
//!
//! [`SecretStore`] is the seam: [`file::FileStore`] is the embedded default,
//! the OpenBao/Vault KV store sits beside it. Records follow SPEC §8 so a
//! store written by the seed service is read as is.

pub(crate) mod file;
pub mod openbao;

use crate::credential::CredKey;
/// The stored record is the domain's own; the trait speaks in it.
pub use crate::credential::{Claim, Record, RecordState};
use async_trait::async_trait;
use thiserror::Error;

/// A record with the version it was read at (KV v2 check-and-set; 0 elsewhere).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub record: Record,
    pub version: u64,
    /// The current version exists but its data cannot be read: another tool
    /// deleted or destroyed it (`bao kv delete`). Not a tombstone of ours:
    /// nothing is discarded because of it, and a put or login may write over it.
    pub hidden: bool,
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
    /// Can `put` check-and-set (KV v2, the file store)? Without it no claim can
    /// be written (KV v1): SPEC §2 rules 3-5 cannot be enforced.
    fn checks_versions(&self) -> bool {
        true
    }
    /// Is this store certainly used by this agent alone (the file store is
    /// locked with `flock`)? Then claims are kept in the journal only.
    fn locked_to_this_agent(&self) -> bool {
        false
    }
}

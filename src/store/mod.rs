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
    /// SPEC §2 rule 4: goes up by one at every landing, login and put; never down.
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "lenient_u64"
    )]
    pub generation: u64,
    /// SHA-256 (hex) of the refresh token this one replaced (rule 8: a second
    /// `put` of an already rotated token is recognised by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_fp: Option<String>,
    /// `needs_login` with its reason, when Snyk refused the stored token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RecordState>,
    /// SHA-256s of the last refresh tokens given to `PUT` (at most
    /// [`PUT_HISTORY`]): a token put again on another host, even after a
    /// login replaced its chain, is recognised as spent (rule 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub put_fps: Vec<String>,
    /// Present while an agent may be sending the stored refresh token (rule 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// A tombstone (rule 10): written by check-and-set before the record is
    /// removed, so that a landing in flight cannot bring the credential back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// How many put tokens a record remembers.
pub const PUT_HISTORY: usize = 16;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// KV stores written by other tools may hold numbers as strings.
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Text(t) => t
            .parse()
            .map_err(|_| serde::de::Error::custom("generation is not a whole number")),
    }
}

/// The state a record can carry (SPEC §8 `state`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordState {
    /// Always `needs_login` today.
    pub name: String,
    pub reason: String,
}

impl RecordState {
    pub fn needs_login(reason: &str) -> RecordState {
        RecordState {
            name: "needs_login".into(),
            reason: reason.to_string(),
        }
    }
}

/// An agent's claim on the stored refresh token (SPEC §2 rule 3, §8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claim {
    /// SHA-256 (hex) of the claimed refresh token.
    pub fp: String,
    /// 128 random bits, hex; the claim is "mine" only if my journal holds it.
    pub nonce: String,
    /// `server.agent_id` of the claimant: informational, ids may collide.
    pub agent: String,
    /// Sends of this token whose outcome may have consumed it, this one included.
    pub attempts: u32,
    /// RFC 3339, informational: agents time claims on their own monotonic clocks.
    pub deadline: String,
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::OauthApp)
    }

    /// Does this record hold exactly this refresh token?
    pub fn holds(&self, digest: &str) -> bool {
        self.refresh_token
            .as_ref()
            .is_some_and(|t| t.digest() == digest)
    }

    /// Remembers `fps` besides its own put history (newest last, bounded).
    pub fn remember_puts(&mut self, fps: &[String]) {
        for fp in fps {
            if !self.put_fps.contains(fp) {
                self.put_fps.push(fp.clone());
            }
        }
        let extra = self.put_fps.len().saturating_sub(PUT_HISTORY);
        self.put_fps.drain(..extra);
    }

    pub fn needs_login(&self) -> Option<&str> {
        self.state
            .as_ref()
            .filter(|s| s.name == "needs_login")
            .map(|s| s.reason.as_str())
    }
}

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

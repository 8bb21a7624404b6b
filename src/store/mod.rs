//! Where refresh tokens, client secrets and private keys live.
//!
//! [`SecretStore`] is the seam: [`file::FileStore`] is the embedded default,
//! the OpenBao/Vault KV store sits beside it. Records follow docs/storage.md so a
//! store written by the seed service is read as is.

pub(crate) mod file;
pub mod openbao;

/// The stored record is the domain's own; the trait speaks in it.
pub use crate::credential::{Claim, Record, RecordState};
use crate::credential::{CredKey, Kind};
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

/// Whether a record refuses blind writes (KV v2 `cas_required`, docs/protocol.md
/// rule 10): a write without check-and-set by another tool (the seed
/// service, `bao kv put`) would erase a live claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasRequired {
    /// It did already.
    Already,
    /// It did not; it does now.
    SetNow,
    /// There is no such record.
    Absent,
    /// The store has no such setting: every write checks versions (the
    /// file store), or none can (KV v1).
    NotApplicable,
}

/// `snykey doctor`'s write check (`GET /v1/ready?write=true`): the writes a
/// claim makes (docs/protocol.md rule 3), on the scratch record [`CredKey::scratch`],
/// which no credential can have. Reads it, writes a claim by check-and-set
/// on the version read (where the store has check-and-set), reads it back,
/// writes a tombstone by check-and-set as a delete does (rule 10), and
/// removes it. Nothing secret is written. A race with another check (a
/// conflict) is retried once. Answers what was shown.
pub async fn write_check(
    store: &dyn SecretStore,
    agent: &str,
    now: std::time::SystemTime,
) -> Result<String, StoreError> {
    let key = CredKey::scratch();
    let mut tries = 0;
    loop {
        tries += 1;
        match claim_round_trip(store, &key, agent, now).await {
            Err(StoreError::Conflict { .. }) if tries < 2 => continue,
            Err(StoreError::Conflict { expected }) => {
                return Err(StoreError::Unavailable(format!(
                    "the scratch record {key} kept changing under the check (version {expected}): another check is running; try again"
                )));
            }
            Ok(()) if store.checks_versions() => {
                let cas = match cas_report(store).await? {
                    Some(report) => format!("; {report}"),
                    None => String::new(),
                };
                return Ok(format!(
                    "{}: a claim written by check-and-set on the scratch record {key}, read back and removed{cas}",
                    store.describe()
                ));
            }
            Ok(()) => {
                return Ok(format!(
                    "{}: the scratch record {key} written, read back and removed (no check-and-set here, so no claim: agents sharing this store are not protected from one another)",
                    store.describe()
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The write check's second half: every record refuses blind writes
/// (`cas_required`), set where another tool's record lacks it. `None` where
/// the store has no such setting.
async fn cas_report(store: &dyn SecretStore) -> Result<Option<String>, StoreError> {
    let keys = store.list().await?;
    let (mut already, mut set_now) = (0usize, 0usize);
    for key in &keys {
        match store.require_cas(key).await {
            Ok(CasRequired::Already) => already += 1,
            Ok(CasRequired::SetNow) => set_now += 1,
            Ok(CasRequired::Absent) => {}
            Ok(CasRequired::NotApplicable) => return Ok(None),
            Err(e) => {
                let why = format!(
                    "cas_required is not set on {key} and could not be set ({e}): a blind write by another tool (the seed service, bao kv put) can erase a claim there"
                );
                return Err(match e {
                    StoreError::Denied(_) => StoreError::Denied(why),
                    StoreError::Sealed => StoreError::Sealed,
                    _ => StoreError::Unavailable(why),
                });
            }
        }
    }
    Ok(Some(match set_now {
        0 => format!(
            "cas_required is set on all {already} records, so blind writes by other tools are refused"
        ),
        n => format!(
            "cas_required is set on all {} records ({n} lacked it and have it now), so blind writes by other tools are refused",
            already + n
        ),
    }))
}

async fn claim_round_trip(
    store: &dyn SecretStore,
    key: &CredKey,
    agent: &str,
    now: std::time::SystemTime,
) -> Result<(), StoreError> {
    let cas = store.checks_versions();
    let read = store.get(key).await?;
    let version = read.as_ref().map(|v| v.version).unwrap_or(0);
    let nonce = format!("{:032x}", rand::random::<u128>());
    let claimed = Record {
        kind: Some(Kind::OauthApp),
        updated_at: Some(crate::clock::rfc3339(now)),
        claim: Some(Claim {
            // No token is claimed: the fingerprint of nothing.
            fp: "0".repeat(64),
            nonce: nonce.clone(),
            agent: agent.to_string(),
            attempts: 0,
            deadline: crate::clock::rfc3339(now),
        }),
        ..Default::default()
    };
    let written = store.put(key, &claimed, cas.then_some(version)).await?;
    let back = store.get(key).await;
    let landed = match back {
        Ok(Some(v)) if v.record.claim.as_ref().is_some_and(|c| c.nonce == nonce) => Ok(v.version),
        Ok(_) => Err(StoreError::Unavailable(format!(
            "the scratch record {key} read back is not the one just written (a stale read from another node?)"
        ))),
        Err(e) => Err(e),
    };
    let landed = match landed {
        Ok(v) if !cas || v == written => Ok(written),
        Ok(v) => Err(StoreError::Unavailable(format!(
            "the scratch record {key} was written at version {written} but reads back at {v}"
        ))),
        Err(e) => Err(e),
    };
    let tombstone = Record {
        deleted: true,
        ..Default::default()
    };
    // Clean up whatever the read back said.
    let removed = match store.put(key, &tombstone, cas.then_some(written)).await {
        Ok(_) => store.delete(key).await,
        Err(e) => Err(e),
    };
    landed?;
    removed
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
    /// Removes a record's secrets and every older version. Absent is not an
    /// error. Where versions are kept (KV v2, the file store) the tombstone
    /// the broker wrote first (rule 10) stays, with its generation: a put
    /// after the delete continues above it.
    async fn delete(&self, key: &CredKey) -> Result<(), StoreError>;
    /// Every credential in the store.
    async fn list(&self) -> Result<Vec<CredKey>, StoreError>;
    /// `Ok` when the store answers and can be written; the error says why not.
    async fn ready(&self) -> Result<(), StoreError>;
    /// A one-line description for logs (`file /var/lib/snykey/credentials.json`).
    fn describe(&self) -> String;
    /// Can `put` check-and-set (KV v2, the file store)? Without it no claim can
    /// be written (KV v1): docs/protocol.md rules 3-5 cannot be enforced.
    fn checks_versions(&self) -> bool {
        true
    }
    /// Is this store certainly used by this agent alone (the file store is
    /// locked with `flock`)? Then claims are kept in the journal only.
    fn locked_to_this_agent(&self) -> bool {
        false
    }
    /// Makes the record refuse blind writes from now on (KV v2
    /// `cas_required`, docs/protocol.md rule 10), whoever created it: checked at
    /// start for every record, set on every record the agent adopts.
    async fn require_cas(&self, _key: &CredKey) -> Result<CasRequired, StoreError> {
        Ok(CasRequired::NotApplicable)
    }
}

/// What a published path holds ([`TokenShelf::read`]): its current
/// version's record, and that version (0: the path was never written). A
/// current version another tool deleted or destroyed, or data that is not a
/// published token, reads as no record at its version: it may be written over.
#[derive(Debug, Clone, Default)]
pub struct OnShelf {
    pub record: Option<crate::wire::published::PublishedToken>,
    pub version: u64,
}

/// Where the agent publishes access tokens for jobs (`[publish]`): one KV v2
/// secret per credential beside the secret store, each written by
/// check-and-set on the version read (several agents publish the same
/// credential; the newer record always wins, see `broker::publish`).
#[async_trait]
pub trait TokenShelf: Send + Sync {
    async fn read(&self, key: &CredKey) -> Result<OnShelf, StoreError>;
    /// Writes `record` if the path is still at version `cas` (0: absent);
    /// [`StoreError::Conflict`] otherwise. Returns the new version.
    async fn write(
        &self,
        key: &CredKey,
        record: &crate::wire::published::PublishedToken,
        cas: u64,
    ) -> Result<u64, StoreError>;
    /// Destroys every version below `version` (a deleted credential's
    /// tokens), leaving `version` and the path's version counter.
    async fn destroy_before(&self, key: &CredKey, version: u64) -> Result<(), StoreError>;
    /// The path as an operator names it in a policy or `bao kv get`
    /// (`kv/snyk-tokens/ORG_ID/CLIENT_ID`).
    fn path(&self, key: &CredKey) -> String;
}

#[cfg(test)]
mod write_check_tests {
    use super::*;
    use crate::secret::Secret;

    #[tokio::test]
    async fn the_write_check_leaves_the_store_as_it_found_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/credentials.json");
        let store = file::FileStore::open(&path).unwrap();
        let key = CredKey::parse("o", "c").unwrap();
        let record = Record {
            kind: Some(Kind::ClientSecret),
            client_secret: Some(Secret::new("cs-1")),
            ..Default::default()
        };
        store.put(&key, &record, Some(0)).await.unwrap();
        // A scratch record left by a check that died half-way is claimed over.
        store
            .put(&CredKey::scratch(), &Record::default(), Some(0))
            .await
            .unwrap();
        for _ in 0..2 {
            let m = write_check(&store, "agent-1", std::time::SystemTime::now())
                .await
                .unwrap();
            assert!(m.contains("a claim written by check-and-set"), "{m}");
            assert!(store.get(&CredKey::scratch()).await.unwrap().is_none());
        }
        assert_eq!(store.list().await.unwrap(), vec![key.clone()]);
        let got = store.get(&key).await.unwrap().unwrap();
        assert_eq!(got.record, record);
        assert!(!std::fs::read_to_string(&path).unwrap().contains("_snykey"));
    }
}

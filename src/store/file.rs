//! The embedded default store: one JSON document, mode 0600, replaced
//! atomically on every write (temp file, fsync, rename, fsync of the directory).
//!
//! The whole document is kept in memory; a write builds the new document,
//! makes it durable, and only then swaps it in, so a failed write changes
//! nothing. A `flock` on a lock file beside it keeps two agents from sharing
//! one file store (they would overwrite each other's rotations). A delete
//! keeps the credential's tombstone ([`tombstone`]): its generation and
//! version go on after it, as on OpenBao KV v2.

use super::{Record, SecretStore, StoreError, Versioned};
use crate::credential::CredKey;
use crate::ids::{ClientId, OrgId};
use crate::locks::Recover;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

#[derive(Default, Serialize, Deserialize, Clone, Debug)]
struct Document {
    /// org_id → client_id → record.
    credentials: BTreeMap<String, BTreeMap<String, StoredRecord>>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct StoredRecord {
    #[serde(flatten)]
    record: Record,
    #[serde(default)]
    version: u64,
}

pub struct FileStore {
    inner: std::sync::Arc<Inner>,
    _lock: File,
}

struct Inner {
    path: PathBuf,
    doc: Mutex<Document>,
    /// Writes waiting for the next group commit.
    queue: std::sync::Mutex<Vec<Queued>>,
    /// Held by the task committing a batch.
    writer: Mutex<()>,
    /// Durable writes of the document so far (each one fsync): the tests
    /// check that concurrent writes share them.
    persists: std::sync::atomic::AtomicU64,
}

/// One write: a put with its check-and-set, or a delete (which leaves a
/// [`tombstone`]).
enum Op {
    Put {
        key: CredKey,
        record: Box<Record>,
        cas: Option<u64>,
    },
    Delete {
        key: CredKey,
    },
}

struct Queued {
    op: Op,
    reply: tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
}

/// Applies one write to `doc`: `Ok(Some(version))` if it changed something,
/// `Ok(None)` if there was nothing to do.
fn apply(doc: &mut Document, op: &Op) -> Result<Option<u64>, StoreError> {
    match op {
        Op::Put { key, record, cas } => {
            let current = doc
                .credentials
                .get(key.org.as_str())
                .and_then(|m| m.get(key.client.as_str()))
                .map(|s| s.version)
                .unwrap_or(0);
            if let Some(expected) = cas {
                if *expected != current {
                    return Err(StoreError::Conflict {
                        expected: *expected,
                    });
                }
            }
            let version = current + 1;
            doc.credentials
                .entry(key.org.to_string())
                .or_default()
                .insert(
                    key.client.to_string(),
                    StoredRecord {
                        record: (**record).clone(),
                        version,
                    },
                );
            Ok(Some(version))
        }
        Op::Delete { key } if key.org.as_str() == crate::ids::SCRATCH_ORG => {
            // The doctor's scratch record: no credential can have its id, so
            // no generation needs to outlive it; it goes entirely.
            let Some(clients) = doc.credentials.get_mut(key.org.as_str()) else {
                return Ok(None);
            };
            if clients.remove(key.client.as_str()).is_none() {
                return Ok(None);
            }
            if clients.is_empty() {
                doc.credentials.remove(key.org.as_str());
            }
            Ok(Some(0))
        }
        Op::Delete { key } => {
            let Some(stored) = doc
                .credentials
                .get_mut(key.org.as_str())
                .and_then(|m| m.get_mut(key.client.as_str()))
            else {
                return Ok(None);
            };
            let stone = tombstone(&stored.record);
            if stone == stored.record {
                // The broker's own tombstone (rule 10), written just before:
                // it stays as it is.
                return Ok(None);
            }
            stored.record = stone;
            stored.version += 1;
            Ok(Some(stored.version))
        }
    }
}

/// What a delete leaves of a record: a tombstone that holds no secret but
/// keeps the credential's generation (and the record its version), as the
/// tombstone on OpenBao KV v2 does. A put after the delete then continues
/// above it instead of starting again at 1, so no record created after the
/// delete can reach the generation a token from before it was minted at
/// (the access-token snapshot revives a token only at that generation), and
/// no check-and-set read before the delete matches after it. The broker
/// writes the tombstone itself by check-and-set first (rule 10), and it is
/// kept unchanged; any other record becomes one a generation up.
fn tombstone(r: &Record) -> Record {
    Record {
        kind: r.kind,
        generation: if r.deleted {
            r.generation
        } else {
            r.generation.saturating_add(1)
        },
        // Fingerprints only: a spent token put again stays refused.
        put_fps: r.put_fps.clone(),
        prev_fp: r
            .refresh_token
            .as_ref()
            .map(crate::secret::Secret::digest)
            .or_else(|| r.prev_fp.clone()),
        updated_at: r.updated_at.clone(),
        deleted: true,
        ..Default::default()
    }
}

impl FileStore {
    /// Opens (or creates) the store at `path`. The directory is created 0700
    /// if missing; an existing file must be private (no group/other bits).
    pub fn open(path: &Path) -> Result<FileStore, StoreError> {
        let unavailable = |what: &str, e: std::io::Error| {
            StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| unavailable("cannot create the directory of", e))?;
            }
            crate::dirs::check_private_dir(dir, "the file store's directory", "store.path")
                .map_err(StoreError::Unavailable)?;
        }
        let lock_path = lock_path(path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| unavailable("cannot open the lock file of", e))?;
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Unavailable(format!(
                "{} is in use by another snykey agent (two agents must not share a file store; use openbao)",
                path.display()
            )));
        }
        let doc = match std::fs::read(path) {
            Ok(bytes) => {
                // The document holds every secret: wipe the bytes once parsed.
                let bytes = zeroize::Zeroizing::new(bytes);
                let meta = std::fs::metadata(path).map_err(|e| unavailable("cannot stat", e))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(StoreError::Unavailable(format!(
                        "{} is readable by group or others (mode {:o}): run chmod 600 on it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    )));
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    Document::default()
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        key: path.display().to_string(),
                        message: crate::secret::json_error(&e),
                    })?
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(e) => return Err(unavailable("cannot read", e)),
        };
        Ok(FileStore {
            inner: std::sync::Arc::new(Inner {
                path: path.to_path_buf(),
                doc: Mutex::new(doc),
                queue: std::sync::Mutex::new(Vec::new()),
                writer: Mutex::new(()),
                persists: std::sync::atomic::AtomicU64::new(0),
            }),
            _lock: lock,
        })
    }

    /// Queues `op` and waits for the group commit that carries it. The
    /// commit runs in its own task, so a caller that goes away cannot leave
    /// a write half done (the file renamed but the document not swapped in).
    async fn submit(&self, op: Op) -> Result<u64, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .queue
            .lock()
            .recover()
            .push(Queued { op, reply: tx });
        tokio::spawn(std::sync::Arc::clone(&self.inner).commit());
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the store writer stopped".into())))
    }
}

impl Inner {
    /// Group commit: whoever holds the writer lock applies every queued
    /// write to a copy of the document, makes the copy durable once (one
    /// temp file, fsync, rename), swaps it in, and answers each writer.
    /// Concurrent refreshes of many credentials thus share one fsync.
    async fn commit(self: std::sync::Arc<Self>) {
        let _writer = self.writer.lock().await;
        let batch = std::mem::take(&mut *self.queue.lock().recover());
        if batch.is_empty() {
            // An earlier commit carried this task's write with its batch.
            return;
        }
        let mut next = self.doc.lock().await.clone();
        let results: Vec<Result<Option<u64>, StoreError>> =
            batch.iter().map(|q| apply(&mut next, &q.op)).collect();
        let changed = results.iter().any(|r| matches!(r, Ok(Some(_))));
        let persisted = if changed {
            self.persist(&next).await
        } else {
            Ok(())
        };
        if persisted.is_ok() && changed {
            *self.doc.lock().await = next;
        }
        for (q, r) in batch.into_iter().zip(results) {
            let answer = match (&persisted, r) {
                // Nothing is applied when the write failed: a failed write changes nothing.
                (Err(e), Ok(Some(_))) => Err(e.clone()),
                (_, Ok(v)) => Ok(v.unwrap_or(0)),
                (_, Err(e)) => Err(e),
            };
            let _ = q.reply.send(answer);
        }
    }

    /// Writes `doc` durably; the caller swaps it in only on success.
    async fn persist(&self, doc: &Document) -> Result<(), StoreError> {
        self.persists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Wiped when the writer is done with it (the document holds every secret).
        let bytes = crate::secret::to_json_wiped(doc)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the store: {e}")))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store writer failed: {e}")))?
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// temp file (0600) → write → fsync → rename over the target → fsync the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = temp_path(path);
    let fail = |what: &str, e: std::io::Error| {
        StoreError::Unavailable(format!("cannot {what} {}: {e}", path.display()))
    };
    let result = (|| {
        // A stale temp file (a crash mid-write) is removed, then the temp
        // file is created exclusively: never through a symlink planted there.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("remove a stale temp file for", e)),
        }
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail("create a temp file for", e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("set the mode of the temp file for", e))?;
        f.write_all(bytes).map_err(|e| fail("write", e))?;
        f.sync_all().map_err(|e| fail("fsync", e))?;
        std::fs::rename(&tmp, path).map_err(|e| fail("rename the temp file onto", e))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("fsync the directory of", e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[async_trait]
impl SecretStore for FileStore {
    async fn get(&self, key: &CredKey) -> Result<Option<Versioned>, StoreError> {
        let doc = self.inner.doc.lock().await;
        Ok(doc
            .credentials
            .get(key.org.as_str())
            .and_then(|m| m.get(key.client.as_str()))
            .map(|s| Versioned {
                record: s.record.clone(),
                version: s.version,
                hidden: false,
            }))
    }

    async fn put(
        &self,
        key: &CredKey,
        record: &Record,
        cas: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.submit(Op::Put {
            key: key.clone(),
            record: Box::new(record.clone()),
            cas,
        })
        .await
    }

    async fn delete(&self, key: &CredKey) -> Result<(), StoreError> {
        self.submit(Op::Delete { key: key.clone() })
            .await
            .map(|_| ())
    }

    async fn list(&self) -> Result<Vec<CredKey>, StoreError> {
        let doc = self.inner.doc.lock().await;
        let mut out = Vec::new();
        for (org, clients) in &doc.credentials {
            if org == crate::ids::SCRATCH_ORG {
                continue; // doctor's write check, never a credential
            }
            for (client, stored) in clients {
                if stored.record.deleted {
                    continue;
                }
                // Ids that do not pass docs/api.md (hand-edited file) are skipped, not trusted.
                if let (Ok(org), Ok(client)) = (OrgId::parse(org), ClientId::parse(client)) {
                    out.push(CredKey { org, client });
                } else {
                    tracing::warn!(org_id = %org.escape_debug(), client_id = %client.escape_debug(), "skipping a record with an invalid id in the file store");
                }
            }
        }
        Ok(out)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let dir = self.inner.path.parent().unwrap_or(Path::new("/"));
        let meta = tokio::fs::metadata(dir)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let tmp = temp_path(&self.inner.path);
        if tokio::fs::metadata(&tmp).await.is_ok_and(|m| m.is_dir()) {
            return Err(StoreError::Unavailable(format!(
                "{} is in the way of writes",
                tmp.display()
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file {}", self.inner.path.display())
    }

    fn locked_to_this_agent(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn key() -> CredKey {
        CredKey::parse("org1", "client1").unwrap()
    }

    fn rec(rt: &str) -> Record {
        Record {
            refresh_token: Some(Secret::new(rt)),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn writes_are_private_durable_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/credentials.json");
        let s = FileStore::open(&path).unwrap();
        assert_eq!(s.put(&key(), &rec("rt1"), Some(0)).await.unwrap(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        drop(s);
        let s = FileStore::open(&path).unwrap();
        let v = s.get(&key()).await.unwrap().unwrap();
        assert_eq!(v.record.refresh_token.unwrap().expose(), "rt1");
        assert_eq!(v.version, 1);
        assert_eq!(s.list().await.unwrap(), vec![key()]);
    }

    #[tokio::test]
    async fn check_and_set_refuses_a_stale_version() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(&dir.path().join("c.json")).unwrap();
        s.put(&key(), &rec("a"), None).await.unwrap();
        assert!(matches!(
            s.put(&key(), &rec("b"), Some(0)).await,
            Err(StoreError::Conflict { .. })
        ));
        s.put(&key(), &rec("b"), Some(1)).await.unwrap();
        assert_eq!(
            s.get(&key())
                .await
                .unwrap()
                .unwrap()
                .record
                .refresh_token
                .unwrap()
                .expose(),
            "b"
        );
    }

    /// A record at `generation` holding refresh token `rt`.
    fn at(rt: &str, generation: u64) -> Record {
        Record {
            generation,
            client_secret: Some(Secret::new("sec")),
            ..rec(rt)
        }
    }

    #[tokio::test]
    async fn a_delete_keeps_the_tombstone_so_a_put_after_it_continues_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let s = FileStore::open(&path).unwrap();
        assert_eq!(s.put(&key(), &at("rt1", 7), Some(0)).await.unwrap(), 1);
        // The broker's delete (rule 10): its tombstone by check-and-set, then delete.
        let stone = Record {
            generation: 8,
            prev_fp: Some(Secret::new("rt1").digest()),
            deleted: true,
            ..Default::default()
        };
        assert_eq!(s.put(&key(), &stone, Some(1)).await.unwrap(), 2);
        let persists = s.inner.persists.load(std::sync::atomic::Ordering::Relaxed);
        s.delete(&key()).await.unwrap();
        assert_eq!(
            s.inner.persists.load(std::sync::atomic::Ordering::Relaxed),
            persists,
            "the tombstone stays as it is: nothing to write"
        );
        assert!(
            s.list().await.unwrap().is_empty(),
            "a deleted credential is not listed"
        );
        drop(s);

        // Across a restart, a put finds the tombstone, not nothing: it
        // continues at generation 9 (a put writes the generation read plus
        // one), and a create-if-absent read before the delete cannot match.
        let s = FileStore::open(&path).unwrap();
        let v = s.get(&key()).await.unwrap().expect("the tombstone");
        assert!(v.record.deleted);
        assert_eq!((v.record.generation, v.version), (8, 2));
        assert!(matches!(
            s.put(&key(), &at("rt2", 1), Some(0)).await,
            Err(StoreError::Conflict { .. })
        ));
        let next = at("rt2", v.record.generation + 1);
        assert_eq!(s.put(&key(), &next, Some(v.version)).await.unwrap(), 3);
        let v = s.get(&key()).await.unwrap().unwrap();
        assert_eq!((v.record.generation, v.record.deleted), (9, false));
        assert_eq!(s.list().await.unwrap(), vec![key()]);
    }

    #[tokio::test]
    async fn a_delete_without_a_tombstone_leaves_one_without_secrets_a_generation_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let s = FileStore::open(&path).unwrap();
        let mut live = at("rt-live", 4);
        live.put_fps = vec!["fp-put".into()];
        s.put(&key(), &live, Some(0)).await.unwrap();
        s.delete(&key()).await.unwrap();
        let v = s.get(&key()).await.unwrap().unwrap();
        assert_eq!(v.version, 2, "the version goes on");
        assert_eq!(
            v.record,
            Record {
                generation: 5,
                prev_fp: Some(Secret::new("rt-live").digest()),
                put_fps: vec!["fp-put".into()],
                deleted: true,
                ..Default::default()
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rt-live") && !text.contains("sec"), "{text}");
        // Absent stays absent.
        let other = CredKey::parse("org1", "client2").unwrap();
        s.delete(&other).await.unwrap();
        assert!(s.get(&other).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let s = FileStore::open(&path).unwrap();
        s.put(&key(), &rec("a"), None).await.unwrap();
        std::fs::create_dir(temp_path(&path)).unwrap();
        assert!(s.put(&key(), &rec("b"), None).await.is_err());
        assert!(s.ready().await.is_err());
        assert_eq!(
            s.get(&key())
                .await
                .unwrap()
                .unwrap()
                .record
                .refresh_token
                .unwrap()
                .expose(),
            "a"
        );
        std::fs::remove_dir(temp_path(&path)).unwrap();
        s.put(&key(), &rec("c"), None).await.unwrap();
        assert!(s.ready().await.is_ok());
    }

    #[tokio::test]
    async fn a_second_agent_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let _a = FileStore::open(&path).unwrap();
        let e = FileStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("another snykey agent"), "{e}");
    }

    #[tokio::test]
    async fn a_record_written_by_the_seed_service_reads_as_oauth_app() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            r#"{"credentials":{"o":{"c":{"refresh_token":"seed-rt"}}}}"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = FileStore::open(&path).unwrap();
        let v = s
            .get(&CredKey::parse("o", "c").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.record.kind(), crate::credential::Kind::OauthApp);
        assert!(v.record.client_secret.is_none());
    }

    #[tokio::test]
    async fn a_world_readable_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FileStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[tokio::test]
    async fn a_store_directory_others_can_write_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.path().join("c.json");
        let e = FileStore::open(&path).err().unwrap().to_string();
        assert!(e.contains("chmod go-w") && e.contains("store.path"), "{e}");
        assert!(!path.exists() && !lock_path(&path).exists());
    }
}

#[cfg(test)]
mod group_commit_tests {
    use super::*;
    use crate::secret::Secret;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_keep_their_own_check_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let s = std::sync::Arc::new(FileStore::open(&path).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = std::sync::Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let key = CredKey::parse("org", &format!("c{i}")).unwrap();
                let rec = Record {
                    refresh_token: Some(Secret::new(format!("rt{i}"))),
                    ..Default::default()
                };
                let first = s.put(&key, &rec, Some(0)).await;
                // A second create-only write of the same key must conflict.
                let second = s.put(&key, &rec, Some(0)).await;
                (first, second)
            }));
        }
        for t in tasks {
            let (first, second) = t.await.unwrap();
            assert_eq!(first.unwrap(), 1);
            assert!(matches!(second, Err(StoreError::Conflict { .. })));
        }
        // 200 writes changed the document (the 200 conflicts change
        // nothing): in fewer durable writes than that, so commits were shared.
        let persists = s.inner.persists.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (1..200).contains(&persists),
            "{persists} durable writes for 200 concurrent writes: no group commit"
        );
        drop(s);
        let reopened = FileStore::open(&path).unwrap();
        assert_eq!(
            reopened.list().await.unwrap().len(),
            200,
            "every write is durable"
        );
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use crate::secret::Secret;
    use proptest::prelude::*;

    fn document() -> impl Strategy<Value = Document> {
        proptest::collection::btree_map(
            "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
            proptest::collection::btree_map(
                "[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
                (
                    proptest::option::of("[A-Za-z0-9._~-]{1,60}"),
                    proptest::option::of("\\PC{1,40}"),
                    any::<u64>(),
                    any::<u64>(),
                ),
                0..3,
            ),
            0..3,
        )
        .prop_map(|orgs| Document {
            credentials: orgs
                .into_iter()
                .map(|(org, clients)| {
                    let clients = clients
                        .into_iter()
                        .map(|(client, (rt, secret, generation, version))| {
                            let record = Record {
                                refresh_token: rt.map(Secret::new),
                                client_secret: secret.map(Secret::new),
                                generation,
                                ..Default::default()
                            };
                            (client, StoredRecord { record, version })
                        })
                        .collect();
                    (org, clients)
                })
                .collect(),
        })
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_the_store_document_round_trips(doc in document()) {
            let bytes = crate::secret::to_json_wiped(&doc).unwrap();
            let back: Document = serde_json::from_slice(&bytes).unwrap();
            let again = crate::secret::to_json_wiped(&back).unwrap();
            prop_assert_eq!(&*bytes, &*again);
        }

        #[test]
        fn prop_any_bytes_as_the_store_document_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = serde_json::from_slice::<Document>(&raw) {
                prop_assert!(crate::secret::json_error(&e).len() < 300);
            }
        }
    }
}

//! The recovery journal (docs/protocol.md rule 4): rotated refresh tokens that the
//! store does not hold yet, and refreshes whose answer may have been lost.
//!
//! One small file per credential, `{org_id}@{client_id}.json` (`@` cannot
//! appear in an id), mode 0600 in a 0700 directory, each written atomically
//! with fsync. An entry is removed once the store holds its token. On start
//! the agent replays every entry before it serves anything.

use crate::credential::CredKey;
use crate::ids::{ClientId, OrgId};
use crate::store::Record;
use crate::store::file::write_atomically;
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One credential's journal entry (docs/protocol.md rules 3, 4, 7 and 9).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// This agent's claim on the stored refresh token, noted right after the
    /// claim's check-and-set succeeded and before the token is sent: a claim
    /// in the store is "mine" only if its nonce is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Note>,
    /// A successor record (new refresh token or secret) the store does not hold yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Record>,
    /// What the store must hold for `record` to land (rule 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
    /// The record a put replaced (or added a client secret to), journaled
    /// before the put's own store write and kept until Snyk answers the
    /// put's token: if Snyk refuses it, the replaced record goes back
    /// (a crash in between included: the put's token in the store is the
    /// witness), so a refused put never loses the live token it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
    /// SHA-256 of a refresh token Snyk refused for good, kept until the
    /// store says `needs_login` or a new chain starts: it is never sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<String>,
    /// Written by snykey before claims existed: the fingerprint of a token
    /// that was at Snyk with no answer. Read, never written.
    #[serde(default, skip_serializing)]
    pub sent: Option<String>,
    #[serde(default)]
    pub at: String,
}

/// "Refresh token `fp` may be at Snyk under claim `nonce`."
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Note {
    /// SHA-256 (hex) of the claimed token.
    pub fp: String,
    pub nonce: String,
    /// Sends of `fp` whose outcome may have consumed it (the claim's `attempts`).
    pub attempts: u32,
    /// A send is out with no answer noted yet.
    pub sent: bool,
}

/// The predecessor a journaled record may land on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Base {
    /// SHA-256 (hex) of the refresh token the store must still hold (a
    /// rotation), or `None` for a record with no refresh token (a secret);
    /// for a client secret put back, the refused secret the store must
    /// still hold (docs/protocol.md rule 15's rollback).
    #[serde(default)]
    pub fp: Option<String>,
    /// The stored generation when the chain started.
    pub generation: u64,
    /// A browser login: lands over anything, unless a newer login or
    /// rotation landed since (the stored generation moved past `generation`).
    #[serde(default)]
    pub login: bool,
    /// SHA-256s of the tokens rotated since the base while the store refused
    /// writes (rule 7's chain): the store may hold any of them (a landing
    /// whose answer was lost), and the successor lands over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
}

/// What a put replaced: the record as it was, and the put's refresh token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Replaced {
    /// The record before the put (its refresh token never sent by the put).
    pub record: Record,
    /// SHA-256 (hex) of the refresh token the put stored: the record goes
    /// back only over a store record that still holds it.
    pub by: String,
    /// The generation the put's own write gives the record: the record goes
    /// back only over that write. Another agent's put of the same token may
    /// have replaced a newer record than this one (journals written before
    /// this field: no such check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl Entry {
    pub fn is_empty(&self) -> bool {
        self.claim.is_none()
            && self.record.is_none()
            && self.dead.is_none()
            && self.replaced.is_none()
    }
}

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The exclusive `flock` on `{dir}/.lock`, held for the agent's life.
    _lock: Option<std::fs::File>,
}

/// The lock file in the journal directory (not an entry: no `.json`).
const LOCK_FILE: &str = ".lock";

impl Journal {
    /// The journal in `dir`, unlocked: for tests and tools that only read.
    pub fn new(dir: &Path) -> Journal {
        Journal {
            dir: dir.to_path_buf(),
            _lock: None,
        }
    }

    /// The agent's journal: `dir` created (0700) if missing and locked with
    /// an exclusive `flock` for the life of the process. Two agents on one
    /// journal directory would adopt each other's claims and remove each
    /// other's journaled successors: the second is refused, naming
    /// `store.journal_dir`.
    pub fn open(dir: &Path) -> Result<Journal, String> {
        let journal = Journal::new(dir);
        journal
            .ensure_dir()
            .map_err(|e| format!("the recovery journal directory {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                format!(
                    "cannot open the journal's lock file {}: {e}",
                    path.display()
                )
            })?;
        // SAFETY: flock on a valid descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                format!(
                    "the recovery journal directory {} is in use by another snykey agent: every agent needs a journal directory of its own (set store.journal_dir)",
                    dir.display()
                )
            } else {
                format!("cannot lock {}: {e}", path.display())
            });
        }
        Ok(Journal {
            _lock: Some(lock),
            ..journal
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, key: &CredKey) -> PathBuf {
        self.dir.join(format!("{}@{}.json", key.org, key.client))
    }

    /// The directory exists (created 0700 if missing, durably: the parent
    /// of every directory created is fsync'd, so an entry written into it
    /// is not lost with a directory a crash forgot) and is private.
    fn ensure_dir(&self) -> std::io::Result<()> {
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => self.check_dir().map_err(std::io::Error::other),
            Ok(_) => Err(std::io::Error::other(format!(
                "{} is not a directory",
                self.dir.display()
            ))),
            Err(_) => create_dir_durably(&self.dir),
        }
    }

    /// Writes (replaces) the entry of one credential, durably.
    pub fn write(&self, key: &CredKey, entry: &Entry) -> Result<(), String> {
        self.ensure_dir()
            .map_err(|e| format!("journal {}: {e}", self.dir.display()))?;
        let bytes = crate::secret::to_json_wiped(entry)
            .map_err(|e| format!("cannot encode a journal entry: {e}"))?;
        write_atomically(&self.file(key), &bytes).map_err(|e| format!("journal: {e}"))
    }

    /// Removes the entry of one credential (absent is fine), durably: a
    /// failed fsync of the directory is reported (the entry could come back
    /// after a crash, and be replayed as stale).
    pub fn remove(&self, key: &CredKey) -> Result<(), String> {
        match std::fs::remove_file(self.file(key)) {
            Ok(()) => sync_dir(&self.dir).map_err(|e| {
                format!(
                    "journal: the entry of {key} was removed but {} could not be fsync'd: {e}",
                    self.dir.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("journal: cannot remove the entry of {key}: {e}")),
        }
    }

    /// Refuses a journal directory another user could write to: an entry
    /// planted there would be replayed as this agent's refresh token.
    fn check_dir(&self) -> Result<(), String> {
        crate::dirs::check_private_dir(&self.dir, "the journal directory", "store.journal_dir")
    }

    /// Every entry, for replay at start. Unreadable files are reported, not deleted.
    pub fn read_all(&self) -> Result<Vec<(CredKey, Entry)>, String> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                self.check_dir()?;
                rd
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("journal {}: {e}", self.dir.display())),
        };
        let mut out = Vec::new();
        for item in rd.flatten() {
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let Some((org, client)) = stem.split_once('@') else {
                continue;
            };
            let (Ok(org), Ok(client)) = (OrgId::parse(org), ClientId::parse(client)) else {
                continue;
            };
            let key = CredKey { org, client };
            let bytes =
                std::fs::read(item.path()).map_err(|e| format!("journal entry of {key}: {e}"))?;
            // The entry may hold a refresh token: wipe the bytes once parsed.
            let bytes = zeroize::Zeroizing::new(bytes);
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "journal entry of {key} is unreadable ({}); it is kept at {}",
                    crate::secret::json_error(&e),
                    item.path().display()
                )
            })?;
            out.push((key, entry));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// fsync of a directory: what makes a name created or removed in it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents (0700), each made durable by an
/// fsync of its parent (the directory entry would otherwise live only in
/// the page cache).
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            // Created meanwhile (another thread's write): fine.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_open_of_one_journal_directory_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("state/journal");
        let first = Journal::open(&jdir).unwrap();
        assert_eq!(
            std::fs::metadata(&jdir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let e = Journal::open(&jdir).unwrap_err();
        assert!(
            e.contains("store.journal_dir") && e.contains("another snykey agent"),
            "{e}"
        );
        // The lock file is no entry.
        assert!(first.read_all().unwrap().is_empty());
        drop(first);
        Journal::open(&jdir).unwrap();
    }

    #[test]
    fn a_journal_directory_is_created_with_its_parents_durably() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("a/b/journal");
        create_dir_durably(&jdir).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b"), jdir.clone()] {
            assert_eq!(
                std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
        }
        // Again: nothing to do.
        create_dir_durably(&jdir).unwrap();
    }

    #[test]
    fn a_journal_directory_others_can_write_to_is_neither_read_nor_written() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = dir.path().join("journal");
        std::fs::create_dir(&jdir).unwrap();
        std::fs::set_permissions(&jdir, std::fs::Permissions::from_mode(0o770)).unwrap();
        // An entry someone else planted is not replayed.
        std::fs::write(jdir.join("o@c.json"), r#"{"at":"x"}"#).unwrap();
        let j = Journal::new(&jdir);
        let e = j.read_all().unwrap_err();
        assert!(
            e.contains("chmod go-w") && e.contains("store.journal_dir"),
            "{e}"
        );
        let key = CredKey::parse("o", "c2").unwrap();
        let e = j.write(&key, &Entry::default()).unwrap_err();
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(!jdir.join("o@c2.json").exists());
    }

    #[test]
    fn entries_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(&dir.path().join("journal"));
        let key = CredKey::parse("o", "c").unwrap();
        let record = Record {
            refresh_token: Some(Secret::new("rt-new")),
            ..Default::default()
        };
        j.write(
            &key,
            &Entry {
                record: Some(record),
                at: "now".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let f = j.file(&key);
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(j.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let all = j.read_all().unwrap();
        assert_eq!(all.len(), 1);
        let record = all[0].1.record.as_ref().unwrap();
        assert_eq!(record.refresh_token.as_ref().unwrap().expose(), "rt-new");
        j.remove(&key).unwrap();
        j.remove(&key).unwrap();
        assert!(j.read_all().unwrap().is_empty());
    }

    #[test]
    fn a_blocked_journal_fails_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, "not a dir").unwrap();
        let j = Journal::new(&path);
        let key = CredKey::parse("o", "c").unwrap();
        assert!(
            j.write(
                &key,
                &Entry {
                    sent: Some("x".into()),
                    at: "now".into(),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use crate::secret::Secret;
    use proptest::prelude::*;

    const MARK: &str = "rt-SECRET-77b2c9";

    fn hex64() -> impl Strategy<Value = String> {
        "[0-9a-f]{64}"
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            proptest::option::of((hex64(), "[0-9a-f]{32}", any::<u32>(), any::<bool>())),
            proptest::option::of(("[A-Za-z0-9._~-]{1,80}", any::<u64>())),
            proptest::option::of((
                proptest::option::of(hex64()),
                any::<u64>(),
                any::<bool>(),
                proptest::collection::vec(hex64(), 0..3),
            )),
            proptest::option::of(hex64()),
            "\\PC{0,30}",
            proptest::option::of(("[A-Za-z0-9._~-]{1,80}", hex64())),
        )
            .prop_map(|(claim, record, base, dead, at, replaced)| Entry {
                replaced: replaced.map(|(rt, by)| Replaced {
                    record: Record {
                        refresh_token: Some(Secret::new(rt)),
                        ..Default::default()
                    },
                    by,
                    generation: None,
                }),
                claim: claim.map(|(fp, nonce, attempts, sent)| Note {
                    fp,
                    nonce,
                    attempts,
                    sent,
                }),
                record: record.map(|(rt, generation)| Record {
                    refresh_token: Some(Secret::new(rt)),
                    generation,
                    ..Default::default()
                }),
                base: base.map(|(fp, generation, login, via)| Base {
                    fp,
                    generation,
                    login,
                    via,
                }),
                dead,
                sent: None,
                at,
            })
    }

    /// A JSON value of any shape, with the mark somewhere in it.
    fn wrong_shape() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::json!(MARK)),
            Just(serde_json::json!([MARK])),
            Just(serde_json::json!({ "fp": MARK })),
            Just(serde_json::json!(7)),
        ]
    }

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_journal_entries_round_trip(e in entry()) {
            let bytes = crate::secret::to_json_wiped(&e).unwrap();
            let back: Entry = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, e);
        }

        #[test]
        fn prop_any_bytes_as_an_entry_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = serde_json::from_slice::<Entry>(&raw);
        }

        #[test]
        fn prop_a_bad_entry_is_reported_without_its_values(
            field in "claim|record|base|dead|at|generation",
            value in wrong_shape(),
        ) {
            let doc = if field == "generation" {
                serde_json::json!({ "record": { "refresh_token": "x", "generation": value } })
            } else {
                serde_json::json!({ field: value })
            };
            if let Err(e) = serde_json::from_value::<Entry>(doc) {
                let shown = crate::secret::json_error(&e);
                prop_assert!(!shown.contains(MARK), "{}", shown);
            }
        }

        #[test]
        fn prop_planted_file_names_never_escape_the_journal(name in "\\PC{0,40}") {
            // read_all takes an id only through OrgId/ClientId: a name that
            // parses is one a path can hold.
            if let Some((org, client)) = name.strip_suffix(".json").and_then(|s| s.split_once('@')) {
                if let (Ok(o), Ok(c)) = (OrgId::parse(org), ClientId::parse(client)) {
                    prop_assert!(!o.as_str().contains('/') && !c.as_str().contains('/'));
                    prop_assert!(!o.as_str().starts_with('.') && !c.as_str().starts_with('.'));
                }
            }
        }
    }
}

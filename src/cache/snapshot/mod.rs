//! The memory cache's access tokens, kept across a restart (`cache.snapshot`).
//!
//! Without it, every restart of an agent on the memory cache mints a new
//! token for every credential — one grant each, and for an `oauth_app` one
//! rotation of its single-use refresh token — although the tokens it held
//! were still valid. With it, the agent writes its tokens to a file and, at
//! start, takes back those the secret store still vouches for.
//!
//! * **What is written.** Each access token with its expiry, when it was
//!   minted, and the store generation of its credential when it was minted
//!   (docs/protocol.md rule 4: the generation goes up at every landing, `put`, login
//!   and delete). Never a refresh token, client secret or key: the file can
//!   give out nothing the agent would not hand out itself until the tokens
//!   expire. It is still a secret file: 0600, in a directory only this
//!   agent's user can write to, written atomically (temp file, fsync,
//!   rename, fsync of the directory).
//! * **When.** Every `cache.snapshot_interval` while the cache changes (not
//!   when nothing changed), at once after a credential's token is dropped
//!   (`delete`, `snykey cache clear`), and at shutdown after the grants in
//!   flight have landed. A SIGKILL loses what changed since the last write:
//!   those credentials are minted again at start, as without a snapshot.
//! * **What is taken back** ([`revives`], the rule): a token whose
//!   credential's record is in the store, not deleted, at the generation the
//!   token was minted at, and that stays valid for `refresh.min_validity`.
//!   A `put`, login or delete in between (by any agent, or by hand) moved
//!   the generation, so a token from before it is never served.
//! * **What is not trusted.** A file that is not a regular file, belongs to
//!   another user, can be read or written by group or others, was written
//!   for another store or Snyk region, or does not parse, is ignored with a
//!   warning (and overwritten by the next write).

mod keeper;

pub use keeper::Keeper;

use super::CachedToken;
use crate::credential::{CredKey, Record};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's `format` field: what it is, for whoever opens it.
const FORMAT: &str = "snykey access-token snapshot";
/// The layout's version; another one is ignored.
const VERSION: u32 = 1;
/// A larger file is not read (10 000 credentials with 1 KiB tokens take 12 MiB).
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// An access token the memory cache holds, with the store generation of its
/// credential when it was minted.
#[derive(Debug, Clone)]
pub struct Saved {
    pub key: CredKey,
    pub token: CachedToken,
    pub generation: u64,
}

/// The rule: is a saved token served again after a restart? Only if the
/// store still holds its credential (`stored`: the record read at start), not
/// deleted, at the very generation the token was minted at — a `put`, login
/// or delete since then moved it — and the token has more than
/// `min_validity` left at `now` (one with less would be replaced at once).
pub fn revives(
    generation: u64,
    expires_at: SystemTime,
    stored: Option<&Record>,
    now: SystemTime,
    min_validity: Duration,
) -> bool {
    let Some(record) = stored else {
        return false;
    };
    !record.deleted
        && record.generation == generation
        && expires_at
            .duration_since(now)
            .is_ok_and(|left| left > min_validity)
}

/// What a snapshot must have been written for: the same store (its
/// description) and the same Snyk region. A file written for others is
/// ignored: its generations and tokens mean nothing here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub store: String,
    pub api_url: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    #[serde(flatten)]
    origin: Origin,
    tokens: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    org_id: String,
    client_id: String,
    generation: u64,
    access_token: Secret,
    /// Unix seconds, rounded down (never later than the truth).
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_at: Option<u64>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(s: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(s))
}

/// Writes `tokens` to `path` atomically (0600; temp file, fsync, rename,
/// fsync of the directory). The bytes, which carry the tokens, are wiped
/// once written.
pub fn write(path: &Path, origin: &Origin, tokens: &[Saved]) -> Result<(), String> {
    let file = File {
        format: FORMAT.into(),
        version: VERSION,
        origin: origin.clone(),
        tokens: tokens
            .iter()
            .map(|s| Entry {
                org_id: s.key.org.to_string(),
                client_id: s.key.client.to_string(),
                generation: s.generation,
                access_token: s.token.access_token.clone(),
                expires_at: unix(s.token.expires_at),
                issued_at: s.token.issued_at.map(unix),
            })
            .collect(),
    };
    let bytes = crate::secret::to_json_wiped(&file)
        .map_err(|e| format!("cannot encode the token snapshot: {e}"))?;
    crate::store::file::write_atomically(path, &bytes).map_err(|e| e.to_string())
}

/// Reads the snapshot at `path`: `Ok(None)` when there is none, `Err` with
/// the reason it is not trusted (the caller warns and starts without it).
/// Tokens past their expiry and entries with invalid ids are left out.
pub fn read(path: &Path, origin: &Origin) -> Result<Option<Vec<Saved>>, String> {
    let Some(bytes) = read_private(path)? else {
        return Ok(None);
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "it is not a token snapshot ({})",
            crate::secret::json_error(&e)
        )
    })?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(format!(
            "it is not a token snapshot of this version (format {:?}, version {})",
            file.format.escape_debug().to_string(),
            file.version
        ));
    }
    if file.origin != *origin {
        return Err(format!(
            "it was written for another store or Snyk region ({} at {}, this agent uses {} at {})",
            file.origin.store.escape_debug(),
            file.origin.api_url.escape_debug(),
            origin.store,
            origin.api_url
        ));
    }
    let now = SystemTime::now();
    Ok(Some(
        file.tokens
            .into_iter()
            .filter_map(|e| {
                let key = CredKey::parse(&e.org_id, &e.client_id).ok()?;
                let expires_at = from_unix(e.expires_at).filter(|t| *t > now)?;
                Some(Saved {
                    key,
                    token: CachedToken {
                        access_token: e.access_token,
                        expires_at,
                        issued_at: e.issued_at.and_then(from_unix),
                    },
                    generation: e.generation,
                })
            })
            .collect(),
    ))
}

/// The file's bytes, if it is a regular file of this user that no one else
/// may read or write (checked on the open file: no race with a swap), in a
/// directory no one else can write to. A symlink is not followed.
fn read_private(path: &Path) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, String> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("/"));
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "it cannot be opened ({e}; a symlink is not followed)"
            ));
        }
    };
    crate::dirs::check_private_dir(dir, "the token snapshot's directory", "cache.snapshot_path")?;
    let meta = file
        .metadata()
        .map_err(|e| format!("it cannot be inspected ({e})"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    if meta.uid() != me {
        return Err(format!(
            "it belongs to uid {}, not to this agent's uid {me}",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "its mode is {:04o}: group or others may read or change it (the agent writes it 0600)",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_BYTES {
        return Err(format!("it is larger than {} MiB", MAX_BYTES >> 20));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(MAX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("it cannot be read ({e})"))?;
    Ok(Some(bytes))
}

/// Removes a snapshot left by an earlier run (`cache.snapshot = false`:
/// access tokens are not kept on disk). Absent is fine.
pub fn remove(path: &Path) -> Result<bool, String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests;

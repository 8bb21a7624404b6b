//! `[cache]`: where access tokens are kept (`cache.backend`), with the
//! memory cache's snapshot across restarts.

use crate::config::de;
use crate::config::keys::section;
use crate::secret::Secret;
use crate::urls::SecretUrl;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Which token cache (`cache.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    #[default]
    Memory,
    Redis,
}

section! {
    /// `[cache]`: where access tokens are kept.
    pub struct CacheConfig {
        keys {
            /// `memory` (this agent only) or `redis` (shared by every agent using it,
            /// so that one agent's refresh serves them all).
            #[key(check = "`memory` or `redis`", refuses = "memcached")]
            backend: CacheBackend = CacheBackend::Memory,
            /// The Redis server: `redis://[user:password@]host:port/db`, `rediss://` for
            /// TLS, `redis+unix:///path?db=N` or `unix://` for a local socket; Redis
            /// Sentinel as `redis+sentinel://[user:password@]host:26379[,host:26379…]/MASTER[/DB]`
            /// (`rediss+sentinel://` for TLS). A password in it is redacted wherever
            /// the URL is shown; prefer `username` and `password_file`.
            #[key(check = "one of the URL forms above", refuses = "http://redis:6379")]
            url: SecretUrl = SecretUrl::new("redis://127.0.0.1:6379/0"),
            /// The first part of every Redis key the agent writes
            /// (`{key_prefix}:{org_id}:{client_id}` holds an access token).
            #[key(check = "non-empty, without spaces or `:`", refuses = "snyk:")]
            key_prefix: String = "snyk".into(),
            /// The Redis ACL user, when it is not in `url`.
            #[key(
                default = "none",
                check = "any name; not together with a user or password in `url`"
            )]
            #[serde(with = "de::opt_string")]
            username: Option<String> = None,
            /// A file holding the Redis password. A relative path names a systemd
            /// credential under `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
            #[key(
                default = "none",
                check = "absolute, or relative with `$CREDENTIALS_DIRECTORY` set; the file can be read, is not empty and is not writable by group or others; not together with a user or password in `url`, nor with a `unix://` URL",
                refuses = "redis-password"
            )]
            #[serde(with = "de::opt_path")]
            password_file: Option<PathBuf> = None,
            /// Keeps the memory cache's access tokens across a restart: they are
            /// written to `snapshot_path` (never a refresh token or secret), and at
            /// start a token is served again only if its credential's record is
            /// still at the generation the token was minted at and the token has more
            /// than `refresh.min_validity` left; a `put`, login or delete in between
            /// moves the generation, so its token is minted again. Without it every
            /// restart mints a new token for every credential (one grant each, a
            /// rotation of each refresh token). On by default: the file holds nothing
            /// the agent would not hand out itself until the tokens expire, beside
            /// the store or journal that hold refresh tokens. Not used with `backend = "redis"`,
            /// whose tokens outlive the agent anyway, nor with `store.kv_version = 1`,
            /// which keeps no generation across a delete; a snapshot left from a run
            /// that used it is removed then.
            #[key(check = "`true` or `false`", refuses = "often")]
            snapshot: bool = true,
            /// How often the snapshot is written while tokens change (never while
            /// nothing changes; at once after a token is dropped, and at shutdown). A
            /// SIGKILL or crash loses the tokens minted in the last interval: they are
            /// minted again at start. Each write rewrites the whole file (about 150
            /// bytes plus the token per credential) with an fsync.
            #[key(check = "a duration from 1s to 1h", refuses = "0s")]
            #[serde(with = "de::duration")]
            snapshot_interval: Duration = Duration::from_secs(5),
            /// The snapshot file: created 0600, replaced atomically. A file that is
            /// not this user's regular file, that group or others may read or write,
            /// that was written for another store or Snyk region, or that does not
            /// parse, is ignored with a warning (and replaced by the next write).
            #[key(
                default = "`access-tokens.snapshot` beside the file store's document (`store.path`), or in `store.journal_dir` with OpenBao: a directory this agent alone uses",
                check = "an absolute path; a file found there is read only if it is this user's regular file, with no group or other permissions, in a directory group and others cannot write to",
                refuses = "access-tokens.snapshot"
            )]
            snapshot_path: PathBuf = PathBuf::new(),
        }
        derived {
            /// The password read from `password_file`.
            password: Option<Secret> = None,
        }
    }
}

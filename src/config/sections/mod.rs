//! The `[section]` tables of the configuration as serde structs: the one
//! place a key is declared, with everything `docs/configuration.md` says about
//! it beside the field ([`section!`](super::keys), which also generates each
//! struct's `KEYS`, `changed` and `keep_live`, so that the key table, the
//! environment overrides, `check-config`, reloads and the reference cannot
//! drift apart).
//!
//! Values here are as given (an empty string is "not given"); `check.rs`
//! fills in the defaults that depend on other keys or on the environment.

use super::de;
use super::keys::section;
use crate::secret::Secret;
use crate::urls::SecretUrl;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The keys whose values are secrets: an error about one never shows its
/// value (every other value is shown, with what is secret in it redacted:
/// see [`crate::urls::shown_value`]).
pub(crate) const SECRET_KEYS: &[(&str, &str)] = &[("store", "token")];

/// Which token cache (`cache.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    #[default]
    Memory,
    Redis,
}

/// Which secret store (`store.backend`; `vault` is accepted for `openbao`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    File,
    #[serde(alias = "vault")]
    OpenBao,
}

/// How the agent logs in to OpenBao (`store.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaoAuth {
    #[default]
    Token,
    AppRole,
    Kubernetes,
}

section! {
    /// `[server]`: the agent's socket and who may use it, the listeners, the
    /// audit log, logging and shutdown.
    pub struct ServerConfig {
        keys {
            /// The agent's Unix socket, created with `socket_mode` when it is bound. A
            /// missing directory is created 0700; an existing one that group or others
            /// may write to is refused (unless `allow_shared_dirs`). Under socket
            /// activation (`snykey.socket`) the socket systemd passes is used instead.
            #[key(
                default = "`$SNYKEY_SOCKET`, else `$RUNTIME_DIRECTORY/snykey.sock`, else `$XDG_RUNTIME_DIR/snykey/snykey.sock`, else `/run/snykey/snykey.sock`",
                check = "an absolute path whose directory exists or can be created",
                refuses = "run/snykey.sock"
            )]
            socket: PathBuf = PathBuf::new(),
            /// The socket file's mode, applied through the umask as it is bound, so
            /// there is no moment with looser permissions.
            #[key(
                check = "an octal mode (`\"0660\"`, or `660` written as a number) of at most 0777 in which the owner may read and write",
                refuses = "0400"
            )]
            #[serde(with = "de::mode")]
            socket_mode: u32 = 0o660,
            /// The uids allowed on the socket, read from each connection with
            /// `SO_PEERCRED`. With both allow-lists empty, whoever can open the socket
            /// file may use it. The agent's own uid is always allowed. A refused peer
            /// gets 403 `peer_not_allowed`.
            #[key(check = "a list of uids (whole numbers)", refuses = "root", live = true)]
            allowed_uids: Vec<u32> = Vec::new(),
            /// The gids allowed on the socket: a peer's primary group or any of its
            /// supplementary groups (`SO_PEERGROUPS`), so a pod's `fsGroup` works.
            #[key(check = "a list of gids (whole numbers)", refuses = "wheel", live = true)]
            allowed_gids: Vec<u32> = Vec::new(),
            /// Where the browser's OAuth redirect is received, on loopback. It is bound
            /// only while a login started on this agent is pending, and closed 30 s
            /// after the last one ended; a port another program holds is reported to
            /// whoever starts the login (503 `callback_unavailable`). Port 0 picks a
            /// free port (`redirect_uri` cannot be given then).
            #[key(
                check = "an address like `127.0.0.1:8080` on loopback (127.0.0.1 or [::1]): the redirect carries an authorization code",
                refuses = "0.0.0.0:8080"
            )]
            #[serde(with = "de::addr")]
            callback_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
            /// A TCP address that serves `GET /metrics` and `GET /v1/health` only (the
            /// socket serves them too).
            #[key(
                default = "none: no TCP listener",
                check = "empty, or an address like `127.0.0.1:9464`; one beyond loopback only with `metrics_allow_remote = true`",
                refuses = "0.0.0.0:9464"
            )]
            #[serde(with = "de::opt_addr")]
            metrics_listen: Option<SocketAddr> = None,
            /// Allows a `metrics_listen` address beyond loopback. Metrics name no
            /// credential, but such a listener is open to whoever reaches the host.
            #[key(check = "`true` or `false`", refuses = "maybe")]
            metrics_allow_remote: bool = false,
            /// Accepts a socket, store or journal directory, a secret file or the CA
            /// certificate that group or others may write to, with a warning, instead
            /// of refusing to start. A Kubernetes `emptyDir` is 0777 and a non-root
            /// agent cannot change it; anything in the pod could then replace what is
            /// in it.
            #[key(check = "`true` or `false`", refuses = "maybe")]
            allow_shared_dirs: bool = false,
            /// The redirect URI sent to Snyk in a browser login; the Snyk App must be
            /// registered with it. Give it only to use `localhost` or the path
            /// `/v1/callback`: otherwise it follows `callback_listen`.
            #[key(
                default = "`http://{callback_listen}/authorization-code/callback`",
                check = "a loopback `http://` URL that reaches `callback_listen` (the same address, or `localhost` for 127.0.0.1 and [::1]; the same port) at `/authorization-code/callback` or `/v1/callback`",
                refuses = "http://127.0.0.1:9/authorization-code/callback"
            )]
            redirect_uri: String = String::new(),
            /// How long requests in flight may take to finish after SIGTERM. Grants
            /// already sent to Snyk are waited for apart from this (up to twice
            /// `snyk.timeout` plus 10 s), so that the tokens they bring are kept.
            #[key(check = "a duration", refuses = "soon")]
            #[serde(with = "de::duration")]
            shutdown_grace: Duration = Duration::from_secs(10),
            /// How long a browser login stays valid; after it, its state is refused
            /// and `snykey login` exits 75.
            #[key(check = "a duration between 1s and 1h", refuses = "2h")]
            #[serde(with = "de::duration")]
            login_timeout: Duration = Duration::from_secs(600),
            /// The log filter, in tracing's syntax (`info`, `snykey=debug,warn`).
            /// `--log-level` and `$SNYKEY_LOG` override it; a reload then leaves the
            /// filter alone.
            #[key(
                check = "a tracing filter (empty means `info`)",
                refuses = "snykey=[",
                live = true
            )]
            log_level: String = "info".into(),
            /// Written into the store's claims while this agent sends a refresh token,
            /// and named in messages about them. Informational: agents recognise their
            /// own claims by a random nonce.
            #[key(
                default = "`<hostname>:<socket path>`",
                check = "at most 200 printable characters",
                refuses = "a\u{7}b"
            )]
            agent_id: String = String::new(),
            /// The directories `[[sink]]` token files may be written in (their real
            /// paths, symlinks resolved).
            #[key(
                default = "the socket's directory",
                check = "a list of absolute paths",
                refuses = "relative/dir"
            )]
            sink_dirs: Vec<PathBuf> = Vec::new(),
            /// The uids that may change things: put, delete and revoke credentials,
            /// clear a cached token, log in, register apps, manage service accounts,
            /// reload the configuration, and run `snykey doctor`'s store write check.
            /// The agent's own uid always may; while `admin_uids` and `admin_gids` are
            /// both empty, root may too. Every other peer on the socket may only read
            /// tokens (and `[[access]]` tables narrow which).
            #[key(check = "a list of uids (whole numbers)", refuses = "admin", live = true)]
            admin_uids: Vec<u32> = Vec::new(),
            /// Groups whose members (by primary or supplementary group) are admins
            /// like the uids in `admin_uids`.
            #[key(check = "a list of gids (whole numbers)", refuses = "admins", live = true)]
            admin_gids: Vec<u32> = Vec::new(),
            /// A hash-chained JSON-lines audit file: admin operations, refusals, grants
            /// at Snyk and the first hand-out of each token to each peer; never a
            /// secret. Created 0600; a reload reopens it (for logrotate); `snykey
            /// audit verify` checks the chain.
            #[key(
                default = "none: no audit log",
                check = "empty, or an absolute path to a regular file (created when missing) in a directory that exists or can be created",
                refuses = "audit.log",
                live = true
            )]
            #[serde(with = "de::opt_path")]
            audit_log: Option<PathBuf> = None,
        }
        derived {}
    }
}

section! {
    /// `[snyk]`: the Snyk region the agent talks to.
    pub struct SnykConfig {
        keys {
            /// The Snyk region's API: `https://api.snyk.io` (US-01),
            /// `https://api.eu.snyk.io`, `https://api.au.snyk.io`,
            /// `https://api.us.snyk.io` or `https://api.snykgov.io`. An access token is
            /// valid in its region only; the helper hands this URL to tools as
            /// `SNYK_API`. It is the default: a credential put or logged in with
            /// its own `--api-url` (stored with it) uses that region instead.
            #[key(
                check = "an `https://` URL with a host and no query, fragment or credentials (a trailing slash is dropped); `http://` only to a loopback host",
                refuses = "http://api.snyk.io"
            )]
            api_url: String = super::DEFAULT_API_URL.into(),
            /// Snyk's web app, where a browser login is sent (a login with its own
            /// `--api-url` goes to that region's app: `api.` replaced by `app.`).
            #[key(
                default = "`api_url` with `api.` replaced by `app.`",
                check = "as for `api_url`",
                refuses = "ftp://app.snyk.io"
            )]
            app_url: String = String::new(),
            /// The version of Snyk's REST API used to register apps and manage service
            /// accounts.
            #[key(
                check = "a date like `2024-10-15`, optionally with `~beta` or `~experimental`",
                refuses = "2024-10"
            )]
            rest_version: String = "2024-10-15".into(),
            /// How long one call to Snyk may take. A grant whose answer did not come in
            /// time may have consumed the refresh token it sent: it is handled as an
            /// answer lost in transit.
            #[key(check = "a duration of at least 1s", refuses = "0")]
            #[serde(with = "de::duration")]
            timeout: Duration = Duration::from_secs(30),
        }
        derived {}
    }
}

impl SnykConfig {
    pub fn is_default_region(&self) -> bool {
        self.api_url == super::DEFAULT_API_URL
    }
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

section! {
    /// `[store]`: where refresh tokens and client secrets are kept.
    pub struct StoreConfig {
        keys {
            /// `file` (one JSON document on a local disk, for one agent) or `openbao`
            /// (an OpenBao or Vault KV engine, which a fleet of agents can share;
            /// `vault` is read as `openbao`).
            #[key(check = "`file`, `openbao` or `vault`", refuses = "s3")]
            backend: StoreBackend = StoreBackend::File,
            /// The file store's document (`backend = "file"`): created 0600, replaced
            /// atomically, and locked so that two agents cannot share it.
            #[key(
                default = "`$STATE_DIRECTORY/credentials.json`, else `$XDG_STATE_HOME/snykey/credentials.json`, else `/var/lib/snykey/credentials.json` (root) or `~/.local/state/snykey/credentials.json`",
                check = "an absolute path; an existing file is a regular file with no group or other permissions, in a directory that exists or can be created",
                refuses = "credentials.json"
            )]
            path: PathBuf = PathBuf::new(),
            /// The recovery journal: a rotated refresh token is written and fsync'd
            /// here before anything else, and stays until the store holds it. It must
            /// be on a local disk that only this agent uses.
            #[key(
                default = "beside a file store given its own `path`, else `journal` in the state directory (as for `path`)",
                check = "an absolute path to a directory that exists or can be created",
                refuses = "journal"
            )]
            journal_dir: PathBuf = PathBuf::new(),
            // A URL with credentials is refused, so none of these can carry a
            // password; and each is a `SecretUrl`, so a log line could not show one.
            /// The OpenBao address, or the nodes of one Raft cluster as a list
            /// (comma-separated in a variable); the agent talks to the active node and
            /// follows it.
            #[key(
                default = "`$BAO_ADDR`, else `$VAULT_ADDR`, else `\"http://127.0.0.1:8200\"`",
                check = "`http(s)://` URLs with a host and no query, fragment or credentials",
                refuses = "bao.internal:8200"
            )]
            #[serde(with = "de::addrs")]
            addrs as "addr": Vec<SecretUrl> = Vec::new(),
            /// How the agent logs in to OpenBao: `token` (`token`, `token_file` or
            /// `$BAO_TOKEN`), `approle` (`role_id_file` and `secret_id_file`) or
            /// `kubernetes` (`kubernetes_role` and the pod's service-account token). It
            /// renews its token, and logs in again when the token is refused.
            #[key(
                check = "`token`, `approle` or `kubernetes`; with `backend = \"openbao\"`, `approle` needs `role_id_file` and `secret_id_file`",
                refuses = "ldap"
            )]
            auth: BaoAuth = BaoAuth::Token,
            /// An OpenBao token for `auth = "token"`. Prefer `token_file`: this one sits
            /// in the config file or the environment. Never shown: `check-config`
            /// prints `[redacted]`, and no error quotes it.
            #[key(
                default = "`$BAO_TOKEN`, else `$VAULT_TOKEN`, else none",
                check = "with `backend = \"openbao\"` and `auth = \"token\"`, this, `token_file` or `$BAO_TOKEN` is required"
            )]
            #[serde(with = "de::opt_secret")]
            token: Option<Secret> = None,
            /// A file holding the OpenBao token for `auth = "token"`, read again
            /// whenever the agent logs in again. A relative path names a systemd
            /// credential under `$CREDENTIALS_DIRECTORY`.
            #[key(
                default = "none",
                check = "absolute, or relative with `$CREDENTIALS_DIRECTORY` set (no `.` or `..`); when used, the file can be read, is not empty and is not writable by group or others",
                refuses = "bao-token"
            )]
            #[serde(with = "de::opt_path")]
            token_file: Option<PathBuf> = None,
            /// The AppRole role id, from a file (`auth = "approle"`; relative: a
            /// systemd credential).
            #[key(
                default = "none",
                check = "as for `token_file`",
                refuses = "role-id"
            )]
            #[serde(with = "de::opt_path")]
            role_id_file: Option<PathBuf> = None,
            /// The AppRole secret id, from a file (`auth = "approle"`; relative: a
            /// systemd credential).
            #[key(
                default = "none",
                check = "as for `token_file`",
                refuses = "secret-id"
            )]
            #[serde(with = "de::opt_path")]
            secret_id_file: Option<PathBuf> = None,
            /// The OpenBao role the agent logs in as with `auth = "kubernetes"`.
            #[key(check = "any name")]
            kubernetes_role: String = "snykey".into(),
            /// The pod's service-account token (a projected volume mounted into the
            /// agent's container only) for `auth = "kubernetes"`; relative: a systemd
            /// credential.
            #[key(check = "as for `token_file`", refuses = "jwt")]
            kubernetes_jwt_file: PathBuf = "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            /// Where the auth method is mounted in OpenBao.
            #[key(
                default = "`approle` or `kubernetes`, after `auth`",
                check = "any path"
            )]
            auth_mount: String = String::new(),
            /// The KV secrets engine's mount.
            #[key(
                check = "a non-empty path without empty, `.` or `..` segments (slashes at either end are dropped)",
                refuses = "kv/../sys"
            )]
            mount: String = "kv".into(),
            /// The KV engine's version. Only KV v2 has check-and-set, which keeps agents
            /// sharing the store from ever sending one refresh token twice; with 1 the
            /// agent says so at start, in `check-config` and in `/v1/ready`.
            #[key(check = "1 or 2", refuses = "3")]
            kv_version: u8 = 2,
            /// Where the records live under the mount:
            /// `{mount}/data/{prefix}/{org_id}/{client_id}` on KV v2,
            /// `{mount}/{prefix}/{org_id}/{client_id}` on KV v1.
            #[key(check = "as for `mount`", refuses = "..")]
            prefix: String = "snyk".into(),
            /// The CA certificate (PEM) that OpenBao's TLS certificate is checked
            /// against.
            #[key(
                default = "`$BAO_CACERT`, else `$VAULT_CACERT`, else the system's CA certificates",
                check = "with `backend = \"openbao\"`: a readable file holding a PEM certificate, not writable by group or others",
                refuses = "/nonexistent/snykey-ca.pem"
            )]
            #[serde(with = "de::opt_path")]
            ca_cert: Option<PathBuf> = None,
            /// Says that no other agent uses this store and prefix: while the store
            /// refuses writes, this agent then keeps rotating refresh tokens with its
            /// recovery journal as the durable copy (state `degraded`) and lands the
            /// newest in the store when it takes writes again. Two agents that both
            /// set it on one store are not protected from each other. Always true for
            /// the file store.
            #[key(check = "`true` or `false`", refuses = "sometimes")]
            exclusive: bool = false,
        }
        derived {
            /// The first of `addrs` (what one-node deployments and messages use).
            addr: SecretUrl = SecretUrl::default(),
        }
    }
}

impl StoreConfig {
    /// `store.exclusive`, always true for the file store.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive || self.backend == StoreBackend::File
    }
}

section! {
    /// `[refresh]`: when access tokens are minted.
    pub struct RefreshConfig {
        keys {
            /// How long a token handed out stays valid at least, when the caller names
            /// no `min_validity`. A caller may ask for more; more than half a token's
            /// lifetime is read as "the freshest token".
            #[key(check = "a duration of at most 24h", refuses = "25h", live = true)]
            #[serde(with = "de::duration")]
            min_validity: Duration = Duration::from_secs(300),
            /// How far each credential's refresh time is moved at random, as a fraction
            /// of `at`, so that credentials created together spread out.
            #[key(check = "a number from 0 to 0.5", refuses = "0.7", live = true)]
            jitter: f64 = 0.1,
            /// When to refresh, as the fraction of a token's lifetime that has passed
            /// (and never so late that a caller asking for `min_validity` would find it
            /// too old).
            #[key(check = "a number between 0 and 1, both excluded", refuses = "1", live = true)]
            at: f64 = 0.67,
            /// At most one forced refresh (`snykey refresh`, `snykey-helper --refresh`)
            /// per credential per this interval; forced requests inside it get the
            /// token the last one minted.
            #[key(check = "a duration", refuses = "soon", live = true)]
            #[serde(with = "de::duration")]
            force_interval: Duration = crate::broker::force::DEFAULT_INTERVAL,
        }
        derived {}
    }
}

section! {
    /// `[publish]`: access tokens published for jobs that cannot reach the
    /// socket (CI jobs on hosted runners): each credential's current token
    /// at `{mount}/{prefix}/{org_id}/{client_id}` on the store's OpenBao (a
    /// KV v2 mount), which a job reads with its own platform identity
    /// (OpenBao's JWT auth: `snykey token --from-openbao`, vault-action).
    pub struct PublishConfig {
        keys {
            /// The path under `mount` tokens are published at, e.g.
            /// `snyk-tokens`; empty (the default) turns publishing off. Never
            /// inside `store.prefix`: jobs read published paths, never records.
            #[key(
                default = "empty: publishing is off",
                check = "a path as for `store.mount`; publishing needs `store.backend = \"openbao\"` with `kv_version = 2`, and a prefix beside (not inside or around) `store.prefix` on the same mount",
                refuses = "snyk"
            )]
            prefix: String = String::new(),
            /// The KV v2 mount tokens are published on.
            #[key(
                default = "`store.mount`",
                check = "as for `store.mount`",
                refuses = "a/../b"
            )]
            mount: String = String::new(),
            /// A published token always has at least this long left: the
            /// proactive refresh publishes the next one before, and one that
            /// cannot be replaced in time is withdrawn.
            #[key(check = "a duration from 1s to 24h", refuses = "0s")]
            #[serde(with = "de::duration")]
            min_validity: Duration = Duration::from_secs(900),
            /// The credentials published, as `ORG_ID/CLIENT_ID` or `ORG_ID/*`;
            /// empty (the default): every credential.
            #[key(
                default = "empty: every credential",
                check = "each `ORG_ID/CLIENT_ID` or `ORG_ID/*`",
                refuses = "no-slash"
            )]
            credentials: Vec<String> = Vec::new(),
        }
        derived {
            /// `credentials`, parsed.
            patterns: Vec<crate::access::Pattern> = Vec::new(),
        }
    }
}

impl PublishConfig {
    /// Is publishing on (`prefix` given)?
    pub fn enabled(&self) -> bool {
        !self.prefix.is_empty()
    }
}

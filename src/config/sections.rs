//! The `[section]` tables (SPEC §7's five, and `[publish]`) as serde-derived structs: the one
//! place a key is declared. Each struct's `KEYS` (the TOML key names) and
//! `changed` (the keys whose values differ, by `PartialEq`) are generated from
//! the same field list by [`section!`], so the key table, the environment
//! overrides, `check-config` and SIGHUP cannot drift apart.
//!
//! Values here are as given (an empty string is "not given"); `check.rs`
//! fills in the defaults that depend on other keys or on the environment.

use super::de;
use crate::secret::Secret;
use crate::urls::SecretUrl;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Declares a section struct. Fields under `keys` are TOML keys (named by
/// the field, or by `as "key"` where the Rust name differs); fields under
/// `derived` are computed by validation, never read nor printed.
macro_rules! section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            keys { $( $(#[$fmeta:meta])* $field:ident $(as $key:literal)? : $ty:ty, )* }
            derived { $( $(#[$dmeta:meta])* $dfield:ident : $dty:ty, )* }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* $(#[serde(rename = $key)])? pub $field: $ty, )*
            $( $(#[$dmeta])* #[serde(skip)] pub $dfield: $dty, )*
        }

        impl $name {
            /// The TOML keys of this section, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$(section!(@key $field $($key)?)),*];

            /// The keys whose values differ between `self` and `other`.
            pub fn changed(&self, other: &Self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$field != other.$field { keys.push(section!(@key $field $($key)?)); } )*
                keys
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
}

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
    /// `[server]`: the socket, who may use it, the listeners.
    pub struct ServerConfig {
        keys {
            /// Default `$SNYKEY_SOCKET`, `$XDG_RUNTIME_DIR/snykey/snykey.sock`, ….
            socket: PathBuf,
            #[serde(with = "de::mode")]
            socket_mode: u32,
            allowed_uids: Vec<u32>,
            allowed_gids: Vec<u32>,
            #[serde(with = "de::addr")]
            callback_listen: SocketAddr,
            #[serde(with = "de::opt_addr")]
            metrics_listen: Option<SocketAddr>,
            /// `metrics_listen` may be a non-loopback address only when this is set:
            /// metrics name no credential, but the listener is open to the network.
            metrics_allow_remote: bool,
            /// Accept socket, store and journal directories that group or others can
            /// write to (a Kubernetes emptyDir), with a warning (see `crate::dirs`).
            allow_shared_dirs: bool,
            /// Default `http://{callback_listen}/authorization-code/callback`.
            redirect_uri: String,
            /// How long in-flight requests may take to finish on shutdown.
            #[serde(with = "de::duration")]
            shutdown_grace: Duration,
            /// How long a browser login's state stays valid.
            #[serde(with = "de::duration")]
            login_timeout: Duration,
            /// Log filter (tracing syntax); `--log-level` and `SNYKEY_LOG` override
            /// it. SIGHUP applies a changed value.
            log_level: String,
            /// Shown in store claims (SPEC §2); default `<hostname>:<socket path>`.
            agent_id: String,
            /// Directories `[[sink]]` files may be written in; default: the socket's.
            sink_dirs: Vec<PathBuf>,
            /// Who may PUT/DELETE/log in/… (issue 17); default: the agent's uid and root.
            admin_uids: Vec<u32>,
            admin_gids: Vec<u32>,
            /// The hash-chained audit file; `None` when off.
            #[serde(with = "de::opt_path")]
            audit_log: Option<PathBuf>,
        }
        derived {}
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket: PathBuf::new(),
            socket_mode: 0o660,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            callback_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            metrics_allow_remote: false,
            allow_shared_dirs: false,
            redirect_uri: String::new(),
            shutdown_grace: Duration::from_secs(10),
            login_timeout: Duration::from_secs(600),
            log_level: "info".into(),
            agent_id: String::new(),
            sink_dirs: Vec::new(),
            admin_uids: Vec::new(),
            admin_gids: Vec::new(),
            audit_log: None,
        }
    }
}

section! {
    /// `[snyk]`: the region and the REST API version.
    pub struct SnykConfig {
        keys {
            /// Without a trailing slash, e.g. `https://api.eu.snyk.io`.
            api_url: String,
            /// Default: `api_url` with `api.` replaced by `app.`.
            app_url: String,
            rest_version: String,
            /// Timeout of one call to Snyk.
            #[serde(with = "de::duration")]
            timeout: Duration,
        }
        derived {}
    }
}

impl Default for SnykConfig {
    fn default() -> Self {
        SnykConfig {
            api_url: super::DEFAULT_API_URL.into(),
            app_url: String::new(),
            rest_version: "2024-10-15".into(),
            timeout: Duration::from_secs(30),
        }
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
            backend: CacheBackend,
            /// As given; may hold an ACL password, so its type redacts it.
            url: SecretUrl,
            key_prefix: String,
            /// The Redis ACL user, when not in the URL.
            #[serde(with = "de::opt_string")]
            username: Option<String>,
            /// The Redis password from a file (relative: a systemd credential).
            #[serde(with = "de::opt_path")]
            password_file: Option<PathBuf>,
        }
        derived {
            /// The password read from `password_file`.
            password: Option<Secret>,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            url: SecretUrl::new("redis://127.0.0.1:6379/0"),
            key_prefix: "snyk".into(),
            username: None,
            password_file: None,
            password: None,
        }
    }
}

section! {
    /// `[store]`: where refresh tokens and client secrets are kept.
    pub struct StoreConfig {
        keys {
            backend: StoreBackend,
            /// The file backend's document.
            path: PathBuf,
            /// The recovery journal of rotated refresh tokens (SPEC §2 step 4).
            journal_dir: PathBuf,
            /// Every node of the OpenBao cluster (`store.addr` as a TOML array, or
            /// comma-separated); the agent follows the active one. A URL with
            /// credentials is refused, so none of these can carry a password;
            /// and each is a [`SecretUrl`], so a log line could not show one.
            #[serde(with = "de::addrs")]
            addrs as "addr": Vec<SecretUrl>,
            auth: BaoAuth,
            /// Also `BAO_TOKEN` / `VAULT_TOKEN`; printed as `[redacted]`.
            #[serde(with = "de::opt_secret")]
            token: Option<Secret>,
            #[serde(with = "de::opt_path")]
            token_file: Option<PathBuf>,
            #[serde(with = "de::opt_path")]
            role_id_file: Option<PathBuf>,
            #[serde(with = "de::opt_path")]
            secret_id_file: Option<PathBuf>,
            kubernetes_role: String,
            kubernetes_jwt_file: PathBuf,
            auth_mount: String,
            mount: String,
            kv_version: u8,
            prefix: String,
            /// Also `BAO_CACERT` / `VAULT_CACERT`.
            #[serde(with = "de::opt_path")]
            ca_cert: Option<PathBuf>,
            /// SPEC §2 rule 7: this agent is the only one using this store prefix,
            /// so it may rotate with the journal as its durable copy while the
            /// store refuses writes. The file store always is (see `is_exclusive`).
            exclusive: bool,
        }
        derived {
            /// The first of `addrs` (what one-node deployments and messages use).
            addr: SecretUrl,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::File,
            path: PathBuf::new(),
            journal_dir: PathBuf::new(),
            addrs: Vec::new(),
            auth: BaoAuth::Token,
            token: None,
            token_file: None,
            role_id_file: None,
            secret_id_file: None,
            kubernetes_role: "snykey".into(),
            kubernetes_jwt_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            auth_mount: String::new(),
            mount: "kv".into(),
            kv_version: 2,
            prefix: "snyk".into(),
            ca_cert: None,
            exclusive: false,
            addr: SecretUrl::default(),
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
            /// Default for GET when the caller names none.
            #[serde(with = "de::duration")]
            min_validity: Duration,
            jitter: f64,
            /// Refresh when this fraction of a token's lifetime has passed.
            at: f64,
            /// At most one forced refresh per credential per this interval.
            #[serde(with = "de::duration")]
            force_interval: Duration,
        }
        derived {}
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            min_validity: Duration::from_secs(300),
            jitter: 0.1,
            at: 0.67,
            force_interval: crate::broker::force::DEFAULT_INTERVAL,
        }
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
            prefix: String,
            /// The KV v2 mount; default `store.mount`.
            mount: String,
            /// A published token always has at least this long left: the
            /// proactive refresh publishes the next one before, and one that
            /// cannot be replaced in time is withdrawn.
            #[serde(with = "de::duration")]
            min_validity: Duration,
            /// The credentials published, as `ORG_ID/CLIENT_ID` or `ORG_ID/*`;
            /// empty (the default): every credential.
            credentials: Vec<String>,
        }
        derived {
            /// `credentials`, parsed.
            patterns: Vec<crate::access::Pattern>,
        }
    }
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            prefix: String::new(),
            mount: String::new(),
            min_validity: Duration::from_secs(900),
            credentials: Vec::new(),
            patterns: Vec::new(),
        }
    }
}

impl PublishConfig {
    /// Is publishing on (`prefix` given)?
    pub fn enabled(&self) -> bool {
        !self.prefix.is_empty()
    }
}

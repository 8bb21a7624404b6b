//! `[store]`: where refresh tokens and client secrets are kept (`file` or
//! `openbao`), with how the agent logs in to OpenBao and the recovery journal.

use crate::config::de;
use crate::config::keys::section;
use crate::secret::Secret;
use crate::urls::SecretUrl;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

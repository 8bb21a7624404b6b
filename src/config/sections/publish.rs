//! `[publish]`: access tokens published for jobs that cannot reach the
//! socket.

use crate::config::de;
use crate::config::keys::section;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

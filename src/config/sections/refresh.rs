//! `[refresh]`: when access tokens are minted.

use crate::config::de;
use crate::config::keys::section;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

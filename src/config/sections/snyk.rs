//! `[snyk]`: the Snyk region the agent talks to.

use crate::config::de;
use crate::config::keys::section;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
            api_url: String = crate::config::DEFAULT_API_URL.into(),
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
        self.api_url == crate::config::DEFAULT_API_URL
    }
}

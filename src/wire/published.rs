//! What the agent publishes for jobs that cannot reach its socket (`[publish]`,
//! README "Tokens for jobs on other machines: publishing"): the data of the
//! KV v2 secret at `{publish.mount}/{publish.prefix}/{org_id}/{client_id}`,
//! which a job reads with `snykey token --from-openbao`, `hashicorp/vault-action`,
//! GitLab's `secrets: vault` or `bao kv get`.
//!
//! Only what a job needs to call Snyk: never a refresh token, a client secret
//! or a store token. Every version of the secret is one of two shapes: a
//! token (`access_token`, `expires_at`, `api_url`, `org_id`, `generation`),
//! or a marker saying why there is none (`withdrawn`, `org_id`, `generation`).
//! The tests at the bottom pin both.

pub use crate::credential::Withdrawn;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// One version of a published secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedToken {
    /// The Snyk OAuth access token: sent as `Authorization: Bearer …` (the
    /// Snyk CLI reads it from `SNYK_OAUTH_TOKEN`). Absent from a marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret>,
    /// When the token stops working, RFC 3339 in UTC, whole seconds (rounded
    /// down). The agent publishes a token only while it has at least
    /// `publish.min_validity` left, and replaces or withdraws it before it
    /// has less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The Snyk API the token is valid at (`SNYK_API` for the Snyk CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The credential's organization (`SNYK_CFG_ORG` for the Snyk CLI).
    pub org_id: String,
    /// The credential's store generation the token was minted at (docs/protocol.md:
    /// up at every rotation, put, login and delete, never down). Agents
    /// order what they publish by it, then by `expires_at`: a record is only
    /// ever replaced by a newer one. Not a secret.
    #[serde(default)]
    pub generation: u64,
    /// Set when no token is published, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<Withdrawn>,
}

impl PublishedToken {
    /// `expires_at` as a time (`None` when absent or not RFC 3339).
    pub fn expiry(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339(self.expires_at.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_published_token_and_a_marker_are_pinned() {
        let token = PublishedToken {
            access_token: Some(Secret::new("at")),
            expires_at: Some("2026-01-01T00:00:00Z".into()),
            api_url: Some("https://api.eu.snyk.io".into()),
            org_id: "o".into(),
            generation: 7,
            withdrawn: None,
        };
        let v = serde_json::to_value(&token).unwrap();
        assert_eq!(
            v,
            json!({"access_token": "at", "expires_at": "2026-01-01T00:00:00Z",
                   "api_url": "https://api.eu.snyk.io", "org_id": "o", "generation": 7})
        );
        assert_eq!(serde_json::from_value::<PublishedToken>(v).unwrap(), token);
        assert_eq!(
            token.expiry(),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600))
        );
        let marker = PublishedToken {
            org_id: "o".into(),
            generation: 9,
            withdrawn: Some(Withdrawn::Deleted),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&marker).unwrap(),
            json!({"org_id": "o", "generation": 9, "withdrawn": "deleted"})
        );
        // A newer agent's reason, and fields it adds, still read.
        let newer: PublishedToken = serde_json::from_value(
            json!({"org_id": "o", "generation": 10, "withdrawn": "moved", "region": "eu"}),
        )
        .unwrap();
        assert_eq!(newer.withdrawn, Some(Withdrawn::Unknown));
    }
}

//! The words every layer shares: a credential's [`CredKey`], its [`Kind`]
//! and [`State`], and the [`Record`] the secret store keeps for it.
//!
//! The API parses ids into a [`CredKey`] once per request; the broker, the
//! store, the cache and the journal take nothing else. The wire contract
//! ([`crate::wire`]) names `Kind` and `State` as they are here (snake_case
//! JSON); the store keeps `Record` in docs/storage.md's field names.

use crate::ids::{ClientId, IdError, OrgId};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The credential kinds (docs/storage.md, `kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[default]
    OauthApp,
    ClientSecret,
    PrivateKeyJwt,
    /// A service account's Snyk API key (`auth_type = api_key`): handed out
    /// as it is, never refreshed (it does not expire).
    ApiKey,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OauthApp => "oauth_app",
            Kind::ClientSecret => "client_secret",
            Kind::PrivateKeyJwt => "private_key_jwt",
            Kind::ApiKey => "api_key",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "oauth_app" => Some(Kind::OauthApp),
            "client_secret" => Some(Kind::ClientSecret),
            "private_key_jwt" => Some(Kind::PrivateKeyJwt),
            "api_key" => Some(Kind::ApiKey),
            _ => None,
        }
    }
}

/// A credential's state in this agent (docs/api.md `state`, plus `pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Stored, and no access token minted for it yet by this agent (its
    /// first grant has not succeeded: Snyk unreachable at `PUT`, or the
    /// agent has just loaded it). Leaves for `ok` with the first token.
    Pending,
    Ok,
    Refreshing,
    Degraded,
    NeedsLogin,
}

impl State {
    /// Every state, in the order status and metrics list them.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Ok,
        State::Refreshing,
        State::Degraded,
        State::NeedsLogin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Ok => "ok",
            State::Refreshing => "refreshing",
            State::Degraded => "degraded",
            State::NeedsLogin => "needs_login",
        }
    }
}

/// Why a token published for jobs (`[publish]`, `wire::published`) is not
/// there: what the marker a published secret holds instead says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawn {
    /// The credential was deleted (`snykey delete`). Nothing minted before
    /// the delete is published again.
    Deleted,
    /// A `put` replaced the credential and its first token is not minted
    /// yet: the token of the credential it replaced is not handed out.
    Superseded,
    /// The agent could not get a new token before the published one had
    /// less than `publish.min_validity` left. A new token replaces the marker.
    Stale,
    /// A reason a newer agent wrote that this one does not know.
    #[serde(other)]
    Unknown,
}

impl Withdrawn {
    pub fn as_str(self) -> &'static str {
        match self {
            Withdrawn::Deleted => "deleted",
            Withdrawn::Superseded => "superseded",
            Withdrawn::Stale => "stale",
            Withdrawn::Unknown => "unknown",
        }
    }

    /// What it means for a job, in a sentence.
    pub fn explain(self) -> &'static str {
        match self {
            Withdrawn::Deleted => "the credential was deleted from the agent",
            Withdrawn::Superseded => {
                "the credential was replaced (snykey put) and its first token is not minted yet"
            }
            Withdrawn::Stale => {
                "the agent could not refresh it in time (is it running, and can it reach Snyk?)"
            }
            Withdrawn::Unknown => {
                "withdrawn by a newer agent for a reason this version does not know"
            }
        }
    }
}

/// One credential: the pair that names it everywhere.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct CredKey {
    pub org: OrgId,
    pub client: ClientId,
}

impl CredKey {
    pub fn parse(org: &str, client: &str) -> Result<CredKey, IdError> {
        Ok(CredKey {
            org: OrgId::parse(org)?,
            client: ClientId::parse(client)?,
        })
    }
}

impl CredKey {
    /// The scratch record's key `snykey doctor` round-trips (see
    /// [`crate::ids::SCRATCH_ORG`]): no request can name it.
    pub fn scratch() -> CredKey {
        let (org, client) = crate::ids::scratch_ids();
        CredKey { org, client }
    }
}

impl fmt::Display for CredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.client)
    }
}

/// One credential's secrets, as stored (docs/storage.md field names).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Absent in records written by the seed service: read as `oauth_app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_pem: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `api_key`: the service account's Snyk API key (Snyk shows it once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// The Snyk region's API this credential lives in (`https://api.eu.snyk.io`,
    /// checked as `snyk.api_url` is). Absent (records of older agents, or a
    /// credential put or logged in without one): the agent's `snyk.api_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// docs/protocol.md rule 4: goes up by one at every landing, login and put; never down.
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "lenient_u64"
    )]
    pub generation: u64,
    /// SHA-256 (hex) of the refresh token this one replaced (rule 8: a second
    /// `put` of an already rotated token is recognised by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_fp: Option<String>,
    /// `needs_login` with its reason, when Snyk refused the stored token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RecordState>,
    /// SHA-256s of the last refresh tokens given to `PUT` (at most
    /// [`PUT_HISTORY`]): a token put again on another host, even after a
    /// login replaced its chain, is recognised as spent (rule 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub put_fps: Vec<String>,
    /// Present while an agent may be sending the stored refresh token (rule 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// A tombstone (rule 10): written by check-and-set when the credential is
    /// deleted, so that a landing in flight cannot bring the credential back;
    /// KV v2 and the file store keep it (with its generation) after the delete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// How many put tokens a record remembers.
pub const PUT_HISTORY: usize = 16;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// KV stores written by other tools may hold numbers as strings.
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Text(t) => t
            .parse()
            .map_err(|_| serde::de::Error::custom("generation is not a whole number")),
    }
}

/// The state a record can carry (docs/storage.md `state`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordState {
    /// Always `needs_login` today.
    pub name: String,
    pub reason: String,
}

impl RecordState {
    pub fn needs_login(reason: &str) -> RecordState {
        RecordState {
            name: "needs_login".into(),
            reason: reason.to_string(),
        }
    }
}

/// An agent's claim on the stored refresh token (docs/protocol.md rule 3; docs/storage.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claim {
    /// SHA-256 (hex) of the claimed refresh token.
    pub fp: String,
    /// 128 random bits, hex; the claim is "mine" only if my journal holds it.
    pub nonce: String,
    /// `server.agent_id` of the claimant: informational, ids may collide.
    pub agent: String,
    /// Sends of this token whose outcome may have consumed it, this one included.
    pub attempts: u32,
    /// RFC 3339, informational: agents time claims on their own monotonic clocks.
    pub deadline: String,
}

impl Record {
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::OauthApp)
    }

    /// Does this record hold exactly this refresh token?
    pub fn holds(&self, digest: &str) -> bool {
        self.refresh_token
            .as_ref()
            .is_some_and(|t| t.digest() == digest)
    }

    /// Remembers `fps` besides its own put history (newest last, bounded).
    pub fn remember_puts(&mut self, fps: &[String]) {
        for fp in fps {
            if !self.put_fps.contains(fp) {
                self.put_fps.push(fp.clone());
            }
        }
        let extra = self.put_fps.len().saturating_sub(PUT_HISTORY);
        self.put_fps.drain(..extra);
    }

    pub fn needs_login(&self) -> Option<&str> {
        self.state
            .as_ref()
            .filter(|s| s.name == "needs_login")
            .map(|s| s.reason.as_str())
    }
}

/// What `PUT /v1/credentials` gives for one credential, its ids parsed.
#[derive(Debug)]
pub struct NewCredential {
    pub key: CredKey,
    pub kind: Kind,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub private_key_pem: Option<Secret>,
    pub key_id: Option<String>,
    pub api_key: Option<Secret>,
    /// The credential's region, checked ([`crate::snyk::region`]); `None`:
    /// the agent's `snyk.api_url`.
    pub api_url: Option<String>,
}

/// What the agent shows about one credential (`GET /v1/credentials`): no secrets.
#[derive(Debug, Clone)]
pub struct Summary {
    pub key: CredKey,
    pub kind: Kind,
    pub state: State,
    pub expires_at: Option<std::time::SystemTime>,
    pub next_refresh_at: Option<std::time::SystemTime>,
    pub last_refresh_at: Option<std::time::SystemTime>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// The credential's own region, when its record names one.
    pub api_url: Option<String>,
    /// How publishing its token for jobs goes (`[publish]`), if it is published.
    pub published: Option<Published>,
}

/// How publishing one credential's token for jobs goes, as this agent last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The KV path jobs read.
    pub path: String,
    /// The expiry of the token the path holds.
    pub expires_at: Option<std::time::SystemTime>,
    /// The marker the path holds instead of a token.
    pub withdrawn: Option<Withdrawn>,
    /// Failed attempts in a row to write it.
    pub failures: u32,
    pub last_error: Option<String>,
}

/// Where a browser login stands (`GET /v1/login/{state}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    Pending,
    Complete,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_named_org_slash_client_and_refuses_bad_ids() {
        let key = CredKey::parse("o-1", "c.2").unwrap();
        assert_eq!(key.to_string(), "o-1/c.2");
        assert_eq!(key.org.as_str(), "o-1");
        let e = CredKey::parse("o", "../x").unwrap_err();
        assert_eq!(e.field, "client_id");
        assert!(CredKey::parse("", "c").is_err());
    }

    #[test]
    fn a_seed_record_without_kind_is_an_oauth_app() {
        let r: Record = serde_json::from_str(r#"{"refresh_token":"x"}"#).unwrap();
        assert_eq!(r.kind(), Kind::OauthApp);
        assert_eq!(r.generation, 0);
    }
}

//! `snykey token --from-openbao`: a job's side of publishing (`[publish]`).
//!
//! A CI job on a machine that shares no socket with an agent logs in to
//! OpenBao with its **own platform identity** — OpenBao's JWT auth method,
//! with a JWT from a file (a Kubernetes service-account token), from GitHub
//! Actions' OIDC provider (`$ACTIONS_ID_TOKEN_REQUEST_URL` and `_TOKEN`, with an
//! audience), or from a GitLab CI `id_tokens` variable — reads the one
//! published path its role's policy allows, and revokes the OpenBao token it
//! got at once. It holds no long-lived secret, sends nothing to Snyk, and
//! shows the OpenBao token nowhere. A published token with less validity
//! left than asked is refused (exit 75), never handed on.
//!
//! `jwt` gets the job's JWT, `bao` speaks to OpenBao (login, read,
//! revoke); this file holds the request, what a job may use of the record
//! read, and why not.

use crate::credential::{CredKey, Withdrawn};
use crate::exit;
use crate::secret::Secret;
use crate::wire::published::PublishedToken;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
mod bao;
mod jwt;

use bao::{client, login, read, revoke};
use jwt::jwt;

/// Where the job's JWT comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSource {
    /// A file holding it (a Kubernetes projected service-account token, or
    /// one a CI system wrote).
    File(PathBuf),
    /// An environment variable holding it (GitLab CI's `id_tokens: NAME:`).
    Env(String),
    /// GitHub Actions' OIDC provider: `$ACTIONS_ID_TOKEN_REQUEST_URL` with
    /// `$ACTIONS_ID_TOKEN_REQUEST_TOKEN` (a workflow with `permissions:
    /// id-token: write`), for `audience` (GitHub's default when `None`).
    GitHub { audience: Option<String> },
}

/// Everything one read needs.
#[derive(Debug, Clone)]
pub struct Request {
    /// OpenBao's address (`https://openbao.example:8200`), checked by [`base_url`].
    pub addr: String,
    /// A PEM CA file to trust for OpenBao (besides the system's).
    pub ca_cert: Option<PathBuf>,
    /// The JWT auth method's mount (`jwt`).
    pub auth_mount: String,
    /// The JWT auth role; `None`: the method's `default_role`.
    pub role: Option<String>,
    pub jwt: JwtSource,
    /// The KV v2 mount and the agent's `publish.prefix`.
    pub mount: String,
    pub prefix: String,
    /// The published token must have at least this long left.
    pub min_validity: Duration,
    /// One HTTP call (to OpenBao or GitHub).
    pub timeout: Duration,
}

/// What a job reads: a token with at least the validity it asked for.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub access_token: Secret,
    /// RFC 3339, as published.
    pub expires_at: String,
    pub api_url: Option<String>,
    pub org_id: String,
}

/// Why there is no token; each maps to an exit code ([`FetchError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The command line or the job's setup cannot work (64).
    #[error("{0}")]
    Usage(String),
    /// OpenBao refused the login or the read (77).
    #[error("{0}")]
    Refused(String),
    /// Nothing published for this credential, or it was deleted (66).
    #[error("{0}")]
    NotFound(String),
    /// OpenBao (or GitHub's token endpoint) cannot be reached (69).
    #[error("{0}")]
    Unreachable(String),
    /// Try again later: too little validity left, a withdrawn token, a
    /// sealed or failing OpenBao (75).
    #[error("{0}")]
    Temporary(String),
}

impl FetchError {
    pub fn exit_code(&self) -> i32 {
        match self {
            FetchError::Usage(_) => exit::USAGE,
            FetchError::Refused(_) => exit::NO_PERM,
            FetchError::NotFound(_) => exit::NO_INPUT,
            FetchError::Unreachable(_) => exit::UNAVAILABLE,
            FetchError::Temporary(_) => exit::TEMP_FAIL,
        }
    }
}

/// `addr` as a base URL without a trailing slash: http(s) only, no
/// credentials, no query.
pub fn base_url(addr: &str) -> Result<String, String> {
    let shown = crate::urls::shown_value(addr);
    let url = url::Url::parse(addr.trim())
        .map_err(|e| format!("the OpenBao address {shown:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "the OpenBao address {shown:?} must be http:// or https:// with a host"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(format!(
            "the OpenBao address {shown:?} must not carry credentials or a query"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// What [`fetch`] ends with: the token (or why not), and whether the
/// OpenBao token the job got was revoked (its TTL ends it anyway).
#[derive(Debug)]
pub struct Outcome {
    pub token: Result<Fetched, FetchError>,
    /// `Err` says why it could not be revoked; `Ok` also when there was no
    /// OpenBao token (the login failed).
    pub revoked: Result<(), String>,
}

/// Logs in, reads `key`'s published token, revokes the OpenBao token.
pub async fn fetch(req: &Request, key: &CredKey) -> Outcome {
    match login_and_read(req, key).await {
        Ok((token, revoked)) => Outcome {
            token: token.and_then(|p| {
                judge(
                    p,
                    &published_path(req, key),
                    req.min_validity,
                    SystemTime::now(),
                )
            }),
            revoked,
        },
        Err(e) => Outcome {
            token: Err(e),
            revoked: Ok(()),
        },
    }
}

/// The path jobs read (`kv/snyk-tokens/ORG_ID/CLIENT_ID`), as a policy names it
/// without `data/`.
pub fn published_path(req: &Request, key: &CredKey) -> String {
    format!("{}/{}/{}/{}", req.mount, req.prefix, key.org, key.client)
}

/// The login and the read (`Err`: no OpenBao token was had), then the revocation.
async fn login_and_read(
    req: &Request,
    key: &CredKey,
) -> Result<(Result<PublishedToken, FetchError>, Result<(), String>), FetchError> {
    let base = base_url(&req.addr).map_err(FetchError::Usage)?;
    for (what, v) in [
        ("--auth-mount", &req.auth_mount),
        ("--mount", &req.mount),
        ("--prefix", &req.prefix),
    ] {
        check_segments(what, v)?;
    }
    let http = client(req)?;
    let jwt = jwt(&http, &req.jwt).await?;
    let token = login(&http, &base, req, &jwt).await?;
    drop(jwt);
    let path = published_path(req, key);
    let read = read(&http, &base, &token, req, key, &path).await;
    // The OpenBao token is of no use after the read: revoked at once
    // (its TTL ends it anyway if this fails).
    let revoked = revoke(&http, &base, &token).await;
    Ok((read, revoked))
}

/// The published record as a job may use it, or why not.
fn judge(
    p: PublishedToken,
    path: &str,
    min_validity: Duration,
    now: SystemTime,
) -> Result<Fetched, FetchError> {
    if let Some(why) = p.withdrawn {
        let message = format!("no token is published at {path}: {}", why.explain());
        return Err(match why {
            Withdrawn::Deleted => FetchError::NotFound(message),
            _ => FetchError::Temporary(message),
        });
    }
    let (Some(access_token), Some(expires)) = (p.access_token.clone(), p.expiry()) else {
        return Err(FetchError::Temporary(format!(
            "{path} holds no published token (no access_token or expires_at): is an agent with [publish] on managing this credential?"
        )));
    };
    if access_token.is_empty() {
        return Err(FetchError::Temporary(format!(
            "{path} holds an empty access token"
        )));
    }
    let left = expires.duration_since(now).unwrap_or(Duration::ZERO);
    if left < min_validity {
        return Err(FetchError::Temporary(format!(
            "the token published at {path} has {}s left, less than the {}s asked for (--min-validity): the agent publishing it has not refreshed it in time (is it running, and can it reach Snyk? `snykey status` on its host); try again shortly",
            left.as_secs(),
            min_validity.as_secs()
        )));
    }
    Ok(Fetched {
        access_token,
        expires_at: p.expires_at.unwrap_or_default(),
        api_url: p.api_url.filter(|u| !u.is_empty()),
        org_id: p.org_id,
    })
}

fn check_segments(what: &str, v: &str) -> Result<(), FetchError> {
    let ok = !v.is_empty()
        && v.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(FetchError::Usage(format!(
            "{what} {:?} must be a path of letters, digits, '-', '_' and '.'",
            crate::urls::shown_value(v)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(left: u64, now: SystemTime) -> PublishedToken {
        PublishedToken {
            access_token: Some(Secret::new("at-1")),
            expires_at: Some(crate::clock::rfc3339(now + Duration::from_secs(left))),
            api_url: Some("https://api.eu.snyk.io".into()),
            org_id: "o".into(),
            generation: 3,
            withdrawn: None,
        }
    }

    #[test]
    fn a_token_with_less_than_the_asked_validity_is_refused_as_temporary() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ok = judge(
            published(900, now),
            "kv/t/o/c",
            Duration::from_secs(300),
            now,
        )
        .unwrap();
        assert_eq!(ok.access_token.expose(), "at-1");
        assert_eq!(ok.api_url.as_deref(), Some("https://api.eu.snyk.io"));
        let e = judge(
            published(200, now),
            "kv/t/o/c",
            Duration::from_secs(300),
            now,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains("200s left"), "{e}");
        assert!(!e.to_string().contains("at-1"));
    }

    #[test]
    fn a_withdrawn_token_says_why_and_a_deleted_credential_is_not_found() {
        let now = SystemTime::now();
        let marker = |why| PublishedToken {
            org_id: "o".into(),
            generation: 4,
            withdrawn: Some(why),
            ..Default::default()
        };
        let e = judge(marker(Withdrawn::Deleted), "p", Duration::ZERO, now).unwrap_err();
        assert_eq!(e.exit_code(), 66);
        assert!(e.to_string().contains("deleted"), "{e}");
        let e = judge(marker(Withdrawn::Stale), "p", Duration::ZERO, now).unwrap_err();
        assert_eq!(e.exit_code(), 75);
        let e = judge(PublishedToken::default(), "p", Duration::ZERO, now).unwrap_err();
        assert_eq!(e.exit_code(), 75);
    }

    #[test]
    fn an_address_with_credentials_or_another_scheme_is_refused_without_showing_them() {
        assert_eq!(
            base_url("https://bao.example:8200/").unwrap(),
            "https://bao.example:8200"
        );
        let e = base_url("https://u:pw-9f2e@bao.example").unwrap_err();
        assert!(!e.contains("pw-9f2e"), "{e}");
        assert!(base_url("ftp://bao.example").is_err());
        assert!(base_url("bao.example:8200").is_err());
        assert!(check_segments("--prefix", "snyk-tokens").is_ok());
        assert!(check_segments("--prefix", "a/../b").is_err());
        assert!(check_segments("--mount", "kv?x=1").is_err());
    }
}

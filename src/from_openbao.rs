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

use crate::credential::{CredKey, Withdrawn};
use crate::exit;
use crate::secret::Secret;
use crate::snyk::WithoutUrlRef;
use crate::wire::published::PublishedToken;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

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

fn client(req: &Request) -> Result<reqwest::Client, FetchError> {
    let mut b = reqwest::Client::builder()
        .timeout(req.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = &req.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            FetchError::Usage(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            FetchError::Usage(format!(
                "the CA file {} holds no PEM certificate: {e}",
                path.display()
            ))
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| {
        FetchError::Temporary(format!("cannot build the HTTP client: {}", transport(&e)))
    })
}

/// The job's JWT, from where it was asked for.
async fn jwt(http: &reqwest::Client, source: &JwtSource) -> Result<Secret, FetchError> {
    let jwt = match source {
        JwtSource::File(path) => Secret::new(std::fs::read_to_string(path).map_err(|e| {
            FetchError::Usage(format!("cannot read the JWT file {}: {e}", path.display()))
        })?),
        JwtSource::Env(name) => Secret::new(std::env::var(name).map_err(|_| {
            FetchError::Usage(format!(
                "${name} is not set: in GitLab CI, declare it under the job's id_tokens (`id_tokens: {{{name}: {{aud: ...}}}}`)"
            ))
        })?),
        JwtSource::GitHub { audience } => github_token(http, audience.as_deref()).await?,
    };
    if jwt.is_empty() {
        return Err(FetchError::Usage("the JWT is empty".into()));
    }
    Ok(jwt)
}

/// GitHub Actions' OIDC token for `audience`.
async fn github_token(
    http: &reqwest::Client,
    audience: Option<&str>,
) -> Result<Secret, FetchError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (Some(url), Some(bearer)) = (
        var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").map(Secret::new),
    ) else {
        return Err(FetchError::Usage(
            "$ACTIONS_ID_TOKEN_REQUEST_URL and $ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: run in GitHub Actions with `permissions: id-token: write` on the job".into(),
        ));
    };
    let mut url = url::Url::parse(&url).map_err(|e| {
        FetchError::Usage(format!("$ACTIONS_ID_TOKEN_REQUEST_URL is not a URL ({e})"))
    })?;
    if let Some(aud) = audience {
        url.query_pairs_mut().append_pair("audience", aud);
    }
    let host = url.host_str().unwrap_or("GitHub").to_string();
    let answer = http
        .get(url)
        .header("Authorization", format!("bearer {}", bearer.expose()))
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            FetchError::Unreachable(format!(
                "cannot get the GitHub OIDC token from {host}: {}",
                transport(&e)
            ))
        })?;
    let status = answer.status().as_u16();
    let body = answer.bytes().await.map_err(|e| {
        FetchError::Unreachable(format!(
            "the GitHub OIDC token answer from {host} broke off: {}",
            transport(&e)
        ))
    })?;
    if status != 200 {
        let err = format!("GitHub's OIDC provider ({host}) answered {status}");
        return Err(if (400..500).contains(&status) {
            FetchError::Refused(format!(
                "{err}: does the job have `permissions: id-token: write`?"
            ))
        } else {
            FetchError::Temporary(err)
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        value: Secret,
    }
    serde_json::from_slice::<Answer>(&body)
        .map(|a| a.value)
        .map_err(|e| {
            FetchError::Temporary(format!(
                "GitHub's OIDC token answer is not {{\"value\": JWT}}: {}",
                crate::secret::json_error(&e)
            ))
        })
}

/// OpenBao's JWT login: the client token, never shown.
async fn login(
    http: &reqwest::Client,
    base: &str,
    req: &Request,
    jwt: &Secret,
) -> Result<Secret, FetchError> {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        jwt: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<&'a str>,
    }
    let body = Body {
        jwt: jwt.expose(),
        role: req.role.as_deref(),
    };
    let url = format!("{base}/v1/auth/{}/login", req.auth_mount);
    let (status, answer) = call(http.post(&url).json(&body), base).await?;
    if status != 200 {
        let errors = errors_of(&answer);
        return Err(match status {
            400 | 401 | 403 => FetchError::Refused(format!(
                "OpenBao refused the JWT login at auth/{} ({status}: {errors}): check --role{} and that the role's bound_claims, bound_audiences and user_claim match this job's token",
                req.auth_mount,
                req.role
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            404 => FetchError::Usage(format!(
                "OpenBao has no JWT auth method at auth/{} ({errors}): check --auth-mount",
                req.auth_mount
            )),
            _ => bao_unavailable(status, &errors),
        });
    }
    #[derive(Deserialize)]
    struct Auth {
        client_token: Secret,
    }
    #[derive(Deserialize)]
    struct Answer {
        auth: Auth,
    }
    let token = serde_json::from_slice::<Answer>(&answer)
        .map(|a| a.auth.client_token)
        .map_err(|e| {
            FetchError::Temporary(format!(
                "OpenBao's login answer carried no client token: {}",
                crate::secret::json_error(&e)
            ))
        })?;
    if token.is_empty() {
        return Err(FetchError::Refused(
            "OpenBao's login answer carried an empty client token".into(),
        ));
    }
    Ok(token)
}

/// The published record at `path`.
async fn read(
    http: &reqwest::Client,
    base: &str,
    token: &Secret,
    req: &Request,
    key: &CredKey,
    path: &str,
) -> Result<PublishedToken, FetchError> {
    let url = format!(
        "{base}/v1/{}/data/{}/{}/{}",
        req.mount, req.prefix, key.org, key.client
    );
    let (status, answer) =
        call(http.get(&url).header("X-Vault-Token", token.expose()), base).await?;
    match status {
        200 => {}
        403 => {
            return Err(FetchError::Refused(format!(
                "OpenBao refused to read {path} ({}): the role{}'s policy does not allow this job to read this credential's token",
                errors_of(&answer),
                req.role
                    .as_deref()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            )));
        }
        404 => {
            return Err(FetchError::NotFound(format!(
                "nothing is published at {path}: check --mount and --prefix (the agent's publish.mount and publish.prefix), and that an agent with [publish] manages {key}"
            )));
        }
        _ => return Err(bao_unavailable(status, &errors_of(&answer))),
    }
    #[derive(Deserialize)]
    struct Data {
        data: PublishedToken,
    }
    #[derive(Deserialize)]
    struct Answer {
        data: Data,
    }
    serde_json::from_slice::<Answer>(&answer)
        .map(|a| a.data.data)
        .map_err(|e| {
            FetchError::Temporary(format!(
                "{path} does not hold a published token ({}): is it written by snykey's [publish]?",
                crate::secret::json_error(&e)
            ))
        })
}

async fn revoke(http: &reqwest::Client, base: &str, token: &Secret) -> Result<(), String> {
    let url = format!("{base}/v1/auth/token/revoke-self");
    match call(
        http.post(&url).header("X-Vault-Token", token.expose()),
        base,
    )
    .await
    {
        Ok((204 | 200, _)) => Ok(()),
        Ok((status, answer)) => Err(format!("OpenBao answered {status}: {}", errors_of(&answer))),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends one request to OpenBao: its status and body (at most 1 MiB).
async fn call(rb: reqwest::RequestBuilder, base: &str) -> Result<(u16, Vec<u8>), FetchError> {
    const MAX: usize = 1024 * 1024;
    let mut answer = rb.send().await.map_err(|e| {
        FetchError::Unreachable(format!("cannot reach OpenBao at {base}: {}", transport(&e)))
    })?;
    let status = answer.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| {
        FetchError::Unreachable(format!("OpenBao's answer broke off: {}", transport(&e)))
    })? {
        if body.len() + chunk.len() > MAX {
            return Err(FetchError::Temporary(
                "OpenBao's answer is larger than 1 MiB".into(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn bao_unavailable(status: u16, errors: &str) -> FetchError {
    if status == 503 && errors.to_ascii_lowercase().contains("sealed") {
        FetchError::Temporary("OpenBao is sealed: try again once it is unsealed".into())
    } else {
        FetchError::Temporary(format!("OpenBao answered {status}: {errors}"))
    }
}

/// OpenBao's `errors`, short and printable (a server decides what it sends).
fn errors_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => crate::store::openbao::error_text(&e.errors),
        _ => "no error message".into(),
    }
}

/// A transport error's chain, without the URL (never a secret in it, but
/// short).
fn transport(e: &reqwest::Error) -> String {
    let mut out = e.without_url_ref();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
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

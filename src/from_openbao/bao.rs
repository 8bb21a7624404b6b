//! OpenBao's side of a job's read: the HTTP client, the JWT login, the read
//! of one published path, the revocation of the job's OpenBao token, and
//! OpenBao's answers as [`FetchError`]s.

use super::{FetchError, Request};
use crate::credential::CredKey;
use crate::secret::Secret;
use crate::snyk::WithoutUrlRef;
use crate::wire::published::PublishedToken;
use serde::Deserialize;

pub(super) fn client(req: &Request) -> Result<reqwest::Client, FetchError> {
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

/// OpenBao's JWT login: the client token, never shown.
pub(super) async fn login(
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
pub(super) async fn read(
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

pub(super) async fn revoke(
    http: &reqwest::Client,
    base: &str,
    token: &Secret,
) -> Result<(), String> {
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
pub(super) fn transport(e: &reqwest::Error) -> String {
    let mut out = e.without_url_ref();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

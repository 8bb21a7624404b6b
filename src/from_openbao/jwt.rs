//! The job's JWT for OpenBao's JWT auth: from a file, a variable, or GitHub
//! Actions' OIDC provider.

use super::bao::transport;
use super::{FetchError, JwtSource};
use crate::secret::Secret;
use serde::Deserialize;

/// The job's JWT, from where it was asked for.
pub(super) async fn jwt(http: &reqwest::Client, source: &JwtSource) -> Result<Secret, FetchError> {
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

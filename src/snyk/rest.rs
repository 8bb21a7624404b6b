//! Snyk's REST API (JSON:API): app registration (and, beside it, service
//! accounts). Errors come back as one clear sentence; 429 is honoured.

use crate::secret::Secret;
use serde_json::{Value, json};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum RestError {
    #[error("Snyk refused the request (HTTP {status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("Snyk is unavailable (HTTP {status}): {detail}")]
    Unavailable { status: u16, detail: String },
    #[error("cannot reach Snyk: {0}")]
    Unreachable(String),
    #[error("Snyk's answer was not understood: {0}")]
    Protocol(String),
}

/// The Snyk REST client of one region.
#[derive(Clone)]
pub struct SnykRest {
    http: reqwest::Client,
    api_url: String,
    version: String,
}

/// One sentence from a JSON:API error document.
fn error_sentence(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let first = &v["errors"][0];
    let text = first["detail"]
        .as_str()
        .or(first["title"].as_str())
        .or(v["message"].as_str())
        .or(v["error"].as_str());
    let text = text.map(|t| {
        t.chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect::<String>()
    });
    text.unwrap_or_else(|| format!("HTTP {status}"))
}

impl SnykRest {
    pub fn new(
        api_url: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<SnykRest, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("snykey/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(SnykRest {
            http,
            api_url: api_url.to_string(),
            version: version.to_string(),
        })
    }

    /// Sends a JSON:API request with `Authorization: token ...`; retries once
    /// on 429 when Snyk asks for a short wait.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth_token: &Secret,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        let url = format!("{}/rest{path}", self.api_url);
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .query(&[("version", self.version.as_str())])
                .header(
                    reqwest::header::AUTHORIZATION,
                    format!("token {}", auth_token.expose()),
                )
                .header(reqwest::header::ACCEPT, "application/vnd.api+json");
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/vnd.api+json")
                    .body(b.to_string());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| RestError::Unreachable(e.without_url().to_string()))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| RestError::Unreachable(e.without_url().to_string()))?;
            if (200..300).contains(&status) {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes)
                    .map_err(|e| RestError::Protocol(e.to_string()));
            }
            if status == 429 && attempt == 0 && retry_after.is_some_and(|s| s <= 10) {
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                continue;
            }
            let detail = error_sentence(status, &bytes);
            return Err(if status == 429 || status >= 500 {
                RestError::Unavailable { status, detail }
            } else {
                RestError::Refused { status, detail }
            });
        }
        Err(RestError::Unavailable {
            status: 429,
            detail: "rate limited".into(),
        })
    }

    /// `POST /rest/orgs/{org_id}/apps/creations`: registers a Snyk App and
    /// returns its client id and secret.
    pub async fn create_app(
        &self,
        org_id: &str,
        auth_token: &Secret,
        name: &str,
        scopes: &[String],
        redirect_uris: &[String],
        context: &str,
    ) -> Result<(String, Secret), RestError> {
        let body = json!({"data": {"type": "app", "attributes": {
            "name": name, "scopes": scopes, "redirect_uris": redirect_uris, "context": context
        }}});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/orgs/{org_id}/apps/creations"),
                auth_token,
                Some(&body),
            )
            .await?;
        let attrs = &v["data"]["attributes"];
        let client_id = attrs["client_id"]
            .as_str()
            .ok_or_else(|| RestError::Protocol("no client_id in the app creation answer".into()))?;
        let secret = attrs["client_secret"].as_str().ok_or_else(|| {
            RestError::Protocol("no client_secret in the app creation answer".into())
        })?;
        Ok((client_id.to_string(), Secret::new(secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_become_one_sentence() {
        let body = br#"{"jsonapi":{"version":"1.0"},"errors":[{"status":"403","title":"Forbidden","detail":"You do not have permission to create apps in this org"}]}"#;
        assert_eq!(
            error_sentence(403, body),
            "You do not have permission to create apps in this org"
        );
        assert_eq!(error_sentence(500, b"oops"), "HTTP 500");
    }
}

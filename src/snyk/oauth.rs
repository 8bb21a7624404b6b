//! Snyk's OAuth endpoints: `{api_url}/oauth2/token` and `{api_url}/oauth2/revoke`.
//!
//! The one thing callers must get right is what an error means for the refresh
//! token that was sent (SPEC §2), so [`GrantError`] says exactly that:
//! * [`GrantError::Permanent`]: Snyk refused the grant for good (`invalid_grant`,
//!   `token_inactive`, failed client authentication): the credential needs a login.
//! * [`GrantError::Refused`] / [`GrantError::Unavailable`] / [`GrantError::Unreachable`]:
//!   Snyk did not consume the token (it answered with an error, or we never got
//!   the request to it); it may be sent again after backoff.
//! * [`GrantError::Unknown`]: the request may have been processed and the answer
//!   lost (timeout, dropped connection, garbled 200). The only safe move is to
//!   send the same token once more.

use crate::secret::Secret;
use serde::Deserialize;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A successful token endpoint answer.
#[derive(Debug)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    pub token_type: String,
    pub scope: Option<String>,
    /// The rotated refresh token (`oauth_app` only). The one that was sent is dead from now on.
    pub refresh_token: Option<Secret>,
    pub refresh_expires_in: Option<Duration>,
}

#[derive(Debug, Error, Clone)]
pub enum GrantError {
    // No remedy here: the broker's needs_login message names it once.
    #[error("Snyk refused the credential ({error}{})", desc(.description))]
    Permanent {
        error: String,
        description: Option<String>,
    },
    #[error("Snyk rejected the request with HTTP {status} ({error}{})", desc(.description))]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("Snyk is unavailable (HTTP {status}){}", retry(.retry_after))]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot reach Snyk at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("Snyk's answer was lost ({message}); it may or may not have processed the request")]
    Unknown { timed_out: bool, message: String },
}

fn desc(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
}

fn retry(r: &Option<Duration>) -> String {
    r.map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl GrantError {
    /// Did Snyk certainly not consume the refresh token that was sent?
    pub fn token_not_consumed(&self) -> bool {
        !matches!(
            self,
            GrantError::Unknown { .. } | GrantError::Permanent { .. }
        )
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, GrantError::Permanent { .. })
    }

    /// Did Snyk refuse the request itself as malformed (RFC 6749 §5.2:
    /// `invalid_request` — a missing client secret, say — or
    /// `unsupported_grant_type`, `invalid_scope`)? Nothing was consumed, but
    /// the same request gets the same answer: only a change of the record
    /// (a put, a login) can help, so it is not retried until then.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            GrantError::Refused { error, .. }
                if matches!(error.as_str(), "invalid_request" | "unsupported_grant_type" | "invalid_scope")
        )
    }

    /// Did Snyk refuse the client's authentication (`invalid_client`,
    /// `unauthorized_client`: a wrong or revoked client secret)? RFC 6749
    /// §5.2: the client is authenticated before the grant is looked at, so
    /// the refresh token sent with it was not consumed; the same request
    /// gets the same answer until the secret changes.
    pub fn refuses_client(&self) -> bool {
        matches!(
            self,
            GrantError::Permanent { error, .. }
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client")
        )
    }

    /// How long Snyk asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GrantError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    token_type: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
    #[serde(default)]
    refresh_expires_in: Option<serde_json::Value>,
}

/// The longest lifetime believed from Snyk (an absurd `expires_in` must not
/// overflow the clock or keep a dead token for years).
const MAX_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// `expires_in` as Snyk may send it: a whole number, a float or a numeric
/// string. Missing or unreadable: an hour (Snyk's lifetime). Never above
/// [`MAX_LIFETIME`]; 0 stays 0 (the scheduler has a floor of its own).
fn lifetime(v: Option<&serde_json::Value>) -> Duration {
    let secs = match v {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::from_secs_f64(s.min(MAX_LIFETIME.as_secs_f64()))
        }
        _ => Duration::from_secs(3600),
    }
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
}

/// Client for the token and revoke endpoints of one Snyk region.
#[derive(Clone)]
pub struct SnykOAuth {
    http: reqwest::Client,
    token_url: String,
    revoke_url: String,
}

impl SnykOAuth {
    /// Every request this client makes carries a secret (a refresh token,
    /// a client secret, a code or an assertion), so none goes over a pooled
    /// keep-alive connection: a connection the server or a proxy closed
    /// while idle fails only after the request was written, and "was it
    /// written?" is then unknowable, which turns a clean "not sent" into an
    /// unknown outcome (a quiet period; a second one ends in `needs_login`).
    /// A fresh connection per request (`pool_max_idle_per_host(0)`: none is
    /// kept idle) costs one TCP and TLS handshake per grant, about one an
    /// hour per credential. The REST client ([`super::rest`]) keeps its pool.
    pub fn new(api_url: &str, timeout: Duration) -> Result<SnykOAuth, reqwest::Error> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("snykey/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(SnykOAuth {
            http,
            token_url: format!("{api_url}/oauth2/token"),
            revoke_url: format!("{api_url}/oauth2/revoke"),
        })
    }

    /// The same client (its connections shared) for another region's API
    /// (a credential's own `api_url`).
    pub fn at(&self, api_url: &str) -> SnykOAuth {
        SnykOAuth {
            http: self.http.clone(),
            token_url: format!("{api_url}/oauth2/token"),
            revoke_url: format!("{api_url}/oauth2/revoke"),
        }
    }

    /// The full token URL (the `aud` of a private-key JWT assertion).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// `grant_type=refresh_token`. On success the sent token is dead and the
    /// answer's `refresh_token` is the only live one: the caller must persist it.
    ///
    /// `window` (SPEC §2 rule 3's send window) is checked once more when the
    /// HTTP client writes the request body, after the connection is set up:
    /// the token's bytes leave only while it is open. Closed by then, nothing
    /// but the request's head was written, and the answer is
    /// [`GrantError::Unreachable`] (not consumed).
    pub async fn refresh(
        &self,
        client_id: &str,
        client_secret: Option<&Secret>,
        refresh_token: &Secret,
        window: Option<SendWindow>,
    ) -> Result<TokenGrant, GrantError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", client_id),
        ];
        if let Some(s) = client_secret {
            form.push(("client_secret", s.expose()));
        }
        // A 200 without `refresh_token` is still an answer: the sent token
        // is spent, and the rotation protocol records that (not a lost answer,
        // which would be sent again).
        self.token_request_within(&form, window).await
    }

    /// `grant_type=client_credentials` with a client secret (service accounts).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: &Secret,
    ) -> Result<TokenGrant, GrantError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose()),
        ];
        self.token_request(&form).await
    }

    /// `grant_type=client_credentials` with a signed JWT assertion (`private_key_jwt`).
    pub async fn client_assertion(
        &self,
        client_id: &str,
        assertion: &Secret,
    ) -> Result<TokenGrant, GrantError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.expose()),
        ];
        self.token_request(&form).await
    }

    /// `grant_type=authorization_code` with PKCE (the browser login).
    pub async fn authorization_code(
        &self,
        client_id: &str,
        client_secret: Option<&Secret>,
        code: &Secret,
        code_verifier: &Secret,
        redirect_uri: &str,
    ) -> Result<TokenGrant, GrantError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("code_verifier", code_verifier.expose()),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
        ];
        if let Some(s) = client_secret {
            form.push(("client_secret", s.expose()));
        }
        self.token_request(&form).await
    }

    /// Revokes a refresh token (`token_type_hint=refresh_token`).
    pub async fn revoke(
        &self,
        client_id: &str,
        client_secret: Option<&Secret>,
        token: &Secret,
    ) -> Result<(), GrantError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("token", token.expose()),
            ("token_type_hint", "refresh_token"),
            ("client_id", client_id),
        ];
        if let Some(s) = client_secret {
            form.push(("client_secret", s.expose()));
        }
        let resp = self.send(&self.revoke_url, &form).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let content_type = content_type(&resp);
        let body = super::read_capped(resp, MAX_ANSWER)
            .await
            .unwrap_or_default();
        Err(classify_answer(
            status.as_u16(),
            content_type.as_deref(),
            &body,
            None,
        ))
    }

    /// [`Self::send`] with the body written only while `window` is open.
    async fn send_within(
        &self,
        url: &str,
        form: &[(&str, &str)],
        window: SendWindow,
    ) -> Result<reqwest::Response, GrantError> {
        let encoded = serde_urlencoded::to_string(form).map_err(|_| GrantError::Unreachable {
            endpoint: url.to_string(),
            message: "cannot encode the request".into(),
        })?;
        let bytes = bytes::Bytes::from(encoded);
        let len = bytes.len() as u64;
        let body = reqwest::Body::wrap(WindowedForm {
            bytes: Some(bytes),
            len,
            window,
        });
        let started = Instant::now();
        let result = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await;
        crate::metrics::snyk_call(started.elapsed());
        result.map_err(|e| {
            if window_closed(&e) {
                // Only the request's head left: the token was not written.
                GrantError::Unreachable {
                    endpoint: url.to_string(),
                    message: WindowClosed.to_string(),
                }
            } else {
                transport_error(url, e)
            }
        })
    }

    async fn send(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, GrantError> {
        let started = Instant::now();
        let result = self.http.post(url).form(form).send().await;
        crate::metrics::snyk_call(started.elapsed());
        result.map_err(|e| transport_error(url, e))
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenGrant, GrantError> {
        self.token_request_within(form, None).await
    }

    /// One token request, its body written only while `window` is open.
    async fn token_request_within(
        &self,
        form: &[(&str, &str)],
        window: Option<SendWindow>,
    ) -> Result<TokenGrant, GrantError> {
        let resp = match window {
            None => self.send(&self.token_url, form).await?,
            Some(w) => self.send_within(&self.token_url, form, w).await?,
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let content_type = content_type(&resp);
        let body = match super::read_capped(resp, MAX_ANSWER).await {
            Ok(b) => b,
            Err(super::BodyError::Transport(e)) if status.is_success() => {
                return Err(GrantError::Unknown {
                    timed_out: e.is_timeout(),
                    message: "the answer was cut off".into(),
                });
            }
            Err(super::BodyError::TooLarge(max)) if status.is_success() => {
                // Snyk may have processed the grant: an unknown outcome.
                return Err(GrantError::Unknown {
                    timed_out: false,
                    message: format!("the answer was larger than {} KiB", max / 1024),
                });
            }
            Err(_) => Default::default(),
        };
        if !status.is_success() {
            return Err(classify_answer(
                status.as_u16(),
                content_type.as_deref(),
                &body,
                retry_after,
            ));
        }
        parse_grant(&body)
    }
}

/// The answer's `Content-Type`, if it is text.
fn content_type(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The largest token or revoke answer read (Snyk's are about 2 KiB: a JWT
/// access token and a refresh token).
const MAX_ANSWER: usize = 64 * 1024;

/// A token endpoint's success answer (untrusted bytes) as a grant.
fn parse_grant(body: &[u8]) -> Result<TokenGrant, GrantError> {
    let raw: RawGrant = serde_json::from_slice(body).map_err(|_| GrantError::Unknown {
        timed_out: false,
        message: "the answer was not the expected JSON".into(),
    })?;
    let refresh_token = raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new);
    let access_token = match raw.access_token.filter(|t| !t.is_empty()) {
        Some(t) => Secret::new(t),
        // A new refresh token without an access token is still an answer: the
        // sent token is spent and the new one must be kept (I2). The grant
        // carries an empty access token, which is never handed out.
        None if refresh_token.is_some() => Secret::new(""),
        None => {
            return Err(GrantError::Unknown {
                timed_out: false,
                message: "the answer had no access_token".into(),
            });
        }
    };
    let expires_in = if access_token.is_empty() {
        Duration::ZERO
    } else {
        lifetime(raw.expires_in.as_ref())
    };
    Ok(TokenGrant {
        access_token,
        expires_in,
        token_type: raw.token_type.unwrap_or_else(|| "bearer".into()),
        scope: raw.scope,
        refresh_token,
        refresh_expires_in: raw.refresh_expires_in.as_ref().map(|v| lifetime(Some(v))),
    })
}

/// SPEC §2 rule 3's send window as the HTTP client sees it: "may the
/// request still be written?" (the claimant's protocol clock against its
/// deadline).
#[derive(Clone)]
pub struct SendWindow(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl SendWindow {
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> SendWindow {
        SendWindow(std::sync::Arc::new(open))
    }

    fn is_open(&self) -> bool {
        (self.0)()
    }
}

/// The request body closed before it was written.
#[derive(Debug)]
struct WindowClosed;

impl std::fmt::Display for WindowClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the send window closed before the request body was written")
    }
}

impl std::error::Error for WindowClosed {}

/// A form body that checks the send window when the HTTP client polls it,
/// i.e. once the connection is up and the request's head is on its way:
/// the last moment before the token's bytes are written. Its length is
/// exact (the request carries `Content-Length`, as a plain form does).
struct WindowedForm {
    bytes: Option<bytes::Bytes>,
    len: u64,
    window: SendWindow,
}

impl hyper::body::Body for WindowedForm {
    type Data = bytes::Bytes;
    type Error = WindowClosed;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, WindowClosed>>> {
        let out = match self.bytes.take() {
            None => None,
            Some(_) if !self.window.is_open() => Some(Err(WindowClosed)),
            Some(b) => Some(Ok(hyper::body::Frame::data(b))),
        };
        std::task::Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len)
    }
}

/// Was `e` caused by [`WindowClosed`]?
fn window_closed(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<WindowClosed>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn transport_error(url: &str, e: reqwest::Error) -> GrantError {
    // reqwest's messages name the URL (no secret in it) but we drop it anyway.
    let (connect, timed_out) = (e.is_connect(), e.is_timeout());
    let message = crate::snyk::describe_transport(&e);
    if connect {
        // Nothing reached Snyk: the token was certainly not consumed.
        GrantError::Unreachable {
            endpoint: url.to_string(),
            message,
        }
    } else {
        GrantError::Unknown {
            timed_out,
            message: if timed_out {
                "timed out".into()
            } else {
                message
            },
        }
    }
}

/// Maps an error answer (any status but 2xx) whose content type is
/// `application/json` to what it means for the token that was sent: the
/// simulation's entry point (its pages are HTML, its Snyk's errors JSON).
/// The agent reads the content type too: [`classify_answer`].
pub fn classify_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> GrantError {
    classify_answer(status, Some("application/json"), body, retry_after)
}

/// Maps an error answer (any status but 2xx) to what it means for the token
/// that was sent. SPEC §2 rule 6: only an OAuth error body proves that
/// Snyk's token endpoint answered, and so that it did not consume the token
/// (or, for `invalid_grant` and the like, that it refuses it for good).
///
/// **What counts as an OAuth error body** (RFC 6749 §5.2, [`is_oauth_error`]):
/// the answer says `Content-Type: application/json`, its body is a JSON
/// object, and its `error` is an OAuth error code: lowercase ASCII words
/// joined by `_` (`invalid_grant`, `invalid_client`, `invalid_request`,
/// `temporarily_unavailable`, `token_inactive`). Every code the RFCs and
/// IANA's OAuth error registry define has that shape. The rest of the world
/// writes JSON errors too, and none of it knows the token's fate: a gateway's
/// `{"error":"Forbidden"}`, Snyk's own V1 API `{"code":401,"error":"Not
/// authorised"}`, an API gateway's `{"message":"Forbidden"}`, a WAF's JSON
/// with `text/plain` or no content type, `{"error":"forbidden"}` (one word,
/// no code). Each of these is an unknown outcome: taking one for "not
/// consumed" would send the token again at once, a replay at Snyk whenever
/// the page came on the way back after Snyk rotated. The residual risk: an
/// intermediary that writes a JSON body with an OAuth-shaped code (a second
/// OAuth server in the path) is believed.
///
/// An answer without an OAuth error body was written by something between
/// the agent and Snyk, and nothing tells us whether that was before or
/// after it forwarded the request. Per status:
///
/// * **3xx** — the token endpoint never redirects (and redirects are not
///   followed: the token goes nowhere else). A captive portal or a proxy's
///   login redirect usually intercepts before forwarding, but a rule on a
///   load balancer may answer on the way back: unknown.
/// * **401, 403** — a WAF, a proxy or an SSO gateway page. One that inspects
///   answers blocks the one carrying Snyk's tokens after Snyk rotated:
///   unknown (the case this rule exists for).
/// * **407** — a forward proxy wants credentials, normally before it
///   forwards; a chain of proxies or a reverse proxy answering it after its
///   upstream did cannot be told apart: unknown.
/// * **408** — a proxy that gave up waiting, for the client or for its
///   upstream (after forwarding): unknown.
/// * **429** — a rate limiter in front usually refuses before forwarding,
///   but a gateway relaying an upstream 429 without its body, or limiting on
///   the way back, looks the same: unknown. (Snyk's own 429 carries an OAuth
///   body and is "not consumed", honouring `Retry-After`.)
/// * **400, 404, 405 and every other 4xx** — a page from an intermediary, or
///   a wrong `snyk.api_url`; the same reasoning: unknown.
/// * **5xx** — a gateway page (502/503/504): unknown.
///
/// The cost: an unknown outcome is retried once across all agents after the
/// quiet period, and a second one ends in `needs_login` although the token
/// may be live; the alternative, sending again at once, is a replay at Snyk
/// whenever the page came after the rotation.
pub fn classify_answer(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
) -> GrantError {
    let raw: Option<RawError> = is_json(content_type)
        .then(|| serde_json::from_slice(body).ok())
        .flatten();
    let oauth_body = raw
        .as_ref()
        .is_some_and(|r| r.error.as_deref().is_some_and(is_oauth_error));
    if !oauth_body {
        let what = match status {
            300..=399 => "a redirect",
            401 | 403 => "a proxy or firewall page",
            407 => "a proxy asking for credentials",
            408 => "a proxy timeout",
            429 => "a rate limiter's page",
            500..=599 => "a gateway page",
            _ => "a page",
        };
        return GrantError::Unknown {
            timed_out: status == 504 || status == 408,
            message: format!(
                "HTTP {status} without an OAuth error body ({what} from something between the agent and Snyk, or a wrong snyk.api_url)"
            ),
        };
    }
    if status == 429 || status >= 500 {
        return GrantError::Unavailable {
            status,
            retry_after,
        };
    }
    let error = raw
        .as_ref()
        .and_then(|r| r.error.clone())
        .unwrap_or_else(|| format!("http_{status}"));
    let description = raw
        .as_ref()
        .and_then(|r| r.error_description.clone().or_else(|| r.message.clone()))
        .map(|d| sanitize(&d));
    let error = sanitize(&error);
    let auth_failed = description
        .as_deref()
        .is_some_and(|d| d.to_ascii_lowercase().contains("authentication failed"));
    let permanent = matches!(
        error.as_str(),
        "invalid_grant" | "token_inactive" | "invalid_client" | "unauthorized_client"
    ) || auth_failed;
    if permanent {
        GrantError::Permanent { error, description }
    } else {
        GrantError::Refused {
            status,
            error,
            description,
        }
    }
}

/// Is the answer's `Content-Type` JSON (`application/json`, any parameters)?
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// An OAuth error code's shape (RFC 6749 §5.2 and every registered code):
/// two or more lowercase ASCII words joined by `_`, at most 64 characters.
fn is_oauth_error(code: &str) -> bool {
    code.len() <= 64
        && code.contains('_')
        && code
            .split('_')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Keeps an error text from Snyk printable and short.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_and_token_inactive_are_permanent() {
        for e in ["invalid_grant", "token_inactive", "invalid_client"] {
            let g = classify_error(400, format!("{{\"error\":\"{e}\"}}").as_bytes(), None);
            assert!(g.is_permanent(), "{e}");
            assert!(!g.token_not_consumed());
        }
        let g = classify_error(
            401,
            br#"{"error":"other_error","error_description":"Authentication failed"}"#,
            None,
        );
        assert!(g.is_permanent());
    }

    #[test]
    fn other_4xx_5xx_and_429_did_not_consume_the_token() {
        let g = classify_error(400, br#"{"error":"invalid_request"}"#, None);
        assert!(matches!(g, GrantError::Refused { .. }) && g.token_not_consumed());
        let g = classify_error(503, br#"{"error":"temporarily_unavailable"}"#, None);
        assert!(matches!(g, GrantError::Unavailable { status: 503, .. }) && g.token_not_consumed());
        // A gateway page without an OAuth body: Snyk may have processed it.
        for status in [502, 503, 504] {
            let g = classify_error(status, b"<html>Bad Gateway</html>", None);
            assert!(
                matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                "{status}"
            );
        }
        // Snyk's own 429 (an OAuth body) did not consume it; its wait counts.
        let g = classify_error(
            429,
            br#"{"error":"rate_limited"}"#,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(g.retry_after(), Some(Duration::from_secs(7)));
        assert!(g.token_not_consumed());
        assert!(g.to_string().contains("retry after 7s"));
    }

    /// Issue 22 item 6: a 3xx or 4xx answer without an OAuth error body (a
    /// proxy's 403/407/408 page, a WAF, a captive portal) and a 429 without
    /// one prove nothing about the token: unknown outcomes, never "not
    /// consumed".
    #[test]
    fn a_3xx_or_4xx_page_without_an_oauth_body_is_an_unknown_outcome() {
        for status in [
            301, 302, 307, 400, 401, 403, 404, 405, 407, 408, 413, 429, 451,
        ] {
            for body in [
                &b"<html><body>Access denied</body></html>"[..],
                b"",
                br#"{"message":"Forbidden"}"#,
                br#"{"error":""}"#,
                br#"{"errors":[{"status":"404","detail":"not found"}]}"#,
            ] {
                let g = classify_error(status, body, Some(Duration::from_secs(3)));
                assert!(
                    matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                    "{status} {}: {g:?}",
                    String::from_utf8_lossy(body)
                );
                assert!(g.to_string().contains(&format!("HTTP {status}")), "{g}");
            }
        }
        // With an OAuth error body the same statuses are Snyk's own answers.
        let g = classify_error(403, br#"{"error":"access_denied"}"#, None);
        assert!(g.token_not_consumed(), "{g:?}");
    }

    /// A JSON error page that is not an OAuth error — a gateway's
    /// `{"error":"Forbidden"}`, Snyk's V1 API's `{"error":"Not authorised"}`,
    /// a one-word lowercase `error`, an OAuth-looking body sent as
    /// `text/html`, `text/plain` or with no content type — proves nothing
    /// about the token: an unknown outcome, never "refused, not consumed".
    #[test]
    fn a_json_page_that_is_not_an_oauth_error_is_an_unknown_outcome() {
        let json = Some("application/json");
        for (status, ctype, body) in [
            (403, json, &br#"{"error":"Forbidden"}"#[..]),
            (
                401,
                json,
                br#"{"code":401,"error":"Not authorised","message":"Not authorised"}"#,
            ),
            (400, json, br#"{"error":"forbidden"}"#),
            (400, json, br#"{"error":"Bad Request","status":400}"#),
            (400, json, br#"{"error":"INVALID_GRANT"}"#),
            (400, json, br#"{"error":"invalid grant"}"#),
            (400, json, br#"{"error":"_"}"#),
            (429, json, br#"{"error":"Too Many Requests"}"#),
            (503, json, br#"{"error":"Service Unavailable"}"#),
            (400, Some("text/html"), br#"{"error":"invalid_grant"}"#),
            (
                400,
                Some("text/plain; charset=utf-8"),
                br#"{"error":"invalid_request"}"#,
            ),
            (400, None, br#"{"error":"invalid_request"}"#),
            (503, None, br#"{"error":"temporarily_unavailable"}"#),
        ] {
            let g = classify_answer(status, ctype, body, None);
            assert!(
                matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                "{status} {ctype:?} {}: {g:?}",
                String::from_utf8_lossy(body)
            );
            assert!(!g.is_permanent() && !g.is_malformed(), "{g:?}");
        }
        // Snyk's own OAuth errors, with their content type and parameters.
        for ctype in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let g = classify_answer(400, Some(ctype), br#"{"error":"invalid_request"}"#, None);
            assert!(g.is_malformed() && g.token_not_consumed(), "{ctype}: {g:?}");
            let g = classify_answer(400, Some(ctype), br#"{"error":"invalid_grant"}"#, None);
            assert!(g.is_permanent(), "{ctype}: {g:?}");
            let g = classify_answer(
                503,
                Some(ctype),
                br#"{"error":"temporarily_unavailable"}"#,
                None,
            );
            assert!(
                matches!(g, GrantError::Unavailable { .. }),
                "{ctype}: {g:?}"
            );
        }
    }

    #[test]
    fn odd_expires_in_values_never_lose_the_answer() {
        use serde_json::json;
        assert_eq!(lifetime(Some(&json!(3600))), Duration::from_secs(3600));
        assert_eq!(lifetime(Some(&json!(59.9))), Duration::from_secs_f64(59.9));
        assert_eq!(lifetime(Some(&json!("120"))), Duration::from_secs(120));
        assert_eq!(lifetime(Some(&json!(1e20))), MAX_LIFETIME);
        assert_eq!(lifetime(Some(&json!(u64::MAX))), MAX_LIFETIME);
        assert_eq!(lifetime(Some(&json!(-5))), Duration::from_secs(3600));
        assert_eq!(lifetime(Some(&json!(0))), Duration::ZERO);
        assert_eq!(lifetime(None), Duration::from_secs(3600));
        let raw: RawGrant =
            serde_json::from_str(r#"{"access_token":"a","expires_in":1e20,"refresh_token":"r"}"#)
                .unwrap();
        assert_eq!(lifetime(raw.expires_in.as_ref()), MAX_LIFETIME);
    }

    /// A one-connection token endpoint on loopback: what arrived (until the
    /// client closed or 2 s passed), after answering `answer` once the
    /// request's head and `Content-Length` bytes of body are in.
    fn token_endpoint(answer: &'static str) -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if len.is_some_and(|n| body.len() >= n) {
                        let _ = conn.write_all(answer.as_bytes());
                        break;
                    }
                }
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            tx.send(got).unwrap();
        });
        (url, rx)
    }

    /// SPEC §2 rule 3, at the last moment: the send window is checked again
    /// when the HTTP client writes the body, after the connection is up. A
    /// window closed by then writes no byte of the token (the request is
    /// not consumed); an open one sends it as a plain form with its length.
    #[tokio::test]
    async fn a_send_window_closed_before_the_body_is_written_sends_no_token() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 65\r\nconnection: close\r\n\r\n{\"access_token\":\"at-1\",\"refresh_token\":\"rt-next\",\"expires_in\":60}";
        let (url, got) = token_endpoint(ok);
        let oauth = SnykOAuth::new(&url, Duration::from_secs(3)).unwrap();
        let closed = SendWindow::new(|| false);
        let e = oauth
            .refresh("cid", None, &Secret::new("rt-window-closed"), Some(closed))
            .await
            .unwrap_err();
        assert!(
            matches!(e, GrantError::Unreachable { .. }) && e.token_not_consumed(),
            "{e:?}"
        );
        let wire = String::from_utf8_lossy(&got.recv().unwrap()).to_string();
        assert!(!wire.contains("rt-window-closed"), "{wire}");

        let (url, got) = token_endpoint(ok);
        let oauth = SnykOAuth::new(&url, Duration::from_secs(3)).unwrap();
        let g = oauth
            .refresh(
                "cid",
                None,
                &Secret::new("rt-window-open"),
                Some(SendWindow::new(|| true)),
            )
            .await
            .unwrap();
        assert_eq!(g.refresh_token.unwrap().expose(), "rt-next");
        let wire = String::from_utf8_lossy(&got.recv().unwrap()).to_string();
        assert!(wire.contains("refresh_token=rt-window-open"), "{wire}");
        let lower = wire.to_ascii_lowercase();
        assert!(
            lower.contains("content-length:") && !lower.contains("transfer-encoding"),
            "{wire}"
        );
        assert!(
            lower.contains("content-type: application/x-www-form-urlencoded"),
            "{wire}"
        );
    }

    /// Issue 22 follow-up: a token request never goes over a pooled
    /// keep-alive connection (a stale one fails after the request was
    /// written, an unknown outcome): each request opens a connection of its
    /// own, even when the server keeps the last one open.
    #[tokio::test]
    async fn each_token_request_opens_a_connection_of_its_own() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut conn = conn;
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8192];
                    let body = r#"{"access_token":"at","expires_in":60}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
                        body.len()
                    );
                    // Answers every whole request on this connection and
                    // keeps it open.
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&got).to_string();
                        let Some((head, rest)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .and_then(|v| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            got.clear();
                            if conn.write_all(answer.as_bytes()).is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        let oauth = SnykOAuth::new(&format!("http://{addr}"), Duration::from_secs(3)).unwrap();
        for _ in 0..3 {
            let g = oauth
                .client_credentials("cid", &Secret::new("cs"))
                .await
                .unwrap();
            assert_eq!(g.access_token.expose(), "at");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A real timeout, classified by the client: a token endpoint that takes
    /// the request and never answers is an unknown outcome that timed out
    /// (the API's 504 `snyk_timeout`), which may have consumed the token.
    #[tokio::test]
    async fn a_token_endpoint_that_never_answers_is_an_unknown_outcome_that_timed_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and reads, and never answers, until the test ends.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                held.push(conn);
            }
        });
        let oauth = SnykOAuth::new(&format!("http://{addr}"), Duration::from_millis(300)).unwrap();
        let g = oauth
            .refresh("cid", None, &Secret::new("rt-never-answered"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                g,
                GrantError::Unknown {
                    timed_out: true,
                    ..
                }
            ),
            "{g:?}"
        );
        assert!(!g.token_not_consumed() && !g.is_permanent(), "{g:?}");
        assert!(!format!("{g} {g:?}").contains("rt-never-answered"), "{g:?}");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET_MARK: &str = "rt-SECRET-a8f3e1";

    fn expires_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,12}|1e400|-1|inf|NaN| 3600 ".prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            Just(serde_json::json!({"x": 1})),
        ]
    }

    fn message_of(e: &GrantError) -> String {
        e.to_string()
    }

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_any_bytes_as_a_grant_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_grant(&raw);
        }

        #[test]
        fn prop_grants_keep_their_tokens_and_a_bounded_lifetime(
            access in "[A-Za-z0-9._-]{1,64}",
            refresh in proptest::option::of("[A-Za-z0-9._-]{1,64}"),
            expires in expires_value(),
            refresh_expires in expires_value(),
        ) {
            let mut v = serde_json::json!({
                "access_token": access,
                "expires_in": expires,
                "refresh_expires_in": refresh_expires,
                "token_type": "bearer",
            });
            if let Some(r) = &refresh {
                v["refresh_token"] = serde_json::Value::from(r.clone());
            }
            let g = parse_grant(&serde_json::to_vec(&v).unwrap()).unwrap();
            prop_assert_eq!(g.access_token.expose(), access.as_str());
            prop_assert_eq!(g.refresh_token.as_ref().map(|s| s.expose().to_string()), refresh);
            prop_assert!(g.expires_in <= MAX_LIFETIME);
            prop_assert!(g.refresh_expires_in.unwrap_or_default() <= MAX_LIFETIME);
        }

        #[test]
        fn prop_a_refused_grant_never_quotes_a_token(
            shape in 0u8..4,
            junk in "\\PC{0,40}",
        ) {
            let body = match shape {
                0 => serde_json::json!({"refresh_token": SECRET_MARK, "x": junk}).to_string(),
                1 => serde_json::json!({"access_token": "", "refresh_token": SECRET_MARK}).to_string(),
                2 => format!("{{\"access_token\":\"{SECRET_MARK}\",{junk}"),
                _ => format!("{SECRET_MARK}{junk}"),
            };
            if let Err(e) = parse_grant(body.as_bytes()) {
                prop_assert!(!message_of(&e).contains(SECRET_MARK), "{}", message_of(&e));
            }
        }

        #[test]
        fn prop_error_answers_are_classified_without_panic(
            status in 0u16..1000,
            error in proptest::option::of("invalid_grant|token_inactive|invalid_client|server_error|\\PC{0,300}"),
            description in proptest::option::of("\\PC{0,400}|authentication failed|Authentication Failed!"),
            raw_junk in proptest::collection::vec(any::<u8>(), 0..64),
            use_junk in any::<bool>(),
        ) {
            let body = if use_junk {
                raw_junk
            } else {
                serde_json::json!({"error": error, "error_description": description}).to_string().into_bytes()
            };
            let e = classify_error(status, &body, None);
            let oauth_body = !use_junk && error.as_deref().is_some_and(is_oauth_error);
            if !oauth_body {
                // Only an OAuth error body proves the token was not consumed.
                prop_assert!(matches!(e, GrantError::Unknown { .. }), "{:?}", e);
            }
            match &e {
                GrantError::Permanent { error, description } | GrantError::Refused { error, description, .. } => {
                    prop_assert!(error.chars().count() <= 200);
                    prop_assert!(!error.chars().any(char::is_control));
                    if let Some(d) = description {
                        prop_assert!(d.chars().count() <= 200);
                        prop_assert!(!d.chars().any(char::is_control));
                    }
                }
                _ => {}
            }
            // One line, whatever Snyk sent.
            prop_assert!(!message_of(&e).contains('\n'));
        }
    }
}

#[cfg(test)]
mod spent_tests {
    use super::*;

    #[test]
    fn a_new_refresh_token_without_an_access_token_is_kept_not_lost() {
        let g = parse_grant(br#"{"refresh_token":"rt-new","expires_in":3600}"#).unwrap();
        assert_eq!(g.refresh_token.unwrap().expose(), "rt-new");
        assert!(g.access_token.is_empty());
        assert_eq!(g.expires_in, Duration::ZERO);
        // Neither token: nothing to keep, and the outcome is unknown.
        assert!(matches!(
            parse_grant(br#"{"expires_in":3600}"#),
            Err(GrantError::Unknown { .. })
        ));
    }
}

//! Snyk's OAuth endpoints: `{api_url}/oauth2/token` and `{api_url}/oauth2/revoke`.
//!
//! The one thing callers must get right is what an error means for the refresh
//! token that was sent (docs/protocol.md), so [`GrantError`] says exactly that:
//! * [`GrantError::Permanent`]: Snyk refused the grant for good (`invalid_grant`,
//!   `token_inactive`, failed client authentication): the credential needs a login.
//! * [`GrantError::Refused`] / [`GrantError::Unavailable`] / [`GrantError::Unreachable`]:
//!   Snyk did not consume the token (it answered with an error, or we never got
//!   the request to it); it may be sent again after backoff.
//! * [`GrantError::Unknown`]: the request may have been processed and the answer
//!   lost (timeout, dropped connection, garbled 200). The only safe move is to
//!   send the same token once more.
//!
//! Its parts: [`grant`] (the answer types and the parsing of a grant),
//! [`classify`] (what an error answer means for the token, with the argument
//! for each case), [`window`] (the send window at the HTTP layer); this file
//! holds the client and its requests.

mod classify;
mod grant;
mod window;

pub use classify::{classify_answer, classify_error};
pub use grant::{GrantError, TokenGrant};
pub use window::SendWindow;

use crate::secret::Secret;
use grant::parse_grant;
use std::time::{Duration, Instant};
use window::{WindowClosed, WindowedForm, window_closed};

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
    /// `window` (docs/protocol.md rule 3's send window) is checked once more when the
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// docs/protocol.md rule 3, at the last moment: the send window is checked again
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

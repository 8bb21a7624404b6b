//! Talking to Snyk: the OAuth token and revoke endpoints ([`oauth`]).

pub(crate) mod jwt;
pub(crate) mod oauth;
pub(crate) mod pkce;
pub mod region;
pub(crate) mod rest;

pub use oauth::{GrantError, SendWindow, SnykOAuth, TokenGrant, classify_error};
pub use rest::RestError;

/// What went wrong on the way to Snyk, in words that point at the cause:
/// reqwest's own message for a DNS failure is "error sending request", with
/// the cause three sources down. The URL is never part of it (no secret is
/// in a Snyk URL, but the message stays short), only its host.
pub fn describe_transport(e: &reqwest::Error) -> String {
    describe_transport_to(e, "Snyk", "snyk.api_url")
}

/// [`describe_transport`] for any server: `server` names it when the error
/// has no URL, `setting` is the key to check when its name does not resolve.
pub(crate) fn describe_transport_to(e: &reqwest::Error, server: &str, setting: &str) -> String {
    let host = e
        .url()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| server.into());
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        chain.push(c.to_string());
        cur = c.source();
    }
    let innermost = chain.last().cloned().unwrap_or_default();
    let all = chain.join(": ").to_ascii_lowercase();
    let name_only = host.split(':').next().unwrap_or(&host).to_string();
    if all.contains("dns error")
        || all.contains("failed to lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
    {
        format!("cannot resolve {name_only} ({innermost}): check the host name ({setting}) and DNS")
    } else if all.contains("connection refused") {
        format!("{host} refused the connection")
    } else if e.is_timeout() {
        format!("no answer from {host} in time")
    } else if all.contains("certificate") || all.contains("tls") || all.contains("handshake") {
        format!("TLS with {host} failed: {innermost}")
    } else if e.is_connect() {
        format!("cannot connect to {host}: {innermost}")
    } else if chain.len() > 1 {
        format!("{} ({innermost})", e.without_url_ref())
    } else {
        e.without_url_ref()
    }
}

/// An answer's body could not be had in full.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the limit: what Snyk (or anything in its place) sends is
    /// not ours to hold whole.
    TooLarge(usize),
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads an answer's body, at most `max` bytes, into a buffer wiped when it
/// drops (a token answer holds a refresh token). Room for the whole answer is
/// taken at once (up to `max`), so growing the buffer leaves no copy behind.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, BodyError> {
    let announced = resp.content_length().and_then(|n| usize::try_from(n).ok());
    if announced.is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(announced.unwrap_or(max).min(max)));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if chunk.len() > max.saturating_sub(body.len()) {
            return Err(BodyError::TooLarge(max));
        }
        if body.len() + chunk.len() > body.capacity() {
            // Grow by hand into a fresh buffer; the old one is wiped.
            let mut bigger = Vec::with_capacity(max);
            bigger.extend_from_slice(&body);
            body = zeroize::Zeroizing::new(bigger);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    /// The top-level message without the URL reqwest appends.
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text
                .replace(&format!(" for url ({u})"), "")
                .replace(&format!(" ({u})"), ""),
            None => text,
        }
    }
}

#[cfg(test)]
mod transport_tests {
    /// A server that answers every connection with `status` and a body of
    /// `len` bytes (announced or not), on 127.0.0.1.
    async fn serve_big(status: u16, len: usize, announce: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = if announce {
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
                        )
                    } else {
                        format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                        )
                    };
                    let _ = s.write_all(head.as_bytes()).await;
                    let chunk = vec![b' '; 64 * 1024];
                    let mut sent = 0;
                    while sent < len {
                        let n = chunk.len().min(len - sent);
                        if s.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        sent += n;
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_token_answer_larger_than_the_limit_is_a_lost_answer_not_a_buffer() {
        for announce in [true, false] {
            let url = serve_big(200, 20 * 1024 * 1024, announce).await;
            let oauth = super::SnykOAuth::new(&url, std::time::Duration::from_secs(10)).unwrap();
            let e = oauth
                .client_credentials("c", &crate::secret::Secret::new("s"))
                .await
                .unwrap_err();
            // Snyk may have processed it: an unknown outcome (docs/protocol.md rule 6).
            assert!(!e.token_not_consumed(), "{e:?}");
            assert!(e.to_string().contains("larger than"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_rest_answer_larger_than_the_limit_is_refused() {
        for (status, announce) in [(200, true), (200, false), (500, false)] {
            let url = serve_big(status, 20 * 1024 * 1024, announce).await;
            let rest =
                super::rest::SnykRest::new(&url, "2024-10-15", std::time::Duration::from_secs(10))
                    .unwrap();
            let e = rest
                .call(
                    reqwest::Method::GET,
                    "/self",
                    &crate::secret::Secret::new("t"),
                    None,
                )
                .await
                .unwrap_err();
            assert!(e.to_string().contains("larger than"), "{status}: {e}");
        }
    }

    #[tokio::test]
    async fn a_dns_failure_says_which_host_cannot_be_resolved() {
        let client = reqwest::Client::new();
        // .invalid never resolves (RFC 6761).
        let e = client
            .get("https://api.snykey-test.invalid/oauth2/token")
            .send()
            .await
            .unwrap_err();
        let text = super::describe_transport(&e);
        assert!(
            text.starts_with("cannot resolve api.snykey-test.invalid"),
            "{text}"
        );
        assert!(!text.contains("/oauth2/token"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_host_and_port() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/x"))
            .send()
            .await
            .unwrap_err();
        let text = super::describe_transport(&e);
        assert_eq!(text, format!("127.0.0.1:{port} refused the connection"));
    }
}

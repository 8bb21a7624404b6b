//! Talking to Snyk: the OAuth token and revoke endpoints ([`oauth`]).

pub(crate) mod jwt;
pub(crate) mod oauth;
pub(crate) mod pkce;
pub(crate) mod rest;

pub use oauth::{GrantError, SnykOAuth, TokenGrant};

/// What went wrong on the way to Snyk, in words that point at the cause:
/// reqwest's own message for a DNS failure is "error sending request", with
/// the cause three sources down. The URL is never part of it (no secret is
/// in a Snyk URL, but the message stays short), only its host.
pub fn describe_transport(e: &reqwest::Error) -> String {
    let host = e
        .url()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| "Snyk".into());
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
        format!(
            "cannot resolve {name_only} ({innermost}): check the host name (snyk.api_url) and DNS"
        )
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

trait WithoutUrlRef {
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

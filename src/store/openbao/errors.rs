//! OpenBao's errors as `StoreError`s, and which of them mean "ask another node".

use crate::store::StoreError;
use vaultrs::error::ClientError;

/// OpenBao's `errors` as one short line: at most [`MAX_ERRORS`] of them, each
/// cut to [`MAX_ERROR_CHARS`] printable characters. A server (or anything
/// posing as one) decides what it sends; our messages and logs stay bounded.
pub(crate) fn error_text(errors: &[String]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(MAX_ERRORS)
        .map(|m| {
            m.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_ERROR_CHARS)
                .collect()
        })
        .collect();
    if errors.len() > MAX_ERRORS {
        parts.push(format!("{} more", errors.len() - MAX_ERRORS));
    }
    parts.join("; ")
}

pub(super) const MAX_ERRORS: usize = 3;
pub(super) const MAX_ERROR_CHARS: usize = 200;

/// The status a [`StoreError::Denied`] raised on this side (a token file that
/// cannot be read, a refused AppRole or Kubernetes login) carries through the
/// retry wrapper: no server sends it, and [`map_err`] gives the error back as
/// it was. (Carried as a 403, a missing `token_file` came out as "OpenBao
/// answered 403 … the agent's token is invalid" although OpenBao was never
/// asked.)
pub(super) const LOCAL_DENIED: u16 = 1403;

pub(super) fn map_err(e: ClientError) -> StoreError {
    match e {
        ClientError::APIError {
            code: LOCAL_DENIED,
            errors,
        } => StoreError::Denied(errors.join("; ")),
        ClientError::APIError { code: 503, errors }
            if errors
                .iter()
                .any(|m| m.to_ascii_lowercase().contains("sealed")) =>
        {
            StoreError::Sealed
        }
        ClientError::APIError { code: 403, errors } => StoreError::Denied(format!(
            "OpenBao answered 403 ({}): the agent's token is invalid, expired or lacks a policy on this path",
            error_text(&errors)
        )),
        ClientError::APIError { code: 400, errors }
            if errors.iter().any(|m| m.contains("check-and-set")) =>
        {
            StoreError::Conflict { expected: 0 }
        }
        ClientError::APIError { code, errors } => {
            StoreError::Unavailable(format!("OpenBao answered {code}: {}", error_text(&errors)))
        }
        // No answer: say where and why (refused, no such host, TLS, a
        // timeout), not only rustify's "Error sending HTTP request".
        ClientError::RestClientError {
            source: rustify::errors::ClientError::RequestError { source, .. },
        } => {
            let why = match source.downcast_ref::<reqwest::Error>() {
                Some(e) => crate::snyk::describe_transport_to(e, "OpenBao", "store.addr"),
                None => format!("{source:#}"),
            };
            StoreError::Unavailable(format!("cannot reach OpenBao: {why}"))
        }
        ClientError::RestClientError { source } => {
            StoreError::Unavailable(format!("cannot reach OpenBao: {source}"))
        }
        other => StoreError::Unavailable(format!("OpenBao: {other}")),
    }
}

/// A refused login (AppRole, Kubernetes) is "denied", whatever status
/// OpenBao chose for it (400 for a bad or expired secret id, 403 for a JWT
/// the cluster does not vouch for): retrying will not help, new credentials
/// will. Anything else (unreachable, sealed) keeps its usual meaning.
pub(super) fn map_login_err(method: &str, files: &str, e: ClientError) -> StoreError {
    match e {
        ClientError::APIError { code, errors } if (400..500).contains(&code) => {
            StoreError::Denied(format!(
                "OpenBao refused the {method} login ({code}: {}): check {files}",
                error_text(&errors)
            ))
        }
        other => map_err(other),
    }
}

/// An answer that says "ask another node": unreachable (no HTTP answer),
/// sealed or unavailable (503), a standby (429, or 400 while a standby waits
/// for the primary to upgrade KV), or an active node that lost its cluster
/// (500 "local node not active...").
pub(super) fn not_the_active_node(e: &ClientError) -> bool {
    match e {
        ClientError::RestClientError { source } => !matches!(
            source,
            rustify::errors::ClientError::ServerResponseError { .. }
        ),
        ClientError::APIError { code, errors } => match code {
            429 | 500 | 502 | 503 | 504 => true,
            400 => errors.iter().any(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("upgrade") || m.contains("standby") || m.contains("not active")
            }),
            _ => false,
        },
        _ => false,
    }
}

pub(super) fn is_not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 404, .. })
        || matches!(
            e,
            ClientError::RestClientError {
                source: rustify::errors::ClientError::ServerResponseError { code: 404, .. }
            }
        )
}

pub(super) fn store_to_client(e: StoreError) -> ClientError {
    // Carried through the retry wrapper and mapped back by `map_err`.
    let code = match &e {
        StoreError::Sealed => 503,
        StoreError::Denied(_) => LOCAL_DENIED,
        _ => 502,
    };
    let message = match e {
        StoreError::Sealed => "Vault is sealed".to_string(),
        StoreError::Denied(m) => m,
        other => other.to_string(),
    };
    ClientError::APIError {
        code,
        errors: vec![message],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_on_this_side_comes_back_as_it_was_not_as_a_403() {
        let local = StoreError::Denied(
            "cannot read the OpenBao token file /etc/snykey/bao-token: No such file or directory (os error 2)".into(),
        );
        let back = map_err(store_to_client(local.clone()));
        assert_eq!(back.to_string(), local.to_string());
        assert!(!back.to_string().contains("403"), "{back}");
        // OpenBao's own 403 keeps its meaning.
        let theirs = map_err(ClientError::APIError {
            code: 403,
            errors: vec!["permission denied".into()],
        });
        assert!(
            theirs.to_string().contains("OpenBao answered 403"),
            "{theirs}"
        );
    }

    /// OpenBao down: the message names the address and the reason, not only
    /// rustify's "Error sending HTTP request" (what `snykey status` and
    /// `/v1/ready` showed when OpenBao was not running).
    #[tokio::test]
    async fn an_unreachable_openbao_is_named_with_its_address_and_the_reason() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let url = format!("http://{addr}/v1/sys/health");
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let mapped = map_err(ClientError::RestClientError {
            source: rustify::errors::ClientError::RequestError {
                source: e.into(),
                url,
                method: "GET".into(),
            },
        });
        let text = mapped.to_string();
        assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
        assert!(
            text.contains(&format!(
                "cannot reach OpenBao: {addr} refused the connection"
            )),
            "{text}"
        );
        assert!(!text.contains("/v1/sys/health"), "{text}");
    }
}

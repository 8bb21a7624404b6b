//! The admin CLI's client for the agent API (hyperlocal over the Unix socket).

use crate::exit;
use crate::wire::{ErrorBody, ErrorCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "cannot reach the snykey agent at {socket}: {message}. Is `snykey serve` running? (set --socket or SNYKEY_SOCKET)"
    )]
    Unreachable { socket: PathBuf, message: String },
    #[error("{error}")]
    Api {
        status: u16,
        code: ErrorCode,
        error: String,
    },
    #[error("unexpected answer from the agent: {0}")]
    Protocol(String),
}

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => exit::UNAVAILABLE,
            ClientError::Api { status, code, .. } => exit::for_error(*status, *code),
            ClientError::Protocol(_) => exit::SOFTWARE,
        }
    }

    /// The line printed on stderr: what failed and what to do.
    pub fn report(&self) -> String {
        match self {
            ClientError::Api {
                status,
                code,
                error,
            } => exit::report(*status, *code, error),
            other => other.to_string(),
        }
    }
}

pub struct AgentClient {
    socket: PathBuf,
    http: Client<UnixConnector, Full<Bytes>>,
    timeout: Duration,
}

impl AgentClient {
    pub fn new(socket: &Path, timeout: Duration) -> AgentClient {
        let http = Client::builder(TokioExecutor::new()).build(UnixConnector);
        AgentClient {
            socket: socket.to_path_buf(),
            http,
            timeout,
        }
    }

    /// Sends one request and decodes a 2xx JSON answer as `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path_and_query).into();
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = match tokio::time::timeout(self.timeout, self.http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let message = if e.is_connect() {
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string())
                } else {
                    e.to_string()
                };
                return Err(ClientError::Unreachable {
                    socket: self.socket.clone(),
                    message,
                });
            }
            Err(_) => {
                return Err(ClientError::Unreachable {
                    socket: self.socket.clone(),
                    message: format!("no answer within {}s", self.timeout.as_secs()),
                });
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(ClientError::Api {
                status,
                code: b.code,
                error: b.error,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: ErrorCode::Unknown,
                error: format!("the agent answered HTTP {status}"),
            }),
        }
    }
}

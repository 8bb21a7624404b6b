//! The agent API: HTTP/1.1 + JSON on a Unix socket, documented in
//! `docs/api.md` (kept true by `doc_tests`).
//!
//! * [`socket`] — binding the socket with its mode set at bind time, or taking
//!   a systemd-activated one; peer credentials.
//! * [`server`] — the accept loop, per-request allow-list checks, graceful shutdown.
//! * `routes` — the route table, the access decision, audit and metrics per request.
//! * `handlers` — one function per route; `convert` — wire bodies to the
//!   domain's words and back; `error` — the one mapping of failures to
//!   `code` and HTTP status; `http` — reading bodies, paths and queries;
//!   `answer` — writing JSON and text answers; `state` — what every handler
//!   can reach.
//! * [`callback`] — the loopback listener for the browser's OAuth redirect.
//! * `reloads` — how `POST /v1/reload` asks the agent's signal task for a reload.

mod answer;
pub(crate) mod callback;
mod convert;
#[cfg(test)]
mod doc_tests;
mod error;
mod handlers;
mod http;
pub(crate) mod reloads;
mod routes;
pub(crate) mod server;
pub mod socket;
mod state;

pub use server::serve;
pub use state::AppState;

use crate::wire::paths;
use bytes::Bytes;
use hyper::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// `/metrics` in the Prometheus text format, with the state gauges current.
pub fn metrics_response(broker: &crate::broker::Broker) -> answer::Resp {
    broker.export_gauges();
    answer::text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        crate::metrics::render(),
    )
}

/// The optional TCP listener for `/metrics` (`server.metrics_listen`): it
/// serves only metrics and liveness, never credentials.
pub async fn metrics_listener(
    addr: SocketAddr,
    broker: Arc<crate::broker::Broker>,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for metrics on {addr} (server.metrics_listen): {e}"))?;
    // The address actually bound (port 0 in the config: the one the kernel chose).
    let addr = listener.local_addr().unwrap_or(addr);
    if addr.ip().is_loopback() {
        tracing::info!(%addr, "serving /metrics over TCP");
    } else {
        tracing::warn!(
            %addr,
            "serving /metrics over TCP on a non-loopback address (server.metrics_allow_remote = true): any host that can reach it may connect"
        );
    }
    Ok(serve_tcp(listener, shutdown, move |req| {
        let broker = Arc::clone(&broker);
        async move {
            match req.uri().path() {
                paths::METRICS => metrics_response(&broker),
                paths::HEALTH => answer::text(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(b"{\"message\":\"alive\"}"),
                ),
                _ => answer::text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    Bytes::from_static(b"only /metrics is served here\n"),
                ),
            }
        }
    }))
}

/// What a TCP listener (callback, metrics) grants one hostile neighbour.
///
/// Any local process (and, for `metrics_listen`, maybe any host) can connect:
/// without these a client that opens connections and sends its headers one
/// byte a minute holds file descriptors until the agent cannot open its
/// journal, its store or a socket connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpLimits {
    /// Connections served at once; further ones are closed at accept.
    pub max_connections: usize,
    /// The whole request head must arrive within this.
    pub header_read_timeout: std::time::Duration,
    /// No connection lives longer than this, whatever it is doing (a slow
    /// reader of the answer, a handler waiting on Snyk's code exchange).
    pub max_lifetime: std::time::Duration,
}

impl TcpLimits {
    pub(crate) const DEFAULT: TcpLimits = TcpLimits {
        max_connections: 64,
        header_read_timeout: std::time::Duration::from_secs(10),
        max_lifetime: std::time::Duration::from_secs(120),
    };
}

/// Request heads larger than this are refused (hyper's floor is 8 KiB); the
/// TCP listeners serve GETs with a code and a state, nothing bigger.
const TCP_MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves a small HTTP/1.1 service on a TCP listener until `shutdown`
/// (the metrics and OAuth callback listeners), within [`TcpLimits::DEFAULT`].
pub(crate) fn serve_tcp<F, Fut>(
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = answer::Resp> + Send + 'static,
{
    serve_tcp_within(listener, shutdown, TcpLimits::DEFAULT, handler)
}

/// [`serve_tcp`] with explicit limits (tests use short ones).
pub(crate) fn serve_tcp_within<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    limits: TcpLimits,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = answer::Resp> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed on a TCP listener");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::debug!(
                            max = limits.max_connections,
                            "TCP listener at its connection cap; closing a new connection"
                        );
                        drop(stream);
                        continue;
                    };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let svc = hyper::service::service_fn(move |req| {
                            let fut = handler(req);
                            async move { Ok::<_, std::convert::Infallible>(fut.await) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(limits.header_read_timeout)
                            .keep_alive(false)
                            .max_buf_size(TCP_MAX_HEAD_BYTES)
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                        let _ = tokio::time::timeout(limits.max_lifetime, conn).await;
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // A 408 or similar before the close is fine: keep reading.
                Ok(Ok(_)) => continue,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_header_clients_are_capped_and_timed_out_on_tcp_listeners() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let limits = TcpLimits {
            max_connections: 8,
            header_read_timeout: Duration::from_millis(1500),
            max_lifetime: Duration::from_secs(30),
        };
        let server = serve_tcp_within(listener, rx, limits, |_req| async {
            answer::text(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
        });
        // Fill the cap with slowloris clients: half send nothing, half an
        // unfinished request head.
        let mut slow = Vec::new();
        for i in 0..limits.max_connections {
            let mut s = TcpStream::connect(addr).await.unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
            }
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // One more is closed at once: the cap, not the timeout.
        let started = Instant::now();
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_millis(1000)).await,
            "a connection over the cap was kept open"
        );
        assert!(started.elapsed() < Duration::from_millis(1200));
        // The slow ones are closed by the header-read timeout.
        for (i, s) in slow.iter_mut().enumerate() {
            assert!(
                closed_within(s, Duration::from_secs(5)).await,
                "slow connection {i} outlived the header-read timeout"
            );
        }
        // Their slots are free again: a well-behaved client is served.
        let mut good = TcpStream::connect(addr).await.unwrap();
        good.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), good.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // An oversized head is refused, not buffered.
        let mut big = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let _ = big.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}

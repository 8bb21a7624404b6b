//! The agent API: HTTP/1.1 + JSON on a Unix socket (SPEC §4).
//!
//! * [`socket`] — binding the socket with its mode set at bind time, or taking
//!   a systemd-activated one; peer credentials.
//! * [`server`] — the accept loop, per-request allow-list checks, graceful shutdown.
//! * [`routes`] — request routing and the one mapping of errors to HTTP statuses.

pub mod callback;
pub mod routes;
pub mod server;
pub mod socket;

pub use server::{AppState, serve};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> routes::Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

/// `/metrics` in the Prometheus text format, with the state gauges current.
pub fn metrics_response(broker: &crate::broker::Broker) -> routes::Resp {
    broker.export_gauges();
    text_response(
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
    tracing::info!(%addr, "serving /metrics over TCP");
    Ok(serve_tcp(listener, shutdown, move |req| {
        let broker = Arc::clone(&broker);
        async move {
            match req.uri().path() {
                "/metrics" => metrics_response(&broker),
                "/v1/health" => text_response(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(b"{\"message\":\"alive\"}"),
                ),
                _ => text_response(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    Bytes::from_static(b"only /metrics is served here\n"),
                ),
            }
        }
    }))
}

/// Serves a small HTTP/1.1 service on a TCP listener until `shutdown`
/// (the metrics and OAuth callback listeners).
pub(crate) fn serve_tcp<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = routes::Resp> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let fut = handler(req);
                            async move { Ok::<_, std::convert::Infallible>(fut.await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
                _ = shutdown.changed() => break,
            }
        }
    })
}

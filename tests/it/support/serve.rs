//! The one HTTP/1.1 server under the test fakes (the fake Snyk, the
//! Kubernetes TokenReview stand-in, the OpenBao fault proxy): its own thread
//! and runtime, 127.0.0.1 on a free port, one task per connection, each
//! request's body read before the handler sees it, until the last clone of
//! the returned [`Stop`] is dropped.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a fake answers.
pub type Resp = Response<Full<Bytes>>;

/// Stops its server when dropped; fakes hold it in an `Arc` so that their
/// clones share one server.
pub struct Stop(Arc<Notify>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Serves `handler`, which gets each request with its whole body (an `Err`
/// drops the connection without an answer).
pub fn spawn<H, F, E>(handler: H) -> (SocketAddr, Arc<Stop>)
where
    H: Fn(Request<Bytes>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Resp, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let handler = handler.clone();
                        let service = service_fn(move |req: Request<Incoming>| {
                            let handler = handler.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                handler(Request::from_parts(parts, body)).await
                            }
                        });
                        tokio::spawn(async move {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stopped.notified() => break,
                }
            }
        });
    });
    (rx.recv().unwrap(), Arc::new(Stop(stop)))
}

/// A JSON answer.
pub fn json(status: u16, body: serde_json::Value) -> Resp {
    answer(status, "application/json", body.to_string())
}

/// An answer of `content_type`.
pub fn answer(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// A request header as text, if present and readable.
pub fn header<'r>(req: &'r Request<Bytes>, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

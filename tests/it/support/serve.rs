//! The HTTP/1.1 server under the fake Snyk and the fake OpenBao: its own
//! thread and runtime, 127.0.0.1 on a free port, one task per connection,
//! until the last clone of the returned [`Stop`] is dropped.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;

/// Stops its server when dropped; fakes hold it in an `Arc` so that their
/// clones share one server.
pub struct Stop(Arc<Notify>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// Serves `handler` (an `Err` drops the connection without an answer).
pub fn spawn<H, F, E>(handler: H) -> (SocketAddr, Arc<Stop>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static,
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
                        tokio::spawn(async move {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service_fn(handler))
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

//! The accept loop: one hyper HTTP/1.1 connection task per client, peer
//! credentials read once per connection and checked against the allow-list on
//! every request (so a SIGHUP-changed list applies to open connections without
//! dropping them), and a bounded graceful shutdown.

use super::routes;
use super::socket::peer_of;
use super::state::AppState;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::watch;

/// Who may do what: the socket allow-list, admins and `[[access]]` grants
/// (decided in [`crate::access`]).
pub use crate::access::Policy as Access;

/// Serves the agent API until `shutdown` turns true, then stops accepting and
/// gives in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: UnixListener,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = match peer_of(&stream) {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the peer credentials of a connection; closing it");
                        continue;
                    }
                };
                let state = Arc::clone(&state);
                let svc = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    let peer = Arc::clone(&peer);
                    async move { Ok::<_, std::convert::Infallible>(routes::handle(&state, &peer, req).await) }
                });
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .max_buf_size(256 * 1024)
                    .header_read_timeout(Duration::from_secs(30))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), svc);
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tracing::info!("stopped accepting connections; waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; stopping anyway"),
    }
}

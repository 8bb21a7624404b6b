//! The agent's last words and its shutdown tail: the line that says it
//! serves (or that the store is empty), and what ends, in order, after the
//! API stopped serving.

use crate::broker::Broker;
use crate::config::Config;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The line that says the agent serves, with what it was started on.
pub(super) fn log_ready(
    cfg: &Config,
    (socket, created): (&std::path::Path, bool),
    (store_desc, cache_desc): (&str, &str),
    loaded: usize,
    started: Instant,
) {
    tracing::info!(
        socket = %socket.display(),
        activated = !created,
        store = %store_desc,
        cache = %cache_desc,
        snyk = %cfg.snyk.api_url,
        credentials = loaded,
        sinks = cfg.sinks.len(),
        publish = %published_at(cfg),
        startup_ms = started.elapsed().as_millis() as u64,
        "snykey agent ready"
    );
}

/// Where tokens are published for jobs, for the ready line.
fn published_at(cfg: &Config) -> String {
    if cfg.publish.enabled() {
        format!(
            "{}/{}/ORG_ID/CLIENT_ID (at least {}s left)",
            cfg.publish.mount,
            cfg.publish.prefix,
            cfg.publish.min_validity.as_secs()
        )
    } else {
        "off".into()
    }
}

/// An empty store: what to run next.
pub(super) fn hint_first_credential() {
    tracing::info!(
        "no credentials yet: add one with `snykey put --org-id ORG_ID --client-id CLIENT_ID --client-secret-file FILE --refresh-token-file FILE` or `snykey login --org-id ORG_ID --client-id CLIENT_ID`; then `snykey-helper ORG_ID CLIENT_ID` prints a token"
    );
}

/// What runs beside the API until shutdown, ended in order by [`stop`].
pub(super) struct Tasks {
    pub metrics_server: Option<JoinHandle<()>>,
    pub watchdog: Option<JoinHandle<()>>,
    pub signals: JoinHandle<()>,
    pub sinks: Vec<JoinHandle<()>>,
    /// The keeper of the memory cache's snapshot and its writer task
    /// (`cache.snapshot`).
    pub snapshot: Option<(Arc<crate::cache::snapshot::Keeper>, JoinHandle<()>)>,
}

/// The shutdown tail, after the API stopped serving: the metrics listener
/// and the sinks end, grants in flight are drained, the socket file we
/// created is removed, and the memory cache's snapshot is written a last
/// time.
pub(super) async fn stop(
    cfg: &Config,
    broker: &Broker,
    tasks: Tasks,
    (created, path): (bool, &std::path::Path),
) {
    if let Some(m) = tasks.metrics_server {
        let _ = m.await;
    }
    if let Some(w) = tasks.watchdog {
        w.abort();
    }
    tasks.signals.abort();
    for s in tasks.sinks {
        let _ = s.await;
    }
    // Grants in flight run to their end (bounded by Snyk's timeout and the
    // landing after it): a new refresh token is never left unsaved.
    if !broker
        .drain(cfg.snyk.timeout * 2 + Duration::from_secs(10))
        .await
    {
        tracing::warn!(
            "stopping with grants still in flight; the recovery journal holds what they made durable"
        );
    }
    if created {
        remove_socket(path);
    }
    // After the grants in flight landed: their tokens are in it.
    if let Some((keeper, task)) = tasks.snapshot {
        let _ = task.await;
        keeper.write_if_changed().await;
    }
}

fn remove_socket(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "could not remove the socket file")
        }
    }
}

//! Writes the memory cache's snapshot while the agent runs: every interval
//! if the cache changed since the last write (nothing is written while it
//! does not), at once when a token was dropped, and once more at shutdown.

use super::{Origin, write};
use crate::cache::memory::MemoryCache;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct Keeper {
    cache: Arc<MemoryCache>,
    path: PathBuf,
    origin: Origin,
    interval: Duration,
    /// Writes one at a time; what the last write that succeeded saw.
    written: tokio::sync::Mutex<Written>,
}

#[derive(Default)]
struct Written {
    /// The cache's change counter the file reflects.
    changes: u64,
    /// The last write failed (said once, until one succeeds).
    failing: bool,
}

impl Keeper {
    pub fn new(
        cache: Arc<MemoryCache>,
        path: PathBuf,
        origin: Origin,
        interval: Duration,
    ) -> Arc<Keeper> {
        Arc::new(Keeper {
            cache,
            path,
            origin,
            interval,
            written: tokio::sync::Mutex::new(Written::default()),
        })
    }

    /// The periodic writer, until shutdown (the last write is
    /// [`Keeper::write_if_changed`] after the grants in flight landed).
    pub fn spawn(
        self: &Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let keeper = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(keeper.interval) => {}
                    _ = keeper.cache.dropped() => {}
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                }
                keeper.write_if_changed().await;
            }
        })
    }

    /// Writes the snapshot if the cache changed since the last write. A
    /// failure is logged (once until a write succeeds again): it costs only
    /// grants after a restart, never a token.
    pub async fn write_if_changed(&self) {
        let mut written = self.written.lock().await;
        // Read before the tokens: a change in between is written next time.
        let changes = self.cache.changes();
        if changes == written.changes {
            return;
        }
        let tokens = self.cache.saved();
        let count = tokens.len();
        let (path, origin) = (self.path.clone(), self.origin.clone());
        let result = tokio::task::spawn_blocking(move || write(&path, &origin, &tokens))
            .await
            .unwrap_or_else(|e| Err(format!("the writing task failed: {e}")));
        match result {
            Ok(()) => {
                written.changes = changes;
                if written.failing {
                    written.failing = false;
                    tracing::info!(path = %self.path.display(), tokens = count, "the token snapshot is written again");
                }
                tracing::debug!(tokens = count, "token snapshot written");
            }
            Err(e) if !written.failing => {
                written.failing = true;
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the token snapshot (cache.snapshot_path): after a restart, the tokens minted since its last write are minted again; retried every cache.snapshot_interval");
            }
            Err(_) => {}
        }
    }
}

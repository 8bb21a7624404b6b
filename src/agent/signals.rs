//! Signals and systemd: SIGTERM/SIGINT stop, SIGHUP and `POST /v1/reload`
//! reload, and the `STATUS=` line systemd shows (with the watchdog's pings).

use crate::api::AppState;
use crate::api::reloads::ReloadInbox;
use crate::broker::Broker;
use crate::reload::{Origin, Reloader};
use crate::systemd::{Notifier, watchdog_interval};
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Pings systemd's watchdog with the current status, when it asks for it.
pub(super) fn spawn_watchdog(
    notifier: &Arc<Notifier>,
    broker: &Arc<Broker>,
) -> Option<tokio::task::JoinHandle<()>> {
    watchdog_interval().map(|every| {
        let notifier = Arc::clone(notifier);
        let broker = Arc::clone(broker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.notify(&format!("WATCHDOG=1\nSTATUS={}", status_line(&broker)));
            }
        })
    })
}

/// A short summary for `STATUS=`.
pub(super) fn status_line(broker: &Broker) -> String {
    let counts = broker.state_counts();
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let mut parts = vec![format!("{total} credential(s)")];
    for (state, n) in counts {
        if n > 0 && state != crate::wire::State::Ok {
            parts.push(format!("{n} {}", state.as_str()));
        }
    }
    parts.join(", ")
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this is made.
pub(super) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn install() -> Result<Signals, String> {
        let caught =
            |kind| signal(kind).map_err(|e| format!("cannot install signal handlers: {e}"));
        Ok(Signals {
            term: caught(SignalKind::terminate())?,
            int: caught(SignalKind::interrupt())?,
            hup: caught(SignalKind::hangup())?,
        })
    }
}

/// Stops on SIGTERM/SIGINT; reloads on SIGHUP and on reload requests
/// (`POST /v1/reload`), one at a time, telling systemd around each.
pub(super) async fn handle_signals(
    signals: Signals,
    (mut reloader, mut requests): (Reloader, ReloadInbox),
    state: Arc<AppState>,
    notifier: Arc<Notifier>,
    shutdown: watch::Sender<bool>,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let mut reload = |origin| {
        notifier.reloading();
        let outcome = reloader.reload(origin, &state);
        notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&state.broker)));
        outcome
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => { let _ = reload(Origin::Signal); }
            Some(reply) = requests.next() => reply(reload(Origin::Request)),
        }
    }
    notifier.notify("STOPPING=1\nSTATUS=stopping");
    let _ = shutdown.send(true);
}

//! `snykey serve`: wires config, store, cache, journal and broker together,
//! serves the API, and handles signals (SIGTERM/SIGINT stop, SIGHUP reloads).
//!
//! * `mod.rs` — [`run`]: the order of start-up, serving and shutdown.
//! * `build.rs` — the store, cache, Snyk clients and broker built from the
//!   configuration and started; the callback and metrics listeners.
//! * `signals.rs` — signals, reloads, and the status systemd shows.
//! * `stop.rs` — the ready line and the shutdown tail.

mod build;
mod signals;
mod stop;

use crate::api::server::Access;
use crate::api::socket::Bound;
use crate::api::{AppState, serve};
use crate::broker::Settings;
use crate::config::Config;
use crate::reload::Reloader;
use crate::systemd::Notifier;
use signals::{Signals, handle_signals, spawn_watchdog, status_line};
use std::sync::Arc;
use std::time::Instant;
use stop::{Tasks, hint_first_credential, log_ready, stop};
use tokio::sync::watch;

pub use crate::reload::LogReloader;

/// The log filter actually installed for `text` (`--log-level`, `SNYKEY_LOG`
/// or `server.log_level`): the OpenBao client libraries (vaultrs and its HTTP
/// layer rustify) are silenced unless the filter names them, because they log
/// every non-2xx answer as an ERROR of their own — three for the 404 of an
/// empty store at every first start — while snykey reports what a failed store
/// call means in its own words. `vaultrs=debug` brings them back.
pub fn effective_log_filter(text: &str) -> String {
    let mut out = text.trim().to_string();
    for lib in ["vaultrs", "rustify"] {
        if !out.contains(lib) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(lib);
            out.push_str("=off");
        }
    }
    out
}

pub(crate) fn settings_of(cfg: &Config) -> Settings {
    Settings {
        min_validity: cfg.refresh.min_validity,
        at: cfg.refresh.at,
        jitter: cfg.refresh.jitter,
    }
}

/// The access policy (issue 17); `AppState` fills in the agent's own uid.
pub(crate) fn access_of(cfg: &Config) -> Access {
    cfg.access.policy(&cfg.server, 0)
}

/// Why the agent did not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration or the machine must change first (a file or
    /// directory, the CA certificates, an address): starting again cannot
    /// help, so the exit code tells systemd not to (`RestartPreventExitStatus=`).
    Setup(String),
    /// Anything else.
    Internal(String),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Setup(_) => crate::exit::CONFIG,
            StartError::Internal(_) => crate::exit::SOFTWARE,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Setup(e) => write!(f, "{e}; fix it, then start the agent again"),
            StartError::Internal(e) => f.write_str(e),
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT. Returns after a graceful stop.
pub async fn run(
    cfg: Config,
    bound: Bound,
    notifier: Notifier,
    log_reloader: Option<LogReloader>,
) -> Result<(), StartError> {
    let started = Instant::now();
    // The audit log opens before anything can happen that it must record.
    crate::audit::configure(cfg.server.audit_log.as_deref(), "start").map_err(StartError::Setup)?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // One crypto provider for every TLS client in the process (reqwest, redis, vaultrs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The journal is replayed and the store loaded before anything is served.
    let (broker, loaded, snapshot) = build::start_broker(&cfg, &shutdown_rx).await?;
    let (store_desc, cache_desc) = broker.describe_backends();
    let callback = build::callback_listener(&cfg, &broker, &shutdown_rx);

    let listener = build::async_listener(bound.listener)?;
    let (reloads, reload_inbox) = crate::api::reloads::channel();
    let state = AppState::new(
        Arc::clone(&broker),
        access_of(&cfg),
        Some(callback),
        reloads,
    );
    // The handlers exist before anyone is told the agent is ready: a SIGTERM
    // sent on "ready" stops it gracefully instead of killing it outright.
    let signal_streams = Signals::install().map_err(StartError::Internal)?;

    log_ready(
        &cfg,
        (&bound.path, bound.created),
        (&store_desc, &cache_desc),
        loaded,
        started,
    );
    crate::broker::force::set_interval(cfg.refresh.force_interval);
    let sinks = crate::sink::spawn_all(cfg.sinks.clone(), Arc::clone(&broker), shutdown_rx.clone());
    if loaded == 0 {
        hint_first_credential();
    }
    tracing::info!(audit_log = ?cfg.server.audit_log, "access: {}", state.policy().summary());
    let notifier = Arc::new(notifier);
    notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&broker)));

    let signals = tokio::spawn(handle_signals(
        signal_streams,
        (Reloader::new(cfg.clone(), log_reloader), reload_inbox),
        Arc::clone(&state),
        Arc::clone(&notifier),
        shutdown_tx,
    ));
    let watchdog = spawn_watchdog(&notifier, &broker);
    let snapshot = snapshot.map(|k| {
        let task = k.spawn(shutdown_rx.clone());
        (k, task)
    });

    let metrics_server = build::start_metrics(&cfg, &broker, &shutdown_rx)
        .await
        .map_err(StartError::Setup)?;
    serve(
        listener,
        Arc::clone(&state),
        shutdown_rx,
        cfg.server.shutdown_grace,
    )
    .await;

    let tasks = Tasks {
        metrics_server,
        watchdog,
        signals,
        sinks,
        snapshot,
    };
    stop(&cfg, &broker, tasks, (bound.created, &bound.path)).await;
    tracing::info!("snykey agent stopped");
    Ok(())
}

#[cfg(test)]
mod log_filter_tests {
    #[test]
    fn openbao_client_libraries_are_silent_unless_named() {
        assert_eq!(
            super::effective_log_filter("info"),
            "info,vaultrs=off,rustify=off"
        );
        assert_eq!(
            super::effective_log_filter("debug,vaultrs=debug"),
            "debug,vaultrs=debug,rustify=off"
        );
        assert!(
            tracing_subscriber::EnvFilter::try_new(super::effective_log_filter("trace")).is_ok()
        );
    }
}

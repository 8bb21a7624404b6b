//! `snykey serve`: wires config, store, cache, journal and broker together,
//! serves the API, and handles signals (SIGTERM/SIGINT stop, SIGHUP reloads).

use crate::api::reloads::ReloadInbox;
use crate::api::server::Access;
use crate::api::socket::Bound;
use crate::api::{AppState, serve};
use crate::broker::journal::Journal;
use crate::broker::{Broker, BrokerParts, Settings};
use crate::clock::SystemClock;
use crate::config::{Config, StoreBackend};
use crate::reload::{Origin, Reloader};
use crate::snyk::SnykOAuth;
use crate::store::file::FileStore;
use crate::store::{SecretStore, TokenShelf};
use crate::systemd::{Notifier, watchdog_interval};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
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

/// The secret store, and where tokens are published for jobs (`[publish]`:
/// on the store's OpenBao, through its client).
async fn open_store(
    cfg: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Arc<dyn SecretStore>, Option<Arc<dyn TokenShelf>>), String> {
    match cfg.store.backend {
        StoreBackend::File => {
            let path = cfg.store.path.clone();
            let store = tokio::task::spawn_blocking(move || FileStore::open(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(store), None))
        }
        StoreBackend::OpenBao => {
            let store = Arc::new(crate::store::openbao::OpenBaoStore::new(
                &cfg.store,
                cfg.snyk.timeout,
            ));
            store.spawn_renewer(shutdown.clone());
            let shelf = cfg.publish.enabled().then(|| {
                Arc::new(store.shelf(&cfg.publish.mount, &cfg.publish.prefix))
                    as Arc<dyn TokenShelf>
            });
            Ok((store, shelf))
        }
    }
}

/// A broker not yet started, with what the last run's snapshot saved and
/// the keeper of this run's (`cache.snapshot`).
struct Built {
    broker: Arc<Broker>,
    saved: Vec<crate::cache::snapshot::Saved>,
    snapshot: Option<Arc<crate::cache::snapshot::Keeper>>,
}

/// The store, the cache and the Snyk clients, put together as the broker
/// (not yet started: [`Broker::start`] replays the journal).
async fn build_broker(cfg: &Config, shutdown_rx: &watch::Receiver<bool>) -> Result<Built, String> {
    // The journal first: a second agent on its directory is refused before
    // it touches the store.
    let journal = Journal::open(&cfg.store.journal_dir)?;
    let (store, shelf) = open_store(cfg, shutdown_rx).await?;
    let (store_checks_versions, store_locked) =
        (store.checks_versions(), store.locked_to_this_agent());
    let (cache, memory) = crate::wiring::open_cache(cfg).await?;
    let (saved, snapshot) = crate::wiring::token_snapshot(cfg, memory.as_ref(), &*store);
    let snyk = SnykOAuth::new(&cfg.snyk.api_url, cfg.snyk.timeout).map_err(http_client_error)?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    let publisher = shelf.map(|shelf| {
        crate::broker::publish::Publisher::new(shelf, (&cfg.publish).into(), Arc::clone(&clock))
    });
    let broker = Broker::new(BrokerParts {
        store,
        cache,
        snyk,
        journal,
        clock,
        publisher,
        settings: settings_of(cfg),
        // Every token answer names the region, so `snykey-helper exec` and
        // `--format env` set SNYK_API to it: the token is valid there only.
        snyk_api: Some(cfg.snyk.api_url.clone()),
        rules: crate::broker::rotation::Rules::new(
            claims_for(store_checks_versions, store_locked),
            cfg.store.is_exclusive(),
            cfg.snyk.timeout,
        ),
        agent_id: cfg.server.agent_id.clone(),
        shutdown: shutdown_rx.clone(),
        rest: crate::snyk::rest::SnykRest::new(
            &cfg.snyk.api_url,
            &cfg.snyk.rest_version,
            cfg.snyk.timeout,
        )
        .map_err(http_client_error)?,
        login: crate::broker::LoginSettings::new(
            &cfg.snyk.app_url,
            &cfg.snyk.api_url,
            &cfg.server.redirect_uri,
            cfg.server.login_timeout,
        ),
    });
    Ok(Built {
        broker,
        saved,
        snapshot,
    })
}

/// reqwest's own message is only "builder error": the causes it wraps say
/// what is wrong (no CA certificates on this machine, for one).
fn http_client_error(e: reqwest::Error) -> String {
    let mut out = format!("cannot build the HTTP client: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The callback listener for browser logins, bound on demand while a login
/// is pending ([`crate::api::callback::CallbackListener`]).
fn callback_listener(
    cfg: &Config,
    broker: &Arc<Broker>,
    shutdown_rx: &watch::Receiver<bool>,
) -> Arc<crate::api::callback::CallbackListener> {
    tracing::info!(
        listen = %cfg.server.callback_listen,
        redirect_uri = %cfg.server.redirect_uri,
        "OAuth callback listener: bound while a browser login is pending"
    );
    crate::api::callback::CallbackListener::new(
        cfg.server.callback_listen,
        &cfg.server.redirect_uri,
        Arc::clone(broker),
        shutdown_rx.clone(),
    )
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
    let Built {
        broker,
        saved,
        snapshot,
    } = build_broker(&cfg, &shutdown_rx)
        .await
        .map_err(StartError::Setup)?;
    // The journal is replayed and the store loaded before anything is served.
    let loaded = broker
        .start(saved)
        .await
        .map_err(|e| StartError::Setup(format!("start-up failed: {e}")))?;
    let (store_desc, cache_desc) = broker.describe_backends();
    if let Some(w) = broker.protection_warning() {
        tracing::warn!("{w}");
    }
    let callback = callback_listener(&cfg, &broker, &shutdown_rx);

    let internal = |e: std::io::Error| StartError::Internal(e.to_string());
    bound.listener.set_nonblocking(true).map_err(internal)?;
    let listener = tokio::net::UnixListener::from_std(bound.listener).map_err(internal)?;
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
    let snapshots = snapshot.as_ref().map(|k| k.spawn(shutdown_rx.clone()));

    let metrics_server = start_metrics(&cfg, &broker, &shutdown_rx)
        .await
        .map_err(StartError::Setup)?;
    serve(
        listener,
        Arc::clone(&state),
        shutdown_rx,
        cfg.server.shutdown_grace,
    )
    .await;

    stop(
        &cfg,
        &broker,
        metrics_server,
        watchdog,
        signals,
        sinks,
        (bound.created, &bound.path),
    )
    .await;
    // After the grants in flight landed: their tokens are in it.
    if let (Some(keeper), Some(task)) = (snapshot, snapshots) {
        let _ = task.await;
        keeper.write_if_changed().await;
    }
    tracing::info!("snykey agent stopped");
    Ok(())
}

/// The line that says the agent serves, with what it was started on.
fn log_ready(
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
fn hint_first_credential() {
    tracing::info!(
        "no credentials yet: add one with `snykey put --org-id ORG_ID --client-id CLIENT_ID --client-secret-file FILE --refresh-token-file FILE` or `snykey login --org-id ORG_ID --client-id CLIENT_ID`; then `snykey-helper ORG_ID CLIENT_ID` prints a token"
    );
}

/// The Prometheus listener, when `server.metrics_listen` names one.
async fn start_metrics(
    cfg: &Config,
    broker: &Arc<Broker>,
    shutdown_rx: &watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    Ok(match cfg.server.metrics_listen {
        Some(addr) => {
            Some(crate::api::metrics_listener(addr, Arc::clone(broker), shutdown_rx.clone()).await?)
        }
        None => None,
    })
}

/// Pings systemd's watchdog with the current status, when it asks for it.
fn spawn_watchdog(
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

/// The shutdown tail, after the API stopped serving: the metrics listener
/// and the sinks end, grants in flight are drained, the socket file we
/// created is removed.
async fn stop(
    cfg: &Config,
    broker: &Broker,
    metrics_server: Option<tokio::task::JoinHandle<()>>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    signals: tokio::task::JoinHandle<()>,
    sinks: Vec<tokio::task::JoinHandle<()>>,
    (created, path): (bool, &std::path::Path),
) {
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    signals.abort();
    for s in sinks {
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

/// A short summary for `STATUS=`.
fn status_line(broker: &Broker) -> String {
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
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, String> {
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
async fn handle_signals(
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

/// Where claims live for this store (SPEC §2 rules 3 and 7).
fn claims_for(checks_versions: bool, locked: bool) -> crate::broker::rotation::Claims {
    use crate::broker::rotation::Claims;
    if locked {
        Claims::Journal
    } else if checks_versions {
        Claims::Store
    } else {
        Claims::Unprotected
    }
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

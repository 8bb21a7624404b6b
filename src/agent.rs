//! `snykey serve`: wires config, store, cache, journal and broker together,
//! serves the API, and handles signals (SIGTERM/SIGINT stop, SIGHUP reloads).

use crate::api::server::Access;
use crate::api::socket::Bound;
use crate::api::{AppState, serve};
use crate::broker::journal::Journal;
use crate::broker::{Broker, BrokerParts, Settings};
use crate::cache::TokenCache;
use crate::cache::memory::MemoryCache;
use crate::clock::SystemClock;
use crate::config::{CacheBackend, Config, StoreBackend};
use crate::snyk::SnykOAuth;
use crate::store::SecretStore;
use crate::store::file::FileStore;
use crate::systemd::{Notifier, watchdog_interval};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Applies the config file's `server.log_level` at run time (SIGHUP); set by
/// the binary, which knows whether `--log-level` or `SNYKEY_LOG` pin the
/// filter instead. Returns a sentence saying what is in force.
pub type LogReloader = Box<dyn Fn(Option<&str>) -> Result<String, String> + Send + Sync>;

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

fn settings_of(cfg: &Config) -> Settings {
    Settings {
        min_validity: cfg.refresh.min_validity,
        at: cfg.refresh.at,
        jitter: cfg.refresh.jitter,
    }
}

/// The access policy (issue 17); `AppState` fills in the agent's own uid.
fn access_of(cfg: &Config) -> Access {
    cfg.access.policy(&cfg.server, 0)
}

async fn open_store(
    cfg: &Config,
    shutdown: &watch::Receiver<bool>,
) -> Result<Arc<dyn SecretStore>, String> {
    match cfg.store.backend {
        StoreBackend::File => {
            let path = cfg.store.path.clone();
            let store = tokio::task::spawn_blocking(move || FileStore::open(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(store))
        }
        StoreBackend::OpenBao => {
            let store = Arc::new(crate::store::openbao::OpenBaoStore::new(
                &cfg.store,
                cfg.snyk.timeout,
            ));
            store.spawn_renewer(shutdown.clone());
            Ok(store)
        }
    }
}

async fn open_cache(cfg: &Config) -> Result<Arc<dyn TokenCache>, String> {
    match cfg.cache.backend {
        CacheBackend::Memory => Ok(Arc::new(MemoryCache::new())),
        CacheBackend::Redis => {
            let url = cfg.cache.connection_url();
            let cache = crate::cache::redis::RedisCache::connect(
                url.secret(),
                &cfg.cache.key_prefix,
                format!("redis {url}"),
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(Arc::new(cache))
        }
    }
}

/// The store, the cache and the Snyk clients, put together as the broker
/// (not yet started: [`Broker::start`] replays the journal).
async fn build_broker(
    cfg: &Config,
    shutdown_rx: &watch::Receiver<bool>,
) -> Result<Arc<Broker>, String> {
    // The journal first: a second agent on its directory is refused before
    // it touches the store.
    let journal = Journal::open(&cfg.store.journal_dir)?;
    let store = open_store(cfg, shutdown_rx).await?;
    let (store_checks_versions, store_locked) =
        (store.checks_versions(), store.locked_to_this_agent());
    let cache = open_cache(cfg).await?;
    let snyk = SnykOAuth::new(&cfg.snyk.api_url, cfg.snyk.timeout)
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok(Broker::new(BrokerParts {
        store,
        cache,
        snyk,
        journal,
        clock: Arc::new(SystemClock),
        settings: settings_of(cfg),
        snyk_api: (!cfg.snyk.is_default_region()).then(|| cfg.snyk.api_url.clone()),
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
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
        login: crate::broker::LoginSettings::new(
            &cfg.snyk.app_url,
            &cfg.snyk.api_url,
            &cfg.server.redirect_uri,
            cfg.server.login_timeout,
        ),
    }))
}

async fn start_callback_listener(
    cfg: &Config,
    broker: &Arc<Broker>,
    shutdown_rx: &watch::Receiver<bool>,
) {
    // The callback listener for browser logins. A busy port is not fatal: the
    // agent serves tokens without it, and /v1/login says why it cannot.
    match crate::api::callback::listen(
        cfg.server.callback_listen,
        Arc::clone(broker),
        shutdown_rx.clone(),
    )
    .await
    {
        Ok(addr) => {
            let default_uri = format!(
                "http://{}/authorization-code/callback",
                cfg.server.callback_listen
            );
            let uri = if cfg.server.redirect_uri == default_uri {
                format!("http://{addr}/authorization-code/callback")
            } else {
                cfg.server.redirect_uri.clone()
            };
            tracing::info!(listen = %addr, redirect_uri = %uri, "OAuth callback listener ready");
            broker.login.set_listening(uri);
        }
        Err(e) => tracing::error!("{e}; browser logins are unavailable until this is fixed"),
    }
}

/// Runs the agent until SIGTERM/SIGINT. Returns after a graceful stop.
pub async fn run(
    cfg: Config,
    bound: Bound,
    notifier: Notifier,
    log_reloader: Option<LogReloader>,
) -> Result<(), String> {
    let started = Instant::now();
    // The audit log opens before anything can happen that it must record.
    crate::audit::configure(cfg.server.audit_log.as_deref(), "start")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // One crypto provider for every TLS client in the process (reqwest, redis, vaultrs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let broker = build_broker(&cfg, &shutdown_rx).await?;
    // The journal is replayed and the store loaded before anything is served.
    let loaded = broker
        .start()
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    let (store_desc, cache_desc) = broker.describe_backends();
    if let Some(w) = broker.protection_warning() {
        tracing::warn!("{w}");
    }
    start_callback_listener(&cfg, &broker, &shutdown_rx).await;

    bound
        .listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(bound.listener).map_err(|e| e.to_string())?;
    let state = AppState::new(Arc::clone(&broker), access_of(&cfg));
    // The handlers exist before anyone is told the agent is ready: a SIGTERM
    // sent on "ready" stops it gracefully instead of killing it outright.
    let signal_streams = Signals::install()?;

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
        cfg.clone(),
        Arc::clone(&state),
        Arc::clone(&notifier),
        shutdown_tx,
        log_reloader,
    ));
    let watchdog = spawn_watchdog(&notifier, &broker);

    let metrics_server = start_metrics(&cfg, &broker, &shutdown_rx).await?;
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
        startup_ms = started.elapsed().as_millis() as u64,
        "snykey agent ready"
    );
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

async fn handle_signals(
    signals: Signals,
    mut cfg: Config,
    state: Arc<AppState>,
    notifier: Arc<Notifier>,
    shutdown: watch::Sender<bool>,
    log_reloader: Option<LogReloader>,
) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                notifier.reloading();
                cfg = reload(cfg, &state, log_reloader.as_ref());
                notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&state.broker)));
            }
        }
    }
    notifier.notify("STOPPING=1\nSTATUS=stopping");
    let _ = shutdown.send(true);
}

/// The keys SIGHUP applies to the running agent (see [`apply_live`]); every
/// other key that changed is named in a "restart needed" line.
const LIVE_KEYS: &[&str] = &[
    "server.allowed_uids",
    "server.allowed_gids",
    "server.admin_uids",
    "server.admin_gids",
    "server.audit_log",
    "server.log_level",
    "refresh.min_validity",
    "refresh.jitter",
    "refresh.at",
    "refresh.force_interval",
    "[[access]]",
];

/// What a reload does with each changed key (from [`Config::changed_keys`],
/// which compares the section structs field by field).
#[derive(Debug, Default, PartialEq)]
struct ReloadPlan {
    /// Applied to the running agent.
    live: Vec<String>,
    /// Changed in the file, but in force only after a restart.
    restart: Vec<String>,
}

fn plan_reload(current: &Config, new: &Config) -> ReloadPlan {
    let (live, restart) = current
        .changed_keys(new)
        .into_iter()
        .partition(|k| LIVE_KEYS.contains(&k.as_str()));
    ReloadPlan { live, restart }
}

/// The configuration in force after a reload: `new`'s values for the
/// [`LIVE_KEYS`], `current`'s for the rest (so the next reload compares
/// against what runs).
fn keep_live(current: Config, new: &Config) -> Config {
    let mut applied = current;
    let (s, n) = (&mut applied.server, &new.server);
    s.allowed_uids.clone_from(&n.allowed_uids);
    s.allowed_gids.clone_from(&n.allowed_gids);
    s.admin_uids.clone_from(&n.admin_uids);
    s.admin_gids.clone_from(&n.admin_gids);
    s.audit_log.clone_from(&n.audit_log);
    s.log_level.clone_from(&n.log_level);
    applied.refresh = new.refresh.clone();
    applied.access = new.access.clone();
    applied
}

/// Applies the [`LIVE_KEYS`] of `new` to the running agent.
fn apply_live(new: &Config, state: &AppState, log_reloader: Option<&LogReloader>) {
    state.set_access(access_of(new));
    if let Err(e) = crate::audit::configure(new.server.audit_log.as_deref(), "reopen") {
        tracing::error!("SIGHUP: {e}; the audit log in use (if any) stays in use");
    }
    state.broker.set_settings(settings_of(new));
    crate::broker::force::set_interval(new.refresh.force_interval);
    if let Some(reloader) = log_reloader {
        match reloader(Some(new.server.log_level.as_str())) {
            Ok(what) => tracing::info!("SIGHUP: {what}"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: could not apply the log filter"),
        }
    }
}

/// SIGHUP: re-reads the config file. Every changed key is either applied
/// live or named as needing a restart. A config that does not validate is
/// rejected whole.
fn reload(current: Config, state: &AppState, log_reloader: Option<&LogReloader>) -> Config {
    let new = match Config::load(current.file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the running one");
            return current;
        }
    };
    let plan = plan_reload(&current, &new);
    apply_live(&new, state, log_reloader);
    tracing::info!(
        changed = ?plan.live,
        allowed_uids = ?new.server.allowed_uids,
        allowed_gids = ?new.server.allowed_gids,
        min_validity_secs = new.refresh.min_validity.as_secs(),
        "SIGHUP: configuration reloaded (allow-lists, admins, access rules, audit log, refresh settings, log filter)"
    );
    tracing::info!("SIGHUP: access: {}", state.policy().summary());
    for key in &plan.restart {
        tracing::warn!(
            setting = %key,
            "SIGHUP: this setting changed but cannot change while running; restart the agent to apply it"
        );
    }
    keep_live(current, &new)
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

#[cfg(test)]
mod reload_tests {
    use super::*;

    /// A value other than the baseline's for every key; a key added to a
    /// section struct without one here fails the test below.
    const SAMPLES: &[(&str, &str)] = &[
        ("server.socket", "/tmp/snykey-other/s.sock"),
        ("server.socket_mode", "0600"),
        ("server.allowed_uids", "5"),
        ("server.allowed_gids", "5"),
        ("server.callback_listen", "127.0.0.1:8081"),
        ("server.metrics_listen", "127.0.0.1:9464"),
        ("server.metrics_allow_remote", "true"),
        ("server.allow_shared_dirs", "true"),
        ("server.redirect_uri", "http://127.0.0.1:8080/other"),
        ("server.shutdown_grace", "11s"),
        ("server.login_timeout", "5m"),
        ("server.log_level", "debug"),
        ("server.agent_id", "other"),
        ("server.sink_dirs", "/tmp/sinks-other"),
        ("server.admin_uids", "7"),
        ("server.admin_gids", "7"),
        ("server.audit_log", "/tmp/snykey-audit.log"),
        ("snyk.api_url", "https://api.eu.snyk.io"),
        ("snyk.app_url", "https://app.eu.snyk.io"),
        ("snyk.rest_version", "2024-11-01"),
        ("snyk.timeout", "31s"),
        ("cache.backend", "redis"),
        ("cache.url", "redis://127.0.0.1:6380/0"),
        ("cache.key_prefix", "other"),
        ("cache.username", "snykey"),
        ("cache.password_file", "PASSWORD_FILE"),
        ("store.backend", "openbao"),
        ("store.path", "/tmp/other/credentials.json"),
        ("store.journal_dir", "/tmp/other/journal"),
        ("store.addr", "http://127.0.0.1:8300"),
        ("store.auth", "kubernetes"),
        ("store.token", "s.other-token"),
        ("store.token_file", "/tmp/token"),
        ("store.role_id_file", "/tmp/role-id"),
        ("store.secret_id_file", "/tmp/secret-id"),
        ("store.kubernetes_role", "other"),
        ("store.kubernetes_jwt_file", "/tmp/jwt"),
        ("store.auth_mount", "k8s"),
        ("store.mount", "kv2"),
        ("store.kv_version", "1"),
        ("store.prefix", "other"),
        ("store.ca_cert", "/tmp/ca.pem"),
        ("store.exclusive", "true"),
        ("refresh.min_validity", "10m"),
        ("refresh.jitter", "0.2"),
        ("refresh.at", "0.5"),
        ("refresh.force_interval", "30s"),
    ];

    fn var(key: &str) -> String {
        format!("SNYKEY_{}", key.replace('.', "_").to_ascii_uppercase())
    }

    /// Every value that others default from is given, so changing one key
    /// changes that key alone.
    fn baseline() -> Vec<(String, String)> {
        [
            ("server.socket", "/tmp/snykey-test/s.sock"),
            (
                "server.redirect_uri",
                "http://127.0.0.1:8080/authorization-code/callback",
            ),
            ("server.agent_id", "test-agent"),
            ("server.sink_dirs", "/tmp/snykey-test"),
            ("snyk.app_url", "https://app.snyk.io"),
            ("store.path", "/tmp/snykey-test/credentials.json"),
            ("store.journal_dir", "/tmp/snykey-test/journal"),
            ("store.token", "s.base-token"),
        ]
        .iter()
        .map(|(k, v)| (var(k), v.to_string()))
        .collect()
    }

    #[test]
    fn every_key_changed_alone_is_either_applied_or_named_for_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("redis-password");
        std::fs::write(&password_file, "pw\n").unwrap();
        let base = Config::load_from(None, &baseline()).unwrap();
        let mut live = 0;
        for key in Config::keys() {
            let sample = SAMPLES
                .iter()
                .find(|(k, _)| *k == key)
                .unwrap_or_else(|| panic!("no sample value for {key}: add one to SAMPLES"))
                .1
                .replace("PASSWORD_FILE", &password_file.display().to_string());
            let mut env = baseline();
            env.retain(|(v, _)| *v != var(&key));
            env.push((var(&key), sample));
            let new = Config::load_from(None, &env)
                .unwrap_or_else(|e| panic!("{key}: the sample does not load: {e}"));
            let plan = plan_reload(&base, &new);
            let named: Vec<&String> = plan.live.iter().chain(&plan.restart).collect();
            assert_eq!(named, vec![&key], "{key}: {plan:?}");
            // What runs afterwards: the new value if applied, the old one if not.
            let after = keep_live(base.clone(), &new);
            if plan.live.is_empty() {
                assert_eq!(after.changed_keys(&new), vec![key.clone()], "{key}");
                assert!(after.changed_keys(&base).is_empty(), "{key}");
            } else {
                live += 1;
                assert!(after.changed_keys(&new).is_empty(), "{key} was not kept");
            }
        }
        assert_eq!(
            live,
            LIVE_KEYS.len() - 1,
            "every live key but [[access]] was seen"
        );
        assert!(
            SAMPLES
                .iter()
                .all(|(k, _)| Config::keys().any(|key| key == *k)),
            "a sample names a key that no longer exists"
        );
    }

    #[test]
    fn the_keys_sighup_once_ignored_now_ask_for_a_restart() {
        let base = Config::load_from(None, &baseline()).unwrap();
        for key in [
            "store.role_id_file",
            "store.secret_id_file",
            "store.kubernetes_role",
            "store.kubernetes_jwt_file",
            "store.auth_mount",
            "server.shutdown_grace",
            "server.login_timeout",
        ] {
            let sample = SAMPLES.iter().find(|(k, _)| *k == key).unwrap().1;
            let mut env = baseline();
            env.push((var(key), sample.to_string()));
            let new = Config::load_from(None, &env).unwrap();
            assert_eq!(plan_reload(&base, &new).restart, vec![key.to_string()]);
        }
    }
}

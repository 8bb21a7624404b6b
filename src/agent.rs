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
            let describe = format!(
                "redis {}",
                crate::config::redact_url_password(cfg.cache.url.expose())
            );
            let cache = crate::cache::redis::RedisCache::connect(
                &cfg.cache.url,
                &cfg.cache.key_prefix,
                describe,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(Arc::new(cache))
        }
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
    crate::audit::configure(cfg.access.audit_log.as_deref(), "start")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // One crypto provider for every TLS client in the process (reqwest, redis, vaultrs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let store = open_store(&cfg, &shutdown_rx).await?;
    let (store_checks_versions, store_locked) =
        (store.checks_versions(), store.locked_to_this_agent());
    let cache = open_cache(&cfg).await?;
    let snyk = SnykOAuth::new(&cfg.snyk.api_url, cfg.snyk.timeout)
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let broker = Broker::new(BrokerParts {
        store,
        cache,
        snyk,
        journal: Journal::new(&cfg.store.journal_dir),
        clock: Arc::new(SystemClock),
        settings: settings_of(&cfg),
        snyk_api: (!cfg.snyk.is_default_region()).then(|| cfg.snyk.api_url.clone()),
        rules: crate::broker::rotation::Rules::new(
            claims_for(store_checks_versions, store_locked),
            cfg.store.exclusive,
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
    });
    // The journal is replayed and the store loaded before anything is served.
    let loaded = broker
        .start()
        .await
        .map_err(|e| format!("start-up failed: {e}"))?;
    let (store_desc, cache_desc) = broker.describe_backends();
    if let Some(w) = broker.protection_warning() {
        tracing::warn!("{w}");
    }
    // The callback listener for browser logins. A busy port is not fatal: the
    // agent serves tokens without it, and /v1/login says why it cannot.
    match crate::api::callback::listen(
        cfg.server.callback_listen,
        Arc::clone(&broker),
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

    bound
        .listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(bound.listener).map_err(|e| e.to_string())?;
    let state = AppState::new(Arc::clone(&broker), access_of(&cfg));

    tracing::info!(
        socket = %bound.path.display(),
        activated = !bound.created,
        store = %store_desc,
        cache = %cache_desc,
        snyk = %cfg.snyk.api_url,
        credentials = loaded,
        sinks = cfg.sinks.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        "snykey agent ready"
    );
    crate::broker::force::set_interval(cfg.refresh.force_interval);
    let sinks = crate::sink::spawn_all(cfg.sinks.clone(), Arc::clone(&broker), shutdown_rx.clone());
    if loaded == 0 {
        tracing::info!(
            "no credentials yet: add one with `snykey put --org-id ORG_ID --client-id CLIENT_ID --client-secret-file FILE --refresh-token-file FILE` or `snykey login --org-id ORG_ID --client-id CLIENT_ID`; then `snykey-helper ORG_ID CLIENT_ID` prints a token"
        );
    }
    tracing::info!(audit_log = ?cfg.access.audit_log, "access: {}", state.policy().summary());
    let notifier = Arc::new(notifier);
    notifier.notify(&format!("READY=1\nSTATUS={}", status_line(&broker)));

    let signals = tokio::spawn(handle_signals(
        cfg.clone(),
        Arc::clone(&state),
        Arc::clone(&notifier),
        shutdown_tx,
        log_reloader,
    ));
    let watchdog = watchdog_interval().map(|every| {
        let notifier = Arc::clone(&notifier);
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                notifier.notify(&format!("WATCHDOG=1\nSTATUS={}", status_line(&broker)));
            }
        })
    });

    let metrics_server = match cfg.server.metrics_listen {
        Some(addr) => Some(
            crate::api::metrics_listener(addr, Arc::clone(&broker), shutdown_rx.clone()).await?,
        ),
        None => None,
    };
    serve(
        listener,
        Arc::clone(&state),
        shutdown_rx,
        cfg.server.shutdown_grace,
    )
    .await;

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
    if bound.created {
        match std::fs::remove_file(&bound.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(socket = %bound.path.display(), error = %e, "could not remove the socket file")
            }
        }
    }
    tracing::info!("snykey agent stopped");
    Ok(())
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

async fn handle_signals(
    mut cfg: Config,
    state: Arc<AppState>,
    notifier: Arc<Notifier>,
    shutdown: watch::Sender<bool>,
    log_reloader: Option<LogReloader>,
) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        let _ = shutdown.send(true);
        return;
    };
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

/// SIGHUP: re-reads the config file. Allow-lists, refresh settings and the
/// log filter change live; anything else that changed is reported as needing
/// a restart. A config that does not validate is rejected whole.
fn reload(current: Config, state: &AppState, log_reloader: Option<&LogReloader>) -> Config {
    let new = match Config::load(current.file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new configuration is invalid; keeping the running one");
            return current;
        }
    };
    state.set_access(access_of(&new));
    if let Err(e) = crate::audit::configure(new.access.audit_log.as_deref(), "reopen") {
        tracing::error!("SIGHUP: {e}; the audit log in use (if any) stays in use");
    }
    state.broker.set_settings(settings_of(&new));
    crate::broker::force::set_interval(new.refresh.force_interval);
    if let Some(reloader) = log_reloader {
        match reloader(new.server.log_level.as_deref()) {
            Ok(what) => tracing::info!("SIGHUP: {what}"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: could not apply the log filter"),
        }
    }
    let mut needs_restart = Vec::new();
    let c = &current;
    let n = &new;
    if c.server.socket != n.server.socket || c.server.socket_mode != n.server.socket_mode {
        needs_restart.push("server.socket / server.socket_mode");
    }
    if c.sinks != n.sinks || c.server.sink_dirs != n.server.sink_dirs {
        needs_restart.push("[[sink]] / server.sink_dirs");
    }
    if c.server.allow_shared_dirs != n.server.allow_shared_dirs {
        needs_restart.push("server.allow_shared_dirs");
    }
    if c.server.callback_listen != n.server.callback_listen
        || c.server.redirect_uri != n.server.redirect_uri
    {
        needs_restart.push("server.callback_listen / server.redirect_uri");
    }
    if c.server.metrics_listen != n.server.metrics_listen
        || c.server.metrics_allow_remote != n.server.metrics_allow_remote
    {
        needs_restart.push("server.metrics_listen / server.metrics_allow_remote");
    }
    if c.snyk.api_url != n.snyk.api_url
        || c.snyk.app_url != n.snyk.app_url
        || c.snyk.timeout != n.snyk.timeout
        || c.snyk.rest_version != n.snyk.rest_version
    {
        needs_restart.push("[snyk]");
    }
    if c.cache.backend != n.cache.backend
        || c.cache.url != n.cache.url
        || c.cache.key_prefix != n.cache.key_prefix
    {
        needs_restart.push("[cache]");
    }
    let (cs, ns) = (&c.store, &n.store);
    if cs.backend != ns.backend
        || cs.path != ns.path
        || cs.journal_dir != ns.journal_dir
        || cs.addrs != ns.addrs
        || cs.auth != ns.auth
        || cs.token != ns.token
        || cs.token_file != ns.token_file
        || cs.mount != ns.mount
        || cs.kv_version != ns.kv_version
        || cs.prefix != ns.prefix
        || cs.ca_cert != ns.ca_cert
    {
        needs_restart.push("[store]");
    }
    tracing::info!(
        allowed_uids = ?n.server.allowed_uids,
        allowed_gids = ?n.server.allowed_gids,
        min_validity_secs = n.refresh.min_validity.as_secs(),
        "SIGHUP: configuration reloaded (allow-lists, access rules, audit log, refresh settings, log filter)"
    );
    tracing::info!("SIGHUP: access: {}", state.policy().summary());
    for what in &needs_restart {
        tracing::warn!(
            setting = what,
            "SIGHUP: this setting changed but cannot change while running; restart the agent to apply it"
        );
    }
    // Keep the values that did not apply, so the next reload compares against what runs.
    let mut applied = current;
    applied.server.allowed_uids = new.server.allowed_uids;
    applied.server.allowed_gids = new.server.allowed_gids;
    applied.access = new.access;
    applied.refresh = new.refresh;
    applied
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

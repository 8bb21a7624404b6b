//! Building the agent's parts from the configuration: the store (and the
//! shelf tokens are published on), the cache and its snapshot, the Snyk
//! clients, the broker, started ([`start_broker`]); the callback listener
//! and the metrics listener.

use super::{StartError, settings_of};
use crate::broker::journal::Journal;
use crate::broker::{Broker, BrokerParts};
use crate::clock::SystemClock;
use crate::config::{Config, StoreBackend};
use crate::snyk::SnykOAuth;
use crate::store::file::FileStore;
use crate::store::{SecretStore, TokenShelf};
use std::sync::Arc;
use tokio::sync::watch;

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

/// Builds the broker and starts it: the journal replayed and the store
/// loaded (with the snapshot's tokens taken back) before anything is
/// served. Returns the broker, how many credentials it loaded, and the
/// keeper of this run's snapshot.
pub(super) async fn start_broker(
    cfg: &Config,
    shutdown_rx: &watch::Receiver<bool>,
) -> Result<
    (
        Arc<Broker>,
        usize,
        Option<Arc<crate::cache::snapshot::Keeper>>,
    ),
    StartError,
> {
    let Built {
        broker,
        saved,
        snapshot,
    } = build_broker(cfg, shutdown_rx)
        .await
        .map_err(StartError::Setup)?;
    let loaded = broker
        .start(saved)
        .await
        .map_err(|e| StartError::Setup(format!("start-up failed: {e}")))?;
    if let Some(w) = broker.protection_warning() {
        tracing::warn!("{w}");
    }
    Ok((broker, loaded, snapshot))
}

/// The bound socket, as the async listener the API serves on.
pub(super) fn async_listener(
    listener: std::os::unix::net::UnixListener,
) -> Result<tokio::net::UnixListener, StartError> {
    let internal = |e: std::io::Error| StartError::Internal(e.to_string());
    listener.set_nonblocking(true).map_err(internal)?;
    tokio::net::UnixListener::from_std(listener).map_err(internal)
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
pub(super) fn callback_listener(
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

/// The Prometheus listener, when `server.metrics_listen` names one.
pub(super) async fn start_metrics(
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

/// Where claims live for this store (docs/protocol.md rules 3 and 7).
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

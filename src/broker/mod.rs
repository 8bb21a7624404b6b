//! The broker owns every managed credential: it answers token requests from
//! the hot copy or the cache, and when a token must be minted it runs the
//! rotation protocol ([`rotation`], docs/protocol.md) under the credential's
//! single-flight lock, in a task of its own that no caller can cancel.
//!
//! * [`rotation`] — the protocol: claims, sends, landing by succession.
//! * [`refresh`] — runs it against the real store, journal and Snyk, then
//!   publishes and schedules.
//! * [`token`] — the token path: the hot copy, the shared cache, then the
//!   single flight; what a waiting caller accepts.
//! * [`slot`] — one credential's state in this agent (single flight, hot token, status).
//! * [`schedule`] — when to refresh: the proactive refresh, the plan after
//!   each outcome, the status kept around every run of the protocol.
//! * [`credentials`] — `PUT`/`DELETE` of credentials and cache entries.
//! * [`status`] — what `GET /v1/credentials`, `/v1/ready` and the metrics show.
//! * [`login`] (browser login), [`register`] (Snyk App registration),
//!   [`service_accounts`], [`force`] (forced refresh).
//! * [`publish`] — tokens published for jobs that cannot reach the socket
//!   (`[publish]`), and the rule that orders them ([`publish::decide`]).
//! * [`revive`] — start-up: the journal replayed, the stored credentials,
//!   and the tokens of the memory cache's snapshot taken back.
//! * [`journal`], [`scheduler`]; [`error`] — [`BrokerError`].
//!
//! Its public methods take and return the domain's words
//! ([`crate::credential`] and the request types of [`login`], [`register`]
//! and [`service_accounts`]), never the API's bodies. Every operation on one
//! credential runs in a `credential` tracing span that carries its ids.

mod agent_io;
pub mod api_key;
mod credentials;
mod error;
pub(crate) mod force;
pub mod journal;
pub(crate) mod login;
pub mod publish;
mod refresh;
mod region;
pub(crate) mod register;
mod revive;
pub mod rotation;
mod sa_token;
mod schedule;
mod scheduler;
pub(crate) mod service_accounts;
mod slot;
mod status;
mod token;

use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::credential::CredKey;
use crate::credential::Kind;
use crate::locks::Recover;
use crate::snyk::SnykOAuth;
use crate::store::SecretStore;
pub use error::BrokerError;
use journal::Journal;
pub use region::Details;
use slot::Slot;
pub use status::Unready;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use token::Want;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What the browser login needs to know about this agent.
pub struct LoginSettings {
    pub app_url: String,
    pub api_url: String,
    /// How long a pending login (its state) lives.
    pub ttl: Duration,
    redirect_uri: RwLock<String>,
    listening: std::sync::atomic::AtomicBool,
}

impl LoginSettings {
    pub fn new(app_url: &str, api_url: &str, redirect_uri: &str, ttl: Duration) -> LoginSettings {
        LoginSettings {
            app_url: app_url.to_string(),
            api_url: api_url.to_string(),
            ttl,
            redirect_uri: RwLock::new(redirect_uri.to_string()),
            listening: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn redirect_uri(&self) -> String {
        self.redirect_uri.read().recover().clone()
    }

    /// Called once the callback listener is bound (with its final redirect URI).
    pub fn set_listening(&self, redirect_uri: String) {
        *self.redirect_uri.write().recover() = redirect_uri;
        self.listening
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Called when the callback listener closes (no login pending).
    pub fn set_closed(&self) {
        self.listening
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn callback_listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `api.eu.snyk.io` of `https://api.eu.snyk.io`.
    pub fn api_host(&self) -> &str {
        api_host(&self.api_url)
    }
}

/// `api.eu.snyk.io` of `https://api.eu.snyk.io`.
fn api_host(api_url: &str) -> &str {
    let rest = api_url.split_once("://").map(|(_, r)| r).unwrap_or(api_url);
    rest.split('/').next().unwrap_or(rest)
}

/// Settings that SIGHUP may change.
#[derive(Debug, Clone)]
pub struct Settings {
    pub min_validity: Duration,
    pub at: f64,
    pub jitter: f64,
}

pub struct Broker {
    store: Arc<dyn SecretStore>,
    cache: Arc<dyn TokenCache>,
    snyk: SnykOAuth,
    journal: Journal,
    clock: Arc<dyn Clock>,
    settings: RwLock<Settings>,
    slots: RwLock<HashMap<CredKey, Arc<Slot>>>,
    /// The agent's region (`snyk.api_url`): the region of every credential
    /// whose record names none ([`region`]).
    snyk_api: Option<String>,
    /// The rotation protocol's rules (claims, send window, takeover period).
    rules: rotation::Rules,
    /// `server.agent_id`, written into claims (informational).
    agent_id: String,
    /// The origin of this agent's protocol clock ([`crate::clock::boottime`]).
    origin: Duration,
    /// How long the cross-agent refresh lock is held at most, and waited for.
    lock_ttl: Duration,
    lock_wait: Duration,
    /// Every grant in flight: callers await them, nobody cancels them, and
    /// shutdown waits for them (docs/protocol.md rule 1).
    grants: TaskTracker,
    shutdown: watch::Receiver<bool>,
    scheduler: Arc<scheduler::Scheduler>,
    rest: crate::snyk::rest::SnykRest,
    pub login: LoginSettings,
    logins: login::Logins,
    /// The doctor's last write check and when it ran ([`Broker::write_check`]).
    write_checked: tokio::sync::Mutex<Option<(std::time::Instant, WriteChecked)>>,
    /// Tokens published for jobs (`[publish]`), when on.
    publisher: Option<Arc<publish::Publisher>>,
}

type WriteChecked = Result<String, crate::store::StoreError>;

/// Everything a [`Broker`] is built from.
pub struct BrokerParts {
    pub store: Arc<dyn SecretStore>,
    pub cache: Arc<dyn TokenCache>,
    pub snyk: SnykOAuth,
    pub journal: Journal,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub snyk_api: Option<String>,
    pub rules: rotation::Rules,
    pub agent_id: String,
    pub shutdown: watch::Receiver<bool>,
    pub rest: crate::snyk::rest::SnykRest,
    pub login: LoginSettings,
    /// `[publish]`: tokens published for jobs, when on.
    pub publisher: Option<Arc<publish::Publisher>>,
}

impl Broker {
    pub fn new(parts: BrokerParts) -> Arc<Broker> {
        let rules = parts.rules;
        Arc::new(Broker {
            store: parts.store,
            cache: parts.cache,
            snyk: parts.snyk,
            journal: parts.journal,
            clock: parts.clock,
            settings: RwLock::new(parts.settings),
            slots: RwLock::new(HashMap::new()),
            snyk_api: parts.snyk_api,
            rules,
            agent_id: parts.agent_id,
            origin: crate::clock::boottime(),
            lock_ttl: rules.takeover,
            lock_wait: rules.snyk_max.min(Duration::from_secs(10)),
            grants: TaskTracker::new(),
            shutdown: parts.shutdown,
            scheduler: scheduler::Scheduler::new(),
            rest: parts.rest,
            login: parts.login,
            logins: login::Logins::default(),
            write_checked: tokio::sync::Mutex::new(None),
            publisher: parts.publisher,
        })
    }

    /// This agent's protocol clock: monotonic, suspend included (claims are
    /// timed on it, never on the wall clock).
    pub(crate) fn mono(&self) -> Duration {
        crate::clock::boottime().saturating_sub(self.origin)
    }

    /// Runs `work` (a grant: it changes state at Snyk) in a task of its own
    /// and waits for it. A caller that goes away only stops waiting; the task
    /// runs on, and shutdown waits for it.
    pub(crate) async fn spawn_grant<T, F>(&self, work: F) -> Result<T, BrokerError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BrokerError>> + Send + 'static,
    {
        // The task runs in the caller's span (the credential's ids).
        match self.grants.spawn(work.in_current_span()).await {
            Ok(r) => r,
            Err(e) => Err(BrokerError::Internal(format!(
                "an internal task failed ({e}); the recovery journal keeps what it had made durable"
            ))),
        }
    }

    /// On shutdown: waits (at most `grace`) for the grants in flight to land.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.grants.close();
        tokio::time::timeout(grace, self.grants.wait())
            .await
            .is_ok()
    }

    /// Whether claims protect this store (docs/protocol.md: not on KV v1).
    pub fn claims(&self) -> rotation::Claims {
        self.rules.claims
    }
    pub fn settings(&self) -> Settings {
        self.settings.read().recover().clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().recover() = s;
    }

    pub fn snyk_api(&self) -> Option<&str> {
        self.snyk_api.as_deref()
    }

    pub fn describe_backends(&self) -> (String, String) {
        (self.store.describe(), self.cache.describe())
    }

    /// Every slot, without holding the map's lock afterwards.
    fn snapshot(&self) -> Vec<Arc<Slot>> {
        self.slots.read().recover().values().cloned().collect()
    }

    fn existing_slot(&self, key: &CredKey) -> Option<Arc<Slot>> {
        self.slots.read().recover().get(key).cloned()
    }

    fn slot_or_insert(&self, key: &CredKey, kind: Kind) -> Arc<Slot> {
        let mut slots = self.slots.write().recover();
        slots
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Slot::new(key.clone(), kind)))
            .clone()
    }

    /// The slot of a credential, looking in the store for one this agent has
    /// not seen yet (another agent or the seed service may have written it).
    async fn slot(&self, key: &CredKey) -> Result<Arc<Slot>, BrokerError> {
        if let Some(s) = self.existing_slot(key) {
            return Ok(s);
        }
        match self.store.get(key).await? {
            Some(v) if !v.record.deleted => {
                let slot = self.slot_or_insert(key, v.record.kind());
                slot.set_api_url(v.record.api_url.as_deref());
                Ok(slot)
            }
            _ => Err(BrokerError::NotFound(key.clone())),
        }
    }
}

/// A span of its own for work on one credential that outlives its caller
/// (a background lander, the start-up replay): its log lines carry the ids.
pub(crate) fn detached_span(key: &CredKey) -> tracing::Span {
    tracing::error_span!(parent: None, "credential", org_id = %key.org, client_id = %key.client)
}

/// The error a caller sees for a credential that needs a login: one
/// sentence, the reason and the command.
fn needs_login_message(key: &CredKey, why: &str) -> String {
    let why = why.trim_end_matches('.');
    let why = why.strip_suffix(": it needs a new login").unwrap_or(why);
    format!(
        "credential {key} needs a new login ({why}): run `snykey login --org-id {} --client-id {}`",
        key.org, key.client
    )
}

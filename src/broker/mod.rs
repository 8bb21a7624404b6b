//! The broker owns every managed credential: it answers token requests from
//! the hot copy or the cache, and when a token must be minted it runs the
//! rotation protocol ([`rotation`], SPEC §2) under the credential's
//! single-flight lock, in a task of its own that no caller can cancel.
//!
//! * [`rotation`] — the protocol: claims, sends, landing by succession.
//! * [`refresh`] — runs it against the real store, journal and Snyk, then
//!   publishes and schedules.
//! * [`slot`] — one credential's state in this agent (single flight, hot token, status).
//! * [`schedule`] — when to refresh: the proactive refresh, the plan after
//!   each outcome, the status kept around every run of the protocol.
//! * [`credentials`] — `PUT`/`DELETE` of credentials and cache entries.
//! * [`status`] — what `GET /v1/credentials`, `/v1/ready` and the metrics show.
//! * [`login`] (browser login), [`register`] (Snyk App registration),
//!   [`service_accounts`], [`force`] (forced refresh).
//! * [`publish`] — tokens published for jobs that cannot reach the socket
//!   (`[publish]`), and the rule that orders them ([`publish::decide`]).
//! * [`revive`] — start-up: the stored credentials, and the tokens of the
//!   memory cache's snapshot taken back.
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

use crate::cache::{CachedToken, TokenCache};
use crate::clock::Clock;
use crate::credential::CredKey;
use crate::credential::{Kind, State};
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
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What a caller gets when the lifetime of tokens is unknown.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

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

/// What a waiting caller will accept.
pub(crate) struct Want {
    /// The token must stay valid this long...
    pub validity: Duration,
    /// ...unless it is newer than the one the caller saw when it arrived
    /// (its fingerprint): someone refreshed while the caller waited, and that
    /// token is the freshest there is.
    pub seen: Option<String>,
}

impl Want {
    pub fn accepts(&self, t: &CachedToken, now: SystemTime) -> bool {
        let left = t.remaining(now);
        left >= self.validity
            || (left > Duration::from_secs(1)
                && self.seen.as_deref() != Some(t.access_token.fingerprint().as_str()))
    }
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
    /// shutdown waits for them (SPEC §2 rule 1).
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

    /// Whether claims protect this store (SPEC §2: not on KV v1).
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

    /// Start-up: replay the recovery journal, then load every stored
    /// credential, taking back the tokens of `saved` (the memory cache's
    /// snapshot) that the store still vouches for ([`revive`]). Nothing is
    /// served before this returns.
    pub async fn start(
        self: &Arc<Self>,
        saved: Vec<crate::cache::snapshot::Saved>,
    ) -> Result<usize, BrokerError> {
        let entries = self.journal.read_all().map_err(BrokerError::NotDurable)?;
        for (key, entry) in entries {
            self.replay(&key, entry).await;
        }
        // A store that does not answer at start is not fatal: the agent serves
        // what it can (ready says why not) and picks credentials up on demand.
        let keys = match self.store.list().await {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the secret store at start; credentials are loaded on first use");
                Vec::new()
            }
        };
        let n = keys.len();
        self.require_cas_at_start(&keys).await;
        self.load_records(keys, saved).await;
        // Schedule everything: a credential whose token is still valid in the
        // cache (shared, or revived from the snapshot) is planned from that
        // token (no needless grant); the others are refreshed now, spread over
        // a short window.
        let slots = self.snapshot();
        let spread = Duration::from_millis(2 * slots.len() as u64).min(Duration::from_secs(30));
        for slot in &slots {
            if self.adopt_cached(slot).await {
                continue;
            }
            let needs_login = slot.status().state == State::NeedsLogin;
            if !needs_login {
                let when = tokio::time::Instant::now() + spread.mul_f64(rand::random::<f64>());
                self.scheduler.schedule(&slot.key, when);
            }
        }
        self.start_publisher();
        let broker = Arc::clone(self);
        tokio::spawn(Arc::clone(&self.scheduler).run(
            move |key| {
                let broker = Arc::clone(&broker);
                async move { broker.proactive(key).await }
            },
            self.shutdown.clone(),
        ));
        Ok(n)
    }

    /// Start-up: every stored record refuses blind writes (`cas_required`,
    /// SPEC §2 rule 10), including those another tool created; what could
    /// not be set is said once per record.
    async fn require_cas_at_start(&self, keys: &[CredKey]) {
        let (mut set_now, mut failed) = (0, 0);
        let mut first_failure = None;
        for key in keys {
            match self.store.require_cas(key).await {
                Ok(crate::store::CasRequired::SetNow) => set_now += 1,
                Ok(crate::store::CasRequired::NotApplicable) => return,
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    first_failure.get_or_insert((key.clone(), e));
                }
            }
        }
        if let Some((key, e)) = first_failure {
            tracing::warn!(records = failed, first = %key, error = %e, "cannot set cas_required on every record: a blind write by another tool can erase a claim on those (give the agent's policy update on the metadata path; snykey doctor checks again)");
        }
        if set_now > 0 {
            tracing::info!(
                records = set_now,
                "cas_required set on records other tools wrote (the seed service, bao kv put): blind writes to them are refused from now on"
            );
        }
    }

    /// Start-up, one journal entry: what was in flight is an unknown outcome
    /// (rule 6); a journaled successor lands by succession (rule 9).
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    async fn replay(self: &Arc<Self>, key: &CredKey, entry: journal::Entry) {
        let kind = entry.record.as_ref().map(|r| r.kind()).unwrap_or_default();
        let slot = self.slot_or_insert(key, kind);
        let mut flight = slot.flight.lock().await;
        if entry.claim.as_ref().is_some_and(|c| c.sent) || entry.sent.is_some() {
            tracing::warn!(
                "the agent stopped while a refresh was at Snyk: that answer is lost, so the token is sent once more after a quiet period (SPEC §2 rule 6)"
            );
        }
        flight.mem = rotation::Memory::recover(entry, self.mono());
        if flight.mem.unlanded.is_some() {
            tracing::info!("landing a refresh token from the recovery journal");
            let mut io = agent_io::AgentIo::new(self, key);
            if rotation::land(&mut io, &mut flight.mem, &self.rules).await
                == rotation::Landing::Pending
            {
                self.spawn_lander(&slot, &mut flight);
            }
        }
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

    /// How long a token must still be valid for a caller that asked for
    /// `requested`: capped at half the token lifetime, so a caller asking for
    /// more than any token can give gets the freshest token instead of
    /// forcing a grant on every call.
    fn wanted_validity(
        &self,
        slot: &Slot,
        requested: Option<Duration>,
        candidate: Option<&CachedToken>,
    ) -> Duration {
        let requested = requested.unwrap_or_else(|| self.settings().min_validity);
        let lifetime = candidate
            .and_then(|t| t.lifetime())
            .or_else(|| slot.hot().and_then(|t| t.lifetime()))
            .or(slot.status().lifetime)
            .unwrap_or(DEFAULT_LIFETIME);
        requested.min(lifetime / 2)
    }

    /// `GET /v1/credentials/{org}/{client}`: a token valid for at least
    /// `min_validity` (see [`Broker::wanted_validity`]).
    pub async fn token(
        self: &Arc<Self>,
        key: &CredKey,
        min_validity: Option<Duration>,
    ) -> Result<CachedToken, BrokerError> {
        let arrived = self.clock.now();
        let slot = self.slot(key).await?;
        self.token_of(key, slot, min_validity, arrived).await
    }

    /// [`Broker::token`] with what a token answer says besides the token
    /// (its region and scheme, [`Broker::answer_details`]), read from the
    /// slot the token came from: no second lookup on the cache-hit path.
    pub async fn token_answer(
        self: &Arc<Self>,
        key: &CredKey,
        min_validity: Option<Duration>,
    ) -> Result<(CachedToken, region::Details), BrokerError> {
        let arrived = self.clock.now();
        let slot = self.slot(key).await?;
        let t = self
            .token_of(key, Arc::clone(&slot), min_validity, arrived)
            .await?;
        Ok((t, self.details_of(Some(&slot))))
    }

    /// [`Broker::token`] for the credential's slot.
    async fn token_of(
        self: &Arc<Self>,
        key: &CredKey,
        slot: Arc<Slot>,
        min_validity: Option<Duration>,
        arrived: SystemTime,
    ) -> Result<CachedToken, BrokerError> {
        let want = self.wanted_validity(&slot, min_validity, None);

        // The hot copy: no await, no backend, and no span (this is the path
        // nearly every call takes; a span's fields are formatted per call).
        let hot = slot.hot();
        if let Some(t) = hot.as_ref().filter(|t| t.remaining(arrived) >= want) {
            crate::metrics::get().cache_hits.inc();
            return Ok(t.clone());
        }
        let span = tracing::error_span!("credential", org_id = %key.org, client_id = %key.client);
        self.token_past_hot(key, slot, min_validity, arrived, want, hot)
            .instrument(span)
            .await
    }

    /// [`Broker::token`] when the hot copy will not do: the shared cache,
    /// then the single flight.
    async fn token_past_hot(
        self: &Arc<Self>,
        key: &CredKey,
        slot: Arc<Slot>,
        min_validity: Option<Duration>,
        arrived: SystemTime,
        want: Duration,
        hot: Option<CachedToken>,
    ) -> Result<CachedToken, BrokerError> {
        // The shared cache: another agent may have refreshed.
        let mut want = Want {
            validity: want,
            seen: hot.map(|t| t.access_token.fingerprint()),
        };
        match self.cache.get(key).await {
            Ok(Some(t))
                if t.remaining(arrived) >= self.wanted_validity(&slot, min_validity, Some(&t)) =>
            {
                crate::metrics::get().cache_hits.inc();
                self.adopt(&slot, &t);
                return Ok(t);
            }
            Ok(Some(t)) => want.seen = Some(t.access_token.fingerprint()),
            Ok(None) => {}
            Err(e) => {
                crate::metrics::backend_error("cache");
                tracing::warn!(error = %e, "token cache read failed; minting through the single-flight path");
            }
        }

        // Single flight: one caller mints, the others wait and take its
        // token. The mint runs in a task of its own: a caller that hangs up
        // never cuts a grant short (SPEC §2 rule 1).
        let broker = Arc::clone(self);
        let grant = self.spawn_grant(async move {
            let mut flight = slot.flight.lock().await;
            if let Some(t) = slot
                .hot()
                .filter(|t| want.accepts(t, broker.clock.now()))
                .or_else(|| broker.held_through_anomaly(&slot))
            {
                crate::metrics::get().cache_hits.inc();
                return Ok(t);
            }
            crate::metrics::get().cache_misses.inc();
            broker.mint(&slot, &mut flight, None, &want).await
        });
        // A caller waits a bounded time (the helper waits longer than this);
        // the refresh itself runs on and serves the next call.
        let budget = self.rules.snyk_max * 2 + Duration::from_secs(10);
        match tokio::time::timeout(budget, grant).await {
            Ok(r) => r,
            Err(_) => Err(BrokerError::Busy(format!(
                "the refresh of {key} is taking longer than {}s; it goes on in the agent: try again shortly",
                budget.as_secs()
            ))),
        }
    }

    /// Takes a token another agent minted (read from the shared cache) as
    /// this agent's hot copy. Its lifetime is unknown (Redis keeps only a
    /// TTL); the remaining time at first sight is a safe lower bound.
    fn adopt(&self, slot: &Slot, t: &CachedToken) {
        slot.set_hot(Some(t.clone()));
        let mut st = slot.status();
        if st.state == State::Pending {
            st.state = State::Ok;
        }
        st.expires_at = Some(t.expires_at);
        if st.lifetime.is_none() {
            st.lifetime = Some(
                t.lifetime()
                    .unwrap_or_else(|| t.remaining(self.clock.now())),
            );
        }
        drop(st);
        self.plan(slot, t);
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

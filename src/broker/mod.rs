//! The broker owns every managed credential: it answers token requests from
//! the hot copy or the cache, and when a token must be minted it runs the
//! rotation rule ([`rotation`]) under the credential's single-flight lock.
//!
//! State per credential lives in one [`Slot`]:
//! * `flight` — the single-flight lock. Whoever holds it is the only one in
//!   this process talking to Snyk or the store for this credential. It also
//!   guards the rotated-but-not-yet-stored record (see [`journal`]).
//! * `hot` — the current access token, readable without any await (the hot layer).
//! * `status` — what `GET /v1/credentials` shows.

pub mod force;
pub mod journal;
pub mod login;
pub mod rotation;
pub mod scheduler;
pub mod service_accounts;

use crate::cache::{CacheError, CachedToken, TokenCache};
use crate::clock::{Clock, rfc3339};
use crate::ids::CredKey;
use crate::snyk::{GrantError, SnykOAuth};
use crate::store::{Record, SecretStore, StoreError};
use crate::wire::{CredentialStatus, Kind, PutCredential, PutCredentialResponse, State};
use journal::Journal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::sync::watch;

/// What a caller gets when the lifetime of tokens is unknown.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("{0}")]
    BadInput(String),
    #[error(
        "no credential {0} is managed by this agent: add it with `snykey put` or `snykey login`"
    )]
    NotFound(CredKey),
    #[error("{0}")]
    NeedsLogin(String),
    #[error("{0}")]
    Snyk(GrantError),
    #[error("{0}")]
    Store(StoreError),
    #[error("{0}")]
    Cache(CacheError),
    #[error("{0}")]
    NotDurable(String),
    #[error("{0}")]
    Rest(crate::snyk::rest::RestError),
    #[error(
        "no login with this state is known to this agent (it may have expired): start it again with `snykey login`"
    )]
    UnknownLogin,
}

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
        self.redirect_uri
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Called once the callback listener is bound (with its final redirect URI).
    pub fn set_listening(&self, redirect_uri: String) {
        *self.redirect_uri.write().unwrap_or_else(|p| p.into_inner()) = redirect_uri;
        self.listening
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn callback_listening(&self) -> bool {
        self.listening.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `api.eu.snyk.io` of `https://api.eu.snyk.io`.
    pub fn api_host(&self) -> &str {
        let rest = self
            .api_url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.api_url);
        rest.split('/').next().unwrap_or(rest)
    }
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        crate::metrics::backend_error("store");
        BrokerError::Store(e)
    }
}

impl From<CacheError> for BrokerError {
    fn from(e: CacheError) -> Self {
        crate::metrics::backend_error("cache");
        BrokerError::Cache(e)
    }
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

/// A rotated refresh token (inside its full record) that the store does not hold yet.
struct Unlanded {
    record: Record,
    /// Fingerprint of the refresh token this one replaced (the one sent to Snyk).
    replaces: Option<String>,
    /// In the recovery journal (durable) or only in memory.
    journaled: bool,
    /// The access token minted with it, held back until the record is durable.
    unpublished: Option<CachedToken>,
}

/// Guarded by the single-flight lock.
#[derive(Default)]
pub(crate) struct Flight {
    /// Boxed: rare, and every credential's slot holds a `Flight`.
    unlanded: Option<Box<Unlanded>>,
    /// The last refresh's answer may have been lost: the next send of the
    /// same token is the one permitted retry (SPEC §2).
    in_doubt: bool,
    /// Fingerprint of a refresh token Snyk refused for good.
    dead_token: Option<String>,
    lander_running: bool,
    /// An access token minted with a record that has since become durable,
    /// waiting to be published.
    held_back: Option<CachedToken>,
    /// The record this agent last read from or wrote to the store.
    known: Option<Record>,
}

#[derive(Debug, Clone)]
struct Status {
    kind: Kind,
    state: State,
    expires_at: Option<SystemTime>,
    next_refresh_at: Option<SystemTime>,
    last_refresh_at: Option<SystemTime>,
    failures: u32,
    last_error: Option<String>,
    lifetime: Option<Duration>,
    deleted: bool,
}

pub struct Slot {
    pub key: CredKey,
    flight: tokio::sync::Mutex<Flight>,
    hot: RwLock<Option<CachedToken>>,
    status: Mutex<Status>,
}

impl Slot {
    fn new(key: CredKey, kind: Kind) -> Slot {
        Slot {
            key,
            flight: tokio::sync::Mutex::new(Flight::default()),
            hot: RwLock::new(None),
            status: Mutex::new(Status {
                kind,
                state: State::Ok,
                expires_at: None,
                next_refresh_at: None,
                last_refresh_at: None,
                failures: 0,
                last_error: None,
                lifetime: None,
                deleted: false,
            }),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hot(&self) -> Option<CachedToken> {
        self.hot.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_hot(&self, token: Option<CachedToken>) {
        *self.hot.write().unwrap_or_else(|p| p.into_inner()) = token;
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
    /// `Some(api_url)` when not on Snyk's default region.
    snyk_api: Option<String>,
    /// How long the cross-agent refresh lock is held at most (and waited for).
    lock_ttl: Duration,
    shutdown: watch::Receiver<bool>,
    scheduler: Arc<scheduler::Scheduler>,
    rest: crate::snyk::rest::SnykRest,
    pub login: LoginSettings,
    logins: login::Logins,
}

/// Everything a [`Broker`] is built from.
pub struct BrokerParts {
    pub store: Arc<dyn SecretStore>,
    pub cache: Arc<dyn TokenCache>,
    pub snyk: SnykOAuth,
    pub journal: Journal,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    pub snyk_api: Option<String>,
    pub lock_ttl: Duration,
    pub shutdown: watch::Receiver<bool>,
    pub rest: crate::snyk::rest::SnykRest,
    pub login: LoginSettings,
}

impl Broker {
    pub fn new(parts: BrokerParts) -> Arc<Broker> {
        Arc::new(Broker {
            store: parts.store,
            cache: parts.cache,
            snyk: parts.snyk,
            journal: parts.journal,
            clock: parts.clock,
            settings: RwLock::new(parts.settings),
            slots: RwLock::new(HashMap::new()),
            snyk_api: parts.snyk_api,
            lock_ttl: parts.lock_ttl,
            shutdown: parts.shutdown,
            scheduler: scheduler::Scheduler::new(),
            rest: parts.rest,
            login: parts.login,
            logins: login::Logins::default(),
        })
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn snyk_api(&self) -> Option<&str> {
        self.snyk_api.as_deref()
    }

    pub fn describe_backends(&self) -> (String, String) {
        (self.store.describe(), self.cache.describe())
    }

    /// Start-up: replay the recovery journal, then load every stored credential.
    /// Nothing is served before this returns.
    pub async fn start(self: &Arc<Self>) -> Result<usize, BrokerError> {
        let entries = self.journal.read_all().map_err(BrokerError::NotDurable)?;
        for (key, entry) in entries {
            let kind = entry.record.as_ref().map(|r| r.kind()).unwrap_or_default();
            let slot = self.slot_or_insert(&key, kind);
            let mut flight = slot.flight.lock().await;
            if entry.sent.is_some() {
                tracing::warn!(org_id = %key.org, client_id = %key.client,
                    "the agent stopped while a refresh was in flight: the next refresh retries the same token once");
                flight.in_doubt = true;
            }
            if let Some(record) = entry.record {
                tracing::info!(org_id = %key.org, client_id = %key.client, "replaying a rotated refresh token from the recovery journal");
                flight.unlanded = Some(Box::new(Unlanded {
                    record,
                    journaled: true,
                    replaces: None,
                    unpublished: None,
                }));
                if self.land(&slot, &mut flight, None).await != rotation::Durability::Stored {
                    self.spawn_lander(&slot, &mut flight);
                }
            }
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
        for key in keys {
            if self.existing_slot(&key).is_none() {
                let kind = match self.store.get(&key).await {
                    Ok(Some(v)) => v.record.kind(),
                    _ => Kind::OauthApp,
                };
                self.slot_or_insert(&key, kind);
            }
        }
        // Schedule everything: a credential whose token is still valid in the
        // shared cache is planned from that token (no needless grant); the
        // others are refreshed now, spread over a short window.
        let slots = self.snapshot();
        let spread = Duration::from_millis(2 * slots.len() as u64).min(Duration::from_secs(30));
        for slot in &slots {
            match self.cache.get(&slot.key).await {
                Ok(Some(t)) if t.remaining(self.clock.now()) > Duration::from_secs(1) => {
                    self.adopt(slot, &t)
                }
                _ => {
                    let when = tokio::time::Instant::now() + spread.mul_f64(rand::random::<f64>());
                    self.scheduler.schedule(&slot.key, when);
                }
            }
        }
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

    /// A scheduled refresh: mint a token newer than the one held, unless the
    /// credential is gone or needs a login. Success and failure both plan
    /// the next attempt (see [`Broker::mint`]).
    async fn proactive(self: Arc<Self>, key: CredKey) {
        let Some(slot) = self.existing_slot(&key) else {
            return;
        };
        {
            let st = slot.status();
            if st.deleted || st.state == State::NeedsLogin {
                return;
            }
        }
        let mut flight = slot.flight.lock().await;
        let want = Want {
            validity: Duration::MAX,
            seen: slot.hot().map(|t| t.access_token.fingerprint()),
        };
        if let Err(e) = self.mint(&slot, &mut flight, None, &want).await {
            tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "proactive refresh failed");
        }
    }

    /// Plans the next proactive refresh of a credential holding `t`.
    fn plan(&self, slot: &Slot, t: &CachedToken) {
        let s = self.settings();
        let now = self.clock.now();
        let mut st = slot.status();
        let lifetime = t
            .lifetime()
            .or(st.lifetime)
            .unwrap_or_else(|| t.remaining(now));
        let issued = t
            .issued_at
            .unwrap_or_else(|| t.expires_at.checked_sub(lifetime).unwrap_or(now));
        let when = scheduler::next_refresh(
            issued,
            t.expires_at,
            s.at,
            s.jitter,
            s.min_validity,
            rand::random::<f64>(),
        );
        st.next_refresh_at = Some(when);
        drop(st);
        let delay = when.duration_since(now).unwrap_or(Duration::ZERO);
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + delay);
    }

    /// Plans a retry after a failure.
    fn plan_retry(&self, slot: &Slot, failures: u32, retry_after: Option<Duration>) {
        let wait = scheduler::backoff(failures, retry_after, rand::random::<f64>());
        slot.status().next_refresh_at = Some(self.clock.now() + wait);
        self.scheduler
            .schedule(&slot.key, tokio::time::Instant::now() + wait);
    }

    /// Credentials with a planned refresh.
    pub fn scheduled(&self) -> usize {
        self.scheduler.len()
    }

    /// Every slot, without holding the map's lock afterwards.
    fn snapshot(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn existing_slot(&self, key: &CredKey) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn slot_or_insert(&self, key: &CredKey, kind: Kind) -> Arc<Slot> {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
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
            Some(v) => Ok(self.slot_or_insert(key, v.record.kind())),
            None => Err(BrokerError::NotFound(key.clone())),
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
        let want = self.wanted_validity(&slot, min_validity, None);

        // The hot copy: no await, no backend.
        let hot = slot.hot();
        if let Some(t) = hot.as_ref().filter(|t| t.remaining(arrived) >= want) {
            crate::metrics::get().cache_hits.inc();
            return Ok(t.clone());
        }
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
                tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "token cache read failed; minting through the single-flight path");
            }
        }

        // Single flight: one caller mints, the others wait and take its token.
        let mut flight = slot.flight.lock().await;
        if let Some(t) = slot.hot().filter(|t| want.accepts(t, self.clock.now())) {
            crate::metrics::get().cache_hits.inc();
            return Ok(t);
        }
        crate::metrics::get().cache_misses.inc();
        self.mint(&slot, &mut flight, None, &want).await
    }

    /// Takes a token another agent minted (read from the shared cache) as
    /// this agent's hot copy. Its lifetime is unknown (Redis keeps only a
    /// TTL); the remaining time at first sight is a safe lower bound.
    fn adopt(&self, slot: &Slot, t: &CachedToken) {
        slot.set_hot(Some(t.clone()));
        let mut st = slot.status();
        st.expires_at = Some(t.expires_at);
        if st.lifetime.is_none() {
            st.lifetime = Some(t.remaining(self.clock.now()));
        }
        drop(st);
        self.plan(slot, t);
    }

    /// Runs the rotation rule and keeps the status up to date.
    async fn mint(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        flight: &mut Flight,
        given: Option<Record>,
        want: &Want,
    ) -> Result<CachedToken, BrokerError> {
        let before = slot.status().state;
        if before != State::NeedsLogin && before != State::Degraded {
            slot.status().state = State::Refreshing;
        }
        let result = self.rotate(slot, flight, given, want).await;
        let mut st = slot.status();
        match &result {
            Ok(t) => {
                st.expires_at = Some(t.expires_at);
                if let Some(l) = t.lifetime() {
                    st.lifetime = Some(l);
                }
                st.failures = 0;
                st.last_error = None;
                st.state = if flight.unlanded.is_some() {
                    State::Degraded
                } else {
                    State::Ok
                };
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                st.last_error = Some(e.to_string());
                st.state = match e {
                    BrokerError::NeedsLogin(_) => State::NeedsLogin,
                    _ if flight.unlanded.is_some() => State::Degraded,
                    _ if before == State::Refreshing => State::Ok,
                    _ => before,
                };
                let failures = st.failures;
                drop(st);
                match e {
                    // Permanent: no more attempts until someone logs in again.
                    BrokerError::NeedsLogin(_)
                    | BrokerError::NotFound(_)
                    | BrokerError::BadInput(_) => {
                        slot.status().next_refresh_at = None;
                        self.scheduler.cancel(&slot.key);
                    }
                    BrokerError::Snyk(g) => self.plan_retry(slot, failures, g.retry_after()),
                    _ => self.plan_retry(slot, failures, None),
                }
            }
        }
        result
    }

    /// Retries landing a rotated record in the background until it lands.
    fn spawn_lander(self: &Arc<Self>, slot: &Arc<Slot>, flight: &mut Flight) {
        if flight.lander_running {
            return;
        }
        flight.lander_running = true;
        let broker = Arc::clone(self);
        let slot = Arc::clone(slot);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(250);
            let mut shutdown = broker.shutdown.clone();
            loop {
                let sleep = rotation::jittered(delay, 0.2);
                tokio::select! {
                    _ = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {}
                }
                let mut flight = slot.flight.lock().await;
                if flight.unlanded.is_none() || slot.status().deleted {
                    flight.lander_running = false;
                    return;
                }
                let durability = broker.land(&slot, &mut flight, None).await;
                broker.publish_unpublished(&slot, &mut flight).await;
                if durability != rotation::Durability::Memory && flight.unlanded.is_none() {
                    flight.lander_running = false;
                    return;
                }
                if *shutdown.borrow() {
                    flight.lander_running = false;
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        });
    }

    /// Hands a token to everyone: the hot layer, then the shared cache.
    async fn publish(&self, slot: &Slot, token: CachedToken) {
        slot.set_hot(Some(token.clone()));
        self.plan(slot, &token);
        {
            let mut st = slot.status();
            st.expires_at = Some(token.expires_at);
            if let Some(l) = token.lifetime() {
                st.lifetime = Some(l);
            }
        }
        if let Err(e) = self.cache.put(&slot.key, &token).await {
            crate::metrics::backend_error("cache");
            tracing::warn!(org_id = %slot.key.org, client_id = %slot.key.client, error = %e, "could not write the access token to the shared cache; serving it from memory");
        }
    }

    /// `PUT /v1/credentials`: store a credential and mint its first token.
    /// For `oauth_app` the given refresh token is rotated at once, so no other
    /// holder can use it. Nothing is stored when Snyk refuses the credential.
    pub async fn put(
        self: &Arc<Self>,
        req: PutCredential,
    ) -> Result<PutCredentialResponse, BrokerError> {
        let key = CredKey::parse(&req.org_id, &req.client_id)
            .map_err(|e| BrokerError::BadInput(e.to_string()))?;
        let kind = req.kind.unwrap_or(Kind::OauthApp);
        check_put_fields(kind, &req)?;
        // Refuse before anything is consumed when the store cannot take a write.
        self.store.ready().await?;
        let existing = self.store.get(&key).await?;
        let mut record = match &existing {
            Some(v) if v.record.kind() == kind => v.record.clone(),
            _ => Record {
                kind: Some(kind),
                ..Default::default()
            },
        };
        record.kind = Some(kind);
        if let Some(s) = req.client_secret {
            record.client_secret = Some(s);
        }
        if let Some(rt) = req.refresh_token {
            record.refresh_token = Some(rt);
        }
        if let Some(pem) = req.private_key_pem {
            record.private_key_pem = Some(pem);
        }
        if let Some(kid) = req.key_id {
            record.key_id = Some(kid);
        }
        match kind {
            Kind::OauthApp if record.refresh_token.is_none() => {
                return Err(BrokerError::BadInput(
                    "an oauth_app credential needs a refresh_token (none is stored yet): give one, or run `snykey login`".into(),
                ));
            }
            Kind::ClientSecret if record.client_secret.is_none() => {
                return Err(BrokerError::BadInput(
                    "a client_secret credential needs client_secret".into(),
                ));
            }
            Kind::PrivateKeyJwt => {
                let (Some(pem), Some(kid)) = (&record.private_key_pem, &record.key_id) else {
                    return Err(BrokerError::BadInput(
                        "a private_key_jwt credential needs private_key_pem and key_id".into(),
                    ));
                };
                if kid.is_empty() || kid.len() > 256 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(BrokerError::BadInput(
                        "key_id must be 1-256 printable characters".into(),
                    ));
                }
                crate::snyk::jwt::validate_key(pem.expose()).map_err(BrokerError::BadInput)?;
            }
            _ => {}
        }
        let slot = self.slot_or_insert(&key, kind);
        let mut flight = slot.flight.lock().await;
        {
            let mut st = slot.status();
            st.deleted = false;
            st.kind = kind;
        }
        // A new credential replaces whatever this agent held for the old one.
        flight.dead_token = None;
        flight.in_doubt = false;
        let previous_state = slot.status().state;
        if previous_state == State::NeedsLogin {
            slot.status().state = State::Ok;
        }
        let result = self
            .mint(
                &slot,
                &mut flight,
                Some(record),
                &Want {
                    validity: Duration::ZERO,
                    seen: None,
                },
            )
            .await;
        match result {
            Ok(t) => Ok(PutCredentialResponse {
                org_id: key.org.to_string(),
                client_id: key.client.to_string(),
                kind,
                expires_at: rfc3339(t.expires_at),
            }),
            Err(e) => {
                if existing.is_none() && flight.unlanded.is_none() {
                    // Nothing was stored: forget the slot again.
                    slot.status().deleted = true;
                    self.scheduler.cancel(&key);
                    drop(flight);
                    self.slots
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                } else if previous_state == State::NeedsLogin
                    && !matches!(e, BrokerError::NeedsLogin(_))
                {
                    slot.status().state = previous_state;
                }
                Err(e)
            }
        }
    }

    /// `DELETE /v1/credentials/{org}/{client}`, optionally revoking at Snyk first.
    pub async fn delete(
        self: &Arc<Self>,
        key: &CredKey,
        revoke: bool,
    ) -> Result<String, BrokerError> {
        let slot = self.slot(key).await?;
        let mut flight = slot.flight.lock().await;
        let record = match &flight.unlanded {
            Some(u) => Some(u.record.clone()),
            None => self.store.get(key).await?.map(|v| v.record),
        };
        let mut revoked = false;
        if revoke {
            if let Some(rec) = &record {
                if let Some(rt) = &rec.refresh_token {
                    self.snyk
                        .revoke(key.client.as_str(), rec.client_secret.as_ref(), rt)
                        .await
                        .map_err(BrokerError::Snyk)?;
                    revoked = true;
                }
            }
        }
        self.store.delete(key).await?;
        flight.unlanded = None;
        flight.known = None;
        if let Err(e) = self.journal.remove(key) {
            tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "could not remove the journal entry of a deleted credential");
        }
        slot.set_hot(None);
        if let Err(e) = self.cache.delete(key).await {
            tracing::warn!(org_id = %key.org, client_id = %key.client, error = %e, "could not remove the cached token of a deleted credential");
        }
        slot.status().deleted = true;
        self.scheduler.cancel(key);
        drop(flight);
        self.slots
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        tracing::info!(org_id = %key.org, client_id = %key.client, revoked, "credential deleted");
        Ok(if revoked {
            format!("credential {key} revoked at Snyk and deleted")
        } else if revoke {
            format!("credential {key} deleted (it held no refresh token to revoke)")
        } else {
            format!("credential {key} deleted")
        })
    }

    /// `DELETE /v1/cache/{org}/{client}`: drop the access token; the next request mints one.
    pub async fn clear_cache(self: &Arc<Self>, key: &CredKey) -> Result<String, BrokerError> {
        let slot = self.slot(key).await?;
        let _flight = slot.flight.lock().await;
        self.cache.delete(key).await?;
        slot.set_hot(None);
        slot.status().expires_at = None;
        Ok(format!("cached token of {key} dropped"))
    }

    /// `GET /v1/credentials`: every credential's status, sorted, no secrets.
    pub fn list(&self) -> Vec<CredentialStatus> {
        let slots = self.snapshot();
        let now = self.clock.now();
        let mut out: Vec<CredentialStatus> = slots
            .iter()
            .map(|s| {
                let st = s.status().clone();
                let expires_at = s
                    .hot()
                    .map(|t| t.expires_at)
                    .or(st.expires_at)
                    .filter(|e| *e > now);
                CredentialStatus {
                    org_id: s.key.org.to_string(),
                    client_id: s.key.client.to_string(),
                    kind: st.kind,
                    state: st.state,
                    expires_at: expires_at.map(rfc3339),
                    next_refresh_at: st.next_refresh_at.map(rfc3339),
                    last_refresh_at: st.last_refresh_at.map(rfc3339),
                    failures: st.failures,
                    last_error: st.last_error,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.org_id, &a.client_id).cmp(&(&b.org_id, &b.client_id)));
        out
    }

    /// Counts of credentials by state (metrics, sd_notify STATUS).
    pub fn state_counts(&self) -> [(State, usize); 4] {
        let mut counts = [
            (State::Ok, 0),
            (State::Refreshing, 0),
            (State::Degraded, 0),
            (State::NeedsLogin, 0),
        ];
        for s in self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let state = s.status().state;
            if let Some(c) = counts.iter_mut().find(|(k, _)| *k == state) {
                c.1 += 1;
            }
        }
        counts
    }

    /// Sets the gauges that describe current state, just before a scrape.
    pub fn export_gauges(&self) {
        let m = crate::metrics::get();
        for (state, n) in self.state_counts() {
            crate::metrics::set_credentials(state.as_str(), n);
        }
        let now = self.clock.now();
        let min = self
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|s| s.hot().map(|t| t.remaining(now).as_secs()))
            .min();
        m.min_time_to_expiry.set(min.map(|v| v as i64).unwrap_or(0));
    }

    /// `GET /v1/ready`: the store and cache answer and no rotated token is waiting for the store.
    pub async fn ready(&self) -> Result<(), String> {
        let mut reasons = Vec::new();
        let degraded = self.state_counts()[2].1;
        if degraded > 0 {
            reasons.push(format!(
                "{degraded} credential(s) degraded: rotated refresh tokens are held in the recovery journal until the secret store takes them"
            ));
        }
        if let Err(e) = self.store.ready().await {
            reasons.push(e.to_string());
        }
        if let Err(e) = self.cache.ready().await {
            reasons.push(e.to_string());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// On shutdown: one last attempt to land what the journal holds.
    pub async fn flush(&self) {
        let slots = self.snapshot();
        for slot in slots {
            let Ok(mut flight) =
                tokio::time::timeout(Duration::from_secs(2), slot.flight.lock()).await
            else {
                continue;
            };
            if flight.unlanded.is_some() {
                self.land(&slot, &mut flight, None).await;
            }
        }
    }
}

fn check_put_fields(kind: Kind, req: &PutCredential) -> Result<(), BrokerError> {
    let bad = |m: &str| Err(BrokerError::BadInput(m.to_string()));
    for (name, s) in [
        ("client_secret", &req.client_secret),
        ("refresh_token", &req.refresh_token),
        ("private_key_pem", &req.private_key_pem),
    ] {
        if let Some(s) = s {
            if s.is_empty() {
                return bad(&format!("{name} is empty"));
            }
            if s.expose().len() > 16 * 1024 {
                return bad(&format!("{name} is longer than 16 KiB"));
            }
        }
    }
    match kind {
        Kind::OauthApp if req.private_key_pem.is_some() || req.key_id.is_some() => {
            bad("private_key_pem and key_id belong to kind private_key_jwt, not oauth_app")
        }
        Kind::ClientSecret if req.refresh_token.is_some() || req.private_key_pem.is_some() => bad(
            "a client_secret credential takes only client_secret (no refresh_token or private key)",
        ),
        Kind::PrivateKeyJwt if req.refresh_token.is_some() || req.client_secret.is_some() => bad(
            "a private_key_jwt credential takes private_key_pem and key_id (no refresh_token or client_secret)",
        ),
        _ => Ok(()),
    }
}

/// The error a caller sees for a credential that needs a login.
fn needs_login_message(key: &CredKey, why: &str) -> String {
    format!(
        "credential {key} needs a new login ({why}): run `snykey login --org-id {} --client-id {}`",
        key.org, key.client
    )
}

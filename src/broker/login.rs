//! Browser OAuth login (authorization code with PKCE S256) and Snyk App
//! registration.
//!
//! A login is a pending entry under its state — in the token cache, so with
//! Redis any agent sharing it can take the callback (`pkce:{state}`: the
//! verifier, ids and redirect URI; never the client secret) — plus a status
//! this agent tracks for `GET /v1/login/{state}`. The state is claimed
//! atomically on the callback, so it works once. The code exchange's refresh
//! token goes through the rotation rule's persist-before-publish.

use super::agent_io::{AgentIo, LoginCall};
use super::rotation::{self, secrets::LoginFailed};
use super::{Broker, BrokerError};
use crate::credential::CredKey;
use crate::credential::{Kind, LoginState};
use crate::locks::Recover;
use crate::secret::Secret;
use crate::snyk::pkce;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Snyk hosts whose `instance` callback parameter is recognised.
pub const SNYK_API_HOSTS: &[&str] = &[
    "api.snyk.io",
    "api.eu.snyk.io",
    "api.au.snyk.io",
    "api.us.snyk.io",
    "api.snykgov.io",
];

/// `POST /v1/login`: which credential, and what the browser login needs.
#[derive(Debug)]
pub struct Login {
    pub key: CredKey,
    /// Kept in this process only until the login completes and it is stored.
    pub client_secret: Option<Secret>,
    pub redirect_uri: Option<String>,
    pub scopes: Vec<String>,
    /// The Snyk region to log in at, checked; `None`: the agent's
    /// `snyk.api_url`. Stored with the credential.
    pub api_url: Option<String>,
}

/// A login waiting for the browser: where to send it, and until when.
#[derive(Debug)]
pub struct LoginStarted {
    /// Set by register-app: the client id Snyk gave the new app.
    pub client_id: Option<String>,
    pub authorize_url: String,
    pub state: String,
    pub expires_at: SystemTime,
}

/// Where a login stands (`GET /v1/login/{state}`).
#[derive(Debug, Clone)]
pub struct LoginProgress {
    pub state: LoginState,
    pub key: CredKey,
    pub error: Option<String>,
}

/// What the cache holds for a pending login.
#[derive(Serialize, Deserialize)]
struct Pending {
    org_id: String,
    client_id: String,
    verifier: Secret,
    redirect_uri: String,
    /// The login's region (absent: the agent's; and in pending logins of
    /// older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_url: Option<String>,
}

struct Tracked {
    status: LoginProgress,
    expires: SystemTime,
    /// Given with `POST /v1/login` or created by register-app: kept in this
    /// process only, until the login completes and it is stored.
    client_secret: Option<Secret>,
    notify: Arc<Notify>,
}

/// Logins this agent started.
#[derive(Default)]
pub struct Logins {
    tracked: Mutex<HashMap<String, Tracked>>,
}

impl Logins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.tracked.lock().recover()
    }

    fn finish(&self, state: &str, outcome: LoginState, error: Option<String>) {
        let mut t = self.lock();
        if let Some(tr) = t.get_mut(state) {
            tr.status.state = outcome;
            tr.status.error = error;
            tr.client_secret = None;
            tr.notify.notify_waiters();
        }
    }
}

/// What the callback page says.
#[derive(Debug)]
pub enum CallbackOutcome {
    Success {
        org_id: String,
        client_id: String,
    },
    UnknownState,
    Denied {
        error: String,
        description: Option<String>,
    },
    ExchangeFailed(String),
    BadRequest(String),
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

impl Broker {
    /// `POST /v1/login`: creates a pending login and its authorize URL.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %req.key.org, client_id = %req.key.client))]
    pub async fn start_login(self: &Arc<Self>, req: Login) -> Result<LoginStarted, BrokerError> {
        let key = req.key;
        let redirect_uri = match req.redirect_uri {
            Some(u) => {
                if !crate::urls::is_loopback_http(&u) {
                    return Err(BrokerError::BadInput(
                        "redirect_uri must point at this agent's loopback callback listener".into(),
                    ));
                }
                u
            }
            None => self.login.redirect_uri(),
        };
        if !self.login.callback_listening() {
            return Err(BrokerError::CallbackNotRunning);
        }
        if let Some(s) = &req.client_secret {
            if s.is_empty() {
                return Err(BrokerError::BadInput("client_secret is empty".into()));
            }
        }
        let verifier = pkce::verifier();
        let state = pkce::state();
        let pending = Pending {
            org_id: key.org.to_string(),
            client_id: key.client.to_string(),
            verifier,
            redirect_uri: redirect_uri.clone(),
            api_url: req.api_url.clone(),
        };
        let json =
            serde_json::to_string(&pending).map_err(|e| BrokerError::BadInput(e.to_string()))?;
        let ttl = self.login.ttl;
        self.cache
            .put_pending(&state, &Secret::new(json), ttl)
            .await?;
        let expires = self.clock.now() + ttl;
        {
            let mut t = self.logins.lock();
            let now = self.clock.now();
            t.retain(|_, tr| tr.expires + Duration::from_secs(600) > now);
            t.insert(
                state.clone(),
                Tracked {
                    status: LoginProgress {
                        state: LoginState::Pending,
                        key: key.clone(),
                        error: None,
                    },
                    expires,
                    client_secret: req.client_secret,
                    notify: Arc::new(Notify::new()),
                },
            );
        }
        let challenge = pkce::challenge(pending.verifier.expose());
        // The app of the login's region (`api.` → `app.`), else the agent's.
        let app_url = match &req.api_url {
            Some(api) if Some(api.as_str()) != self.snyk_api.as_deref() => {
                crate::snyk::region::derive_app_url(api)
            }
            _ => self.login.app_url.clone(),
        };
        let authorize_url = pkce::authorize_url(
            &app_url,
            key.client.as_str(),
            &redirect_uri,
            &req.scopes,
            &state,
            &challenge,
        );
        tracing::info!("browser login started; waiting for the callback");
        Ok(LoginStarted {
            client_id: None,
            authorize_url,
            state,
            expires_at: expires,
        })
    }

    /// Whether a login started on this agent still waits for the browser
    /// (the callback listener stays bound while one does).
    pub fn logins_pending(&self) -> bool {
        let now = self.clock.now();
        self.logins
            .lock()
            .values()
            .any(|t| t.status.state == LoginState::Pending && t.expires > now)
    }

    /// `GET /v1/login/{state}?wait=SECONDS`: the status, waiting up to `wait`
    /// for it to leave `pending`.
    pub async fn login_status(
        &self,
        state: &str,
        wait: Duration,
    ) -> Result<LoginProgress, BrokerError> {
        let (status, notify, expires) = {
            let t = self.logins.lock();
            let tr = t.get(state).ok_or(BrokerError::UnknownLogin)?;
            (tr.status.clone(), Arc::clone(&tr.notify), tr.expires)
        };
        if status.state != LoginState::Pending || wait.is_zero() {
            return Ok(self.expire_if_due(state, status, expires));
        }
        let notified = notify.notified();
        let _ = tokio::time::timeout(wait.min(Duration::from_secs(60)), notified).await;
        let t = self.logins.lock();
        let tr = t.get(state).ok_or(BrokerError::UnknownLogin)?;
        let (status, expires) = (tr.status.clone(), tr.expires);
        drop(t);
        Ok(self.expire_if_due(state, status, expires))
    }

    fn expire_if_due(
        &self,
        state: &str,
        status: LoginProgress,
        expires: SystemTime,
    ) -> LoginProgress {
        if status.state == LoginState::Pending && self.clock.now() >= expires {
            let error =
                "the login expired before the browser came back; start it again".to_string();
            self.logins
                .finish(state, LoginState::Failed, Some(error.clone()));
            return LoginProgress {
                state: LoginState::Failed,
                error: Some(error),
                ..status
            };
        }
        status
    }

    /// The callback listener's request: finish the login the state names.
    pub async fn callback(self: &Arc<Self>, params: &HashMap<String, String>) -> CallbackOutcome {
        let Some(state) = params.get("state").filter(|s| pkce::is_valid_state(s)) else {
            return CallbackOutcome::UnknownState;
        };
        // Claimed atomically: a replayed callback finds nothing.
        let pending = match self.cache.take_pending(state).await {
            Ok(Some(p)) => p,
            Ok(None) => return CallbackOutcome::UnknownState,
            Err(e) => {
                return CallbackOutcome::ExchangeFailed(format!(
                    "the token cache is unavailable ({e}); start the login again"
                ));
            }
        };
        let Ok(pending) = serde_json::from_str::<Pending>(pending.expose()) else {
            return CallbackOutcome::UnknownState;
        };
        let Ok(key) = CredKey::parse(&pending.org_id, &pending.client_id) else {
            return CallbackOutcome::UnknownState;
        };
        self.finish_callback(&key, state, pending, params).await
    }

    /// The callback of a known login: Snyk's refusal, or the code exchange.
    #[tracing::instrument(name = "credential", level = "error", skip_all, fields(org_id = %key.org, client_id = %key.client))]
    async fn finish_callback(
        self: &Arc<Self>,
        key: &CredKey,
        state: &str,
        pending: Pending,
        params: &HashMap<String, String>,
    ) -> CallbackOutcome {
        if let Some(error) = params.get("error") {
            let error = clean(error);
            let description = params.get("error_description").map(|d| clean(d));
            self.logins.finish(
                state,
                LoginState::Failed,
                Some(format!(
                    "Snyk returned {error}{}",
                    description
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                )),
            );
            tracing::warn!(error = %error, "browser login refused at Snyk");
            return CallbackOutcome::Denied { error, description };
        }
        if let Some(instance) = params.get("instance") {
            if let Err(why) = self.check_instance(instance, pending.api_url.as_deref()) {
                self.logins
                    .finish(state, LoginState::Failed, Some(why.clone()));
                return CallbackOutcome::BadRequest(why);
            }
        }
        let Some(code) = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= 2048)
        else {
            self.logins.finish(
                state,
                LoginState::Failed,
                Some("the callback carried no code".into()),
            );
            return CallbackOutcome::BadRequest(
                "the callback carried no authorization code".into(),
            );
        };
        // The code exchange is a grant: it runs to completion in a task of
        // its own even if the browser goes away (docs/protocol.md rule 1).
        let broker = Arc::clone(self);
        let (task_key, task_state, code) =
            (key.clone(), state.to_string(), Secret::new(code.as_str()));
        let result = self
            .spawn_grant(async move {
                broker
                    .exchange_and_store(&task_key, &task_state, &pending, &code)
                    .await
            })
            .await;
        match result {
            Ok(()) => {
                self.logins.finish(state, LoginState::Complete, None);
                tracing::info!("browser login complete; the credential is managed now");
                CallbackOutcome::Success {
                    org_id: key.org.to_string(),
                    client_id: key.client.to_string(),
                }
            }
            Err(e) => {
                let why = e.to_string();
                self.logins
                    .finish(state, LoginState::Failed, Some(why.clone()));
                tracing::warn!(error = %why, "the code exchange failed");
                CallbackOutcome::ExchangeFailed(why)
            }
        }
    }

    /// The callback's `instance` is honoured only for a known Snyk host, and
    /// only if it is the region the login's credential refreshes against
    /// (`api_url`, the login's; `None`: the agent's).
    fn check_instance(&self, instance: &str, api_url: Option<&str>) -> Result<(), String> {
        let host = instance
            .trim_start_matches("https://")
            .trim_end_matches('/');
        let ours = match api_url {
            Some(u) => super::api_host(u),
            None => self.login.api_host(),
        };
        if host == ours {
            return Ok(());
        }
        if SNYK_API_HOSTS.contains(&host) {
            return Err(format!(
                "the login happened on the Snyk region {host}, but it was started for {ours}: log in again with `--api-url https://{host}` (or set snyk.api_url = \"https://{host}\")"
            ));
        }
        Err(format!(
            "{} is not a Snyk host this agent trusts",
            clean(host)
        ))
    }

    /// The code exchange and what it makes durable, under the credential's
    /// single flight taken *before* the exchange: its refresh token exists
    /// in one copy from Snyk's answer on, and goes to the journal at once
    /// ([`rotation::secrets::login`]), never waiting in memory for the lock.
    async fn exchange_and_store(
        self: &Arc<Self>,
        key: &CredKey,
        state: &str,
        pending: &Pending,
        code: &Secret,
    ) -> Result<(), BrokerError> {
        let given_secret = self
            .logins
            .lock()
            .get(state)
            .and_then(|t| t.client_secret.clone());
        let slot = self.slot_or_insert(key, Kind::OauthApp);
        let mut flight = slot.flight.lock().await;
        let mut io = AgentIo {
            broker: self,
            key,
            call: LoginCall {
                api_url: pending.api_url.as_deref(),
                code,
                verifier: &pending.verifier,
                redirect_uri: &pending.redirect_uri,
            },
        };
        let api_url = pending.api_url.clone();
        let issued = rotation::secrets::login(
            &mut io,
            &mut flight.mem,
            &self.rules,
            given_secret,
            api_url,
        )
        .await
            .map_err(|e| match e {
                LoginFailed::Store(e) => BrokerError::Store(e),
                LoginFailed::Snyk(e) => BrokerError::Snyk(e),
                LoginFailed::NoRefreshToken => BrokerError::BadInput(
                    "Snyk's answer to the code exchange carried no refresh token".into(),
                ),
                LoginFailed::Superseded => BrokerError::Busy(format!(
                    "a newer login or rotation of {key} reached the secret store first; this login was dropped"
                )),
            })?;
        slot.set_api_url(pending.api_url.as_deref());
        {
            let mut st = slot.status();
            st.deleted = false;
            st.kind = Kind::OauthApp;
            st.state = crate::credential::State::Ok;
            st.failures = 0;
            st.last_error = None;
        }
        let token = self.token_from(issued.access_token, issued.expires_in);
        match self.kept(&slot, &mut flight, issued.landing) {
            // Durable (the store, or the journal): published.
            Ok(_) => {
                self.publish(&slot, flight.mem.generation, token).await;
                Ok(())
            }
            // Held in memory only: the access token waits for the lander (I2).
            Err(e) => {
                flight.held = Some(token);
                flight.held_for = super::slot::unlanded_digest(&flight.mem);
                Err(e)
            }
        }
    }
}

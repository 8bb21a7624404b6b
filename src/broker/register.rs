//! Snyk App registration (`POST /v1/register-app`): the app is created at
//! Snyk, its client secret goes into the secret store through the journal
//! (Snyk shows it once), and the browser login for it starts.

use super::login::{Login, LoginStarted};
use super::{Broker, BrokerError};
use crate::clock::rfc3339;
use crate::credential::{CredKey, Kind, Record};
use crate::ids::OrgId;
use crate::secret::Secret;
use std::sync::Arc;

/// `POST /v1/register-app`: a new Snyk App in an org.
#[derive(Debug)]
pub struct AppRegistration {
    pub org: OrgId,
    pub name: String,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub context: Option<String>,
    pub auth_token: Secret,
    /// The Snyk region to register the app in, checked; `None`: the agent's.
    pub api_url: Option<String>,
}

impl AppRegistration {
    /// The trimmed name and the context, once every field is checked.
    fn check(&self) -> Result<(&str, &str), BrokerError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(BrokerError::BadInput(
                "name must be 1-200 printable characters".into(),
            ));
        }
        if self.scopes.is_empty()
            || self
                .scopes
                .iter()
                .any(|s| s.is_empty() || s.len() > 100 || !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(BrokerError::BadInput(
                "scopes must be a non-empty list such as [\"org.read\"]".into(),
            ));
        }
        if self.auth_token.is_empty() {
            return Err(BrokerError::BadInput("auth_token is empty".into()));
        }
        let context = self.context.as_deref().unwrap_or("tenant");
        if !matches!(context, "tenant" | "user") {
            return Err(BrokerError::BadInput(
                "context must be \"tenant\" or \"user\"".into(),
            ));
        }
        Ok((name, context))
    }
}

impl Broker {
    /// `POST /v1/register-app`: registers a Snyk App, stores its client secret
    /// (never echoed back), and starts the browser login for it.
    /// Runs to completion in a task of its own: the new secret Snyk hands out
    /// once must reach the store (through the journal) whoever hangs up.
    pub async fn register_app(
        self: &Arc<Self>,
        req: AppRegistration,
    ) -> Result<LoginStarted, BrokerError> {
        let broker = Arc::clone(self);
        self.spawn_grant(async move { broker.register_app_now(req).await })
            .await
    }

    async fn register_app_now(
        self: &Arc<Self>,
        req: AppRegistration,
    ) -> Result<LoginStarted, BrokerError> {
        let (name, context) = req.check()?;
        let redirect_uris = if req.redirect_uris.is_empty() {
            vec![self.login.redirect_uri()]
        } else {
            req.redirect_uris.clone()
        };
        self.store.ready().await?;
        let (client_id, secret) = self
            .rest_at(req.api_url.as_deref())
            .create_app(
                req.org.as_str(),
                &req.auth_token,
                name,
                &req.scopes,
                &redirect_uris,
                context,
            )
            .await
            .map_err(BrokerError::Rest)?;
        let key = CredKey::parse(req.org.as_str(), &client_id).map_err(|e| {
            BrokerError::BadInput(format!("Snyk returned an unusable client id: {e}"))
        })?;
        // The secret goes into the store through the journal (it is needed
        // again for every refresh, and Snyk shows it only once).
        let record = Record {
            kind: Some(Kind::OauthApp),
            client_secret: Some(secret.clone()),
            api_url: req.api_url.clone(),
            updated_at: Some(rfc3339(self.clock.now())),
            generation: 1,
            ..Default::default()
        };
        // A new credential: its single flight is nobody else's yet, so the
        // secret goes to the journal at once (then the store); neither
        // taking it, it is held in memory for a lander, never dropped.
        let slot = self.slot_or_insert(&key, Kind::OauthApp);
        slot.set_api_url(req.api_url.as_deref());
        {
            let mut flight = slot.flight.lock().await;
            let base = super::journal::Base {
                fp: None,
                generation: 0,
                login: false,
                via: Vec::new(),
            };
            self.persist_record(&slot, &mut flight, record, base)
                .await
                .map_err(|e| match e {
                    BrokerError::NotDurable(why) => BrokerError::NotDurable(format!(
                        "Snyk registered the app (client id {client_id}); {why}. Then run `snykey login --org-id {} --client-id {client_id}`",
                        key.org
                    )),
                    other => other,
                })?;
        }
        slot.status().state = crate::credential::State::NeedsLogin;
        tracing::info!(org_id = %key.org, client_id = %key.client, "Snyk App registered; its client secret is in the secret store");
        let mut started = self
            .start_login(Login {
                key: key.clone(),
                client_secret: Some(secret),
                redirect_uri: Some(redirect_uris[0].clone()),
                scopes: req.scopes,
                api_url: req.api_url,
            })
            .await?;
        started.client_id = Some(client_id);
        Ok(started)
    }
}

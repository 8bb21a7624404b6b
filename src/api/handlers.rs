//! One handler per route of docs/api.md. Each reads its body (if any) as a wire
//! type, converts it to the domain's words ([`super::convert`]), asks the
//! broker, and converts the answer back.

use super::answer::{Resp, json};
use super::convert;
use super::error::ApiError;
use super::http::{Query, query_get, read_json};
use super::socket::Peer;
use super::state::AppState;
use crate::access::Policy;
use crate::broker::BrokerError;
use crate::cache::CachedToken;
use crate::clock::rfc3339;
use crate::credential::{CredKey, Kind};
use crate::duration::parse_duration;
use crate::wire::{self, ErrorCode, paths};
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde::Serialize;
use std::time::Duration;

/// Ids named in a request body, for the audit line of an admin operation.
#[derive(Default)]
pub(super) struct Noted {
    pub org_id: Option<String>,
    pub client_id: Option<String>,
}

/// A 200 answer with `body`.
fn ok<T: Serialize>(body: &T) -> Result<Resp, ApiError> {
    Ok(json(StatusCode::OK, body))
}

fn message(message: impl Into<String>) -> Result<Resp, ApiError> {
    ok(&wire::Message {
        message: message.into(),
    })
}

/// `GET /v1/health`
pub(super) fn health() -> Result<Resp, ApiError> {
    message("alive")
}

/// `GET /v1/ready`
pub(super) async fn ready(state: &AppState) -> Result<Resp, ApiError> {
    let broker = &state.broker;
    match broker.ready().await {
        Ok(()) => {
            let warnings: Vec<String> = broker
                .protection_warning()
                .map(str::to_string)
                .into_iter()
                .chain(broker.publish_warning())
                .collect();
            message(match warnings.as_slice() {
                [] => "ready".into(),
                w => format!("ready; warning: {}", w.join("; warning: ")),
            })
        }
        // The store's own code when it is at fault (sealed, denied,
        // unavailable), so a client can tell what to do; then the cache's.
        Err(u) => {
            let code = match (&u.store, u.cache) {
                (Some(e), _) => super::error::store_code(e),
                (None, true) => ErrorCode::CacheUnavailable,
                (None, false) => ErrorCode::NotReady,
            };
            Err(ApiError::new(code, u.message))
        }
    }
}

/// `GET /v1/ready?write=true` (`snykey doctor`): a claim's writes on a
/// scratch record no credential can have, so a store that reads but refuses
/// writes is found before a refresh needs it.
pub(super) async fn write_check(state: &AppState) -> Result<Resp, ApiError> {
    match state.broker.write_check().await {
        Ok(m) => message(m),
        Err(e) => Err(BrokerError::Store(e).into()),
    }
}

/// `POST /v1/reload`: answered once the agent applied or refused its
/// re-read configuration.
pub(super) async fn reload(state: &AppState) -> Result<Resp, ApiError> {
    use super::reloads::ReloadFailed;
    match state.reloads.reload().await {
        Ok(reloaded) => ok(&reloaded),
        Err(ReloadFailed::Refused(why)) => Err(ApiError::new(ErrorCode::ConfigInvalid, why)),
        Err(ReloadFailed::Stopping) => Err(ApiError::new(
            ErrorCode::NotReady,
            "the agent is stopping; nothing was reloaded",
        )),
    }
}

/// `PUT /v1/credentials`
pub(super) async fn put(
    state: &AppState,
    req: Request<Incoming>,
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    let body: wire::PutCredential = read_json(req).await?;
    noted.org_id = Some(body.org_id.clone());
    noted.client_id = Some(body.client_id.clone());
    let new = convert::new_credential(body)?;
    let (key, kind): (CredKey, Kind) = (new.key.clone(), new.kind);
    let expires_at = state.broker.put(new).await?;
    ok(&convert::put_answer(&key, kind, expires_at))
}

/// `GET /v1/credentials`: what the store holds, only what this peer may
/// read (an admin, or no `[[access]]` table: all); 503 when the store
/// cannot be read (never an empty list that only looks true).
pub(super) async fn list(state: &AppState, peer: &Peer, policy: &Policy) -> Result<Resp, ApiError> {
    let who = peer.who();
    let credentials = state
        .broker
        .list()
        .await
        .map_err(|e| match e {
            BrokerError::Store(e) => ApiError::new(
                super::error::store_code(&e),
                format!("store unreachable: cannot list the credentials it holds: {e}"),
            ),
            other => other.into(),
        })?
        .into_iter()
        .filter(|s| policy.may_read(who, &s.key))
        .map(convert::status)
        .collect();
    ok(&wire::CredentialList { credentials })
}

/// A token answer, with the first hand-out of each token to a peer audited.
fn token_answer(
    peer: &Peer,
    key: &CredKey,
    t: CachedToken,
    (snyk_api, token_type): crate::broker::Details,
) -> Result<Resp, ApiError> {
    if crate::audit::enabled() && peer.first_hand_out(key, t.expires_at) {
        crate::audit::hand_out(key, t.expires_at, (peer.uid, peer.gid), || peer.audit());
    }
    ok(&wire::TokenResponse {
        access_token: t.access_token,
        token_type: token_type.into(),
        expires_at: rfc3339(t.expires_at),
        snyk_api,
    })
}

/// `GET /v1/credentials/{org_id}/{client_id}?min_validity=`
pub(super) async fn token(
    state: &AppState,
    peer: &Peer,
    key: &CredKey,
    query: &Query,
) -> Result<Resp, ApiError> {
    let min_validity = super::http::min_validity(query)?;
    let (t, details) = state.broker.token_answer(key, min_validity).await?;
    token_answer(peer, key, t, details)
}

/// `POST /v1/credentials/{org_id}/{client_id}/refresh`
pub(super) async fn force_refresh(
    state: &AppState,
    peer: &Peer,
    key: &CredKey,
) -> Result<Resp, ApiError> {
    let (t, _) = state.broker.force_refresh(key).await?;
    token_answer(peer, key, t, state.broker.answer_details(key))
}

/// `DELETE /v1/credentials/{org_id}/{client_id}?revoke=`
pub(super) async fn delete(
    state: &AppState,
    key: &CredKey,
    revoke: bool,
) -> Result<Resp, ApiError> {
    message(state.broker.delete(key, revoke).await?)
}

/// `DELETE /v1/cache/{org_id}/{client_id}`
pub(super) async fn clear_cache(state: &AppState, key: &CredKey) -> Result<Resp, ApiError> {
    message(state.broker.clear_cache(key).await?)
}

/// `POST /v1/login`
pub(super) async fn login(
    state: &AppState,
    req: Request<Incoming>,
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    let body: wire::LoginRequest = read_json(req).await?;
    noted.org_id = Some(body.org_id.clone());
    noted.client_id = Some(body.client_id.clone());
    let login = convert::login(body)?;
    let _listening = callback_listener(state)?;
    let started = state.broker.start_login(login).await?;
    ok(&convert::login_started(started))
}

/// Binds the callback listener for a login about to start (it stays bound
/// while the login is pending); 503 `callback_unavailable` naming the port
/// when it cannot listen.
fn callback_listener(state: &AppState) -> Result<Option<super::callback::Hold>, ApiError> {
    match &state.callback {
        Some(c) => c
            .hold()
            .map(Some)
            .map_err(|m| ApiError::new(ErrorCode::CallbackUnavailable, m)),
        None => Ok(None),
    }
}

/// `GET /v1/login/{state}?wait=`
pub(super) async fn login_status(
    state: &AppState,
    login: &str,
    query: &Query,
) -> Result<Resp, ApiError> {
    let wait = match query_get(query, paths::WAIT) {
        None | Some("") => Duration::ZERO,
        Some(w) => parse_duration(w)
            .map_err(|m| ApiError::bad(format!("wait: {m}")))?
            .min(Duration::from_secs(60)),
    };
    if !crate::snyk::pkce::is_valid_state(login) {
        return Err(BrokerError::UnknownLogin.into());
    }
    let progress = state.broker.login_status(login, wait).await?;
    ok(&convert::login_status(progress))
}

/// `POST /v1/service-accounts/{list,create,show,rename,delete,rotate-secret}`
pub(super) async fn service_accounts(
    state: &AppState,
    op: &str,
    req: Request<Incoming>,
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    let body: wire::ServiceAccountRequest = read_json(req).await?;
    noted.org_id = body.org_id.clone();
    noted.client_id = body.client_id.clone();
    let broker = &state.broker;
    let done = match op {
        "list" => {
            let accounts = broker.sa_list(&convert::sa_auth(&body)?).await?;
            return ok(&wire::ServiceAccountList {
                service_accounts: accounts.into_iter().map(convert::service_account).collect(),
            });
        }
        "create" => {
            let auth = convert::sa_auth(&body)?;
            broker.sa_create(auth, convert::sa_create(&body)?).await?
        }
        "show" => {
            let auth = convert::sa_auth(&body)?;
            let sa = broker.sa_show(&auth, &convert::sa_target(&body)?).await?;
            crate::broker::service_accounts::SaDone {
                message: format!("service account {}", sa.id),
                account: Some(sa),
            }
        }
        "rename" => {
            let auth = convert::sa_auth(&body)?;
            let name = body
                .name
                .as_deref()
                .ok_or_else(|| ApiError::bad("name is required"))?;
            broker
                .sa_rename(auth, convert::sa_target(&body)?, name)
                .await?
        }
        "delete" => {
            let auth = convert::sa_auth(&body)?;
            broker.sa_delete(auth, convert::sa_target(&body)?).await?
        }
        "rotate-secret" => {
            let auth = convert::sa_auth(&body)?;
            let (target, replace) = (convert::sa_target(&body)?, convert::sa_replace(&body)?);
            broker.sa_rotate(auth, target, replace).await?
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::NoSuchRoute,
                format!("no service-account operation {other:?}"),
            ));
        }
    };
    ok(&convert::sa_result(done))
}

/// `POST /v1/register-app`
pub(super) async fn register_app(
    state: &AppState,
    req: Request<Incoming>,
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    let body: wire::RegisterAppRequest = read_json(req).await?;
    noted.org_id = Some(body.org_id.clone());
    let registration = convert::registration(body)?;
    // Before the app exists at Snyk: a login that cannot come back is refused first.
    let _listening = callback_listener(state)?;
    let started = state.broker.register_app(registration).await?;
    ok(&convert::login_started(started))
}

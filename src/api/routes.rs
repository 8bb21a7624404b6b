//! Routing and the single mapping of errors to HTTP statuses and `code`s.

use super::server::{Access, AppState};
use super::socket::Peer;
use crate::access::{AdminOp, Operation, Refusal};
use crate::broker::BrokerError;
use crate::cache::CacheError;
use crate::clock::rfc3339;
use crate::duration::parse_duration;
use crate::ids::CredKey;
use crate::snyk::GrantError;
use crate::store::StoreError;
use crate::wire::{CredentialList, ErrorBody, Message, PutCredential, TokenResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;

pub type Resp = Response<Full<Bytes>>;

/// An error answer: status, `code`, sentence, and optionally a Retry-After.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match &e {
            BrokerError::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BrokerError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            BrokerError::NeedsLogin(_) => (StatusCode::CONFLICT, "needs_login"),
            BrokerError::Snyk(g) => match g {
                GrantError::Permanent { .. } => (StatusCode::BAD_GATEWAY, "snyk_refused"),
                GrantError::Refused { .. } => (StatusCode::BAD_GATEWAY, "snyk_refused"),
                GrantError::Unavailable { status: 429, .. } => {
                    (StatusCode::BAD_GATEWAY, "snyk_rate_limited")
                }
                GrantError::Unavailable { .. } => (StatusCode::BAD_GATEWAY, "snyk_unavailable"),
                GrantError::Unreachable { .. } => (StatusCode::BAD_GATEWAY, "snyk_unreachable"),
                GrantError::Unknown {
                    timed_out: true, ..
                } => (StatusCode::GATEWAY_TIMEOUT, "snyk_timeout"),
                GrantError::Unknown { .. } => (StatusCode::BAD_GATEWAY, "snyk_answer_lost"),
            },
            BrokerError::Store(StoreError::Sealed) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_sealed")
            }
            BrokerError::Store(StoreError::Conflict { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_conflict")
            }
            BrokerError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            BrokerError::Cache(CacheError::LockTimeout(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "refresh_in_progress")
            }
            BrokerError::Cache(_) => (StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable"),
            BrokerError::NotDurable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            BrokerError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "refresh_in_progress"),
            BrokerError::Rest(crate::snyk::rest::RestError::Refused { .. }) => {
                (StatusCode::BAD_GATEWAY, "snyk_refused")
            }
            BrokerError::Rest(crate::snyk::rest::RestError::Unavailable { .. }) => {
                (StatusCode::BAD_GATEWAY, "snyk_unavailable")
            }
            BrokerError::Rest(_) => (StatusCode::BAD_GATEWAY, "snyk_unreachable"),
            BrokerError::UnknownLogin => (StatusCode::NOT_FOUND, "not_found"),
        };
        let retry_after = match &e {
            BrokerError::Snyk(g) => g.retry_after(),
            _ => None,
        };
        ApiError {
            status,
            code,
            message,
            retry_after,
        }
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(e: ApiError) -> Resp {
    let mut r = json(
        e.status,
        &ErrorBody {
            error: e.message,
            code: e.code.to_string(),
        },
    );
    if let Some(ra) = e.retry_after {
        if let Ok(v) = HeaderValue::from_str(&ra.as_secs().max(1).to_string()) {
            r.headers_mut().insert(RETRY_AFTER, v);
        }
    }
    r
}

/// Percent-decodes one path segment (so `..%2Fx` is judged as `../x`).
fn decode_segment(s: &str) -> Result<String, ApiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => out.push(v),
                None => return Err(ApiError::bad("malformed percent-encoding in the path")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad("the path is not valid UTF-8"))
}

fn query_pairs(req: &Request<Incoming>) -> Result<Vec<(String, String)>, ApiError> {
    match req.uri().query() {
        None => Ok(Vec::new()),
        Some(q) => {
            serde_urlencoded::from_str(q).map_err(|_| ApiError::bad("malformed query string"))
        }
    }
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn key_from(org: &str, client: &str) -> Result<CredKey, ApiError> {
    CredKey::parse(org, client).map_err(|e| ApiError::bad(e.to_string()))
}

fn key_from_query(pairs: &[(String, String)]) -> Result<CredKey, ApiError> {
    let org = query_get(pairs, "org_id")
        .ok_or_else(|| ApiError::bad("org_id is required (?org_id=...&client_id=...)"))?;
    let client = query_get(pairs, "client_id")
        .ok_or_else(|| ApiError::bad("client_id is required (?org_id=...&client_id=...)"))?;
    key_from(org, client)
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {} KiB", MAX_BODY / 1024),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    // The body may carry a refresh token, a client secret or a private key:
    // it is gathered in a buffer that wipes itself (and every smaller buffer
    // it outgrew), sized from Content-Length when there is one. hyper's own
    // read buffer is beyond our reach.
    let capacity = declared.map_or(1024, |len| len as usize).min(MAX_BODY);
    let mut body = crate::secret::WipingBuf::with_capacity(capacity);
    let mut incoming = Limited::new(req.into_body(), MAX_BODY);
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::bad("could not read the request body")
            }
        })?;
        if let Ok(data) = frame.into_data() {
            body.extend(&data);
        }
    }
    let body = body.into_inner();
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not the expected JSON: {}",
            crate::secret::json_error(&e)
        ))
    })
}

fn min_validity(pairs: &[(String, String)]) -> Result<Option<Duration>, ApiError> {
    match query_get(pairs, "min_validity") {
        None | Some("") => Ok(None),
        Some(v) => {
            let d = parse_duration(v).map_err(|m| ApiError::bad(format!("min_validity: {m}")))?;
            if d > Duration::from_secs(24 * 3600) {
                return Err(ApiError::bad("min_validity must be at most 24h"));
            }
            Ok(Some(d))
        }
    }
}

async fn token(
    state: &AppState,
    peer: &Peer,
    key: &CredKey,
    pairs: &[(String, String)],
) -> Result<Resp, ApiError> {
    let mv = min_validity(pairs)?;
    let t = state.broker.token(key, mv).await?;
    if crate::audit::enabled() && peer.first_hand_out(key, t.expires_at) {
        crate::audit::hand_out(key, t.expires_at, (peer.uid, peer.gid), || peer.audit());
    }
    Ok(json(
        StatusCode::OK,
        &TokenResponse {
            access_token: t.access_token,
            token_type: "bearer".into(),
            expires_at: rfc3339(t.expires_at),
            snyk_api: state.broker.snyk_api().map(str::to_string),
        },
    ))
}

/// A request, parsed from its method, path and query before any body is
/// read: what it asks for, so that the policy can decide before anything runs.
/// Every route is a variant, so a new one cannot skip [`Call::operation`].
enum Call {
    Health,
    Ready,
    Metrics,
    Put,
    List,
    Token(CredKey),
    /// A forced refresh returns a token: a read, rate-limited per credential.
    ForceRefresh(CredKey),
    Delete {
        key: CredKey,
        revoke: bool,
    },
    ClearCache(CredKey),
    Login,
    LoginStatus(String),
    ServiceAccounts(String),
    RegisterApp,
}

impl Call {
    /// The `route` label of the request metrics.
    fn route(&self) -> &'static str {
        match self {
            Call::Health => "health",
            Call::Ready => "ready",
            Call::Metrics => "metrics",
            Call::Put => "put_credential",
            Call::List => "list_credentials",
            Call::Token(_) => "get_token",
            Call::ForceRefresh(_) => "force_refresh",
            Call::Delete { .. } => "delete_credential",
            Call::ClearCache(_) => "delete_cache",
            Call::Login => "login",
            Call::LoginStatus(_) => "login_status",
            Call::ServiceAccounts(_) => "service_accounts",
            Call::RegisterApp => "register_app",
        }
    }

    /// What the access policy is asked about.
    fn operation(&self) -> Operation<'_> {
        match self {
            Call::Health | Call::Ready | Call::Metrics => Operation::Open,
            Call::List => Operation::List,
            Call::Token(key) | Call::ForceRefresh(key) => Operation::Read(key),
            Call::Put => Operation::Admin(AdminOp::PutCredential, None),
            Call::Delete { key, revoke: false } => {
                Operation::Admin(AdminOp::DeleteCredential, Some(key))
            }
            Call::Delete { key, revoke: true } => Operation::Admin(AdminOp::Revoke, Some(key)),
            Call::ClearCache(key) => Operation::Admin(AdminOp::ClearCache, Some(key)),
            Call::Login => Operation::Admin(AdminOp::Login, None),
            Call::LoginStatus(_) => Operation::Admin(AdminOp::LoginStatus, None),
            Call::ServiceAccounts(_) => Operation::Admin(AdminOp::ServiceAccounts, None),
            Call::RegisterApp => Operation::Admin(AdminOp::RegisterApp, None),
        }
    }
}

/// Ids named in a request body, for the audit line of an admin operation.
#[derive(Default)]
struct Noted {
    org_id: Option<String>,
    client_id: Option<String>,
}

/// Entry point for every request.
pub async fn handle(state: &AppState, peer: &Peer, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let policy = state.policy();
    if !policy.on_socket(peer.who()) {
        crate::metrics::get().denied_peers.inc();
        tracing::warn!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid.unwrap_or(0),
            "refused a request from a peer not in server.allowed_uids/allowed_gids"
        );
        crate::metrics::request("denied", 403);
        let refusal = Refusal::NotOnSocket {
            uid: peer.uid,
            gid: peer.gid,
        };
        audit_refusal(peer, "connect", None, &refusal);
        return error(ApiError::new(
            StatusCode::FORBIDDEN,
            refusal.code(),
            refusal.to_string(),
        ));
    }
    let (route, result) = match parse(&req, &method, &path) {
        Err((route, e)) => (route, Err(e)),
        Ok((call, pairs)) => {
            let route = call.route();
            match decide(&policy, peer, call.operation()) {
                Err(refusal) => {
                    crate::metrics::get().denied_peers.inc();
                    tracing::warn!(
                        uid = peer.uid,
                        gid = peer.gid,
                        pid = peer.pid.unwrap_or(0),
                        route,
                        "refused: {refusal}"
                    );
                    let (op, key) = match call.operation() {
                        Operation::Admin(op, key) => (op.as_str(), key),
                        Operation::Read(key) => (route, Some(key)),
                        Operation::Open | Operation::List => (route, None),
                    };
                    audit_refusal(peer, op, key, &refusal);
                    (
                        route,
                        Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            refusal.code(),
                            refusal.to_string(),
                        )),
                    )
                }
                Ok(()) => {
                    let mut noted = Noted::default();
                    let result =
                        execute(state, peer, &policy, &call, req, &pairs, &mut noted).await;
                    if let Operation::Admin(op, key) = call.operation() {
                        audit_admin(peer, op, key, noted, &result);
                    }
                    (route, result)
                }
            }
        }
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => error(e),
    };
    let status = resp.status().as_u16();
    crate::metrics::request(route, status);
    tracing::debug!(method = %method, route, status, micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// The policy's decision, remembered per connection for token reads (the
/// hot path of a keep-alive client; a SIGHUP's new policy is decided afresh).
fn decide(policy: &Arc<Access>, peer: &Peer, op: Operation<'_>) -> Result<(), Refusal> {
    match op {
        Operation::Read(key) if peer.read_allowed_before(policy, key) => Ok(()),
        Operation::Read(key) => {
            policy.decide(peer.who(), op)?;
            peer.remember_read_allowed(policy, key);
            Ok(())
        }
        op => policy.decide(peer.who(), op),
    }
}

fn audit_refusal(peer: &Peer, op: &'static str, key: Option<&CredKey>, refusal: &Refusal) {
    if !crate::audit::enabled() {
        return;
    }
    let mut e = crate::audit::Event {
        event: "refused",
        op,
        outcome: "refused",
        status: Some(403),
        code: Some(refusal.code().to_string()),
        peer: Some(peer.audit()),
        ..Default::default()
    };
    if let Some(k) = key {
        e = e.with_key(k);
    }
    crate::audit::record(e);
}

fn audit_admin(
    peer: &Peer,
    op: AdminOp,
    key: Option<&CredKey>,
    noted: Noted,
    result: &Result<Resp, ApiError>,
) {
    // Polling a login is not an operation of its own.
    if !crate::audit::enabled() || (op == AdminOp::LoginStatus && result.is_ok()) {
        return;
    }
    let (outcome, status, code) = match result {
        Ok(r) => ("ok", r.status().as_u16(), None),
        Err(e) => ("error", e.status.as_u16(), Some(e.code.to_string())),
    };
    let mut e = crate::audit::Event {
        event: "admin",
        op: op.as_str(),
        org_id: noted.org_id,
        client_id: noted.client_id,
        outcome,
        status: Some(status),
        code,
        peer: Some(peer.audit()),
        ..Default::default()
    };
    if let Some(k) = key {
        e = e.with_key(k);
    }
    crate::audit::record(e);
}

type Parsed = Result<(Call, Vec<(String, String)>), (&'static str, ApiError)>;

fn parse(req: &Request<Incoming>, method: &Method, path: &str) -> Parsed {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let pairs = match query_pairs(req) {
        Ok(p) => p,
        Err(e) => return Err(("invalid", e)),
    };
    let key_in =
        |rest: &[&str], route: &'static str| -> Result<CredKey, (&'static str, ApiError)> {
            match rest {
                [org, client] => (|| key_from(&decode_segment(org)?, &decode_segment(client)?))(),
                _ => key_from_query(&pairs),
            }
            .map_err(|e| (route, e))
        };
    let call = match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "health"]) => Call::Health,
        (&Method::GET, ["v1", "ready"]) => Call::Ready,
        (&Method::GET, ["metrics"]) => Call::Metrics,
        (&Method::PUT, ["v1", "credentials"]) => Call::Put,
        (&Method::GET, ["v1", "credentials"]) => {
            if query_get(&pairs, "org_id").is_some() || query_get(&pairs, "client_id").is_some() {
                Call::Token(key_in(&[], "get_token")?)
            } else {
                Call::List
            }
        }
        (&Method::GET, ["v1", "credentials", org, client]) => {
            Call::Token(key_in(&[org, client], "get_token")?)
        }
        (&Method::POST, ["v1", "credentials", org, client, "refresh"]) => {
            Call::ForceRefresh(key_in(&[org, client], "force_refresh")?)
        }
        (&Method::DELETE, ["v1", "credentials", rest @ ..])
            if rest.len() == 2 || rest.is_empty() =>
        {
            let key = key_in(rest, "delete_credential")?;
            let revoke = match query_get(&pairs, "revoke") {
                None | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(_) => {
                    return Err((
                        "delete_credential",
                        ApiError::bad("revoke must be true or false"),
                    ));
                }
            };
            Call::Delete { key, revoke }
        }
        (&Method::DELETE, ["v1", "cache", rest @ ..]) if rest.len() == 2 || rest.is_empty() => {
            Call::ClearCache(key_in(rest, "delete_cache")?)
        }
        (&Method::POST, ["v1", "login"]) => Call::Login,
        (&Method::GET, ["v1", "login", state]) => {
            Call::LoginStatus(decode_segment(state).map_err(|e| ("login_status", e))?)
        }
        (&Method::POST, ["v1", "service-accounts", op]) => Call::ServiceAccounts(op.to_string()),
        (&Method::POST, ["v1", "register-app"]) => Call::RegisterApp,
        (
            _,
            ["v1", "health"]
            | ["v1", "ready"]
            | ["metrics"]
            | ["v1", "credentials", ..]
            | ["v1", "cache", ..]
            | ["v1", "login", ..]
            | ["v1", "register-app"]
            | ["v1", "service-accounts", ..],
        ) => {
            return Err((
                "invalid",
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not supported on {path}"),
                ),
            ));
        }
        _ => {
            return Err((
                "invalid",
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_route",
                    format!("no route {method} {path}: see SPEC §4 for the agent API"),
                ),
            ));
        }
    };
    Ok((call, pairs))
}

async fn execute(
    state: &AppState,
    peer: &Peer,
    policy: &Access,
    call: &Call,
    req: Request<Incoming>,
    pairs: &[(String, String)],
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    let broker = &state.broker;
    match call {
        Call::Health => Ok(json(
            StatusCode::OK,
            &Message {
                message: "alive".into(),
            },
        )),
        // `snykey doctor`: a claim's writes on a scratch record.
        Call::Ready if query_get(pairs, "write") == Some("true") => {
            Ok(match broker.write_check().await {
                Ok(message) => json(StatusCode::OK, &Message { message }),
                Err(e) => error(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    match e {
                        StoreError::Sealed => "store_sealed",
                        StoreError::Denied(_) => "store_denied",
                        _ => "store_unavailable",
                    },
                    e.to_string(),
                )),
            })
        }
        Call::Ready => Ok(match broker.ready().await {
            Ok(()) => json(
                StatusCode::OK,
                &Message {
                    message: match broker.protection_warning() {
                        Some(w) => format!("ready; warning: {w}"),
                        None => "ready".into(),
                    },
                },
            ),
            Err(reason) => error(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                reason,
            )),
        }),
        Call::Metrics => Ok(super::metrics_response(broker)),
        Call::Put => {
            let body: PutCredential = read_json(req).await?;
            noted.org_id = Some(body.org_id.clone());
            noted.client_id = Some(body.client_id.clone());
            let r = broker.put(body).await?;
            Ok(json(StatusCode::OK, &r))
        }
        Call::List => {
            // Only what this peer may read (an admin, or no [[access]] table: all).
            let who = peer.who();
            let mut credentials = broker.list();
            credentials.retain(|c| {
                CredKey::parse(&c.org_id, &c.client_id).is_ok_and(|k| policy.may_read(who, &k))
            });
            Ok(json(StatusCode::OK, &CredentialList { credentials }))
        }
        Call::Token(key) => token(state, peer, key, pairs).await,
        Call::ForceRefresh(key) => {
            let (t, _) = broker.force_refresh(key).await?;
            if crate::audit::enabled() && peer.first_hand_out(key, t.expires_at) {
                crate::audit::hand_out(key, t.expires_at, (peer.uid, peer.gid), || peer.audit());
            }
            Ok(json(
                StatusCode::OK,
                &TokenResponse {
                    access_token: t.access_token,
                    token_type: "bearer".into(),
                    expires_at: rfc3339(t.expires_at),
                    snyk_api: broker.snyk_api().map(str::to_string),
                },
            ))
        }
        Call::Delete { key, revoke } => {
            let message = broker.delete(key, *revoke).await?;
            Ok(json(StatusCode::OK, &Message { message }))
        }
        Call::ClearCache(key) => {
            let message = broker.clear_cache(key).await?;
            Ok(json(StatusCode::OK, &Message { message }))
        }
        Call::Login => {
            let body: crate::wire::LoginRequest = read_json(req).await?;
            noted.org_id = Some(body.org_id.clone());
            noted.client_id = Some(body.client_id.clone());
            Ok(json(StatusCode::OK, &broker.start_login(body).await?))
        }
        Call::LoginStatus(login) => {
            let wait = match query_get(pairs, "wait") {
                None | Some("") => Duration::ZERO,
                Some(w) => parse_duration(w)
                    .map_err(|m| ApiError::bad(format!("wait: {m}")))?
                    .min(Duration::from_secs(60)),
            };
            if !crate::snyk::pkce::is_valid_state(login) {
                return Err(BrokerError::UnknownLogin.into());
            }
            Ok(json(
                StatusCode::OK,
                &broker.login_status(login, wait).await?,
            ))
        }
        Call::ServiceAccounts(op) => {
            let body: crate::wire::ServiceAccountRequest = read_json(req).await?;
            noted.org_id = body.org_id.clone();
            noted.client_id = body.client_id.clone();
            match op.as_str() {
                "list" => Ok(json(
                    StatusCode::OK,
                    &crate::wire::ServiceAccountList {
                        service_accounts: broker.sa_list(&body).await?,
                    },
                )),
                "create" => Ok(json(StatusCode::OK, &broker.sa_create(body).await?)),
                "delete" => Ok(json(StatusCode::OK, &broker.sa_delete(body).await?)),
                "rotate-secret" => Ok(json(StatusCode::OK, &broker.sa_rotate(body).await?)),
                other => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_such_route",
                    format!("no service-account operation {other:?}"),
                )),
            }
        }
        Call::RegisterApp => {
            let body: crate::wire::RegisterAppRequest = read_json(req).await?;
            noted.org_id = Some(body.org_id.clone());
            Ok(json(StatusCode::OK, &broker.register_app(body).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_a_value() {
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","client_secret":12345678}"#,
        )
        .unwrap_err();
        let m = crate::secret::json_error(&e);
        assert!(!m.contains("12345678") && m.contains("wrong type"), "{m}");
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","kind":"s3cr3t"}"#,
        )
        .unwrap_err();
        assert!(!crate::secret::json_error(&e).contains("s3cr3t"));
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","refresh_tokn":"x"}"#,
        )
        .unwrap_err();
        assert!(crate::secret::json_error(&e).contains("unknown field `refresh_tokn`"));
    }

    #[test]
    fn percent_decoding_exposes_path_tricks_to_validation() {
        assert_eq!(decode_segment("..%2Fx").ok().unwrap(), "../x");
        assert!(key_from(&decode_segment("..%2Fx").ok().unwrap(), "c").is_err());
        assert!(decode_segment("%zz").is_err());
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    fn percent_encode_all(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #![proptest_config(crate::prop::config(1024))]

        #[test]
        fn prop_path_segments_decode_without_panic_or_growth(s in "\\PC{0,300}|[%0-9A-Fa-f./]{0,64}") {
            if let Ok(d) = decode_segment(&s) {
                prop_assert!(d.len() <= s.len());
                if !s.contains('%') {
                    prop_assert_eq!(&d, &s);
                }
            }
        }

        #[test]
        fn prop_encoded_segments_round_trip(s in "\\PC{0,100}") {
            prop_assert_eq!(decode_segment(&percent_encode_all(&s)).ok(), Some(s));
        }

        #[test]
        fn prop_decoded_ids_still_pass_id_validation(s in "[A-Za-z0-9._%/:-]{0,40}") {
            // Whatever a segment decodes to, it reaches a key only through CredKey.
            if let Ok(d) = decode_segment(&s) {
                if let Ok(k) = key_from(&d, "c") {
                    prop_assert!(!k.org.as_str().contains('/') && !k.org.as_str().starts_with('.'));
                }
            }
        }
    }
}

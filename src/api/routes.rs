//! The router: the route table of docs/api.md, the access decision before any
//! body is read, the audit line of every admin operation, and the metrics of
//! every request. The handlers are in [`super::handlers`], the error mapping
//! in [`super::error`].

use super::answer::Resp;
use super::error::ApiError;
use super::handlers::{self, Noted};
use super::http::{Query, decode_segment, key_from, key_from_query, query_get, query_pairs};
use super::socket::Peer;
use super::state::AppState;
use crate::access::{AdminOp, Operation, Policy, Refusal};
use crate::credential::CredKey;
use crate::wire::{ErrorCode, paths};
use hyper::body::Incoming;
use hyper::{Method, Request};
use std::sync::Arc;
use std::time::Instant;

/// What a route does, before its parameters are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Health,
    Ready,
    Metrics,
    Put,
    /// `GET /v1/credentials`: the list, or with `?org_id=&client_id=` a token.
    ListOrToken,
    Token,
    ForceRefresh,
    Delete,
    ClearCache,
    Login,
    LoginStatus,
    ServiceAccounts,
    RegisterApp,
    Reload,
}

/// Every route of the agent API (each has its section in `docs/api.md`). A
/// path that matches a template here under another method is answered 405,
/// any other 404.
pub(super) const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, paths::HEALTH, Route::Health),
    (Method::GET, paths::READY, Route::Ready),
    (Method::GET, paths::METRICS, Route::Metrics),
    (Method::PUT, paths::CREDENTIALS, Route::Put),
    (Method::GET, paths::CREDENTIALS, Route::ListOrToken),
    (Method::GET, paths::CREDENTIAL, Route::Token),
    (Method::POST, paths::REFRESH, Route::ForceRefresh),
    (Method::DELETE, paths::CREDENTIALS, Route::Delete),
    (Method::DELETE, paths::CREDENTIAL, Route::Delete),
    (Method::DELETE, paths::CACHE, Route::ClearCache),
    (Method::DELETE, paths::CACHED, Route::ClearCache),
    (Method::POST, paths::LOGIN, Route::Login),
    (Method::GET, paths::LOGIN_STATUS, Route::LoginStatus),
    (
        Method::POST,
        paths::SERVICE_ACCOUNTS,
        Route::ServiceAccounts,
    ),
    (Method::POST, paths::REGISTER_APP, Route::RegisterApp),
    (Method::POST, paths::RELOAD, Route::Reload),
];

/// The path's segments in place of the template's `{…}` ones, or `None`.
/// Allocates only for a match with parameters (this runs for every request).
fn matches<'p>(template: &str, segments: &[&'p str]) -> Option<Vec<&'p str>> {
    let mut parts = template.trim_start_matches('/').split('/');
    let mut params = Vec::new();
    for seg in segments {
        let part = parts.next()?;
        if part.starts_with('{') {
            params.push(*seg);
        } else if part != *seg {
            return None;
        }
    }
    parts.next().is_none().then_some(params)
}

/// A request, parsed from its method, path and query before any body is
/// read: what it asks for, so that the policy can decide before anything runs.
/// Every route is a variant, so a new one cannot skip [`Call::operation`].
enum Call {
    Health,
    Ready,
    /// `GET /v1/ready?write=true`: a write on a scratch record; admins only.
    WriteCheck,
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
    Reload,
}

impl Call {
    /// The `route` label of the request metrics.
    fn route(&self) -> &'static str {
        match self {
            Call::Health => "health",
            Call::Ready => "ready",
            Call::WriteCheck => "write_check",
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
            Call::Reload => "reload",
        }
    }

    /// What the access policy is asked about.
    fn operation(&self) -> Operation<'_> {
        match self {
            Call::Health | Call::Ready | Call::Metrics => Operation::Open,
            Call::List => Operation::List,
            Call::Token(key) | Call::ForceRefresh(key) => Operation::Read(key),
            Call::Put => Operation::Admin(AdminOp::PutCredential, None),
            Call::WriteCheck => Operation::Admin(AdminOp::WriteCheck, None),
            Call::Delete { key, revoke: false } => {
                Operation::Admin(AdminOp::DeleteCredential, Some(key))
            }
            Call::Delete { key, revoke: true } => Operation::Admin(AdminOp::Revoke, Some(key)),
            Call::ClearCache(key) => Operation::Admin(AdminOp::ClearCache, Some(key)),
            Call::Login => Operation::Admin(AdminOp::Login, None),
            Call::LoginStatus(_) => Operation::Admin(AdminOp::LoginStatus, None),
            Call::ServiceAccounts(_) => Operation::Admin(AdminOp::ServiceAccounts, None),
            Call::RegisterApp => Operation::Admin(AdminOp::RegisterApp, None),
            Call::Reload => Operation::Admin(AdminOp::Reload, None),
        }
    }
}

/// Entry point for every request.
pub async fn handle(state: &AppState, peer: &Peer, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let policy = state.policy();
    let (route, result) = if !policy.on_socket(peer.who()) {
        let refusal = Refusal::NotOnSocket {
            uid: peer.uid,
            gid: peer.gid,
        };
        crate::metrics::get().denied_peers.inc();
        tracing::warn!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid.unwrap_or(0),
            "refused a request from a peer not in server.allowed_uids/allowed_gids"
        );
        audit_refusal(peer, "connect", None, &refusal);
        ("denied", Err(ApiError::from(refusal)))
    } else {
        match parse(&req, &method, &path) {
            Err((route, e)) => (route, Err(e)),
            Ok((call, query)) => {
                let route = call.route();
                (route, answer(state, peer, &policy, call, req, &query).await)
            }
        }
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    let status = resp.status().as_u16();
    crate::metrics::request(route, status);
    tracing::debug!(method = %method, route, status, micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Runs an allowed call: one handler per route.
async fn run(
    state: &AppState,
    peer: &Peer,
    policy: &Policy,
    call: &Call,
    req: Request<Incoming>,
    query: &Query,
    noted: &mut Noted,
) -> Result<Resp, ApiError> {
    match call {
        Call::Health => handlers::health(),
        Call::Ready => handlers::ready(state).await,
        Call::WriteCheck => handlers::write_check(state).await,
        Call::Metrics => Ok(super::metrics_response(&state.broker)),
        Call::Put => handlers::put(state, req, noted).await,
        Call::List => handlers::list(state, peer, policy).await,
        Call::Token(key) => handlers::token(state, peer, key, query).await,
        Call::ForceRefresh(key) => handlers::force_refresh(state, peer, key).await,
        Call::Delete { key, revoke } => handlers::delete(state, key, *revoke).await,
        Call::ClearCache(key) => handlers::clear_cache(state, key).await,
        Call::Login => handlers::login(state, req, noted).await,
        Call::LoginStatus(login) => handlers::login_status(state, login, query).await,
        Call::ServiceAccounts(op) => handlers::service_accounts(state, op, req, noted).await,
        Call::RegisterApp => handlers::register_app(state, req, noted).await,
        Call::Reload => handlers::reload(state).await,
    }
}

/// Decides, then runs the call and writes the audit line of an admin operation.
async fn answer(
    state: &AppState,
    peer: &Peer,
    policy: &Arc<Policy>,
    call: Call,
    req: Request<Incoming>,
    query: &Query,
) -> Result<Resp, ApiError> {
    let route = call.route();
    if let Err(refusal) = decide(policy, peer, call.operation()) {
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
        return Err(ApiError::from(refusal));
    }
    let mut noted = Noted::default();
    let result = run(state, peer, policy, &call, req, query, &mut noted).await;
    if let Operation::Admin(op, key) = call.operation() {
        audit_admin(peer, op, key, noted, &result);
    }
    result
}

/// The policy's decision, remembered per connection for token reads (the
/// hot path of a keep-alive client; a SIGHUP's new policy is decided afresh).
fn decide(policy: &Arc<Policy>, peer: &Peer, op: Operation<'_>) -> Result<(), Refusal> {
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
        Err(e) => ("error", e.code.status(), Some(e.code.as_str().to_string())),
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

/// The metrics label of a request that matched no route or failed to parse.
const INVALID: &str = "invalid";

type Parsed = Result<(Call, Query), (&'static str, ApiError)>;

/// Finds the route in [`ROUTES`] and reads its path parameters and query.
fn parse(req: &Request<Incoming>, method: &Method, path: &str) -> Parsed {
    let query = query_pairs(req).map_err(|e| (INVALID, e))?;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (route, params) = route_of(method, path, &segments).map_err(|e| (INVALID, e))?;
    let call = call(route, &params, &query)?;
    Ok((call, query))
}

/// The route `method` and the path's `segments` name in [`ROUTES`], with
/// its path parameters; 405 when the path is served under another method,
/// 404 when it is not served at all.
fn route_of<'p>(
    method: &Method,
    path: &str,
    segments: &[&'p str],
) -> Result<(Route, Vec<&'p str>), ApiError> {
    let found = ROUTES
        .iter()
        .filter(|(m, _, _)| m == method)
        .find_map(|(_, t, r)| matches(t, segments).map(|p| (*r, p)));
    if let Some(found) = found {
        return Ok(found);
    }
    if ROUTES
        .iter()
        .any(|(_, t, _)| matches(t, segments).is_some())
    {
        Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not supported on {path}"),
        ))
    } else {
        Err(ApiError::new(
            ErrorCode::NoSuchRoute,
            format!("no route {method} {path}: see docs/api.md for the agent API"),
        ))
    }
}

/// The credential named in the path, or in the seed service's query form.
fn key_in(params: &[&str], query: &Query) -> Result<CredKey, ApiError> {
    match params {
        [org, client] => key_from(&decode_segment(org)?, &decode_segment(client)?),
        _ => key_from_query(query),
    }
}

fn call(route: Route, params: &[&str], query: &Query) -> Result<Call, (&'static str, ApiError)> {
    let label = |r: &'static str| move |e: ApiError| (r, e);
    Ok(match route {
        Route::Health => Call::Health,
        Route::Ready if query_get(query, paths::WRITE) == Some("true") => Call::WriteCheck,
        Route::Ready => Call::Ready,
        Route::Metrics => Call::Metrics,
        Route::Put => Call::Put,
        Route::ListOrToken
            if query_get(query, paths::ORG_ID).is_some()
                || query_get(query, paths::CLIENT_ID).is_some() =>
        {
            Call::Token(key_in(&[], query).map_err(label("get_token"))?)
        }
        Route::ListOrToken => Call::List,
        Route::Token => Call::Token(key_in(params, query).map_err(label("get_token"))?),
        Route::ForceRefresh => {
            Call::ForceRefresh(key_in(params, query).map_err(label("force_refresh"))?)
        }
        Route::Delete => {
            let key = key_in(params, query).map_err(label("delete_credential"))?;
            let revoke = match query_get(query, paths::REVOKE) {
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
        Route::ClearCache => {
            Call::ClearCache(key_in(params, query).map_err(label("delete_cache"))?)
        }
        Route::Login => Call::Login,
        Route::LoginStatus => {
            let state = params.first().copied().unwrap_or_default();
            Call::LoginStatus(decode_segment(state).map_err(label("login_status"))?)
        }
        Route::ServiceAccounts => {
            Call::ServiceAccounts(params.first().copied().unwrap_or_default().to_string())
        }
        Route::RegisterApp => Call::RegisterApp,
        Route::Reload => Call::Reload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::paths::fill;

    #[test]
    fn templates_match_by_shape_and_hand_out_their_parameters() {
        let seg = |p: &'static str| -> Vec<&'static str> {
            p.trim_start_matches('/').split('/').collect()
        };
        assert_eq!(
            matches(paths::CREDENTIAL, &seg("/v1/credentials/o/c")),
            Some(vec!["o", "c"])
        );
        assert_eq!(matches(paths::CREDENTIAL, &seg("/v1/credentials/o")), None);
        assert_eq!(
            matches(paths::CREDENTIALS, &seg("/v1/credentials")),
            Some(vec![])
        );
        assert_eq!(matches(paths::REFRESH, &seg("/v1/credentials/o/c/x")), None);
        assert_eq!(matches(paths::METRICS, &seg("/metrics")), Some(vec![]));
    }

    #[test]
    fn the_table_decides_the_route_and_405_or_404() {
        let route = |m: Method, p: &'static str| {
            let segments: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            route_of(&m, p, &segments)
                .map(|(r, _)| r)
                .map_err(|e| e.code)
        };
        assert_eq!(route(Method::GET, "/v1/health"), Ok(Route::Health));
        assert_eq!(route(Method::GET, "/v1/credentials/o/c"), Ok(Route::Token));
        assert_eq!(
            route(Method::DELETE, "/v1/credentials/o/c"),
            Ok(Route::Delete)
        );
        assert_eq!(route(Method::DELETE, "/v1/credentials"), Ok(Route::Delete));
        assert_eq!(
            route(Method::POST, "/v1/service-accounts/list"),
            Ok(Route::ServiceAccounts)
        );
        // Served under another method: 405, for every route in the table.
        for (m, t, _) in ROUTES {
            let other = if *m == Method::PATCH {
                Method::GET
            } else {
                Method::PATCH
            };
            let path = fill(t, &["a", "b"]);
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let e = route_of(&other, &path, &segments).unwrap_err();
            assert_eq!(e.code, ErrorCode::MethodNotAllowed, "{other} {path}");
        }
        assert_eq!(
            route(Method::POST, "/v1/credentials/o/c"),
            Err(ErrorCode::MethodNotAllowed)
        );
        assert_eq!(route(Method::GET, "/v1/nope"), Err(ErrorCode::NoSuchRoute));
        assert_eq!(
            route(Method::GET, "/v1/credentials/a/b/c/d"),
            Err(ErrorCode::NoSuchRoute)
        );
    }

    #[test]
    fn every_route_has_one_method_per_template() {
        for (i, (m, t, _)) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[i + 1..].iter().any(|(m2, t2, _)| m2 == m && t2 == t),
                "{m} {t} twice"
            );
        }
    }
}

//! A strict fake of Snyk's OAuth endpoints, from Snyk's documentation:
//! refresh tokens are single-use and every replay is counted, so that every
//! test can assert `replays == 0`. The OAuth rules themselves (clients,
//! single-use refresh tokens, codes with PKCE S256, access tokens) are the
//! product's simulated Snyk, `snykey::dev::sim::Authority` (what `snykey
//! dev` serves); this fake wraps it with fault injection, counters, the
//! service-account and app REST API, private-key JWT checks and the CLI's v1
//! endpoints.
//!
//! * `POST /oauth2/token` — `refresh_token` (rotates: the sent token dies, a
//!   new one is issued), `client_credentials` (client secret).
//! * `POST /oauth2/revoke` — revokes a refresh token.
//! * `GET /rest/self` — 200 for a live bearer access token (or `token` and a
//!   service account's API key), 401 otherwise: "a token the fake accepts".
//! * `/rest/{orgs|groups}/{id}/service_accounts`: list, create (`api_key`,
//!   `oauth_client_secret`, `oauth_private_key_jwt`; the secret or API key
//!   shown once), get and rename (`GET`/`PATCH .../{sa}`), delete, secrets.
//! * What the real Snyk CLI calls for `snyk test` on an npm project
//!   (`tests/it/snyk_cli.rs`): `GET /v1/cli-config/feature-flags/{flag}?org=`
//!   and `POST /v1/test-dep-graph?org=` (a gzip'd JSON dep graph), each
//!   answered as Snyk does for an org with no flags and a project with no
//!   known vulnerabilities, and 401 without a live bearer token. Every `/v1/`
//!   request is recorded ([`V1Request`]).
//!
//! Faults are injected per request from a queue: 5xx, 429 with Retry-After,
//! a delay, "process the grant and drop the connection" (the answer is
//! lost in transit), "rotate at once, answer N ms later" (the caller can hang
//! up after the token was consumed), or a 200 without `refresh_token`. A token whose answer was lost and is then sent again is
//! counted as `lost_answer_retries`, which docs/protocol.md permits once, not as a replay.

#![allow(dead_code)]

use super::serve::{Resp, answer, header, json};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this HTTP status and a JSON error; nothing is consumed.
    Status(u16),
    /// 429 with `Retry-After: secs`; nothing is consumed.
    RateLimit(u64),
    /// Wait this long, then process normally (the client may have given up).
    Delay(Duration),
    /// Process the grant (the token is consumed) and drop the connection.
    DropAfterProcessing,
    /// Process the grant at once (the token is consumed when the request
    /// arrives) and send the answer this long after: a caller can hang up
    /// after Snyk rotated.
    AnswerLater(Duration),
    /// Process a refresh grant and answer 200 without a `refresh_token`
    /// (the sent token is consumed all the same).
    NoRefreshToken,
    /// A page without an OAuth error body (a gateway's 5xx, a proxy's
    /// 403/407/408, a WAF, a captive portal's 3xx, a bodyless 429) with this
    /// status; the request never reached Snyk: nothing consumed.
    Gateway(u16),
    /// The grant is processed (the token consumed), then such a page with
    /// this status replaces the answer.
    GatewayAfterProcessing(u16),
    /// The grant is processed (the token consumed), then a page of this
    /// status, content type and body replaces the answer: JSON that is not
    /// an OAuth error (a gateway's `{"error":"Forbidden"}`), or an OAuth
    /// body under another content type.
    PageAfterProcessing(u16, &'static str, &'static str),
}

pub use snykey::dev::sim::Grant;
use snykey::dev::sim::{Authority, Client, Refusal};

/// A refresh token sent again after Snyk had consumed it.
#[derive(Debug, Clone)]
pub struct Resend {
    pub client_id: String,
    pub token: String,
    /// The grant that consumed it.
    pub grant: Option<Grant>,
    /// Counted as the lost-answer retry the fake knew of (its own
    /// "drop after processing" fault, or an answer later than
    /// `client_timeout`), not as a replay.
    pub lost_answer_retry: bool,
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct State {
    /// The OAuth rules: clients, refresh and access tokens, codes (see the
    /// module comment). `authority.register(id, None)` adds a public client.
    pub authority: Authority,
    /// Consumed refresh tokens whose answer was lost in transit (one
    /// retry of each is permitted, docs/protocol.md rule 6).
    answer_lost: std::collections::HashSet<String>,
    /// Every secret value this fake ever issued or was configured with.
    pub secrets: Vec<String>,
    pub faults: VecDeque<Fault>,
    /// Successful refresh grants (a new refresh token issued).
    pub refresh_grants: u64,
    /// Successful client_credentials grants.
    pub client_credentials_grants: u64,
    /// Refresh tokens sent again after Snyk had accepted them and delivered the answer.
    pub replays: u64,
    /// Tokens sent again after their answer was lost in transit (permitted once).
    pub lost_answer_retries: u64,
    /// All token endpoint requests, including refused ones.
    pub token_requests: u64,
    pub revocations: u64,
    pub bad_client_auth: u64,
    /// Token requests refused as malformed (400 `invalid_request`: a
    /// confidential client's request without its `client_secret`).
    pub malformed_requests: u64,
    /// Times at which refresh grants succeeded.
    pub grant_times: Vec<SystemTime>,
    /// While set, every token request is answered with this status (nothing consumed).
    pub fail_all: Option<u16>,
    /// While set, every token request is delayed this long before processing.
    pub delay_all: Option<Duration>,
    /// Probability (0..1) that a token request fails with 503 or 429.
    pub fault_rate: f64,
    /// Probability (0..1) that a token request is processed at once and
    /// answered `late_answer` later (Snyk slow to answer).
    pub late_answer_rate: f64,
    pub late_answer: Duration,
    /// When set: a refresh answer this late (from the request's arrival)
    /// may have come after the client gave up (the agents' Snyk timeout),
    /// so it counts as lost: rule 6 permits one retry.
    pub client_timeout: Option<Duration>,
    /// While set, /oauth2/authorize answers with error=access_denied.
    pub deny_authorize: bool,
    /// Snyk API tokens accepted by the REST API (`Authorization: token ...`).
    pub api_tokens: Vec<String>,
    pub authorization_code_grants: u64,
    /// private_key_jwt: client id → (kid, public key PEM).
    pub jwt_keys: HashMap<String, (String, String)>,
    /// Every `jti` and `aud` of an accepted client assertion.
    pub jtis: Vec<String>,
    pub auds: Vec<String>,
    /// Service accounts by id.
    pub service_accounts: std::collections::BTreeMap<String, FakeServiceAccount>,
    /// While set, deleting a service account secret fails with 500.
    pub fail_secret_delete: bool,
    pub base_url: String,
    /// While set, token answers carry this JSON value as `expires_in`
    /// (a float, 0, 1e20…); the fake itself keeps `expires_in` seconds.
    pub expires_in_json: Option<serde_json::Value>,
    /// While set, every REST request waits this long before it is processed.
    pub rest_delay: Option<Duration>,
    pub code_replays: u64,
    pub apps_created: u64,
    /// REST requests received (counted on arrival, before `rest_delay`).
    pub rest_requests: u64,
    /// Every send of a consumed refresh token, replays and lost-answer
    /// retries alike, so that a test that kills agents can tell which
    /// resends its kills explain.
    pub resends: Vec<Resend>,
    /// Every request to `/v1/` (the Snyk CLI's API), in order.
    pub v1_requests: Vec<V1Request>,
}

/// One request to Snyk's v1 API, as the fake saw it.
#[derive(Debug, Clone)]
pub struct V1Request {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Authorization` header as sent.
    pub authorization: Option<String>,
    pub status: u16,
    /// `test-dep-graph`: the dep graph's packages (`name@version`).
    pub packages: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct FakeServiceAccount {
    pub scope: String,
    pub name: String,
    pub auth_type: String,
    pub client_id: String,
    pub role_id: String,
    /// The active secrets (at most two).
    pub secrets: Vec<String>,
    /// `api_key` accounts: the key (Snyk shows it once, at creation).
    pub api_key: Option<String>,
}

#[derive(Clone)]
pub struct FakeSnyk {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    stop: Arc<super::serve::Stop>,
}

fn random_token(prefix: &str) -> String {
    snykey::dev::sim::random_token(prefix, 40)
}

impl State {
    /// Counts a refused client authentication: a missing secret is a
    /// malformed request (as Snyk answers it), anything else bad client auth.
    fn count_auth_refusal(&mut self, refusal: &Refusal) {
        if *refusal == Refusal::MissingSecret {
            self.malformed_requests += 1;
        } else {
            self.bad_client_auth += 1;
        }
    }

    /// Whether `Authorization` carries a live OAuth access token (`Bearer`)
    /// or a service account's API key (`token`, as the Snyk CLI sends
    /// `SNYK_TOKEN`).
    pub fn authorized(&self, auth: Option<&str>) -> bool {
        match auth {
            Some(a) if a.starts_with("Bearer ") => {
                self.authority.access_token_valid(&a["Bearer ".len()..])
            }
            Some(a) if a.starts_with("token ") => {
                let key = &a["token ".len()..];
                self.service_accounts
                    .values()
                    .any(|sa| sa.api_key.as_deref() == Some(key))
            }
            _ => false,
        }
    }

    /// Remembers what a grant issued as secrets (for the leak checks).
    fn remember(&mut self, issued: &snykey::dev::sim::Issued) {
        self.secrets.push(issued.access_token.clone());
        if let Some(rt) = &issued.refresh_token {
            self.secrets.push(rt.clone());
        }
    }
}

impl FakeSnyk {
    /// Starts the fake on 127.0.0.1 on a free port, on its own thread.
    pub fn start() -> FakeSnyk {
        let state = Arc::new(Mutex::new(State::default()));
        let st = Arc::clone(&state);
        let (addr, stop) = super::serve::spawn(move |req| handle(Arc::clone(&st), req));
        state.lock().unwrap().base_url = format!("http://{addr}");
        FakeSnyk { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same server as `http://localhost:PORT`: the Snyk CLI switches
    /// every other `http://` host to https (and derives its REST URL from
    /// an `api.` or `localhost` host only).
    pub fn localhost_url(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Registers an OAuth client and issues it a live refresh token (as a login would).
    pub fn new_oauth_client(&self, client_id: &str, secret: Option<&str>) -> String {
        let mut s = self.lock();
        s.authority.register(client_id, secret);
        if let Some(sec) = secret {
            s.secrets.push(sec.into());
        }
        let rt = s.authority.issue_refresh_token(client_id);
        s.secrets.push(rt.clone());
        rt
    }

    /// Registers a service account with a client secret.
    pub fn new_service_account(&self, client_id: &str, secret: &str) {
        let mut s = self.lock();
        s.authority.register(client_id, Some(secret));
        s.secrets.push(secret.into());
    }

    /// Issues access tokens of `len` characters from now on (0: the default 43).
    pub fn set_access_token_len(&self, len: usize) {
        self.lock().authority.access_token_len = len;
    }

    pub fn set_expires_in(&self, secs: u64) {
        self.lock().authority.expires_in = secs;
    }

    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    /// Is this refresh token still usable (issued, not used, not revoked)?
    pub fn refresh_token_alive(&self, rt: &str) -> bool {
        self.lock()
            .authority
            .refresh
            .get(rt)
            .is_some_and(|r| r.alive())
    }

    /// The one live refresh token of a client (None if none or several).
    pub fn live_refresh_token(&self, client_id: &str) -> Option<String> {
        let s = self.lock();
        let live: Vec<&String> = s
            .authority
            .refresh
            .iter()
            .filter(|(_, r)| r.client_id == client_id && r.alive())
            .map(|(k, _)| k)
            .collect();
        (live.len() == 1).then(|| live[0].clone())
    }

    /// The client secret Snyk holds for `client_id` (None: no such
    /// client, or a public one).
    pub fn client_secret(&self, client_id: &str) -> Option<String> {
        self.lock()
            .authority
            .clients
            .get(client_id)
            .and_then(|c| c.secret.clone())
    }

    /// The tokens issued after `rt`, one grant after another, newest last.
    pub fn successors(&self, rt: &str) -> Vec<String> {
        let s = self.lock();
        let mut chain = Vec::new();
        let mut at = rt.to_string();
        while let Some(next) = s
            .authority
            .refresh
            .get(&at)
            .and_then(|r| r.grant.as_ref().map(|g| g.successor.clone()))
        {
            if chain.contains(&next) {
                break;
            }
            chain.push(next.clone());
            at = next;
        }
        chain
    }

    /// Revokes a refresh token, as a user removing the app's access would.
    pub fn revoke(&self, rt: &str) {
        self.lock().authority.revoke(rt);
    }

    /// Until when the fake accepts this access token.
    pub fn access_token_expiry(&self, at: &str) -> Option<SystemTime> {
        self.lock().authority.access.get(at).map(|(_, exp)| *exp)
    }

    /// Does the fake accept this access token right now?
    pub fn access_token_valid(&self, at: &str) -> bool {
        self.lock().authority.access_token_valid(at)
    }

    /// The answer to `rt`'s grant was lost in a way the fake cannot see (the
    /// agent that sent it was killed before reading it): docs/protocol.md rule 6
    /// permits one retry, counted as a lost-answer retry, not a replay.
    pub fn mark_answer_lost(&self, rt: &str) {
        let mut s = self.lock();
        if s.authority.refresh.contains_key(rt) {
            s.answer_lost.insert(rt.to_string());
        }
    }

    /// The consumed refresh token whose SHA-256 (hex, as a journal or a
    /// claim names it) is `digest`, with its client and grant.
    pub fn consumed_by_digest(&self, digest: &str) -> Option<(String, String, Grant)> {
        let s = self.lock();
        s.authority.refresh.iter().find_map(|(k, r)| {
            let grant = r.grant.clone()?;
            (snykey::secret::Secret::new(k.as_str()).digest() == digest)
                .then(|| (r.client_id.clone(), k.clone(), grant))
        })
    }

    pub fn replays(&self) -> u64 {
        self.lock().replays
    }

    /// Refresh grants per client id (tokens issued after the first).
    pub fn refresh_grants_per_client(&self) -> HashMap<String, usize> {
        let mut m: HashMap<String, usize> = HashMap::new();
        for r in self.lock().authority.refresh.values() {
            *m.entry(r.client_id.clone()).or_default() += 1;
        }
        for v in m.values_mut() {
            *v = v.saturating_sub(1);
        }
        m
    }

    /// Every grant that minted an access token (refresh, client
    /// credentials, code exchange).
    pub fn grants(&self) -> u64 {
        let s = self.lock();
        s.refresh_grants + s.client_credentials_grants + s.authorization_code_grants
    }

    pub fn refresh_grants(&self) -> u64 {
        self.lock().refresh_grants
    }

    pub fn secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }
}

/// RFC 7523 client assertion checks, as Snyk documents them: RS256 signed by
/// the registered key (`kid`), `iss` = `sub` = client id, `aud` = the token
/// URL, unexpired, and a `jti` never seen before.
fn verify_assertion(
    s: &mut State,
    client_id: &str,
    token_url: &str,
    assertion_type: Option<&str>,
    assertion: &str,
) -> Result<(), String> {
    if assertion_type != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return Err("wrong client_assertion_type".into());
    }
    let (kid, public_pem) = s
        .jwt_keys
        .get(client_id)
        .cloned()
        .ok_or("no key registered")?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("bad header: {e}"))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 || header.kid.as_deref() != Some(kid.as_str()) {
        return Err("alg must be RS256 and kid must match".into());
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[token_url]);
    v.set_issuer(&[client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.sub = Some(client_id.to_string());
    let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v)
        .map_err(|e| format!("invalid assertion: {e}"))?;
    let c = data.claims;
    let jti = c["jti"].as_str().ok_or("no jti")?.to_string();
    let (iat, exp) = (
        c["iat"].as_u64().ok_or("no iat")?,
        c["exp"].as_u64().ok_or("no exp")?,
    );
    if exp <= iat || exp - iat > 600 {
        return Err("exp must be shortly after iat".into());
    }
    if s.jtis.contains(&jti) {
        return Err("jti reused".into());
    }
    s.jtis.push(jti);
    s.auds
        .push(c["aud"].as_str().unwrap_or_default().to_string());
    Ok(())
}

/// A JSON:API error document.
fn jsonapi_error(status: u16, detail: &str) -> Resp {
    json(
        status,
        serde_json::json!({"jsonapi": {"version": "1.0"}, "errors": [{"status": status.to_string(), "detail": detail}]}),
    )
}

/// What Snyk's REST API checks on every request: `?version=`, a known
/// `Authorization: token ...`, and a JSON:API body on writes. The refusal, if any.
fn rest_refusal(
    s: &State,
    query: &str,
    auth: Option<&str>,
    has_body: bool,
    ctype: &str,
) -> Option<Resp> {
    if !query.split('&').any(|p| p.starts_with("version=")) {
        return Some(jsonapi_error(
            400,
            "the version query parameter is required",
        ));
    }
    if !auth
        .and_then(|a| a.strip_prefix("token "))
        .is_some_and(|t| s.api_tokens.iter().any(|k| k == t))
    {
        return Some(jsonapi_error(
            401,
            "the Snyk API token is missing or invalid",
        ));
    }
    if has_body && !ctype.starts_with("application/vnd.api+json") {
        return Some(jsonapi_error(
            415,
            "content type must be application/vnd.api+json",
        ));
    }
    None
}

/// A service account as Snyk's REST API shows it: no secret, and a
/// `client_id` only for the OAuth kinds.
fn sa_json(id: &str, sa: &FakeServiceAccount) -> serde_json::Value {
    let mut attrs =
        serde_json::json!({"name": sa.name, "auth_type": sa.auth_type, "role_id": sa.role_id});
    if !sa.client_id.is_empty() {
        attrs["client_id"] = serde_json::json!(sa.client_id);
    }
    serde_json::json!({"type": "service_account", "id": id, "attributes": attrs})
}

/// `GET` and `PATCH /rest/{orgs|groups}/{id}/service_accounts/{sa}`: one
/// account of that org or group (404 for another scope's); `PATCH` takes
/// `{"data": {"type": "service_account", "id": sa, "attributes": {"name"}}}`
/// and changes only the name.
fn one_service_account(
    s: &mut State,
    method: &str,
    scope: &str,
    id: &str,
    v: &serde_json::Value,
) -> Resp {
    let Some(sa) = s
        .service_accounts
        .get_mut(id)
        .filter(|sa| sa.scope == scope)
    else {
        return jsonapi_error(404, "service account not found");
    };
    if method == "PATCH" {
        if v["data"]["type"] != "service_account" || v["data"]["id"] != id {
            return jsonapi_error(409, "data.type and data.id must name this service account");
        }
        match v["data"]["attributes"]["name"].as_str() {
            Some(n) if !n.trim().is_empty() => sa.name = n.into(),
            _ => return jsonapi_error(400, "attributes.name is required"),
        }
    }
    json(
        200,
        serde_json::json!({"jsonapi": {"version": "1.0"}, "data": sa_json(id, sa)}),
    )
}

/// `/rest/{orgs|groups}/{id}/service_accounts[/{sa}[/secrets]]` (JSON:API).
fn service_accounts(
    st: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<&str>,
    ctype: &str,
    body: &[u8],
) -> Resp {
    let mut s = st.lock().unwrap();
    let err = jsonapi_error;
    let has_body = method == "POST" || method == "PATCH";
    if let Some(r) = rest_refusal(&s, query, auth, has_body, ctype) {
        return r;
    }
    let parts: Vec<&str> = path.trim_start_matches("/rest/").split('/').collect();
    let scope = format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""));
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let attrs = &v["data"]["attributes"];
    match (method, parts.as_slice()) {
        ("GET" | "PATCH", [_, _, "service_accounts", id]) => {
            one_service_account(&mut s, method, &scope, id, &v)
        }
        ("GET", [_, _, "service_accounts"]) => {
            let data: Vec<_> = s
                .service_accounts
                .iter()
                .filter(|(_, sa)| sa.scope == scope)
                .map(|(id, sa)| sa_json(id, sa))
                .collect();
            json(
                200,
                serde_json::json!({"jsonapi": {"version": "1.0"}, "data": data, "links": {}}),
            )
        }
        ("POST", [_, _, "service_accounts"]) => {
            let (Some(name), Some(auth_type), Some(role_id)) = (
                attrs["name"].as_str(),
                attrs["auth_type"].as_str(),
                attrs["role_id"].as_str(),
            ) else {
                return err(400, "name, auth_type and role_id are required");
            };
            let id = format!(
                "sa-{}",
                random_token("")
                    .to_lowercase()
                    .chars()
                    .take(10)
                    .collect::<String>()
            );
            if !matches!(
                auth_type,
                "api_key" | "oauth_client_secret" | "oauth_private_key_jwt"
            ) {
                return err(
                    400,
                    "auth_type must be api_key, oauth_client_secret or oauth_private_key_jwt",
                );
            }
            // An API key account has no OAuth client.
            let client_id = if auth_type == "api_key" {
                String::new()
            } else {
                format!(
                    "{}-sa",
                    random_token("")
                        .to_lowercase()
                        .chars()
                        .take(12)
                        .collect::<String>()
                )
            };
            let mut created = FakeServiceAccount {
                scope,
                name: name.into(),
                auth_type: auth_type.into(),
                client_id: client_id.clone(),
                role_id: role_id.into(),
                secrets: vec![],
                api_key: None,
            };
            let mut out = sa_json(&id, &created);
            match auth_type {
                "oauth_client_secret" => {
                    let secret = random_token("sa_secret_");
                    s.secrets.push(secret.clone());
                    out["attributes"]["client_secret"] = serde_json::json!(secret);
                    created.secrets.push(secret);
                }
                "api_key" => {
                    let key = random_token("sa_apikey_");
                    s.secrets.push(key.clone());
                    out["attributes"]["api_key"] = serde_json::json!(key);
                    created.api_key = Some(key);
                }
                _ => {}
            }
            if !client_id.is_empty() {
                s.authority.register(&client_id, None);
            }
            s.service_accounts.insert(id, created);
            json(
                201,
                serde_json::json!({"jsonapi": {"version": "1.0"}, "data": out}),
            )
        }
        ("DELETE", [_, _, "service_accounts", id]) => match s.service_accounts.remove(*id) {
            Some(sa) => {
                s.authority.clients.remove(&sa.client_id);
                json(204, serde_json::Value::Null)
            }
            None => err(404, "service account not found"),
        },
        ("POST", [_, _, "service_accounts", id, "secrets"]) => {
            let mode = attrs["mode"].as_str().unwrap_or("");
            let fail_delete = s.fail_secret_delete;
            let new_secret = random_token("sa_secret_");
            let Some(sa) = s.service_accounts.get_mut(*id) else {
                return err(404, "service account not found");
            };
            let out = match mode {
                "create" if sa.secrets.len() >= 2 => {
                    return err(409, "a service account can have at most two active secrets");
                }
                "create" => {
                    sa.secrets.push(new_secret.clone());
                    Some(new_secret)
                }
                "replace" => {
                    sa.secrets = vec![new_secret.clone()];
                    Some(new_secret)
                }
                "delete" => {
                    if fail_delete {
                        return err(500, "internal error");
                    }
                    let target = attrs["secret"].as_str().unwrap_or("");
                    if !sa.secrets.iter().any(|x| x == target) {
                        return err(404, "no such secret");
                    }
                    if sa.secrets.len() == 1 {
                        return err(
                            409,
                            "the last secret of a service account cannot be deleted",
                        );
                    }
                    sa.secrets.retain(|x| x != target);
                    None
                }
                _ => return err(400, "mode must be create, replace or delete"),
            };
            let out_json = sa_json(id, sa);
            if let Some(sec) = &out {
                s.secrets.push(sec.clone());
            }
            let mut data = out_json;
            if let Some(sec) = out {
                data["attributes"]["client_secret"] = serde_json::json!(sec);
            }
            json(
                200,
                serde_json::json!({"jsonapi": {"version": "1.0"}, "data": data}),
            )
        }
        _ => err(404, "not found"),
    }
}

/// `GET /oauth2/authorize`: checks the request like Snyk does (the
/// authority's rules), "consents" at once (or refuses, with
/// `deny_authorize`), and redirects back with 303 and a single-use code.
fn authorize(st: &Arc<Mutex<State>>, query: &str) -> Resp {
    let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let mut s = st.lock().unwrap();
    let consent = !s.deny_authorize;
    match s.authority.authorize(&q, consent) {
        snykey::dev::sim::Authorized::Redirect(location) => {
            // The code is a secret too: no log may show it.
            if let Some((_, back)) = location.split_once('?') {
                let back: HashMap<String, String> =
                    serde_urlencoded::from_str(back).unwrap_or_default();
                if let Some(code) = back.get("code") {
                    s.secrets.push(code.clone());
                }
            }
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert("location", location.parse().unwrap());
            r
        }
        snykey::dev::sim::Authorized::Refused(refusal) => refusal_answer(&refusal),
    }
}

/// The OAuth error answer of a refusal.
fn refusal_answer(refusal: &Refusal) -> Resp {
    let (status, body) = refusal.answer();
    json(status, body)
}

/// `POST /rest/orgs/{org}/apps/creations` (JSON:API).
fn create_app(
    st: &Arc<Mutex<State>>,
    query: &str,
    auth: Option<&str>,
    ctype: &str,
    body: &[u8],
) -> Resp {
    let mut s = st.lock().unwrap();
    if let Some(r) = rest_refusal(&s, query, auth, true, ctype) {
        return r;
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let attrs = &v["data"]["attributes"];
    let (Some(name), Some(scopes)) = (attrs["name"].as_str(), attrs["scopes"].as_array()) else {
        return jsonapi_error(400, "name and scopes are required");
    };
    let redirects: Vec<String> = attrs["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let client_id = format!(
        "{}-app",
        random_token("")
            .to_lowercase()
            .chars()
            .take(12)
            .collect::<String>()
    );
    let secret = random_token("snyk_app_secret_");
    s.authority.clients.insert(
        client_id.clone(),
        Client {
            secret: Some(secret.clone()),
            redirect_uris: Some(redirects.clone()),
        },
    );
    s.secrets.push(secret.clone());
    s.apps_created += 1;
    json(
        201,
        serde_json::json!({"jsonapi": {"version": "1.0"}, "data": {"type": "app", "id": client_id, "attributes": {
            "name": name, "client_id": client_id, "client_secret": secret, "redirect_uris": redirects, "scopes": scopes, "context": attrs["context"]
        }}}),
    )
}

fn oauth_error(status: u16, error: &str, description: &str) -> Resp {
    json(
        status,
        serde_json::json!({"error": error, "error_description": description}),
    )
}

/// What something in front of Snyk answers (a load balancer when Snyk is
/// unreachable or slow, a proxy's 403/407 page, a WAF, a captive portal's
/// redirect, a bodyless 429): HTML, no OAuth body.
fn gateway_page(status: u16) -> Resp {
    answer(
        status,
        "text/html",
        format!(
            "<html><body><h1>{status}</h1><p>The request was stopped on its way.</p></body></html>"
        ),
    )
}

/// An error from the service makes hyper close the connection without an answer.
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}
impl std::error::Error for Dropped {}

async fn handle(st: Arc<Mutex<State>>, req: Request<Bytes>) -> Result<Resp, Dropped> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let auth = header(&req, "authorization").map(str::to_string);
    let ctype = header(&req, "content-type").unwrap_or("").to_string();
    let gzipped = header(&req, "content-encoding") == Some("gzip");
    let body = req.into_body();
    let rest_delay = path
        .starts_with("/rest/")
        .then(|| {
            let mut s = st.lock().unwrap();
            s.rest_requests += 1;
            s.rest_delay
        })
        .flatten();
    if let Some(d) = rest_delay {
        tokio::time::sleep(d).await;
    }
    match (method.as_str(), path.as_str()) {
        ("POST", "/oauth2/token") => {
            if !ctype.starts_with("application/x-www-form-urlencoded") {
                return Ok(oauth_error(
                    400,
                    "invalid_request",
                    "token requests must be form-encoded",
                ));
            }
            let form: HashMap<String, String> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            token(st, form).await
        }
        ("POST", "/oauth2/revoke") => {
            let form: HashMap<String, String> =
                serde_urlencoded::from_bytes(&body).unwrap_or_default();
            let mut s = st.lock().unwrap();
            if let Some(t) = form.get("token") {
                s.authority.revoke(t);
            }
            s.revocations += 1;
            Ok(json(200, serde_json::json!({})))
        }
        ("GET", "/oauth2/authorize") => Ok(authorize(&st, &query)),
        (m, p) if p.starts_with("/rest/") && p.contains("/service_accounts") => Ok(
            service_accounts(&st, m, p, &query, auth.as_deref(), &ctype, &body),
        ),
        ("POST", p) if p.starts_with("/rest/orgs/") && p.ends_with("/apps/creations") => {
            Ok(create_app(&st, &query, auth.as_deref(), &ctype, &body))
        }
        (m, p) if p.starts_with("/v1/") => Ok(v1(&st, m, p, &query, auth, gzipped, &body)),
        ("GET", "/rest/self") => {
            let s = st.lock().unwrap();
            let ok = s.authorized(auth.as_deref());
            Ok(if ok {
                json(200, serde_json::json!({"data": {"type": "user"}}))
            } else {
                json(
                    401,
                    serde_json::json!({"errors": [{"status": "401", "detail": "unauthorized"}]}),
                )
            })
        }
        _ => Ok(json(
            404,
            serde_json::json!({"errors": [{"status": "404", "detail": "not found"}]}),
        )),
    }
}

/// Snyk's v1 API as the CLI's `snyk test` of an npm project uses it: a
/// live bearer token is required (401 otherwise, with the body Snyk sends);
/// `org` names the organization.
fn v1(
    st: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    query: &str,
    auth: Option<String>,
    gzipped: bool,
    body: &[u8],
) -> Resp {
    let mut s = st.lock().unwrap();
    let q: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap_or_default();
    let org = q.get("org").cloned().unwrap_or_default();
    let live = s.authorized(auth.as_deref());
    let mut packages = Vec::new();
    let (status, answer) = if !live {
        (
            401,
            serde_json::json!({"code": 401, "error": "Invalid auth token provided", "ok": false}),
        )
    } else if method == "GET" && path.starts_with("/v1/cli-config/feature-flags/") {
        let flag = path.rsplit('/').next().unwrap_or("");
        (
            200,
            serde_json::json!({"ok": false, "userMessage": format!("Org {org} doesn't have '{flag}' feature enabled")}),
        )
    } else if method == "POST" && path == "/v1/test-dep-graph" {
        match dep_graph_packages(gzipped, body) {
            Ok(pkgs) if !org.is_empty() => {
                packages = pkgs;
                (
                    200,
                    serde_json::json!({
                        "result": {"issuesData": {}, "affectedPkgs": {}},
                        "meta": {"org": org, "isPublic": false, "isPrivate": true, "policy": ""}
                    }),
                )
            }
            Ok(_) => (
                400,
                serde_json::json!({"code": 400, "userMessage": "the org query parameter is required"}),
            ),
            Err(why) => (400, serde_json::json!({"code": 400, "userMessage": why})),
        }
    } else {
        (
            404,
            serde_json::json!({"code": 404, "userMessage": "not found"}),
        )
    };
    s.v1_requests.push(V1Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: auth,
        status,
        packages,
    });
    json(status, answer)
}

/// The packages (`name@version`) of a `test-dep-graph` body: gzip'd JSON
/// (as the CLI always sends it) with a `depGraph` in dep-graph schema 1.x.
fn dep_graph_packages(gzipped: bool, body: &[u8]) -> Result<Vec<String>, String> {
    use std::io::Read;
    if !gzipped {
        return Err("the CLI sends its dep graph gzip'd".into());
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut text)
        .map_err(|e| format!("not gzip'd JSON: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let graph = &v["depGraph"];
    if !graph["schemaVersion"]
        .as_str()
        .is_some_and(|s| s.starts_with("1."))
    {
        return Err("depGraph.schemaVersion 1.x is required".into());
    }
    graph["pkgs"]
        .as_array()
        .map(|pkgs| {
            pkgs.iter()
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| "depGraph.pkgs is required".into())
}

async fn token(st: Arc<Mutex<State>>, form: HashMap<String, String>) -> Result<Resp, Dropped> {
    let arrived = Instant::now();
    let sent_token = form.get("refresh_token").cloned();
    let (fault, delay) = {
        let mut s = st.lock().unwrap();
        s.token_requests += 1;
        let mut f = s.faults.pop_front();
        if f.is_none() {
            if let Some(code) = s.fail_all {
                f = Some(Fault::Status(code));
            } else if s.fault_rate > 0.0 && rand::random::<f64>() < s.fault_rate {
                f = Some(if rand::random::<bool>() {
                    Fault::Status(503)
                } else {
                    Fault::RateLimit(1)
                });
            } else if s.late_answer_rate > 0.0 && rand::random::<f64>() < s.late_answer_rate {
                f = Some(Fault::AnswerLater(s.late_answer));
            }
        }
        (f, s.delay_all)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut drop_after = false;
    let mut answer_after = None;
    let mut no_refresh_token = false;
    let mut gateway_after = None;
    match fault {
        Some(Fault::Status(code)) => {
            return Ok(oauth_error(code, "server_error", "injected failure"));
        }
        Some(Fault::RateLimit(secs)) => {
            let mut r = oauth_error(429, "rate_limited", "too many requests");
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
            return Ok(r);
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::DropAfterProcessing) => drop_after = true,
        Some(Fault::AnswerLater(d)) => answer_after = Some(d),
        Some(Fault::NoRefreshToken) => no_refresh_token = true,
        Some(Fault::Gateway(code)) => return Ok(gateway_page(code)),
        Some(Fault::GatewayAfterProcessing(code)) => gateway_after = Some(gateway_page(code)),
        Some(Fault::PageAfterProcessing(code, ctype, body)) => {
            gateway_after = Some(answer(code, ctype, body))
        }
        None => {}
    }
    let answer = match grant(
        &st,
        form,
        drop_after || gateway_after.is_some(),
        no_refresh_token,
    ) {
        Err(Dropped) if gateway_after.is_some() => {
            Ok(gateway_after.unwrap_or_else(|| gateway_page(502)))
        }
        other => other,
    };
    if let Some(d) = answer_after {
        tokio::time::sleep(d).await;
    }
    let mut s = st.lock().unwrap();
    if let (Some(limit), Some(rt)) = (s.client_timeout, sent_token) {
        if arrived.elapsed() >= limit {
            let consumed_here = s
                .authority
                .refresh
                .get(&rt)
                .is_some_and(|r| r.grant.as_ref().is_some_and(|g| g.at >= arrived));
            if consumed_here {
                // This request consumed it.
                s.answer_lost.insert(rt);
            }
        }
    }
    drop(s);
    answer
}

/// Processes one token request (faults before processing are handled by the
/// caller): the authority's rules, with the fake's accounting around them.
fn grant(
    st: &Arc<Mutex<State>>,
    form: HashMap<String, String>,
    drop_after: bool,
    no_refresh_token: bool,
) -> Result<Resp, Dropped> {
    let mut s = st.lock().unwrap();
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let Some(client) = s.authority.clients.get(&client_id).cloned() else {
        s.bad_client_auth += 1;
        return Ok(refusal_answer(&Refusal::BadClient));
    };
    let secret_given = form.get("client_secret").map(String::as_str);
    let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
    match grant_type {
        "refresh_token" => {
            if let Err(r) = s.authority.authenticate(&client_id, secret_given) {
                s.count_auth_refusal(&r);
                return Ok(refusal_answer(&r));
            }
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            let issued = match s.authority.refresh(&client_id, &rt) {
                Ok(issued) => issued,
                Err(refusal @ Refusal::AlreadyUsed { .. }) => {
                    let lost = s.answer_lost.remove(&rt);
                    let grant = s.authority.refresh.get(&rt).and_then(|r| r.grant.clone());
                    s.resends.push(Resend {
                        client_id: client_id.clone(),
                        token: rt.clone(),
                        grant,
                        lost_answer_retry: lost,
                        at: Instant::now(),
                    });
                    // Only the first retry after a lost answer is the permitted one.
                    if lost {
                        s.lost_answer_retries += 1;
                    } else {
                        s.replays += 1;
                    }
                    return Ok(refusal_answer(&refusal));
                }
                Err(refusal) => return Ok(refusal_answer(&refusal)),
            };
            s.remember(&issued);
            if drop_after {
                s.answer_lost.insert(rt);
            }
            s.refresh_grants += 1;
            s.grant_times.push(SystemTime::now());
            if drop_after {
                return Err(Dropped);
            }
            let mut body = issued.body();
            if let Some(v) = s.expires_in_json.clone() {
                body["expires_in"] = v;
            }
            if no_refresh_token {
                body.as_object_mut().unwrap().remove("refresh_token");
                body.as_object_mut().unwrap().remove("refresh_expires_in");
            }
            Ok(json(200, body))
        }
        "client_credentials" => {
            let ok = if let Some(assertion) = form.get("client_assertion") {
                let token_url = format!("{}/oauth2/token", s.base_url);
                match verify_assertion(
                    &mut s,
                    &client_id,
                    &token_url,
                    form.get("client_assertion_type").map(String::as_str),
                    assertion,
                ) {
                    Ok(()) => true,
                    Err(why) => {
                        return Ok(oauth_error(
                            401,
                            "invalid_client",
                            &format!("authentication failed: {why}"),
                        ));
                    }
                }
            } else {
                match secret_given {
                    Some(given) => {
                        client.secret.as_deref() == Some(given)
                            || s.service_accounts.values().any(|sa| {
                                sa.client_id == client_id && sa.secrets.iter().any(|x| x == given)
                            })
                    }
                    None => false,
                }
            };
            if !ok {
                s.bad_client_auth += 1;
                return Ok(refusal_answer(&Refusal::BadClient));
            }
            let issued = s.authority.client_credentials(&client_id);
            s.remember(&issued);
            s.client_credentials_grants += 1;
            if drop_after {
                return Err(Dropped);
            }
            Ok(json(200, issued.body()))
        }
        "authorization_code" => {
            if let Err(r) = s.authority.authenticate(&client_id, secret_given) {
                s.count_auth_refusal(&r);
                return Ok(refusal_answer(&r));
            }
            match s.authority.exchange_code(&client_id, &form) {
                Ok(issued) => {
                    s.remember(&issued);
                    s.authorization_code_grants += 1;
                    Ok(json(200, issued.body()))
                }
                Err(refusal) => {
                    if refusal == Refusal::CodeAlreadyUsed {
                        s.code_replays += 1;
                    }
                    Ok(refusal_answer(&refusal))
                }
            }
        }
        other => Ok(oauth_error(
            400,
            "unsupported_grant_type",
            &format!("grant_type {other:?} is not supported"),
        )),
    }
}

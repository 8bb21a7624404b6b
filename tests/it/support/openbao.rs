//! An in-process server of the OpenBao HTTP API as documented, for the parts
//! snykey uses. No OpenBao or Vault binary installs on these machines, and
//! RustyVault omits the `request_id` envelope field vaultrs 0.8 requires, so
//! this server is the stand-in; the same store tests also run against a real
//! OpenBao when `SNYKEY_TEST_BAO_ADDR`/`SNYKEY_TEST_BAO_TOKEN` are set.
//!
//! * Full response envelopes: `request_id`, `lease_id`, `renewable`,
//!   `lease_duration`, `data`, `wrap_info`, `warnings`, `auth`.
//! * KV v2 (versions, `options.cas` with 400 on mismatch, `metadata`, soft
//!   delete of the latest version vs metadata delete of all, `destroy` of
//!   versions, `cas_required` set through `metadata`) and KV v1.
//! * `sys/seal-status`, `sys/health`; sealed: 503 `{"errors":["Vault is sealed"]}`.
//! * Tokens with real TTLs: `auth/token/lookup-self`, `auth/token/renew-self`;
//!   an unknown, expired or revoked token gets 403 `permission denied`.
//! * `auth/approle/login`, `auth/kubernetes/login`.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Token {
    pub ttl: Duration,
    pub expires: Option<Instant>,
    pub renewable: bool,
    pub policies: Vec<String>,
    pub accessor: String,
}

#[derive(Debug, Clone)]
pub struct Version {
    pub data: Value,
    pub created: String,
    pub deleted: bool,
    /// Destroyed (`kv destroy`): its data is gone for good.
    pub destroyed: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub sealed: bool,
    pub tokens: HashMap<String, Token>,
    /// AppRole: role_id → secret_id, and the TTL of tokens it issues.
    pub approles: HashMap<String, String>,
    pub approle_ttl: Duration,
    /// Kubernetes: role → accepted service-account JWT.
    pub k8s_roles: HashMap<String, String>,
    /// mount → KV version.
    pub mounts: HashMap<String, u8>,
    pub kv2: BTreeMap<(String, String), Vec<Version>>,
    /// KV v2 paths whose metadata says `cas_required`.
    pub cas_required: std::collections::BTreeSet<(String, String)>,
    pub kv1: BTreeMap<(String, String), Value>,
    /// While set, KV writes fail with 500 (reads still work).
    pub fail_writes: bool,
    pub requests: u64,
    pub renewals: u64,
    pub logins: u64,
    pub cas_conflicts: u64,
    pub denied: u64,
}

#[derive(Clone)]
pub struct FakeBao {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub root_token: String,
    stop: Arc<super::serve::Stop>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

fn request_id() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    let h: String = (0..16)
        .map(|_| format!("{:02x}", r.random::<u8>()))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn new_token() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    let h: String = (0..24)
        .map(|_| (b'a' + r.random_range(0..26u8)) as char)
        .collect();
    format!("s.{h}")
}

impl FakeBao {
    /// Starts a server with mounts `kv` (KV v2) and `kv1` (KV v1) and a root token.
    pub fn start() -> FakeBao {
        let root_token = new_token();
        let mut st = State {
            approle_ttl: Duration::from_secs(3600),
            ..Default::default()
        };
        st.tokens.insert(
            root_token.clone(),
            Token {
                ttl: Duration::ZERO,
                expires: None,
                renewable: false,
                policies: vec!["root".into()],
                accessor: "root-accessor".into(),
            },
        );
        st.mounts.insert("kv".into(), 2);
        st.mounts.insert("kv1".into(), 1);
        let state = Arc::new(Mutex::new(st));
        let st = Arc::clone(&state);
        let (addr, stop) = super::serve::spawn(move |req| {
            let st = Arc::clone(&st);
            async move { Ok::<_, std::convert::Infallible>(handle(st, req).await) }
        });
        FakeBao {
            addr,
            state,
            root_token,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn seal(&self) {
        self.lock().sealed = true;
    }

    pub fn unseal(&self) {
        self.lock().sealed = false;
    }

    /// A renewable token with this TTL.
    pub fn issue_token(&self, ttl: Duration) -> String {
        let t = new_token();
        self.lock().tokens.insert(
            t.clone(),
            Token {
                ttl,
                expires: Some(Instant::now() + ttl),
                renewable: true,
                policies: vec!["snykey".into()],
                accessor: new_token(),
            },
        );
        t
    }

    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// Revokes every token except the root token.
    pub fn revoke_all_but_root(&self) {
        let root = self.root_token.clone();
        self.lock().tokens.retain(|k, _| *k == root);
    }

    pub fn add_approle(&self, role_id: &str, secret_id: &str, ttl: Duration) {
        let mut s = self.lock();
        s.approles.insert(role_id.into(), secret_id.into());
        s.approle_ttl = ttl;
    }

    /// The current data of a KV v2 secret (None if absent or its latest version is deleted).
    pub fn kv2_data(&self, mount: &str, path: &str) -> Option<Value> {
        let s = self.lock();
        s.kv2
            .get(&(mount.into(), path.into()))
            .and_then(|v| v.last())
            .filter(|v| !v.deleted)
            .map(|v| v.data.clone())
    }

    pub fn kv2_versions(&self, mount: &str, path: &str) -> usize {
        self.lock()
            .kv2
            .get(&(mount.into(), path.into()))
            .map(|v| v.len())
            .unwrap_or(0)
    }

    pub fn kv1_data(&self, mount: &str, path: &str) -> Option<Value> {
        self.lock().kv1.get(&(mount.into(), path.into())).cloned()
    }

    /// Writes a secret directly (as another tool, e.g. the seed service, would).
    pub fn write_kv2(&self, mount: &str, path: &str, data: Value) {
        self.lock()
            .kv2
            .entry((mount.into(), path.into()))
            .or_default()
            .push(Version {
                data,
                created: now_rfc3339(),
                deleted: false,
                destroyed: false,
            });
    }

    /// Every version of a KV v2 secret: its data, or None if deleted or destroyed.
    pub fn kv2_history(&self, mount: &str, path: &str) -> Vec<Option<Value>> {
        self.lock()
            .kv2
            .get(&(mount.into(), path.into()))
            .map(|vs| {
                vs.iter()
                    .map(|v| (!v.deleted && !v.destroyed).then(|| v.data.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Does the metadata of this KV v2 path say `cas_required`?
    pub fn kv2_cas_required(&self, mount: &str, path: &str) -> bool {
        self.lock()
            .cas_required
            .contains(&(mount.into(), path.into()))
    }

    pub fn write_kv1(&self, mount: &str, path: &str, data: Value) {
        self.lock().kv1.insert((mount.into(), path.into()), data);
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn errors(status: u16, msgs: &[&str]) -> Resp {
    reply(status, json!({ "errors": msgs }))
}

/// The documented response envelope.
fn envelope(data: Value, auth: Value) -> Resp {
    reply(
        200,
        json!({
            "request_id": request_id(), "lease_id": "", "renewable": false, "lease_duration": 0,
            "data": data, "wrap_info": null, "warnings": null, "auth": auth, "mount_type": ""
        }),
    )
}

fn auth_info(token: &str, t: &Token) -> Value {
    json!({
        "client_token": token, "accessor": t.accessor, "policies": t.policies, "token_policies": t.policies,
        "metadata": null, "lease_duration": t.ttl.as_secs(), "renewable": t.renewable,
        "entity_id": "", "token_type": "service", "orphan": true, "mfa_requirement": null, "num_uses": 0
    })
}

async fn handle(st: Arc<Mutex<State>>, req: Request<Incoming>) -> Resp {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let token = req
        .headers()
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let mut s = st.lock().unwrap();
    s.requests += 1;
    let list = method == "LIST" || (method == "GET" && query.split('&').any(|p| p == "list=true"));

    match path.as_str() {
        "/v1/sys/seal-status" => {
            return reply(
                200,
                json!({"type": "shamir", "initialized": true, "sealed": s.sealed, "t": 1, "n": 1, "progress": 0, "nonce": "", "version": "2.1.0", "build_date": "2024-11-29T00:00:00Z", "migration": false, "recovery_seal": false, "storage_type": "inmem"}),
            );
        }
        "/v1/sys/health" => {
            let body = json!({"initialized": true, "sealed": s.sealed, "standby": false, "performance_standby": false, "replication_performance_mode": "disabled", "replication_dr_mode": "disabled", "server_time_utc": 0, "version": "2.1.0", "cluster_name": "fake", "cluster_id": "fake"});
            return reply(if s.sealed { 503 } else { 200 }, body);
        }
        _ => {}
    }
    if s.sealed {
        return errors(503, &["Vault is sealed"]);
    }
    // Logins need no token.
    match path.as_str() {
        "/v1/auth/approle/login" => {
            let role_id = body["role_id"].as_str().unwrap_or("");
            let secret_id = body["secret_id"].as_str().unwrap_or("");
            if s.approles.get(role_id).map(String::as_str) != Some(secret_id)
                || secret_id.is_empty()
            {
                s.denied += 1;
                return errors(400, &["invalid role or secret ID"]);
            }
            s.logins += 1;
            let t = Token {
                ttl: s.approle_ttl,
                expires: Some(Instant::now() + s.approle_ttl),
                renewable: true,
                policies: vec!["snykey".into()],
                accessor: new_token(),
            };
            let tok = new_token();
            let info = auth_info(&tok, &t);
            s.tokens.insert(tok, t);
            return envelope(Value::Null, info);
        }
        "/v1/auth/kubernetes/login" => {
            let role = body["role"].as_str().unwrap_or("");
            let jwt = body["jwt"].as_str().unwrap_or("");
            if s.k8s_roles.get(role).map(String::as_str) != Some(jwt) || jwt.is_empty() {
                s.denied += 1;
                return errors(403, &["permission denied"]);
            }
            s.logins += 1;
            let t = Token {
                ttl: Duration::from_secs(3600),
                expires: Some(Instant::now() + Duration::from_secs(3600)),
                renewable: true,
                policies: vec!["snykey".into()],
                accessor: new_token(),
            };
            let tok = new_token();
            let info = auth_info(&tok, &t);
            s.tokens.insert(tok, t);
            return envelope(Value::Null, info);
        }
        _ => {}
    }
    // Everything else needs a live token.
    let now = Instant::now();
    let live = s
        .tokens
        .get(&token)
        .filter(|t| t.expires.is_none_or(|e| e > now))
        .cloned();
    let Some(tok) = live else {
        s.denied += 1;
        return errors(403, &["permission denied"]);
    };
    match path.as_str() {
        "/v1/auth/token/lookup-self" => {
            let ttl = tok
                .expires
                .map(|e| e.saturating_duration_since(now).as_secs())
                .unwrap_or(0);
            return envelope(
                json!({
                    "accessor": tok.accessor, "creation_time": 0, "creation_ttl": tok.ttl.as_secs(), "display_name": "token",
                    "entity_id": "", "expire_time": tok.expires.map(|_| now_rfc3339()), "explicit_max_ttl": 0, "id": token, "identity_policies": null,
                    "issue_time": null, "meta": null, "num_uses": 0, "orphan": true, "path": "auth/token/create",
                    "policies": tok.policies, "renewable": tok.renewable, "role": null, "ttl": ttl, "type": "service"
                }),
                Value::Null,
            );
        }
        "/v1/auth/token/renew-self" => {
            if !tok.renewable {
                return errors(400, &["lease is not renewable"]);
            }
            s.renewals += 1;
            let t = s.tokens.get_mut(&token).unwrap();
            t.expires = Some(now + t.ttl);
            let info = auth_info(&token, t);
            return envelope(Value::Null, info);
        }
        _ => {}
    }
    let rest = path.strip_prefix("/v1/").unwrap_or("");
    let (mount, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(version) = s.mounts.get(mount).copied() else {
        return errors(
            404,
            &[&format!(
                "no handler for route \"{rest}\". route entry not found."
            )],
        );
    };
    let mount = mount.to_string();
    if s.fail_writes && matches!(method.as_str(), "POST" | "PUT") {
        return errors(500, &["internal error: storage write failed"]);
    }
    if version == 1 {
        return kv1(&mut s, &method, list, &mount, sub, body);
    }
    if let Some(p) = sub.strip_prefix("data/") {
        return kv2_data(&mut s, &method, &query, &mount, p, body);
    }
    if let Some(p) = sub.strip_prefix("destroy/") {
        return kv2_destroy(&mut s, &method, &mount, p, body);
    }
    if let Some(p) = sub
        .strip_prefix("metadata/")
        .or_else(|| if sub == "metadata" { Some("") } else { None })
    {
        return kv2_metadata(&mut s, &method, list, &mount, p, body);
    }
    errors(404, &[])
}

fn version_meta(v: &Version, n: usize) -> Value {
    json!({"created_time": v.created, "custom_metadata": null, "deletion_time": if v.deleted { now_rfc3339() } else { String::new() }, "destroyed": v.destroyed, "version": n})
}

/// `POST {mount}/destroy/{path}` with `{"versions": [...]}`.
fn kv2_destroy(s: &mut State, method: &str, mount: &str, path: &str, body: Value) -> Resp {
    if !matches!(method, "POST" | "PUT") {
        return errors(405, &["unsupported operation"]);
    }
    let Some(wanted) = body.get("versions").and_then(Value::as_array) else {
        return errors(400, &["no versions provided"]);
    };
    if let Some(versions) = s.kv2.get_mut(&(mount.to_string(), path.to_string())) {
        for n in wanted.iter().filter_map(Value::as_u64) {
            if let Some(v) = versions.get_mut((n as usize).wrapping_sub(1)) {
                v.destroyed = true;
                v.data = Value::Null;
            }
        }
    }
    reply(204, Value::Null)
}

fn kv2_data(
    s: &mut State,
    method: &str,
    query: &str,
    mount: &str,
    path: &str,
    body: Value,
) -> Resp {
    let key = (mount.to_string(), path.to_string());
    match method {
        "GET" => {
            let want: Option<usize> = query
                .split('&')
                .find_map(|p| p.strip_prefix("version="))
                .and_then(|v| v.parse().ok())
                .filter(|v| *v > 0);
            let Some(versions) = s.kv2.get(&key) else {
                return errors(404, &[]);
            };
            let n = want.unwrap_or(versions.len());
            let Some(v) = versions.get(n.wrapping_sub(1)) else {
                return errors(404, &[]);
            };
            if v.deleted || v.destroyed {
                return reply(
                    404,
                    json!({"request_id": request_id(), "lease_id": "", "renewable": false, "lease_duration": 0, "data": {"data": null, "metadata": version_meta(v, n)}, "wrap_info": null, "warnings": null, "auth": null}),
                );
            }
            envelope(
                json!({"data": v.data, "metadata": version_meta(v, n)}),
                Value::Null,
            )
        }
        "POST" | "PUT" => {
            let Some(data) = body.get("data").filter(|d| d.is_object()).cloned() else {
                return errors(400, &["no data provided"]);
            };
            let current = s.kv2.get(&key).map(|v| v.len()).unwrap_or(0);
            let cas = body
                .get("options")
                .and_then(|o| o.get("cas"))
                .and_then(Value::as_u64);
            if cas.is_none() && s.cas_required.contains(&key) {
                return errors(400, &["check-and-set parameter required for this call"]);
            }
            if let Some(cas) = cas {
                if cas as usize != current {
                    s.cas_conflicts += 1;
                    return errors(
                        400,
                        &["check-and-set parameter did not match the current version"],
                    );
                }
            }
            let versions = s.kv2.entry(key).or_default();
            versions.push(Version {
                data,
                created: now_rfc3339(),
                deleted: false,
                destroyed: false,
            });
            let n = versions.len();
            envelope(version_meta(&versions[n - 1], n), Value::Null)
        }
        "DELETE" => {
            if let Some(v) = s.kv2.get_mut(&key).and_then(|v| v.last_mut()) {
                v.deleted = true;
            }
            reply(204, Value::Null)
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

fn children<'a>(keys: impl Iterator<Item = &'a String>, dir: &str) -> Vec<String> {
    let mut out: Vec<String> = keys
        .filter_map(|k| k.strip_prefix(dir))
        .map(|rest| match rest.split_once('/') {
            Some((d, _)) => format!("{d}/"),
            None => rest.to_string(),
        })
        .filter(|k| !k.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn kv2_metadata(
    s: &mut State,
    method: &str,
    list: bool,
    mount: &str,
    path: &str,
    body: Value,
) -> Resp {
    if list {
        let dir = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let keys = children(
            s.kv2
                .iter()
                .filter(|((m, _), v)| m == mount && v.iter().any(|_| true))
                .map(|((_, p), _)| p),
            &dir,
        );
        if keys.is_empty() {
            return errors(404, &[]);
        }
        return envelope(json!({ "keys": keys }), Value::Null);
    }
    let key = (mount.to_string(), path.to_string());
    match method {
        "GET" => {
            let Some(versions) = s.kv2.get(&key) else {
                return errors(404, &[]);
            };
            let mut vs = serde_json::Map::new();
            for (i, v) in versions.iter().enumerate() {
                vs.insert(
                    (i + 1).to_string(),
                    json!({"created_time": v.created, "deletion_time": "", "destroyed": v.destroyed}),
                );
            }
            let cas_required = s.cas_required.contains(&key);
            envelope(
                json!({"cas_required": cas_required, "created_time": versions[0].created, "current_version": versions.len(), "delete_version_after": "0s",
                       "max_versions": 0, "oldest_version": 1, "updated_time": versions[versions.len() - 1].created, "custom_metadata": null, "versions": vs}),
                Value::Null,
            )
        }
        "POST" | "PUT" => {
            match body.get("cas_required").and_then(Value::as_bool) {
                Some(true) => {
                    s.cas_required.insert(key);
                }
                Some(false) => {
                    s.cas_required.remove(&key);
                }
                None => {}
            }
            reply(204, Value::Null)
        }
        "DELETE" => {
            s.cas_required.remove(&key);
            s.kv2.remove(&key);
            reply(204, Value::Null)
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

fn kv1(s: &mut State, method: &str, list: bool, mount: &str, path: &str, body: Value) -> Resp {
    if list {
        let dir = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let keys = children(
            s.kv1.keys().filter(|(m, _)| m == mount).map(|(_, p)| p),
            &dir,
        );
        if keys.is_empty() {
            return errors(404, &[]);
        }
        return envelope(json!({ "keys": keys }), Value::Null);
    }
    let key = (mount.to_string(), path.to_string());
    match method {
        "GET" => match s.kv1.get(&key) {
            Some(v) => envelope(v.clone(), Value::Null),
            None => errors(404, &[]),
        },
        "POST" | "PUT" => {
            if !body.is_object() {
                return errors(400, &["no data provided"]);
            }
            s.kv1.insert(key, body);
            reply(204, Value::Null)
        }
        "DELETE" => {
            s.kv1.remove(&key);
            reply(204, Value::Null)
        }
        _ => errors(405, &["unsupported operation"]),
    }
}

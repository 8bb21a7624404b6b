//! The simulated Snyk's HTTP front, on a loopback address: the OAuth
//! endpoints the agent and a browser use, served from one
//! [`Authority`](super::sim::Authority).
//!
//! * `POST /oauth2/token` — form-encoded grants (`refresh_token`,
//!   `authorization_code`, `client_credentials`), answered with Snyk's JSON
//!   or an OAuth error body.
//! * `POST /oauth2/revoke` — revokes a refresh token.
//! * `GET /oauth2/authorize` — consents at once and redirects (303) back to
//!   the client's callback with a single-use code, so a browser or
//!   `curl -sL URL` completes a `snykey login`.
//! * `GET /rest/self` — 200 for an access token it issued and still
//!   accepts (`Authorization: Bearer …`), 401 otherwise.
//!
//! Everything else is a 404 saying what this server is. It never logs a
//! token, a code or a secret.

use super::sim::{Authority, Authorized};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode, body::Incoming};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Resp = Response<Full<Bytes>>;

/// The largest request body it reads (a token request is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// Every answer says what it comes from, so nobody mistakes it for Snyk.
pub const SIMULATED_HEADER: &str = "x-snykey-simulated-snyk";

/// A running simulated Snyk.
pub struct SimulatedSnyk {
    pub addr: SocketAddr,
    pub authority: Arc<Mutex<Authority>>,
    task: tokio::task::JoinHandle<()>,
}

impl SimulatedSnyk {
    /// Serves `listener` (which must be bound to a loopback address) until
    /// `shutdown` turns true.
    pub fn serve(
        listener: tokio::net::TcpListener,
        authority: Authority,
        shutdown: watch::Receiver<bool>,
    ) -> Result<SimulatedSnyk, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "the simulated Snyk listens on loopback addresses only, not {addr}"
            ));
        }
        let authority = Arc::new(Mutex::new(authority));
        let shared = Arc::clone(&authority);
        let task = crate::api::serve_tcp(listener, shutdown, move |req| {
            let authority = Arc::clone(&shared);
            async move { handle(&authority, req).await }
        });
        Ok(SimulatedSnyk {
            addr,
            authority,
            task,
        })
    }

    /// Its base URL as the agent and the Snyk CLI are given it: `localhost`
    /// rather than `127.0.0.1`, because the Snyk CLI switches any other
    /// `http://` host to https.
    pub fn url(&self) -> String {
        format!("http://localhost:{}", self.addr.port())
    }

    /// Waits for the server to stop (after `shutdown`).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

fn lock(a: &Mutex<Authority>) -> std::sync::MutexGuard<'_, Authority> {
    a.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn handle(authority: &Mutex<Authority>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let form_encoded = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(
                413,
                serde_json::json!({"error": "invalid_request", "error_description": "request body too large"}),
            );
        }
    };
    let form =
        || -> HashMap<String, String> { serde_urlencoded::from_bytes(&body).unwrap_or_default() };
    match (method.as_str(), path.as_str()) {
        ("POST", "/oauth2/token") if !form_encoded => json(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "token requests must be form-encoded"}),
        ),
        ("POST", "/oauth2/token") => token(authority, &form()),
        ("POST", "/oauth2/revoke") => {
            if let Some(t) = form().get("token") {
                lock(authority).revoke(t);
            }
            json(200, serde_json::json!({}))
        }
        ("GET", "/oauth2/authorize") => match lock(authority).authorize(&query, true) {
            Authorized::Redirect(location) => redirect(&location),
            Authorized::Refused(refusal) => {
                let (status, body) = refusal.answer();
                json(status, body)
            }
        },
        ("GET", "/rest/self") => rest_self(authority, bearer.as_deref()),
        _ => json(
            404,
            serde_json::json!({"errors": [{"status": "404", "detail": "this is snykey dev's simulated Snyk: it serves /oauth2/token, /oauth2/revoke, /oauth2/authorize and /rest/self only"}]}),
        ),
    }
}

/// `POST /oauth2/token` (form-encoded): Snyk's JSON grant or an OAuth error body.
fn token(authority: &Mutex<Authority>, form: &HashMap<String, String>) -> Resp {
    let answer = lock(authority).token(form);
    match answer {
        Ok(issued) => json(200, issued.body()),
        Err(refusal) => {
            let (status, body) = refusal.answer();
            json(status, body)
        }
    }
}

/// `GET /rest/self`: 200 for an access token it issued and still accepts.
fn rest_self(authority: &Mutex<Authority>, bearer: Option<&str>) -> Resp {
    let ok = bearer.is_some_and(|t| lock(authority).access_token_valid(t));
    if ok {
        json(
            200,
            serde_json::json!({"data": {"type": "user", "attributes": {"name": "snykey dev (simulated Snyk)"}}}),
        )
    } else {
        json(
            401,
            serde_json::json!({"errors": [{"status": "401", "detail": "unauthorized: not an access token this simulated Snyk issued, or expired"}]}),
        )
    }
}

fn json(status: u16, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        SIMULATED_HEADER,
        hyper::header::HeaderValue::from_static("snykey dev"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn redirect(location: &str) -> Resp {
    let mut r = json(303, serde_json::json!({}));
    match hyper::header::HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(hyper::header::LOCATION, v);
            r
        }
        Err(_) => json(
            400,
            serde_json::json!({"error": "invalid_request", "error_description": "redirect_uri is not a valid URL"}),
        ),
    }
}

//! A pass-through proxy in front of a real OpenBao (`support::bao`), for the
//! faults a real server will not produce on demand:
//!
//! * `fail_writes`: KV writes answer 500 without reaching OpenBao (reads
//!   still work) — a storage backend refusing writes;
//! * `fail_writes_after_apply`: KV writes reach OpenBao and are applied, then
//!   the answer is replaced by a 500 — the caller cannot know its write
//!   landed.
//!
//! Everything else is forwarded unchanged, so the answers agents see are the
//! real server's. (The in-process OpenBao API server that stood here before
//! is gone: every behaviour it imitated now comes from the real one.)

#![allow(dead_code)]

use super::serve::{Resp, json};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Faults {
    pub fail_writes: bool,
    pub fail_writes_after_apply: bool,
    /// Requests forwarded, and KV writes answered with an injected 500.
    pub forwarded: u64,
    pub writes_failed: u64,
}

#[derive(Clone)]
pub struct BaoProxy {
    pub addr: SocketAddr,
    pub faults: Arc<Mutex<Faults>>,
    _stop: Arc<super::serve::Stop>,
}

fn is_kv_write(method: &hyper::Method, path: &str) -> bool {
    matches!(method.as_str(), "POST" | "PUT")
        && !path.starts_with("/v1/sys/")
        && !path.starts_with("/v1/auth/")
}

fn injected() -> Resp {
    json(
        500,
        serde_json::json!({"errors": ["internal error: storage write failed (injected by the test proxy)"]}),
    )
}

impl BaoProxy {
    /// Proxies to `upstream` (a plain-HTTP OpenBao address).
    pub fn start(upstream: &str) -> BaoProxy {
        let faults = Arc::new(Mutex::new(Faults::default()));
        let f = Arc::clone(&faults);
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (addr, stop) = super::serve::spawn(move |req: hyper::Request<Bytes>| {
            let (f, upstream, client) = (Arc::clone(&f), upstream.clone(), client.clone());
            async move {
                let method = req.method().clone();
                let path_q = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let path = req.uri().path().to_string();
                let mut headers = req.headers().clone();
                headers.remove("host");
                let body = req.into_body();
                let (before, after) = {
                    let mut s = f.lock().unwrap();
                    s.forwarded += 1;
                    let w = is_kv_write(&method, &path);
                    (w && s.fail_writes, w && s.fail_writes_after_apply)
                };
                if before {
                    f.lock().unwrap().writes_failed += 1;
                    return Ok::<_, String>(injected());
                }
                let m = reqwest::Method::from_bytes(method.as_str().as_bytes())
                    .map_err(|e| e.to_string())?;
                let up = client
                    .request(m, format!("{upstream}{path_q}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = up.status().as_u16();
                let ctype = up.headers().get("content-type").cloned();
                let bytes = up.bytes().await.map_err(|e| e.to_string())?;
                if after {
                    f.lock().unwrap().writes_failed += 1;
                    return Ok(injected());
                }
                let mut r = Response::new(Full::new(bytes));
                *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                if let Some(c) = ctype {
                    r.headers_mut().insert("content-type", c);
                }
                Ok(r)
            }
        });
        BaoProxy {
            addr,
            faults,
            _stop: stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap()
    }
}

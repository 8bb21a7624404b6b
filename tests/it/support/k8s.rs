//! A stand-in for the Kubernetes API server's TokenReview endpoint
//! (`POST /apis/authentication.k8s.io/v1/tokenreviews`), which real OpenBao's
//! Kubernetes auth method calls to check a pod's service-account JWT.
//!
//! This is the ONLY fake on the OpenBao Kubernetes-auth path: the agent logs
//! in to a real OpenBao (`support::bao`), and OpenBao asks this endpoint
//! whether the JWT is valid, exactly as it would ask a cluster. It accepts
//! one JWT (the one [`FakeK8s::start`] makes) for one service account, and
//! only when OpenBao presents [`REVIEWER_JWT`] as its own credential.

#![allow(dead_code)]

use super::serve::{Resp, header, json};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What OpenBao is configured to send as its own bearer token.
pub const REVIEWER_JWT: &str = "reviewer-jwt-for-tests";

#[derive(Clone)]
pub struct FakeK8s {
    pub url: String,
    /// The service-account JWT the fake accepts (a pod's projected token).
    pub jwt: String,
    pub namespace: String,
    pub service_account: String,
    /// Reviews answered, and how many said "authenticated".
    pub reviews: Arc<AtomicU64>,
    pub accepted: Arc<AtomicU64>,
    /// While false, every review says "not authenticated" (a revoked SA).
    pub valid: Arc<Mutex<bool>>,
    _stop: Arc<super::serve::Stop>,
}

/// An unsigned-in-spirit JWT with the claims Kubernetes puts in a
/// service-account token. OpenBao does not check its signature (no keys are
/// configured): the TokenReview answer is what vouches for it.
fn sa_jwt(namespace: &str, sa: &str, uid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "RS256", "kid": "test", "typ": "JWT"});
    let claims = json!({
        "iss": "kubernetes/serviceaccount",
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        "aud": ["https://kubernetes.default.svc"],
        "iat": now, "nbf": now, "exp": now + 3600,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uid,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": uid}},
    });
    let sig: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// What the fake checks a review against, and counts.
struct Reviewer {
    jwt: String,
    uid: &'static str,
    namespace: String,
    service_account: String,
    reviews: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    valid: Arc<Mutex<bool>>,
}

impl Reviewer {
    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`, as the API server
    /// answers it.
    fn review(&self, req: &hyper::Request<bytes::Bytes>) -> Resp {
        if req.uri().path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
            return json(404, json!({"kind": "Status", "code": 404}));
        }
        if header(req, "authorization") != Some(&format!("Bearer {REVIEWER_JWT}")) {
            return json(
                401,
                json!({"kind": "Status", "code": 401, "reason": "Unauthorized"}),
            );
        }
        self.reviews.fetch_add(1, Ordering::Relaxed);
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let token = body["spec"]["token"].as_str().unwrap_or("");
        let ok = token == self.jwt && *self.valid.lock().unwrap();
        let mut review = json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": body["spec"].clone(),
            "status": {"authenticated": ok},
        });
        if ok {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            let (ns, sa) = (&self.namespace, &self.service_account);
            review["status"]["user"] = json!({
                "username": format!("system:serviceaccount:{ns}:{sa}"),
                "uid": self.uid,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}")],
            });
            review["status"]["audiences"] = body["spec"]["audiences"].clone();
        } else {
            review["status"]["error"] = json!("invalid bearer token");
        }
        json(201, review)
    }
}

impl FakeK8s {
    pub fn start(namespace: &str, service_account: &str) -> FakeK8s {
        let uid = "5b8a6a1c-0d3f-4f5e-9a51-3c1e0b2a7d11";
        let reviewer = Arc::new(Reviewer {
            jwt: sa_jwt(namespace, service_account, uid),
            uid,
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            reviews: Arc::new(AtomicU64::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
            valid: Arc::new(Mutex::new(true)),
        });
        let r = Arc::clone(&reviewer);
        let (addr, stop) = super::serve::spawn(move |req| {
            let answer = r.review(&req);
            async move { Ok::<_, std::convert::Infallible>(answer) }
        });
        FakeK8s {
            url: format!("http://{addr}"),
            jwt: reviewer.jwt.clone(),
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
            reviews: Arc::clone(&reviewer.reviews),
            accepted: Arc::clone(&reviewer.accepted),
            valid: Arc::clone(&reviewer.valid),
            _stop: stop,
        }
    }
}

//! Prometheus metrics (`GET /metrics`), kept in one process-wide registry.
//!
//! Labels never carry org or client ids: a host with 10 000 credentials would
//! otherwise export 10 000 series per metric. Per-credential detail is in
//! `GET /v1/credentials`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

pub struct Metrics {
    pub refreshes: Family<ResultLabel, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub snyk_latency: Histogram,
    pub backend_errors: Family<BackendLabel, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub credentials: Family<StateLabel, Gauge>,
    pub min_time_to_expiry: Gauge,
    pub denied_peers: Counter,
    registry: Registry,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("snykey");
    let refreshes = Family::<ResultLabel, Counter>::default();
    registry.register(
        "refreshes",
        "Token grants by result (ok, transient, permanent, lost_answer, not_durable)",
        refreshes.clone(),
    );
    let cache_hits = Counter::default();
    registry.register(
        "cache_hits",
        "Token requests answered from the cache",
        cache_hits.clone(),
    );
    let cache_misses = Counter::default();
    registry.register(
        "cache_misses",
        "Token requests that needed a grant at Snyk",
        cache_misses.clone(),
    );
    let snyk_latency = Histogram::new(exponential_buckets(0.005, 2.0, 14));
    registry.register(
        "snyk_request_duration_seconds",
        "Duration of calls to Snyk's OAuth endpoints",
        snyk_latency.clone(),
    );
    let backend_errors = Family::<BackendLabel, Counter>::default();
    registry.register(
        "backend_errors",
        "Errors from the secret store, the token cache and the journal",
        backend_errors.clone(),
    );
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "requests",
        "Agent API requests by route and status",
        requests.clone(),
    );
    let credentials = Family::<StateLabel, Gauge>::default();
    registry.register(
        "credentials",
        "Managed credentials by state",
        credentials.clone(),
    );
    let min_time_to_expiry = Gauge::default();
    registry.register(
        "token_min_time_to_expiry_seconds",
        "Smallest remaining lifetime of any held access token",
        min_time_to_expiry.clone(),
    );
    let denied_peers = Counter::default();
    registry.register(
        "denied_peers",
        "Connections refused by the uid/gid allow-list",
        denied_peers.clone(),
    );
    Metrics {
        refreshes,
        cache_hits,
        cache_misses,
        snyk_latency,
        backend_errors,
        requests,
        credentials,
        min_time_to_expiry,
        denied_peers,
        registry,
    }
});

pub fn get() -> &'static Metrics {
    &METRICS
}

pub fn snyk_call(elapsed: Duration) {
    METRICS.snyk_latency.observe(elapsed.as_secs_f64());
}

pub fn refresh(result: &'static str) {
    METRICS
        .refreshes
        .get_or_create(&ResultLabel { result })
        .inc();
}

pub fn backend_error(backend: &'static str) {
    METRICS
        .backend_errors
        .get_or_create(&BackendLabel { backend })
        .inc();
}

pub fn request(route: &'static str, status: u16) {
    METRICS
        .requests
        .get_or_create(&RequestLabels { route, status })
        .inc();
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

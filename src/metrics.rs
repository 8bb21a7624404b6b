//! Prometheus metrics (`GET /metrics`) in the Prometheus text format 0.0.4,
//! kept in one process-wide registry.
//!
//! Labels never carry org or client ids: a host with 10 000 credentials would
//! otherwise export 10 000 series per metric. Per-credential detail is in
//! `GET /v1/credentials`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

pub struct Metrics {
    pub refreshes: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub snyk_latency: Histogram,
    pub backend_errors: IntCounterVec,
    pub requests: IntCounterVec,
    pub credentials: IntGaugeVec,
    pub min_time_to_expiry: IntGauge,
    pub denied_peers: IntCounter,
    registry: Registry,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("snykey".into()), None)?;
    let refreshes = IntCounterVec::new(
        Opts::new(
            "refreshes_total",
            "Token grants by result (ok, transient, permanent, lost_answer, not_durable)",
        ),
        &["result"],
    )?;
    let cache_hits = IntCounter::new("cache_hits_total", "Token requests answered from the cache")?;
    let cache_misses = IntCounter::new(
        "cache_misses_total",
        "Token requests that needed a grant at Snyk",
    )?;
    let snyk_latency = Histogram::with_opts(
        HistogramOpts::new(
            "snyk_request_duration_seconds",
            "Duration of calls to Snyk's OAuth endpoints",
        )
        .buckets(prometheus::exponential_buckets(0.005, 2.0, 14)?),
    )?;
    let backend_errors = IntCounterVec::new(
        Opts::new(
            "backend_errors_total",
            "Errors from the secret store, the token cache and the journal",
        ),
        &["backend"],
    )?;
    let requests = IntCounterVec::new(
        Opts::new("requests_total", "Agent API requests by route and status"),
        &["route", "status"],
    )?;
    let credentials = IntGaugeVec::new(
        Opts::new("credentials", "Managed credentials by state"),
        &["state"],
    )?;
    let min_time_to_expiry = IntGauge::new(
        "token_min_time_to_expiry_seconds",
        "Smallest remaining lifetime of any access token the agent holds",
    )?;
    let denied_peers = IntCounter::new(
        "denied_peers_total",
        "Requests refused (403): a peer not on the socket allow-list, or not allowed the operation or credential",
    )?;
    registry.register(Box::new(refreshes.clone()))?;
    registry.register(Box::new(cache_hits.clone()))?;
    registry.register(Box::new(cache_misses.clone()))?;
    registry.register(Box::new(snyk_latency.clone()))?;
    registry.register(Box::new(backend_errors.clone()))?;
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(credentials.clone()))?;
    registry.register(Box::new(min_time_to_expiry.clone()))?;
    registry.register(Box::new(denied_peers.clone()))?;
    Ok(Metrics {
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
    })
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    // The names and options above are constants: registration cannot fail
    // unless they are edited into something invalid, which the tests catch.
    #[allow(clippy::expect_used)]
    build().expect("metric definitions are valid")
});

pub fn get() -> &'static Metrics {
    &METRICS
}

pub fn snyk_call(elapsed: Duration) {
    METRICS.snyk_latency.observe(elapsed.as_secs_f64());
}

pub fn refresh(result: &'static str) {
    METRICS.refreshes.with_label_values(&[result]).inc();
}

pub fn backend_error(backend: &'static str) {
    METRICS.backend_errors.with_label_values(&[backend]).inc();
}

pub fn request(route: &'static str, status: u16) {
    let status = status.to_string();
    METRICS
        .requests
        .with_label_values(&[route, status.as_str()])
        .inc();
}

pub fn set_credentials(state: &'static str, n: usize) {
    METRICS
        .credentials
        .with_label_values(&[state])
        .set(n as i64);
}

/// The registry in Prometheus text format.
pub fn render() -> String {
    let mut out = Vec::new();
    if TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .is_err()
    {
        out.clear();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_registry_builds_and_renders() {
        super::refresh("ok");
        let text = super::render();
        assert!(
            text.contains("# TYPE snykey_refreshes_total counter"),
            "{text}"
        );
    }
}

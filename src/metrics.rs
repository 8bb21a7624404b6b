//! Prometheus metrics (`GET /metrics`) in the Prometheus text format 0.0.4,
//! kept in one process-wide registry.
//!
//! Labels never carry org or client ids: a host with 10 000 credentials would
//! otherwise export 10 000 series per metric. Per-credential detail is in
//! `GET /v1/credentials`.
//!
//! The `process_*` metrics are read here, not by the `prometheus` crate's
//! `process` feature (its `ProcessCollector`), for two reasons measured on
//! prometheus 0.14, the newest release:
//!
//! * Its `process_cpu_seconds_total` is an integer counter of whole seconds
//!   (`(utime + stime) / CLK_TCK` in integer arithmetic). An idle agent uses
//!   0.05 % of a core (BENCHMARKS.md: 10 000 credentials between refreshes),
//!   about 1.8 CPU-seconds an hour, and a fresh one had used 0.03 s after a
//!   minute: the crate's counter would read 0 for its first half hour, then
//!   climb in steps of one second, so `rate()` over it shows a flat zero
//!   broken by spikes. The fraction read here is what an operator needs.
//! * The feature pulls in `procfs` and `procfs-core`, and with them a second
//!   `rustix` (0.38, beside the 1.x the tree has) and `linux-raw-sys`: about
//!   15 CPU-seconds more per release build, for seven numbers this module
//!   reads from `/proc/self` in a hundred lines.
//!
//! The names, types and help texts are the ones the crate (and every
//! Prometheus client library) exports; `promtool check metrics` runs over
//! them in the integration tests.

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
    pub forced_refreshes: IntCounterVec,
    pub lifetime_anomalies: IntCounter,
    pub publishes: IntCounterVec,
    pub publish_failing: IntGauge,
    registry: Registry,
}

/// Which build answers: a constant 1 with the version and git commit as labels.
fn register_build_info(registry: &Registry) -> Result<(), prometheus::Error> {
    let build_info = IntGaugeVec::new(
        Opts::new(
            "build_info",
            "The running build: version and git commit (always 1)",
        ),
        &["version", "commit"],
    )?;
    build_info
        .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_COMMIT])
        .set(1);
    registry.register(Box::new(build_info))
}

/// Over 80 lines on purpose: a flat list, one metric after another (its
/// name, help text and labels, then its registration), in the order of
/// [`Metrics`]. Each entry stands alone; split in parts, the list a reader
/// scans for a metric's name would be spread over several functions.
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
    let forced_refreshes = IntCounterVec::new(
        Opts::new(
            "forced_refreshes_total",
            "Forced refreshes (snykey refresh, snykey-helper --refresh) by outcome: minted, or answered with the last forced token (rate_limited)",
        ),
        &["result"],
    )?;
    registry.register(Box::new(forced_refreshes.clone()))?;
    let lifetime_anomalies = IntCounter::new(
        "token_lifetime_anomalies_total",
        "Grants whose token lifetime (expires_in) was below the floor: the token was served as it was, and the credential's refreshes backed off",
    )?;
    registry.register(Box::new(lifetime_anomalies.clone()))?;
    let publishes = IntCounterVec::new(
        Opts::new(
            "publishes_total",
            "Writes of published tokens for jobs ([publish]) by result: written (a newer token), withdrawn (a token with too little validity left, or of a replaced credential), deleted (the credential's delete), unchanged (the path held something as new), failed (retried)",
        ),
        &["result"],
    )?;
    registry.register(Box::new(publishes.clone()))?;
    let publish_failing = IntGauge::new(
        "publish_failing_credentials",
        "Credentials whose last attempt to write their published token failed (the agent retries)",
    )?;
    registry.register(Box::new(publish_failing.clone()))?;
    register_build_info(&registry)?;
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
        forced_refreshes,
        lifetime_anomalies,
        publishes,
        publish_failing,
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

pub fn lifetime_anomaly() {
    METRICS.lifetime_anomalies.inc();
}

/// One published-token write ([`Metrics::publishes`]).
pub fn publish(result: &'static str) {
    METRICS.publishes.with_label_values(&[result]).inc();
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
    let mut text = String::from_utf8(out).unwrap_or_default();
    text.push_str(&process_metrics());
    text
}

/// The standard `process_*` metrics (as Prometheus client libraries export
/// them), read from `/proc/self` at each scrape. Linux only; elsewhere, or
/// when `/proc` is not mounted, the lines are left out.
fn process_metrics() -> String {
    let mut out = String::new();
    stat_metrics(&mut out);
    fd_metrics(&mut out);
    out
}

/// One metric in the text format, with its HELP and TYPE lines.
fn push_metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}

/// CPU time, start time, memory and threads, from `/proc/self/stat`.
fn stat_metrics(out: &mut String) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // man 5 proc: utime is field 14, stime 15, num_threads 20, starttime 22,
    // vsize 23, rss 24; `fields[0]` is field 3.
    let num = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    if ticks > 0 {
        if let (Some(u), Some(s)) = (num(14), num(15)) {
            push_metric(
                out,
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (u + s) / ticks as f64,
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(b), Some(start)) = (boot, num(22)) {
            push_metric(
                out,
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                b + start / ticks as f64,
            );
        }
    }
    if let Some(v) = num(23) {
        push_metric(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            v,
        );
    }
    if let (Some(rss), true) = (num(24), page > 0) {
        push_metric(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * page as f64,
        );
    }
    if let Some(t) = num(20) {
        push_metric(
            out,
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            t,
        );
    }
}

/// Open and maximum file descriptors.
fn fd_metrics(out: &mut String) {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The count includes the descriptor read_dir itself holds open.
        let n = dir.count().saturating_sub(1);
        push_metric(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            n as f64,
        );
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        push_metric(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            lim.rlim_cur as f64,
        );
    }
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
        let build = format!(
            "snykey_build_info{{commit=\"{}\",version=\"{}\"}} 1",
            crate::GIT_COMMIT,
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn process_metrics_describe_this_process() {
        let text = super::render();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
        };
        assert!(value("process_resident_memory_bytes") > 1e5);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = value("process_start_time_seconds");
        assert!(started <= now + 1.0 && started > now - 3600.0, "{started}");
        assert!(value("process_cpu_seconds_total") >= 0.0);
    }
}

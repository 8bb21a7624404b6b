//! `snykey doctor`: Snyk reachable on the configured region, and the local
//! clock against Snyk's.

use super::{Check, fail, pass};
use crate::config::Config;
use std::time::{Duration, SystemTime};

/// The largest clock difference with Snyk that passes: a `private_key_jwt`
/// assertion lives 5 minutes, and expiry times are computed locally.
const MAX_SKEW: Duration = Duration::from_secs(60);

/// Snyk reachable on the configured region (an unauthenticated request to
/// the token endpoint: any HTTP answer will do), and the local clock against
/// its `Date` header.
pub(super) async fn snyk_and_clock(cfg: &Config) -> Vec<Check> {
    let url = format!("{}/oauth2/token", cfg.snyk.api_url);
    let http = match reqwest::Client::builder()
        .timeout(cfg.snyk.timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            return vec![fail(
                "snyk",
                format!("cannot build an HTTP client: {e}"),
                "report this as a bug",
            )];
        }
    };
    let sent = SystemTime::now();
    let resp = match http.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            return vec![fail(
                "snyk",
                crate::snyk::describe_transport(&e),
                format!(
                    "check DNS, proxies and firewalls for {} (snyk.api_url picks the region)",
                    cfg.snyk.api_url
                ),
            )];
        }
    };
    let received = SystemTime::now();
    let mut checks = vec![pass(
        "snyk",
        format!(
            "{} answers (HTTP {})",
            cfg.snyk.api_url,
            resp.status().as_u16()
        ),
    )];
    let date = resp
        .headers()
        .get(hyper::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    checks.push(match date {
        None => fail(
            "clock",
            "Snyk's answer had no Date header to compare with",
            "check that nothing between here and Snyk rewrites its answers",
        ),
        Some(theirs) => {
            // Their second falls somewhere in our round trip; HTTP dates have
            // whole seconds.
            let mid = sent + received.duration_since(sent).unwrap_or_default() / 2;
            let skew = match mid.duration_since(theirs) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            if skew.abs() <= MAX_SKEW.as_secs_f64() + 1.0 {
                pass("clock", format!("within {:.0} s of Snyk's", skew.abs().ceil()))
            } else {
                fail(
                    "clock",
                    format!(
                        "{:.0} s {} Snyk's",
                        skew.abs(),
                        if skew > 0.0 { "ahead of" } else { "behind" }
                    ),
                    "synchronise the clock (`timedatectl set-ntp true`, chrony or ntpd): token expiry and JWT assertions depend on it",
                )
            }
        }
    });
    checks
}

//! Proactive refresh (issue 4) end to end: callers never wait on Snyk while
//! a valid token exists, failures back off, status shows the schedule.

use crate::support::agent::{assert_no_secrets, stderr, stdout, wait_for};
use crate::support::wait::timing;
use crate::support::{Env, FakeSnyk};
use std::time::{Duration, Instant, SystemTime};

#[test]
fn tokens_are_refreshed_before_expiry_and_no_caller_waits_on_snyk() {
    let _serial = timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(7);
    let rt = fake.new_oauth_client("cp", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "op", "cp", None, &rt)
            .status
            .success()
    );
    // Every grant now takes 1.2 s at Snyk: a caller that waited on one took
    // at least that long, whatever the machine's load (the proactive refresh,
    // due at 0.67 × 7 s ± 10 %, lands before the 7 s expiry).
    let grant_time = Duration::from_millis(1200);
    fake.lock().delay_all = Some(grant_time);
    let grants = fake.refresh_grants();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut tokens = std::collections::HashSet::new();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(16) {
        let t = Instant::now();
        let out = agent.helper(&["op", "cp"]);
        slowest = slowest.max(t.elapsed());
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out).trim().to_string();
        assert!(
            fake.access_token_valid(&token),
            "handed out a token Snyk does not accept"
        );
        tokens.insert(token);
        calls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // Several lifetimes went by: the tokens changed, by grants, without any
    // caller waiting for one.
    assert!(tokens.len() >= 3, "tokens seen: {}", tokens.len());
    assert!(fake.refresh_grants() >= grants + 2);
    assert!(
        slowest < grant_time,
        "a caller waited {slowest:?} over {calls} calls: it waited on a {grant_time:?} grant"
    );
    let (_, v) = agent.json("GET", "/v1/credentials", None);
    let c = &v["credentials"][0];
    assert_eq!(c["state"], "ok");
    let next: SystemTime =
        humantime::parse_rfc3339(c["next_refresh_at"].as_str().unwrap()).unwrap();
    let expires: SystemTime = humantime::parse_rfc3339(c["expires_at"].as_str().unwrap()).unwrap();
    assert!(next <= expires, "the next refresh is planned before expiry");
    assert!(c["last_refresh_at"].is_string());
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn a_failing_snyk_gets_capped_backoff_not_a_spin_and_recovery_resets_it() {
    // Counts requests over a window: a rate, measured in the serial group.
    let _serial = timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(4);
    let rt = fake.new_oauth_client("cb", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ob", "cb", None, &rt)
            .status
            .success()
    );
    fake.lock().fail_all = Some(503);
    let before = fake.lock().token_requests;
    // The proactive refresh is due at ~2 s; then 1 s, 2 s, 4 s backoff (each try
    // also retries twice inline): about 3 rounds in 8 s, far from a spin.
    std::thread::sleep(Duration::from_secs(8));
    let requests = fake.lock().token_requests - before;
    assert!(
        (3..=15).contains(&requests),
        "token requests while failing: {requests}"
    );
    let (_, v) = agent.json("GET", "/v1/credentials", None);
    let c = &v["credentials"][0];
    assert!(c["failures"].as_u64().unwrap() >= 2, "{c}");
    assert!(c["last_error"].as_str().unwrap().contains("503"), "{c}");
    let out = agent.cli(&["status"], None);
    assert!(
        stdout(&out).contains("503"),
        "status shows the last error: {}",
        stdout(&out)
    );
    // Snyk recovers: the next attempt succeeds and the failures reset.
    fake.lock().fail_all = None;
    wait_for("the failures to reset once Snyk recovers", 30, || {
        let (_, v) = agent.json("GET", "/v1/credentials", None);
        if v["credentials"][0]["failures"] == 0 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    assert!(agent.helper(&["ob", "cb"]).status.success());
    assert_eq!(fake.replays(), 0);
    agent.stop();
}

#[test]
fn invalid_grant_during_a_proactive_refresh_stops_retries() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3);
    let rt = fake.new_oauth_client("cn", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "on", "cn", None, &rt)
            .status
            .success()
    );
    fake.revoke(&fake.live_refresh_token("cn").unwrap());
    let v = wait_for("the proactive refresh to find needs_login", 30, || {
        let (_, v) = agent.json("GET", "/v1/credentials", None);
        if v["credentials"][0]["state"] == "needs_login" {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert!(v["credentials"][0]["next_refresh_at"].is_null());
    let requests = fake.lock().token_requests;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fake.lock().token_requests,
        requests,
        "no retries after invalid_grant"
    );
    assert_eq!(agent.helper(&["on", "cn"]).status.code(), Some(77));
    agent.stop();
}

#[test]
fn a_restart_does_not_refresh_a_token_still_valid_in_redis() {
    let fake = FakeSnyk::start();
    let bao = crate::support::bao::Bao::dev();
    let redis = crate::support::redis::RedisServer::start();
    let rt = fake.new_oauth_client("cs", None);
    let mut env = Env::new(&fake.url());
    let tf = env.path().join("t");
    std::fs::write(&tf, &bao.root_token).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {tf:?}\n",
        bao.url()
    );
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "os", "cs", None, &rt)
            .status
            .success()
    );
    let token = stdout(&agent.helper(&["os", "cs"])).trim().to_string();
    agent.stop();
    let grants = fake.refresh_grants();
    let agent = env.start();
    // Once the restarted agent has scheduled the credential's next refresh,
    // it has decided about the token in Redis: no grant.
    wait_for("the restarted agent to schedule the credential", 30, || {
        let (_, v) = agent.json("GET", "/v1/credentials", None);
        if v["credentials"][0]["next_refresh_at"].is_string() {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    assert_eq!(
        fake.refresh_grants(),
        grants,
        "the valid token in Redis is reused"
    );
    assert_eq!(stdout(&agent.helper(&["os", "cs"])).trim(), token);
    let (_, v) = agent.json("GET", "/v1/credentials", None);
    assert!(v["credentials"][0]["next_refresh_at"].is_string(), "{v}");
    agent.stop();
}

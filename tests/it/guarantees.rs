//! The rotation rule's guarantees (docs/protocol.md, issue 12 item 5) against the real
//! binaries, one scenario per test, each in the state a user hit it in: a
//! caller killed after Snyk rotated, a Redis lock lost mid-refresh, Redis
//! flushed while a rotated token is only journaled, a stale journal entry at
//! start, a browser login completing during a refresh. Each asserts 0 replays
//! at the fake, a credential that still serves tokens Snyk accepts, and the
//! stored state.

use crate::support::agent::{
    SNYKEY, block_store, http_on, stderr, stdout, store_text, tcp_get, wait_for,
};
use crate::support::redis::RedisServer;
use crate::support::shared::{SharedBao, two_agents_sharing, wait_at_snyk};
use crate::support::{Agent, Env, FakeSnyk, Fault};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Snyk's answer to the refresh under test comes this late (the agent's
/// Snyk timeout in tests is 3 s); the caller is killed after [`KILL_AFTER`].
const ANSWER_AFTER: Duration = Duration::from_millis(2500);
const KILL_AFTER: Duration = Duration::from_secs(1);

/// The refresh token of the newest pair the fake issued (by any grant).
fn newest_issued_refresh_token(fake: &FakeSnyk) -> String {
    fake.secrets()
        .into_iter()
        .rev()
        .find(|s| s.starts_with("rt_"))
        .unwrap()
}

/// The helper asks, and succeeds with a token the fake accepts.
fn assert_serves(fake: &FakeSnyk, agent: &Agent, org: &str, client: &str) -> String {
    let out = agent.helper(&[org, client]);
    assert!(
        out.status.success(),
        "{}\nagent log:\n{}",
        stderr(&out),
        agent.log_text()
    );
    let token = stdout(&out).trim().to_string();
    assert!(
        fake.access_token_valid(&token),
        "the fake refuses the token"
    );
    token
}

#[test]
fn a_helper_killed_after_snyk_rotated_loses_nothing_and_replays_nothing() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let rt = agent.put_new_oauth(&fake, "ok", "ck", None);
    agent.http("DELETE", "/v1/cache/ok/ck", None);
    let grants = fake.refresh_grants();

    // Snyk rotates when the request arrives and answers 2.5 s later; the CI
    // job's helper is killed 1 s in.
    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let since = Instant::now();
    let mut helper = crate::support::agent::clean(crate::support::agent::HELPER)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["ok", "ck"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_at_snyk(&fake, grants, since, KILL_AFTER);
    assert_eq!(
        fake.refresh_grants(),
        grants + 1,
        "Snyk has rotated already"
    );
    helper.kill().unwrap();
    helper.wait().unwrap();

    // The agent still reads Snyk's answer and lands the new token.
    let live = fake.live_refresh_token("ck").unwrap();
    wait_for("the rotated token in the store", 10, || {
        store_text(&env).contains(&live)
    });
    assert!(!store_text(&env).contains(&rt));
    // The next caller is served that answer's access token: no new grant.
    assert_serves(&fake, &agent, "ok", "ck");
    assert_eq!(fake.refresh_grants(), grants + 1);
    // And the chain goes on from the landed token.
    agent.http("DELETE", "/v1/cache/ok/ck", None);
    assert_serves(&fake, &agent, "ok", "ck");
    assert_eq!(fake.refresh_grants(), grants + 2);
    assert_eq!(agent.status_of("ok", "ck")["state"], "ok");
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_put_killed_mid_rotation_still_stores_the_credential() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cp", Some("sec-cp"));
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let rt_file = env.path().join("rt");
    std::fs::write(&rt_file, &rt).unwrap();
    let secret_file = env.path().join("cs");
    std::fs::write(&secret_file, "sec-cp").unwrap();

    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let since = Instant::now();
    let mut put = crate::support::agent::clean(SNYKEY)
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "put",
            "--org-id",
            "op",
            "--client-id",
            "cp",
            "--refresh-token-file",
        ])
        .arg(&rt_file)
        .arg("--client-secret-file")
        .arg(&secret_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_at_snyk(&fake, 0, since, KILL_AFTER);
    assert!(
        !fake.refresh_token_alive(&rt),
        "Snyk consumed the seed token already"
    );
    put.kill().unwrap();
    put.wait().unwrap();

    let live = fake.live_refresh_token("cp").unwrap();
    wait_for("the rotated token in the store", 10, || {
        store_text(&env).contains(&live)
    });
    let out = agent.cli(&["token", "op", "cp"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        agent.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert_eq!(fake.refresh_grants(), 1, "the put's answer is served");
    assert_eq!(agent.status_of("op", "cp")["kind"], "oauth_app");
    // Putting the same (spent) token again rotates nothing and answers 200.
    let out = agent.put_oauth(env.path(), "op", "cp", Some("sec-cp"), &rt);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.refresh_grants(), 1);
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_redis_lock_lost_mid_refresh_does_not_let_a_second_agent_replay() {
    let fake = FakeSnyk::start();
    let bao = SharedBao::start();
    let redis = RedisServer::start();
    let (_envs, a, b) = two_agents_sharing(&fake, &bao, &redis, "ol", "cl");
    let grants = fake.refresh_grants();

    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let socket_a = a.socket.clone();
    let since = Instant::now();
    let first =
        std::thread::spawn(move || http_on(&socket_a, "GET", "/v1/credentials/ol/cl", None));
    wait_at_snyk(&fake, grants, since, KILL_AFTER);
    // A failover loses the lock while A's token is at Snyk.
    assert!(
        redis.get("snyk:lock:ol:cl").is_some(),
        "agent A holds the Redis lock during its refresh"
    );
    let mut c = redis.conn().unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg("snyk:lock:ol:cl")
        .query(&mut c)
        .unwrap();
    // B takes the lock, finds A's claim in the store, and waits for A's landing.
    let out = b.helper(&["ol", "cl"]);
    assert!(
        out.status.success(),
        "{}\nB's log:\n{}",
        stderr(&out),
        b.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let (st, body) = first.join().unwrap();
    assert_eq!(st, 200, "{body}");
    // B sent nothing while A's claim was live; at most it refreshed A's
    // landed token before A published (work, not a replay).
    assert!(
        fake.refresh_grants() <= grants + 2,
        "B refreshed more than once"
    );

    let live = fake.live_refresh_token("cl").unwrap();
    let data = bao.kv2_data("kv", "snyk/ol/cl").unwrap();
    assert_eq!(data["refresh_token"], live.as_str(), "{data}");
    assert!(data["claim"].is_null(), "no claim left: {data}");
    // Both agents go on serving and refreshing.
    b.http("DELETE", "/v1/cache/ol/cl", None);
    assert_serves(&fake, &b, "ol", "cl");
    assert_serves(&fake, &a, "ol", "cl");
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    for agent in [a, b] {
        agent.stop_and_scan(&fake);
    }
}

#[test]
fn an_agent_killed_after_snyk_rotated_retries_once_across_agents_then_needs_login() {
    // Two agents share OpenBao and Redis. A's refresh is consumed at Snyk
    // and A is SIGKILLed before the answer arrives: the new token died with
    // the process (nothing can keep an answer a dead process never read).
    // What must hold: the consumed token is retried at most once across
    // both agents (rule 6, after the quiet period), never replayed; then the
    // credential is `needs_login` in the record and on both agents, saying
    // the answer was lost.
    let fake = FakeSnyk::start();
    let bao = SharedBao::start();
    let redis = RedisServer::start();
    let (mut envs, a, b) = two_agents_sharing(&fake, &bao, &redis, "ox", "cx");
    let grants = fake.refresh_grants();
    let sent = fake.live_refresh_token("cx").unwrap();

    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let socket_a = a.socket.clone();
    let since = Instant::now();
    let caller = std::thread::spawn(move || {
        crate::support::agent::try_http(&socket_a, "/v1/credentials/ox/cx")
    });
    wait_at_snyk(&fake, grants, since, KILL_AFTER);
    a.kill();
    assert!(caller.join().unwrap().is_err(), "the caller lost its agent");
    // A died knowing only that it sent the token: its journal says so, and
    // its claim is still in the store. The fake cannot see that the answer
    // was lost (it wrote it to a dead socket); the test tells it.
    let entry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(envs[0].journal.join("ox@cx.json")).unwrap())
            .unwrap();
    let digest = snykey::secret::Secret::new(sent.as_str()).digest();
    assert_eq!(entry["claim"]["fp"], digest.as_str(), "{}", entry["claim"]);
    assert_eq!(entry["claim"]["sent"], true, "{}", entry["claim"]);
    assert!(entry["record"].is_null(), "the answer never reached A");
    let stored = bao.kv2_data("kv", "snyk/ox/cx").unwrap();
    assert!(
        !stored["claim"].is_null(),
        "A's claim is still in the store: {}",
        stored["claim"]
    );
    fake.mark_answer_lost(&sent);

    // B is asked at once and keeps being asked: A's claim is live, so B
    // sends nothing; the restarted A finds its own claim in its journal and,
    // after the quiet period, makes the one retry.
    let a = envs[0].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (sa, _) = http_on(&a.socket, "GET", "/v1/credentials/ox/cx", None);
        let (sb, _) = http_on(&b.socket, "GET", "/v1/credentials/ox/cx", None);
        if sa == 409 && sb == 409 {
            break;
        }
        assert!(
            sa != 200 && sb != 200,
            "no agent can serve a token from an answer it never had"
        );
        assert!(
            Instant::now() < deadline,
            "both agents say needs_login within the quiet period (A {sa}, B {sb})\nA's log:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for agent in [&a, &b] {
        let out = agent.helper(&["ox", "cx"]);
        assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
        assert!(stderr(&out).contains("lost in transit"), "{}", stderr(&out));
    }
    let data = bao.kv2_data("kv", "snyk/ox/cx").unwrap();
    assert!(
        data["state"].to_string().contains("needs_login"),
        "the record says needs_login: {}",
        data["state"]
    );
    assert!(data["claim"].is_null(), "no claim left: {}", data["claim"]);
    let s = fake.lock();
    assert_eq!(s.replays, 0);
    assert_eq!(
        s.lost_answer_retries, 1,
        "exactly one retry across both agents"
    );
    assert_eq!(s.refresh_grants, grants + 1);
    drop(s);
    for agent in [a, b] {
        agent.stop_and_scan(&fake);
    }
}

#[test]
fn a_redis_flush_while_a_rotated_token_is_only_journaled_does_not_cause_a_replay() {
    let fake = FakeSnyk::start();
    let bao = SharedBao::start();
    let redis = RedisServer::start();
    let (envs, a, b) = two_agents_sharing(&fake, &bao, &redis, "of", "cf");

    // A claims and sends; while Snyk works, the store stops taking writes,
    // so A's new token goes to its journal only.
    let grants = fake.refresh_grants();
    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let socket_a = a.socket.clone();
    let since = Instant::now();
    let first =
        std::thread::spawn(move || http_on(&socket_a, "GET", "/v1/credentials/of/cf", None));
    wait_at_snyk(&fake, grants, since, KILL_AFTER);
    bao.lock().fail_writes = true;
    let (st, body) = first.join().unwrap();
    assert_eq!(st, 200, "A serves once its journal holds the token: {body}");
    let live = fake.live_refresh_token("cf").unwrap();
    let journal_a = envs[0].journal.join("of@cf.json");
    assert!(
        std::fs::read_to_string(&journal_a)
            .unwrap_or_default()
            .contains(&live),
        "A's journal holds the token the store refused"
    );
    assert_ne!(
        bao.kv2_data("kv", "snyk/of/cf").unwrap()["refresh_token"],
        live.as_str()
    );

    // Redis loses everything; B has nothing cached and asks.
    let mut c = redis.conn().unwrap();
    let _: String = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let writes_back = {
        let proxy = bao.proxy.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            proxy.lock().fail_writes = false;
        })
    };
    let out = b.helper(&["of", "cf"]);
    writes_back.join().unwrap();
    assert!(
        out.status.success(),
        "{}\nB's log:\n{}",
        stderr(&out),
        b.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert_eq!(fake.replays(), 0, "B never sent the token A had consumed");

    // A's journaled token reached the store (possibly rotated on by B since).
    wait_for("A's journal to land", 20, || !journal_a.exists());
    let live = fake.live_refresh_token("cf").unwrap();
    wait_for("the store to hold the live token", 10, || {
        bao.kv2_data("kv", "snyk/of/cf")
            .is_some_and(|d| d["refresh_token"] == live.as_str())
    });
    a.http("DELETE", "/v1/cache/of/cf", None);
    b.http("DELETE", "/v1/cache/of/cf", None);
    assert_serves(&fake, &a, "of", "cf");
    assert_serves(&fake, &b, "of", "cf");
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    for agent in [a, b] {
        agent.stop_and_scan(&fake);
    }
}

#[test]
fn a_stale_journal_entry_at_start_never_overwrites_a_newer_stored_token() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "oj", "cj", None);

    // A refresh while the store refuses writes: its token is journaled.
    agent.http("DELETE", "/v1/cache/oj/cj", None);
    let blocker = block_store(&env);
    assert_serves(&fake, &agent, "oj", "cj");
    let entry_file = env.journal.join("oj@cj.json");
    let old_entry = std::fs::read(&entry_file).expect("a journal entry");
    let journaled = fake.live_refresh_token("cj").unwrap();
    assert!(String::from_utf8_lossy(&old_entry).contains(&journaled));
    // The store comes back; the entry lands and goes; a later refresh rotates on.
    std::fs::remove_dir(&blocker).unwrap();
    wait_for("the journal entry to land", 20, || !entry_file.exists());
    agent.http("DELETE", "/v1/cache/oj/cj", None);
    assert_serves(&fake, &agent, "oj", "cj");
    let newest = fake.live_refresh_token("cj").unwrap();
    assert_ne!(newest, journaled);
    assert!(store_text(&env).contains(&newest));
    agent.stop();

    // The state a crash between a landing and the entry's removal leaves.
    std::fs::write(&entry_file, &old_entry).unwrap();
    let agent = env.start();
    let stored = store_text(&env);
    assert!(
        !stored.contains(&journaled),
        "the stale entry was written over the newer token\n{}",
        agent.log_text()
    );
    // (The agent may refresh at start: its memory cache lost the token.
    // Then it sent the newest token, never the stale one: no replay.)
    agent.http("DELETE", "/v1/cache/oj/cj", None);
    assert_serves(&fake, &agent, "oj", "cj");
    let live = fake.live_refresh_token("cj").unwrap();
    assert_ne!(live, newest, "the newest token was rotated on");
    wait_for("the store to hold the live token", 10, || {
        store_text(&env).contains(&live)
    });
    assert!(
        !std::fs::read_to_string(&entry_file)
            .unwrap_or_default()
            .contains(&journaled),
        "the stale entry is discarded"
    );
    assert_eq!(agent.status_of("oj", "cj")["state"], "ok");
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_browser_login_completing_during_a_refresh_wins() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "ob", "cb", Some("sec-cb"));
    agent.http("DELETE", "/v1/cache/ob/cb", None);

    fake.push_fault(Fault::AnswerLater(ANSWER_AFTER));
    let grants = fake.refresh_grants();
    let socket = agent.socket.clone();
    let since = Instant::now();
    let refresh =
        std::thread::spawn(move || http_on(&socket, "GET", "/v1/credentials/ob/cb", None));
    wait_at_snyk(&fake, grants, since, Duration::from_millis(500));
    // The human logs in while the refresh is at Snyk.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ob","client_id":"cb","client_secret":"sec-cb"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let state = v["state"].as_str().unwrap().to_string();
    let (st, location, body) = tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    let login_token = newest_issued_refresh_token(&fake);
    let (_, s) = agent.json("GET", &format!("/v1/login/{state}?wait=10"), None);
    assert_eq!(s["state"], "complete", "{s}");
    let (st, body) = refresh.join().unwrap();
    assert!(st == 200 || st == 503, "{st} {body}");

    // The login's token is the stored one; the refresh's was discarded.
    wait_for("the login's token in the store", 10, || {
        store_text(&env).contains(&login_token)
    });
    let (st, v) = agent.json("GET", "/v1/ready", None);
    assert_eq!(st, 200, "{v}");
    agent.http("DELETE", "/v1/cache/ob/cb", None);
    assert_serves(&fake, &agent, "ob", "cb");
    assert!(
        !fake.refresh_token_alive(&login_token),
        "the next refresh used the login's token"
    );
    agent.http("DELETE", "/v1/cache/ob/cb", None);
    assert_serves(&fake, &agent, "ob", "cb");
    assert_eq!(agent.status_of("ob", "cb")["state"], "ok");
    let s = fake.lock();
    assert_eq!(
        (s.replays, s.lost_answer_retries, s.code_replays),
        (0, 0, 0)
    );
    drop(s);
    agent.stop_and_scan(&fake);
}

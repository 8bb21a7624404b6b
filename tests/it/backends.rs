//! Real backends (issues 3 and 13): the agent against a real redis-server and
//! a real OpenBao (`bao server -dev`, or a persistent server where a test
//! seals it).

use crate::support::agent::{assert_no_secrets, http_on, stderr, stdout, wait_for};
use crate::support::bao::Bao;
use crate::support::k8s::FakeK8s;
use crate::support::redis::RedisServer;
use crate::support::{Env, FakeSnyk};
use std::time::{Duration, Instant};

fn backends(env: &mut Env, bao: &Bao, redis: &RedisServer, kv: u8) {
    env.store_config = bao.store_config(env.path(), kv);
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
}

#[test]
fn full_flow_on_real_redis_and_openbao_kv2_and_kv1() {
    for kv in [2u8, 1] {
        let fake = FakeSnyk::start();
        fake.set_expires_in(600);
        let bao = Bao::dev();
        let redis = RedisServer::start();
        let rt = fake.new_oauth_client("cf", Some("sec-cf"));
        let mut env = Env::new(&fake.url());
        backends(&mut env, &bao, &redis, kv);
        let agent = env.start();
        let out = agent.put_oauth(env.path(), "of", "cf", Some("sec-cf"), &rt);
        assert!(out.status.success(), "kv{kv}: {}", stderr(&out));
        let out = agent.helper(&["of", "cf"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let token = stdout(&out).trim().to_string();
        assert!(fake.access_token_valid(&token));

        // The store record holds Snyk's current refresh token, seed field names.
        let live = fake.live_refresh_token("cf").unwrap();
        let data = if kv == 2 {
            bao.kv2_data("kv", "snyk/of/cf")
        } else {
            bao.kv1_data("kv1", "snyk/of/cf")
        }
        .expect("record at snyk/of/cf");
        assert_eq!(data["refresh_token"], live.as_str(), "kv{kv}: {data}");
        assert_eq!(data["client_secret"], "sec-cf");
        assert_eq!(data["kind"], "oauth_app");
        // The Redis key holds the access token with a TTL no longer than its lifetime.
        assert_eq!(redis.get("snyk:of:cf").as_deref(), Some(token.as_str()));
        let pttl = redis.pttl("snyk:of:cf");
        assert!(pttl > 0 && pttl <= 600_000, "pttl {pttl}");

        // Refresh again through a cold cache: the store follows.
        agent.clear_cache("of", "cf");
        assert_eq!(redis.get("snyk:of:cf"), None);
        let out = agent.helper(&["of", "cf"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let live2 = fake.live_refresh_token("cf").unwrap();
        assert_ne!(live, live2);
        let data = if kv == 2 {
            bao.kv2_data("kv", "snyk/of/cf")
        } else {
            bao.kv1_data("kv1", "snyk/of/cf")
        }
        .unwrap();
        assert_eq!(data["refresh_token"], live2.as_str());
        if kv == 2 {
            // Two rotations (the put's and this one), each a claim by
            // check-and-set and a landing (docs/protocol.md rules 3 and 4).
            assert_eq!(
                bao.kv2_versions("kv", "snyk/of/cf"),
                4,
                "a claim and a landing per rotation"
            );
            assert!(
                data["claim"].is_null(),
                "the landing clears the claim: {data}"
            );
            // The put stored R as generation 1; each landing adds one.
            assert_eq!(data["generation"], 3, "{data}");
            assert!(
                bao.kv2_cas_required("kv", "snyk/of/cf"),
                "snykey sets cas_required on its records"
            );
        }
        // Delete leaves a tombstone (KV v2: every older version destroyed),
        // and removes the cached token.
        let out = agent.cli(&["delete", "of", "cf"], None);
        assert!(out.status.success(), "{}", stderr(&out));
        if kv == 2 {
            let history = bao.kv2_history("kv", "snyk/of/cf");
            let (last, older) = history.split_last().unwrap();
            let last = last.as_ref().expect("the tombstone is readable");
            assert_eq!(last["deleted"], true, "{last}");
            assert!(last.get("refresh_token").is_none(), "{last}");
            assert!(
                older.iter().all(Option::is_none),
                "older versions destroyed: {history:?}"
            );
            assert_eq!(agent.json("GET", "/v1/credentials/of/cf", None).0, 404);
        } else {
            assert!(bao.kv1_data("kv1", "snyk/of/cf").is_none());
        }
        assert!(redis.get("snyk:of:cf").is_none());
        assert_eq!(fake.replays(), 0);
        let log = agent.stop_and_log();
        assert_no_secrets("agent log", &log, &fake.secrets());
        assert!(
            !log.contains(&bao.root_token),
            "the OpenBao token must not be logged"
        );
    }
}

/// The record as the seed service writes it (`{refresh_token}` only), or as
/// an operator writes it with `bao kv put`, on KV v2 and KV v1.
fn write_seed_record(bao: &Bao, kv: u8, by_cli: bool, path: &str, rt: &str) {
    let mount = if kv == 2 { "kv" } else { "kv1" };
    match (by_cli, kv) {
        (true, _) => bao.cli_kv_put(mount, path, &[("refresh_token", rt)]),
        (false, 2) => bao.write_kv2(mount, path, serde_json::json!({ "refresh_token": rt })),
        (false, _) => bao.write_kv1(mount, path, serde_json::json!({ "refresh_token": rt })),
    }
}

/// Migrating from the seed service (issue 22 item 1): a record holding only
/// the refresh token is loaded at start; Snyk refuses its refresh as
/// malformed (no client secret), which stops the retries for that record
/// with a state and a message naming the command; `snykey put` with only the
/// client secret adopts the stored token, and the refresh carries the secret.
#[test]
fn seed_migration_adopts_the_stored_token_and_adds_the_secret_on_kv2_and_kv1() {
    for kv in [2u8, 1] {
        for by_cli in [false, true] {
            let case = format!(
                "kv{kv}, written by {}",
                if by_cli {
                    "bao kv put"
                } else {
                    "the seed service"
                }
            );
            let fake = FakeSnyk::start();
            let bao = Bao::dev();
            let rt = fake.new_oauth_client("cseed", Some("seed-secret"));
            write_seed_record(&bao, kv, by_cli, "snyk/oseed/cseed", &rt);
            let mut env = Env::new(&fake.url());
            env.store_config = bao.store_config(env.path(), kv);
            let agent = env.start();
            let (_, v) = agent.json("GET", "/v1/credentials", None);
            assert_eq!(
                v["credentials"][0]["client_id"], "cseed",
                "{case}: loaded from the store at start: {v}"
            );
            assert_eq!(v["credentials"][0]["kind"], "oauth_app", "{case}");
            // Its start-up refresh goes out without a client secret: Snyk
            // refuses the request's shape, and the agent stops retrying it.
            wait_for("the start-up refresh to be refused", 10, || {
                fake.lock().malformed_requests >= 1
            });
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(
                fake.lock().malformed_requests,
                1,
                "{case}: a malformed request is not retried until the record changes\n{}",
                agent.log_text()
            );
            let st = agent.status_of("oseed", "cseed");
            assert_eq!(st["state"], "needs_login", "{case}: {st}");
            let why = st["last_error"].as_str().unwrap_or_default();
            assert!(
                why.contains("invalid_request") && why.contains("--client-secret-file"),
                "{case}: the state says what Snyk refused and what to do: {why}"
            );
            let out = agent.helper(&["oseed", "cseed"]);
            assert_eq!(out.status.code(), Some(77), "{case}: {}", stderr(&out));
            assert!(
                stderr(&out).contains("snykey put --org-id oseed --client-id cseed"),
                "{case}: {}",
                stderr(&out)
            );
            assert_eq!(fake.lock().malformed_requests, 1, "{case}");
            assert!(fake.refresh_token_alive(&rt), "{case}: nothing consumed");

            // One put of the client secret (no refresh token) and it works.
            let f = env.path().join("cs");
            std::fs::write(&f, "seed-secret\n").unwrap();
            let out = agent.cli(
                &[
                    "put",
                    "--org-id",
                    "oseed",
                    "--client-id",
                    "cseed",
                    "--client-secret-file",
                    f.to_str().unwrap(),
                ],
                None,
            );
            assert!(
                out.status.success(),
                "{case}: {}\n{}",
                stderr(&out),
                agent.log_text()
            );
            let out = agent.helper(&["oseed", "cseed"]);
            assert!(out.status.success(), "{case}: {}", stderr(&out));
            assert!(fake.access_token_valid(stdout(&out).trim()), "{case}");
            let data = if kv == 2 {
                bao.kv2_data("kv", "snyk/oseed/cseed")
            } else {
                bao.kv1_data("kv1", "snyk/oseed/cseed")
            }
            .unwrap();
            assert_eq!(data["client_secret"], "seed-secret", "{case}");
            let live = fake.live_refresh_token("cseed").unwrap();
            assert_eq!(data["refresh_token"], live.as_str(), "{case}");
            assert!(
                !fake.refresh_token_alive(&rt),
                "{case}: the stored token was rotated"
            );
            assert_eq!(agent.status_of("oseed", "cseed")["state"], "ok", "{case}");
            // And it goes on refreshing with the secret.
            agent.assert_refreshes(&fake, "oseed", "cseed");
            let s = fake.lock();
            assert_eq!(
                (s.replays, s.malformed_requests, s.bad_client_auth),
                (0, 1, 0),
                "{case}"
            );
            drop(s);
            let log = agent.stop_and_log();
            assert_no_secrets("agent log", &log, &fake.secrets());
        }
    }
}

#[test]
fn a_sealed_store_is_reported_and_self_heals_without_losing_anything() {
    let fake = FakeSnyk::start();
    let bao = Bao::persistent();
    let redis = RedisServer::start();
    let rt = fake.new_oauth_client("cs", None);
    let rt2 = fake.new_oauth_client("cs2", None);
    let mut env = Env::new(&fake.url());
    backends(&mut env, &bao, &redis, 2);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "os", "cs", None, &rt)
            .status
            .success()
    );
    let token = stdout(&agent.helper(&["os", "cs"])).trim().to_string();

    bao.seal();
    let (st, v) = agent.json("GET", "/v1/ready", None);
    assert_eq!(st, 503);
    assert!(v["error"].as_str().unwrap().contains("sealed"), "{v}");
    // Writes: 503 with a clear error; nothing consumed at Snyk.
    let grants = fake.refresh_grants();
    let body = format!(r#"{{"org_id":"os","client_id":"cs2","refresh_token":"{rt2}"}}"#);
    let (st, v) = agent.json("PUT", "/v1/credentials", Some(&body));
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "store_sealed");
    assert!(
        fake.refresh_token_alive(&rt2),
        "the given token was not consumed"
    );
    assert_eq!(fake.refresh_grants(), grants);
    let out = agent.put_oauth(env.path(), "os", "cs2", None, &rt2);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("unseal"), "{}", stderr(&out));
    // Cached tokens are still served.
    let out = agent.helper(&["os", "cs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);
    // A refresh while sealed: the store cannot take the claim, so nothing
    // is sent (docs/protocol.md rule 7; OpenBao is not exclusive): a clear 503, in
    // one sentence.
    agent.http("DELETE", "/v1/cache/os/cs", None);
    let live = fake.live_refresh_token("cs").unwrap();
    let out = agent.helper(&["os", "cs"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("unseal"), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("resumes by itself").count(),
        1,
        "said once: {}",
        stderr(&out)
    );
    assert_eq!(fake.refresh_grants(), grants, "nothing sent while sealed");
    assert!(fake.refresh_token_alive(&live));

    bao.unseal();
    wait_for("ready", 10, || {
        agent.json("GET", "/v1/ready", None).0 == 200
    });
    let out = agent.helper(&["os", "cs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let live = fake.live_refresh_token("cs").unwrap();
    assert_eq!(
        bao.kv2_data("kv", "snyk/os/cs").unwrap()["refresh_token"],
        live.as_str()
    );
    assert!(!env.journal.join("os@cs.json").exists());
    let out = agent.put_oauth(env.path(), "os", "cs2", None, &rt2);
    assert!(out.status.success(), "{}", stderr(&out));
    agent.assert_refreshes(&fake, "os", "cs");
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn redis_stopping_and_starting_again_is_survived_without_a_restart() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let mut redis = RedisServer::start();
    fake.set_expires_in(4);
    let rt = fake.new_oauth_client("cr", None);
    let mut env = Env::new(&fake.url());
    backends(&mut env, &bao, &redis, 2);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "or", "cr", None, &rt)
            .status
            .success()
    );
    let token = stdout(&agent.helper(&["or", "cr"])).trim().to_string();

    redis.stop();
    // Served from the in-process layer.
    let out = agent.helper(&["or", "cr"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);
    let (st, v) = agent.json("GET", "/v1/ready", None);
    assert_eq!(st, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("redis"), "{v}");
    // Once the held token is too old, a new one is minted without the
    // cross-agent lock: the lock only saves work, the store arbitrates
    // (docs/protocol.md rule 2).
    let grants = fake.refresh_grants();
    let v = wait_for("a new token while Redis is down", 30, || {
        let (st, v) = agent.json("GET", "/v1/credentials/or/cr", None);
        if st == 200 && v["access_token"] != token.as_str() {
            Ok(v)
        } else {
            Err(format!(
                "{st} {}",
                if st == 200 {
                    "the old token"
                } else {
                    "an error"
                }
            ))
        }
    });
    assert!(fake.access_token_valid(v["access_token"].as_str().unwrap()));
    assert!(fake.refresh_grants() > grants);
    let live = fake.live_refresh_token("cr").unwrap();
    assert_eq!(
        bao.kv2_data("kv", "snyk/or/cr").unwrap()["refresh_token"],
        live.as_str()
    );

    redis.restart();
    wait_for("ready again", 20, || {
        agent.json("GET", "/v1/ready", None).0 == 200
    });
    let token = agent.assert_refreshes(&fake, "or", "cr");
    assert_eq!(redis.get("snyk:or:cr").as_deref(), Some(token.as_str()));
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

fn burst(sockets: &[std::path::PathBuf; 2], n: usize) -> Vec<String> {
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let s = sockets[i % 2].clone();
            std::thread::spawn(move || http_on(&s, "GET", "/v1/credentials/o2a/c2a", None))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| {
            let (st, body) = h.join().unwrap();
            assert_eq!(st, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["access_token"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn two_agents_sharing_redis_and_the_store_refresh_once_per_window() {
    // Counts grants per window: in the serial group.
    let _serial = crate::support::wait::timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(3);
    let bao = Bao::dev();
    let redis = RedisServer::start();
    let rt = fake.new_oauth_client("c2a", None);
    let mut env_a = Env::new(&fake.url());
    backends(&mut env_a, &bao, &redis, 2);
    let mut env_b = Env::new(&fake.url());
    backends(&mut env_b, &bao, &redis, 2);
    let a = env_a.start();
    let b = env_b.start();
    let sockets = [a.socket.clone(), b.socket.clone()];

    // Cold: the credential arrives through A's put; B has never seen it.
    // 200 concurrent callers split across both get A's token: no grant.
    assert!(
        a.put_oauth(env_a.path(), "o2a", "c2a", None, &rt)
            .status
            .success()
    );
    let grants = fake.refresh_grants();
    let tokens = burst(&sockets, 200);
    assert_eq!(
        fake.refresh_grants(),
        grants,
        "B takes A's token from Redis"
    );
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "everyone got the same token"
    );

    // Warm, over several 3 s expiry windows: callers keep hammering both
    // agents while proactive refreshes run; exactly one agent refreshes per
    // window (the Redis lock), the other picks the token up from Redis.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(9) {
        for t in burst(&sockets, 100) {
            assert!(
                fake.access_token_valid(&t),
                "a token handed out was not valid at Snyk"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let times = fake.lock().grant_times.clone();
    let window_grants: Vec<_> = times
        .iter()
        .filter(|t| **t > std::time::SystemTime::now() - Duration::from_secs(9))
        .collect();
    // Refreshes land 1.2 s into each 3 s lifetime (half the lifetime, less a
    // tenth for the grant): about seven in nine seconds, one per window. Both
    // agents refreshing each window would be about fourteen; a loaded machine
    // may delay some, so the lower bound only shows that refreshes went on.
    assert!(
        (3..=10).contains(&window_grants.len()),
        "grants in 9 s: {}",
        window_grants.len()
    );
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap_or_default();
        assert!(
            gap >= Duration::from_millis(1000),
            "two grants {gap:?} apart: both agents refreshed one window"
        );
    }
    assert_eq!(fake.replays(), 0);
    let logs = a.stop_and_log() + &b.stop_and_log();
    assert_no_secrets("agent logs", &logs, &fake.secrets());
}

#[test]
fn the_agents_openbao_token_is_renewed_and_a_revoked_one_leads_to_approle_login() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let redis = RedisServer::start();
    let role_id = bao.approle(
        "snykey",
        serde_json::json!({"token_ttl": "3s", "token_max_ttl": "1h"}),
    );
    let secret_id = bao.secret_id("snykey");
    let rt = fake.new_oauth_client("cap", None);
    let mut env = Env::new(&fake.url());
    let role = env.path().join("role_id");
    let secret = env.path().join("secret_id");
    std::fs::write(&role, &role_id).unwrap();
    std::fs::write(&secret, &secret_id).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\nauth = \"approle\"\nrole_id_file = {role:?}\nsecret_id_file = {secret:?}\n",
        bao.url()
    );
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "oap", "cap", None, &rt)
            .status
            .success()
    );
    assert_eq!(bao.logins("approle"), 1);
    // The 3 s token is renewed before it runs out.
    wait_for(
        "two renewals of the agent's 3 s OpenBao token",
        30,
        || match bao.renewals() {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} renewals")),
        },
    );
    assert_eq!(bao.logins("approle"), 1, "renewed, not re-logged in");
    agent.assert_refreshes(&fake, "oap", "cap");

    // Revoked behind the agent's back: the next request re-authenticates and succeeds.
    bao.revoke_all_but_root();
    let grants = fake.grants();
    agent.clear_cache("oap", "cap");
    let out = agent.helper(&["oap", "cap"]);
    assert!(
        out.status.success(),
        "no request fails for longer than one retry: {}",
        stderr(&out)
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert!(fake.grants() > grants, "a refresh, not the cached token");
    assert!(bao.logins("approle") >= 2);
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert!(!log.contains(&secret_id) && !log.contains(&role_id));
}

#[test]
fn redis_acl_user_and_db_number_and_openbao_kubernetes_auth() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let redis = RedisServer::start();
    // An ACL user with a password; the default user can no longer be used.
    let mut c = redis.conn().unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("snykey")
        .arg("on")
        .arg(">s3cr3t-pw")
        .arg("~*")
        .arg("+@all")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("off")
        .query(&mut c)
        .unwrap();
    // Kubernetes auth on the real OpenBao; the TokenReview endpoint it asks
    // is the stand-in for the cluster's API server.
    let k8s = FakeK8s::start("ci", "snykey-sa");
    bao.kubernetes(&k8s.url, "snykey-role", "ci", "snykey-sa");
    let rt = fake.new_oauth_client("ck", None);
    let mut env = Env::new(&fake.url());
    let jwt = env.path().join("sa-token");
    std::fs::write(&jwt, format!("{}\n", k8s.jwt)).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\nauth = \"kubernetes\"\nkubernetes_role = \"snykey-role\"\nkubernetes_jwt_file = {jwt:?}\n",
        bao.url()
    );
    env.extra_config = format!(
        "[cache]\nbackend = \"redis\"\nurl = \"redis://snykey:s3cr3t-pw@127.0.0.1:{}/3\"\n",
        redis.port
    );
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ok8", "ck", None, &rt)
            .status
            .success()
    );
    let out = agent.helper(&["ok8", "ck"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        bao.logins("kubernetes"),
        1,
        "logged in with the Kubernetes JWT"
    );
    assert!(bao.kv2_data("kv", "snyk/ok8/ck").is_some());
    // The token is in database 3, reached as the ACL user.
    let client = redis::Client::open(format!(
        "redis://snykey:s3cr3t-pw@127.0.0.1:{}/3",
        redis.port
    ))
    .unwrap();
    let mut c3 = client.get_connection().unwrap();
    let v: Option<String> = redis::cmd("GET").arg("snyk:ok8:ck").query(&mut c3).unwrap();
    assert_eq!(v.as_deref(), Some(stdout(&out).trim()));
    let log = agent.stop_and_log();
    assert!(
        !log.contains("s3cr3t-pw") && !log.contains(&k8s.jwt),
        "no password or JWT in the log"
    );
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 item 4: `cas_required` on every record the agent adopts, not
/// only on those it creates: checked (and set) at start for records the
/// seed service or an operator wrote, set on a record another tool writes
/// while the agent runs when the agent first writes it, and reported (and
/// set again) by `snykey doctor`.
#[test]
fn cas_required_is_set_on_every_record_the_agent_adopts_checked_at_start_and_by_doctor() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let rt_a = fake.new_oauth_client("ca", Some("sec-a"));
    let rt_b = fake.new_oauth_client("cb", Some("sec-b"));
    let rt_c = fake.new_oauth_client("cc", Some("sec-c"));
    // Written before the agent starts: over the API (the seed service), and
    // with `bao kv put` (an operator).
    bao.write_kv2(
        "kv",
        "snyk/oc/ca",
        serde_json::json!({ "refresh_token": rt_a, "client_secret": "sec-a" }),
    );
    bao.cli_kv_put(
        "kv",
        "snyk/oc/cb",
        &[("refresh_token", &rt_b), ("client_secret", "sec-b")],
    );
    assert!(!bao.kv2_cas_required("kv", "snyk/oc/ca"));
    assert!(!bao.kv2_cas_required("kv", "snyk/oc/cb"));
    let mut env = Env::on_bao(&fake.url(), &bao);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        env.path().join("bao-token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let agent = env.start();
    // Checked at start, before anything is served.
    for path in ["snyk/oc/ca", "snyk/oc/cb"] {
        assert!(
            bao.kv2_cas_required("kv", path),
            "{path} adopted at start\n{}",
            agent.log_text()
        );
    }
    // A blind write by another tool is refused now.
    let (st, v) = bao.call(
        "POST",
        "kv/data/snyk/oc/ca",
        Some(&serde_json::json!({ "data": { "refresh_token": "rt-blind" } })),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("check-and-set"), "{v}");
    // A record another tool writes while the agent runs: adopted at its
    // first use.
    bao.write_kv2(
        "kv",
        "snyk/oc/cc",
        serde_json::json!({ "refresh_token": rt_c, "client_secret": "sec-c" }),
    );
    assert!(!bao.kv2_cas_required("kv", "snyk/oc/cc"));
    let token = agent.token("oc", "cc");
    assert!(fake.access_token_valid(&token));
    assert!(bao.kv2_cas_required("kv", "snyk/oc/cc"));
    // An operator clears it: doctor finds it, sets it again and says so.
    bao.ok(
        "POST",
        "kv/metadata/snyk/oc/cb",
        serde_json::json!({ "cas_required": false }),
    );
    assert!(!bao.kv2_cas_required("kv", "snyk/oc/cb"));
    let out = crate::doctor_store::doctor(&agent, &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let l = text
        .lines()
        .find(|l| l.starts_with("✓ store writable:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        l.contains("cas_required is set on all 3 records (1 lacked it and have it now)"),
        "{l}"
    );
    assert!(bao.kv2_cas_required("kv", "snyk/oc/cb"));
    for c in ["ca", "cb", "cc"] {
        agent.assert_refreshes(&fake, "oc", c);
    }
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

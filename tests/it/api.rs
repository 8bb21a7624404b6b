//! The agent API's contract: routes, errors, limits (docs/api.md).

use crate::support::agent::{assert_no_secrets, stderr, stdout, wait_for};
use crate::support::{Env, FakeSnyk};

fn store_bytes(env: &Env) -> Vec<u8> {
    std::fs::read(&env.store).unwrap_or_default()
}

#[test]
fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cb", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ob", "cb", None, &rt)
            .status
            .success()
    );
    let before = store_bytes(&env);
    let grants = fake.refresh_grants();

    let long = "a".repeat(200);
    let bad_ids: Vec<(String, String)> = vec![
        ("..%2Fx".into(), "cb".into()),
        ("a:b".into(), "cb".into()),
        ("ob".into(), long.clone()),
        ("%20".into(), "cb".into()),
    ];
    for (org, client) in &bad_ids {
        for (method, path) in [
            ("GET", format!("/v1/credentials/{org}/{client}")),
            ("DELETE", format!("/v1/credentials/{org}/{client}")),
            ("DELETE", format!("/v1/cache/{org}/{client}")),
        ] {
            let (st, v) = agent.json(method, &path, None);
            assert_eq!(st, 400, "{method} {path}: {v}");
            assert_eq!(v["code"], "bad_request");
            assert!(v["error"].as_str().unwrap().contains("A-Z a-z 0-9"), "{v}");
        }
    }
    // Empty ids through the seed's query routes.
    let (st, v) = agent.json("GET", "/v1/credentials?org_id=&client_id=cb", None);
    assert_eq!(st, 400, "{v}");
    // Bodies: ids, malformed JSON, unknown fields (a typo in a secret's name), 1 MiB.
    for body in [
        r#"{"org_id":"../x","client_id":"cb","refresh_token":"x"}"#.to_string(),
        r#"{"org_id":"a:b","client_id":"cb","refresh_token":"x"}"#.to_string(),
        format!(r#"{{"org_id":"ob","client_id":"{long}","refresh_token":"x"}}"#),
        r#"{"org_id":"","client_id":"cb","refresh_token":"x"}"#.to_string(),
        r#"{"org_id":"ob","client_id":"cb","refresh_token":"#.to_string(),
        r#"{"org_id":"ob","client_id":"cb","refresh_tokn":"x"}"#.to_string(),
        r#"{"org_id":"ob","client_id":"cb","kind":"magic","refresh_token":"x"}"#.to_string(),
        r#"{"org_id":"ob","client_id":"cb","refresh_token":""}"#.to_string(),
        r#"{"org_id":"ob","client_id":"cb","kind":"client_secret","refresh_token":"x","client_secret":"y"}"#.to_string(),
    ] {
        let (st, v) = agent.json("PUT", "/v1/credentials", Some(&body));
        assert_eq!(st, 400, "{body}: {v}");
        assert_eq!(v["code"], "bad_request");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let huge = format!(
        r#"{{"org_id":"ob","client_id":"cb","refresh_token":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let (st, v) = agent.json("PUT", "/v1/credentials", Some(&huge));
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["code"], "body_too_large");
    // A refresh token Snyk refuses is bad input too: nothing stored.
    let (st, v) = agent.json(
        "PUT",
        "/v1/credentials",
        Some(r#"{"org_id":"ob","client_id":"cb","refresh_token":"rt_not_issued"}"#),
    );
    // Snyk refused the given token for good (invalid_grant): 409
    // needs_login, naming Snyk's error and the command that gets a new one.
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], "needs_login", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("invalid_grant") && error.contains("snykey login"),
        "{v}"
    );
    // docs/protocol.md rule 8 stores the given token (with a claim) before sending it;
    // refused at once, the record it replaced is put back: the same secrets,
    // a higher generation (it only goes up).
    let record = |bytes: &[u8]| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["credentials"]["ob"]["cb"].clone()
    };
    let (was, now) = (record(&before), record(&store_bytes(&env)));
    for field in ["refresh_token", "client_secret", "kind", "state", "claim"] {
        assert_eq!(was[field], now[field], "{field} must be unchanged");
    }
    assert!(now["generation"].as_u64() > was["generation"].as_u64());
    assert_eq!(fake.refresh_grants(), grants);
    // Unknown routes and methods.
    assert_eq!(agent.json("GET", "/v2/nothing", None).0, 404);
    assert_eq!(agent.json("POST", "/v1/credentials/ob/cb", None).0, 405);
    // And the credential still works.
    let out = agent.helper(&["ob", "cb"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn seed_query_routes_list_delete_and_revoke_work() {
    let fake = FakeSnyk::start();
    let rt1 = fake.new_oauth_client("c1", Some("s1"));
    let rt2 = fake.new_oauth_client("c2", Some("s2"));
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "o", "c1", Some("s1"), &rt1)
            .status
            .success()
    );
    assert!(
        agent
            .put_oauth(env.path(), "o", "c2", Some("s2"), &rt2)
            .status
            .success()
    );

    // Seed-style token route.
    let (st, v) = agent.json(
        "GET",
        "/v1/credentials?org_id=o&client_id=c1&min_validity=60",
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["token_type"], "bearer");
    assert!(fake.access_token_valid(v["access_token"].as_str().unwrap()));
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    // The list has no secrets.
    let (st, text) = agent.http("GET", "/v1/credentials", None);
    assert_eq!(st, 200);
    assert_no_secrets("credential list", &text, &fake.secrets());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let creds = v["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 2);
    for c in creds {
        assert_eq!(c["kind"], "oauth_app");
        assert_eq!(c["state"], "ok");
        assert!(c["expires_at"].is_string() && c["last_refresh_at"].is_string());
        assert_eq!(c["failures"], 0);
    }
    let out = agent.cli(&["status"], None);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("STATE") && stdout(&out).contains("c2"),
        "{}",
        stdout(&out)
    );
    let out = agent.cli(&["status", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["credentials"].as_array().unwrap().len(), 2);

    // Seed-style cache delete, then delete with revoke.
    assert_eq!(
        agent
            .json("DELETE", "/v1/cache?org_id=o&client_id=c1", None)
            .0,
        200
    );
    let live2 = fake.live_refresh_token("c2").unwrap();
    let out = agent.cli(&["delete", "o", "c2", "--revoke"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked"));
    assert!(!fake.refresh_token_alive(&live2), "revoked at Snyk");
    // Its secrets are gone from the store; its tombstone stays, with its
    // generation (docs/storage.md, the file store).
    let stored = std::fs::read_to_string(&env.store).unwrap();
    assert!(
        !stored.contains("\"s2\"") && !stored.contains(&live2),
        "{stored}"
    );
    let doc: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let stone = &doc["credentials"]["o"]["c2"];
    assert_eq!(stone["deleted"], true, "{stored}");
    assert!(stone["generation"].as_u64().unwrap() > 1, "{stored}");
    assert!(stone["refresh_token"].is_null() && stone["client_secret"].is_null());
    assert_eq!(agent.helper(&["o", "c2"]).status.code(), Some(66));
    // Seed-style delete.
    let (st, _) = agent.json("DELETE", "/v1/credentials?org_id=o&client_id=c1", None);
    assert_eq!(st, 200);
    assert_eq!(agent.json("GET", "/v1/credentials/o/c1", None).0, 404);
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn health_ready_and_metrics_answer() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert_eq!(agent.json("GET", "/v1/health", None).0, 200);
    assert_eq!(agent.json("GET", "/v1/ready", None).0, 200);
    let (st, text) = agent.http("GET", "/metrics", None);
    assert_eq!(st, 200);
    assert!(text.contains("snykey_requests_total"), "{text}");
    agent.stop();
}

#[test]
fn check_config_prints_the_effective_config_redacted_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[store]\nbackend = \"openbao\"\ntoken = \"s.verysecret\"\n[cache]\nurl = \"redis://u:hunter2@h:6379/0\"\n").unwrap();
    let out = crate::support::agent::clean(crate::support::agent::SNYKEY)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("backend = \"openbao\""));
    assert!(
        !text.contains("verysecret") && !text.contains("hunter2"),
        "{text}"
    );
    std::fs::write(&cfg, "[refresh]\nmin_validty = \"5m\"\n").unwrap();
    let out = crate::support::agent::clean(crate::support::agent::SNYKEY)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("refresh.min_validty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sigterm_and_sigint_stop_gracefully_finishing_a_request_in_flight() {
    for (name, sig) in [("SIGTERM", libc::SIGTERM), ("SIGINT", libc::SIGINT)] {
        let fake = FakeSnyk::start();
        let rt = fake.new_oauth_client("cg", None);
        let mut env = Env::new(&fake.url());
        let agent = env.start();
        let socket = agent.socket.clone();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
            0o660
        );
        assert!(
            agent
                .put_oauth(env.path(), "og", "cg", None, &rt)
                .status
                .success()
        );
        // A refresh Snyk answers 2 s late is in flight when the signal lands.
        agent.clear_cache("og", "cg");
        fake.push_fault(crate::support::Fault::Delay(
            std::time::Duration::from_secs(2),
        ));
        let requests = fake.lock().token_requests;
        let s = socket.clone();
        let in_flight = std::thread::spawn(move || {
            crate::support::agent::http_on(&s, "GET", "/v1/credentials/og/cg", None)
        });
        wait_for("the refresh to reach the fake", 20, || {
            fake.lock().token_requests > requests
        });
        agent.signal(sig);
        let (st, body) = in_flight.join().unwrap();
        assert_eq!(st, 200, "{name}: the request in flight is answered: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = v["access_token"].as_str().unwrap();
        assert!(fake.access_token_valid(token), "{name}: {v}");
        // The rotated refresh token was stored before the answer.
        let live = fake.live_refresh_token("cg").unwrap();
        assert!(std::fs::read_to_string(&env.store).unwrap().contains(&live));
        let (status, log) = agent.wait_exit();
        assert_eq!(status, Some(0), "{name}: exit status; log:\n{log}");
        assert!(
            !socket.exists(),
            "{name}: the agent removes the socket it created"
        );
        assert_eq!(fake.replays(), 0);
        assert_no_secrets("agent log", &log, &fake.secrets());
    }
}

#[test]
fn no_form_of_a_redis_url_shows_its_password_in_check_config_or_the_trace_log() {
    let forms = [
        "redis://snykey:hunter2pw@127.0.0.1:1/0",
        "rediss://:hunter2pw@127.0.0.1:1/0",
        "redis+unix:///nonexistent/redis.sock?db=1&pass=hunter2pw",
        "unix:///nonexistent/redis.sock?pass=hunter2pw",
        "redis+sentinel://u:hunter2pw@127.0.0.1:1,127.0.0.1:2/mymaster/0",
    ];
    for url in forms {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            (
                "SNYKEY_SOCKET",
                dir.path().join("s.sock").display().to_string(),
            ),
            (
                "XDG_STATE_HOME",
                dir.path().join("state").display().to_string(),
            ),
            ("SNYKEY_CACHE_BACKEND", "redis".to_string()),
            ("SNYKEY_CACHE_URL", url.to_string()),
            ("SNYKEY_LOG", "trace".to_string()),
        ];
        let out = crate::support::agent::clean(crate::support::agent::SNYKEY)
            .arg("check-config")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(!text.contains("hunter2pw"), "check-config, {url}: {text}");
        // (Sentinel URLs are refused by this version's config: no password either.)
        assert!(
            !out.status.success() || text.contains("[redacted]"),
            "check-config, {url}: {text}"
        );
        // The agent at trace level: until it is ready (it keeps retrying
        // Redis) or has refused the URL and exited, then stopped, so that
        // its shutdown lines are read too.
        let log = dir.path().join("serve.log");
        let mut child = crate::support::agent::clean(crate::support::agent::SNYKEY)
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let exited = wait_for("the agent to be ready or to refuse the URL", 30, || {
            if let Ok(Some(st)) = child.try_wait() {
                return Ok(Some(st));
            }
            // Serving (its signal handlers are installed by then; the
            // "ready" log line comes before them).
            match crate::support::agent::try_http(&dir.path().join("s.sock"), "/v1/health") {
                Ok((200, _)) => Ok(None),
                Ok((st, body)) => Err(format!("{st} {body}")),
                Err(e) => Err(e.to_string()),
            }
        });
        if exited.is_none() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let st = child.wait().unwrap();
            assert!(st.success(), "serve, {url}: {st}");
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.is_empty(), "the agent logged nothing for {url}");
        assert!(!text.contains("hunter2pw"), "serve, {url}: {text}");
    }
}

/// Issue 15: every setting that can hold a password (`cache.url` with
/// `user:pw@`, `cache.password_file`, Sentinel, `?pass=`, `store.addr` as a
/// list, `store.token`) is held in a redacting type: `check-config` and a
/// running agent at trace level (started, a credential stored and read
/// through the password-protected Redis) never show it.
#[test]
fn no_setting_that_holds_a_password_shows_it_in_check_config_or_a_running_agents_trace_log() {
    let secret = "hunter2pw";
    let redis = crate::support::redis::RedisServer::start();
    let mut admin = redis.conn().unwrap();
    let _: String = ::redis::cmd("ACL")
        .arg("SETUSER")
        .arg("snykey")
        .arg("on")
        .arg(">hunter2pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query(&mut admin)
        .unwrap();
    let port = redis.port;
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cpw", None);
    let mut env = Env::new(&fake.url());
    let pw_file = env.path().join("redis-password");
    std::fs::write(&pw_file, format!("{secret}\n")).unwrap();
    let pw_file = pw_file.display().to_string();
    // Settings an agent starts with, through a Redis that needs the password.
    let running: Vec<Vec<(&str, String)>> = vec![
        vec![(
            "SNYKEY_CACHE_URL",
            format!("redis://snykey:{secret}@127.0.0.1:{port}/0"),
        )],
        vec![
            ("SNYKEY_CACHE_URL", format!("redis://127.0.0.1:{port}/0")),
            ("SNYKEY_CACHE_USERNAME", "snykey".into()),
            ("SNYKEY_CACHE_PASSWORD_FILE", pw_file.clone()),
        ],
    ];
    for (i, vars) in running.iter().enumerate() {
        let mut vars: Vec<(&str, String)> = vars.clone();
        vars.push(("SNYKEY_CACHE_BACKEND", "redis".into()));
        vars.push(("SNYKEY_CACHE_KEY_PREFIX", format!("pw{i}")));
        let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let agent = env.start_with(&borrowed);
        let check = std::process::Command::new(crate::support::agent::SNYKEY)
            .args(["check-config", "--config"])
            .arg(&env.config)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&check), stderr(&check));
        assert!(check.status.success(), "{vars:?}: {text}");
        assert!(!text.contains(secret), "{vars:?}: {text}");
        assert!(i != 0 || text.contains("snykey:[redacted]@"), "{text}");
        if i == 0 {
            let put = agent.put_oauth(env.path(), "opw0", "cpw", None, &rt);
            assert!(put.status.success(), "{}", stderr(&put));
        }
        // The second agent reads the credential the first one stored.
        let out = agent.helper(&["opw0", "cpw"]);
        assert!(out.status.success(), "{vars:?}: {}", stderr(&out));
        assert!(
            !redis.keys(&format!("pw{i}*")).is_empty(),
            "{vars:?}: the token was not cached in Redis"
        );
        let log = agent.log_text();
        assert!(log.contains("[redacted]@127.0.0.1"), "{vars:?}: {log}");
        assert!(!log.contains(secret), "{vars:?}: {log}");
        agent.stop();
        assert_no_secrets("agent log", &log, &fake.secrets());
    }
    // Settings check-config prints (or refuses) without the password, and
    // that an agent refuses or fails to start with, without it too.
    let shown: Vec<(&str, String)> = vec![
        (
            "SNYKEY_CACHE_URL",
            format!("rediss+sentinel://u:{secret}@127.0.0.1:1,127.0.0.1:2/mymaster/3"),
        ),
        (
            "SNYKEY_CACHE_URL",
            format!("redis+unix:///nonexistent/r.sock?db=1&pass={secret}"),
        ),
        (
            "SNYKEY_CACHE_URL",
            format!("unix:///nonexistent/r.sock?pass={secret}"),
        ),
        (
            "SNYKEY_STORE_ADDR",
            format!("http://127.0.0.1:1, https://u:{secret}@bao.example:8200"),
        ),
        ("SNYKEY_STORE_TOKEN", secret.to_string()),
    ];
    for (var, value) in shown {
        let dir = tempfile::tempdir().unwrap();
        let vars = [
            (
                "SNYKEY_SOCKET",
                dir.path().join("s.sock").display().to_string(),
            ),
            (
                "XDG_STATE_HOME",
                dir.path().join("state").display().to_string(),
            ),
            ("SNYKEY_CACHE_BACKEND", "redis".to_string()),
            ("SNYKEY_STORE_BACKEND", "openbao".to_string()),
            ("SNYKEY_STORE_ADDR", "http://127.0.0.1:1".to_string()),
            ("SNYKEY_STORE_TOKEN", "s.not-the-secret".to_string()),
            ("SNYKEY_LOG", "trace".to_string()),
            (var, value.clone()),
        ];
        let out = std::process::Command::new(crate::support::agent::SNYKEY)
            .arg("check-config")
            .env_remove("CONFIGURATION_DIRECTORY")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.contains(secret),
            "check-config, {var}={value}: {text}"
        );
        assert!(
            text.contains("[redacted]") || out.status.code() == Some(78),
            "check-config, {var}={value}: {text}"
        );
        let mut child = std::process::Command::new(crate::support::agent::SNYKEY)
            .arg("serve")
            .env_remove("CONFIGURATION_DIRECTORY")
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !text.is_empty(),
            "the agent logged nothing for {var}={value}"
        );
        assert!(!text.contains(secret), "serve, {var}={value}: {text}");
    }
}

/// The callback listener's port, from the line the agent logs when it binds it.
fn callback_port(agent: &crate::support::agent::Agent) -> u16 {
    let log = agent.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("OAuth callback listener ready"))
        .unwrap_or_else(|| panic!("no callback listener in the log:\n{log}"));
    let after = line
        .split("listen=")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    let addr: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn two_thousand_slow_callback_connections_do_not_starve_the_agent() {
    use std::io::{Read, Write};
    // Measures answer times: in the serial group.
    let _serial = crate::support::wait::timing();
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    // The listener is bound while a login is pending.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"oslow","client_id":"cslow","client_secret":"sec-cslow"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let port = callback_port(&agent);
    let pid = agent.child.id();
    let baseline = open_fds(pid);
    let mut slow = Vec::new();
    for i in 0..2000 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        if i % 2 == 0 {
            let _ =
                s.write_all(b"GET /authorization-code/callback?state=x HTTP/1.1\r\nHost: x\r\n");
        }
        slow.push(s);
    }
    // The agent still answers on its socket, quickly.
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = std::time::Instant::now();
        let (st, _) = agent.http("GET", "/v1/health", None);
        times.push(started.elapsed());
        assert_eq!(st, 200);
    }
    times.sort();
    // (Starved, it would take seconds; the bound leaves room for a loaded machine.)
    assert!(
        times[10] < std::time::Duration::from_millis(250),
        "median answer time on the socket {:?} with 2 000 slow callback connections",
        times[10]
    );
    // Its descriptors stay under the cap (64) plus what it had.
    let fds = open_fds(pid);
    assert!(
        fds <= baseline + 64 + 8,
        "{fds} fds open (baseline {baseline}): the callback listener has no connection cap"
    );
    // The slow connections are closed: over the cap at once, the rest by the
    // 10 s header-read timeout (polled until 25 s have passed).
    for s in &mut slow {
        s.set_nonblocking(true).unwrap();
    }
    let mut closed = vec![false; slow.len()];
    wait_for("every slow callback connection to be closed", 25, || {
        for (s, done) in slow.iter_mut().zip(closed.iter_mut()) {
            let mut buf = [0u8; 512];
            while !*done {
                match s.read(&mut buf) {
                    Ok(0) => *done = true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => *done = true,
                }
            }
        }
        let open = closed.iter().filter(|d| !**d).count();
        if open == 0 {
            Ok(())
        } else {
            Err(format!("{open} still open"))
        }
    });
    drop(slow);
    agent.stop();
}

mod routing_props {
    use crate::support::{Env, FakeSnyk};
    use proptest::prelude::*;

    const MARK: &str = "rt-MARK-3c9e51f0";

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("v1".to_string()),
            Just("credentials".to_string()),
            Just("cache".to_string()),
            Just("login".to_string()),
            Just("register-app".to_string()),
            Just("service-accounts".to_string()),
            Just("health".to_string()),
            Just("ready".to_string()),
            Just("metrics".to_string()),
            Just("..".to_string()),
            Just("%2F".to_string()),
            Just("%00".to_string()),
            Just("%ZZ".to_string()),
            Just("%".to_string()),
            Just("%C3%28".to_string()),
            "[A-Za-z0-9._~-]{0,12}",
            "[A-Za-z0-9]{129,140}",
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(segment(), 0..5),
            proptest::option::of(proptest::collection::vec(
                (
                    "org_id|client_id|min_validity|revoke|wait|[a-z]{1,6}",
                    "[A-Za-z0-9%+=._-]{0,20}",
                ),
                0..4,
            )),
        )
            .prop_map(|(segs, query)| {
                let mut t = format!("/{}", segs.join("/"));
                if let Some(q) = query {
                    t.push('?');
                    let pairs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    t.push_str(&pairs.join("&"));
                }
                t
            })
    }

    fn body() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            "\\PC{0,40}",
            (
                "[A-Za-z0-9._-]{0,10}|\\.\\.|a/b",
                "[A-Za-z0-9._-]{0,10}",
                "oauth_app|client_secret|private_key_jwt|magic",
                any::<bool>()
            )
                .prop_map(|(o, c, k, extra)| {
                    let mut v = serde_json::json!({
                        "org_id": o, "client_id": c, "kind": k,
                        "refresh_token": MARK, "client_secret": MARK,
                        "auth_token": MARK, "name": "n", "scopes": ["x"],
                    });
                    if extra {
                        v["unexpected"] = serde_json::Value::from(MARK);
                    }
                    v.to_string()
                }),
        ])
    }

    #[test]
    fn prop_any_request_gets_a_json_answer_and_never_an_echoed_secret() {
        let fake = FakeSnyk::start();
        let mut env = Env::new(&fake.url());
        let agent = env.start();
        let cases = std::env::var("SNYKEY_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(150);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let result = runner.run(
            &("GET|PUT|POST|DELETE|PATCH|HEAD", target(), body()),
            |(method, target, body)| {
                let (status, text) = agent.http(&method, &target, body.as_deref());
                prop_assert!(
                    status != 500,
                    "{} {} -> {}: {}",
                    method,
                    target,
                    status,
                    text
                );
                prop_assert!(
                    !text.contains(MARK),
                    "{} {}: the answer echoes a secret: {}",
                    method,
                    target,
                    text
                );
                if status >= 400 && method != "HEAD" {
                    let v: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                        TestCaseError::fail(format!("{method} {target}: not JSON: {text}"))
                    })?;
                    prop_assert!(v["error"].is_string() && v["code"].is_string(), "{}", text);
                }
                Ok(())
            },
        );
        if let Err(e) = result {
            panic!("{e}\nagent log:\n{}", agent.log_text());
        }
        // Still serving, and nothing it logged at trace level holds the secret.
        let (st, _) = agent.http("GET", "/v1/health", None);
        assert_eq!(st, 200);
        assert!(!agent.log_text().contains(MARK), "the log holds a secret");
        agent.stop();
    }
}

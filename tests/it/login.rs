//! Browser login (issue 5): a real headless Chromium through the fake Snyk's
//! authorize endpoint (303, like Snyk) to the agent's callback; the pages for
//! every failure; app registration; regions.

use crate::support::agent::{SNYKEY, assert_no_secrets, stderr, stdout, tcp_get};
use crate::support::{Agent, Env, FakeSnyk};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(c))
                .find(|f| f.exists())
        }) {
            return p.display().to_string();
        }
    }
    panic!(
        "Chromium is required by this test: install it with `apt-get install chromium` (.ci/run does)"
    );
}

/// Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=...`).
fn browse(url: &str, mode: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-quic",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=900,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    stdout(&out)
}

/// Starts `snykey ARGS` and returns it with the authorize URL it printed.
fn cli_login(agent: &Agent, args: &[&str]) -> (std::process::Child, String, Vec<String>) {
    let mut child = crate::support::agent::clean(SNYKEY)
        .arg("--socket")
        .arg(&agent.socket)
        .args(args)
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    let mut it = reader.lines();
    while url.is_none() {
        let line = it
            .next()
            .expect("the CLI ended before printing the URL")
            .unwrap();
        if let Some(u) = line.trim().strip_prefix("http://") {
            url = Some(format!("http://{u}"));
        }
        lines.push(line);
    }
    // Keep draining stdout in the background (a detached thread) so the child never blocks.
    std::thread::spawn(move || it.map_while(Result::ok).count());
    (child, url.unwrap(), lines)
}

/// The value of `name` in a URL's query string.
fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(query).unwrap();
    pairs
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn login_env(fake: &FakeSnyk) -> Env {
    Env::new(&fake.url())
}

#[test]
fn browser_login_end_to_end_in_headless_chromium() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("capp", Some("app-secret-1"));
    let mut env = login_env(&fake);
    let agent = env.start();
    let secret_file = env.path().join("cs");
    std::fs::write(&secret_file, "app-secret-1").unwrap();

    let (mut child, url, _) = cli_login(
        &agent,
        &[
            "login",
            "--org-id",
            "ologin",
            "--client-id",
            "capp",
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--no-browser",
        ],
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    // Chromium opens the authorize URL, follows Snyk's 303 to our callback, and renders it.
    let dom = browse(&url, "--dump-dom");
    assert!(
        dom.contains("Login complete") && dom.contains("You can close this tab"),
        "{dom}"
    );
    assert!(
        !dom.contains("code_") && !dom.contains("app-secret-1"),
        "no code or secret on the page"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "snykey login failed: {}", {
        let mut e = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        e
    });
    // The helper prints a valid token right away; the refresh token is stored.
    let out = agent.helper(&["ologin", "capp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    // The stored record holds the login's live refresh token and the secret.
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.store).unwrap()).unwrap();
    let rec = &store["credentials"]["ologin"]["capp"];
    assert!(fake.refresh_token_alive(rec["refresh_token"].as_str().unwrap()));
    assert_eq!(rec["client_secret"], "app-secret-1");
    assert_eq!(rec["kind"], "oauth_app");

    // A second login, screenshotted: the success page as the user sees it.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ologin","client_id":"capp"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let shot = env.path().join("success.png");
    browse(
        v["authorize_url"].as_str().unwrap(),
        &format!("--screenshot={}", shot.display()),
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "screenshot of {} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("SNYKEY_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, std::path::Path::new(&dir).join("login-success.png"));
    }
    let (_, s) = agent.json(
        "GET",
        &format!("/v1/login/{}?wait=5", v["state"].as_str().unwrap()),
        None,
    );
    assert_eq!(s["state"], "complete", "{s}");
    assert_eq!(fake.replays(), 0);
    assert_eq!(fake.lock().code_replays, 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

fn start_login(agent: &Agent, client: &str) -> (String, String) {
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(&format!(
            r#"{{"org_id":"ocb","client_id":"{client}","client_secret":"sec-{client}"}}"#
        )),
    );
    assert_eq!(st, 200, "{v}");
    (
        v["authorize_url"].as_str().unwrap().to_string(),
        v["state"].as_str().unwrap().to_string(),
    )
}

/// Follows the authorize URL at the fake: returns the callback URL it redirects to.
fn authorize(url: &str) -> String {
    let (st, location, body) = tcp_get(url);
    assert_eq!(st, 303, "{body}");
    location.unwrap()
}

#[test]
fn callback_failures_get_the_right_page_and_change_nothing() {
    let fake = FakeSnyk::start();
    for c in ["cok", "cden", "cexp"] {
        fake.new_oauth_client(c, Some(&format!("sec-{c}")));
    }
    let mut env = login_env(&fake);
    env.server_config = "login_timeout = \"1s\"\n".into();
    let agent = env.start();

    // Success, then the same callback URL again: single use.
    let (url, _) = start_login(&agent, "cok");
    let callback = authorize(&url);
    let (st, _, body) = tcp_get(&callback);
    assert_eq!(st, 200, "{body}");
    let store_after = std::fs::read_to_string(&env.store).unwrap();
    let (st, _, body) = tcp_get(&callback);
    assert_eq!(st, 400);
    assert!(
        body.contains("not valid") && body.contains("snykey login"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_to_string(&env.store).unwrap(),
        store_after,
        "a replay changes nothing"
    );
    assert_eq!(
        fake.lock().authorization_code_grants,
        1,
        "the code was exchanged once"
    );

    // A wrong state.
    let base = callback.split('?').next().unwrap();
    let (st, _, body) = tcp_get(&format!(
        "{base}?code=x&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    ));
    assert_eq!(st, 400);
    assert!(body.contains("not valid"));
    let (st, _, _) = tcp_get(&format!("{base}?code=x&state=../../etc"));
    assert_eq!(st, 400);

    // Snyk says access_denied.
    fake.lock().deny_authorize = true;
    let (url, state) = start_login(&agent, "cden");
    let (st, _, body) = tcp_get(&authorize(&url));
    assert_eq!(st, 400);
    assert!(body.contains("access_denied"), "{body}");
    let (_, s) = agent.json("GET", &format!("/v1/login/{state}"), None);
    assert_eq!(s["state"], "failed");
    assert!(s["error"].as_str().unwrap().contains("access_denied"));
    fake.lock().deny_authorize = false;

    // An expired state (login_timeout is 1 s here).
    let (url, state) = start_login(&agent, "cexp");
    let callback = authorize(&url);
    // Polled until the agent itself says the login expired.
    let s = crate::support::agent::wait_for("the login to expire", 20, || {
        let (_, s) = agent.json("GET", &format!("/v1/login/{state}"), None);
        if s["state"] == "failed" {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert!(s["error"].as_str().unwrap().contains("expired"), "{s}");
    let (st, _, body) = tcp_get(&callback);
    assert_eq!(st, 400, "{body}");

    // Nothing was stored for the failed logins.
    let store = std::fs::read_to_string(&env.store).unwrap();
    assert!(
        !store.contains("cden") && !store.contains("cexp"),
        "{store}"
    );
    // Pages carry the security headers.
    let mut s = std::net::TcpStream::connect(
        base.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap(),
    )
    .unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /authorization-code/callback?state=x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    let lower = head.to_ascii_lowercase();
    for h in [
        "cache-control: no-store",
        "content-security-policy: default-src 'none'",
        "referrer-policy: no-referrer",
    ] {
        assert!(lower.contains(h), "missing {h}");
    }
    assert_eq!(
        agent
            .json(
                "GET",
                "/v1/login/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                None
            )
            .0,
        404
    );
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn register_app_keeps_the_client_secret_in_the_store_only() {
    let fake = FakeSnyk::start();
    fake.lock()
        .api_tokens
        .push("snyk-api-token-for-apps".into());
    let redis = crate::support::redis::RedisServer::start();
    let mut env = login_env(&fake);
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
    let agent = env.start();
    let token_file = env.path().join("auth-token");
    std::fs::write(&token_file, "snyk-api-token-for-apps\n").unwrap();

    let (mut child, url, lines) = cli_login(
        &agent,
        &[
            "register-app",
            "--org-id",
            "oreg",
            "--name",
            "CI scanner",
            "--scopes",
            "org.read,org.project.read",
            "--auth-token-file",
            token_file.to_str().unwrap(),
            "--no-browser",
        ],
    );
    let client_id = lines
        .iter()
        .find_map(|l| l.split("client id is ").nth(1))
        .map(|r| r.split(' ').next().unwrap().to_string())
        .expect("client id printed");
    let secret = fake
        .client_secret(&client_id)
        .expect("the app exists at Snyk");
    // While the login is pending: its entry is in Redis under `pkce:{state}`
    // (docs/storage.md) with the login's lifetime, and no key or value of any type
    // holds the client secret.
    let state = query_param(&url, "state");
    let pending = format!("pkce:{state}");
    let keys = redis.keys("*");
    assert!(keys.contains(&pending), "no {pending} in Redis: {keys:?}");
    let ttl = redis.pttl(&pending);
    assert!(ttl > 0 && ttl <= 600_000, "pttl of {pending}: {ttl}");
    assert!(
        redis.dump_value(&pending).contains(&client_id),
        "the pending entry names its client"
    );
    for key in &keys {
        assert!(!key.contains(&secret), "the client secret in a key name");
        assert!(
            !redis.dump_value(key).contains(&secret),
            "the client secret is in Redis under {key} while the login is pending"
        );
    }
    let (st, _, body) = tcp_get(&authorize(&url));
    assert_eq!(st, 200, "{body}");
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();

    assert!(
        std::fs::read_to_string(&env.store)
            .unwrap()
            .contains(&secret),
        "the client secret is in the store"
    );
    assert!(
        !lines.join("\n").contains(&secret) && !err.contains(&secret),
        "not in stdout/stderr"
    );
    // The state was single-use: the pending entry is gone (a Redis that is
    // down fails here instead of passing), and still no secret anywhere.
    assert_eq!(redis.get(&pending), None, "{pending} outlived the login");
    for key in redis.keys("*") {
        assert!(!key.contains(&secret));
        assert!(
            !redis.dump_value(&key).contains(&secret),
            "the client secret is in Redis under {key}"
        );
    }
    let out = agent.helper(&["oreg", &client_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    // A bad API token gets one clear sentence.
    std::fs::write(&token_file, "wrong").unwrap();
    let out = agent.cli(
        &[
            "register-app",
            "--org-id",
            "oreg",
            "--name",
            "x",
            "--scopes",
            "org.read",
            "--auth-token-file",
            token_file.to_str().unwrap(),
            "--no-browser",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("token is missing or invalid"),
        "{}",
        stderr(&out)
    );
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert!(!log.contains("snyk-api-token-for-apps"));
}

#[test]
fn a_login_from_another_region_is_refused_with_what_to_do() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("creg", Some("sec-creg"));
    let mut env = login_env(&fake);
    let agent = env.start();
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ocb","client_id":"creg","client_secret":"sec-creg"}"#),
    );
    assert_eq!(st, 200);
    let callback = authorize(v["authorize_url"].as_str().unwrap());
    let (st, _, body) = tcp_get(&format!("{callback}&instance=api.eu.snyk.io"));
    assert_eq!(st, 400);
    assert!(body.contains("snyk.api_url"), "{body}");
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ocb","client_id":"creg","client_secret":"sec-creg"}"#),
    );
    assert_eq!(st, 200);
    let callback = authorize(v["authorize_url"].as_str().unwrap());
    let (st, _, body) = tcp_get(&format!("{callback}&instance=evil.example.com"));
    assert_eq!(st, 400);
    assert!(body.contains("not a Snyk host"), "{body}");
    agent.stop();
}

#[test]
fn a_login_redirect_uri_that_only_looks_loopback_is_refused() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("credir", Some("sec-credir"));
    let mut env = login_env(&fake);
    let agent = env.start();
    for uri in [
        "http://127.evil.example/authorization-code/callback",
        "http://127.0.0.1@evil.example/authorization-code/callback",
        "http://127.0.0.1.nip.io/authorization-code/callback",
    ] {
        let body = serde_json::json!({
            "org_id": "ocb", "client_id": "credir", "client_secret": "sec-credir",
            "redirect_uri": uri,
        })
        .to_string();
        let (st, v) = agent.json("POST", "/v1/login", Some(&body));
        assert_eq!(st, 400, "{uri}: {v}");
        assert!(v["error"].as_str().unwrap().contains("redirect_uri"), "{v}");
        assert!(v.get("authorize_url").is_none(), "{v}");
    }
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ocb","client_id":"credir","client_secret":"sec-credir","redirect_uri":"http://[::1]:8080/authorization-code/callback"}"#),
    );
    assert_eq!(st, 200, "{v}");
    agent.stop();
}

#[test]
fn login_status_long_polls_and_the_v1_callback_alias_and_a_failed_exchange_page() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("cpoll", Some("sec-cpoll"));
    fake.new_oauth_client("cbad", Some("sec-cbad"));
    let mut env = login_env(&fake);
    let agent = env.start();

    let (url, state) = start_login(&agent, "cpoll");
    // Pending, at once without ?wait=.
    let (st, s) = agent.json("GET", &format!("/v1/login/{state}"), None);
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["state"], "pending", "{s}");
    assert_eq!(s["org_id"], "ocb");
    assert_eq!(s["client_id"], "cpoll");
    // ?wait=1 on a login nobody completes: it waits that second (a lower
    // bound, whatever the load), then still says pending.
    let asked = Instant::now();
    let (st, s) = agent.json("GET", &format!("/v1/login/{state}?wait=1"), None);
    assert_eq!(st, 200, "{s}");
    assert_eq!(s["state"], "pending", "{s}");
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
    // A long poll of 60 s in flight returns as soon as the browser comes back
    // through the seed's /v1/callback route, not at its deadline.
    let socket = agent.socket.clone();
    let poll_state = state.clone();
    let poll = std::thread::spawn(move || {
        let asked = Instant::now();
        let answer = crate::support::agent::http_on(
            &socket,
            "GET",
            &format!("/v1/login/{poll_state}?wait=60"),
            None,
        );
        (answer, asked.elapsed())
    });
    let callback = authorize(&url);
    assert!(
        callback.contains("/authorization-code/callback?"),
        "{callback}"
    );
    let alias = callback.replace("/authorization-code/callback", "/v1/callback");
    let (st, _, body) = tcp_get(&alias);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("Login complete"), "{body}");
    let ((st, body), waited) = poll.join().unwrap();
    assert_eq!(st, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["state"], "complete", "{s}");
    assert!(
        waited < Duration::from_secs(45),
        "the long poll ended at its deadline ({waited:?}), not when the login completed"
    );
    assert!(agent.helper(&["ocb", "cpoll"]).status.success());

    // A code exchange Snyk refuses (the client secret is wrong): a 502 page,
    // and the login is failed.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"ocb","client_id":"cbad","client_secret":"not-the-secret"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let state = v["state"].as_str().unwrap().to_string();
    let (st, _, body) = tcp_get(&authorize(v["authorize_url"].as_str().unwrap()));
    assert_eq!(st, 502, "{body}");
    assert!(body.contains("could not be completed"), "{body}");
    assert!(!body.contains("not-the-secret"), "{body}");
    let (_, s) = agent.json("GET", &format!("/v1/login/{state}?wait=5"), None);
    assert_eq!(s["state"], "failed", "{s}");
    assert!(s["error"].is_string(), "{s}");
    let store = std::fs::read_to_string(&env.store).unwrap();
    assert!(
        !store.contains("cbad"),
        "nothing stored for the failed login"
    );
    assert_eq!(fake.lock().code_replays, 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 item 5: a browser login's code exchange takes the credential's
/// single flight *before* it exchanges, so its new refresh token (the only
/// copy) never waits in memory for a refresh to finish: an agent killed
/// while a refresh holds the flight loses no token Snyk issued to the login.
#[test]
fn a_login_never_holds_its_new_refresh_token_in_memory_while_a_refresh_runs() {
    use crate::support::Fault;
    use crate::support::agent::wait_for;
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cq", Some("sec-cq"));
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "oq", "cq", Some("sec-cq"), &rt)
            .status
            .success()
    );
    agent.http("DELETE", "/v1/cache/oq/cq", None);
    // A refresh holds the credential's single flight while Snyk answers late.
    let sent = fake.live_refresh_token("cq").unwrap();
    fake.push_fault(Fault::AnswerLater(Duration::from_secs(3)));
    let grants = fake.refresh_grants();
    let socket = agent.socket.clone();
    let refresh = std::thread::spawn(move || {
        crate::support::agent::try_http(&socket, "/v1/credentials/oq/cq")
    });
    wait_for("the refresh at Snyk", 10, || fake.refresh_grants() > grants);
    // The human logs in meanwhile; the callback arrives during the refresh.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"oq","client_id":"cq","client_secret":"sec-cq"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let (st, location, body) = tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let location = location.unwrap();
    let callback = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| tcp_get(&location));
    });
    // Give the callback time to reach the agent (an exchange that does not
    // wait for the flight happens at once).
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline && fake.lock().authorization_code_grants == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.kill();
    let _ = refresh.join();
    let _ = callback.join();
    // Every refresh token Snyk issued to the login is durable.
    if fake.lock().authorization_code_grants > 0 {
        let login_token = fake
            .secrets()
            .into_iter()
            .rev()
            .find(|s| s.starts_with("rt_"))
            .unwrap();
        let journal = std::fs::read_to_string(env.journal.join("oq@cq.json")).unwrap_or_default();
        let store = std::fs::read_to_string(&env.store).unwrap_or_default();
        assert!(
            journal.contains(&login_token) || store.contains(&login_token),
            "the login's refresh token died with the agent: it waited in memory for the refresh's single flight"
        );
    }
    // The refresh's answer died with the agent (the documented window);
    // a new login sets the credential right, without a replay.
    fake.mark_answer_lost(&sent);
    let agent = env.start();
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"oq","client_id":"cq","client_secret":"sec-cq"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let state = v["state"].as_str().unwrap().to_string();
    let (st, location, body) = tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    let (_, s) = agent.json("GET", &format!("/v1/login/{state}?wait=10"), None);
    assert_eq!(s["state"], "complete", "{s}");
    let out = agent.helper(&["oq", "cq"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    wait_for("a refresh from the login's token", 10, || {
        agent.http("DELETE", "/v1/cache/oq/cq", None);
        agent.helper(&["oq", "cq"]).status.success()
    });
    let s = fake.lock();
    assert_eq!((s.replays, s.code_replays), (0, 0));
    drop(s);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

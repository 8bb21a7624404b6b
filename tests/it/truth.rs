//! Issue 24 (items 3, 4, 5, 6, 9): what the agent and the CLI say is true.
//! Status and readiness say when the store cannot be read and list what the
//! store holds (real OpenBao, two agents); every file the configuration
//! names is checked before anything is contacted; the example config
//! overrides nothing; errors show values that are not secret; durations are
//! humantime; `snykey token` reads the helper's variables; `put` while Snyk
//! is unreachable is `pending`; the callback listener is bound only while a
//! login is pending; `scripts/test` says when it was interrupted.

use crate::support::agent::{
    SNYKEY, clean, command, listed_states, stderr, stdout, tcp_get, wait_for,
};
use crate::support::bao::Bao;
use crate::support::{Agent, Env, FakeSnyk};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

/// An agent on a real OpenBao (KV v2, the root token from a file).
/// `snykey status --json` on `agent`: the credentials, by `org/client`, with their states.
fn listed(agent: &Agent) -> Vec<(String, String)> {
    let out = agent.cli(&["status", "--json"], None);
    assert!(out.status.success(), "status: {}", stderr(&out));
    listed_states(&serde_json::from_str(&stdout(&out)).unwrap())
}

/// A port nothing listens on (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn status_and_ready_say_store_unreachable_when_openbao_is_down() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cdown", None);
    let mut bao = Bao::dev();
    let mut env = Env::on_bao(&fake.url(), &bao);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "odown", "cdown", None, &rt)
            .status
            .success()
    );
    assert_eq!(listed(&agent), vec![("odown/cdown".into(), "ok".into())]);
    let token = agent.token("odown", "cdown");

    let bao_addr = bao.url().trim_start_matches("http://").to_string();
    bao.kill();
    for args in [&["status"][..], &["status", "--json"]] {
        let out = agent.cli(args, None);
        assert_eq!(out.status.code(), Some(75), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("store unreachable") && stderr(&out).contains("OpenBao"),
            "{}",
            stderr(&out)
        );
        // Where and why, and what to run next (not `snykey status` again).
        let e = stderr(&out);
        assert!(
            e.contains(&format!(
                "cannot reach OpenBao: {bao_addr} refused the connection"
            )),
            "{e}"
        );
        assert!(
            e.contains("snykey doctor") && !e.contains("`snykey status` shows"),
            "{e}"
        );
        // Nothing on stdout that could be read as "no credentials".
        assert!(stdout(&out).trim().is_empty(), "{}", stdout(&out));
    }
    let (st, v) = agent.json("GET", "/v1/ready", None);
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "store_unavailable", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("store unreachable"),
        "{v}"
    );
    // The cached token is still served meanwhile.
    assert_eq!(agent.token("odown", "cdown"), token);
    assert_eq!(fake.replays(), 0);
}

#[test]
fn a_fleet_agent_lists_what_the_store_holds_not_what_it_has_served() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let tokens: Vec<String> = (1..=3)
        .map(|i| fake.new_oauth_client(&format!("cf{i}"), None))
        .collect();
    let mut a_env = Env::on_bao(&fake.url(), &bao);
    let mut b_env = Env::on_bao(&fake.url(), &bao);
    let a = a_env.start();
    // B runs before the credentials exist: it has never seen them.
    let b = b_env.start();
    assert!(listed(&b).is_empty());
    for (i, rt) in tokens.iter().enumerate() {
        let out = a.put_oauth(a_env.path(), "ofleet", &format!("cf{}", i + 1), None, rt);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // B lists every one; it holds no token for them (memory caches): pending.
    let on_b = listed(&b);
    let names: Vec<&str> = on_b.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["ofleet/cf1", "ofleet/cf2", "ofleet/cf3"],
        "{on_b:?}"
    );
    assert!(on_b.iter().all(|(_, s)| s == "pending"), "{on_b:?}");
    // Once B has served one, that one is ok on B.
    let t = b.token("ofleet", "cf1");
    assert!(fake.access_token_valid(&t));
    let on_b = listed(&b);
    assert_eq!(on_b[0], ("ofleet/cf1".into(), "ok".into()), "{on_b:?}");
    // A third agent, started after the puts, lists them at once.
    let mut c_env = Env::on_bao(&fake.url(), &bao);
    let c = c_env.start();
    assert_eq!(listed(&c).len(), 3);
    // Deleted through A (a tombstone in the store): gone from B's list too.
    let out = a.cli(&["delete", "ofleet", "cf3"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = listed(&b).into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["ofleet/cf1", "ofleet/cf2"]);
    assert_eq!(fake.replays(), 0);
}

#[test]
fn a_missing_token_file_is_named_at_check_config_and_start_and_never_sent_to_openbao() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let mut env = Env::new(&fake.url());
    let missing = env.path().join("secrets/bao-token");
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {missing:?}\n",
        bao.url()
    );
    env.write_config();
    let says = format!("store.token_file: {} does not exist", missing.display());

    let out = command(SNYKEY, env.path())
        .args(["check-config", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains(&says), "{}", stderr(&out));
    assert!(!stderr(&out).contains("403"), "{}", stderr(&out));

    let audited = std::fs::read_to_string(bao.audit_path())
        .unwrap_or_default()
        .len();
    let out = command(SNYKEY, env.path())
        .args(["serve", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains(&says), "{}", stderr(&out));
    assert!(!env.socket.exists(), "it bound its socket before refusing");
    assert_eq!(
        std::fs::read_to_string(bao.audit_path())
            .unwrap_or_default()
            .len(),
        audited,
        "OpenBao was contacted"
    );

    // The file goes missing while the agent runs (and its token is revoked):
    // status says which file, not "OpenBao answered 403", and doctor says the
    // file is missing, not "unseal".
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    let token = bao.create_token("1h", None);
    std::fs::write(&missing, &token).unwrap();
    let agent = env.start();
    let rt = fake.new_oauth_client("cgone", None);
    assert!(
        agent
            .put_oauth(env.path(), "ogone", "cgone", None, &rt)
            .status
            .success()
    );
    std::fs::remove_file(&missing).unwrap();
    bao.ok(
        "POST",
        "auth/token/revoke",
        serde_json::json!({"token": token}),
    );
    let out = agent.cli(&["status"], None);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("store unreachable")
            && e.contains(&format!(
                "cannot read the OpenBao token file {}",
                missing.display()
            )),
        "{e}"
    );
    assert!(
        !e.contains("answered 403") && !e.contains("token is invalid"),
        "{e}"
    );
    let out = Command::new(SNYKEY)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["doctor", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("✗ files: {says}")), "{text}");
    let ready = text
        .lines()
        .find(|l| l.contains("store and cache"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        ready.starts_with("✗") && !ready.contains("unseal"),
        "{ready}"
    );
    assert!(ready.contains("token file"), "{ready}");
}

#[test]
fn the_copied_example_config_overrides_nothing_and_errors_show_what_is_wrong() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
    let check = |env: &[(&str, &str)]| {
        let mut cmd = clean(SNYKEY);
        cmd.args(["check-config", "--config"]).arg(&example);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = check(&[
        ("BAO_ADDR", "https://bao.internal:8200"),
        ("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:18081"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("addr = \"https://bao.internal:8200\""),
        "{shown}"
    );
    assert!(
        shown.contains("redirect_uri = \"http://127.0.0.1:18081/authorization-code/callback\""),
        "{shown}"
    );
    // A redirect left behind on 8080 is refused, naming both.
    let out = check(&[
        ("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:18081"),
        (
            "SNYKEY_SERVER_REDIRECT_URI",
            "http://127.0.0.1:8080/authorization-code/callback",
        ),
    ]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("server.redirect_uri")
            && stderr(&out).contains("127.0.0.1:18081")
            && stderr(&out).contains("http://127.0.0.1:8080/authorization-code/callback"),
        "{}",
        stderr(&out)
    );
    // A typo is quoted; a secret is not.
    let out = check(&[("SNYKEY_SNYK_API_URL", "htps//api.snyk.io")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("snyk.api_url") && stderr(&out).contains("\"htps//api.snyk.io\""),
        "{}",
        stderr(&out)
    );
    let out = check(&[("SNYKEY_SNYK_API_URL", "https://u:pw-9f2c1@api.snyk.io")]);
    assert_eq!(out.status.code(), Some(78));
    assert!(!stderr(&out).contains("pw-9f2c1"), "{}", stderr(&out));
}

#[test]
fn durations_are_humantime_and_token_reads_the_helpers_variables() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cdur", None);
    let mut env = Env::new(&fake.url());
    env.extra_config = "[refresh]\nmin_validity = \"5 minutes\"\n".into();
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "odur", "cdur", None, &rt)
            .status
            .success()
    );
    let token = agent.token("odur", "cdur");
    // Flags of the helper and the CLI, and the query parameter.
    let out = agent.helper(&["--min-validity", "5 minutes", "odur", "cdur"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);
    let out = agent.cli(
        &["token", "odur", "cdur", "--min-validity", "1 min 30 s"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);
    let (st, _) = agent.http(
        "GET",
        "/v1/credentials/odur/cdur?min_validity=5%20minutes",
        None,
    );
    assert_eq!(st, 200);
    let (st, v) = agent.json(
        "GET",
        "/v1/credentials/odur/cdur?min_validity=5%20parsecs",
        None,
    );
    assert_eq!(st, 400);
    assert!(
        v["error"].as_str().unwrap().contains("\"5 parsecs\""),
        "{v}"
    );

    // `snykey token` and `refresh` take the ids from the helper's variables.
    let with_ids = |args: &[&str]| {
        let mut cmd = command(SNYKEY, &agent.home);
        cmd.arg("--socket")
            .arg(&agent.socket)
            .args(args)
            .env("SNYKEY_ORG_ID", "odur")
            .env("SNYKEY_CLIENT_ID", "cdur");
        cmd.output().unwrap()
    };
    let out = with_ids(&["token"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);
    let out = with_ids(&["refresh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("odur/cdur: a new access token"),
        "{}",
        stdout(&out)
    );
    // Never for delete: a variable left set must not choose what is deleted.
    let out = with_ids(&["delete"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(!agent.cli(&["status"], None).stdout.is_empty());
    // Without them, a usage error.
    assert_eq!(agent.cli(&["token"], None).status.code(), Some(64));
    // Help pages list only the options that apply.
    let help = |args: &[&str]| stdout(&clean(SNYKEY).args(args).output().unwrap());
    assert!(!help(&["man", "--help"]).contains("--socket"));
    assert!(help(&["status", "--help"]).contains("--socket"));
    assert!(help(&["token", "--help"]).contains("SNYKEY_ORG_ID"));
    assert_eq!(fake.replays(), 0);
}

/// Forwards every connection on `port` to `to` (a plain TCP relay).
fn relay(port: u16, to: std::net::SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn a_put_while_snyk_is_unreachable_is_pending_until_the_first_grant() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cpend", None);
    let port = free_port();
    let mut env = Env::new(&format!("http://127.0.0.1:{port}"));
    let agent = env.start();

    let out = agent.put_oauth(env.path(), "opend", "cpend", None, &rt);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stored opend/cpend") && stderr(&out).contains("pending"),
        "{}",
        stderr(&out)
    );
    // One piece of advice, not the generic one and then its own.
    assert_eq!(
        stderr(&out).matches("snykey status").count(),
        1,
        "{}",
        stderr(&out)
    );
    let (_, v) = agent.json("GET", "/v1/credentials", None);
    let c = &v["credentials"][0];
    assert_eq!(c["state"], "pending", "{v}");
    assert!(
        c["expires_at"].is_null() && c["failures"].as_u64() >= Some(1),
        "{v}"
    );
    let (_, metrics) = agent.http("GET", "/metrics", None);
    assert!(
        metrics.contains("snykey_credentials{state=\"pending\"} 1"),
        "{metrics}"
    );
    assert!(!agent.helper(&["opend", "cpend"]).status.success());

    // Snyk comes back: the agent's own retry makes the first grant.
    let to: std::net::SocketAddr = fake.url().trim_start_matches("http://").parse().unwrap();
    relay(port, to);
    wait_for("the credential to leave pending", 60, || {
        let (_, v) = agent.json("GET", "/v1/credentials", None);
        if v["credentials"][0]["state"] == "ok" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
    let t = agent.token("opend", "cpend");
    assert!(fake.access_token_valid(&t));
    assert_eq!(fake.replays(), 0);
}

#[test]
fn the_callback_listener_is_bound_only_while_a_login_is_pending() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("ccb", Some("sec-ccb"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = Env::new(&fake.url());
    let agent = env.start_with(&[("SNYKEY_SERVER_CALLBACK_LISTEN", &listen)]);
    assert!(!port_open(port), "bound with no login pending");

    let login = r#"{"org_id":"ocb","client_id":"ccb","client_secret":"sec-ccb"}"#;
    let (st, v) = agent.json("POST", "/v1/login", Some(login));
    assert_eq!(st, 200, "{v}");
    assert!(port_open(port), "not bound while a login is pending");
    let url = v["authorize_url"].as_str().unwrap();
    assert!(
        url.contains(&format!(
            "127.0.0.1%3A{port}%2Fauthorization-code%2Fcallback"
        )),
        "{url}"
    );
    let (st, location, body) = tcp_get(url);
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    // Closed once no login is pending (after a short linger for a reload).
    wait_for("the callback listener to close", 60, || {
        if port_open(port) {
            Err("still bound")
        } else {
            Ok(())
        }
    });

    // A port held by another program is named when a login starts.
    let squatter = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (st, v) = agent.json("POST", "/v1/login", Some(login));
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "callback_unavailable");
    assert!(
        v["error"].as_str().unwrap().contains(&listen)
            && v["error"].as_str().unwrap().contains("callback_listen"),
        "{v}"
    );
    drop(squatter);
    let (st, v) = agent.json("POST", "/v1/login", Some(login));
    assert_eq!(st, 200, "{v}");
    assert!(port_open(port));
}

/// `scripts/test` with a stand-in `cargo` on PATH: killed part-way it says
/// it was interrupted and exits non-zero; a cargo that fails without a
/// failed test (a build error, a killed test binary) is not reported as a pass.
#[test]
fn scripts_test_says_when_it_was_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n\
         [ \"$1\" = deb ] && exit 0\n\
         echo 'test result: ok. 196 passed; 0 failed; 0 ignored'\n\
         case \"$FAKE_CARGO\" in\n\
           slow) exec sleep 60 ;;\n\
           killed) echo 'error: test failed, to rerun pass `--test it`'; echo 'process didn'\\''t exit successfully (signal: 9, SIGKILL: kill)'; exit 101 ;;\n\
         esac\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |mode: &str| {
        Command::new("bash")
            .arg(&script)
            .env("PATH", &path)
            .env("SNYKEY_TEST_NO_INSTALL", "1")
            .env("FAKE_CARGO", mode)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Killed part-way (as a CI timeout does).
    let mut child = run("slow");
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("196 passed") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "scripts/test ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for("scripts/test to stop", 30, || match child.try_wait() {
        Ok(Some(st)) => Ok(st),
        _ => Err("running"),
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains("INTERRUPTED by SIGTERM") && err.contains("not a result"),
        "{err}"
    );
    assert!(!rest.contains("196 passed, 0 failed"), "{rest}");

    // A test binary killed: cargo fails with no failed test counted.
    let out = run("killed").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cargo test exited 101"),
        "{}",
        stderr(&out)
    );
    // And a clean run still reports its total and exits 0.
    let out = run("ok").wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("196 passed, 0 failed in "),
        "{}",
        stdout(&out)
    );
}

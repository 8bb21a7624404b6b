//! Parts of the contract (docs/api.md, docs/configuration.md, docs/storage.md, the README's systemd sections) that no other module pins:
//! 504 on a Snyk timeout, `min_validity` forcing a refresh, the PUT answer,
//! the default paths and the variables clients and the agent read, the
//! OpenBao variables (`BAO_*`, `VAULT_*`, the CA), the Redis key layout with
//! `key_prefix`, JSON logs, and `snykey config-reference`.

use crate::support::agent::{
    Agent, SNYKEY, assert_no_secrets, command, http_on, output_with_stdin, stderr, stdout, wait_for,
};
use crate::support::bao::Bao;
use crate::support::redis::RedisServer;
use crate::support::{Env, FakeSnyk, Fault};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

fn rfc3339(v: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {v}"))
}

/// `snykey ARGS` from a cleared environment plus `env`, `stdin` fed in.
fn cli(home: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut cmd = command(SNYKEY, home);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_with_stdin(&mut cmd, stdin)
}

#[test]
fn a_snyk_timeout_answers_504_snyk_timeout() {
    let fake = FakeSnyk::start();
    fake.new_service_account("cto", "sa-secret-timeout-1");
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (st, v) = agent.json(
        "PUT",
        "/v1/credentials",
        Some(r#"{"org_id":"oto","client_id":"cto","kind":"client_secret","client_secret":"sa-secret-timeout-1"}"#),
    );
    assert_eq!(st, 200, "{v}");
    agent.clear_cache("oto", "cto");
    // Snyk holds every token request for longer than snyk.timeout (3 s).
    fake.lock().delay_all = Some(Duration::from_secs(8));
    let (st, v) = agent.json("GET", "/v1/credentials/oto/cto", None);
    assert_eq!(st, 504, "{v}");
    assert_eq!(v["code"], "snyk_timeout", "{v}");
    assert!(v.get("access_token").is_none(), "{v}");
    // The helper: a temporary failure (75).
    let out = agent.helper(&["oto", "cto"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    fake.lock().delay_all = None;
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn min_validity_forces_a_refresh_of_a_token_that_expires_sooner() {
    let fake = FakeSnyk::start();
    // 20 s tokens, refreshed proactively only at 95 % of their life; callers
    // naming no min_validity want 1 s. A caller's min_validity is capped at
    // half the token's lifetime (10 s here).
    fake.set_expires_in(20);
    let rt = fake.new_oauth_client("cmv", None);
    let mut env = Env::new(&fake.url());
    env.extra_config = "[refresh]\nmin_validity = \"1s\"\nat = 0.95\njitter = 0.0\n".into();
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "omv", "cmv", None, &rt)
            .status
            .success()
    );
    let get = |q: &str| {
        let (st, v) = agent.json("GET", &format!("/v1/credentials/omv/cmv{q}"), None);
        assert_eq!(st, 200, "{q}: {v}");
        v
    };
    // Until the token has less than 9 s left (less than the 10 s a long
    // min_validity asks for, far more than the default 1 s).
    let first = wait_for("the token to have less than 9 s left", 30, || {
        let v = get("");
        let left = rfc3339(&v["expires_at"])
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        if left < Duration::from_secs(9) {
            Ok(v)
        } else {
            Err(format!("{left:?} left"))
        }
    });
    let grants = fake.refresh_grants();
    // The default and a short min_validity: the cached token is good enough.
    assert_eq!(get("")["access_token"], first["access_token"]);
    assert_eq!(
        get("?min_validity=2")["access_token"],
        first["access_token"]
    );
    assert_eq!(
        fake.refresh_grants(),
        grants,
        "no grant for a token valid long enough"
    );
    // An hour (capped at 10 s): longer than it has left, so a refresh.
    let asked = SystemTime::now();
    let second = get("?min_validity=1h");
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(fake.refresh_grants(), grants + 1);
    assert!(fake.access_token_valid(second["access_token"].as_str().unwrap()));
    assert!(
        rfc3339(&second["expires_at"]) >= asked + Duration::from_secs(10),
        "{second}"
    );
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn put_answers_with_the_credential_and_its_expiry_and_no_secret() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cput", Some("sec-cput-1"));
    fake.new_service_account("csaput", "sa-secret-put-1");
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    for (body, kind) in [
        (
            format!(
                r#"{{"org_id":"oput","client_id":"cput","client_secret":"sec-cput-1","refresh_token":"{rt}"}}"#
            ),
            "oauth_app",
        ),
        (
            r#"{"org_id":"oput","client_id":"csaput","kind":"client_secret","client_secret":"sa-secret-put-1"}"#.to_string(),
            "client_secret",
        ),
    ] {
        let asked = SystemTime::now();
        let (st, text) = agent.http("PUT", "/v1/credentials", Some(&body));
        assert_eq!(st, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["client_id", "expires_at", "kind", "org_id"], "{v}");
        assert_eq!(v["org_id"], "oput");
        assert_eq!(v["kind"], kind, "{v}");
        // The token minted at PUT lives an hour at the fake.
        let expires = rfc3339(&v["expires_at"]);
        assert!(
            expires > asked + Duration::from_secs(3000)
                && expires < asked + Duration::from_secs(3700),
            "{v}"
        );
        assert_no_secrets("PUT answer", &text, &fake.secrets());
    }
    // The oauth_app's refresh token was rotated at once: the given one is dead.
    assert!(!fake.refresh_token_alive(&rt));
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn default_paths_xdg_dirs_snykey_socket_and_the_default_config_file() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cdef", None);
    let home = tempfile::Builder::new()
        .prefix("snykey-it-")
        .tempdir()
        .unwrap();
    let h = home.path();
    let (run, state) = (h.join("xdg-run"), h.join("xdg-state"));
    std::fs::create_dir_all(&run).unwrap();
    // An empty config file (in CONFIGURATION_DIRECTORY), no socket or
    // store path: the agent takes $XDG_RUNTIME_DIR and $XDG_STATE_HOME.
    let url = fake.url();
    let agent_env = [
        ("XDG_RUNTIME_DIR", run.to_str().unwrap()),
        ("XDG_STATE_HOME", state.to_str().unwrap()),
        ("SNYKEY_SNYK_API_URL", url.as_str()),
        ("SNYKEY_SERVER_CALLBACK_LISTEN", "127.0.0.1:0"),
    ];
    let socket = run.join("snykey/snykey.sock");
    let agent = Agent::serve_with(h, "xdg", &["serve"], &agent_env, &socket);
    // A client finds it by the same default, without --socket.
    let out = cli(
        h,
        &["status"],
        &[("XDG_RUNTIME_DIR", run.to_str().unwrap())],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // And by SNYKEY_SOCKET, whatever its XDG_RUNTIME_DIR says.
    let out = cli(
        h,
        &[
            "put",
            "--org-id",
            "odef",
            "--client-id",
            "cdef",
            "--refresh-token-file",
            "-",
        ],
        &[
            ("SNYKEY_SOCKET", socket.to_str().unwrap()),
            ("XDG_RUNTIME_DIR", "/nonexistent"),
        ],
        Some(&rt),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Without either, a client looks at /run/snykey/snykey.sock and says so.
    let out = cli(h, &["status"], &[], None);
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/run/snykey/snykey.sock"),
        "{}",
        stderr(&out)
    );
    // The store is in the XDG state dir.
    let store = state.join("snykey/credentials.json");
    let live = fake.live_refresh_token("cdef").unwrap();
    assert!(std::fs::read_to_string(&store).unwrap().contains(&live));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());

    // $CONFIGURATION_DIRECTORY/config.toml (the default file, under systemd)
    // is read when no --config is given.
    let socket2 = h.join("from-the-default-file.sock");
    std::fs::create_dir_all(h.join("etc")).unwrap();
    std::fs::write(
        h.join("etc/config.toml"),
        format!(
            "[server]\nsocket = {socket2:?}\ncallback_listen = \"127.0.0.1:0\"\n[snyk]\napi_url = {url:?}\n[store]\npath = {store:?}\n"
        ),
    )
    .unwrap();
    let agent = Agent::serve_with(h, "etc", &["serve"], &[], &socket2);
    assert!(!socket.exists(), "the old default socket is gone");
    let token = agent.token("odef", "cdef");
    assert!(fake.access_token_valid(&token));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn the_openbao_address_token_and_ca_come_from_bao_and_vault_variables() {
    let fake = FakeSnyk::start();
    let bao = Bao::persistent_tls();
    let ca = bao.tls.as_ref().unwrap().ca.clone();
    assert!(bao.url().starts_with("https://"));
    let url = bao.url();
    for (prefix, org) in [("BAO", "obao"), ("VAULT", "ovault")] {
        let rt = fake.new_oauth_client(&format!("c{org}"), None);
        let mut env = Env::new(&fake.url());
        // The config names only the backend: address, token and CA from the variables.
        env.store_config = "backend = \"openbao\"\n".into();
        let (addr, token, cacert) = (
            format!("{prefix}_ADDR"),
            format!("{prefix}_TOKEN"),
            format!("{prefix}_CACERT"),
        );
        let agent = env.start_with(&[
            (addr.as_str(), url.as_str()),
            (token.as_str(), bao.root_token.as_str()),
            (cacert.as_str(), ca.to_str().unwrap()),
        ]);
        let out = agent.put_oauth(env.path(), org, &format!("c{org}"), None, &rt);
        assert!(out.status.success(), "{prefix}: {}", stderr(&out));
        let live = fake.live_refresh_token(&format!("c{org}")).unwrap();
        assert_eq!(
            bao.kv2_data("kv", &format!("snyk/{org}/c{org}")).unwrap()["refresh_token"],
            live.as_str(),
            "{prefix}"
        );
        assert_eq!(agent.json("GET", "/v1/ready", None).0, 200, "{prefix}");
        let mut secrets = fake.secrets();
        secrets.push(bao.root_token.clone());
        let log = agent.stop_and_log();
        assert_no_secrets("agent log", &log, &secrets);
    }
    // With another CA in BAO_CACERT the server is not trusted: not ready.
    let other = tempfile::tempdir().unwrap();
    let wrong = crate::support::bao::make_tls(other.path()).ca;
    let mut env = Env::new(&fake.url());
    env.store_config = "backend = \"openbao\"\n".into();
    env.write_config();
    let log = env.path().join("wrong-ca.log");
    let mut child = command(SNYKEY, env.path())
        .args(["serve", "--config"])
        .arg(&env.config)
        .env("BAO_ADDR", &url)
        .env("BAO_TOKEN", &bao.root_token)
        .env("BAO_CACERT", &wrong)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let seen = wait_for("the agent to refuse the untrusted server", 60, || {
        if let Ok(Some(st)) = child.try_wait() {
            return Ok(format!("exited with {st}"));
        }
        match crate::support::agent::try_http(&env.socket, "/v1/ready") {
            Ok((503, body)) => Ok(format!("503 {body}")),
            Ok((st, body)) => Err(format!("{st} {body}")),
            Err(e) => Err(e.to_string()),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(!seen.starts_with("exited with exit status: 0"), "{seen}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.to_lowercase().contains("certificate") || seen.contains("certificate"),
        "the refusal names the certificate: {seen}\n{text}"
    );
}

#[test]
fn redis_keys_follow_the_key_prefix_the_lock_and_pkce_layout() {
    let fake = FakeSnyk::start();
    let redis = RedisServer::start();
    let rt = fake.new_oauth_client("clay", Some("sec-clay-1"));
    let mut env = Env::new(&fake.url());
    env.extra_config = format!(
        "[cache]\nbackend = \"redis\"\nurl = {:?}\nkey_prefix = \"kp\"\n",
        redis.url()
    );
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "olay", "clay", Some("sec-clay-1"), &rt)
            .status
            .success()
    );
    // {key_prefix}:{org}:{client} holds the access token, with its lifetime as TTL.
    let token = agent.token("olay", "clay");
    assert_eq!(redis.get("kp:olay:clay").as_deref(), Some(token.as_str()));
    let ttl = redis.pttl("kp:olay:clay");
    assert!(ttl > 0 && ttl <= 3_600_000, "pttl {ttl}");
    assert!(redis.keys("snyk:*").is_empty(), "{:?}", redis.keys("*"));

    // {key_prefix}:lock:{org}:{client} is held, with a TTL, while a refresh runs.
    agent.clear_cache("olay", "clay");
    fake.push_fault(Fault::Delay(Duration::from_millis(2500)));
    let socket = agent.socket.clone();
    let refresh =
        std::thread::spawn(move || http_on(&socket, "GET", "/v1/credentials/olay/clay", None));
    wait_for("the refresh lock in Redis", 20, || {
        match redis.get("kp:lock:olay:clay") {
            Some(_) => Ok(()),
            None => Err(format!("keys {:?}", redis.keys("*"))),
        }
    });
    assert!(
        redis.pttl("kp:lock:olay:clay") > 0,
        "the lock expires by itself"
    );
    let (st, body) = refresh.join().unwrap();
    assert_eq!(st, 200, "{body}");
    wait_for("the lock to be released", 20, || {
        redis.get("kp:lock:olay:clay").is_none()
    });

    // A pending login is pkce:{state} (no prefix: the seed's layout), with
    // the login's lifetime and no client secret; gone once used.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"olay","client_id":"clay","client_secret":"sec-clay-1"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let key = format!("pkce:{}", v["state"].as_str().unwrap());
    let pending = redis.dump_value(&key);
    assert!(
        pending.contains("clay"),
        "{key}: the pending login names its client"
    );
    let ttl = redis.pttl(&key);
    assert!(ttl > 0 && ttl <= 600_000, "pttl {ttl}");
    for k in redis.keys("*") {
        assert!(
            !redis.dump_value(&k).contains("sec-clay-1"),
            "the client secret is in Redis under {k}"
        );
    }
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cjs", Some("sec-cjs-1"));
    let env = Env::new(&fake.url());
    env.write_config();
    let agent = Agent::serve_with(
        env.path(),
        "json",
        &[
            "serve",
            "--log-format",
            "json",
            "--config",
            env.config.to_str().unwrap(),
        ],
        &[],
        &env.socket,
    );
    assert!(
        agent
            .put_oauth(env.path(), "ojs", "cjs", Some("sec-cjs-1"), &rt)
            .status
            .success()
    );
    agent.token("ojs", "cjs");
    let log = agent.stop_and_log();
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if let Some(m) = v["fields"]["message"].as_str() {
            messages.push(m.to_string());
        }
    }
    assert!(
        messages.iter().any(|m| m == "snykey agent ready"),
        "{messages:?}"
    );
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// `snykey config-reference` prints the committed `docs/configuration.md`,
/// whatever the environment says (the reference shows the embedded
/// defaults, not this host's), and `--help` lists it.
#[test]
fn config_reference_prints_the_committed_reference() {
    let dir = tempfile::tempdir().unwrap();
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    for env in [
        vec![],
        vec![
            ("SNYKEY_SNYK_API_URL", "https://api.eu.snyk.io"),
            ("BAO_ADDR", "https://bao.internal:8200"),
        ],
    ] {
        let out = cli(dir.path(), &["config-reference"], &env, None);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out) == committed,
            "snykey config-reference differs from docs/configuration.md: run `cargo run --bin snykey -- config-reference > docs/configuration.md`"
        );
    }
    let help = stdout(&cli(dir.path(), &["--help"], &[], None));
    assert!(help.contains("config-reference"), "{help}");
}

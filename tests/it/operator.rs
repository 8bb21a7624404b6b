//! Operator experience (issue 14): forced refresh, usage errors, help,
//! `--version`, completions and man pages, systemd directories and
//! credentials, the login's early refusal and its countdown off a terminal.

use crate::support::agent::{HELPER, SNYKEY, assert_no_secrets, stderr, stdout};
use crate::support::redis::RedisServer;
use crate::support::{Env, FakeSnyk};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn forced_refresh_mints_a_newer_token_and_is_rate_limited_per_credential() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cf", None);
    let mut env = Env::new(&fake.url());
    env.extra_config = "[refresh]\nforce_interval = \"2s\"\n".into();
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "of", "cf", None, &rt)
            .status
            .success()
    );
    let first = stdout(&agent.helper(&["of", "cf"]));
    let grants = fake.refresh_grants();

    // `snykey refresh`: a new token through the rotation rule (one grant).
    let out = agent.cli(&["refresh", "of", "cf"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("of/cf: a new access token, valid until"));
    assert_eq!(fake.refresh_grants(), grants + 1);
    let forced = stdout(&agent.helper(&["of", "cf"]));
    assert_ne!(
        forced, first,
        "a forced refresh must hand out a newer token"
    );
    assert!(fake.access_token_valid(forced.trim()));

    // Inside the interval: a loop of helpers gets that token, no new grant.
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let socket = agent.socket.clone();
            std::thread::spawn(move || {
                crate::support::agent::clean(HELPER)
                    .arg("--socket")
                    .arg(&socket)
                    .args(["--refresh", "of", "cf"])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), forced);
    }
    assert_eq!(fake.refresh_grants(), grants + 1, "rate limit not honoured");
    // Other credentials are not limited by this one's forced refresh.
    let rt2 = fake.new_oauth_client("cg", None);
    assert!(
        agent
            .put_oauth(env.path(), "of", "cg", None, &rt2)
            .status
            .success()
    );
    let before = fake.refresh_grants();
    let out = agent.helper(&["--refresh", "of", "cg"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.refresh_grants(), before + 1);

    // After the interval, the next forced refresh mints again.
    std::thread::sleep(Duration::from_millis(2100));
    let before = fake.refresh_grants();
    let out = agent.helper(&["--refresh", "of", "cf"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(stdout(&out), forced);
    assert_eq!(fake.refresh_grants(), before + 1);
    assert_eq!(fake.replays(), 0);

    // An unknown credential is 66 like any token request; a bad id 64.
    assert_eq!(
        agent.helper(&["--refresh", "of", "nobody"]).status.code(),
        Some(66)
    );
    assert_eq!(
        agent.cli(&["refresh", "of", "a:b"], None).status.code(),
        Some(64)
    );
    let (status, _) = agent.http("POST", "/v1/credentials/of/cf/refresh", None);
    assert_eq!(status, 200);
    assert_no_secrets("agent log", &agent.log_text(), &fake.secrets());
    let metrics = agent.http("GET", "/metrics", None).1;
    assert!(
        metrics.contains("snykey_forced_refreshes_total{result=\"rate_limited\"} 7"),
        "{metrics}"
    );
}

#[test]
fn usage_errors_exit_64_and_help_says_what_and_how() {
    for args in [
        vec!["--bogus"],
        vec!["token"],
        vec!["put", "--org-id", "o"],
        vec!["completions", "tcsh"],
        vec!["nosuchcommand"],
    ] {
        let out = crate::support::agent::clean(SNYKEY)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty());
    }
    let out = crate::support::agent::clean(SNYKEY)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Exit codes: 0 ok, 64 usage"));
    // Every option of every subcommand has a help text.
    for sub in [
        "serve",
        "put",
        "token",
        "refresh",
        "status",
        "delete",
        "login",
        "register-app",
        "check-config",
        "config-reference",
        "completions",
        "man",
    ] {
        let out = crate::support::agent::clean(SNYKEY)
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub}");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            if !(trimmed.starts_with("--") || trimmed.starts_with("-h, ")) {
                continue;
            }
            let indent = line.len() - trimmed.len();
            // "--flag <VALUE>  help" on one line, or the help on the next,
            // indented further (clap's layout for long texts).
            let same_line = trimmed.split("  ").filter(|p| !p.trim().is_empty()).count() >= 2;
            let next_line = lines.get(i + 1).is_some_and(|n| {
                let t = n.trim_start();
                !t.is_empty() && !t.starts_with('-') && n.len() - t.len() > indent
            });
            assert!(
                same_line || next_line,
                "`snykey {sub}`: an option without help: {line:?}\n{text}"
            );
        }
    }
    let out = crate::support::agent::clean(HELPER)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    assert!(help.starts_with("snykey-helper: prints a fresh Snyk OAuth access token"));
    assert!(help.contains("Exit codes: 0 ok; 64 usage; 66 unknown credential"));
    assert!(help.contains("--refresh"));
}

#[test]
fn version_names_the_git_commit() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| stdout(&o).trim().to_string());
    for (bin, name) in [(SNYKEY, "snykey"), (HELPER, "snykey-helper")] {
        let out = Command::new(bin).arg("--version").output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let v = stdout(&out);
        assert!(
            v.starts_with(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{v}"
        );
        // Built from this checkout: the commit is HEAD's (or a later build's).
        if let Some(c) = &commit {
            assert!(v.contains(c.as_str()), "{v} does not name {c}");
        } else {
            assert!(v.contains("(commit unknown"), "{v}");
        }
    }
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    for (shell, marker) in [
        ("bash", "_snykey()"),
        ("zsh", "#compdef snykey"),
        ("fish", "complete -c snykey"),
    ] {
        let out = crate::support::agent::clean(SNYKEY)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("refresh") && text.contains("check-config"));
    }
    let out = crate::support::agent::clean(SNYKEY)
        .arg("man")
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH snykey 1"));
    assert!(
        page.contains(".TH snykey 1") && page.contains("refresh"),
        "{page}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .args(["man", "--dir"])
        .arg(dir.path().join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["snykey.1", "snykey-refresh.1", "snykey-serve.1"] {
        let text = std::fs::read_to_string(dir.path().join("man1").join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains(".TH"), "{f}");
    }
}

/// The agent under systemd's directory and credential variables, as
/// `StateDirectory=`, `RuntimeDirectory=`, `ConfigurationDirectory=` and
/// `LoadCredential=` set them: the config file, the socket and the file
/// store are found there, and the Redis ACL password comes from a credential.
#[test]
fn systemd_directories_and_credentials_place_everything() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cs", None);
    let redis = RedisServer::start();
    let password = "p@ss:w/rd with spaces%";
    {
        let mut c = redis.conn().unwrap();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("snykey")
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query::<()>(&mut c)
            .unwrap();
        // Without the password nobody gets in: success below proves it was used.
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("off")
            .query::<()>(&mut c)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (state, runtime, conf, creds) = (d("state"), d("run"), d("conf"), d("creds"));
    std::fs::write(creds.join("redis-password"), format!("{password}\n")).unwrap();
    std::fs::write(
        conf.join("config.toml"),
        format!(
            "[server]\ncallback_listen = \"127.0.0.1:0\"\n[snyk]\napi_url = {:?}\ntimeout = \"3s\"\n[cache]\nbackend = \"redis\"\nurl = {:?}\nusername = \"snykey\"\npassword_file = \"redis-password\"\nkey_prefix = \"sd\"\n",
            fake.url(),
            redis.url()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.log");
    let mut child = crate::support::agent::clean(SNYKEY)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("SNYKEY_LOG", "trace")
        .env("STATE_DIRECTORY", &state)
        .env("RUNTIME_DIRECTORY", &runtime)
        .env("CONFIGURATION_DIRECTORY", &conf)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let socket = runtime.join("snykey.sock");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "no socket in $RUNTIME_DIRECTORY; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cli = |args: &[&str], input: Option<&str>| {
        let mut c = crate::support::agent::clean(SNYKEY)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(i) = input {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        c.wait_with_output().unwrap()
    };
    let out = cli(
        &[
            "put",
            "--org-id",
            "os",
            "--client-id",
            "cs",
            "--refresh-token-file",
            "-",
        ],
        Some(&rt),
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.status.success(), "{}\n{}", stderr(&out), log_text());
    // The file store and the journal live in $STATE_DIRECTORY.
    assert!(state.join("credentials.json").exists(), "{}", log_text());
    assert!(state.join("journal").is_dir());
    // The token went to Redis through the ACL user.
    let client = redis::Client::open(format!(
        "redis://snykey:{}@127.0.0.1:{}/0",
        "p%40ss%3Aw%2Frd%20with%20spaces%25", redis.port
    ))
    .unwrap();
    let mut c = client.get_connection().unwrap();
    let cached: Option<String> = redis::cmd("GET").arg("sd:os:cs").query(&mut c).unwrap();
    assert!(cached.is_some_and(|t| fake.access_token_valid(&t)));
    let mut secrets = fake.secrets();
    secrets.push(password.into());
    secrets.push("p%40ss".into());
    let check = crate::support::agent::clean(SNYKEY)
        .arg("check-config")
        .env("CONFIGURATION_DIRECTORY", &conf)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains(&format!(
        "password_file = {:?}",
        creds.join("redis-password").display().to_string()
    )));
    assert_no_secrets("check-config", &stdout(&check), &secrets);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_no_secrets("agent log", &log_text(), &secrets);
    assert!(!socket.exists(), "the agent removes the socket it created");
}

#[test]
fn login_without_a_stored_credential_or_a_secret_refuses_at_once() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let started = Instant::now();
    let out = agent.cli(
        &[
            "login",
            "--org-id",
            "ol",
            "--client-id",
            "cl",
            "--no-browser",
        ],
        None,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--client-secret-file"), "{err}");
    assert!(!err.contains("snykey status"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn login_countdown_off_a_terminal_prints_lines_not_carriage_returns() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cc", None);
    let mut env = Env::new(&fake.url());
    env.server_config = "login_timeout = \"3s\"\n".into();
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "oc", "cc", None, &rt)
            .status
            .success()
    );
    // Nobody comes back from the browser: the login expires after 3 s.
    let out = agent.cli(
        &[
            "login",
            "--org-id",
            "oc",
            "--client-id",
            "cc",
            "--no-browser",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains('\r'), "{err:?}");
    let waiting = err
        .lines()
        .filter(|l| l.starts_with("waiting for the browser"))
        .count();
    assert_eq!(waiting, 1, "one line per minute left: {err}");
}

#[test]
fn check_config_shows_the_effective_log_level_and_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .arg("check-config")
        .env("SNYKEY_SOCKET", dir.path().join("s.sock"))
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("log_level = \"info\""), "{text}");
    assert!(text.contains("force_interval = \"10s\""), "{text}");
    // A relative *_file without $CREDENTIALS_DIRECTORY is refused, naming the key.
    let out = crate::support::agent::clean(SNYKEY)
        .arg("check-config")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("SNYKEY_SOCKET", dir.path().join("s.sock"))
        .env("SNYKEY_CACHE_PASSWORD_FILE", "redis-password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("cache.password_file")
            && stderr(&out).contains("CREDENTIALS_DIRECTORY"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn doctor_passes_on_a_healthy_agent_and_names_the_remedy_for_each_failure() {
    use std::os::unix::fs::PermissionsExt;
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cd", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "od", "cd", None, &rt)
            .status
            .success()
    );
    let doctor = |args: &[&str]| {
        crate::support::agent::clean(SNYKEY)
            .arg("--socket")
            .arg(&agent.socket)
            .arg("doctor")
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .output()
            .unwrap()
    };
    // The generated config is 0644: more open than a config that may name
    // secrets should be.
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "✗ modes: config {} is 0644, more open than 0640 → chmod 0640",
            env.config.display()
        )),
        "{text}"
    );
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = doctor(&[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for name in [
        "✓ socket:",
        "✓ agent:",
        "✓ config:",
        "✓ store and cache:",
        "✓ store: file store",
        "✓ cache: memory",
        "✓ snyk:",
        "✓ clock: within",
        "✓ credential: od/cd: ok",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(text.ends_with("all checks passed\n"), "{text}");

    // A credential whose refresh token Snyk no longer takes: the remedy is a login.
    fake.revoke(&fake.live_refresh_token("cd").unwrap());
    let _ = agent.helper(&["--refresh", "od", "cd"]);
    let out = doctor(&["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let cred = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "credential")
        .unwrap();
    assert_eq!(cred["ok"], false, "{report}");
    assert_eq!(
        cred["remedy"], "snykey login --org-id od --client-id cd",
        "{report}"
    );
    assert_no_secrets("doctor", &stdout(&out), &fake.secrets());

    // No agent: the socket and agent checks fail and say how to start it.
    assert_eq!(agent.stop(), Some(0));
    let out = crate::support::agent::clean(SNYKEY)
        .arg("--socket")
        .arg(env.path().join("run/snykey.sock"))
        .args(["doctor", "--config"])
        .arg(&env.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("✗ socket:"), "{text}");
    assert!(
        text.contains("✗ agent:") && text.contains("snykey serve"),
        "{text}"
    );
    // The checks that do not need the agent still run.
    assert!(text.contains("✓ snyk:"), "{text}");
}

/// A first start on an empty OpenBao store: no ERROR line (vaultrs logs the
/// 404 of an empty list as errors of its own), and a handful of info lines
/// that say what was chosen and what to do next.
#[test]
fn a_first_start_on_an_empty_openbao_store_is_quiet_and_says_what_next() {
    let fake = FakeSnyk::start();
    let bao = crate::support::bao::Bao::dev();
    let mut env = Env::new(&fake.url());
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, &bao.root_token).unwrap();
    // Private, as an operator keeps it (a 0644 secret is a start-up warning).
    std::fs::set_permissions(
        &token_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\n",
        bao.url()
    );
    let agent = env.start_with(&[("SNYKEY_LOG", "info")]);
    let (status, _) = agent.http("GET", "/v1/credentials", None);
    assert_eq!(status, 200);
    assert_eq!(agent.stop(), Some(0));
    let log = std::fs::read_to_string(env.path().join("agent-1.log")).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "ERROR lines on a clean start:\n{log}");
    assert!(
        log.contains("no credentials yet: add one with `snykey put"),
        "{log}"
    );
    let lines = log.lines().count();
    assert!(lines <= 8, "{lines} lines for a start and stop:\n{log}");
}

#[test]
fn sinks_keep_a_token_file_current_atomically_with_the_mode_and_group_asked() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("ck", None);
    let mut env = Env::new(&fake.url());
    let sinks = env.path().join("sinks");
    std::fs::create_dir_all(&sinks).unwrap();
    let daemon_gid: u32 = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("daemon:x:"))
        .and_then(|r| r.split(':').next())
        .and_then(|g| g.parse().ok())
        .expect("a daemon group in /etc/group");
    let token_file = sinks.join("token");
    let json_file = sinks.join("token.json");
    env.server_config = format!("sink_dirs = [{:?}]\n", sinks.display().to_string());
    env.extra_config = format!(
        "[refresh]\nforce_interval = \"0s\"\n\n[[sink]]\norg_id = \"ok\"\nclient_id = \"ck\"\npath = {:?}\nmode = \"0640\"\ngroup = \"daemon\"\n\n[[sink]]\norg_id = \"ok\"\nclient_id = \"ck\"\npath = {:?}\nformat = \"json\"\nmode = \"0600\"\n",
        token_file.display().to_string(),
        json_file.display().to_string()
    );
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ok", "ck", None, &rt)
            .status
            .success()
    );
    let wait_for_content = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = std::fs::read_to_string(&token_file).unwrap_or_default();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sink holds {got:?}, not {want:?}; log:\n{}",
                agent.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let token = stdout(&agent.helper(&["ok", "ck"]));
    wait_for_content(&token);
    let m = std::fs::metadata(&token_file).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
    assert_eq!(m.gid(), daemon_gid);
    // The two sinks are written one after the other: wait for the second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let json: serde_json::Value = loop {
        let got = std::fs::read_to_string(&json_file).unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&got) {
            Ok(v) if v["access_token"] == token.trim() => break v,
            _ => assert!(
                Instant::now() < deadline,
                "the JSON sink holds {got:?}; log:\n{}",
                agent.log_text()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let m = std::fs::metadata(&json_file).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert_eq!(json["access_token"], token.trim());

    // A reader loop during refreshes sees only whole tokens.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let path = token_file.clone();
        let len = token.len();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = std::fs::read_to_string(&path).unwrap();
                assert!(
                    got.len() == len && got.ends_with('\n') && !got.trim_end().contains('\n'),
                    "a partial token file: {got:?}"
                );
                reads += 1;
            }
            reads
        })
    };
    let mut last = token.clone();
    for _ in 0..4 {
        let out = agent.helper(&["--refresh", "ok", "ck"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let new = stdout(&out);
        assert_ne!(new, last);
        wait_for_content(&new);
        last = new;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 10, "the reader ran {reads} times");
    // No temp files left in the sink directory once the writes settle (the
    // JSON sink is written just after the plain one, so a listing taken at
    // that instant may see its temp file: it must be gone within moments).
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&sinks)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while listing() != ["token", "token.json"] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(listing(), vec!["token", "token.json"]);

    // The credential is gone: so is its token file (never a stale token).
    let (status, _) = agent.http("DELETE", "/v1/credentials/ok/ck", None);
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while token_file.exists() || json_file.exists() {
        assert!(Instant::now() < deadline, "the token files stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_no_secrets("agent log", &agent.log_text(), &fake.secrets());
}

#[test]
fn a_sink_outside_the_allowed_directories_or_over_a_symlink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("sinks");
    let outside = dir.path().join("elsewhere");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(outside.join("target"), allowed.join("link")).unwrap();
    let check = |path: &Path| {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nsocket = {:?}\nsink_dirs = [{:?}]\n\n[[sink]]\norg_id = \"o\"\nclient_id = \"c\"\npath = {:?}\n",
                dir.path().join("s.sock").display().to_string(),
                allowed.display().to_string(),
                path.display().to_string()
            ),
        )
        .unwrap();
        crate::support::agent::clean(SNYKEY)
            .args(["check-config", "--config"])
            .arg(&config)
            .env("XDG_STATE_HOME", dir.path())
            .output()
            .unwrap()
    };
    let out = check(&allowed.join("token"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("[[sink]]"));
    let out = check(&outside.join("token"));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("sink[0].path") && stderr(&out).contains("server.sink_dirs"),
        "{}",
        stderr(&out)
    );
    let out = check(&allowed.join("link"));
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert!(!outside.join("target").exists());
}

#[test]
fn a_sink_never_keeps_an_expired_token() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(4);
    let rt = fake.new_oauth_client("cx", None);
    let mut env = Env::new(&fake.url());
    let sinks = env.path().join("run");
    std::fs::create_dir_all(&sinks).unwrap();
    let token_file = sinks.join("token");
    env.extra_config = format!(
        "[[sink]]\norg_id = \"ox\"\nclient_id = \"cx\"\npath = {:?}\n",
        token_file.display().to_string()
    );
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ox", "cx", None, &rt)
            .status
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !token_file.exists() {
        assert!(
            Instant::now() < deadline,
            "no token file; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Snyk stops taking the refresh token: no new token will come.
    fake.revoke(&fake.live_refresh_token("cx").unwrap());
    let written = std::fs::read_to_string(&token_file).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(12);
    while token_file.exists() {
        assert!(
            Instant::now() < deadline,
            "the token file outlived its token; log:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!written.is_empty());
    // The line follows the unlink by a moment: polled, not read at once.
    crate::support::agent::wait_for("the removal to be logged", 10, || {
        agent.log_text().contains("removed the token file")
    });
}

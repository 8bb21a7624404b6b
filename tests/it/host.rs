//! Host agent and sidecar integration (issue 7): systemd units, socket
//! activation, sd_notify, peer credentials, metrics, SIGHUP — with the real
//! systemd-analyze, systemd-socket-activate, setpriv and promtool.

use crate::support::agent::{HELPER, SNYKEY, assert_no_secrets, http_on, stderr, stdout, wait_for};
use crate::support::{Agent, Env, FakeSnyk, Fault};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Fails (never skips) when a required tool is missing, saying how to get it.
fn require(tool: &str, package: &str) -> String {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.exists())
        })
        .unwrap_or_default();
    match found {
        Some(p) => p.display().to_string(),
        None => panic!(
            "{tool} is required by this test: install it with `apt-get install {package}` (.ci/run does)"
        ),
    }
}

/// The value of `key=` in a unit's text (the last one, as systemd reads it).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn seconds(value: &str) -> u64 {
    value
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("not whole seconds: {value}"))
}

/// `systemd-analyze verify` with this machine's systemd on the units as
/// shipped, and with every commented `LoadCredential=` example switched on:
/// any "ignoring" or "unknown" line fails (on systemd 252 `Type=notify-reload`
/// was "ignoring", and the unit silently ran as `Type=simple`). And what the
/// unit promises, checked in its text: readiness and a reload that reports
/// (Type=notify, ExecReload=snykey reload), no restart loop for an error a
/// restart cannot fix, no RuntimeDirectory= (which took the socket directory
/// from the clients), the log level left to the config file.
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = require("systemd-analyze", "systemd");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let service = std::fs::read_to_string(root.join("snykey.service")).unwrap();
    assert_eq!(unit_value(&service, "Type"), Some("notify"));
    assert_eq!(
        unit_value(&service, "ExecReload"),
        Some("/usr/bin/snykey reload")
    );
    assert!(service.contains("WatchdogSec=") && service.contains("CapabilityBoundingSet=\n"));
    assert!(service.contains("#LoadCredential=redis-password:"));
    for gone in [
        "RuntimeDirectory",
        "RuntimeDirectoryPreserve",
        "Environment",
    ] {
        assert_eq!(
            unit_value(&service, gone),
            None,
            "{gone}= is back in the unit"
        );
    }
    assert_eq!(unit_value(&service, "ReadWritePaths"), Some("/run/snykey"));
    // An invalid config, no CA certificates, an unreadable store: exit 78,
    // which systemd must not restart; every other failure is retried, and a
    // start limit that can trip with RestartSec= ends a loop.
    let prevented: Vec<i32> = unit_value(&service, "RestartPreventExitStatus")
        .unwrap_or_default()
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert!(prevented.contains(&snykey::exit::CONFIG) && prevented.contains(&snykey::exit::USAGE));
    let burst: u64 = unit_value(&service, "StartLimitBurst")
        .unwrap()
        .parse()
        .unwrap();
    let interval = seconds(unit_value(&service, "StartLimitIntervalSec").unwrap());
    let restart_sec = seconds(unit_value(&service, "RestartSec").unwrap());
    assert!(
        burst * restart_sec < interval,
        "{burst} starts {restart_sec} s apart never fit in {interval} s: the start limit cannot trip"
    );
    let socket = std::fs::read_to_string(root.join("snykey.socket")).unwrap();
    assert_eq!(unit_value(&socket, "SocketGroup"), Some("snykey-clients"));
    let tmpfiles = std::fs::read_to_string(root.join("snykey.tmpfiles")).unwrap();
    assert!(tmpfiles.contains("d /run/snykey      0750 snykey snykey-clients -"));

    // The credential examples, uncommented (their config hints stay comments).
    let with_credentials: String = service
        .lines()
        .map(|l| {
            l.strip_prefix('#')
                .filter(|r| r.starts_with("LoadCredential"))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(with_credentials.contains("\nLoadCredential=openbao-token:"));
    for text in [&service, &with_credentials] {
        let dir = tempfile::tempdir().unwrap();
        // verify checks that ExecStart exists: point it at the binary under test.
        std::fs::write(
            dir.path().join("snykey.service"),
            text.replace("/usr/bin/snykey", SNYKEY),
        )
        .unwrap();
        std::fs::copy(root.join("snykey.socket"), dir.path().join("snykey.socket")).unwrap();
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(dir.path().join("snykey.socket"))
            .arg(dir.path().join("snykey.service"))
            .output()
            .unwrap();
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            out.status.success(),
            "systemd-analyze verify failed:\n{said}"
        );
        for line in said.lines() {
            let l = line.to_ascii_lowercase();
            assert!(
                !l.contains("ignoring") && !l.contains("unknown"),
                "systemd-analyze verify: {line}"
            );
        }
        assert!(said.trim().is_empty(), "warnings from verify: {said}");
    }
}

#[test]
fn socket_activation_serves_and_never_removes_the_activated_socket() {
    let activate = require("systemd-socket-activate", "systemd");
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("csa", None);
    let mut env = Env::new(&fake.url());
    // Write the config by starting nothing: Env writes it on start; do it by hand here.
    let sock = env.path().join("activated.sock");
    env.extra_config.clear();
    let cfg = env.path().join("sa.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nsocket = {:?}\ncallback_listen = \"127.0.0.1:0\"\n[snyk]\napi_url = {:?}\ntimeout = \"3s\"\n[store]\npath = {:?}\njournal_dir = {:?}\n",
            env.socket, fake.url(), env.store, env.journal
        ),
    )
    .unwrap();
    let log = std::fs::File::create(env.path().join("sa.log")).unwrap();
    let mut child = Command::new(&activate)
        .arg("-l")
        .arg(&sock)
        .args(["-E", "SNYKEY_LOG=trace", SNYKEY, "serve", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate did not create the socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first connection starts the agent on the inherited socket.
    let (st, _) = http_on(&sock, "GET", "/v1/health", None);
    assert_eq!(st, 200);
    let body = format!(r#"{{"org_id":"osa","client_id":"csa","refresh_token":"{rt}"}}"#);
    let (st, v) = http_on(&sock, "PUT", "/v1/credentials", Some(&body));
    assert_eq!(st, 200, "{v}");
    let out = crate::support::agent::clean(HELPER)
        .arg("--socket")
        .arg(&sock)
        .args(["osa", "csa"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert!(
        !env.socket.exists(),
        "the agent must not bind its configured socket when activated"
    );
    // SIGTERM: exits 0 and leaves the socket it did not create.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        sock.exists(),
        "an activated socket belongs to systemd and must survive the agent"
    );
    let log = std::fs::read_to_string(env.path().join("sa.log")).unwrap();
    assert!(log.contains("activated=true"), "{log}");
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert_eq!(fake.replays(), 0);
}

fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("did not receive {want} within {within:?}; got {seen:?}");
}

#[test]
fn sd_notify_ready_watchdog_and_stopping() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let notify = env.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    // Intervals are measured: in the serial group.
    let _serial = crate::support::wait::timing();
    let agent = env.start_with(&[
        ("NOTIFY_SOCKET", notify.to_str().unwrap()),
        ("WATCHDOG_USEC", "2000000"),
    ]);
    let got = recv_until(&listener, "READY=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.contains("STATUS=0 credential(s)")),
        "{got:?}"
    );
    // Pings at half of WATCHDOG_USEC (2 s): the median of four intervals is
    // about 1 s, far from the 2 s at which systemd would kill the agent and
    // from a spin (the bounds leave room for a loaded machine).
    let mut at = Vec::new();
    for _ in 0..5 {
        recv_until(&listener, "WATCHDOG=1", Duration::from_secs(10));
        at.push(Instant::now());
    }
    let mut gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    assert!(
        gaps[gaps.len() / 2] >= Duration::from_millis(500)
            && gaps[gaps.len() / 2] <= Duration::from_millis(1600),
        "watchdog ping intervals {gaps:?}: expected about half of WATCHDOG_USEC (1 s)"
    );
    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
    agent.signal(libc::SIGHUP);
    let got = recv_until(&listener, "READY=1", Duration::from_secs(5));
    assert!(
        got.iter()
            .any(|m| m.contains("RELOADING=1") && m.contains("MONOTONIC_USEC=")),
        "{got:?}"
    );
    agent.signal(libc::SIGTERM);
    recv_until(&listener, "STOPPING=1", Duration::from_secs(5));
    assert_eq!(agent.stop(), Some(0));
}

fn helper_as(
    socket: &Path,
    reuid: u32,
    regid: u32,
    groups: &str,
    args: &[&str],
) -> std::process::Output {
    let setpriv = require("setpriv", "util-linux");
    Command::new(setpriv)
        .args(["--reuid", &reuid.to_string(), "--regid", &regid.to_string()])
        .args(if groups.is_empty() {
            vec!["--clear-groups".to_string()]
        } else {
            vec!["--groups".to_string(), groups.to_string()]
        })
        .arg(HELPER)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn peers_are_checked_by_uid_and_primary_or_supplementary_gid() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cp", None);
    let mut env = Env::new(&fake.url());
    // Everyone may open the socket; the allow-list decides.
    env.extra_config = String::new();
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        env.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = env.start_with(&[
        ("SNYKEY_SERVER_SOCKET_MODE", "0666"),
        ("SNYKEY_SERVER_ALLOWED_UIDS", "4000"),
        ("SNYKEY_SERVER_ALLOWED_GIDS", "4242"),
    ]);
    assert!(
        agent
            .put_oauth(env.path(), "op", "cp", None, &rt)
            .status
            .success(),
        "the agent's own uid is always allowed"
    );

    // Not allowed: 403 → exit 77, and the agent logs uid/gid/pid.
    let out = helper_as(&agent.socket, 65534, 65534, "", &["op", "cp"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("uid 65534"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let log = agent.log_text();
    assert!(
        log.contains("uid=65534") && log.contains("pid="),
        "the refusal is logged with uid/gid/pid"
    );
    // Allowed by uid.
    let out = helper_as(&agent.socket, 4000, 65534, "", &["op", "cp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Allowed by a supplementary group (a pod's fsGroup): primary gid differs.
    let out = helper_as(&agent.socket, 65534, 65534, "4242", &["op", "cp"]);
    assert!(
        out.status.success(),
        "supplementary gid must be honoured: {}",
        stderr(&out)
    );
    // Allowed by primary gid.
    let out = helper_as(&agent.socket, 65534, 4242, "", &["op", "cp"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let (_, metrics) = agent.http("GET", "/metrics", None);
    assert!(metrics.contains("snykey_denied_peers_total 1"), "{metrics}");
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn sighup_applies_a_new_allow_list_without_dropping_in_flight_requests() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("chup", None);
    let mut env = Env::new(&fake.url());
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    std::fs::set_permissions(
        env.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.server_config = "socket_mode = \"0666\"\nallowed_uids = [1]\n".into();
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ohup", "chup", None, &rt)
            .status
            .success()
    );
    assert_eq!(
        helper_as(&agent.socket, 65534, 65534, "", &["ohup", "chup"])
            .status
            .code(),
        Some(77)
    );

    // A slow refresh is in flight while the config changes and SIGHUP lands:
    // SIGHUP is sent once the fake holds the refresh request.
    agent.clear_cache("ohup", "chup");
    fake.push_fault(Fault::Delay(Duration::from_millis(2500)));
    let requests = fake.lock().token_requests;
    let socket = agent.socket.clone();
    let in_flight =
        std::thread::spawn(move || http_on(&socket, "GET", "/v1/credentials/ohup/chup", None));
    wait_for("the refresh to reach the fake", 20, || {
        fake.lock().token_requests > requests
    });
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace(
            "allowed_uids = [1]",
            "allowed_uids = [65534]\nallowed_gids = [65534]",
        ),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    let (st, body) = in_flight.join().unwrap();
    assert_eq!(st, 200, "the in-flight request completes: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(fake.access_token_valid(v["access_token"].as_str().unwrap()));
    // The new allow-list is in force, on a fresh connection and for open ones.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = helper_as(&agent.socket, 65534, 65534, "", &["ohup", "chup"]);
        if out.status.success() {
            assert!(fake.access_token_valid(stdout(&out).trim()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded allow-list did not apply: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = agent.log_text();
    assert!(log.contains("SIGHUP: configuration reloaded"), "{log}");
    // A setting that cannot change live is reported, not silently ignored.
    reload_with_a_restart_only_change(&env, &agent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !agent.log_text().contains("cannot change while running") {
        assert!(
            Instant::now() < deadline,
            "the restart-only change was not reported"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    agent.stop();
    assert_eq!(fake.replays(), 0);
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let promtool = require("promtool", "prometheus");
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cmet", None);
    let mut env = Env::new(&fake.url());
    env.extra_config = String::new();
    // Port 0: the agent binds a free port itself and logs the one it got.
    let agent = env.start_with(&[("SNYKEY_SERVER_METRICS_LISTEN", "127.0.0.1:0")]);
    let port = wait_for("the metrics listener's address in the log", 20, || {
        let log = agent.log_text();
        log.lines()
            .find(|l| l.contains("serving /metrics over TCP"))
            .and_then(|l| l.split("addr=127.0.0.1:").nth(1))
            .and_then(|p| {
                p.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<u16>()
                    .ok()
            })
            .filter(|p| *p != 0)
            .ok_or("no \"serving /metrics over TCP\" line with a port yet")
    });
    assert!(
        agent
            .put_oauth(env.path(), "omet", "cmet", None, &rt)
            .status
            .success()
    );
    for _ in 0..3 {
        assert!(agent.helper(&["omet", "cmet"]).status.success());
    }
    assert_eq!(agent.helper(&["omet", "nope"]).status.code(), Some(66));
    let (st, text) = agent.http("GET", "/metrics", None);
    assert_eq!(st, 200);
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        stdout(&out),
        stderr(&out)
    );
    for expected in [
        "snykey_refreshes_total{result=\"ok\"} 1",
        "snykey_cache_hits_total 3",
        "snykey_requests_total{route=\"get_token\",status=\"200\"} 3",
        "snykey_requests_total{route=\"get_token\",status=\"404\"} 1",
        "snykey_requests_total{route=\"put_credential\",status=\"200\"} 1",
        "snykey_credentials{state=\"ok\"} 1",
        "snykey_snyk_request_duration_seconds_count 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("omet") && !text.contains("cmet"),
        "no ids as labels"
    );
    // The same registry over TCP.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::Read;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut tcp = String::new();
    s.read_to_string(&mut tcp).unwrap();
    assert!(
        tcp.starts_with("HTTP/1.1 200") && tcp.contains("snykey_cache_hits_total"),
        "{tcp}"
    );
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /v1/credentials HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut tcp = String::new();
    s.read_to_string(&mut tcp).unwrap();
    assert!(
        tcp.starts_with("HTTP/1.1 404"),
        "credentials are never served over TCP: {tcp}"
    );
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn sighup_applies_a_changed_log_level_from_the_file() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    env.server_config = "log_level = \"warn\"\n".into();
    // No SNYKEY_LOG: the file's level is the one in force.
    let agent = env.start_with(&[("SNYKEY_LOG", "")]);
    agent.http("GET", "/v1/health", None);
    // A reload that changes a restart-only setting: its WARN line shows the
    // log is written at all, and the INFO lines around it must be missing.
    reload_with_a_restart_only_change(&env, &agent);
    wait_for("the reload's warning", 20, || {
        agent.log_text().contains("cannot change while running")
    });
    let log = agent.log_text();
    for info in [
        "snykey agent ready",
        "SIGHUP: configuration reloaded",
        " INFO ",
        " DEBUG ",
    ] {
        assert!(
            !log.contains(info),
            "warn level, yet {info:?} is logged:\n{log}"
        );
    }
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("log_level = \"warn\"", "log_level = \"debug\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        agent.http("GET", "/v1/health", None);
        let log = agent.log_text();
        if log.contains(" DEBUG ") && log.contains("log filter is now") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new log level did not apply:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.stop();
}

/// Issue 16: every key a SIGHUP finds changed is either applied (listed in
/// the reload line) or named in a line of its own asking for a restart —
/// among them keys that were once silently ignored.
#[test]
fn sighup_names_each_changed_key_as_applied_or_needing_a_restart() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    env.server_config = "login_timeout = \"10m\"\nadmin_gids = [1]\n".into();
    env.store_config = "auth_mount = \"approle\"\n".into();
    let agent = env.start();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let changed = cfg
        .replace("shutdown_grace = \"5s\"", "shutdown_grace = \"6s\"")
        .replace("login_timeout = \"10m\"", "login_timeout = \"11m\"")
        .replace("auth_mount = \"approle\"", "auth_mount = \"other\"")
        .replace("admin_gids = [1]", "admin_gids = [2]");
    assert_ne!(cfg, changed);
    std::fs::write(&env.config, changed).unwrap();
    agent.signal(libc::SIGHUP);
    let restart_keys = [
        "server.shutdown_grace",
        "server.login_timeout",
        "store.auth_mount",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = agent.log_text();
        if log.matches("restart the agent to apply it").count() >= restart_keys.len() {
            break log;
        }
        assert!(Instant::now() < deadline, "no restart lines: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let restarts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("restart the agent to apply it"))
        .collect();
    assert_eq!(restarts.len(), restart_keys.len(), "{log}");
    for key in restart_keys {
        let named = format!("setting={key}");
        assert_eq!(
            restarts.iter().filter(|l| l.contains(&named)).count(),
            1,
            "{key}: {log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("SIGHUP: configuration reloaded")
                && l.contains("changed=[\"server.admin_gids\"]")),
        "{log}"
    );
    agent.stop();
}

/// Changes `snyk.timeout` (which cannot change while running) in the
/// agent's config file and sends SIGHUP.
fn reload_with_a_restart_only_change(env: &Env, agent: &Agent) {
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        cfg.replace("timeout = \"3s\"", "timeout = \"4s\""),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
}

/// `snykey reload` (the unit's `ExecReload=`): it waits for the agent, says
/// what was applied and what needs a restart (exit 0); a file the agent
/// refuses is exit 78 with the reason, and the agent serves on, unchanged.
#[test]
fn snykey_reload_applies_or_refuses_a_changed_config_and_says_which() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("crel", None);
    let mut env = Env::new(&fake.url());
    env.server_config = "log_level = \"info\"\n".into();
    let agent = env.start_with(&[("SNYKEY_LOG", "")]);
    assert!(
        agent
            .put_oauth(env.path(), "orel", "crel", None, &rt)
            .status
            .success()
    );

    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let good = cfg
        .replace("log_level = \"info\"", "log_level = \"debug\"")
        .replace("timeout = \"3s\"", "timeout = \"4s\"");
    assert_ne!(good, cfg);
    std::fs::write(&env.config, &good).unwrap();
    let out = agent.cli(&["reload"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("configuration reloaded from"), "{said}");
    assert!(said.contains("applied: server.log_level"), "{said}");
    assert!(
        said.contains("after a restart (`systemctl restart snykey`): snyk.timeout"),
        "{said}"
    );
    assert!(said.contains("log filter is now \"debug\""), "{said}");
    // Answered after the reload: the new level is already in force.
    let log = agent.log_text();
    assert!(
        log.contains("reload request: configuration reloaded"),
        "{log}"
    );
    agent.http("GET", "/v1/health", None);
    wait_for("a DEBUG line after the reload", 10, || {
        agent.log_text().contains(" DEBUG ")
    });

    // Refused: exit 78 with the key and the reason; nothing changed.
    std::fs::write(
        &env.config,
        good.replace("log_level = \"debug\"", "log_level = \"warn\"")
            .replace("[snyk]\n", "[snyk]\nrest_version = \"yesterday\"\n"),
    )
    .unwrap();
    let out = agent.cli(&["reload"], None);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let why = stderr(&out);
    assert!(
        why.contains("is invalid, and the agent keeps running on the previous one")
            && why.contains("rest_version")
            && why.contains("fix the file, then reload again"),
        "{why}"
    );
    assert!(stdout(&out).is_empty());
    let out = agent.helper(&["orel", "crel"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let before = agent.log_text().matches(" DEBUG ").count();
    agent.http("GET", "/v1/health", None);
    wait_for(
        "DEBUG lines still (the refused file's warn level did not apply)",
        10,
        || agent.log_text().matches(" DEBUG ").count() > before,
    );
    agent.stop();
    assert_eq!(fake.replays(), 0);
}

//! Who may do what (issue 17): real agent, real uids (`setpriv`), the real
//! helper and CLI; the audit trail and `snykey audit verify`.

use crate::support::agent::{
    HELPER, SNYKEY, assert_no_secrets, output_with_stdin, stderr, stdout, wait_for,
};
use crate::support::{Agent, Env, FakeSnyk};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Fails (never skips) when a required tool is missing, saying how to get it.
fn require(tool: &str, package: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|f| f.exists())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| {
            panic!("{tool} is required by this test: install it with `apt-get install {package}`")
        })
}

/// A peer: uid, primary gid, supplementary groups.
#[derive(Clone, Copy)]
struct As(u32, u32, &'static str);

const CONSUMER_A: As = As(1001, 1001, "");
const CONSUMER_B: As = As(1500, 1500, "2002"); // team B by a supplementary group
const ADMIN_UID: As = As(1700, 1700, "");
const ADMIN_GROUP: As = As(1800, 1800, "3000");

/// Runs `program args` as `who`, with `stdin` fed in.
fn run_as(who: As, program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let setpriv = require("setpriv", "util-linux");
    let mut cmd = Command::new(setpriv);
    cmd.args(["--reuid", &who.0.to_string(), "--regid", &who.1.to_string()]);
    if who.2.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.args(["--groups", who.2]);
    }
    cmd.arg(program).args(args);
    output_with_stdin(&mut cmd, stdin)
}

fn helper_as(agent: &Agent, who: As, org: &str, client: &str) -> Output {
    let socket = agent.socket.display().to_string();
    run_as(who, HELPER, &["--socket", &socket, org, client], None)
}

fn cli_as(agent: &Agent, who: As, args: &[&str], stdin: Option<&str>) -> Output {
    let socket = agent.socket.display().to_string();
    let mut all = vec!["--socket", &socket];
    all.extend_from_slice(args);
    run_as(who, SNYKEY, &all, stdin)
}

/// A raw API request as `who` (curl over the Unix socket): (status, body).
fn http_as(agent: &Agent, who: As, method: &str, path: &str) -> (u16, serde_json::Value) {
    let curl = require("curl", "curl");
    let socket = agent.socket.display().to_string();
    let url = format!("http://snykey{path}");
    let out = run_as(
        who,
        &curl,
        &[
            "-sS",
            "--unix-socket",
            &socket,
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            &url,
        ],
        None,
    );
    let text = stdout(&out);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A temp dir others can traverse and a socket anyone may open: the policy
/// alone decides.
fn open_env(fake: &FakeSnyk) -> Env {
    let env = Env::new(&fake.url());
    std::fs::create_dir_all(env.socket.parent().unwrap()).unwrap();
    for d in [env.socket.parent().unwrap(), env.path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    env
}

fn access_tables(tables: &[(&str, &str, &str)]) -> String {
    tables
        .iter()
        .map(|(creds, uids, gids)| {
            format!("\n[[access]]\ncredentials = [{creds}]\nuids = [{uids}]\ngids = [{gids}]\n")
        })
        .collect()
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(files: &[&Path]) -> Output {
    crate::support::agent::clean(SNYKEY)
        .args(["audit", "verify"])
        .args(files)
        .output()
        .unwrap()
}

#[test]
fn consumers_read_only_their_credentials_and_admin_operations_need_an_admin() {
    let fake = FakeSnyk::start();
    let rt_a = fake.new_oauth_client("app-a", None);
    let rt_b = fake.new_oauth_client("app-b", None);
    let rt_c = fake.new_oauth_client("app-c", None);
    let rt_new = fake.new_oauth_client("app-new", None);
    let mut env = open_env(&fake);
    let audit = env.path().join("audit/audit.log");
    env.server_config = format!(
        "socket_mode = \"0666\"\nadmin_uids = [1700]\nadmin_gids = [3000]\naudit_log = {audit:?}\n"
    );
    env.extra_config = access_tables(&[
        ("\"team-a/app-a\"", "1001", ""),
        ("\"team-b/*\"", "", "2002"),
    ]);
    let agent = env.start();
    let log = agent.log_text();
    assert!(
        log.contains("2 [[access]] table(s) with 2 credential pattern(s)"),
        "the start-up log says how reads are granted:\n{log}"
    );
    // The agent's own uid (root here) is always an admin.
    for (org, client, rt) in [
        ("team-a", "app-a", &rt_a),
        ("team-b", "app-b", &rt_b),
        ("team-b", "app-c", &rt_c),
    ] {
        let out = agent.put_oauth(env.path(), org, client, None, rt);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // A consumer reads its credential (several times: one audit line)...
    for _ in 0..3 {
        let out = helper_as(&agent, CONSUMER_A, "team-a", "app-a");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(fake.access_token_valid(stdout(&out).trim()));
    }
    // ...and is refused another team's: 77, nothing on stdout, the sentence
    // names the credential and the config key.
    let out = helper_as(&agent, CONSUMER_A, "team-b", "app-b");
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains("team-b/app-b") && err.contains("[[access]]") && err.contains("uid 1001"),
        "{err}"
    );
    // The same refusal from the CLI, and for a credential that does not exist
    // (a refusal does not reveal what exists).
    let out = cli_as(&agent, CONSUMER_A, &["token", "team-b", "app-b"], None);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    let (st, v) = http_as(&agent, CONSUMER_A, "GET", "/v1/credentials/team-b/nothing");
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");

    // Org wildcard by a supplementary group: every team-b credential, no team-a one.
    for client in ["app-b", "app-c"] {
        let out = helper_as(&agent, CONSUMER_B, "team-b", client);
        assert!(out.status.success(), "{client}: {}", stderr(&out));
    }
    assert_eq!(
        helper_as(&agent, CONSUMER_B, "team-a", "app-a")
            .status
            .code(),
        Some(77)
    );

    // The list shows what the peer may read; an admin sees all.
    let ids = |v: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = crate::support::agent::listed_states(v)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    };
    let (st, v) = http_as(&agent, CONSUMER_A, "GET", "/v1/credentials");
    assert_eq!(st, 200);
    assert_eq!(ids(&v), vec!["team-a/app-a"]);
    let (_, v) = http_as(&agent, CONSUMER_B, "GET", "/v1/credentials");
    assert_eq!(ids(&v), vec!["team-b/app-b", "team-b/app-c"]);
    let (_, v) = http_as(&agent, ADMIN_GROUP, "GET", "/v1/credentials");
    assert_eq!(ids(&v).len(), 3);

    // Every admin operation by a consumer: 403, exit 77, and nothing changes.
    let store_before = std::fs::read(&env.store).unwrap();
    let grants_before = fake.refresh_grants();
    let shared = env.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let auth_token_file = shared.join("auth-token");
    std::fs::write(&auth_token_file, "consumer-snyk-api-token-0451").unwrap();
    std::fs::set_permissions(&auth_token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let auth = auth_token_file.display().to_string();
    let attempts: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "put",
            vec![
                "put",
                "--org-id",
                "team-a",
                "--client-id",
                "app-a",
                "--refresh-token-file",
                "-",
            ],
            Some(rt_new.as_str()),
        ),
        ("delete", vec!["delete", "team-a", "app-a"], None),
        (
            "revoke",
            vec!["delete", "team-a", "app-a", "--revoke"],
            None,
        ),
        (
            "login",
            vec![
                "login",
                "--org-id",
                "team-a",
                "--client-id",
                "app-a",
                "--no-browser",
            ],
            None,
        ),
        (
            "register-app",
            vec![
                "register-app",
                "--org-id",
                "team-a",
                "--name",
                "x",
                "--scopes",
                "org.read",
                "--auth-token-file",
                &auth,
                "--no-browser",
            ],
            None,
        ),
        ("reload", vec!["reload"], None),
        (
            "service-account",
            vec![
                "service-account",
                "list",
                "--org-id",
                "team-a",
                "--auth-token-file",
                &auth,
            ],
            None,
        ),
    ];
    for (what, args, stdin) in &attempts {
        let out = cli_as(&agent, CONSUMER_A, args, *stdin);
        assert_eq!(out.status.code(), Some(77), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("server.admin_uids"),
            "{what}: {}",
            stderr(&out)
        );
    }
    let (st, v) = http_as(&agent, CONSUMER_A, "DELETE", "/v1/cache/team-a/app-a");
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["error"].as_str().unwrap().contains("team-a/app-a"), "{v}");
    assert_eq!(
        std::fs::read(&env.store).unwrap(),
        store_before,
        "the store is untouched"
    );
    assert!(fake.refresh_token_alive(&fake.live_refresh_token("app-a").unwrap()));
    // The cache was not cleared: the next read is a hit, not a grant.
    assert!(
        helper_as(&agent, CONSUMER_A, "team-a", "app-a")
            .status
            .success()
    );
    assert_eq!(fake.refresh_grants(), grants_before);
    // The doctor's write check writes to the store: admins only.
    let (st, v) = http_as(&agent, CONSUMER_A, "GET", "/v1/ready?write=true");
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (st, v) = http_as(&agent, CONSUMER_A, "GET", "/v1/ready");
    assert_eq!(st, 200, "plain readiness stays open: {v}");
    assert_eq!(std::fs::read(&env.store).unwrap(), store_before);

    // Admins by uid and by supplementary group can.
    let (st, v) = http_as(&agent, ADMIN_GROUP, "GET", "/v1/ready?write=true");
    assert_eq!(st, 200, "{v}");
    let out = cli_as(&agent, ADMIN_GROUP, &["reload"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let (st, v) = http_as(&agent, ADMIN_GROUP, "DELETE", "/v1/cache/team-a/app-a");
    assert_eq!(st, 200, "{v}");
    let out = cli_as(&agent, ADMIN_UID, &["delete", "team-b", "app-c"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli_as(
        &agent,
        ADMIN_GROUP,
        &[
            "put",
            "--org-id",
            "team-c",
            "--client-id",
            "app-new",
            "--refresh-token-file",
            "-",
        ],
        Some(&rt_new),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // A consumer is not an admin because a table names it; and the admin reads all.
    let out = helper_as(&agent, ADMIN_UID, "team-c", "app-new");
    assert!(out.status.success(), "{}", stderr(&out));

    let agent_log = agent.stop_and_log();
    assert_no_secrets("agent log", &agent_log, &fake.secrets());

    // The audit trail: private, one line per thing that happened, no secret.
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_no_secrets("audit log", &text, &fake.secrets());
    assert!(!text.contains("consumer-snyk-api-token-0451"));
    let lines = audit_lines(&audit);
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().filter(|l| pred(l)).count();
    let is = |l: &serde_json::Value, event: &str, op: &str, uid: u32| {
        l["event"] == event && l["op"] == op && l["peer"]["uid"] == uid
    };
    assert_eq!(lines[0]["event"], "audit");
    assert_eq!(lines[0]["op"], "start");
    // First hand-out of a token to a peer, with its executable; once, not per call.
    let handed = find(&|l| {
        is(l, "token", "get_token", 1001) && l["org_id"] == "team-a" && l["client_id"] == "app-a"
    });
    assert_eq!(handed, 1, "{text}");
    let exe = lines
        .iter()
        .find(|l| is(l, "token", "get_token", 1001))
        .unwrap()["peer"]["exe"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(exe.ends_with("snykey-helper"), "{exe}");
    assert!(find(&|l| is(l, "token", "get_token", 1500) && l["client_id"] == "app-c") == 1);
    // Refusals, each named.
    assert!(
        find(&|l| is(l, "refused", "get_token", 1001) && l["client_id"] == "app-b") >= 2,
        "{text}"
    );
    for op in [
        "put_credential",
        "delete_credential",
        "revoke_credential",
        "delete_cache",
        "login",
        "register_app",
        "service_accounts",
    ] {
        assert!(
            find(&|l| is(l, "refused", op, 1001) && l["code"] == "forbidden") >= 1,
            "no refusal of {op} in:\n{text}"
        );
    }
    // Admin operations with their outcome.
    assert_eq!(
        find(&|l| is(l, "admin", "delete_cache", 1800) && l["outcome"] == "ok"),
        1
    );
    assert_eq!(
        find(&|l| is(l, "admin", "delete_credential", 1700) && l["client_id"] == "app-c"),
        1
    );
    assert_eq!(
        find(&|l| is(l, "admin", "put_credential", 1800) && l["org_id"] == "team-c"),
        1
    );
    assert_eq!(
        find(&|l| l["event"] == "admin" && l["op"] == "put_credential" && l["peer"]["uid"] == 0),
        3
    );

    // The chain verifies...
    let out = verify(&[&audit]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("hash chain is intact"),
        "{}",
        stdout(&out)
    );
    // ...and one changed byte is found, naming the line.
    let original = std::fs::read_to_string(&audit).unwrap();
    let at = original
        .lines()
        .position(|l| l.contains("\"uid\":1001"))
        .unwrap();
    let changed: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == at {
                l.replacen("\"uid\":1001", "\"uid\":1002", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    let tampered = env.path().join("tampered.log");
    std::fs::write(&tampered, changed.join("\n") + "\n").unwrap();
    let out = verify(&[&tampered]);
    assert_eq!(out.status.code(), Some(65));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("line {} breaks the chain", at + 2))
            && err.contains(&format!("line {} was changed", at + 1)),
        "{err}"
    );
    // A deleted line too.
    let mut kept: Vec<&str> = original.lines().collect();
    kept.remove(4);
    std::fs::write(&tampered, kept.join("\n") + "\n").unwrap();
    let out = verify(&[&tampered]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        stderr(&out).contains("line 5 breaks the chain"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sighup_adds_and_removes_grants_and_reopens_the_audit_log() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("app-h", None);
    let mut env = open_env(&fake);
    let audit = env.path().join("audit.log");
    env.server_config = format!("socket_mode = \"0666\"\naudit_log = {audit:?}\n");
    env.extra_config = access_tables(&[("\"org-h/app-h\"", "1001", "")]);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "org-h", "app-h", None, &rt)
            .status
            .success()
    );
    let one = As(1001, 1001, "");
    let two = As(1002, 1002, "");
    assert!(helper_as(&agent, one, "org-h", "app-h").status.success());
    assert_eq!(
        helper_as(&agent, two, "org-h", "app-h").status.code(),
        Some(77)
    );

    // logrotate moves the file; the new rules grant 1002 and drop 1001.
    let rotated: PathBuf = env.path().join("audit.log.1");
    std::fs::rename(&audit, &rotated).unwrap();
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace("uids = [1001]", "uids = [1002]")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_for("the new grant to apply", 10, || {
        helper_as(&agent, two, "org-h", "app-h").status.success()
    });
    let out = helper_as(&agent, one, "org-h", "app-h");
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));

    // Removing every table opens reads to every peer on the socket again.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    let without = cfg.split("\n[[access]]").next().unwrap().to_string();
    std::fs::write(&env.config, without).unwrap();
    agent.signal(libc::SIGHUP);
    wait_for("reads to open up", 10, || {
        helper_as(&agent, one, "org-h", "app-h").status.success()
    });
    assert!(
        agent.log_text().contains(
            "no [[access]] table: every peer allowed on the socket may read every credential"
        ),
        "the reload says reads are open"
    );
    agent.stop();

    // The new file continues the chain of the rotated one.
    assert!(audit.exists(), "SIGHUP reopened the audit log");
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let new_lines = audit_lines(&audit);
    assert_eq!(new_lines[0]["op"], "reopen");
    assert!(
        new_lines
            .iter()
            .any(|l| l["event"] == "token" && l["peer"]["uid"] == 1002)
    );
    let out = verify(&[&rotated, &audit]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = verify(&[&audit]);
    assert!(out.status.success() && stdout(&out).contains("continues a chain"));
    assert!(!verify(&[&audit, &rotated]).status.success());
    assert_no_secrets(
        "audit log",
        &std::fs::read_to_string(&audit).unwrap(),
        &fake.secrets(),
    );
}

#[test]
fn check_config_says_in_one_line_who_may_read() {
    let fake = FakeSnyk::start();
    let env = Env::new(&fake.url());
    let cfg = env.path().join("c.toml");
    std::fs::write(&cfg, "[server]\nadmin_gids = [3000]\n").unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().next().unwrap().contains(
            "no [[access]] table: every peer allowed on the socket may read every credential"
        ),
        "{text}"
    );
    std::fs::write(
        &cfg,
        format!(
            "[server]\nadmin_gids = [3000]\n{}",
            access_tables(&[("\"o/*\"", "", "2001")])
        ),
    )
    .unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("1 [[access]] table(s)")
            && text.contains("[[access]]\ncredentials = [\"o/*\"]"),
        "{text}"
    );
    // A bad table is refused with its place named.
    std::fs::write(&cfg, access_tables(&[("\"o/*\"", "", "")])).unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("access[0]") && stderr(&out).contains("grants nobody"));
}

#[test]
fn an_audit_log_that_cannot_be_opened_stops_the_start_with_the_key_named() {
    let fake = FakeSnyk::start();
    let env = Env::new(&fake.url());
    let cfg = env.path().join("c.toml");
    // A directory where the file should be.
    let audit = env.path().join("audit-is-a-dir");
    std::fs::create_dir_all(&audit).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nsocket = {:?}\ncallback_listen = \"127.0.0.1:0\"\naudit_log = {audit:?}\n[snyk]\napi_url = {:?}\n[store]\npath = {:?}\njournal_dir = {:?}\n",
            env.socket,
            fake.url(),
            env.store,
            env.journal
        ),
    )
    .unwrap();
    let out = crate::support::agent::clean(SNYKEY)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("SNYKEY_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("server.audit_log") && err.contains("audit-is-a-dir"),
        "{err}"
    );
    assert!(!env.socket.exists(), "the socket it bound is removed");
}

/// One keep-alive connection as another uid (socat under setpriv).
struct KeepAlive(
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
);

impl KeepAlive {
    fn open(agent: &Agent, who: As) -> KeepAlive {
        let setpriv = require("setpriv", "util-linux");
        let socat = require("socat", "socat");
        let mut child = Command::new(setpriv)
            .args(["--reuid", &who.0.to_string(), "--regid", &who.1.to_string()])
            .arg("--clear-groups")
            .arg(socat)
            .arg("-")
            .arg(format!("UNIX-CONNECT:{}", agent.socket.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        KeepAlive(child, out)
    }

    /// GET `path` on the open connection: (status, body).
    fn get(&mut self, path: &str) -> (u16, String) {
        use std::io::{BufRead, Read, Write};
        let stdin = self.0.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: snykey\r\n\r\n").as_bytes())
            .unwrap();
        stdin.flush().unwrap();
        let mut status = 0;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            assert!(
                self.1.read_line(&mut line).unwrap() > 0,
                "connection closed"
            );
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(s) = line.strip_prefix("HTTP/1.1 ") {
                status = s[..3].parse().unwrap();
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; len];
        self.1.read_exact(&mut body).unwrap();
        (status, String::from_utf8_lossy(&body).to_string())
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_applies_to_the_next_request_on_an_open_connection() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("app-k", None);
    let mut env = open_env(&fake);
    env.server_config = "socket_mode = \"0666\"\n".into();
    env.extra_config = access_tables(&[("\"org-k/app-k\"", "1001", "")]);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "org-k", "app-k", None, &rt)
            .status
            .success()
    );
    let mut conn = KeepAlive::open(&agent, CONSUMER_A);
    for _ in 0..3 {
        let (st, body) = conn.get("/v1/credentials/org-k/app-k");
        assert_eq!(st, 200, "{body}");
    }
    // The grant goes away; the same connection's next read is refused.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace("uids = [1001]", "uids = [1002]")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_for("the reload", 10, || {
        helper_as(&agent, CONSUMER_A, "org-k", "app-k")
            .status
            .code()
            == Some(77)
    });
    let (st, body) = conn.get("/v1/credentials/org-k/app-k");
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("forbidden") && body.contains("org-k/app-k"),
        "{body}"
    );
    // And back.
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, cfg.replace("uids = [1002]", "uids = [1001]")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_for("the second reload", 10, || {
        helper_as(&agent, CONSUMER_A, "org-k", "app-k")
            .status
            .success()
    });
    let (st, body) = conn.get("/v1/credentials/org-k/app-k");
    assert_eq!(st, 200, "{body}");
    drop(conn);
    agent.stop();
}

#[test]
fn a_browser_login_is_audited_as_an_admin_operation_and_a_code_exchange() {
    let fake = FakeSnyk::start();
    fake.new_oauth_client("app-l", Some("sec-app-l"));
    let mut env = Env::new(&fake.url());
    let audit = env.path().join("audit.log");
    env.server_config = format!("audit_log = {audit:?}\n");
    let agent = env.start();
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"org-l","client_id":"app-l","client_secret":"sec-app-l"}"#),
    );
    assert_eq!(st, 200, "{v}");
    // The fake's authorize endpoint redirects (303) to the agent's callback.
    let (st, location, body) = crate::support::agent::tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = crate::support::agent::tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    agent.stop();
    let lines = audit_lines(&audit);
    assert!(
        lines.iter().any(|l| l["event"] == "admin"
            && l["op"] == "login"
            && l["org_id"] == "org-l"
            && l["outcome"] == "ok"
            && l["peer"]["uid"] == 0),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["event"] == "grant"
            && l["op"] == "code_exchange"
            && l["client_id"] == "app-l"
            && l["outcome"] == "ok"),
        "{lines:?}"
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_no_secrets("audit log", &text, &fake.secrets());
    assert!(!text.contains("sec-app-l"));
    assert!(verify(&[&audit]).status.success());
}

//! `snykey dev` (issue 24 item 1) as a newcomer uses it: start it, read what
//! it prints, run the printed commands (helper, exec, status, and a
//! `login --no-browser` completed by an HTTP client following its URL),
//! Ctrl-C it; and its refusal of anything that would reach a real Snyk.

use crate::support::agent::{SNYKEY, command, stderr, stdout, tcp_get, wait_for};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `snykey dev` with stdout read line by line into a shared transcript.
struct Dev {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Dev {
    fn start(tmp: &Path) -> Dev {
        let log = tmp.join("dev.log");
        let mut child = command(SNYKEY, tmp)
            .arg("dev")
            .env("TMPDIR", tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Dev { child, lines, log }
    }

    fn transcript(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The indented command lines printed once it is ready.
    fn commands(&self) -> Vec<String> {
        wait_for("snykey dev to print its commands", 60, || {
            let lines = self.lines.lock().unwrap().clone();
            let cmds: Vec<String> = lines
                .iter()
                .filter_map(|l| l.strip_prefix("  "))
                .map(str::to_string)
                .collect();
            if cmds.iter().any(|c| c.contains(" login ")) {
                Ok(cmds)
            } else {
                Err(format!(
                    "stdout so far:\n{}\nstderr:\n{}",
                    lines.join("\n"),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ))
            }
        })
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs one printed command line with `sh`, after the printed `export`.
fn run(dir: &Path, export: &str, line: &str) -> Output {
    command("sh", dir)
        .args(["-c", &format!("{export}\n{line}")])
        .output()
        .unwrap()
}

fn find<'a>(cmds: &'a [String], what: &str) -> &'a str {
    cmds.iter()
        .find(|c| c.contains(what))
        .unwrap_or_else(|| panic!("no printed command with {what:?}: {cmds:#?}"))
}

#[test]
fn snykey_dev_gives_a_first_token_and_completes_a_login_then_cleans_up() {
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is required (the printed exec example uses it): apt-get install curl"
    );
    let tmp = tempfile::Builder::new()
        .prefix("snykey-it-dev-")
        .tempdir()
        .unwrap();
    let started = Instant::now();
    let mut dev = Dev::start(tmp.path());
    let cmds = dev.commands();
    let banner = dev.transcript();
    assert!(banner.contains("NOT TALKING TO SNYK"), "{banner}");

    let export = find(&cmds, "export SNYKEY_SOCKET=").to_string();
    let socket = PathBuf::from(export.trim_start_matches("export SNYKEY_SOCKET="));
    let run_dir = socket.parent().unwrap().to_path_buf();
    assert!(
        run_dir.starts_with(tmp.path()),
        "not a fresh directory under TMPDIR: {}",
        run_dir.display()
    );

    // The helper: a first token.
    let helper = cmds
        .iter()
        .find(|c| c.contains("snykey-helper") && !c.contains(" exec "))
        .unwrap();
    let out = run(tmp.path(), &export, helper);
    let first_token = started.elapsed();
    assert!(out.status.success(), "{helper}: {}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.len() > 20, "{token:?}");
    eprintln!(
        "snykey dev: first token from the helper {} ms after the start (debug build)",
        first_token.as_millis()
    );

    // exec: the simulated Snyk accepts the token it was handed.
    let exec = find(&cmds, " exec ");
    let out = run(tmp.path(), &export, exec);
    assert!(out.status.success(), "{exec}: {}", stderr(&out));
    assert!(
        stdout(&out).contains("\"type\":\"user\""),
        "the simulated Snyk did not accept the token: {}",
        stdout(&out)
    );

    // status: the demo credential, ok.
    let status = find(&cmds, " status");
    let out = run(tmp.path(), &export, status);
    assert!(out.status.success(), "{status}: {}", stderr(&out));
    assert!(
        stdout(&out).contains("demo-org") && stdout(&out).contains("demo-app"),
        "{}",
        stdout(&out)
    );

    // login --no-browser, completed by following its URL like a browser.
    let login = find(&cmds, " login ");
    let mut child = command("sh", tmp.path())
        .args(["-c", &format!("{export}\n{login}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "login printed no URL"
        );
        if let Some(u) = line.trim().strip_prefix("http://localhost:") {
            break format!("http://localhost:{u}");
        }
    };
    assert!(url.contains("/oauth2/authorize?"), "{url}");
    let (status, location, body) = tcp_get(&url);
    assert_eq!(status, 303, "authorize: {body}");
    let callback = location.expect("the simulated Snyk redirects to the agent's callback");
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let (status, _, page) = tcp_get(&callback);
    assert_eq!(status, 200, "callback page: {page}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let login_status = child.wait().unwrap();
    assert!(login_status.success(), "login: {rest}");
    assert!(rest.contains("login complete"), "{rest}");
    let out = run(tmp.path(), &export, helper);
    assert!(out.status.success(), "after the login: {}", stderr(&out));
    let out = run(tmp.path(), &export, exec);
    assert!(
        stdout(&out).contains("\"type\":\"user\""),
        "{}",
        stdout(&out)
    );

    // Ctrl-C: a clean stop, and the directory is gone.
    unsafe { libc::kill(dev.child.id() as i32, libc::SIGINT) };
    let code = wait_for("snykey dev to exit after SIGINT", 30, || {
        match dev.child.try_wait() {
            Ok(Some(st)) => Ok(st.code()),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    let log = std::fs::read_to_string(&dev.log).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
    assert!(!run_dir.exists(), "{} was left behind", run_dir.display());
    // No demo secret reached its log.
    assert!(!log.contains(&token), "the log holds a token");
}

#[test]
fn snykey_dev_refuses_a_real_snyk_before_creating_anything() {
    // --socket is the clients' option: a dev run keeps its own socket.
    let tmp = tempfile::tempdir().unwrap();
    let out = command(SNYKEY, tmp.path())
        .args(["--socket", "/tmp/elsewhere.sock", "dev"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));

    for (var, value) in [
        ("SNYKEY_SNYK_API_URL", "https://api.eu.snyk.io"),
        ("SNYKEY_SNYK_API_URL", "http://snyk.example.com:8080"),
        ("SNYKEY_SNYK_APP_URL", "https://app.snyk.io"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let before: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        let out = command(SNYKEY, tmp.path())
            .arg("dev")
            .env("TMPDIR", tmp.path())
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(78),
            "{var}={value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(var), "{}", stderr(&out));
        assert!(!stdout(&out).contains("demo-org"), "{}", stdout(&out));
        let made: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("snykey-dev-"))
            .collect();
        assert!(
            made.is_empty() && before.len() <= 1,
            "{var}={value} created {made:?}"
        );
    }
}

//! Runs the real `snykey serve` in a temp dir with a config file, captures its
//! stderr at trace level, and talks to it like users do: `snykey-helper`,
//! the `snykey` CLI, and raw HTTP over the Unix socket.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SNYKEY: &str = env!("CARGO_BIN_EXE_snykey");
pub const HELPER: &str = env!("CARGO_BIN_EXE_snykey-helper");

/// A temp dir holding one agent's socket, store, journal and logs; it
/// outlives restarts of the agent.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub store: PathBuf,
    pub journal: PathBuf,
    pub config: PathBuf,
    /// Extra config text appended to the generated file.
    pub extra_config: String,
    /// Extra lines for the generated file's [server] section.
    pub server_config: String,
    /// Extra lines for the generated file's [store] section.
    pub store_config: String,
    pub snyk_url: String,
    starts: u32,
}

impl Env {
    pub fn new(snyk_url: &str) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("snykey-it-")
            .tempdir()
            .unwrap();
        let p = dir.path().to_path_buf();
        Env {
            socket: p.join("run/snykey.sock"),
            store: p.join("state/credentials.json"),
            journal: p.join("state/journal"),
            config: p.join("config.toml"),
            extra_config: String::new(),
            server_config: String::new(),
            store_config: String::new(),
            snyk_url: snyk_url.to_string(),
            dir,
            starts: 0,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self) {
        let text = format!(
            "[server]\nsocket = {:?}\ncallback_listen = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{}\n[snyk]\napi_url = {:?}\ntimeout = \"3s\"\n\n[store]\npath = {:?}\njournal_dir = {:?}\n{}\n{}",
            self.socket,
            self.server_config,
            self.snyk_url,
            self.store,
            self.journal,
            self.store_config,
            self.extra_config
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts the agent and waits until its socket answers.
    pub fn start(&mut self) -> Agent {
        self.start_with(&[])
    }

    pub fn start_with(&mut self, env: &[(&str, &str)]) -> Agent {
        self.write_config();
        self.starts += 1;
        let log = self.path().join(format!("agent-{}.log", self.starts));
        let agent = Agent::spawn(&self.config, &self.socket, &log, env);
        agent.wait_ready();
        agent
    }
}

pub struct Agent {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    fn spawn(config: &Path, socket: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        let stderr = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new(SNYKEY);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("SNYKEY_LOG", "trace")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Agent {
            child,
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                let _ =
                    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the agent did not come up; its log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One raw HTTP request over the socket: (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http_on(&self.socket, method, path, body)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let (status, text) = self.http(method, path, body);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, v)
    }

    /// Runs `snykey-helper --socket ... ARGS`.
    pub fn helper(&self, args: &[&str]) -> Output {
        Command::new(HELPER)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `snykey --socket ... ARGS` with `stdin` fed in.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(SNYKEY)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    /// Stores an oauth_app credential through `snykey put`, secrets via files and stdin.
    pub fn put_oauth(
        &self,
        dir: &Path,
        org: &str,
        client: &str,
        secret: Option<&str>,
        refresh_token: &str,
    ) -> Output {
        let mut args = vec![
            "put".to_string(),
            "--org-id".into(),
            org.into(),
            "--client-id".into(),
            client.into(),
            "--refresh-token-file".into(),
            "-".into(),
        ];
        if let Some(s) = secret {
            let f = dir.join(format!("secret-{org}-{client}"));
            std::fs::write(&f, s).unwrap();
            args.push("--client-secret-file".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args, Some(refresh_token))
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM and wait: the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("agent did not stop on SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to tidy up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Like [`http_on`], but a connection failure is an `Err` instead of a panic.
pub fn try_http(socket: &Path, path: &str) -> Result<(u16, String), std::io::Error> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: snykey\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated answer"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, body.to_string()))
}

pub fn http_on(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: snykey\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The agent may answer (413) and close before reading a huge body.
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("bad answer: {text:?}"));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Asserts that no secret the fake issued appears in `text` (a log, an error).
pub fn assert_no_secrets(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} contains a secret ({}…)",
            &s[..6.min(s.len())]
        );
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A plain HTTP GET over TCP (no redirects followed): (status, Location, body).
pub fn tcp_get(url: &str) -> (u16, Option<String>, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    (status, location, body.to_string())
}

/// Polls `f` every 50 ms until it holds, or panics after `secs` saying what was awaited.
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

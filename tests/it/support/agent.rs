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

pub use super::wait::wait_for;

/// A directory for the whole test process whose `etc/config.toml` is empty:
/// the `CONFIGURATION_DIRECTORY` of runs without a temp dir of their own,
/// and of library calls that load the default config.
pub fn empty_config_home() -> &'static Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("snykey-it-noconf-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/config.toml"), "").unwrap();
        dir
    })
    .path()
}

/// [`command`] for a run that has no temp dir of its own.
pub fn clean(bin: &str) -> Command {
    command(bin, empty_config_home())
}

/// `bin` with a cleared environment: only `PATH` and `HOME` from the caller,
/// and `CONFIGURATION_DIRECTORY` at `{dir}/etc`, so that nothing a test runs
/// inherits the caller's `SNYKEY_*`, `BAO_*`, `VAULT_*`, `XDG_*` or
/// `NOTIFY_SOCKET`, or reads the machine's `/etc/snykey/config.toml`: the
/// agent reads `$CONFIGURATION_DIRECTORY/config.toml` first and falls back to
/// `/etc` only when it is missing, so an empty one is written there unless
/// the test wrote its own. A test adds what it means to set.
pub fn command(bin: &str, dir: &Path) -> Command {
    let etc = dir.join("etc");
    if !etc.join("config.toml").exists() {
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("config.toml"), "").unwrap();
    }
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("CONFIGURATION_DIRECTORY", etc);
    cmd
}

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
    /// An environment whose store is `bao` (KV v2), talking to `snyk_url`.
    pub fn on_bao(snyk_url: &str, bao: &crate::support::bao::Bao) -> Env {
        let mut env = Env::new(snyk_url);
        env.store_config = bao.store_config(env.path(), 2);
        env
    }

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

    pub fn write_config(&self) {
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
        let agent = Agent::spawn(self.path(), &self.config, &self.socket, &log, env);
        agent.wait_ready();
        agent
    }
}

pub struct Agent {
    pub child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The test's temp dir: clients run from a cleared environment rooted here.
    pub home: PathBuf,
}

impl Agent {
    fn spawn(home: &Path, config: &Path, socket: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        let stderr = std::fs::File::create(log).unwrap();
        let mut cmd = command(SNYKEY, home);
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("SNYKEY_LOG", "trace")
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
            home: home.to_path_buf(),
        }
    }

    /// `snykey ARGS` (e.g. `serve`, `--log-format json serve`) from a
    /// cleared environment rooted at `home` plus `env`, its stderr in
    /// `home/{name}.log`; waits until `socket` answers.
    pub fn serve_with(
        home: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        socket: &Path,
    ) -> Agent {
        let log = home.join(format!("{name}.log"));
        let mut cmd = command(SNYKEY, home);
        cmd.args(args)
            .env("SNYKEY_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let agent = Agent {
            child: cmd.spawn().unwrap(),
            socket: socket.to_path_buf(),
            log,
            home: home.to_path_buf(),
        };
        agent.wait_ready();
        agent
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::from("nothing yet");
        while Instant::now() < deadline {
            match try_http(&self.socket, "/v1/health") {
                Ok((200, _)) => return,
                Ok((st, body)) => last = format!("{st} {body}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the agent did not come up (last seen on its socket: {last}); its log:\n{}",
            self.log_text()
        );
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

    /// What `GET /v1/credentials` says of `org/client` (null if nothing).
    pub fn status_of(&self, org: &str, client: &str) -> serde_json::Value {
        let (_, v) = self.json("GET", "/v1/credentials", None);
        v["credentials"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["org_id"] == org && c["client_id"] == client)
            .cloned()
            .unwrap_or_default()
    }

    /// A new OAuth client at the fake (with `secret`, if any), stored in this
    /// agent through `snykey put`, which must succeed: the put rotates its
    /// refresh token at once. Returns the refresh token given to the put.
    pub fn put_new_oauth(
        &self,
        fake: &super::FakeSnyk,
        org: &str,
        client: &str,
        secret: Option<&str>,
    ) -> String {
        let rt = fake.new_oauth_client(client, secret);
        let out = self.put_oauth(&self.home, org, client, secret, &rt);
        assert!(out.status.success(), "put {org}/{client}: {}", stderr(&out));
        rt
    }

    /// `DELETE /v1/cache/{org}/{client}`, asserting the agent answered 200.
    pub fn clear_cache(&self, org: &str, client: &str) {
        let (st, body) = self.http("DELETE", &format!("/v1/cache/{org}/{client}"), None);
        assert_eq!(st, 200, "clearing the cache of {org}/{client}: {body}");
    }

    /// The helper's token for `org/client`, asserting it succeeded.
    pub fn token(&self, org: &str, client: &str) -> String {
        let out = self.helper(&[org, client]);
        assert!(
            out.status.success(),
            "helper {org} {client}: {}",
            stderr(&out)
        );
        stdout(&out).trim().to_string()
    }

    /// Proves that the credential still refreshes: its cache cleared, the
    /// helper prints a token that is not the one it printed before, that the
    /// fake accepts, and that cost a grant at the fake (a cached token passes
    /// none of these). Returns the new token.
    pub fn assert_refreshes(&self, fake: &super::FakeSnyk, org: &str, client: &str) -> String {
        let before = self.token(org, client);
        let grants = fake.grants();
        self.clear_cache(org, client);
        let after = self.token(org, client);
        assert_ne!(
            after, before,
            "{org}/{client}: the cached token again, not a refresh"
        );
        assert!(
            fake.grants() > grants,
            "{org}/{client}: a new token without a grant at Snyk"
        );
        assert!(
            fake.access_token_valid(&after),
            "{org}/{client}: the fake refuses the new token"
        );
        after
    }

    /// Runs `snykey-helper --socket ... ARGS`.
    pub fn helper(&self, args: &[&str]) -> Output {
        command(HELPER, &self.home)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `snykey --socket ... ARGS` with `stdin` fed in.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = command(SNYKEY, &self.home);
        cmd.arg("--socket").arg(&self.socket).args(args);
        output_with_stdin(&mut cmd, stdin)
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
    pub fn stop(self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.wait_exit().0
    }

    /// Waits (30 s at most) for the agent to exit after a signal was sent:
    /// its exit status code and its whole log.
    pub fn wait_exit(mut self) -> (Option<i32>, String) {
        let status = wait_for("the agent to exit", 30, || match self.child.try_wait() {
            Ok(Some(st)) => Ok(st.code()),
            Ok(None) => Err("still running".to_string()),
            Err(e) => Err(e.to_string()),
        });
        (status, self.log_text())
    }

    /// SIGTERM, wait for a clean exit (status 0), and return the whole log,
    /// shutdown lines included: what a secret scan should read.
    pub fn stop_and_log(self) -> String {
        self.signal(libc::SIGTERM);
        let (status, text) = self.wait_exit();
        assert_eq!(
            status,
            Some(0),
            "the agent did not exit 0 on SIGTERM; log:\n{text}"
        );
        text
    }

    /// [`Agent::stop_and_log`], then no secret the fake issued anywhere in
    /// the log.
    pub fn stop_and_scan(self, fake: &super::FakeSnyk) {
        let log = self.stop_and_log();
        assert_no_secrets("agent log", &log, &fake.secrets());
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

/// The file store's document as text ("" before it exists).
pub fn store_text(env: &Env) -> String {
    std::fs::read_to_string(&env.store).unwrap_or_default()
}

/// Makes the file store refuse writes: its temp file's path becomes a
/// directory. Removing the returned directory lets writes through again.
pub fn block_store(env: &Env) -> PathBuf {
    let name = env.store.file_name().unwrap().to_str().unwrap();
    let tmp = env.store.with_file_name(format!(".{name}.tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

/// Makes the journal refuse writes: its directory becomes a file.
pub fn block_journal(env: &Env) {
    let _ = std::fs::remove_dir_all(&env.journal);
    std::fs::write(&env.journal, "blocked").unwrap();
}

pub fn unblock_journal(env: &Env) {
    let _ = std::fs::remove_file(&env.journal);
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
/// An empty text or an empty list proves nothing and fails: a scan of a log
/// that was never written, or of a fake that issued nothing, is no check.
pub fn assert_no_secrets(what: &str, text: &str, secrets: &[String]) {
    assert!(
        !text.trim().is_empty(),
        "{what} is empty: nothing to scan for secrets"
    );
    assert!(!secrets.is_empty(), "no secrets to look for in {what}");
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} contains a secret ({}…)",
            &s[..6.min(s.len())]
        );
    }
}

/// The `ORG/CLIENT` ids of a `GET /v1/credentials` answer with each one's
/// state, in the order listed.
pub fn listed_states(v: &serde_json::Value) -> Vec<(String, String)> {
    v["credentials"]
        .as_array()
        .unwrap_or_else(|| panic!("not a credential list: {v}"))
        .iter()
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["org_id"].as_str().unwrap(),
                    c["client_id"].as_str().unwrap()
                ),
                c["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
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

/// An RSA key pair of `bits` from the real openssl: (private PEM file in
/// `dir`, public PEM).
pub fn rsa_key(dir: &std::path::Path, bits: u32) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("key-{bits}.pem"));
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &format!("rsa_keygen_bits:{bits}"),
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "openssl is required by this test ({e}): install it with `apt-get install openssl`"
            )
        });
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (key, stdout(&out))
}

/// Runs `cmd` to its end with `stdin` written to it (then closed) and its
/// output captured.
pub fn output_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
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

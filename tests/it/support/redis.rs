//! A real `redis-server` on a free loopback port in a temp dir, stopped on drop.
//! Never the machine's own Redis on 6379.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    binary: String,
}

pub(crate) fn find_redis() -> String {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("redis-server"))
            .find(|f| f.exists())
    });
    match found {
        Some(p) => p.display().to_string(),
        None => panic!(
            "redis-server is required by this test: install it with `apt-get install redis-server` (.ci/run does)"
        ),
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts redis-server on a free port. redis-server cannot bind port 0
    /// and report it, so a port is chosen, and when the server cannot bind
    /// it (taken meanwhile) another is tried; a server counts as started only
    /// when the one answering on the port is this child (`INFO`'s `process_id`).
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            binary: find_redis(),
        };
        for _ in 0..20 {
            r.port = free_port();
            if r.spawn_once() {
                return r;
            }
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    fn spawn(&mut self) {
        assert!(
            self.spawn_once(),
            "redis-server did not start again on port {}",
            self.port
        );
    }

    /// Spawns on `self.port`; false when the child exited (the port was taken).
    fn spawn_once(&mut self) -> bool {
        let mut child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.pid() == Some(child.id()) {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server did not answer on port {} within 20 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of the server answering on the port, if any.
    fn pid(&self) -> Option<u32> {
        let mut c = self.conn()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|p| p.trim().parse().ok())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn ping(&self) -> bool {
        self.conn()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
            .is_some_and(|p| p == "PONG")
    }

    pub fn conn(&self) -> Option<redis::Connection> {
        redis::Client::open(self.url())
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()
    }

    /// Stops the server (its data is gone: it keeps nothing on disk).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The string at `key` (None: no such key). A connection error or a key
    /// of another type panics: "the key is gone" must not pass because Redis is down.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut c = self
            .conn()
            .unwrap_or_else(|| panic!("cannot connect to redis-server on port {}", self.port));
        redis::cmd("GET")
            .arg(key)
            .query(&mut c)
            .unwrap_or_else(|e| panic!("redis GET {key}: {e}"))
    }

    /// Every value stored at `key`, whatever its type (string, hash, list,
    /// set), as text: what a scan for secrets must read. Panics on a
    /// connection error.
    pub fn dump_value(&self, key: &str) -> String {
        let mut c = self
            .conn()
            .unwrap_or_else(|| panic!("cannot connect to redis-server on port {}", self.port));
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut c).unwrap();
        let q = |cmd: &str, c: &mut redis::Connection| -> Vec<String> {
            let mut r = redis::cmd(cmd);
            r.arg(key);
            if cmd == "LRANGE" || cmd == "ZRANGE" {
                r.arg(0).arg(-1);
            }
            r.query(c)
                .unwrap_or_else(|e| panic!("redis {cmd} {key}: {e}"))
        };
        match kind.as_str() {
            "string" => self.get(key).unwrap_or_default(),
            "hash" => q("HGETALL", &mut c).join("\n"),
            "list" => q("LRANGE", &mut c).join("\n"),
            "set" => q("SMEMBERS", &mut c).join("\n"),
            "zset" => q("ZRANGE", &mut c).join("\n"),
            "none" => String::new(),
            other => panic!("redis key {key} has type {other}, which this scan cannot read"),
        }
    }

    pub fn pttl(&self, key: &str) -> i64 {
        let mut c = self.conn().unwrap();
        redis::cmd("PTTL").arg(key).query(&mut c).unwrap()
    }

    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut c = self.conn().unwrap();
        redis::cmd("KEYS").arg(pattern).query(&mut c).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

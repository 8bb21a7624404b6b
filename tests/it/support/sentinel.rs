//! A real Redis Sentinel deployment on loopback: one master, two replicas and
//! three sentinels (`redis-server FILE --sentinel`), each its own
//! `redis-server` process on a free port in one temp dir; all killed on drop.

#![allow(dead_code)]

use super::redis::{find_redis, free_port};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MASTER: &str = "snykey-master";

pub struct Sentinels {
    dir: tempfile::TempDir,
    binary: String,
    /// Data nodes by port (the first master, then its replicas).
    pub nodes: Vec<u16>,
    pub sentinels: Vec<u16>,
    procs: BTreeMap<u16, Child>,
}

fn conn(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()
}

/// The process id of the redis-server answering on `port`, if any.
fn pid_on(port: u16) -> Option<u32> {
    let mut c = conn(port)?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

fn ping(port: u16) -> bool {
    conn(port)
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c).ok())
        .is_some_and(|p| p == "PONG")
}

impl Sentinels {
    /// Master, two replicas and three sentinels, up and agreeing on the master.
    /// redis-server cannot report a port it bound itself: free ports are
    /// chosen, and when a process cannot bind its port (taken meanwhile) the
    /// whole deployment is started again on other ports.
    pub fn start() -> Sentinels {
        for _ in 0..5 {
            if let Some(s) = Sentinels::try_start() {
                return s;
            }
        }
        panic!("the Sentinel deployment did not start on any of 5 sets of free ports");
    }

    fn try_start() -> Option<Sentinels> {
        let mut s = Sentinels {
            dir: tempfile::Builder::new()
                .prefix("snykey-sentinel-")
                .tempdir()
                .unwrap(),
            binary: find_redis(),
            nodes: vec![free_port(), free_port(), free_port()],
            sentinels: vec![free_port(), free_port(), free_port()],
            procs: BTreeMap::new(),
        };
        let (m, r1, r2) = (s.nodes[0], s.nodes[1], s.nodes[2]);
        for (port, of) in [(m, None), (r1, Some(m)), (r2, Some(m))] {
            if !s.spawn_node(port, of) {
                return None;
            }
        }
        for p in s.sentinels.clone() {
            let cfg = s.dir.path().join(format!("sentinel-{p}.conf"));
            std::fs::write(
                &cfg,
                format!(
                    "port {p}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {m} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 4000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = s.dir.path().display()
                ),
            )
            .unwrap();
            let child = Command::new(&s.binary)
                .arg(&cfg)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            s.procs.insert(p, child);
            if !s.owns(p) {
                return None;
            }
        }
        s.wait("the replicas to sync", 15, || {
            [r1, r2]
                .iter()
                .all(|r| s.role(*r).as_deref() == Some("slave"))
        });
        s.wait("every sentinel to know both replicas", 15, || {
            s.sentinels.iter().all(|p| {
                conn(*p)
                    .and_then(|mut c| {
                        redis::cmd("SENTINEL")
                            .arg("REPLICAS")
                            .arg(MASTER)
                            .query::<Vec<redis::Value>>(&mut c)
                            .ok()
                    })
                    .is_some_and(|v| v.len() == 2)
            })
        });
        Some(s)
    }

    /// Waits until the process answering on `port` is the child started
    /// for it (`INFO`'s `process_id`): true; false when the child exited
    /// (it could not bind the port), and then it is forgotten.
    fn owns(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let Some(child) = self.procs.get_mut(&port) else {
                return false;
            };
            if let Ok(Some(_)) = child.try_wait() {
                self.procs.remove(&port);
                return false;
            }
            let id = child.id();
            if pid_on(port) == Some(id) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} did not answer within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns a data node on `port`; false when it could not bind it.
    fn spawn_node(&mut self, port: u16, replica_of: Option<u16>) -> bool {
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--port",
            &port.to_string(),
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
        .arg(self.dir.path());
        if let Some(m) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &m.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.procs.insert(port, child);
        self.owns(port)
    }

    /// Starts a data node (again, with no data: nothing is kept on disk) on
    /// its port, which must be free.
    pub fn start_node(&mut self, port: u16, replica_of: Option<u16>) {
        assert!(
            self.spawn_node(port, replica_of),
            "redis-server could not bind port {port} again"
        );
    }

    /// The sentinel URL agents use (docs/configuration.md), database `db`.
    pub fn url(&self, db: u8) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}/{db}", hosts.join(","))
    }

    /// The master's port, when every sentinel names the same one.
    pub fn master_port(&self) -> Option<u16> {
        let mut agreed = None;
        for p in &self.sentinels {
            let mut c = conn(*p)?;
            let (_, port): (String, String) = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER)
                .query::<Option<(String, String)>>(&mut c)
                .ok()
                .flatten()?;
            let port: u16 = port.parse().ok()?;
            if agreed.is_some_and(|a| a != port) {
                return None;
            }
            agreed = Some(port);
        }
        agreed
    }

    /// `master` / `slave` as the node says of itself.
    pub fn role(&self, port: u16) -> Option<String> {
        let mut c = conn(port)?;
        let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).ok()?;
        match v.first()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// SIGKILLs a data node.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut c) = self.procs.remove(&port) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until every sentinel names the same master other than `old`,
    /// and it says it is the master.
    pub fn wait_for_new_master(&self, old: u16, secs: u64) -> u16 {
        let mut new = 0;
        self.wait(
            "the sentinels to fail the master over",
            secs,
            || match self.master_port() {
                Some(p) if p != old && self.role(p).as_deref() == Some("master") => {
                    new = p;
                    true
                }
                _ => false,
            },
        );
        new
    }

    /// `SENTINEL FAILOVER` (retried while no replica is ready for it);
    /// returns the master it moved from and the new master's port.
    pub fn failover(&self) -> (u16, u16) {
        let mut old = 0;
        self.wait("the sentinels to agree on the master", 30, || {
            self.master_port().is_some_and(|p| {
                old = p;
                self.role(p).as_deref() == Some("master")
            })
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r: Result<String, String> = conn(self.sentinels[0])
                .ok_or_else(|| "no sentinel".to_string())
                .and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("FAILOVER")
                        .arg(MASTER)
                        .query(&mut c)
                        .map_err(|e| e.to_string())
                });
            if r.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SENTINEL FAILOVER refused: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        (old, self.wait_for_new_master(old, 30))
    }

    pub fn get(&self, port: u16, db: u8, key: &str) -> Option<String> {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
            .ok()?
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        redis::cmd("GET").arg(key).query(&mut c).ok()?
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.procs) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

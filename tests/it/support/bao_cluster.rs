//! A real OpenBao cluster on Raft storage, on loopback: N `bao server`
//! processes (ports from `free_port_pair`, chosen again when a node cannot
//! bind them while the cluster forms; one temp dir each), joined with
//! `retry_join`, initialised with one key share and unsealed. Nodes can be
//! SIGKILLed and restarted (they come back sealed and are unsealed), or
//! paused with SIGSTOP (a partition: the process holds its sockets but
//! answers nothing) and resumed. All killed on drop.

#![allow(dead_code)]

use super::bao::{find_bao, free_port_pair, http};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    pub stopped: bool,
}

pub struct BaoCluster {
    pub nodes: Vec<Node>,
    pub root_token: String,
    unseal_key: String,
    dir: tempfile::TempDir,
    binary: PathBuf,
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl BaoCluster {
    pub fn start(n: usize) -> BaoCluster {
        let dir = tempfile::Builder::new()
            .prefix("snykey-raft-")
            .tempdir()
            .unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port_pair()).collect();
        let mut c = BaoCluster {
            nodes: ports
                .iter()
                .enumerate()
                .map(|(i, p)| Node {
                    port: *p,
                    dir: dir.path().join(format!("node-{i}")),
                    child: None,
                    stopped: false,
                })
                .collect(),
            root_token: String::new(),
            unseal_key: String::new(),
            dir,
            binary: find_bao(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        let (st, v) = http(
            c.nodes[0].port,
            "",
            "PUT",
            "sys/init",
            Some(&json!({"secret_shares": 1, "secret_threshold": 1})),
        )
        .unwrap();
        assert_eq!(st, 200, "sys/init: {v}");
        c.root_token = v["root_token"].as_str().unwrap().to_string();
        c.unseal_key = v["keys"][0].as_str().unwrap().to_string();
        c.unseal(0);
        wait("node 0 to lead", 30, || c.health(0) == Some(200));
        // Joining nodes are non-voters until autopilot finds them stable
        // (10 s by default): 1 s here.
        c.ok(
            0,
            "POST",
            "sys/storage/raft/autopilot/configuration",
            json!({"server_stabilization_time": "1s"}),
        );
        for i in 1..n {
            c.unseal(i);
        }
        wait("every node to join", 60, || {
            (0..n).all(|i| matches!(c.health(i), Some(200 | 429)))
        });
        wait("every node to vote", 60, || c.voters() == n);
        c.setup();
        c
    }

    fn config(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let joins: String = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "  retry_join {{\n    leader_api_addr = \"http://127.0.0.1:{}\"\n  }}\n",
                    n.port
                )
            })
            .collect();
        format!(
            "ui = false\napi_addr = \"http://127.0.0.1:{p}\"\ncluster_addr = \"https://127.0.0.1:{c}\"\n\
             storage \"raft\" {{\n  path = {data:?}\n  node_id = \"node-{i}\"\n  performance_multiplier = 1\n{joins}}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{p}\"\n  cluster_address = \"127.0.0.1:{c}\"\n  tls_disable = true\n}}\n",
            p = node.port,
            c = node.port + 1,
            data = node.dir.join("data").display().to_string(),
        )
    }

    /// Starts node `i` and waits until it answers. `bao server` cannot bind
    /// port 0 and report it, so its port is chosen beforehand: when the node
    /// exits instead (the port was taken meanwhile) while the cluster is
    /// being formed, it is started again on another port pair (the others
    /// join node 0, whose port is settled first); a restart keeps its port,
    /// which the agents under test were given.
    fn spawn(&mut self, i: usize) {
        for attempt in 1..=5 {
            if self.try_spawn(i) {
                return;
            }
            let forming = self.root_token.is_empty();
            assert!(
                forming && attempt < 5,
                "node {i} exited on port {}; log:\n{}",
                self.nodes[i].port,
                self.log_text(i)
            );
            // A fresh start: nothing the failed process wrote is kept.
            let _ = std::fs::remove_dir_all(self.nodes[i].dir.join("data"));
            self.nodes[i].port = free_port_pair();
        }
    }

    /// Node `i` answering on its port (true), or exited (false).
    fn try_spawn(&mut self, i: usize) -> bool {
        std::fs::create_dir_all(self.nodes[i].dir.join("data")).unwrap();
        let cfg = self.nodes[i].dir.join("bao.hcl");
        std::fs::write(&cfg, self.config(i)).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.nodes[i].dir.join("bao.log"))
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("server")
            .arg(format!("-config={}", cfg.display()))
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
        self.nodes[i].stopped = false;
        let port = self.nodes[i].port;
        let mut exited = false;
        wait(&format!("node {i} to listen on {port}"), 20, || {
            exited = self.nodes[i]
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            exited || http(port, "", "GET", "sys/health", None).is_ok()
        });
        if exited {
            self.nodes[i].child = None;
        }
        !exited
    }

    fn unseal(&self, i: usize) {
        let port = self.nodes[i].port;
        let key = self.unseal_key.clone();
        // A joining node takes the key only once it has joined: retry.
        // (Generous: raft joins are slow on a loaded 2-core machine; the
        // panic says what the node last answered.)
        super::wait::wait_for(&format!("node {i} to unseal"), 120, || {
            match http(port, "", "PUT", "sys/unseal", Some(&json!({ "key": key }))) {
                Ok((200, v)) if v["sealed"] == false => Ok(()),
                Ok((st, v)) => Err(format!("{st} {v}")),
                Err(e) => Err(e),
            }
        });
    }

    fn setup(&self) {
        let a = self.active().expect("an active node");
        self.ok(
            a,
            "POST",
            "sys/mounts/kv",
            json!({"type": "kv", "options": {"version": "2"}}),
        );
        self.ok(
            a,
            "PUT",
            "sys/policies/acl/snykey",
            json!({"policy": "path \"kv/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n"}),
        );
        wait("the KV v2 mount to be ready", 30, || {
            self.call(a, "GET", "kv/data/snykey-probe").0 == 404
        });
    }

    pub fn ok(&self, i: usize, method: &str, path: &str, body: Value) -> Value {
        let (st, v) = http(
            self.nodes[i].port,
            &self.root_token,
            method,
            path,
            Some(&body),
        )
        .unwrap();
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    fn call(&self, i: usize, method: &str, path: &str) -> (u16, Value) {
        http(self.nodes[i].port, &self.root_token, method, path, None).unwrap_or((0, Value::Null))
    }

    /// `sys/health`'s status: 200 active, 429 standby, 503 sealed, None: no answer.
    pub fn health(&self, i: usize) -> Option<u16> {
        if self.nodes[i].stopped || self.nodes[i].child.is_none() {
            return None;
        }
        http(self.nodes[i].port, "", "GET", "sys/health", None)
            .ok()
            .map(|(st, _)| st)
    }

    /// Voters in the Raft configuration, as the active node sees it.
    pub fn voters(&self) -> usize {
        let Some(a) = self.active() else { return 0 };
        let (_, v) = self.call(a, "GET", "sys/storage/raft/configuration");
        v["data"]["config"]["servers"]
            .as_array()
            .map(|s| s.iter().filter(|x| x["voter"] == true).count())
            .unwrap_or(0)
    }

    /// The node that says it is active, if any.
    pub fn active(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|i| self.health(*i) == Some(200))
    }

    /// Waits for an active node other than `old`.
    pub fn wait_for_new_active(&self, old: usize, secs: u64) -> usize {
        let mut new = 0;
        wait("a new active OpenBao node", secs, || match self.active() {
            Some(a) if a != old => {
                new = a;
                true
            }
            _ => false,
        });
        new
    }

    /// Every node's address, for `store.addr`.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.port))
            .collect()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again; it rejoins sealed and is unsealed.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.unseal(i);
        wait(&format!("node {i} to rejoin"), 60, || {
            matches!(self.health(i), Some(200 | 429))
        });
        wait("every node to vote again", 60, || {
            self.voters() == self.nodes.len()
        });
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.nodes[i].child {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGSTOP: the node keeps its sockets open and answers nothing.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i].stopped = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.nodes[i].stopped = false;
    }

    /// The current data of a KV v2 secret, read from the active node.
    pub fn kv2_data(&self, path: &str) -> Option<Value> {
        let a = self.active()?;
        let (st, v) = self.call(a, "GET", &format!("kv/data/{path}"));
        (st == 200).then(|| v["data"]["data"].clone())
    }

    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("bao.log")).unwrap_or_default()
    }
}

impl Drop for BaoCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                self.signal(i, libc::SIGCONT);
            }
            self.kill(i);
        }
    }
}

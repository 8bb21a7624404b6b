//! The fleet shape (issue 13): agents sharing a real OpenBao (one server, or
//! a 3-node Raft cluster) and a Redis (one server, or run by Sentinel), under
//! load from `snykey-helper` and API callers while the shared parts fail over.
//!
//! The "replays 0 / lost 0" checks hold the agents to docs/protocol.md with the
//! rotation protocol as it is on this branch; the rotation rework (claims in
//! the store) makes them hold without the Redis lock, which a failover loses.

use crate::support::agent::{HELPER, assert_no_secrets, try_http, wait_for};
use crate::support::bao::Bao;
use crate::support::bao_cluster::BaoCluster;
use crate::support::redis::RedisServer;
use crate::support::sentinel::Sentinels;
use crate::support::{Env, FakeSnyk};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CREDS: usize = 4;

/// One answered (or failed) call: when, which agent, what.
#[derive(Clone, Copy, Debug)]
struct Call {
    at: Duration,
    status: u16,
    valid: bool,
}

/// Four callers asking both agents for the fleet's tokens, every other call
/// through the real helper (exit 75, a temporary failure, counts as a 503),
/// until [`Load::finish`]: every call's outcome, timed from the start.
struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
    callers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(envs: &[Env], fake: &FakeSnyk) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sockets: Vec<PathBuf> = envs.iter().map(|e| e.socket.clone()).collect();
        let callers = (0..4)
            .map(|seed| {
                let (sockets, fake) = (sockets.clone(), fake.clone());
                let (stop, calls) = (Arc::clone(&stop), Arc::clone(&calls));
                std::thread::spawn(move || {
                    let mut n = seed;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let (status, valid) = call(&sockets[n % sockets.len()], &fake, n);
                        calls.lock().unwrap().push(Call {
                            at: started.elapsed(),
                            status,
                            valid,
                        });
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Load {
            started,
            stop,
            calls,
            callers,
        }
    }

    /// How long the load has run.
    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the callers and counts what they saw.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.callers {
            c.join().unwrap();
        }
        let calls = self.calls.lock().unwrap().clone();
        let count = |f: &dyn Fn(&Call) -> bool| calls.iter().filter(|c| f(c)).count();
        Tally {
            ok: count(&|c| c.status == 200 && c.valid),
            invalid: count(&|c| c.status == 200 && !c.valid),
            unavailable: count(&|c| c.status == 503),
            other: count(&|c| c.status != 200 && c.status != 503),
            calls,
        }
    }
}

/// Call `n`: credential `c{n % CREDS}` from the agent on `socket`, through
/// the helper when `n` is even: (status, whether the fake accepts the token).
fn call(socket: &PathBuf, fake: &FakeSnyk, n: usize) -> (u16, bool) {
    let client = format!("c{}", n % CREDS);
    if n % 2 == 0 {
        match crate::support::agent::clean(HELPER)
            .arg("--socket")
            .arg(socket)
            .args(["fleet", &client])
            .output()
        {
            Ok(o) if o.status.success() => (
                200,
                fake.access_token_valid(String::from_utf8_lossy(&o.stdout).trim()),
            ),
            Ok(o) if o.status.code() == Some(75) => (503, false),
            Ok(o) => (o.status.code().unwrap_or(0) as u16, false),
            Err(_) => (0, false),
        }
    } else {
        match try_http(socket, &format!("/v1/credentials/fleet/{client}")) {
            Ok((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                (
                    200,
                    fake.access_token_valid(v["access_token"].as_str().unwrap_or("")),
                )
            }
            Ok((st, _)) => (st, false),
            Err(_) => (0, false),
        }
    }
}

/// What the callers saw.
struct Tally {
    calls: Vec<Call>,
    /// Answered with a token the fake accepts.
    ok: usize,
    /// Answered with a token the fake refuses.
    invalid: usize,
    /// 503 (exit 75 through the helper).
    unavailable: usize,
    /// Anything else.
    other: usize,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "calls {} served {} invalid {} 503 {} other {}",
            self.calls.len(),
            self.ok,
            self.invalid,
            self.unavailable,
            self.other
        )
    }
}

impl Tally {
    /// The fleet's promises under failover: nothing replayed or lost, no
    /// token the fake refuses, nothing but tokens and 503s, and most calls
    /// served.
    fn assert_held(&self, fake: &FakeSnyk, lost: usize, report: &str) {
        assert_eq!(fake.replays(), 0, "{report}");
        assert_eq!(lost, 0, "{report}");
        assert_eq!(self.invalid, 0, "{report}");
        assert_eq!(self.other, 0, "{report}");
        assert!(self.ok > 200, "{report}");
    }
}

#[test]
fn redis_sentinel_failovers_mid_load_lose_nothing_and_replay_nothing() {
    // Hammers agents through failovers and counts the calls served (a
    // rate): in the serial group, never beside the chaos test.
    let _serial = crate::support::wait::timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(5);
    let bao = Bao::dev();
    let mut redis = Sentinels::start();
    let first = redis.master_port().expect("a master");
    let mut envs: Vec<Env> = (0..2)
        .map(|_| {
            let mut env = Env::on_bao(&fake.url(), &bao);
            env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url(0));
            env
        })
        .collect();
    let agents: Vec<_> = envs.iter_mut().map(|e| e.start()).collect();
    for i in 0..CREDS {
        let rt = fake.new_oauth_client(&format!("c{i}"), None);
        let out = agents[0].put_oauth(envs[0].path(), "fleet", &format!("c{i}"), None, &rt);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for("the token in the master", 10, || {
        redis.get(first, 0, "snyk:fleet:c0").is_some()
    });

    let grants_before = fake.refresh_grants();
    let since = std::time::SystemTime::now();
    let load = Load::start(&envs, &fake);

    // 1. SIGKILL the master mid-load; the sentinels promote a replica. The
    // dead node stays dead: an agent still aiming at its address gets nowhere.
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = load.elapsed();
    redis.kill(first);
    let second = redis.wait_for_new_master(first, 30);
    let promoted_at = load.elapsed();
    std::thread::sleep(Duration::from_secs(4));

    // 2. A planned failover (SENTINEL FAILOVER): the old master stays up,
    // demoted to a replica, so the agents' existing connections to it must
    // move (it would still answer reads, and refuse writes with READONLY).
    let failover_at = load.elapsed();
    // On a loaded machine the sentinels may have failed over once more on
    // their own (1 s down-after) since `second`: the planned failover moves
    // the master from wherever it is then.
    let (before, third) = redis.failover();
    assert!(third != before && third != first, "{before} -> {third}");
    if before != second {
        eprintln!(
            "the sentinels failed over on their own before the planned failover: {second} -> {before}"
        );
    }
    let moved_at = load.elapsed();
    std::thread::sleep(Duration::from_secs(6));
    let tally = load.finish();
    let refreshes = fake.refresh_grants() - grants_before;

    // Each agent now writes to the master in charge: after clearing a
    // cached token through agent n, the token agent n hands out next is in
    // the current master.
    for (n, a) in agents.iter().enumerate() {
        wait_for(&format!("agent {n} ready again"), 15, || {
            a.json("GET", "/v1/ready", None).0 == 200
        });
        let key = format!("snyk:fleet:c{n}");
        wait_for(&format!("agent {n} to write to the new master"), 15, || {
            if a.http("DELETE", &format!("/v1/cache/fleet/c{n}"), None).0 != 200 {
                return false;
            }
            let (st, v) = a.json("GET", &format!("/v1/credentials/fleet/c{n}"), None);
            st == 200 && redis.get(third, 0, &key).as_deref() == v["access_token"].as_str()
        });
    }

    // Nothing lost: the store holds each credential's live refresh token,
    // and both agents serve a valid token for it.
    let mut lost = 0;
    for i in 0..CREDS {
        let client = format!("c{i}");
        let live = fake.live_refresh_token(&client);
        let stored = bao
            .kv2_data("kv", &format!("snyk/fleet/{client}"))
            .and_then(|d| d["refresh_token"].as_str().map(str::to_string));
        let served = agents.iter().all(|a| {
            let (st, v) = a.json("GET", &format!("/v1/credentials/fleet/{client}"), None);
            st == 200 && fake.access_token_valid(v["access_token"].as_str().unwrap_or(""))
        });
        if live.is_none() || stored != live || !served {
            lost += 1;
        }
    }

    let in_outage = |c: &&Call| {
        (c.at >= killed_at && c.at <= promoted_at) || (c.at >= failover_at && c.at <= moved_at)
    };
    let served_in_outage = tally
        .calls
        .iter()
        .filter(in_outage)
        .filter(|c| c.status == 200 && c.valid)
        .count();
    let steady = fake
        .lock()
        .grant_times
        .iter()
        .filter(|t| **t >= since && **t < since + killed_at)
        .count();
    let report = format!(
        "sentinel failover: {tally}; \
         master killed at {killed_at:?}, replica promoted after {:?}; SENTINEL FAILOVER took {:?}; \
         served during failovers {served_in_outage}; refreshes under load {} ({steady} before the first failover); \
         replays {}; lost {lost}; longest gap without a refresh {:?}",
        promoted_at - killed_at,
        moved_at - failover_at,
        refreshes,
        fake.replays(),
        longest_gap(&fake, since),
    );
    if let Ok(path) = std::env::var("SNYKEY_FLEET_REPORT") {
        let per_second: Vec<String> = (0..30)
            .map(|sec| {
                let from = since + Duration::from_secs(sec);
                fake.lock()
                    .grant_times
                    .iter()
                    .filter(|t| **t >= from && **t < from + Duration::from_secs(1))
                    .count()
                    .to_string()
            })
            .collect();
        let _ = std::fs::write(
            format!("{path}.sentinel"),
            format!("{report}\ngrants per second: {}\n", per_second.join(" ")),
        );
    }
    eprintln!("{report}");
    tally.assert_held(&fake, lost, &report);
    assert!(
        served_in_outage > 0,
        "agents serve from their in-process layer while no master answers: {report}"
    );
    let logs: String = agents.iter().map(|a| a.log_text()).collect();
    assert!(
        logs.contains("Redis Sentinel named the master"),
        "the agents asked the sentinels"
    );
    assert_no_secrets("agent logs", &logs, &fake.secrets());
    for a in agents {
        a.stop();
    }
}

/// The longest time between two grants at Snyk (any credential).
fn longest_gap(fake: &FakeSnyk, since: std::time::SystemTime) -> Duration {
    let mut times: Vec<_> = fake
        .lock()
        .grant_times
        .iter()
        .copied()
        .filter(|t| *t >= since)
        .collect();
    times.sort();
    times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .max()
        .unwrap_or_default()
}

#[test]
fn openbao_raft_failover_mid_load_loses_nothing_and_replays_nothing() {
    // Hammers agents through failovers and counts the calls served (a
    // rate): in the serial group, never beside the chaos test.
    let _serial = crate::support::wait::timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(4);
    let mut bao = BaoCluster::start(3);
    let redis = RedisServer::start();
    let addrs: Vec<String> = bao.addrs().iter().map(|a| format!("{a:?}")).collect();
    let mut envs: Vec<Env> = (0..2)
        .map(|_| {
            let mut env = Env::new(&fake.url());
            let tf = env.path().join("bao-token");
            std::fs::write(&tf, &bao.root_token).unwrap();
            env.store_config = format!(
                "backend = \"openbao\"\naddr = [{}]\ntoken_file = {tf:?}\n",
                addrs.join(", ")
            );
            env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
            env
        })
        .collect();
    let agents: Vec<_> = envs.iter_mut().map(|e| e.start()).collect();
    for i in 0..CREDS {
        let rt = fake.new_oauth_client(&format!("c{i}"), None);
        let out = agents[0].put_oauth(envs[0].path(), "fleet", &format!("c{i}"), None, &rt);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let since = std::time::SystemTime::now();
    let grants_before = fake.refresh_grants();
    let load = Load::start(&envs, &fake);

    // 1. SIGKILL the active node mid-load; the other two elect a leader.
    std::thread::sleep(Duration::from_secs(3));
    let first = bao.active().expect("an active node");
    let killed_at = load.elapsed();
    bao.kill(first);
    let second = bao.wait_for_new_active(first, 60);
    let elected_at = load.elapsed();
    std::thread::sleep(Duration::from_secs(4));
    // It comes back (sealed, then unsealed) and rejoins as a standby.
    bao.restart(first);
    std::thread::sleep(Duration::from_secs(3));

    // 2. The active node partitioned (SIGSTOP) for longer than the Snyk
    // timeout (3 s here): agents' requests to it hang until their timeout.
    let paused_at = load.elapsed();
    bao.pause(second);
    let third = bao.wait_for_new_active(second, 60);
    let elected2_at = load.elapsed();
    std::thread::sleep(Duration::from_secs(6));
    bao.resume(second);
    std::thread::sleep(Duration::from_secs(5));
    let tally = load.finish();
    let refreshes = fake.refresh_grants() - grants_before;

    // Nothing lost: the active node holds each live refresh token (a
    // refresh may land between the two reads: read again), and both agents
    // serve a valid token for every credential.
    let mut lost = 0;
    for i in 0..CREDS {
        let client = format!("c{i}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let stored_ok = loop {
            let live = fake.live_refresh_token(&client);
            let stored = bao
                .kv2_data(&format!("snyk/fleet/{client}"))
                .and_then(|d| d["refresh_token"].as_str().map(str::to_string));
            if live.is_some() && stored == live {
                break true;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "{client}: live {} stored {}",
                    live.is_some(),
                    stored.is_some()
                );
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let served = agents.iter().all(|a| {
            let (st, v) = a.json("GET", &format!("/v1/credentials/fleet/{client}"), None);
            st == 200 && fake.access_token_valid(v["access_token"].as_str().unwrap_or(""))
        });
        if !(stored_ok && served) {
            eprintln!("{client}: stored matches {stored_ok}, served {served}");
            lost += 1;
        }
    }
    if let Ok(dir) = std::env::var("SNYKEY_FLEET_LOGS") {
        for (n, a) in agents.iter().enumerate() {
            let _ = std::fs::write(format!("{dir}/agent-{n}.log"), a.log_text());
        }
    }

    let gap = longest_gap(&fake, since);
    let report = format!(
        "openbao raft failover: {tally}; \
         active node {first} SIGKILLed at {killed_at:?}, node {second} active after {:?}; \
         node {second} SIGSTOPped at {paused_at:?}, node {third} active after {:?}; \
         refreshes under load {}; replays {}; lost {lost}; longest gap without a refresh {gap:?}",
        elected_at - killed_at,
        elected2_at - paused_at,
        refreshes,
        fake.replays(),
    );
    eprintln!("{report}");
    if let Ok(path) = std::env::var("SNYKEY_FLEET_REPORT") {
        let _ = std::fs::write(path, &report);
    }
    let logs: String = agents.iter().map(|a| a.log_text()).collect();
    tally.assert_held(&fake, lost, &report);
    assert!(
        logs.contains("following the active node"),
        "the agents moved to another node: {report}\n{}",
        logs.lines()
            .filter(|l| l.contains("OpenBao") || l.contains("store"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_no_secrets("agent logs", &logs, &fake.secrets());
    assert!(!logs.contains(&bao.root_token));
    for a in agents {
        a.stop();
    }
}

/// A YAML file (all its documents) as JSON, parsed by PyYAML.
pub(crate) fn yaml(path: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to parse the example YAML: {e}; install it with `apt-get install python3-yaml` (.ci/run does)")
        });
    assert!(
        out.status.success(),
        "{} is not valid YAML (or PyYAML is missing: `apt-get install python3-yaml`): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `SNYKEY_*` key of every object in `v`, with its value.
fn snykey_vars(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m {
                if k.starts_with("SNYKEY_") {
                    out.push((k.clone(), val.as_str().unwrap_or_default().to_string()));
                }
                snykey_vars(val, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| snykey_vars(x, out)),
        _ => {}
    }
}

#[test]
fn example_deployments_parse_and_set_only_documented_keys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let documented = std::fs::read_to_string(root.join("config.toml")).unwrap();
    // section -> keys named in examples/config.toml (set or commented out).
    let mut keys: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut section = String::new();
    for line in documented.lines() {
        let t = line.trim().trim_start_matches('#').trim();
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, _)) = t.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.entry(section.clone()).or_default().push(k.to_string());
            }
        }
    }
    let mut vars = Vec::new();
    for f in [
        "docker-compose.yml",
        "fleet/docker-compose.yml",
        "kubernetes/job.yaml",
        "github-actions.yml",
    ] {
        snykey_vars(&yaml(&root.join(f)), &mut vars);
    }
    assert!(vars.len() >= 8, "{vars:?}");
    for (var, _) in &vars {
        let rest = var.trim_start_matches("SNYKEY_").to_ascii_lowercase();
        // The helper's and CLI's own variables (docs/api.md, docs/configuration.md) are not config keys.
        if ["socket", "org_id", "client_id", "log"].contains(&rest.as_str()) {
            continue;
        }
        let documented_here = rest
            .split_once('_')
            .is_some_and(|(s, k)| keys.get(s).is_some_and(|ks| ks.iter().any(|x| x == k)));
        assert!(
            documented_here,
            "{var} is set in an example but its key is not in examples/config.toml"
        );
    }

    // The fleet agents' environment is a valid configuration: three OpenBao
    // nodes and the Sentinel form of the cache URL.
    let fleet = yaml(&root.join("fleet/docker-compose.yml"));
    let mut env = vec![
        ("SNYKEY_SOCKET".to_string(), "/tmp/unused.sock".to_string()),
        // Never the machine's /etc/snykey/config.toml.
        (
            "CONFIGURATION_DIRECTORY".to_string(),
            crate::support::agent::empty_config_home()
                .join("etc")
                .display()
                .to_string(),
        ),
    ];
    snykey_vars(&fleet[0]["services"]["snykey-a"], &mut env);
    let cfg = snykey::config::Config::load_from(None, &env).unwrap();
    assert_eq!(cfg.store.addrs.len(), 3, "{:?}", cfg.store.addrs);
    let url = snykey::cache::redis::parse_sentinel_url(cfg.cache.url.expose())
        .unwrap()
        .expect("a redis+sentinel:// URL");
    assert_eq!(url.sentinels.len(), 3);
    assert_eq!(url.master, "snykey");
    let sentinel_conf = std::fs::read_to_string(root.join("fleet/sentinel.conf")).unwrap();
    assert!(sentinel_conf.contains("sentinel monitor snykey "));
    for n in 1..=3 {
        let hcl = std::fs::read_to_string(root.join(format!("fleet/bao-{n}.hcl"))).unwrap();
        assert!(hcl.contains("storage \"raft\"") && hcl.matches("retry_join {").count() == 3);
    }

    // The Kubernetes example's config file is a valid configuration.
    let job = yaml(&root.join("kubernetes/job.yaml"));
    let toml = job
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["config.toml"].as_str())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // The pod's shared volume (/run/snykey, where its token file goes) is a
    // temp dir here: the config checks that a sink's directory exists.
    let volume = dir.path().join("run-snykey");
    std::fs::create_dir(&volume).unwrap();
    let toml = toml.replace("/run/snykey", volume.to_str().unwrap());
    std::fs::write(&path, toml).unwrap();
    snykey::config::Config::load_from(Some(&path), &[]).unwrap();
}

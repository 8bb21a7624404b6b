//! Two agents sharing one OpenBao (KV v2, behind the fault proxy) and one
//! Redis, as agents on two hosts share them: the set-up of the tests that
//! break things between agents (`guarantees`, `edges`), and the moment to
//! break them at ([`wait_at_snyk`]).

use super::bao::Bao;
use super::openbao::BaoProxy;
use super::redis::RedisServer;
use super::{Agent, Env, FakeSnyk};
use std::time::{Duration, Instant};

/// A real OpenBao (`bao server -dev`) behind the test proxy, which can make
/// the store refuse writes (a fault the real server cannot be asked for).
pub struct SharedBao {
    pub bao: Bao,
    pub proxy: BaoProxy,
    pub root_token: String,
}

impl SharedBao {
    pub fn start() -> SharedBao {
        let bao = Bao::dev();
        let proxy = BaoProxy::start(&bao.url());
        let root_token = bao.root_token.clone();
        SharedBao {
            bao,
            proxy,
            root_token,
        }
    }

    pub fn url(&self) -> String {
        self.proxy.url()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, super::openbao::Faults> {
        self.proxy.lock()
    }

    pub fn kv2_data(&self, mount: &str, path: &str) -> Option<serde_json::Value> {
        self.bao.kv2_data(mount, path)
    }

    pub fn kv2_history(&self, mount: &str, path: &str) -> Vec<Option<serde_json::Value>> {
        self.bao.kv2_history(mount, path)
    }
}

/// OpenBao KV v2 and a real Redis for `env`, as two agents on two hosts would share them.
pub fn shared_backends(env: &mut Env, bao: &SharedBao, redis: &RedisServer) {
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, &bao.root_token).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\nmount = \"kv\"\nkv_version = 2\n",
        bao.url()
    );
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
}

/// Two agents sharing `bao` and `redis` (each with its own temp dir, kept
/// in the returned envs), credential `org`/`client` put through the first
/// and its access token dropped from the cache: the next call refreshes.
pub fn two_agents_sharing(
    fake: &FakeSnyk,
    bao: &SharedBao,
    redis: &RedisServer,
    org: &str,
    client: &str,
) -> (Vec<Env>, Agent, Agent) {
    let rt = fake.new_oauth_client(client, None);
    let mut envs: Vec<Env> = (0..2).map(|_| Env::new(&fake.url())).collect();
    for env in &mut envs {
        shared_backends(env, bao, redis);
    }
    let a = envs[0].start();
    let b = envs[1].start();
    assert!(
        a.put_oauth(envs[0].path(), org, client, None, &rt)
            .status
            .success()
    );
    a.http("DELETE", &format!("/v1/cache/{org}/{client}"), None);
    (envs, a, b)
}

/// Waits until Snyk has taken the refresh under test (its grant count
/// passed `before`; with `Fault::AnswerLater` the answer is then still on
/// its way), and at least until `at_least` after `since`: the moment to hang
/// up, lose a lock or break the store. Under load the first condition is
/// what matters.
pub fn wait_at_snyk(fake: &FakeSnyk, before: u64, since: Instant, at_least: Duration) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.refresh_grants() <= before {
        assert!(
            Instant::now() < deadline,
            "the refresh never reached the fake Snyk"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(rest) = (since + at_least).checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
}

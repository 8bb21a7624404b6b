//! `store.exclusive = true` on OpenBao (issue 22 item 3; docs/protocol.md rule 7): an
//! agent that owns its store prefix keeps rotating with its journal as the
//! durable copy while the store refuses writes, survives a SIGKILL while the
//! newest token exists only in its journal, and lands that token by
//! succession when writes return. The store is a real OpenBao behind the
//! test proxy, which answers KV writes with 500 and passes reads through.

use crate::support::agent::{assert_no_secrets, stderr, stdout, wait_for};
use crate::support::openbao::BaoProxy;
use crate::support::{Agent, Env, FakeSnyk};

fn journal_text(env: &Env, org: &str, client: &str) -> String {
    std::fs::read_to_string(env.journal.join(format!("{org}@{client}.json"))).unwrap_or_default()
}

/// The lines of an agent's log a failure shows: its warnings and errors.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains(" INFO "))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The helper asks and succeeds with a token the fake accepts.
fn assert_serves(fake: &FakeSnyk, agent: &Agent, org: &str, client: &str) {
    let out = agent.helper(&[org, client]);
    assert!(
        out.status.success(),
        "{}\nagent log:\n{}",
        stderr(&out),
        agent.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
}

#[test]
fn an_exclusive_agent_rotates_on_its_journal_while_openbao_refuses_writes_and_lands_after_a_kill() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(6);
    let bao = crate::support::bao::Bao::dev();
    let proxy = BaoProxy::start(&bao.url());
    let rt = fake.new_oauth_client("cx", Some("sec-cx"));
    let mut env = Env::new(&fake.url());
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, &bao.root_token).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\nmount = \"kv\"\nkv_version = 2\nexclusive = true\n",
        proxy.url()
    );
    let agent = env.start();
    let out = agent.put_oauth(env.path(), "ox", "cx", Some("sec-cx"), &rt);
    assert!(out.status.success(), "{}", stderr(&out));
    let base = bao.kv2_data("kv", "snyk/ox/cx").unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();

    // The store stops taking writes (reads still work).
    proxy.lock().fail_writes = true;
    let grants = fake.refresh_grants();
    // Rotation goes on (6 s tokens: one about every 4 s), and a caller whose
    // cache was dropped is served too.
    wait_for("two rotations while the store refuses writes", 30, || {
        fake.refresh_grants() >= grants + 2
    });
    agent.clear_cache("ox", "cx");
    assert_serves(&fake, &agent, "ox", "cx");
    assert!(
        proxy.lock().writes_failed > 0,
        "the store did refuse writes"
    );
    let live = fake.live_refresh_token("cx").unwrap();
    wait_for("the newest token in the journal", 10, || {
        journal_text(&env, "ox", "cx").contains(fake.live_refresh_token("cx").unwrap().as_str())
    });
    assert_eq!(
        bao.kv2_data("kv", "snyk/ox/cx").unwrap()["refresh_token"],
        base.as_str(),
        "the store still holds the chain's base"
    );
    assert_ne!(live, base);
    assert_eq!(agent.status_of("ox", "cx")["state"], "degraded");

    // SIGKILL while the newest token exists only in the journal.
    agent.kill();
    let journaled = fake.live_refresh_token("cx").unwrap();
    assert!(
        journal_text(&env, "ox", "cx").contains(&journaled),
        "the only copy of the newest token is the journal's"
    );
    // Restarted while writes still fail: it rotates on from its journal.
    let grants = fake.refresh_grants();
    let agent = env.start();
    wait_for("a rotation after the restart", 30, || {
        if fake.refresh_grants() > grants {
            Ok(())
        } else {
            Err(tail(&agent.log_text()))
        }
    });
    assert_serves(&fake, &agent, "ox", "cx");
    assert_eq!(
        bao.kv2_data("kv", "snyk/ox/cx").unwrap()["refresh_token"],
        base.as_str()
    );

    // Writes return: the newest token lands over the base by succession.
    proxy.lock().fail_writes = false;
    wait_for("the journal to land", 30, || {
        !env.journal.join("ox@cx.json").exists()
    });
    wait_for("the store to hold the live token", 15, || {
        bao.kv2_data("kv", "snyk/ox/cx")
            .is_some_and(|d| d["refresh_token"] == fake.live_refresh_token("cx").unwrap().as_str())
    });
    let data = bao.kv2_data("kv", "snyk/ox/cx").unwrap();
    assert!(data["claim"].is_null(), "no claim left: {data}");
    assert_eq!(data["client_secret"], "sec-cx");
    wait_for("the state to be ok again", 15, || {
        agent.status_of("ox", "cx")["state"] == "ok"
    });
    agent.assert_refreshes(&fake, "ox", "cx");
    let s = fake.lock();
    assert_eq!((s.replays, s.lost_answer_retries), (0, 0));
    drop(s);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

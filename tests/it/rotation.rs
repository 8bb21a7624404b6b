//! The rotation rule (docs/protocol.md) end to end.

use crate::support::agent::{
    block_journal, block_store, stderr, stdout, unblock_journal, wait_for,
};
use crate::support::{Env, FakeSnyk, Fault};
use std::time::Duration;

#[test]
fn put_rotates_the_given_refresh_token_at_once_and_token_is_accepted_by_snyk() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("client-1", Some("cs-secret-1"));
    let mut env = Env::new(&fake.url());
    let agent = env.start();

    let out = agent.put_oauth(env.path(), "org-1", "client-1", Some("cs-secret-1"), &rt);
    assert!(out.status.success(), "put failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains("stored oauth_app credential org-1/client-1"),
        "{}",
        stdout(&out)
    );
    // The given token was rotated at once: it is dead at Snyk, and the store
    // holds the one live successor.
    assert!(!fake.refresh_token_alive(&rt));
    let live = fake
        .live_refresh_token("client-1")
        .expect("one live refresh token");
    let stored = std::fs::read_to_string(&env.store).unwrap();
    assert!(stored.contains(&live) && !stored.contains(&rt));

    let out = agent.helper(&["org-1", "client-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    assert!(token.ends_with('\n') && token.lines().count() == 1);
    assert!(
        fake.access_token_valid(token.trim()),
        "the fake does not accept the printed token"
    );
    assert_eq!(fake.refresh_grants(), 1, "the cached token must be reused");
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_hundred_concurrent_helpers_on_a_cold_cache_cause_exactly_one_grant() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "o100", "c100", None);
    // Make the cache cold again; the stored refresh token is the live one.
    let (st, _) = agent.http("DELETE", "/v1/cache/o100/c100", None);
    assert_eq!(st, 200);
    let grants_before = fake.refresh_grants();
    // Slow Snyk down so all callers pile up behind the one refresh.
    fake.push_fault(Fault::Delay(Duration::from_millis(300)));

    let socket = agent.socket.clone();
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                crate::support::agent::clean(crate::support::agent::HELPER)
                    .arg("--socket")
                    .arg(&socket)
                    .args(["o100", "c100"])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for o in &outputs {
        assert!(o.status.success(), "helper failed: {}", stderr(o));
    }
    let first = stdout(&outputs[0]);
    assert!(
        outputs.iter().all(|o| stdout(o) == first),
        "all callers must get the same token"
    );
    assert_eq!(
        fake.refresh_grants() - grants_before,
        1,
        "exactly one refresh grant"
    );
    assert_eq!(fake.replays(), 0);
    assert!(fake.access_token_valid(first.trim()));
    agent.stop_and_scan(&fake);
}

#[test]
fn rotated_token_survives_a_store_outage_through_the_journal() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "oj", "cj", Some("secret-cj"));
    agent.http("DELETE", "/v1/cache/oj/cj", None);

    // The store fails on write right after Snyk rotates.
    let blocker = block_store(&env);
    let out = agent.helper(&["oj", "cj"]);
    assert!(
        out.status.success(),
        "served once the journal holds it: {}",
        stderr(&out)
    );
    let live = fake.live_refresh_token("cj").unwrap();
    // Durable in the journal, not in the store.
    let journal = std::fs::read_to_string(env.journal.join("oj@cj.json")).unwrap();
    assert!(
        journal.contains(&live),
        "journal must hold the rotated token"
    );
    assert!(!std::fs::read_to_string(&env.store).unwrap().contains(&live));
    assert_eq!(agent.status_of("oj", "cj")["state"], "degraded");
    let (st, v) = agent.json("GET", "/v1/ready", None);
    assert_eq!(st, 503);
    assert!(v["error"].as_str().unwrap().contains("degraded"), "{v}");

    // The store recovers: the agent lands the token by itself.
    std::fs::remove_dir(&blocker).unwrap();
    wait_for("the store to hold the rotated token", 20, || {
        std::fs::read_to_string(&env.store).unwrap().contains(&live)
    });
    wait_for("state ok", 20, || {
        agent.status_of("oj", "cj")["state"] == "ok"
    });
    assert!(
        !env.journal.join("oj@cj.json").exists(),
        "the journal entry is removed once landed"
    );
    assert_eq!(agent.json("GET", "/v1/ready", None).0, 200);

    // And the credential still refreshes.
    agent.assert_refreshes(&fake, "oj", "cj");
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_restart_replays_the_journal_before_serving() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "or", "cr", None);
    agent.http("DELETE", "/v1/cache/or/cr", None);
    let blocker = block_store(&env);
    assert!(agent.helper(&["or", "cr"]).status.success());
    let live = fake.live_refresh_token("cr").unwrap();
    // Killed with no chance to tidy up, while the store still fails.
    agent.kill();
    std::fs::remove_dir(&blocker).unwrap();
    assert!(!std::fs::read_to_string(&env.store).unwrap().contains(&live));

    let agent = env.start();
    // Replayed at start, before anything was served: the store holds the
    // journaled token, or — when the agent has already refreshed it, which a
    // release build does within milliseconds of starting with an empty
    // memory cache — a successor landed on it by succession.
    let stored = std::fs::read_to_string(&env.store).unwrap();
    assert!(
        std::iter::once(live.clone())
            .chain(fake.successors(&live))
            .any(|t| stored.contains(&t)),
        "the journaled token was not replayed into the store\n{}",
        agent.log_text()
    );
    // The replayed record left the journal. (The agent may already be
    // refreshing the token its memory cache lost, and then the journal holds
    // that refresh's in-flight marker — but never the landed record.)
    let left = std::fs::read_to_string(env.journal.join("or@cr.json")).ok();
    assert!(
        left.as_deref().is_none_or(|j| !j.contains("\"record\"")),
        "the replayed record is still in the journal: {left:?}\n{}",
        agent.log_text()
    );
    // And it refreshes from the replayed token.
    agent.assert_refreshes(&fake, "or", "cr");
    let newest = fake.live_refresh_token("cr");
    assert!(newest.is_some() && newest.as_deref() != Some(live.as_str()));
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

#[test]
fn no_access_token_is_handed_out_while_the_rotated_token_is_only_in_memory() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "om", "cm", None);
    agent.http("DELETE", "/v1/cache/om/cm", None);

    // The journal fails: it cannot note the claim, so nothing is sent
    // (docs/protocol.md rule 3: the nonce is in the journal before every send).
    block_journal(&env);
    let out = agent.helper(&["om", "cm"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no token may be printed");
    assert!(
        stderr(&out).contains("no refresh token is sent"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fake.refresh_grants(), 1, "nothing sent");
    unblock_journal(&env);

    // Both the store and the journal fail while Snyk is rotating.
    fake.push_fault(Fault::AnswerLater(Duration::from_millis(1500)));
    let socket = agent.socket.clone();
    let caller = std::thread::spawn(move || {
        crate::support::agent::clean(crate::support::agent::HELPER)
            .arg("--socket")
            .arg(&socket)
            .args(["om", "cm"])
            .output()
            .unwrap()
    });
    // Once the request is at Snyk (its claim noted), break both.
    crate::support::shared::wait_at_snyk(&fake, 1, std::time::Instant::now(), Duration::ZERO);
    let blocker = block_store(&env);
    block_journal(&env);
    let out = caller.join().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "no token may be printed");
    assert!(stderr(&out).contains("held in memory"), "{}", stderr(&out));
    assert_eq!(fake.refresh_grants(), 2, "put + one refresh");
    // Asking again does not rotate again.
    assert_eq!(agent.helper(&["om", "cm"]).status.code(), Some(75));
    assert_eq!(fake.refresh_grants(), 2);

    // The journal comes back: the token becomes durable and is then served.
    unblock_journal(&env);
    wait_for("the journal to hold the rotated token", 20, || {
        env.journal.join("om@cm.json").exists()
    });
    let out = agent.helper(&["om", "cm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert_eq!(
        fake.refresh_grants(),
        2,
        "the held token is served, not a new one"
    );
    std::fs::remove_dir(&blocker).unwrap();
    let live = fake.live_refresh_token("cm").unwrap();
    wait_for("the store to hold the rotated token", 20, || {
        std::fs::read_to_string(&env.store).unwrap().contains(&live)
    });
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

#[test]
fn invalid_grant_sets_needs_login_and_the_helper_exits_77() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "ox", "cx", None);
    // Someone revokes the live token at Snyk (a user in the web UI, say).
    let live = fake.live_refresh_token("cx").unwrap();
    fake.revoke(&live);
    agent.clear_cache("ox", "cx");
    // On the API: 409 with code needs_login (docs/api.md), one sentence saying
    // what to do, no token.
    let (st, v) = agent.json("GET", "/v1/credentials/ox/cx", None);
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], "needs_login", "{v}");
    assert!(v["error"].as_str().unwrap().contains("snykey login"), "{v}");
    assert!(v.get("access_token").is_none(), "{v}");
    let out = agent.helper(&["ox", "cx"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("snykey login"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert_eq!(agent.status_of("ox", "cx")["state"], "needs_login");
    // No further attempts at Snyk with the dead token.
    let requests = fake.lock().token_requests;
    assert_eq!(agent.helper(&["ox", "cx"]).status.code(), Some(77));
    assert_eq!(fake.lock().token_requests, requests);
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

#[test]
fn a_lost_answer_is_retried_once_with_the_same_token() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "ol", "cl", None);
    agent.http("DELETE", "/v1/cache/ol/cl", None);
    // Snyk processes the refresh and the answer never arrives: an unknown
    // outcome (docs/protocol.md rule 6). The caller is told at once; the one retry
    // waits for the quiet period (1.5 x the Snyk timeout + 1 s).
    fake.push_fault(Fault::DropAfterProcessing);
    let out = agent.helper(&["ol", "cl"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("lost"), "{}", stderr(&out));
    assert_eq!(
        fake.lock().lost_answer_retries,
        0,
        "no retry before the quiet period"
    );
    let out = agent.helper(&["ol", "cl"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(
        fake.lock().lost_answer_retries,
        0,
        "no retry before the quiet period"
    );
    // After it, the same token is sent once more; Snyk refuses it.
    std::thread::sleep(Duration::from_secs(6));
    let out = agent.helper(&["ol", "cl"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("lost in transit"), "{}", stderr(&out));
    let s = fake.lock();
    assert_eq!(
        s.lost_answer_retries, 1,
        "exactly one retry of the same token"
    );
    assert_eq!(s.replays, 0);
    drop(s);
    agent.stop_and_scan(&fake);
}

#[test]
fn transient_snyk_errors_are_retried_without_consuming_the_token() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "ot", "ct", None);
    agent.http("DELETE", "/v1/cache/ot/ct", None);
    fake.push_fault(Fault::Status(503));
    fake.push_fault(Fault::RateLimit(1));
    let out = agent.helper(&["ot", "ct"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    // Three failures in a row exceed what a waiting caller sits out: 75.
    agent.http("DELETE", "/v1/cache/ot/ct", None);
    for _ in 0..3 {
        fake.push_fault(Fault::Status(500));
    }
    let out = agent.helper(&["ot", "ct"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    // A 429 asking for longer than a caller waits is not sat out either.
    fake.lock().faults.clear();
    fake.push_fault(Fault::RateLimit(30));
    let (st, v) = agent.json("GET", "/v1/credentials/ot/ct", None);
    assert_eq!(st, 502);
    assert_eq!(v["code"], "snyk_rate_limited");
    // Then it works again with the same (unconsumed) token.
    let out = agent.helper(&["ot", "ct"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fake.replays(), 0);
    agent.stop_and_scan(&fake);
}

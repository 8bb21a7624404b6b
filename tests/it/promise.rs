//! Issue 22, after its review: the promise on the paths the first round
//! left open, each against a real OpenBao (KV v2) and the strict fake Snyk.
//!
//! * A put that Snyk refuses changes nothing: the record, the state, the
//!   cached token (a wrong client secret, a dead refresh token), and the
//!   token it replaced survives a SIGKILL between the put's write and
//!   Snyk's refusal (the journal holds it).
//! * `rotate-secret` claims the record before it asks Snyk, and a
//!   service account mints with the newest secret even while only the
//!   journal holds it.

use crate::support::agent::{assert_no_secrets, stderr, stdout, wait_for};
use crate::support::bao::Bao;
use crate::support::openbao::BaoProxy;
use crate::support::{Agent, Env, FakeSnyk, Fault};
use std::time::{Duration, Instant};

/// The KV v2 record of `org/client`.
fn record(bao: &Bao, org: &str, client: &str) -> serde_json::Value {
    bao.kv2_data("kv", &format!("snyk/{org}/{client}"))
        .unwrap_or_default()
}

fn secret_file(env: &Env, name: &str, secret: &str) -> String {
    let f = env.path().join(name);
    std::fs::write(&f, secret).unwrap();
    f.display().to_string()
}

/// What must not change when a put is refused: the stored record's
/// secrets and state, the credential's state, the cached token.
fn snapshot(bao: &Bao, agent: &Agent, org: &str, client: &str) -> (String, String) {
    let r = record(bao, org, client);
    let st = agent.status_of(org, client);
    let token = agent.token(org, client);
    (
        format!(
            "refresh_token={} client_secret={} state={} kind={}",
            r["refresh_token"], r["client_secret"], r["state"], r["kind"]
        ),
        format!("state={} token={token}", st["state"]),
    )
}

/// Issue 22 follow-up, item 4: `snykey put` with a client secret Snyk
/// refuses (`invalid_client`) changes nothing, for an OAuth app (the secret
/// added to the stored refresh token, or given with a new one) and for a
/// service account: the stored record, the credential's state and its
/// cached token stay as they were, and it goes on refreshing.
#[test]
fn a_put_with_a_client_secret_snyk_refuses_changes_nothing() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let mut env = Env::on_bao(&fake.url(), &bao);
    let agent = env.start();
    agent.put_new_oauth(&fake, "op", "capp", Some("good-secret"));
    fake.new_service_account("csa", "good-sa-secret");
    let good = secret_file(&env, "good-sa", "good-sa-secret");
    let out = agent.cli(
        &[
            "put",
            "--kind",
            "client_secret",
            "--org-id",
            "op",
            "--client-id",
            "csa",
            "--client-secret-file",
            &good,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong = secret_file(&env, "wrong", "wrong-secret");

    for (client, kind, with_token) in [
        ("capp", "oauth_app", false),
        ("capp", "oauth_app", true),
        ("csa", "client_secret", false),
    ] {
        let case = format!("{kind}, a new refresh token given: {with_token}");
        let before = snapshot(&bao, &agent, "op", client);
        let requests = fake.lock().token_requests;
        let mut args = vec![
            "put",
            "--kind",
            kind,
            "--org-id",
            "op",
            "--client-id",
            client,
            "--client-secret-file",
            &wrong,
        ];
        let new_rt = fake.new_oauth_client(&format!("{client}-other"), None);
        if with_token {
            args.extend(["--refresh-token-file", "-"]);
        }
        let out = agent.cli(&args, with_token.then_some(new_rt.as_str()));
        assert!(!out.status.success(), "{case}: Snyk refused the secret");
        assert!(
            stderr(&out).contains("nothing was changed"),
            "{case}: {}",
            stderr(&out)
        );
        assert!(
            fake.lock().token_requests > requests,
            "{case}: the put asked Snyk"
        );
        assert_eq!(
            snapshot(&bao, &agent, "op", client),
            before,
            "{case}: the record, the state and the cached token are as before\n{}",
            agent.log_text()
        );
        agent.assert_refreshes(&fake, "op", client);
    }
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 follow-up, item 5: a put of a refresh token Snyk refuses puts
/// back the live token it replaced, also when the agent is SIGKILLed
/// between the put's write and Snyk's answer: the replaced record was
/// journaled with the put's claim, and the restarted agent, once Snyk
/// refuses the put's token, puts it back instead of losing it.
#[test]
fn a_refused_put_gives_back_the_token_it_replaced_after_a_kill() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let mut env = Env::on_bao(&fake.url(), &bao);
    let agent = env.start();
    agent.put_new_oauth(&fake, "ok", "ckill", Some("sec-k"));
    let live = fake.live_refresh_token("ckill").unwrap();
    assert_eq!(record(&bao, "ok", "ckill")["refresh_token"], live.as_str());

    // A token Snyk never issued for this client, held at Snyk 5 s.
    let bad = fake.new_oauth_client("ckill-elsewhere", None);
    let requests = fake.lock().token_requests;
    fake.push_fault(Fault::Delay(Duration::from_secs(5)));
    let mut cmd = crate::support::agent::command(crate::support::agent::SNYKEY, &agent.home);
    let f = secret_file(&env, "sec-k", "sec-k");
    cmd.arg("--socket").arg(&agent.socket).args([
        "put",
        "--org-id",
        "ok",
        "--client-id",
        "ckill",
        "--client-secret-file",
        &f,
        "--refresh-token-file",
        "-",
    ]);
    let put =
        std::thread::spawn(move || crate::support::agent::output_with_stdin(&mut cmd, Some(&bad)));
    wait_for("the put's token at Snyk", 20, || {
        fake.lock().token_requests > requests
    });
    assert_ne!(
        record(&bao, "ok", "ckill")["refresh_token"],
        live.as_str(),
        "the put replaced the stored token before sending its own"
    );
    agent.kill();
    let _ = put.join();

    // Restarted: the put's token is sent once more after the quiet period
    // (its answer was lost with the kill), Snyk refuses it, and the token
    // it replaced is stored again and works.
    let agent = env.start();
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(40) {
        let out = agent.helper(&["ok", "ckill"]);
        if out.status.success() {
            assert!(fake.access_token_valid(stdout(&out).trim()));
            last.clear();
            break;
        }
        last = stderr(&out);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last.is_empty(),
        "the replaced token is back and used: {last}\n{}",
        agent.log_text()
    );
    assert!(!fake.refresh_token_alive(&live), "it was rotated");
    assert_eq!(
        record(&bao, "ok", "ckill")["refresh_token"],
        fake.live_refresh_token("ckill").unwrap().as_str()
    );
    assert_eq!(fake.replays(), 0);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// A store config for OpenBao (KV v2) through `proxy`.
fn through(env: &Env, bao: &Bao, proxy: &BaoProxy, exclusive: bool) -> String {
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, &bao.root_token).unwrap();
    format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\nmount = \"kv\"\nkv_version = 2\nexclusive = {exclusive}\n",
        proxy.url()
    )
}

/// The one service account at the fake: its client id and live secrets.
fn account(fake: &FakeSnyk) -> (String, Vec<String>) {
    let s = fake.lock();
    let sa = s.service_accounts.values().next().unwrap();
    (sa.client_id.clone(), sa.secrets.clone())
}

/// Runs `rotate-secret` in a thread; its output when joined.
fn rotate_in_background(
    agent: &Agent,
    org: &str,
    client: &str,
    tf: &str,
    replace: bool,
) -> std::thread::JoinHandle<std::process::Output> {
    let mut cmd = crate::support::agent::command(crate::support::agent::SNYKEY, &agent.home);
    cmd.arg("--socket")
        .arg(&agent.socket)
        .args(crate::service_accounts::rotate_args(
            org, client, tf, replace,
        ));
    std::thread::spawn(move || cmd.output().unwrap())
}

/// Issue 22 follow-up, item 2: `rotate-secret` (both modes) claims the
/// record in the store before it asks Snyk for a new secret, so a second
/// agent asked for a token meanwhile waits for the landing and mints with
/// the new secret instead of one that is about to be revoked.
#[test]
fn rotate_secret_claims_the_record_before_it_asks_snyk() {
    for replace in [false, true] {
        let fake = FakeSnyk::start();
        let bao = Bao::dev();
        let mut env = Env::on_bao(&fake.url(), &bao);
        let a = env.start();
        let (tf, client) =
            crate::service_accounts::create_client_secret_account(&a, &env, &fake, "orc");
        let mut env_b = Env::on_bao(&fake.url(), &bao);
        let b = env_b.start();
        let old = record(&bao, "orc", &client)["client_secret"].clone();

        // Snyk holds every REST call 2 s: the claim must be there before
        // the new secret exists.
        fake.lock().rest_delay = Some(Duration::from_secs(2));
        let rotation = rotate_in_background(&a, "orc", &client, &tf, replace);
        wait_for("the claim on the record", 15, || {
            let r = record(&bao, "orc", &client);
            if rotation.is_finished() {
                panic!("rotate-secret ended first\n{}", a.log_text());
            }
            if r["claim"].is_null() {
                Err(r.to_string())
            } else {
                Ok(())
            }
        });
        assert_eq!(account(&fake).1.len(), 1, "no new secret at Snyk yet");
        assert_eq!(record(&bao, "orc", &client)["client_secret"], old);
        // The second agent, asked now, waits for the landing.
        let out = b.helper(&["orc", &client]);
        assert!(out.status.success(), "{}\n{}", stderr(&out), b.log_text());
        let out_a = rotation.join().unwrap();
        assert!(
            out_a.status.success(),
            "replace {replace}: {}",
            stderr(&out_a)
        );
        let (_, active) = account(&fake);
        let stored = record(&bao, "orc", &client);
        assert!(stored["claim"].is_null(), "the landing cleared the claim");
        assert_ne!(stored["client_secret"], old);
        assert_eq!(
            active,
            vec![stored["client_secret"].as_str().unwrap().to_string()]
        );
        assert!(fake.access_token_valid(stdout(&out).trim()));
        assert_eq!(
            fake.lock().bad_client_auth,
            0,
            "replace {replace}: nobody used a revoked secret"
        );
        fake.lock().rest_delay = None;
        b.stop();
        let log = a.stop_and_log();
        assert_no_secrets("agent log", &log, &fake.secrets());
    }
}

/// Issue 22 follow-up, item 3: after `rotate-secret --mode replace` whose
/// new secret only the journal holds (OpenBao refused the write), the
/// account's next token is minted with that secret, never with the stored
/// one Snyk has revoked; the secret lands when writes return.
#[test]
fn a_service_account_mints_with_its_journaled_secret_while_openbao_refuses_writes() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let proxy = BaoProxy::start(&bao.url());
    let mut env = Env::new(&fake.url());
    env.store_config = through(&env, &bao, &proxy, false);
    let agent = env.start();
    let (tf, client) =
        crate::service_accounts::create_client_secret_account(&agent, &env, &fake, "ojs");
    let old = record(&bao, "ojs", &client)["client_secret"].clone();

    // The claim lands; then the store refuses writes while Snyk makes the
    // new secret.
    fake.lock().rest_delay = Some(Duration::from_secs(2));
    let rotation = rotate_in_background(&agent, "ojs", &client, &tf, true);
    wait_for("the claim on the record", 15, || {
        !record(&bao, "ojs", &client)["claim"].is_null()
    });
    proxy.lock().fail_writes = true;
    let out = rotation.join().unwrap();
    fake.lock().rest_delay = None;
    let (_, active) = account(&fake);
    assert_eq!(active.len(), 1);
    assert_ne!(serde_json::Value::from(active[0].clone()), old);
    assert_eq!(
        record(&bao, "ojs", &client)["client_secret"],
        old,
        "{}",
        stderr(&out)
    );
    let journal =
        std::fs::read_to_string(env.journal.join(format!("ojs@{client}.json"))).unwrap_or_default();
    assert!(
        journal.contains(&active[0]),
        "the new secret is journaled: {}",
        stderr(&out)
    );

    agent.clear_cache("ojs", &client);
    let out = agent.helper(&["ojs", &client]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        agent.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    assert_eq!(
        fake.lock().bad_client_auth,
        0,
        "the revoked secret was never sent"
    );

    proxy.lock().fail_writes = false;
    wait_for("the new secret in the store", 30, || {
        record(&bao, "ojs", &client)["client_secret"] == active[0].as_str()
    });
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 follow-up, item 7 (a gap found re-reading item 5): a put of a
/// service account's secret on a second agent while `rotate-secret
/// --mode replace` holds its claim waits for that landing, instead of
/// replacing the claimed record and making the rotation drop the only
/// secret Snyk accepts; the put of the revoked secret then changes nothing.
#[test]
fn a_put_waits_for_a_rotation_under_way_on_another_agent() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let mut env = Env::on_bao(&fake.url(), &bao);
    let a = env.start();
    let (tf, client) =
        crate::service_accounts::create_client_secret_account(&a, &env, &fake, "opw");
    let old = record(&bao, "opw", &client)["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mut env_b = Env::on_bao(&fake.url(), &bao);
    let b = env_b.start();

    fake.lock().rest_delay = Some(Duration::from_secs(2));
    let rotation = rotate_in_background(&a, "opw", &client, &tf, true);
    wait_for("the claim on the record", 15, || {
        !record(&bao, "opw", &client)["claim"].is_null()
    });
    let f = secret_file(&env_b, "old", &old);
    let out = b.cli(
        &[
            "put",
            "--kind",
            "client_secret",
            "--org-id",
            "opw",
            "--client-id",
            &client,
            "--client-secret-file",
            &f,
        ],
        None,
    );
    let out_a = rotation.join().unwrap();
    fake.lock().rest_delay = None;
    assert!(
        out_a.status.success(),
        "the rotation landed: {}",
        stderr(&out_a)
    );
    assert!(
        !out.status.success() && stderr(&out).contains("nothing was changed"),
        "the put waited, then Snyk refused the revoked secret: {}",
        stderr(&out)
    );
    let (_, active) = account(&fake);
    assert_eq!(active.len(), 1);
    assert_eq!(
        record(&bao, "opw", &client)["client_secret"],
        active[0].as_str()
    );
    a.clear_cache("opw", &client);
    assert!(fake.access_token_valid(&a.token("opw", &client)));
    b.stop();
    let log = a.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

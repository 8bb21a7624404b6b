//! Service accounts (issue 6): client-secret and private-key-JWT credentials,
//! managing accounts at Snyk, and zero-downtime secret rotation.

use crate::support::agent::{assert_no_secrets, rsa_key, stderr, stdout, wait_for};
use crate::support::{Agent, Env, FakeSnyk};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[test]
fn both_service_account_kinds_print_valid_tokens_and_jwts_are_fresh() {
    let fake = FakeSnyk::start();
    fake.new_service_account("sa-secret-client", "sa-secret-value-1");
    let mut env = Env::new(&fake.url());
    let agent = env.start();

    // client_secret, the secret on stdin.
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "osa",
            "--client-id",
            "sa-secret-client",
            "--kind",
            "client_secret",
            "--client-secret-file",
            "-",
        ],
        Some("sa-secret-value-1\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.helper(&["osa", "sa-secret-client"]);
    assert!(
        out.status.success() && fake.access_token_valid(stdout(&out).trim()),
        "{}",
        stderr(&out)
    );

    // private_key_jwt: a 2048-bit key is accepted, a 1024-bit one is refused at put.
    let (key, public) = rsa_key(env.path(), 2048);
    fake.lock().authority.register("sa-jwt-client", None);
    fake.lock()
        .jwt_keys
        .insert("sa-jwt-client".into(), ("kid-1".into(), public));
    let (weak, _) = rsa_key(env.path(), 1024);
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "osa",
            "--client-id",
            "sa-jwt-client",
            "--kind",
            "private_key_jwt",
            "--private-key-file",
            weak.to_str().unwrap(),
            "--key-id",
            "kid-1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 2048"), "{}", stderr(&out));
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "osa",
            "--client-id",
            "sa-jwt-client",
            "--kind",
            "private_key_jwt",
            "--private-key-file",
            key.to_str().unwrap(),
            "--key-id",
            "kid-1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.helper(&["osa", "sa-jwt-client"]);
    assert!(
        out.status.success() && fake.access_token_valid(stdout(&out).trim()),
        "{}",
        stderr(&out)
    );

    // 20 more grants: 20 more distinct jti, all with the token URL as audience.
    for _ in 0..20 {
        agent.http("DELETE", "/v1/cache/osa/sa-jwt-client", None);
        assert!(agent.helper(&["osa", "sa-jwt-client"]).status.success());
    }
    let s = fake.lock();
    // put mints one (the first helper call is served from it), then 20 cold grants.
    assert_eq!(s.jtis.len(), 21, "put + 20");
    let unique: std::collections::HashSet<_> = s.jtis.iter().collect();
    assert_eq!(
        unique.len(),
        s.jtis.len(),
        "every assertion has its own jti"
    );
    assert!(
        s.auds
            .iter()
            .all(|a| *a == format!("{}/oauth2/token", fake.url())),
        "{:?}",
        s.auds
    );
    drop(s);
    let key_text = std::fs::read_to_string(&key).unwrap();
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    let body_line = key_text.lines().nth(1).unwrap();
    assert!(
        !log.contains(body_line),
        "the private key must not be logged"
    );
}

/// A client-secret service account "ci" in `org`, created through the
/// agent's CLI: the auth token file it used and the account's client id.
pub(crate) fn create_client_secret_account(
    agent: &Agent,
    env: &Env,
    fake: &FakeSnyk,
    org: &str,
) -> (String, String) {
    let tf = auth_token_file(env, fake);
    let out = agent.cli(
        &[
            "service-account",
            "create",
            "--org-id",
            org,
            "--name",
            "ci",
            "--auth-type",
            "oauth_client_secret",
            "--role-id",
            "r",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let client = fake
        .lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .client_id
        .clone();
    (tf, client)
}

pub(crate) fn auth_token_file(env: &Env, fake: &FakeSnyk) -> String {
    fake.lock().api_tokens.push("sa-admin-token".into());
    let f = env.path().join("auth-token");
    std::fs::write(&f, "sa-admin-token").unwrap();
    f.display().to_string()
}

#[test]
fn service_account_create_list_and_delete_with_the_helper_working_at_once() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let tf = auth_token_file(&env, &fake);
    let out = agent.cli(
        &[
            "service-account",
            "create",
            "--org-id",
            "osac",
            "--name",
            "ci",
            "--auth-type",
            "oauth_client_secret",
            "--role-id",
            "role-1",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (id, sa) = fake
        .lock()
        .service_accounts
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    assert!(
        !stdout(&out).contains(&sa.secrets[0]) && !stderr(&out).contains(&sa.secrets[0]),
        "the secret is never printed"
    );
    // The helper works with no other step.
    let out = agent.helper(&["osac", &sa.client_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    // list: a table and JSON.
    let out = agent.cli(
        &[
            "service-account",
            "list",
            "--org-id",
            "osac",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(
        stdout(&out).contains(&id) && stdout(&out).contains("AUTH TYPE"),
        "{}",
        stdout(&out)
    );
    let out = agent.cli(
        &[
            "service-account",
            "list",
            "--org-id",
            "osac",
            "--auth-token-file",
            &tf,
            "--json",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["service_accounts"][0]["client_id"], sa.client_id.as_str());
    // A group-level listing is separate.
    let out = agent.cli(
        &[
            "service-account",
            "list",
            "--group-id",
            "g1",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(stdout(&out).contains("no service accounts"));
    // A REST error is one clear sentence.
    std::fs::write(&tf, "wrong-token").unwrap();
    let out = agent.cli(
        &[
            "service-account",
            "list",
            "--org-id",
            "osac",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(
        !out.status.success() && stderr(&out).contains("token is missing or invalid"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&tf, "sa-admin-token").unwrap();
    // delete: at Snyk and here.
    let out = agent.cli(
        &[
            "service-account",
            "delete",
            "--org-id",
            "osac",
            "--client-id",
            &sa.client_id,
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.lock().service_accounts.is_empty());
    assert_eq!(
        agent.helper(&["osac", &sa.client_id]).status.code(),
        Some(66)
    );
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert!(!log.contains("sa-admin-token"));
}

#[test]
fn rotate_secret_has_no_downtime_and_leaves_exactly_the_stored_secret() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (tf, client) = create_client_secret_account(&agent, &env, &fake, "orot");

    // Helper calls in a loop during the rotation, each on a cold cache so
    // every one needs a grant with the stored secret. Each REST call of the
    // rotation takes a second, so that it spans several helper calls.
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<(Instant, Instant, bool)>>> = Arc::default();
    let looper = {
        let (stop, calls, socket, client, home) = (
            Arc::clone(&stop),
            Arc::clone(&calls),
            agent.socket.clone(),
            client.clone(),
            env.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (st, _) = crate::support::agent::http_on(
                    &socket,
                    "DELETE",
                    &format!("/v1/cache/orot/{client}"),
                    None,
                );
                assert_eq!(st, 200, "clearing the cache");
                let out = crate::support::agent::command(crate::support::agent::HELPER, &home)
                    .arg("--socket")
                    .arg(&socket)
                    .args(["orot", &client])
                    .output()
                    .unwrap();
                calls
                    .lock()
                    .unwrap()
                    .push((started, Instant::now(), out.status.success()));
            }
        })
    };
    wait_for("the helper loop to get a token", 30, || {
        calls.lock().unwrap().iter().any(|c| c.2)
    });
    fake.lock().rest_delay = Some(Duration::from_secs(1));
    let grants_before = fake.lock().client_credentials_grants;
    let rotation_started = Instant::now();
    let out = agent.cli(
        &[
            "service-account",
            "rotate-secret",
            "--org-id",
            "orot",
            "--client-id",
            &client,
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    let rotation_ended = Instant::now();
    let grants_during = fake.lock().client_credentials_grants - grants_before;
    fake.lock().rest_delay = None;
    assert!(out.status.success(), "{}", stderr(&out));
    let calls_before_stop = calls.lock().unwrap().len();
    wait_for("a helper call after the rotation", 30, || {
        calls.lock().unwrap().len() > calls_before_stop + 1
    });
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let calls = calls.lock().unwrap().clone();
    let failed: Vec<_> = calls.iter().filter(|c| !c.2).collect();
    assert!(
        failed.is_empty(),
        "{} of {} helper calls failed around the rotation",
        failed.len(),
        calls.len()
    );
    // The calls that ran entirely inside the rotation: there must be some,
    // each on a cold cache, so each cost a grant with the stored secret.
    let inside = calls
        .iter()
        .filter(|(s, e, _)| *s >= rotation_started && *e <= rotation_ended)
        .count();
    assert!(
        inside >= 2,
        "only {inside} helper calls ran inside the rotation ({:?})",
        rotation_ended - rotation_started
    );
    // (At least one grant per call: a call may take the token of the new
    // secret's proof, published between its cache clear and its read.)
    assert!(
        grants_during >= inside as u64,
        "{grants_during} grants during the rotation for {inside} cold-cache helper calls and the new secret's proof: the calls were not served by grants"
    );

    // Exactly one secret is active at Snyk, and it is the stored one.
    let active = fake
        .lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .secrets
        .clone();
    assert_eq!(active.len(), 1);
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.store).unwrap()).unwrap();
    assert_eq!(
        store["credentials"]["orot"][&client]["client_secret"],
        active[0].as_str()
    );

    // --mode replace (compromised secret): immediate replacement, still one active, stored.
    let out = agent.cli(
        &[
            "service-account",
            "rotate-secret",
            "--org-id",
            "orot",
            "--client-id",
            &client,
            "--mode",
            "replace",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let active2 = fake
        .lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .secrets
        .clone();
    assert_eq!(active2.len(), 1);
    assert_ne!(active2, active);
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.store).unwrap()).unwrap();
    assert_eq!(
        store["credentials"]["orot"][&client]["client_secret"],
        active2[0].as_str()
    );
    agent.http("DELETE", &format!("/v1/cache/orot/{client}"), None);
    assert!(agent.helper(&["orot", &client]).status.success());
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn a_failed_step_in_the_middle_of_rotation_leaves_a_working_stored_secret() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (tf, client) = create_client_secret_account(&agent, &env, &fake, "ofail");
    // Deleting the old secret at Snyk fails.
    fake.lock().fail_secret_delete = true;
    let out = agent.cli(
        &[
            "service-account",
            "rotate-secret",
            "--org-id",
            "ofail",
            "--client-id",
            &client,
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("two secrets are active") && err.contains("--mode replace"),
        "says what is left: {err}"
    );
    // The stored secret works (a fresh grant with it succeeds).
    agent.http("DELETE", &format!("/v1/cache/ofail/{client}"), None);
    let out = agent.helper(&["ofail", &client]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sa = fake
        .lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .clone();
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.store).unwrap()).unwrap();
    assert!(
        sa.secrets
            .iter()
            .any(|s| store["credentials"]["ofail"][&client]["client_secret"] == s.as_str())
    );
    // Cleaning up as told works.
    fake.lock().fail_secret_delete = false;
    let out = agent.cli(
        &[
            "service-account",
            "rotate-secret",
            "--org-id",
            "ofail",
            "--client-id",
            &client,
            "--mode",
            "replace",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fake.lock()
            .service_accounts
            .values()
            .next()
            .unwrap()
            .secrets
            .len(),
        1
    );
    agent.stop();
}

/// The secret the file store holds for `org`/`client`.
fn stored_secret(env: &Env, org: &str, client: &str) -> String {
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.store).unwrap()).unwrap();
    store["credentials"][org][client]["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The secrets Snyk accepts for the (only) service account.
pub(crate) fn active_secrets(fake: &FakeSnyk) -> Vec<String> {
    fake.lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .secrets
        .clone()
}

fn rotate(agent: &Agent, org: &str, client: &str, tf: &str, replace: bool) -> std::process::Output {
    agent.cli(&rotate_args(org, client, tf, replace), None)
}

pub(crate) fn rotate_args<'a>(
    org: &'a str,
    client: &'a str,
    tf: &'a str,
    replace: bool,
) -> Vec<&'a str> {
    let mut args = vec![
        "service-account",
        "rotate-secret",
        "--org-id",
        org,
        "--client-id",
        client,
        "--auth-token-file",
        tf,
    ];
    if replace {
        args.extend(["--mode", "replace"]);
    }
    args
}

/// Runs `rotate-secret` while Snyk holds its test grant (10 s), and
/// SIGKILLs the agent once the grant is at Snyk.
fn kill_during_the_test_grant(
    agent: Agent,
    fake: &FakeSnyk,
    org: &str,
    client: &str,
    tf: &str,
    replace: bool,
) {
    let requests = fake.lock().token_requests;
    fake.push_fault(crate::support::Fault::Delay(Duration::from_secs(10)));
    let mut cmd = crate::support::agent::command(crate::support::agent::SNYKEY, &agent.home);
    cmd.arg("--socket")
        .arg(&agent.socket)
        .args(rotate_args(org, client, tf, replace));
    let cli = std::thread::spawn(move || cmd.output());
    wait_for("the test grant at Snyk", 20, || {
        fake.lock().token_requests > requests
    });
    agent.kill();
    let _ = cli.join();
}

/// Issue 22 item 5: `rotate-secret --mode replace` revokes every secret at
/// Snyk and hands out the only new one; it is durable before the grant that
/// proves it. A 500 or a timeout of that grant keeps it stored (a server
/// error, exit 75, never a usage error), and a SIGKILL during it loses
/// nothing: after the restart the agent mints with it.
#[test]
fn replace_keeps_the_only_new_secret_when_the_test_grant_fails_or_the_agent_is_killed() {
    use crate::support::Fault;
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (tf, client) = create_client_secret_account(&agent, &env, &fake, "orep");

    // The test grant answers 500, then one times out (3 s Snyk timeout).
    for (what, fault) in [
        ("a 500", Fault::Status(500)),
        ("a timeout", Fault::Delay(Duration::from_secs(4))),
    ] {
        let before = active_secrets(&fake);
        fake.push_fault(fault);
        let out = rotate(&agent, "orep", &client, &tf, true);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{what}: a server error, not a usage error: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("the new secret is stored"),
            "{what}: {}",
            stderr(&out)
        );
        let active = active_secrets(&fake);
        assert_eq!(active.len(), 1, "{what}");
        assert_ne!(active, before, "{what}: Snyk replaced the secret");
        assert_eq!(
            stored_secret(&env, "orep", &client),
            active[0],
            "{what}: the only secret Snyk accepts is the stored one"
        );
        agent.http("DELETE", &format!("/v1/cache/orep/{client}"), None);
        let out = agent.helper(&["orep", &client]);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert!(fake.access_token_valid(stdout(&out).trim()));
    }

    // SIGKILL while the test grant is at Snyk.
    kill_during_the_test_grant(agent, &fake, "orep", &client, &tf, true);
    let active = active_secrets(&fake);
    assert_eq!(active.len(), 1);
    let agent = env.start();
    wait_for("the new secret in the store", 10, || {
        stored_secret(&env, "orep", &client) == active[0]
    });
    let out = agent.helper(&["orep", &client]);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        agent.log_text()
    );
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 item 5, the zero-downtime mode: docs/protocol.md rule 15's order (create, store,
/// prove, delete). A test grant that fails transiently leaves the new
/// secret stored and in use and the old one active (two secrets, said so,
/// exit 75); a SIGKILL during the test grant loses nothing.
#[test]
fn a_second_secret_is_stored_before_its_test_grant_and_survives_a_failed_one() {
    use crate::support::Fault;
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (tf, client) = create_client_secret_account(&agent, &env, &fake, "osec");
    let old = stored_secret(&env, "osec", &client);
    fake.push_fault(Fault::Status(503));
    let out = rotate(&agent, "osec", &client, &tf, false);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("two secrets are active") && err.contains("--mode replace"),
        "{err}"
    );
    let active = active_secrets(&fake);
    assert_eq!(active.len(), 2);
    let new = stored_secret(&env, "osec", &client);
    assert_ne!(new, old, "the new secret is stored");
    assert!(active.contains(&new) && active.contains(&old));
    agent.http("DELETE", &format!("/v1/cache/osec/{client}"), None);
    let out = agent.helper(&["osec", &client]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Cleaning up as told works, and leaves one secret, the stored one.
    let out = rotate(&agent, "osec", &client, &tf, true);
    assert!(out.status.success(), "{}", stderr(&out));
    let active = active_secrets(&fake);
    assert_eq!(active, vec![stored_secret(&env, "osec", &client)]);

    // A second secret, and SIGKILL while its test grant is at Snyk: the
    // restarted agent holds it (the old one still works at Snyk too).
    kill_during_the_test_grant(agent, &fake, "osec", &client, &tf, false);
    let active = active_secrets(&fake);
    assert_eq!(active.len(), 2, "the second secret exists at Snyk");
    let before = active[0].clone();
    let issued = active[1].clone();
    assert_eq!(
        stored_secret(&env, "osec", &client),
        issued,
        "stored before the kill"
    );
    let agent = env.start();
    let out = agent.helper(&["osec", &client]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stored_secret(&env, "osec", &client), issued);
    assert_ne!(before, issued);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// docs/protocol.md rule 15's rollback: Snyk refuses the second secret for
/// good (`invalid_client` at its test grant) while the old one still works:
/// the old one is stored again, the answer says so (exit 75), and the helper
/// gets a token with it.
#[test]
fn a_second_secret_snyk_refuses_is_rolled_back_to_the_old_one() {
    use crate::support::Fault;
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let (tf, client) = create_client_secret_account(&agent, &env, &fake, "oref");
    let old = stored_secret(&env, "oref", &client);
    fake.push_fault(Fault::PageAfterProcessing(
        401,
        "application/json",
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    ));
    let out = rotate(&agent, "oref", &client, &tf, false);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Snyk refused the new secret")
            && err.contains("the old one is stored again")
            && !err.contains("is stored and in use"),
        "{err}"
    );
    assert_eq!(stored_secret(&env, "oref", &client), old);
    assert!(
        active_secrets(&fake).contains(&old),
        "the old one still works"
    );
    agent.http("DELETE", &format!("/v1/cache/oref/{client}"), None);
    let out = agent.helper(&["oref", &client]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

/// Issue 22 item 5: `service-account create` is handed the account's secret
/// once; it is stored before the first grant uses it, so a failed first
/// grant (503) leaves it stored and working (a server error, exit 75).
#[test]
fn a_created_service_accounts_secret_is_stored_before_its_first_grant() {
    use crate::support::Fault;
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let tf = auth_token_file(&env, &fake);
    fake.push_fault(Fault::Status(503));
    let out = agent.cli(
        &[
            "service-account",
            "create",
            "--org-id",
            "ocre",
            "--name",
            "ci",
            "--auth-type",
            "oauth_client_secret",
            "--role-id",
            "r",
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its secret is stored"),
        "{}",
        stderr(&out)
    );
    let client = fake
        .lock()
        .service_accounts
        .values()
        .next()
        .unwrap()
        .client_id
        .clone();
    let active = active_secrets(&fake);
    assert_eq!(stored_secret(&env, "ocre", &client), active[0]);
    let out = agent.helper(&["ocre", &client]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fake.access_token_valid(stdout(&out).trim()));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

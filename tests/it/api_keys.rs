//! Issue 26 part 4: the service-account kinds Snyk has. An `api_key`
//! account is created through the agent (Snyk shows its key once: stored,
//! never printed), handed out as `SNYK_TOKEN` and never refreshed; `show`
//! and `rename` get and update one account, at org and group scope, against
//! the fake's REST API.

use crate::service_accounts::auth_token_file;
use crate::support::agent::{assert_no_secrets, stderr, stdout, store_text};
use crate::support::fake_snyk::FakeServiceAccount;
use crate::support::{Agent, Env, FakeSnyk};

/// The fake's one account in `scope` (its id, and the account).
fn account_in(fake: &FakeSnyk, scope: &str) -> (String, FakeServiceAccount) {
    fake.lock()
        .service_accounts
        .iter()
        .find(|(_, a)| a.scope.ends_with(scope))
        .map(|(id, a)| (id.clone(), a.clone()))
        .unwrap()
}

/// `snykey service-account OP --org-id|--group-id SCOPE ... --auth-token-file TF`.
fn sa(
    agent: &Agent,
    op: &str,
    scope: (&str, &str),
    tf: &str,
    more: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "service-account",
        op,
        scope.0,
        scope.1,
        "--auth-token-file",
        tf,
    ];
    args.extend_from_slice(more);
    agent.cli(&args, None)
}

/// `service-account show ... --json`: the output, and the account it shows.
fn shown(
    agent: &Agent,
    scope: (&str, &str),
    tf: &str,
    which: &[&str],
) -> (std::process::Output, serde_json::Value) {
    let mut more = which.to_vec();
    more.push("--json");
    let out = sa(agent, "show", scope, tf, &more);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = serde_json::from_slice(&out.stdout).unwrap();
    (out, v)
}

/// No output of the CLI carries the key.
fn assert_unprinted(out: &std::process::Output, key: &str) {
    assert!(
        !stdout(out).contains(key) && !stderr(out).contains(key),
        "the API key is never printed: {}{}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn an_api_key_account_is_stored_handed_out_as_snyk_token_and_never_refreshed() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let tf = auth_token_file(&env, &fake);
    let mut keys = Vec::new();
    for (flag, scope) in [("--org-id", "okey"), ("--group-id", "gkey")] {
        let out = sa(
            &agent,
            "create",
            (flag, scope),
            &tf,
            &[
                "--name",
                "ci-key",
                "--auth-type",
                "api_key",
                "--role-id",
                "r",
            ],
        );
        assert!(out.status.success(), "{scope}: {}", stderr(&out));
        let (id, acct) = account_in(&fake, scope);
        let key = acct.api_key.unwrap();
        assert_unprinted(&out, &key);
        assert!(
            stdout(&out).contains(&format!("{scope}/{id}")),
            "{}",
            stdout(&out)
        );
        // Durable: in the store, under the account's id (it has no client id).
        assert!(
            store_text(&env).contains(&key),
            "{scope}: the key is stored"
        );

        // Plain output prints it; env and exec export it as SNYK_TOKEN.
        let out = agent.helper(&[scope, &id]);
        assert_eq!(stdout(&out).trim(), key, "{}", stderr(&out));
        let out = agent.helper(&["--format", "env", scope, &id]);
        assert!(
            stdout(&out).starts_with(&format!("export SNYK_TOKEN={key}\n"))
                && !stdout(&out).contains("SNYK_OAUTH_TOKEN")
                && stdout(&out).contains(&format!("export SNYK_API={}", fake.url())),
            "{}",
            stdout(&out)
        );
        let out = agent.helper(&["--format", "json", scope, &id]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["token_type"], "token", "{v}");
        let out = agent.helper(&[
            "exec",
            scope,
            &id,
            "--",
            "sh",
            "-c",
            "printf '%s|%s' \"$SNYK_TOKEN\" \"${SNYK_OAUTH_TOKEN-unset}\"",
        ]);
        assert_eq!(stdout(&out), format!("{key}|unset"), "{}", stderr(&out));
        // The key works at Snyk as the CLI sends it.
        assert!(fake.lock().authorized(Some(&format!("token {key}"))));
        let (st, v) = agent.json("GET", &format!("/v1/credentials/{scope}/{id}"), None);
        assert_eq!((st, v["token_type"].as_str()), (200, Some("token")), "{v}");
        assert_eq!(v["expires_at"], "9999-12-31T23:59:59Z");

        // Status: an api_key, ok, with no expiry and no refresh planned.
        let st = agent.status_of(scope, &id);
        assert_eq!(
            (st["kind"].as_str(), st["state"].as_str()),
            (Some("api_key"), Some("ok")),
            "{st}"
        );
        assert!(
            st["expires_at"].is_null() && st["next_refresh_at"].is_null(),
            "{st}"
        );
        keys.push((scope, id, key));
    }
    // No grant of any kind: an API key is never refreshed.
    assert_eq!(fake.grants(), 0);

    // After a restart the key comes from the store, still without a grant.
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert!(!log.contains("sa-admin-token"));
    let agent = env.start();
    for (scope, id, key) in &keys {
        let out = agent.helper(&[*scope, id.as_str()]);
        assert_eq!(stdout(&out).trim(), key, "{}", stderr(&out));
        let (st, v) = agent.json(
            "POST",
            &format!("/v1/credentials/{scope}/{id}/refresh"),
            None,
        );
        assert_eq!((st, v["access_token"].as_str()), (200, Some(key.as_str())));
    }
    assert_eq!(fake.grants(), 0);

    // Deleting the account removes its credential here too.
    let (_, id, _) = &keys[1];
    let out = sa(
        &agent,
        "delete",
        ("--group-id", "gkey"),
        &tf,
        &["--service-account-id", id],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("and its credential here"),
        "{}",
        stdout(&out)
    );
    assert_eq!(agent.helper(&["gkey", id]).status.code(), Some(66));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn show_and_rename_get_and_update_one_account_at_org_and_group_scope() {
    let fake = FakeSnyk::start();
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    let tf = auth_token_file(&env, &fake);
    for (flag, scope, auth_type) in [
        ("--org-id", "oshow", "oauth_client_secret"),
        ("--group-id", "gshow", "api_key"),
    ] {
        let out = sa(
            &agent,
            "create",
            (flag, scope),
            &tf,
            &[
                "--name",
                "before",
                "--auth-type",
                auth_type,
                "--role-id",
                "r",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let (id, acct) = account_in(&fake, scope);
        let secrets: Vec<String> = acct
            .secrets
            .iter()
            .cloned()
            .chain(acct.api_key.clone())
            .collect();
        assert_eq!(secrets.len(), 1, "{acct:?}");

        // show: a table, or JSON, by id (or by client id).
        let out = sa(
            &agent,
            "show",
            (flag, scope),
            &tf,
            &["--service-account-id", &id],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains(&id) && stdout(&out).contains("before"),
            "{}",
            stdout(&out)
        );
        let by = if acct.client_id.is_empty() {
            id.clone()
        } else {
            acct.client_id.clone()
        };
        let (out, v) = shown(&agent, (flag, scope), &tf, &["--client-id", &by]);
        assert_eq!(
            (v["id"].as_str(), v["auth_type"].as_str()),
            (Some(id.as_str()), Some(auth_type)),
            "{v}"
        );
        for s in &secrets {
            assert_unprinted(&out, s);
        }

        // rename: at Snyk; shown renamed; the credential here keeps its key.
        let out = sa(
            &agent,
            "rename",
            (flag, scope),
            &tf,
            &["--service-account-id", &id, "--name", "after"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("\"after\""), "{}", stdout(&out));
        for s in &secrets {
            assert_unprinted(&out, s);
        }
        assert_eq!(fake.lock().service_accounts[&id].name, "after");
        let (_, v) = shown(&agent, (flag, scope), &tf, &["--service-account-id", &id]);
        assert_eq!(v["name"], "after", "{v}");
        assert!(agent.helper(&[scope, &by]).status.success());

        // Another scope does not have it; an empty name and an id that is
        // not an id are refused before anything is sent.
        let other = if flag == "--org-id" {
            ("--group-id", scope)
        } else {
            ("--org-id", scope)
        };
        let out = sa(&agent, "show", other, &tf, &["--service-account-id", &id]);
        assert!(
            !out.status.success() && stderr(&out).contains("not found"),
            "{}",
            stderr(&out)
        );
        let before = fake.lock().rest_requests;
        let out = sa(
            &agent,
            "rename",
            (flag, scope),
            &tf,
            &["--service-account-id", &id, "--name", " "],
        );
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        let out = sa(
            &agent,
            "show",
            (flag, scope),
            &tf,
            &["--service-account-id", "../x"],
        );
        assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
        assert_eq!(fake.lock().rest_requests, before);
    }
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    assert!(!log.contains("sa-admin-token"));
}

#[test]
fn an_existing_api_key_is_put_checked_and_handed_out_as_it_is_never_via_redis() {
    let fake = FakeSnyk::start();
    let redis = crate::support::redis::RedisServer::start();
    let mut env = Env::new(&fake.url());
    env.extra_config = format!("[cache]\nbackend = \"redis\"\nurl = {:?}\n", redis.url());
    let agent = env.start();
    let key = "sa-api-key-put-7f3e";
    let file = env.path().join("api-key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let file = file.display().to_string();
    let put = |more: &[&str]| {
        let mut args = vec!["put", "--org-id", "oput", "--client-id", "sa-1"];
        args.extend_from_slice(more);
        agent.cli(&args, None)
    };
    // The key belongs to kind api_key, and kind api_key takes only the key.
    let out = put(&["--kind", "client_secret", "--api-key-file", &file]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = put(&["--kind", "api_key"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs api_key"), "{}", stderr(&out));
    let out = put(&["--kind", "api_key", "--api-key-file", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("does not expire"), "{}", stdout(&out));
    assert_unprinted(&out, key);
    assert_eq!(stdout(&agent.helper(&["oput", "sa-1"])).trim(), key);
    assert_eq!(fake.grants(), 0);
    // It does not expire: it is not copied to the shared cache.
    for k in redis.keys("*") {
        assert!(!redis.dump_value(&k).contains(key), "{k} holds the API key");
    }
    assert!(!redis.keys("*").contains(&"snyk:oput:sa-1".to_string()));
    let out = agent.cli(&["status"], None);
    assert!(stdout(&out).contains("api_key"), "{}", stdout(&out));
    assert_unprinted(&out, key);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &[key.to_string()]);
}

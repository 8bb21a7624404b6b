//! Issue 26 part 3: a region per credential. Two fake Snyk servers stand
//! for two regions; the agent's `snyk.api_url` is the first, and a
//! credential put or logged in with `--api-url` of the second is granted,
//! served, exported (`SNYK_API`) and published there, on the real OpenBao.

use crate::service_accounts::{active_secrets, rotate_args};
use crate::support::agent::{assert_no_secrets, stderr, stdout, tcp_get, wait_for};
use crate::support::bao::Bao;
use crate::support::{Agent, Env, FakeSnyk};

/// An agent on `bao` whose `snyk.api_url` is `home`, publishing tokens.
fn agent_on(home: &FakeSnyk, bao: &Bao) -> (Env, Agent) {
    let mut env = Env::on_bao(&home.url(), bao);
    env.extra_config = "[publish]\nprefix = \"snyk-tokens\"\n".into();
    let agent = env.start();
    (env, agent)
}

/// `snykey put` of an OAuth app, with `--api-url` when given.
fn put(agent: &Agent, env: &Env, org: &str, client: &str, rt: &str, api_url: Option<&str>) {
    let secret = env.path().join(format!("cs-{client}"));
    std::fs::write(&secret, format!("cs-{client}")).unwrap();
    let secret = secret.display().to_string();
    let mut args = vec![
        "put",
        "--org-id",
        org,
        "--client-id",
        client,
        "--client-secret-file",
        &secret,
        "--refresh-token-file",
        "-",
    ];
    if let Some(u) = api_url {
        args.extend(["--api-url", u]);
    }
    let out = agent.cli(&args, Some(rt));
    assert!(out.status.success(), "put {client}: {}", stderr(&out));
}

/// `--format env`'s `SNYK_API` and token for a credential.
fn exported(agent: &Agent, org: &str, client: &str) -> (String, String) {
    let out = agent.helper(&["--format", "env", org, client]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    (var("SNYK_API"), var("SNYK_OAUTH_TOKEN"))
}

#[test]
fn a_credential_of_another_region_is_granted_served_exported_and_published_there() {
    let (us, eu) = (FakeSnyk::start(), FakeSnyk::start());
    let bao = Bao::dev();
    let rt_eu = eu.new_oauth_client("ceu", Some("cs-ceu"));
    let rt_us = us.new_oauth_client("cus", Some("cs-cus"));
    let (mut env, agent) = agent_on(&us, &bao);

    // A region that is not a base URL is refused before anything is stored.
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "oeu",
            "--client-id",
            "ceu",
            "--refresh-token-file",
            "-",
            "--api-url",
            "http://snyk.example.com/",
        ],
        Some(&rt_eu),
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("api_url"), "{}", stderr(&out));
    assert!(bao.kv2_data("kv", "snyk/oeu/ceu").is_none());
    assert_eq!(eu.grants() + us.grants(), 0, "nothing was sent anywhere");

    // One credential in each region (a trailing slash is normalized away).
    put(
        &agent,
        &env,
        "oeu",
        "ceu",
        &rt_eu,
        Some(&format!("{}/", eu.url())),
    );
    put(&agent, &env, "ous", "cus", &rt_us, None);
    let per_region = |f: &FakeSnyk| f.refresh_grants_per_client();
    assert_eq!(
        per_region(&eu).get("ceu"),
        Some(&1),
        "the put's rotation went to its region"
    );
    assert!(!per_region(&us).contains_key("ceu") && !per_region(&eu).contains_key("cus"));

    // The store record names the region; a credential put without one names none.
    let rec = bao.kv2_data("kv", "snyk/oeu/ceu").unwrap();
    assert_eq!(rec["api_url"], eu.url().as_str(), "{rec}");
    let rec = bao.kv2_data("kv", "snyk/ous/cus").unwrap();
    assert!(rec.get("api_url").is_none(), "{rec}");

    // Token answers, `--format env`, `exec` and status name each credential's region.
    let (api, token) = exported(&agent, "oeu", "ceu");
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(&token) && !us.access_token_valid(&token));
    let (api, token) = exported(&agent, "ous", "cus");
    assert_eq!(api, us.url());
    assert!(us.access_token_valid(&token));
    let out = agent.helper(&[
        "exec",
        "oeu",
        "ceu",
        "--",
        "sh",
        "-c",
        "printf '%s %s' \"$SNYK_API\" \"$SNYK_OAUTH_TOKEN\"",
    ]);
    let text = stdout(&out);
    let (api, token) = text.split_once(' ').unwrap();
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(token), "{text}");
    let st = agent.status_of("oeu", "ceu");
    assert_eq!(st["api_url"], eu.url().as_str(), "{st}");
    assert!(agent.status_of("ous", "cus").get("api_url").is_none());

    // The published token names its region.
    let published = wait_for("ceu's token to be published", 20, || {
        match bao.kv2_data("kv", "snyk-tokens/oeu/ceu") {
            Some(d) if d["access_token"].is_string() => Ok(d),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(published["api_url"], eu.url().as_str(), "{published}");

    // A forced refresh goes to the credential's region too.
    let (st, v) = agent.json("POST", "/v1/credentials/oeu/ceu/refresh", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["snyk_api"], eu.url().as_str());
    assert_eq!(per_region(&eu).get("ceu"), Some(&2));
    assert!(!per_region(&us).contains_key("ceu"));

    // After a restart the region comes from the store record.
    let mut secrets = us.secrets();
    secrets.extend(eu.secrets());
    agent.stop();
    let agent = env.start();
    agent.clear_cache("oeu", "ceu");
    let (api, token) = exported(&agent, "oeu", "ceu");
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(&token));
    assert!(
        !per_region(&us).contains_key("ceu"),
        "never sent to the agent's region"
    );
    assert_eq!(us.replays() + eu.replays(), 0);
    secrets.extend(us.secrets());
    secrets.extend(eu.secrets());
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &secrets);
}

#[test]
fn a_login_with_a_region_is_authorized_exchanged_and_stored_there() {
    let (us, eu) = (FakeSnyk::start(), FakeSnyk::start());
    let bao = Bao::dev();
    eu.new_oauth_client("clog", Some("sec-clog"));
    let (_env, agent) = agent_on(&us, &bao);
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(&format!(
            r#"{{"org_id":"oeu","client_id":"clog","client_secret":"sec-clog","api_url":"{}"}}"#,
            eu.url()
        )),
    );
    assert_eq!(st, 200, "{v}");
    let url = v["authorize_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/oauth2/authorize?", eu.url())),
        "{url}"
    );
    let (st, location, body) = tcp_get(url);
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    assert_eq!(eu.lock().authorization_code_grants, 1);
    assert_eq!(us.lock().authorization_code_grants, 0);
    let rec = bao.kv2_data("kv", "snyk/oeu/clog").unwrap();
    assert_eq!(rec["api_url"], eu.url().as_str(), "{rec}");
    let (api, token) = exported(&agent, "oeu", "clog");
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(&token));
    // Its refreshes go there.
    agent.clear_cache("oeu", "clog");
    let (_, token) = exported(&agent, "oeu", "clog");
    assert!(eu.access_token_valid(&token));
    // (Refresh tokens issued there past the first: the code exchange's and
    // the refresh's.)
    assert_eq!(eu.refresh_grants_per_client().get("clog"), Some(&2));
    assert_eq!(us.grants(), 0);
    // A login whose region is not a base URL is refused.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"oeu","client_id":"clog","api_url":"ftp://x"}"#),
    );
    assert_eq!((st, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    agent.stop_and_scan(&eu);
}

#[test]
fn a_service_account_created_in_a_region_is_stored_with_it_and_rotated_there() {
    let (us, eu) = (FakeSnyk::start(), FakeSnyk::start());
    let bao = Bao::dev();
    let (env, agent) = agent_on(&us, &bao);
    eu.lock().api_tokens.push("eu-admin-token".into());
    let tf = env.path().join("auth-token");
    std::fs::write(&tf, "eu-admin-token").unwrap();
    let tf = tf.display().to_string();
    let out = agent.cli(
        &[
            "service-account",
            "create",
            "--org-id",
            "osa",
            "--name",
            "ci",
            "--auth-type",
            "oauth_client_secret",
            "--role-id",
            "r",
            "--auth-token-file",
            &tf,
            "--api-url",
            &eu.url(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(us.lock().service_accounts.is_empty() && us.lock().rest_requests == 0);
    let (client, first) = {
        let s = eu.lock();
        let sa = s.service_accounts.values().next().unwrap();
        (sa.client_id.clone(), sa.secrets[0].clone())
    };
    let rec = bao.kv2_data("kv", &format!("snyk/osa/{client}")).unwrap();
    assert_eq!(rec["api_url"], eu.url().as_str(), "{rec}");
    let (api, token) = exported(&agent, "osa", &client);
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(&token));

    // Service-account calls go to --api-url, else to the agent's region,
    // where this account is not: refused there, nothing changed.
    let mut args = rotate_args("osa", &client, &tf, false);
    let out = agent.cli(&args, None);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(active_secrets(&eu), vec![first.clone()]);
    let eu_url = eu.url();
    args.extend(["--api-url", &eu_url]);
    let out = agent.cli(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let now = active_secrets(&eu);
    assert!(now.len() == 1 && now[0] != first, "{now:?}");
    let rec = bao.kv2_data("kv", &format!("snyk/osa/{client}")).unwrap();
    assert_eq!(rec["client_secret"], now[0].as_str());
    assert_eq!(rec["api_url"], eu.url().as_str(), "{rec}");
    assert_eq!(us.grants(), 0);
    agent.stop_and_scan(&eu);
}

#[test]
fn an_app_registered_in_a_region_is_created_stored_and_logged_in_there() {
    let (us, eu) = (FakeSnyk::start(), FakeSnyk::start());
    let bao = Bao::dev();
    eu.lock().api_tokens.push("eu-apps-token".into());
    let (_env, agent) = agent_on(&us, &bao);
    let (st, v) = agent.json(
        "POST",
        "/v1/register-app",
        Some(&format!(
            r#"{{"org_id":"oreg","name":"CI","scopes":["org.read"],"auth_token":"eu-apps-token","api_url":"{}"}}"#,
            eu.url()
        )),
    );
    assert_eq!(st, 200, "{v}");
    let client = v["client_id"].as_str().unwrap().to_string();
    assert_eq!((eu.lock().apps_created, us.lock().apps_created), (1, 0));
    let url = v["authorize_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/oauth2/authorize?", eu.url())),
        "{url}"
    );
    let rec = bao.kv2_data("kv", &format!("snyk/oreg/{client}")).unwrap();
    assert_eq!(rec["api_url"], eu.url().as_str(), "{rec}");
    let (st, location, body) = tcp_get(url);
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    let (api, token) = exported(&agent, "oreg", &client);
    assert_eq!(api, eu.url());
    assert!(eu.access_token_valid(&token));
    assert_eq!(us.grants() + us.lock().rest_requests, 0);
    agent.stop_and_scan(&eu);
}

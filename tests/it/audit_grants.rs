//! Every grant at Snyk writes one audit line (issue 17 item 2): refresh (at
//! `PUT`, on demand, forced, proactive, and a refused attempt), the code
//! exchange of a browser login, client credentials (both service-account
//! kinds) and a secret rotation — with no secret and no fingerprint in the
//! file, and a chain `snykey audit verify` accepts.

use crate::support::agent::{SNYKEY, assert_no_secrets, rsa_key, stderr, tcp_get, wait_for};
use crate::support::fake_snyk::Fault;
use crate::support::{Env, FakeSnyk};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

fn grant_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["event"] == "grant")
        .collect()
}

fn count(lines: &[serde_json::Value], op: &str, client: &str, outcome: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["op"] == op && l["client_id"] == client && l["outcome"] == outcome)
        .count()
}

#[test]
fn every_grant_at_snyk_writes_one_audit_line_without_a_secret() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("app-g", Some("sec-app-g"));
    fake.new_oauth_client("app-l", Some("sec-app-l"));
    fake.new_service_account("sa-cs", "sa-cs-secret-value");
    fake.lock().api_tokens.push("sa-admin-token".into());
    let mut env = Env::new(&fake.url());
    let (key, public) = rsa_key(env.path(), 2048);
    fake.lock().authority.register("sa-jwt", None);
    fake.lock()
        .jwt_keys
        .insert("sa-jwt".into(), ("kid-1".into(), public));
    let audit = env.path().join("audit.log");
    env.server_config = format!("audit_log = {audit:?}\n");
    let agent = env.start();

    // Refresh: the rotation at PUT, then on demand after the cache is cleared.
    let out = agent.put_oauth(env.path(), "org-g", "app-g", Some("sec-app-g"), &rt);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        agent.http("DELETE", "/v1/cache/org-g/app-g", None).0,
        200,
        "clear the cache"
    );
    let out = agent.helper(&["org-g", "app-g"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Forced, with one attempt Snyk refuses (503 with an OAuth error: not
    // consumed, retried): an `error` line, then an `ok` line. Its token
    // lives 4 s, so the scheduler refreshes proactively with no caller.
    fake.set_expires_in(4);
    fake.push_fault(Fault::Status(503));
    let out = agent.cli(&["refresh", "org-g", "app-g"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let forced = fake.refresh_grants();
    wait_for("two proactive refreshes with no caller", 30, || {
        fake.refresh_grants() >= forced + 2
    });
    fake.set_expires_in(3600);
    let g = fake.refresh_grants();
    wait_for("the proactive refresh to a long-lived token", 15, || {
        fake.refresh_grants() > g
    });

    // Client credentials: a client-secret and a private-key-JWT service account.
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "org-g",
            "--client-id",
            "sa-cs",
            "--kind",
            "client_secret",
            "--client-secret-file",
            "-",
        ],
        Some("sa-cs-secret-value\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.cli(
        &[
            "put",
            "--org-id",
            "org-g",
            "--client-id",
            "sa-jwt",
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

    // A secret rotation of a service account created through the agent.
    let (tf, sa_client) =
        crate::service_accounts::create_client_secret_account(&agent, &env, &fake, "org-g");
    let out = agent.cli(
        &[
            "service-account",
            "rotate-secret",
            "--org-id",
            "org-g",
            "--client-id",
            &sa_client,
            "--auth-token-file",
            &tf,
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The code exchange of a browser login.
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(r#"{"org_id":"org-l","client_id":"app-l","client_secret":"sec-app-l"}"#),
    );
    assert_eq!(st, 200, "{v}");
    let (st, location, body) = tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");

    assert_eq!(agent.stop(), Some(0));
    let lines = grant_lines(&audit);

    // Refresh: one `ok` line per grant Snyk made, at least five of them
    // (put, on demand, forced, two proactive), and the refused attempt.
    let refreshes = count(&lines, "refresh", "app-g", "ok");
    assert_eq!(
        refreshes as u64,
        fake.refresh_grants(),
        "one line per refresh grant: {lines:#?}"
    );
    assert!(refreshes >= 5, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l["op"] == "refresh"
            && l["client_id"] == "app-g"
            && l["outcome"] == "error"
            && l["code"] == "unavailable"),
        "the refused attempt: {lines:#?}"
    );
    // Client credentials: both kinds, the created account, the rotation's
    // proof; as many lines as grants the fake made.
    for client in ["sa-cs", "sa-jwt", sa_client.as_str()] {
        assert!(
            count(&lines, "client_credentials", client, "ok") >= 1,
            "client credentials of {client}: {lines:#?}"
        );
    }
    let cc: usize = lines
        .iter()
        .filter(|l| l["op"] == "client_credentials" && l["outcome"] == "ok")
        .count();
    assert_eq!(cc as u64, fake.lock().client_credentials_grants);
    assert_eq!(
        count(&lines, "secret_rotation", &sa_client, "ok"),
        1,
        "{lines:#?}"
    );
    assert_eq!(count(&lines, "code_exchange", "app-l", "ok"), 1);

    // Every grant line names its credential and carries nothing else: no
    // token, no fingerprint field.
    for l in &lines {
        let fields: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        for f in &fields {
            assert!(
                [
                    "time",
                    "event",
                    "op",
                    "org_id",
                    "client_id",
                    "outcome",
                    "code",
                    "prev"
                ]
                .contains(f),
                "unexpected field {f} in {l}"
            );
        }
        assert!(l["org_id"].is_string() && l["client_id"].is_string(), "{l}");
        assert!(l["outcome"] == "ok" || l["outcome"] == "error", "{l}");
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    let mut secrets = fake.secrets();
    secrets.extend(
        [
            "sa-admin-token",
            "sa-cs-secret-value",
            "sec-app-g",
            "sec-app-l",
        ]
        .map(String::from),
    );
    for sa in fake.lock().service_accounts.values() {
        secrets.extend(sa.secrets.iter().cloned());
    }
    assert_no_secrets("audit log", &text, &secrets);
    for s in &secrets {
        let fp = hex(&Sha256::digest(s.as_bytes()));
        assert!(
            !text.contains(&fp[..16]),
            "a fingerprint of a secret ({}…) is in the audit log",
            &s[..4.min(s.len())]
        );
    }
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(!text.contains(key_text.lines().nth(1).unwrap()));

    let out = Command::new(SNYKEY)
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

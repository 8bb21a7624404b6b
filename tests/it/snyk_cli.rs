//! The real Snyk CLI through the helper (issue 24 item 8): `snykey-helper
//! exec ORG CLIENT -- snyk test` on a small npm project, against the fake
//! Snyk. The CLI reaches it as `http://localhost:PORT` (it switches every
//! other `http://` host to https), finds the region in `SNYK_API` and the
//! org in `SNYK_CFG_ORG`, and sends `SNYK_OAUTH_TOKEN` as a bearer token.

use crate::support::agent::{HELPER, command, stderr, stdout};
use crate::support::snyk_cli::{node, npm_project, snyk_cli};
use crate::support::{Env, FakeSnyk};

#[test]
fn snyk_test_through_the_helper_passes_with_the_helpers_token_only() {
    let cli = snyk_cli();
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cli-app", Some("cli-secret"));
    let mut env = Env::new(&fake.localhost_url());
    let agent = env.start();
    let put = agent.put_oauth(env.path(), "cli-org", "cli-app", Some("cli-secret"), &rt);
    assert!(put.status.success(), "{}", stderr(&put));
    let project = npm_project(env.path());
    let home = env.path().join("cli-home");
    std::fs::create_dir_all(&home).unwrap();

    let out = command(HELPER, &agent.home)
        .current_dir(&project)
        .env("HOME", &home)
        .env("SNYK_DISABLE_ANALYTICS", "1")
        // A stale region in the caller's environment: the helper replaces
        // it with the agent's (and were it not to, the CLI would go to a
        // closed loopback port, never to the real Snyk).
        .env("SNYK_API", "http://localhost:1")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["exec", "cli-org", "cli-app", "--"])
        .arg(node())
        .arg(&cli)
        .arg("test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snyk test through the helper failed ({:?}):\n{}\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("no vulnerable paths found"),
        "{}",
        stdout(&out)
    );
    let token = agent.token("cli-org", "cli-app");
    let requests = fake.lock().v1_requests.clone();
    let tests: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/v1/test-dep-graph")
        .collect();
    assert_eq!(tests.len(), 1, "{requests:#?}");
    assert!(
        tests[0].packages.iter().any(|p| p == "ms@2.1.3"),
        "the project's dependency did not reach Snyk: {:?}",
        tests[0].packages
    );
    for r in &requests {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {token}").as_str()),
            "{} {} did not carry the helper's token as a bearer token",
            r.method,
            r.path
        );
        assert!(
            r.query.split('&').any(|p| p == "org=cli-org"),
            "{} {}?{}: not for the credential's org (SNYK_CFG_ORG)",
            r.method,
            r.path,
            r.query
        );
        assert_eq!(r.status, 200, "{r:?}");
    }

    // A token the fake never issued, straight to the CLI: Snyk refuses it.
    fake.lock().v1_requests.clear();
    let out = command(&node().display().to_string(), env.path())
        .current_dir(&project)
        .env("HOME", &home)
        .env("SNYK_DISABLE_ANALYTICS", "1")
        .env("SNYK_API", fake.localhost_url())
        .env("SNYK_CFG_ORG", "cli-org")
        .env("SNYK_OAUTH_TOKEN", "at_never_issued_by_the_fake")
        .arg(&cli)
        .arg("test")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "snyk test with a forged token:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("Authentication failed"), "{text}");
    let refused = fake.lock().v1_requests.clone();
    assert!(
        refused
            .iter()
            .any(|r| r.path == "/v1/test-dep-graph" && r.status == 401),
        "{refused:#?}"
    );
    assert_eq!(fake.replays(), 0);
    agent.stop_and_log();
}

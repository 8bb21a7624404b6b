//! `snykey-helper` per the README's "Getting a token into a tool": formats, exec, env fallbacks, exit codes.

use crate::support::agent::{HELPER, assert_no_secrets, stderr, stdout};
use crate::support::{Env, FakeSnyk, Fault};

#[test]
fn formats_exec_and_environment_fallbacks() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("ch", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "oh", "ch", None, &rt)
            .status
            .success()
    );
    let token = stdout(&agent.helper(&["oh", "ch"])).trim().to_string();
    assert!(fake.access_token_valid(&token));

    let out = agent.helper(&["--format", "json", "oh", "ch"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["access_token"], token.as_str());
    assert_eq!(v["token_type"], "bearer");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v.as_object().unwrap().len(), 3);

    let out = agent.helper(&["--format=env", "oh", "ch"]);
    // The agent's region and the credential's org go with the token.
    let env_lines = format!(
        "export SNYK_OAUTH_TOKEN={token}\nexport SNYK_API={}\nexport SNYK_CFG_ORG=oh\n",
        fake.url()
    );
    assert_eq!(stdout(&out), env_lines);
    // An org the caller chose is left alone.
    let out = crate::support::agent::command(HELPER, &agent.home)
        .env("SNYK_CFG_ORG", "callers-org")
        .args([
            "--socket",
            agent.socket.to_str().unwrap(),
            "--format",
            "env",
            "oh",
            "ch",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        format!(
            "export SNYK_OAUTH_TOKEN={token}\nexport SNYK_API={}\n",
            fake.url()
        )
    );

    // Ids and socket from the environment.
    let out = crate::support::agent::clean(HELPER)
        .env("SNYKEY_SOCKET", &agent.socket)
        .env("SNYKEY_ORG_ID", "oh")
        .env("SNYKEY_CLIENT_ID", "ch")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), token);

    // exec: the token reaches the command's environment, its status is ours.
    let out = agent.helper(&[
        "exec",
        "oh",
        "ch",
        "--",
        "sh",
        "-c",
        "test \"$SNYK_OAUTH_TOKEN\" = \"$0\" && exit 3",
        &token,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = agent.helper(&["exec", "oh", "ch", "--", "/nonexistent/cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert_no_secrets("helper stderr", &stderr(&out), &fake.secrets());

    // The CLI's token command is the same.
    let out = agent.cli(&["token", "oh", "ch", "--format", "env"], None);
    assert_eq!(stdout(&out), env_lines);
    // exec exports SNYK_API and SNYK_CFG_ORG as well, the caller's org first.
    let show = "echo \"$SNYK_API $SNYK_CFG_ORG\"";
    let out = agent.helper(&["exec", "oh", "ch", "--", "sh", "-c", show]);
    assert_eq!(stdout(&out).trim(), format!("{} oh", fake.url()));
    let out = crate::support::agent::command(HELPER, &agent.home)
        .env("SNYK_CFG_ORG", "callers-org")
        .args(["--socket", agent.socket.to_str().unwrap()])
        .args(["exec", "oh", "ch", "--", "sh", "-c", show])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), format!("{} callers-org", fake.url()));
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
}

#[test]
fn every_documented_exit_code_happens_for_real() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("ce", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "oe", "ce", None, &rt)
            .status
            .success()
    );

    // 0
    assert_eq!(agent.helper(&["oe", "ce"]).status.code(), Some(0));
    // 64: usage (missing ids, bad option, bad id, bad duration)
    for args in [
        vec![],
        vec!["--bogus", "oe", "ce"],
        vec!["a:b", "ce"],
        vec!["--min-validity", "5 parsecs", "oe", "ce"],
        vec!["--format", "xml", "oe", "ce"],
    ] {
        let out = crate::support::agent::clean(HELPER)
            .arg("--socket")
            .arg(&agent.socket)
            .args(&args)
            .env_remove("SNYKEY_ORG_ID")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
    }
    // 66: unknown credential
    let out = agent.helper(&["oe", "nobody"]);
    assert_eq!(out.status.code(), Some(66));
    assert_eq!(
        stderr(&out).lines().count(),
        1,
        "one stderr line: {}",
        stderr(&out)
    );
    // 75: Snyk failing (cold cache, 5xx beyond the inline retries)
    agent.http("DELETE", "/v1/cache/oe/ce", None);
    for _ in 0..3 {
        fake.push_fault(Fault::Status(502));
    }
    let out = agent.helper(&["oe", "ce"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("retry"), "{}", stderr(&out));
    // (Faults the agent's retries did not use up must not meet the next call.)
    fake.lock().faults.clear();
    // 77: needs login
    let live = fake.live_refresh_token("ce").unwrap();
    fake.revoke(&live);
    let out = agent.helper(&["oe", "ce"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains("snykey login"));
    // 69: agent unreachable
    let socket = agent.socket.clone();
    let log = agent.stop_and_log();
    let out = crate::support::agent::clean(HELPER)
        .arg("--socket")
        .arg(&socket)
        .args(["oe", "ce"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(stderr(&out).contains("snykey serve"), "{}", stderr(&out));
    assert_no_secrets("agent log", &log, &fake.secrets());
}

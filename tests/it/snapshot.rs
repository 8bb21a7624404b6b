//! Issue 26 part 1: the memory cache's access tokens survive a restart
//! (`cache.snapshot`), and never one the store no longer vouches for.

use crate::support::agent::{Agent, assert_no_secrets, stderr, tcp_get, wait_for};
use crate::support::bao::Bao;
use crate::support::{Env, FakeSnyk};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// An agent on the real OpenBao (KV v2) with the memory cache.
/// Where the snapshot is with OpenBao: in the journal directory.
fn snapshot_in_journal(env: &Env) -> PathBuf {
    env.journal.join("access-tokens.snapshot")
}

/// Where it is with the file store: beside the store's document.
fn snapshot_beside_store(env: &Env) -> PathBuf {
    env.store.parent().unwrap().join("access-tokens.snapshot")
}

/// Waits until every listed credential has its next refresh planned: the
/// agent has decided about each (a token taken back, or one minted).
fn settled(agent: &Agent, keys: &[(&str, &str)]) {
    wait_for("every credential to be planned", 30, || {
        for (org, client) in keys {
            let s = agent.status_of(org, client);
            if !s["next_refresh_at"].is_string() {
                return Err(format!("{org}/{client}: {s}"));
            }
        }
        Ok(())
    });
}

fn tokens(agent: &Agent, keys: &[(&str, &str)]) -> Vec<String> {
    keys.iter().map(|(o, c)| agent.token(o, c)).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_restart_takes_back_valid_tokens_without_a_grant() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3600);
    let bao = Bao::dev();
    let mut env = Env::on_bao(&fake.url(), &bao);
    let keys = [("os", "c1"), ("os", "c2"), ("os", "c3")];
    let agent = env.start();
    for (org, client) in keys {
        agent.put_new_oauth(&fake, org, client, Some(&format!("sec-{client}")));
    }
    let before = tokens(&agent, &keys);
    let log = agent.stop_and_log();
    assert_no_secrets("agent log", &log, &fake.secrets());
    let path = snapshot_in_journal(&env);
    assert_eq!(mode(&path), 0o600, "the snapshot is private");
    assert_eq!(mode(&env.journal), 0o700, "in a private directory");
    // Access tokens only: no refresh token, no client secret.
    let text = std::fs::read_to_string(&path).unwrap();
    let not_access: Vec<String> = fake
        .secrets()
        .into_iter()
        .filter(|s| !s.starts_with("at_"))
        .collect();
    assert!(not_access.iter().any(|s| s.starts_with("rt_")));
    assert_no_secrets("the snapshot", &text, &not_access);
    for t in &before {
        assert!(text.contains(t.as_str()));
    }

    let grants = fake.grants();
    let agent = env.start();
    settled(&agent, &keys);
    assert_eq!(fake.grants(), grants, "no grant for a token still valid");
    assert_eq!(tokens(&agent, &keys), before, "the same tokens, taken back");
    assert!(
        agent.log_text().contains("revived=3"),
        "{}",
        agent.log_text()
    );
    // They still refresh as before.
    agent.assert_refreshes(&fake, "os", "c2");
    agent.stop_and_scan(&fake);
    assert_eq!(fake.replays(), 0);
}

/// Completes a browser login through the agent's API and the fake's
/// authorize endpoint (no browser): a new chain for `client`.
fn login(agent: &Agent, org: &str, client: &str) {
    let (st, v) = agent.json(
        "POST",
        "/v1/login",
        Some(&format!(
            r#"{{"org_id":"{org}","client_id":"{client}","client_secret":"sec-{client}"}}"#
        )),
    );
    assert_eq!(st, 200, "{v}");
    let (st, location, body) = tcp_get(v["authorize_url"].as_str().unwrap());
    assert_eq!(st, 303, "{body}");
    let (st, _, body) = tcp_get(&location.unwrap());
    assert_eq!(st, 200, "{body}");
    let state = v["state"].as_str().unwrap();
    let (_, s) = agent.json("GET", &format!("/v1/login/{state}?wait=10"), None);
    assert_eq!(s["state"], "complete", "{s}");
}

#[test]
fn a_put_login_or_delete_while_the_agent_is_stopped_is_never_undone_by_its_snapshot() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3600);
    let bao = Bao::dev();
    let keys = [
        ("os", "ckeep"),
        ("os", "cput"),
        ("os", "clogin"),
        ("os", "cdel"),
    ];
    let mut a = Env::on_bao(&fake.url(), &bao);
    let agent = a.start();
    for (org, client) in keys {
        agent.put_new_oauth(&fake, org, client, Some(&format!("sec-{client}")));
    }
    let before = tokens(&agent, &keys);
    agent.stop_and_log();

    // While A is stopped, agent B — same store, a copy of A's snapshot, so
    // that it mints nothing at its own start — puts, logs in and deletes.
    let mut b = Env::on_bao(&fake.url(), &bao);
    std::fs::create_dir_all(&b.journal).unwrap();
    std::fs::set_permissions(&b.journal, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(snapshot_in_journal(&a), snapshot_in_journal(&b)).unwrap();
    let grants = fake.grants();
    let other = b.start();
    settled(&other, &keys);
    assert_eq!(fake.grants(), grants, "B took the snapshot's tokens back");
    let rt = fake.new_oauth_client("cput", Some("sec-cput"));
    let out = other.put_oauth(b.path(), "os", "cput", Some("sec-cput"), &rt);
    assert!(out.status.success(), "{}", stderr(&out));
    login(&other, "os", "clogin");
    let out = other.cli(&["delete", "os", "cdel"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    other.stop_and_log();

    let grants = fake.grants();
    let agent = a.start();
    settled(&agent, &keys[..3]);
    // The untouched credential's token is taken back; the put's and the
    // login's are not (their generation moved): minted again, once each.
    assert_eq!(agent.token("os", "ckeep"), before[0]);
    assert_ne!(agent.token("os", "cput"), before[1]);
    assert_ne!(agent.token("os", "clogin"), before[2]);
    assert_eq!(fake.grants(), grants + 2, "{}", agent.log_text());
    // The deleted one is gone, not served from the snapshot.
    let out = agent.helper(&["os", "cdel"]);
    assert!(!out.status.success());
    assert!(!crate::support::agent::stdout(&out).contains(&before[3]));
    assert!(
        agent.log_text().contains("revived=1 not_revived=3"),
        "{}",
        agent.log_text()
    );
    agent.stop_and_scan(&fake);
    assert_eq!(fake.replays(), 0);
}

#[test]
fn a_sigkill_loses_at_most_the_last_interval_and_nothing_else() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3600);
    let mut env = Env::new(&fake.url());
    env.extra_config = "[cache]\nsnapshot_interval = \"1s\"\n".into();
    let keys = [("ok", "k1"), ("ok", "k2"), ("ok", "k3")];
    let agent = env.start();
    for (org, client) in keys {
        agent.put_new_oauth(&fake, org, client, None);
    }
    let before = tokens(&agent, &keys);
    let path = snapshot_beside_store(&env);
    wait_for("the snapshot to hold three tokens", 20, || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        before.iter().all(|t| text.contains(t.as_str()))
    });
    assert_eq!(mode(&path), 0o600);
    // One more, and no time to write it.
    agent.put_new_oauth(&fake, "ok", "k4", None);
    agent.token("ok", "k4");
    agent.kill();

    let grants = fake.grants();
    let agent = env.start();
    let all = [keys[0], keys[1], keys[2], ("ok", "k4")];
    settled(&agent, &all);
    assert_eq!(tokens(&agent, &keys), before);
    assert!(fake.grants() <= grants + 1, "at most k4 is minted again");
    assert!(fake.access_token_valid(&agent.token("ok", "k4")));
    let log = agent.stop_and_log();
    assert!(
        !log.contains("ERROR") && !log.contains("snapshot is ignored"),
        "{log}"
    );
    assert_eq!(fake.replays(), 0);
}

#[test]
fn a_garbage_or_loose_snapshot_is_ignored_with_a_warning_and_replaced() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3600);
    let mut env = Env::new(&fake.url());
    env.extra_config = "[cache]\nsnapshot_interval = \"1s\"\n".into();
    let agent = env.start();
    agent.put_new_oauth(&fake, "og", "g1", None);
    let token = agent.token("og", "g1");
    agent.stop_and_log();
    let path = snapshot_beside_store(&env);
    let good = std::fs::read(&path).unwrap();

    // A valid snapshot others may read: never trusted.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let grants = fake.grants();
    let agent = env.start();
    settled(&agent, &[("og", "g1")]);
    assert_ne!(agent.token("og", "g1"), token);
    assert_eq!(fake.grants(), grants + 1);
    let log = agent.stop_and_log();
    assert!(log.contains("the token snapshot is ignored"), "{log}");
    assert!(log.contains("0644"), "{log}");
    assert_eq!(mode(&path), 0o600, "replaced by a private one");

    // Garbage (and a planted token in it is not quoted).
    std::fs::write(&path, b"{\"tokens\": \"at-planted\"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let grants = fake.grants();
    let agent = env.start();
    settled(&agent, &[("og", "g1")]);
    assert_eq!(fake.grants(), grants + 1);
    wait_for("the garbage to be replaced", 20, || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("snykey access-token snapshot"))
    });
    let log = agent.stop_and_log();
    assert!(log.contains("the token snapshot is ignored"), "{log}");
    assert!(!log.contains("at-planted"), "{log}");

    // Turned off: the file is removed at start, and none is written.
    std::fs::write(&path, &good).unwrap();
    env.extra_config = "[cache]\nsnapshot = false\n".into();
    let agent = env.start();
    assert!(!path.exists(), "access tokens are not left on disk");
    agent.token("og", "g1");
    agent.stop_and_log();
    assert!(!path.exists());
}

/// The file store keeps a delete's tombstone, so a put after a delete
/// continues above the deleted credential's generation
/// ([storage.md](../../docs/storage.md#the-file-store)). Were it to start
/// again from nothing, the new record would climb back to the very
/// generation a token from before the delete was saved at, and that token —
/// minted for the deleted credential — would be taken back after a restart.
#[test]
fn a_delete_and_put_on_the_file_store_never_revive_a_token_from_before_the_delete() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(3600);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    agent.put_new_oauth(&fake, "of", "c1", None);
    let before = agent.token("of", "c1");
    agent.stop_and_log();
    let path = snapshot_beside_store(&env);
    assert!(std::fs::read_to_string(&path).unwrap().contains(&before));

    // While that snapshot waits (the agent runs on another snapshot file
    // meanwhile, as a second agent on the same store would), the credential
    // is deleted and put again with a new refresh token.
    let other = env.path().join("other.snapshot");
    env.extra_config = format!("[cache]\nsnapshot_path = \"{}\"\n", other.display());
    let agent = env.start();
    let out = agent.cli(&["delete", "of", "c1"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let rt = fake.new_oauth_client("c1", None);
    let out = agent.put_oauth(env.path(), "of", "c1", None, &rt);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = agent.token("of", "c1");
    assert_ne!(after, before);
    agent.stop_and_log();

    // Back on the first snapshot: its token belongs to the deleted
    // credential, whatever generation the new record has reached.
    env.extra_config = String::new();
    let agent = env.start();
    settled(&agent, &[("of", "c1")]);
    let served = agent.token("of", "c1");
    assert_ne!(
        served, before,
        "a token minted before the delete was served after it"
    );
    assert!(
        agent.log_text().contains("revived=0 not_revived=1"),
        "{}",
        agent.log_text()
    );
    agent.stop_and_scan(&fake);
    assert_eq!(fake.replays(), 0);
}

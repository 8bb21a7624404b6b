//! The recovery journal's directory belongs to one agent (issue 22 item 7):
//! a second agent given the same `store.journal_dir` would adopt the first
//! one's claims and remove its journaled successors, so it is refused at
//! start with a message naming the key.

use crate::support::agent::{SNYKEY, command, stderr, wait_for};
use crate::support::{Env, FakeSnyk};
use std::process::Stdio;

#[test]
fn a_second_agent_on_the_same_journal_dir_is_refused_naming_store_journal_dir() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cj", None);
    let mut first_env = Env::new(&fake.url());
    let first = first_env.start();
    assert!(
        first
            .put_oauth(first_env.path(), "oj", "cj", None, &rt)
            .status
            .success()
    );
    // Another agent (its own socket and file store) pointed at the same
    // journal directory.
    let mut second_env = Env::new(&fake.url());
    second_env.journal = first_env.journal.clone();
    second_env.write_config();
    let log = second_env.path().join("second.log");
    let mut child = command(SNYKEY, second_env.path())
        .args(["serve", "--config"])
        .arg(&second_env.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = wait_for("the second agent to exit", 30, || match child.try_wait() {
        Ok(Some(st)) => Ok(st),
        Ok(None) => Err("still running".to_string()),
        Err(e) => Err(e.to_string()),
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "the second agent must not run:\n{text}");
    assert!(
        text.contains("store.journal_dir")
            && text.contains(&first_env.journal.display().to_string())
            && text.contains("another snykey agent"),
        "the refusal names the key and the directory:\n{text}"
    );
    assert!(
        !second_env.socket.exists(),
        "the refused agent leaves no socket behind"
    );
    // The first agent is untouched and goes on.
    let out = first.helper(&["oj", "cj"]);
    assert!(out.status.success(), "{}", stderr(&out));
    first.assert_refreshes(&fake, "oj", "cj");
    // Once the first agent is gone, the directory is free again.
    assert_eq!(first.stop(), Some(0));
    let again = second_env.start();
    assert_eq!(again.stop(), Some(0));
    assert_eq!(fake.replays(), 0);
}

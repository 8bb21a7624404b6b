//! `snykey doctor`'s store check (issue 14 item 4): the agent writes a claim
//! by check-and-set on a scratch record no credential can have, reads it
//! back and removes it — against real OpenBao (`bao server -dev`; KV v2, KV
//! v1, and a token whose policy only reads) and the file store.

use crate::support::agent::{SNYKEY, stdout};
use crate::support::bao::Bao;
use crate::support::{Agent, Env, FakeSnyk};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

pub(crate) fn doctor(agent: &Agent, env: &Env) -> Output {
    std::fs::set_permissions(&env.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    Command::new(SNYKEY)
        .arg("--socket")
        .arg(&agent.socket)
        .args(["doctor", "--config"])
        .arg(&env.config)
        .output()
        .unwrap()
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?}:\n{text}"))
}

fn openbao_env(fake: &FakeSnyk, bao: &Bao, token: &str, mount: &str, kv: u8) -> Env {
    let mut env = Env::new(&fake.url());
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\nmount = {mount:?}\nkv_version = {kv}\nprefix = \"snyk\"\n",
        bao.url()
    );
    env
}

#[test]
fn doctor_proves_the_openbao_store_takes_a_claim_and_names_the_policy_when_it_cannot() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cdoc", None);
    let bao = Bao::dev();

    // KV v2 with the agent's policy: a claim by check-and-set, read back and
    // removed; twice (the second over the first one's tombstone).
    let token = bao.create_token("1h", None);
    let mut env = openbao_env(&fake, &bao, &token, "kv", 2);
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "odoc", "cdoc", None, &rt)
            .status
            .success()
    );
    for round in 0..2 {
        if round > 0 {
            // A result is reused for a second.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let out = doctor(&agent, &env);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        let l = line(&text, "✓ store writable:");
        assert!(
            l.contains("a claim written by check-and-set on the scratch record _snykey/doctor, read back and removed"),
            "{l}"
        );
        assert!(line(&text, "✓ store:").contains("KV v2"), "{text}");
        // Removed as a credential is: a tombstone is the current version
        // (check-and-set keeps counting), every older version is destroyed.
        let history = bao.kv2_history("kv", "snyk/_snykey/doctor");
        assert_eq!(history.len(), 2 * (round + 1), "{history:?}");
        let (last, older) = history.split_last().unwrap();
        assert_eq!(last, &Some(json!({"deleted": true})), "{history:?}");
        assert!(older.iter().all(Option::is_none), "{history:?}");
        assert!(!text.contains("credential: _snykey"), "{text}");
    }
    // What the agent lists, after a restart too, never includes the scratch
    // record, and listing it is not worth a warning.
    let (st, v) = agent.json("GET", "/v1/credentials", None);
    assert_eq!(st, 200);
    assert_eq!(v["credentials"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(agent.stop(), Some(0));
    let agent = env.start();
    let (_, v) = agent.json("GET", "/v1/credentials", None);
    assert_eq!(v["credentials"].as_array().unwrap().len(), 1, "{v}");
    let log = agent.log_text();
    assert!(!log.contains("invalid org id"), "{log}");
    assert_eq!(agent.stop(), Some(0));

    // A token whose policy only reads: /v1/ready is content (it can read),
    // the write check is not, and the remedy names the paths to grant.
    bao.ok(
        "PUT",
        "sys/policies/acl/snykey-ro",
        json!({"policy": "path \"kv/*\" { capabilities = [\"read\", \"list\"] }\n"}),
    );
    let ro = bao.ok(
        "POST",
        "auth/token/create",
        json!({"policies": ["snykey-ro"], "ttl": "1h", "no_parent": true}),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut env_ro = openbao_env(&fake, &bao, &ro, "kv", 2);
    let agent = env_ro.start();
    let out = doctor(&agent, &env_ro);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("✓ store and cache:"), "{text}");
    let l = line(&text, "✗ store writable:");
    assert!(l.contains("403"), "{l}");
    assert!(
        l.contains("→ give the agent's OpenBao token (or its AppRole / Kubernetes role) a policy with create, read, update, delete and list on kv/data/snyk/* and kv/metadata/snyk/*"),
        "{l}"
    );
    assert!(!text.contains(&ro) && !text.contains(&token), "{text}");
    assert_eq!(agent.stop(), Some(0));

    // KV v1: writable, but no claim can be written there; the KV line says
    // what that implies and fails.
    let mut env_v1 = openbao_env(&fake, &bao, &token, "kv1", 1);
    let agent = env_v1.start();
    let out = doctor(&agent, &env_v1);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        line(&text, "✓ store writable:").contains("no check-and-set here, so no claim"),
        "{text}"
    );
    let l = line(&text, "✗ store:");
    assert!(
        l.contains("KV v1") && l.contains("not protected") && l.contains("kv_version = 2"),
        "{l}"
    );
    assert_eq!(bao.kv1_data("kv1", "snyk/_snykey/doctor"), None);
    assert_eq!(agent.stop(), Some(0));
}

#[test]
fn doctor_proves_the_file_store_takes_a_claim_and_says_what_is_in_the_way() {
    let fake = FakeSnyk::start();
    let rt = fake.new_oauth_client("cfd", None);
    let mut env = Env::new(&fake.url());
    let agent = env.start();
    assert!(
        agent
            .put_oauth(env.path(), "ofd", "cfd", None, &rt)
            .status
            .success()
    );
    let out = doctor(&agent, &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        line(&text, "✓ store writable:").contains("file ")
            && text.contains("a claim written by check-and-set on the scratch record"),
        "{text}"
    );
    let doc = std::fs::read_to_string(&env.store).unwrap();
    assert!(
        !doc.contains("_snykey"),
        "the scratch record is removed: {doc}"
    );
    assert!(doc.contains("cfd"));

    // A directory where the store writes its temp file: nothing can be
    // written, and the line says so with a remedy.
    let tmp = env.store.with_file_name(".credentials.json.tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = doctor(&agent, &env);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let l = line(&text, "✗ store writable:");
    assert!(
        l.contains("temp file for")
            && l.contains("credentials.json: Is a directory")
            && l.contains("→ make the named file or directory writable"),
        "{l}"
    );
    std::fs::remove_dir(&tmp).unwrap();
    // The credential survived the failed check.
    let doc = std::fs::read_to_string(&env.store).unwrap();
    assert!(doc.contains("cfd") && !doc.contains("_snykey"), "{doc}");
    assert_eq!(agent.stop(), Some(0));
}

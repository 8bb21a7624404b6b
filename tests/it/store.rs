//! The secret store contract against real OpenBao servers (`support::bao`):
//! KV v2 and v1, sealing and restarts, token renewal and expiry, AppRole with
//! an expiring secret id, TLS with a CA file, Kubernetes auth; and, through the
//! pass-through proxy, a write that fails after OpenBao applied it.

use crate::support::bao::Bao;
use crate::support::k8s::FakeK8s;
use crate::support::openbao::BaoProxy;
use snykey::config::Config;
use snykey::credential::CredKey;
use snykey::secret::Secret;
use snykey::store::openbao::OpenBaoStore;
use snykey::store::{Record, SecretStore, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(addr: &str, prefix: &str, kv: u8, extra: &[(&str, &str)]) -> Config {
    let mut env: Vec<(String, String)> = [
        ("SNYKEY_SOCKET", "/tmp/unused.sock"),
        // Never the machine's /etc/snykey/config.toml.
        (
            "CONFIGURATION_DIRECTORY",
            crate::support::agent::empty_config_home()
                .join("etc")
                .to_str()
                .unwrap(),
        ),
        ("SNYKEY_STORE_BACKEND", "openbao"),
        ("SNYKEY_STORE_ADDR", addr),
        ("SNYKEY_STORE_PREFIX", prefix),
        ("SNYKEY_STORE_MOUNT", if kv == 2 { "kv" } else { "kv1" }),
        ("SNYKEY_STORE_KV_VERSION", if kv == 2 { "2" } else { "1" }),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    env.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    Config::load_from(None, &env).unwrap()
}

fn store(addr: &str, token: &str, prefix: &str, kv: u8) -> OpenBaoStore {
    let cfg = config(addr, prefix, kv, &[("SNYKEY_STORE_TOKEN", token)]);
    OpenBaoStore::new(&cfg.store, Duration::from_secs(5))
}

fn rec(rt: &str) -> Record {
    Record {
        refresh_token: Some(Secret::new(rt)),
        client_secret: Some(Secret::new("cs")),
        ..Default::default()
    }
}

/// Polls `f` (async) until it holds, for at most `secs`.
async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn kv2_check_and_set_rejects_a_stale_write_and_the_loser_rereads() {
    let bao = Bao::dev();
    let a = store(&bao.url(), &bao.root_token, "snyk", 2);
    let b = store(&bao.url(), &bao.root_token, "snyk", 2);
    let key = CredKey::parse("org-cas", "client-cas").unwrap();
    assert!(a.get(&key).await.unwrap().is_none());
    assert_eq!(a.put(&key, &rec("rt-1"), Some(0)).await.unwrap(), 1);
    // Create-only refuses an existing record.
    assert!(matches!(
        b.put(&key, &rec("rt-x"), Some(0)).await,
        Err(StoreError::Conflict { .. })
    ));
    // Both agents read version 1; A writes first; B's write is stale.
    let va = a.get(&key).await.unwrap().unwrap();
    let vb = b.get(&key).await.unwrap().unwrap();
    assert_eq!((va.version, vb.version), (1, 1));
    assert_eq!(
        a.put(&key, &rec("rt-2"), Some(va.version)).await.unwrap(),
        2
    );
    let stale = b.put(&key, &rec("rt-stale"), Some(vb.version)).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    // The loser re-reads and sees the winner's token; nothing was overwritten.
    let again = b.get(&key).await.unwrap().unwrap();
    assert_eq!(again.version, 2);
    assert_eq!(again.record.refresh_token.unwrap().expose(), "rt-2");
    // What another tool sees: seed field names, two versions.
    let raw = bao.kv2_data("kv", "snyk/org-cas/client-cas").unwrap();
    assert_eq!(raw["refresh_token"], "rt-2");
    assert_eq!(raw["client_secret"], "cs");
    assert_eq!(bao.kv2_versions("kv", "snyk/org-cas/client-cas"), 2);
    let history = bao.kv2_history("kv", "snyk/org-cas/client-cas");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].as_ref().unwrap()["refresh_token"], "rt-1");
    // snykey sets cas_required on the records it creates (docs/protocol.md rule 10):
    // a blind write by another tool is refused by the real server, a
    // check-and-set write still goes through.
    assert!(bao.kv2_cas_required("kv", "snyk/org-cas/client-cas"));
    assert!(a.put(&key, &rec("rt-blind"), None).await.is_err());
    // Listing finds it. Delete (rule 10): the broker writes a tombstone by
    // check-and-set, then the store destroys every older version; the
    // tombstone and its version counter stay.
    assert_eq!(a.list().await.unwrap(), vec![key.clone()]);
    let tombstone = Record {
        deleted: true,
        generation: 3,
        ..Default::default()
    };
    assert_eq!(a.put(&key, &tombstone, Some(2)).await.unwrap(), 3);
    a.delete(&key).await.unwrap();
    let gone = a
        .get(&key)
        .await
        .unwrap()
        .expect("the tombstone reads back");
    assert!(gone.record.deleted && gone.record.refresh_token.is_none());
    assert_eq!((gone.version, gone.hidden), (3, false));
    let history = bao.kv2_history("kv", "snyk/org-cas/client-cas");
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        history[..2].iter().all(Option::is_none),
        "older versions are destroyed: {history:?}"
    );
    assert!(
        !format!("{history:?}").contains("rt-"),
        "no refresh token survives the delete"
    );
    // A landing that read version 2 cannot bring the credential back.
    assert!(matches!(
        b.put(&key, &rec("rt-late"), Some(2)).await,
        Err(StoreError::Conflict { .. })
    ));
    // A later put goes on from the tombstone's version (never back to 1).
    assert_eq!(a.put(&key, &rec("rt-3"), Some(3)).await.unwrap(), 4);
    assert_eq!(
        a.get(&key)
            .await
            .unwrap()
            .unwrap()
            .record
            .refresh_token
            .unwrap()
            .expose(),
        "rt-3"
    );
    // Deleting twice is harmless.
    a.delete(&key).await.unwrap();
    a.delete(&key).await.unwrap();
    assert!(a.ready().await.is_ok());
}

#[tokio::test]
async fn kv1_round_trip_with_seed_field_names() {
    let bao = Bao::dev();
    let s = store(&bao.url(), &bao.root_token, "snyk", 1);
    let key = CredKey::parse("o1", "c1").unwrap();
    s.put(&key, &rec("rt-v1"), None).await.unwrap();
    let data = bao.kv1_data("kv1", "snyk/o1/c1").unwrap();
    assert_eq!(data["refresh_token"], "rt-v1");
    assert_eq!(data["client_secret"], "cs");
    // A record the seed service wrote is read as is.
    bao.write_kv1(
        "kv1",
        "snyk/o1/seed",
        serde_json::json!({"refresh_token": "rt-seed"}),
    );
    let seed = CredKey::parse("o1", "seed").unwrap();
    let got = s.get(&seed).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-seed");
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-v1");
    let mut keys = s.list().await.unwrap();
    keys.sort_by_key(|k| k.to_string());
    assert_eq!(keys, vec![key.clone(), seed.clone()]);
    s.delete(&key).await.unwrap();
    assert!(s.get(&key).await.unwrap().is_none());
    assert!(bao.kv1_data("kv1", "snyk/o1/c1").is_none());
}

#[tokio::test]
async fn sealed_restarted_and_denied_are_told_apart_on_a_real_server() {
    let mut bao = Bao::persistent();
    let s = store(&bao.url(), &bao.root_token, "snyk", 2);
    let key = CredKey::parse("o", "c").unwrap();
    s.put(&key, &rec("rt-before"), Some(0)).await.unwrap();

    bao.seal();
    assert!(matches!(s.get(&key).await, Err(StoreError::Sealed)));
    assert!(matches!(s.ready().await, Err(StoreError::Sealed)));
    bao.unseal();
    assert!(s.ready().await.is_ok());

    // Killed: unavailable (not sealed, not denied). Restarted: sealed, as a
    // real restart is; unsealed: the data and the agent's token survived.
    bao.kill();
    let down = s.get(&key).await.unwrap_err();
    assert!(matches!(down, StoreError::Unavailable(_)), "{down:?}");
    assert!(
        bao.restart_sealed(),
        "the restart kept its port (else the store's address is stale)"
    );
    assert!(bao.sealed());
    assert!(matches!(s.get(&key).await, Err(StoreError::Sealed)));
    bao.unseal();
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-before");

    let bad = store(&bao.url(), "s.not-a-token", "snyk", 2);
    let e = bad.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(!e.to_string().contains("s.not-a-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_is_renewed_and_an_expired_one_is_replaced_from_its_file() {
    let bao = Bao::persistent();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // Renewable for 2 s at a time, but never past 6 s in all.
    let first = bao.create_token("2s", Some("6s"));
    std::fs::write(&file, &first).unwrap();
    let cfg = config(
        &bao.url(),
        "snyk",
        2,
        &[("SNYKEY_STORE_TOKEN_FILE", file.to_str().unwrap())],
    );
    let s = Arc::new(OpenBaoStore::new(&cfg.store, Duration::from_secs(5)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    s.spawn_renewer(stop_rx);
    let key = CredKey::parse("otok", "ctok").unwrap();
    s.put(&key, &rec("rt"), Some(0)).await.unwrap();
    // Past its first 2 s TTL it still works: it was renewed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(bao.renewals() >= 1, "renewals: {}", bao.renewals());
    assert!(s.get(&key).await.unwrap().is_some());
    // Past its 6 s maximum it is dead: a clear "denied", no token in it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let e = s.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(!e.to_string().contains(&first));
    // An external agent (vault agent, a CI job) puts a new token in the
    // file: the store picks it up on the next refusal, without a restart.
    let second = bao.create_token("1h", None);
    std::fs::write(&file, &second).unwrap();
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt");
    assert!(s.ready().await.is_ok());
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_again_when_tokens_expire_and_takes_a_new_secret_id_from_its_file() {
    let bao = Bao::dev();
    // Tokens of 2 s that cannot be renewed past 2 s; a secret id of 5 s.
    let role_id = bao.approle(
        "snykey",
        serde_json::json!({"token_ttl": "2s", "token_max_ttl": "2s", "secret_id_ttl": "5s"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let (role_file, secret_file) = (dir.path().join("role_id"), dir.path().join("secret_id"));
    std::fs::write(&role_file, &role_id).unwrap();
    let first_secret = bao.secret_id("snykey");
    std::fs::write(&secret_file, &first_secret).unwrap();
    let cfg = config(
        &bao.url(),
        "snyk",
        2,
        &[
            ("SNYKEY_STORE_AUTH", "approle"),
            ("SNYKEY_STORE_ROLE_ID_FILE", role_file.to_str().unwrap()),
            ("SNYKEY_STORE_SECRET_ID_FILE", secret_file.to_str().unwrap()),
        ],
    );
    let s = Arc::new(OpenBaoStore::new(&cfg.store, Duration::from_secs(5)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    s.spawn_renewer(stop_rx);
    let key = CredKey::parse("oar", "car").unwrap();
    s.put(&key, &rec("rt"), Some(0)).await.unwrap();
    assert_eq!(bao.logins("approle"), 1);

    // Keep using the store while tokens expire every 2 s: re-logins with
    // the same secret id keep it working.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        s.get(&key).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        bao.logins("approle") >= 2,
        "logins {}",
        bao.logins("approle")
    );

    // The secret id expires (5 s): the next login is refused, and once the
    // token of the last good login has run out too (2 s), reads are denied...
    eventually("a refused AppRole login", 15, || async {
        bao.audited("auth/approle/login", false) > bao.logins("approle")
    })
    .await;
    eventually("a read denied after the last token ran out", 10, || async {
        matches!(s.get(&key).await, Err(StoreError::Denied(_)))
    })
    .await;
    let e = s.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(!e.to_string().contains(&first_secret));
    // ...until the secret id file holds a new one: then it logs in again.
    let logins = bao.logins("approle");
    std::fs::write(&secret_file, bao.secret_id("snykey")).unwrap();
    eventually("a store read after the new secret id", 10, || async {
        s.get(&key).await.is_ok_and(|r| r.is_some())
    })
    .await;
    assert!(bao.logins("approle") > logins);
    let _ = stop_tx.send(true);
}

#[tokio::test]
async fn tls_needs_the_ca_file_and_works_with_it() {
    let bao = Bao::persistent_tls();
    let ca = bao.tls.as_ref().unwrap().ca.clone();
    assert!(bao.url().starts_with("https://"));
    let key = CredKey::parse("otls", "ctls").unwrap();
    // Without the CA the server's certificate is not trusted.
    let untrusted = store(&bao.url(), &bao.root_token, "snyk", 2);
    let e = untrusted.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    // With store.ca_cert it is.
    let cfg = config(
        &bao.url(),
        "snyk",
        2,
        &[
            ("SNYKEY_STORE_TOKEN", &bao.root_token),
            ("SNYKEY_STORE_CA_CERT", ca.to_str().unwrap()),
        ],
    );
    let s = OpenBaoStore::new(&cfg.store, Duration::from_secs(5));
    s.put(&key, &rec("rt-tls"), Some(0)).await.unwrap();
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-tls");
    assert!(s.ready().await.is_ok());
    assert_eq!(
        bao.kv2_data("kv", "snyk/otls/ctls").unwrap()["refresh_token"],
        "rt-tls"
    );
}

#[tokio::test]
async fn kubernetes_auth_logs_in_with_the_service_account_token() {
    let bao = Bao::dev();
    let k8s = FakeK8s::start("ci", "snykey-sa");
    bao.kubernetes(&k8s.url, "snykey-role", "ci", "snykey-sa");
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("sa-token");
    std::fs::write(&jwt, format!("{}\n", k8s.jwt)).unwrap();
    let cfg = config(
        &bao.url(),
        "snyk",
        2,
        &[
            ("SNYKEY_STORE_AUTH", "kubernetes"),
            ("SNYKEY_STORE_KUBERNETES_ROLE", "snykey-role"),
            ("SNYKEY_STORE_KUBERNETES_JWT_FILE", jwt.to_str().unwrap()),
        ],
    );
    let s = OpenBaoStore::new(&cfg.store, Duration::from_secs(5));
    let key = CredKey::parse("ok8", "ck8").unwrap();
    s.put(&key, &rec("rt-k8s"), Some(0)).await.unwrap();
    assert_eq!(bao.logins("kubernetes"), 1);
    assert_eq!(
        k8s.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "OpenBao asked the TokenReview endpoint once"
    );
    // A JWT the cluster no longer vouches for: refused, and said so.
    *k8s.valid.lock().unwrap() = false;
    bao.revoke_all_but_root();
    let e = s.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(!e.to_string().contains(&k8s.jwt));
    *k8s.valid.lock().unwrap() = true;
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-k8s");
}

/// The one fault the real server will not make: a write applied, then
/// answered with an error. The caller must treat it as unknown, and a blind
/// retry on the version it read cannot apply it twice.
#[tokio::test]
async fn a_write_applied_but_answered_with_an_error_is_not_applied_twice() {
    let bao = Bao::dev();
    let proxy = BaoProxy::start(&bao.url());
    let s = store(&proxy.url(), &bao.root_token, "snyk", 2);
    let key = CredKey::parse("olost", "clost").unwrap();
    assert_eq!(s.put(&key, &rec("rt-1"), Some(0)).await.unwrap(), 1);
    proxy.lock().fail_writes_after_apply = true;
    let e = s.put(&key, &rec("rt-2"), Some(1)).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(proxy.lock().writes_failed, 1);
    // It did land: OpenBao holds version 2.
    assert_eq!(
        bao.kv2_data("kv", "snyk/olost/clost").unwrap()["refresh_token"],
        "rt-2"
    );
    proxy.lock().fail_writes_after_apply = false;
    let retry = s.put(&key, &rec("rt-2"), Some(1)).await;
    assert!(
        matches!(retry, Err(StoreError::Conflict { .. })),
        "{retry:?}"
    );
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    // And writes refused before reaching OpenBao change nothing.
    proxy.lock().fail_writes = true;
    assert!(s.put(&key, &rec("rt-3"), Some(2)).await.is_err());
    assert_eq!(bao.kv2_versions("kv", "snyk/olost/clost"), 2);
}

/// `store.addr` with several nodes: a dead first address, then a live one.
#[tokio::test]
async fn several_addresses_the_store_finds_the_one_that_answers() {
    let bao = Bao::dev();
    let dead = format!("http://127.0.0.1:{}", crate::support::bao::free_port_pair());
    let cfg = config(
        &format!("{dead},{}", bao.url()),
        "snyk",
        2,
        &[("SNYKEY_STORE_TOKEN", &bao.root_token)],
    );
    assert_eq!(cfg.store.addrs.len(), 2);
    let s = OpenBaoStore::new(&cfg.store, Duration::from_secs(5));
    let key = CredKey::parse("oha", "cha").unwrap();
    s.put(&key, &rec("rt-ha"), Some(0)).await.unwrap();
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-ha");
    assert!(s.describe().contains(&dead));

    // An AppRole login, too, goes to the node that answers.
    let role_id = bao.approle("ha", serde_json::json!({"token_ttl": "1h"}));
    let dir = tempfile::tempdir().unwrap();
    let (role_file, secret_file) = (dir.path().join("role_id"), dir.path().join("secret_id"));
    std::fs::write(&role_file, &role_id).unwrap();
    std::fs::write(&secret_file, bao.secret_id("ha")).unwrap();
    let cfg = config(
        &format!("{dead},{}", bao.url()),
        "snyk",
        2,
        &[
            ("SNYKEY_STORE_AUTH", "approle"),
            ("SNYKEY_STORE_ROLE_ID_FILE", role_file.to_str().unwrap()),
            ("SNYKEY_STORE_SECRET_ID_FILE", secret_file.to_str().unwrap()),
        ],
    );
    let s = OpenBaoStore::new(&cfg.store, Duration::from_secs(5));
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-ha");
    assert_eq!(bao.logins("approle"), 1);
}

/// A standby node first in `store.addr`, on a KV v2 mount created a moment
/// ago (where a standby may answer 400 "Waiting for the primary to upgrade
/// from non-versioned to versioned data"): the store still reads and writes,
/// through the active node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_first_in_the_list_on_a_fresh_kv_mount_still_works() {
    let cluster = tokio::task::spawn_blocking(|| crate::support::bao_cluster::BaoCluster::start(3))
        .await
        .unwrap();
    let active = cluster.active().unwrap();
    let standby = (0..3).find(|i| *i != active).unwrap();
    let addrs = cluster.addrs();
    let mut ordered = vec![addrs[standby].clone()];
    ordered.extend(addrs.iter().filter(|a| **a != addrs[standby]).cloned());
    cluster.ok(
        active,
        "POST",
        "sys/mounts/kvnew",
        serde_json::json!({"type": "kv", "options": {"version": "2"}}),
    );
    let cfg = config(
        &ordered.join(","),
        "snyk",
        2,
        &[
            ("SNYKEY_STORE_TOKEN", &cluster.root_token),
            ("SNYKEY_STORE_MOUNT", "kvnew"),
        ],
    );
    let s = OpenBaoStore::new(&cfg.store, Duration::from_secs(5));
    let key = CredKey::parse("osb", "csb").unwrap();
    // Whatever a standby answers, the write lands once, through the active
    // node (a retry after an unknown outcome may meet its own write: Conflict).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match s.put(&key, &rec("rt-sb"), Some(0)).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write on the fresh mount: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-sb");
    assert_eq!(got.version, 1);
    drop(cluster);
}

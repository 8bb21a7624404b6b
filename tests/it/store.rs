//! The secret store contract, run against the OpenBao API server of
//! `support::openbao` — or against a real OpenBao/Vault when
//! `SNYKEY_TEST_BAO_ADDR` and `SNYKEY_TEST_BAO_TOKEN` are set (KV v2 mounted
//! at `kv`, e.g. `examples/docker-compose.yml`). Each run uses its own prefix.

use crate::support::openbao::FakeBao;
use snykey::config::Config;
use snykey::ids::CredKey;
use snykey::secret::Secret;
use snykey::store::openbao::OpenBaoStore;
use snykey::store::{Record, SecretStore, StoreError};
use std::time::Duration;

/// (address, token, the fake if no real server was named).
fn target() -> (String, String, Option<FakeBao>) {
    match (
        std::env::var("SNYKEY_TEST_BAO_ADDR"),
        std::env::var("SNYKEY_TEST_BAO_TOKEN"),
    ) {
        (Ok(addr), Ok(token)) if !addr.is_empty() => (addr, token, None),
        _ => {
            let fake = FakeBao::start();
            (fake.url(), fake.root_token.clone(), Some(fake))
        }
    }
}

fn store(addr: &str, token: &str, prefix: &str, kv: u8) -> OpenBaoStore {
    let env: Vec<(String, String)> = [
        ("SNYKEY_SOCKET", "/tmp/unused.sock"),
        ("SNYKEY_STORE_BACKEND", "openbao"),
        ("SNYKEY_STORE_ADDR", addr),
        ("SNYKEY_STORE_TOKEN", token),
        ("SNYKEY_STORE_PREFIX", prefix),
        ("SNYKEY_STORE_MOUNT", if kv == 2 { "kv" } else { "kv1" }),
        ("SNYKEY_STORE_KV_VERSION", if kv == 2 { "2" } else { "1" }),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let cfg = Config::load_from(None, &env).unwrap();
    OpenBaoStore::new(&cfg.store, Duration::from_secs(5))
}

fn prefix() -> String {
    format!(
        "snykey-test-{}",
        std::process::id() as u64 * 1000 + rand_suffix()
    )
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_micros() as u64
        % 1000
}

fn rec(rt: &str) -> Record {
    Record {
        refresh_token: Some(Secret::new(rt)),
        client_secret: Some(Secret::new("cs")),
        ..Default::default()
    }
}

#[tokio::test]
async fn kv2_check_and_set_rejects_a_stale_write_and_the_loser_rereads() {
    let (addr, token, fake) = target();
    let p = prefix();
    let a = store(&addr, &token, &p, 2);
    let b = store(&addr, &token, &p, 2);
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
    // Listing finds it. Delete (SPEC §2 rule 10): the broker writes a
    // tombstone by check-and-set, then the store destroys every older
    // version; the tombstone and its version counter stay.
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
    if let Some(fake) = &fake {
        let history = fake.kv2_history("kv", &format!("{p}/org-cas/client-cas"));
        assert_eq!(history.len(), 3);
        assert!(
            history[..2].iter().all(Option::is_none),
            "older versions are destroyed: {history:?}"
        );
        assert!(
            !format!("{history:?}").contains("rt-"),
            "no refresh token survives the delete"
        );
    }
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

/// KV v1 runs against the in-process server only: it inspects the raw
/// stored fields, and a real server has no `kv1` mount by default.
#[tokio::test]
async fn kv1_round_trip_with_seed_field_names() {
    let fake = FakeBao::start();
    let p = prefix();
    let s = store(&fake.url(), &fake.root_token, &p, 1);
    let key = CredKey::parse("o1", "c1").unwrap();
    s.put(&key, &rec("rt-v1"), None).await.unwrap();
    let data = fake.kv1_data("kv1", &format!("{p}/o1/c1")).unwrap();
    assert_eq!(data["refresh_token"], "rt-v1");
    assert_eq!(data["client_secret"], "cs");
    let got = s.get(&key).await.unwrap().unwrap();
    assert_eq!(got.record.refresh_token.unwrap().expose(), "rt-v1");
    assert_eq!(s.list().await.unwrap(), vec![key.clone()]);
    s.delete(&key).await.unwrap();
    assert!(s.get(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn sealed_and_denied_are_told_apart() {
    let fake = FakeBao::start();
    let s = store(&fake.url(), &fake.root_token, "snyk", 2);
    let key = CredKey::parse("o", "c").unwrap();
    fake.seal();
    assert!(matches!(s.get(&key).await, Err(StoreError::Sealed)));
    assert!(matches!(s.ready().await, Err(StoreError::Sealed)));
    fake.unseal();
    assert!(s.ready().await.is_ok());
    let bad = store(&fake.url(), "s.not-a-token", "snyk", 2);
    let e = bad.get(&key).await.unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(!e.to_string().contains("s.not-a-token"));
}

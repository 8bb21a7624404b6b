use super::*;
use crate::cache::TokenCache;
use crate::cache::memory::MemoryCache;
use std::os::unix::fs::PermissionsExt;

const MIN: Duration = Duration::from_secs(300);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000 + secs)
}

fn record(generation: u64, deleted: bool) -> Record {
    Record {
        generation,
        deleted,
        ..Default::default()
    }
}

#[test]
fn a_token_is_revived_only_at_its_own_generation_and_with_time_left() {
    let now = at(0);
    let later = at(3600);
    // The record as the token left it: revived.
    assert!(revives(4, later, Some(&record(4, false)), now, MIN));
    // A rotation elsewhere, a put, a login (the generation went up): not.
    assert!(!revives(4, later, Some(&record(5, false)), now, MIN));
    // A store that went back (restored): not either.
    assert!(!revives(4, later, Some(&record(3, false)), now, MIN));
    // Deleted (the tombstone), or gone from the store: not.
    assert!(!revives(4, later, Some(&record(4, true)), now, MIN));
    assert!(!revives(4, later, None, now, MIN));
}

#[test]
fn a_token_revived_must_outlast_min_validity() {
    let now = at(0);
    let r = record(2, false);
    assert!(revives(2, at(301), Some(&r), now, MIN));
    assert!(!revives(2, at(300), Some(&r), now, MIN));
    assert!(!revives(2, at(10), Some(&r), now, MIN));
    // Expired, and a clock that went back past the mint: not.
    assert!(!revives(2, now, Some(&r), at(5), MIN));
    assert!(revives(2, at(10), Some(&r), now, Duration::ZERO));
}

fn origin() -> Origin {
    Origin {
        store: "file /var/lib/snykey/credentials.json".into(),
        api_url: "https://api.snyk.io".into(),
    }
}

fn saved(client: &str, token: &str, left: Duration, generation: u64) -> Saved {
    let now = SystemTime::now();
    Saved {
        key: CredKey::parse("org-1", client).unwrap(),
        token: CachedToken {
            access_token: Secret::new(token),
            expires_at: now + left,
            issued_at: Some(now),
        },
        generation,
    }
}

fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn a_snapshot_round_trips_private_and_without_expired_tokens() {
    let dir = private_dir();
    let path = dir.path().join("access-tokens.snapshot");
    let tokens = vec![
        saved("c1", "at-one", Duration::from_secs(3600), 3),
        saved("c2", "at-two", Duration::from_secs(0), 1),
    ];
    write(&path, &origin(), &tokens).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = read(&path, &origin()).unwrap().unwrap();
    assert_eq!(back.len(), 1, "the expired token is left out");
    assert_eq!(back[0].key, tokens[0].key);
    assert_eq!(back[0].generation, 3);
    assert_eq!(back[0].token.access_token.expose(), "at-one");
    // Whole seconds, rounded down: never later than the truth.
    assert!(back[0].token.expires_at <= tokens[0].token.expires_at);
    assert!(tokens[0].token.expires_at - Duration::from_secs(1) < back[0].token.expires_at);
    // Nothing but access tokens, their times and generations, and where they belong.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut keys: Vec<&str> = doc["tokens"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "access_token",
            "client_id",
            "expires_at",
            "generation",
            "issued_at",
            "org_id"
        ]
    );
    // The in-memory form redacts.
    assert!(!format!("{back:?}").contains("at-one"));
}

#[test]
fn no_snapshot_is_no_error() {
    let dir = private_dir();
    assert!(read(&dir.path().join("none"), &origin()).unwrap().is_none());
}

#[test]
fn a_snapshot_others_may_read_or_write_is_never_trusted() {
    let dir = private_dir();
    let path = dir.path().join("s");
    write(
        &path,
        &origin(),
        &[saved("c1", "at-one", Duration::from_secs(3600), 1)],
    )
    .unwrap();
    for mode in [0o640, 0o604, 0o622, 0o666] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let e = read(&path, &origin()).unwrap_err();
        assert!(e.contains("group or others"), "{mode:o}: {e}");
        assert!(!e.contains("at-one"));
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert_eq!(read(&path, &origin()).unwrap().unwrap().len(), 1);
}

#[test]
fn a_snapshot_in_a_directory_others_can_write_to_is_not_read() {
    let dir = private_dir();
    let path = dir.path().join("s");
    write(
        &path,
        &origin(),
        &[saved("c1", "at-one", Duration::from_secs(3600), 1)],
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = read(&path, &origin()).unwrap_err();
    assert!(e.contains("writable"), "{e}");
}

#[test]
fn a_symlink_is_not_followed() {
    let dir = private_dir();
    let real = dir.path().join("real");
    write(
        &real,
        &origin(),
        &[saved("c1", "at-one", Duration::from_secs(3600), 1)],
    )
    .unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(read(&link, &origin()).is_err());
}

#[test]
fn garbage_and_foreign_snapshots_are_ignored_without_quoting_them() {
    let dir = private_dir();
    let path = dir.path().join("s");
    for junk in [
        &b"\x00\xff not json at-secret"[..],
        br#"{"format":"something else","version":1,"store":"x","api_url":"y","tokens":[]}"#,
        br#"{"format":"snykey access-token snapshot","version":2,"store":"x","api_url":"y","tokens":[]}"#,
        br#"{"tokens":[{"access_token":"at-secret"}]}"#,
        br#"[1,2,3]"#,
    ] {
        std::fs::write(&path, junk).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read(&path, &origin()).unwrap_err();
        assert!(!e.contains("at-secret"), "{e}");
    }
    // Written for another store, or another region.
    let tokens = [saved("c1", "at-one", Duration::from_secs(3600), 1)];
    for other in [
        Origin {
            store: "file /elsewhere.json".into(),
            ..origin()
        },
        Origin {
            api_url: "https://api.eu.snyk.io".into(),
            ..origin()
        },
    ] {
        write(&path, &other, &tokens).unwrap();
        let e = read(&path, &origin()).unwrap_err();
        assert!(e.contains("another store or Snyk region"), "{e}");
        assert!(!e.contains("at-one"));
    }
}

#[test]
fn entries_with_invalid_ids_are_left_out() {
    let dir = private_dir();
    let path = dir.path().join("s");
    write(
        &path,
        &origin(),
        &[saved("c1", "at-one", Duration::from_secs(3600), 1)],
    )
    .unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut bad = doc["tokens"][0].clone();
    bad["client_id"] = "../../etc".into();
    doc["tokens"].as_array_mut().unwrap().push(bad);
    std::fs::write(&path, doc.to_string()).unwrap();
    let back = read(&path, &origin()).unwrap().unwrap();
    assert_eq!(back.len(), 1);
}

#[tokio::test]
async fn the_memory_cache_counts_changes_and_keeps_generations() {
    let cache = MemoryCache::new();
    let s = saved("c1", "at-one", Duration::from_secs(3600), 7);
    assert_eq!(cache.changes(), 0);
    cache.put(&s.key, &s.token, 7).await.unwrap();
    let _ = cache.get(&s.key).await.unwrap();
    assert_eq!(cache.changes(), 1, "a read is no change");
    let all = cache.saved();
    assert_eq!((all.len(), all[0].generation), (1, 7));
    cache.delete(&s.key).await.unwrap();
    assert_eq!(cache.changes(), 2);
    // The drop is told at once (a permit is stored for the keeper).
    tokio::time::timeout(Duration::from_secs(1), cache.dropped())
        .await
        .unwrap();
    cache.delete(&s.key).await.unwrap();
    assert_eq!(cache.changes(), 2, "deleting nothing is no change");
    assert!(cache.saved().is_empty());
}

#[tokio::test]
async fn the_keeper_writes_only_when_the_cache_changed() {
    let dir = private_dir();
    let path = dir.path().join("s");
    let cache = std::sync::Arc::new(MemoryCache::new());
    let keeper = Keeper::new(
        std::sync::Arc::clone(&cache),
        path.clone(),
        origin(),
        Duration::from_secs(5),
    );
    keeper.write_if_changed().await;
    assert!(!path.exists(), "nothing changed: nothing written");
    let s = saved("c1", "at-one", Duration::from_secs(3600), 2);
    cache.put(&s.key, &s.token, 2).await.unwrap();
    keeper.write_if_changed().await;
    assert_eq!(read(&path, &origin()).unwrap().unwrap().len(), 1);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::remove_file(&path).unwrap();
    keeper.write_if_changed().await;
    assert!(!path.exists(), "unchanged since the last write: {before:?}");
}

#[test]
fn a_snapshot_of_another_user_is_never_trusted() {
    let dir = private_dir();
    let path = dir.path().join("s");
    write(
        &path,
        &origin(),
        &[saved("c1", "at-one", Duration::from_secs(3600), 1)],
    )
    .unwrap();
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chown(c.as_ptr(), 4242, 4242) } != 0 {
        // Only root can give a file away; as anyone else, our own must pass.
        assert_eq!(read(&path, &origin()).unwrap().unwrap().len(), 1);
        return;
    }
    let e = read(&path, &origin()).unwrap_err();
    assert!(e.contains("uid 4242"), "{e}");
}

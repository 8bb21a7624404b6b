//! OpenBao's answers as they reach our parsing (issue 15): the envelope
//! vaultrs deserializes (`EndpointResult<T>`), then what we make of it.

use super::auth::{MAX_RENEW_WAIT, login_token, renew_wait};
use super::errors::{LOCAL_DENIED, map_err, map_login_err};
use super::kv::{RequestMap, hidden_version, kv2_record, older_versions, to_map};
use crate::credential::CredKey;
use crate::store::StoreError;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::Duration;
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse};
use vaultrs::api::{AuthInfo, EndpointResult};
use vaultrs::error::ClientError;

const MARK: &str = "rt-SECRET-77c1d2";

fn strings() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        Just(MARK.to_string()),
        "\\PC{0,12}".prop_map(String::from),
        "[0-9]{1,25}|-1|18446744073709551616".prop_map(String::from),
    ]
}

/// A field as OpenBao sends it, or anything else in its place.
fn field(good: Value) -> impl Strategy<Value = Value> {
    prop_oneof![3 => Just(good), 1 => crate::prop::json_value(strings())]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(1e30)),
        Just(json!("7")),
    ]
}

/// The envelope every answer comes in, with `data` / `auth` as given.
fn envelope(data: Value, auth: Value) -> Vec<u8> {
    json!({"request_id": "9b1f", "lease_id": "", "renewable": false, "lease_duration": 0,
           "data": data, "wrap_info": null, "warnings": null, "auth": auth})
    .to_string()
    .into_bytes()
}

fn kv2_read() -> impl Strategy<Value = Vec<u8>> {
    (
        crate::prop::json_value(strings()),
        number(),
        field(json!("2026-11-29T09:00:00Z")),
        field(json!("")),
        field(json!(false)),
    )
        .prop_map(|(data, version, created, deletion, destroyed)| {
            envelope(
                json!({"data": data, "metadata": {"version": version, "created_time": created,
                    "deletion_time": deletion, "destroyed": destroyed, "custom_metadata": null}}),
                Value::Null,
            )
        })
}

fn kv2_metadata() -> impl Strategy<Value = Vec<u8>> {
    (
        number(),
        proptest::collection::btree_map(
            "[0-9]{1,3}|[0-9]{20,22}|-1|\\+[0-9]|0[0-9]|x|",
            field(json!({"created_time": "t", "deletion_time": "", "destroyed": false})),
            0..8,
        ),
        field(json!(true)),
    )
        .prop_map(|(current, versions, cas)| {
            envelope(
                json!({"cas_required": cas, "created_time": "t", "current_version": current,
                    "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0,
                    "updated_time": "t", "custom_metadata": null, "versions": versions}),
                Value::Null,
            )
        })
}

fn login() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just(String::new()),
            Just(" \n".to_string()),
            Just(MARK.to_string()),
            "\\PC{0,40}".prop_map(String::from)
        ],
        number(),
        field(json!(["default", "snykey"])),
    )
        .prop_map(|(token, lease, policies)| {
            envelope(
                Value::Null,
                json!({"client_token": token, "accessor": "a", "policies": policies,
                    "token_policies": ["default"], "metadata": null, "lease_duration": lease,
                    "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true}),
            )
        })
}

fn bytes_or(s: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => s, 1 => proptest::collection::vec(any::<u8>(), 0..200)]
}

fn no_mark(e: &StoreError) -> Result<(), TestCaseError> {
    let m = e.to_string();
    prop_assert!(!m.contains(MARK), "{}", m);
    prop_assert!(m.chars().count() < 400, "{}", m);
    Ok(())
}

proptest! {
    #![proptest_config(crate::prop::config(256))]

    #[test]
    fn prop_kv2_read_answers_become_a_record_at_its_version_or_a_corrupt_error(raw in bytes_or(kv2_read())) {
        let key = CredKey::parse("o", "c").unwrap();
        let Ok(r) = serde_json::from_slice::<EndpointResult<ReadSecretResponse>>(&raw) else {
            return Ok(()); // vaultrs refuses it: a ClientError, mapped below
        };
        let Some(resp) = r.data else { return Ok(()) };
        let version = resp.metadata.version;
        match kv2_record(&key, resp) {
            Ok(v) => {
                prop_assert_eq!(v.version, version);
                prop_assert!(!v.hidden);
                // What was read writes back as the map a put sends.
                drop(RequestMap(to_map(&v.record).unwrap()));
            }
            Err(e) => {
                prop_assert!(matches!(e, StoreError::Corrupt { .. }), "{:?}", e);
                no_mark(&e)?;
            }
        }
    }

    #[test]
    fn prop_kv2_metadata_answers_name_only_real_older_versions(raw in bytes_or(kv2_metadata())) {
        let Ok(r) = serde_json::from_slice::<EndpointResult<ReadSecretMetadataResponse>>(&raw) else {
            return Ok(());
        };
        let Some(m) = r.data else { return Ok(()) };
        let older = older_versions(&m);
        prop_assert!(older.len() <= m.versions.len());
        prop_assert!(!older.contains(&m.current_version));
        for v in &older {
            prop_assert!(m.versions.contains_key(&v.to_string()));
        }
        match hidden_version(&m) {
            Some(h) => {
                prop_assert_eq!(h.version, m.current_version);
                prop_assert!(h.hidden && h.record.deleted);
            }
            None => prop_assert_eq!(m.current_version, 0),
        }
    }

    #[test]
    fn prop_login_answers_give_their_token_or_a_refusal_without_it(raw in bytes_or(login())) {
        let Ok(r) = serde_json::from_slice::<EndpointResult<Value>>(&raw) else {
            return Ok(());
        };
        let Some(info): Option<AuthInfo> = r.auth else { return Ok(()) };
        let token = info.client_token.clone();
        match login_token("AppRole", info) {
            Ok(s) => prop_assert_eq!(s.expose(), token.trim()),
            Err(e) => {
                prop_assert!(token.trim().is_empty());
                prop_assert!(matches!(e, StoreError::Denied(_)), "{:?}", e);
                no_mark(&e)?;
            }
        }
    }

    #[test]
    fn prop_any_token_ttl_gives_a_renewal_wait_without_overflow(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let ttl = Duration::new(secs, nanos);
        let w = renew_wait(ttl);
        prop_assert!(w >= Duration::from_secs(1) && w <= MAX_RENEW_WAIT);
        if ttl >= Duration::from_secs(2) {
            prop_assert!(w < ttl);
        }
    }

    #[test]
    fn prop_any_error_answer_maps_to_one_bounded_line(
        // Any status a server can send: LOCAL_DENIED is this side's own
        // refusal carried through the retry wrapper (no HTTP status is
        // over 999), given back as it was (its own unit test in errors.rs).
        code in any::<u16>().prop_filter("not this side's own refusal", |c| *c != LOCAL_DENIED),
        errors in proptest::collection::vec(prop_oneof![
            Just("Vault is sealed".to_string()),
            Just("check-and-set parameter did not match the current version".to_string()),
            "\\PC{0,600}".prop_map(String::from),
            "[\\n\\r\\t a-z]{0,40}".prop_map(String::from),
        ], 0..40),
    ) {
        let n = errors.len();
        let sealed = errors.iter().any(|m| m.to_ascii_lowercase().contains("sealed"));
        let cas = errors.iter().any(|m| m.contains("check-and-set"));
        let e = map_err(ClientError::APIError { code, errors: errors.clone() });
        let m = e.to_string();
        prop_assert!(m.chars().count() <= 1_000, "{} chars from {} errors", m.chars().count(), n);
        prop_assert!(!m.chars().any(char::is_control), "{:?}", m);
        match code {
            503 if sealed => prop_assert!(matches!(e, StoreError::Sealed), "{:?}", e),
            403 => prop_assert!(matches!(e, StoreError::Denied(_)), "{:?}", e),
            400 if cas => prop_assert!(matches!(e, StoreError::Conflict { .. }), "{:?}", e),
            _ => prop_assert!(matches!(e, StoreError::Unavailable(_) | StoreError::Sealed), "{:?}", e),
        }
        let l = map_login_err("AppRole", "store.secret_id_file", ClientError::APIError { code, errors });
        let m = l.to_string();
        prop_assert!(m.chars().count() <= 1_000 && !m.chars().any(char::is_control), "{:?}", m);
    }
}

// Regressions the properties above found.

#[test]
fn a_huge_token_ttl_from_openbao_does_not_overflow_the_renewer() {
    // Was `(ttl * 2 / 3)`: Duration overflow, a panic in the renewer task.
    assert_eq!(renew_wait(Duration::from_secs(u64::MAX)), MAX_RENEW_WAIT);
    assert_eq!(renew_wait(Duration::from_secs(3)), Duration::from_secs(2));
    assert_eq!(renew_wait(Duration::ZERO), Duration::from_secs(1));
}

#[test]
fn a_flood_of_openbao_errors_is_cut_to_one_short_line() {
    // Was every error joined whole: a megabyte answer made a megabyte
    // log line and HTTP error body.
    let e = map_err(ClientError::APIError {
        code: 500,
        errors: vec!["x\n".repeat(2_000); 1_000],
    });
    let m = e.to_string();
    assert!(m.len() < 1_000, "{}", m.len());
    assert!(m.ends_with("997 more"), "{m}");
    assert!(!m.contains('\n'));
}

#[test]
fn version_names_that_are_not_plain_numbers_are_not_destroyed() {
    // "007" was read as version 7, a version the answer did not name.
    let raw = envelope(
        json!({"cas_required": true, "created_time": "t", "current_version": 9,
            "delete_version_after": "0s", "max_versions": 0, "oldest_version": 0,
            "updated_time": "t", "custom_metadata": null, "versions": {
                "007": {"created_time": "t", "deletion_time": "", "destroyed": false},
                "+8": {"created_time": "t", "deletion_time": "", "destroyed": false},
                "8": {"created_time": "t", "deletion_time": "", "destroyed": false},
                "9": {"created_time": "t", "deletion_time": "", "destroyed": false}}}),
        Value::Null,
    );
    let r: EndpointResult<ReadSecretMetadataResponse> = serde_json::from_slice(&raw).unwrap();
    assert_eq!(older_versions(&r.data.unwrap()), vec![8]);
}

#[test]
fn a_login_answer_without_a_client_token_is_a_refusal() {
    // Was taken as the empty token (a blank one too: secrets are
    // trimmed), and every request after it refused.
    let raw = envelope(
        Value::Null,
        json!({"client_token": " \n", "accessor": "", "policies": [], "token_policies": [],
            "metadata": null, "lease_duration": 60, "renewable": true, "entity_id": "",
            "token_type": "service", "orphan": true}),
    );
    let r: EndpointResult<Value> = serde_json::from_slice(&raw).unwrap();
    let e = login_token("Kubernetes", r.auth.unwrap()).unwrap_err();
    assert!(matches!(e, StoreError::Denied(_)), "{e:?}");
    assert!(e.to_string().contains("no client_token"), "{e}");
}

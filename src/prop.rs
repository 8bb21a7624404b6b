//! Shared settings of the property tests (issue 15): a few hundred cases
//! each in `cargo test`; `SNYKEY_PROPTEST_CASES=100000 cargo test prop_`
//! for a long run. A failure prints the minimal input; keep it as a named
//! unit test next to the parser.

use proptest::test_runner::Config;

/// Cases per property: `SNYKEY_PROPTEST_CASES`, else `default`.
pub fn config(default: u32) -> Config {
    let cases = std::env::var("SNYKEY_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        // No persistence files in the source tree; failures are printed.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any JSON value (a few levels deep), strings drawn from `strings`.
pub fn json_value(
    strings: impl proptest::strategy::Strategy<Value = String> + Clone + 'static,
) -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        strings.prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                "[a-z_]{1,16}|refresh_token|client_secret|generation|claim|kind|state|data|errors|attributes|id|detail",
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

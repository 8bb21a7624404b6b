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

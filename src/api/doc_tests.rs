//! `docs/api.md` against the code: every route of the route table and every
//! path of `wire::paths` has its section, every error code its row with the
//! HTTP status and exit code the code gives it, every exit code its row, and
//! every JSON example parses as the wire type its fence names and serializes
//! back to the same JSON. A route, code or field added without its
//! documentation, or a documented one the code no longer has, fails here.

use super::routes::ROUTES;
use crate::exit;
use crate::wire::{self, ErrorCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

const DOC: &str = include_str!("../../docs/api.md");
const PATHS_RS: &str = include_str!("../wire/paths.rs");
const EXIT_RS: &str = include_str!("../exit.rs");

/// The text of the section that starts with the heading `heading`, up to
/// the next heading of the same or a higher level.
fn section(heading: &str) -> &'static str {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let start = DOC
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("docs/api.md has no section {heading:?}"));
    let rest = &DOC[start + heading.len() + 2..];
    let end = rest
        .match_indices("\n#")
        .find(|(i, _)| {
            let hashes = rest[i + 1..].chars().take_while(|c| *c == '#').count();
            hashes > 0 && hashes <= level
        })
        .map_or(rest.len(), |(i, _)| i);
    &rest[..end]
}

/// The rows of the Markdown table in `text`, each as its cells.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

/// `json` read as `T` and written back gives the same JSON.
fn round_trip<T: Serialize + DeserializeOwned>(json: &str) -> Result<(), String> {
    let given: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let read: T = serde_json::from_value(given.clone()).map_err(|e| e.to_string())?;
    let written = serde_json::to_value(&read).map_err(|e| e.to_string())?;
    if written == given {
        Ok(())
    } else {
        Err(format!("it reads back as {written}"))
    }
}

/// The example checked as the wire type `name`.
fn check_example(name: &str, json: &str) -> Result<(), String> {
    macro_rules! wire_types {
        ($($t:ident),* $(,)?) => {
            match name {
                $( stringify!($t) => round_trip::<wire::$t>(json), )*
                "" => Err("the fence names no wire type (```json TypeName)".into()),
                other => Err(format!("{other} is not a type of crate::wire")),
            }
        };
    }
    wire_types!(
        PutCredential,
        PutCredentialResponse,
        TokenResponse,
        CredentialList,
        CredentialStatus,
        Message,
        Reloaded,
        LoginRequest,
        LoginStarted,
        LoginStatus,
        RegisterAppRequest,
        ServiceAccountRequest,
        ServiceAccountResult,
        ServiceAccountList,
        ServiceAccount,
        ErrorBody,
    )
}

/// Every fenced JSON example: (line, the type its fence names, the text).
fn json_examples() -> Vec<(usize, &'static str, String)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(name) = line.strip_prefix("```json") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| !l.starts_with("```"))
            .collect();
        out.push((n + 1, name.trim(), body.join("\n")));
    }
    out
}

#[test]
fn every_json_example_parses_as_the_wire_type_its_fence_names() {
    let examples = json_examples();
    let mut failures = Vec::new();
    for (line, name, json) in &examples {
        if let Err(e) = check_example(name, json) {
            failures.push(format!("docs/api.md line {line} ({name}): {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(examples.len() >= 20, "{}", examples.len());
}

#[test]
fn an_example_that_no_longer_fits_its_type_is_caught() {
    // What the test above would say if a field were renamed or a code dropped.
    assert!(check_example("Message", r#"{"message": "m"}"#).is_ok());
    assert!(check_example("Message", r#"{"mesage": "m"}"#).is_err());
    assert!(check_example("Message", r#"{"message": "m", "extra": 1}"#).is_err());
    assert!(check_example("ErrorBody", r#"{"error": "e", "code": "gone_code"}"#).is_err());
    assert!(check_example("PutCredential", r#"{"org_id": "o", "client_id": "c"}"#).is_err());
    assert!(check_example("NoSuchType", "{}").is_err());
    assert!(check_example("", "{}").is_err());
}

#[test]
fn every_route_of_the_route_table_has_its_section() {
    for (method, template, _) in ROUTES {
        let heading = format!("### `{method} {template}");
        let found = DOC
            .lines()
            .any(|l| l == format!("{heading}`") || l.starts_with(&format!("{heading}?")));
        assert!(
            found,
            "docs/api.md has no section for {method} {template} (a heading `{heading}`` or `{heading}?…``)"
        );
        let overview = rows(section("## Routes"));
        assert!(
            overview
                .iter()
                .any(|r| r[0].starts_with(&format!("`{method} {template}"))),
            "docs/api.md's route table has no row for {method} {template}"
        );
    }
}

#[test]
fn every_path_in_wire_paths_is_documented() {
    let mut paths = 0;
    for line in PATHS_RS.lines() {
        let Some((_, value)) = line.trim().split_once(": &str = \"") else {
            continue;
        };
        let path = value.trim_end_matches("\";");
        if !path.starts_with('/') {
            continue;
        }
        paths += 1;
        assert!(
            DOC.contains(&format!("{path}`")) || DOC.contains(&format!("{path}?")),
            "docs/api.md does not document {path} (src/wire/paths.rs)"
        );
    }
    assert!(paths >= 15, "{paths}");
}

#[test]
fn every_error_code_has_its_row_with_its_status_and_exit_code() {
    let table = rows(section("## Error codes"));
    for code in ErrorCode::ALL {
        let name = format!("`{}`", code.as_str());
        let row = table
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("docs/api.md's error table has no row for {name}"));
        let status = code.status();
        assert_eq!(row[1], status.to_string(), "{name}'s HTTP status");
        assert_eq!(
            row[2],
            exit::for_error(status, *code).to_string(),
            "{name}'s exit code"
        );
        assert!(!row[3].is_empty(), "{name} says what it means");
    }
    for row in table.iter().skip(1) {
        let name = row[0].trim_matches('`');
        assert_ne!(
            ErrorCode::parse(name),
            ErrorCode::Unknown,
            "docs/api.md documents the code {name}, which the agent does not have"
        );
    }
    assert_eq!(table.len(), ErrorCode::ALL.len() + 1, "one row per code");
}

#[test]
fn every_exit_code_has_its_row() {
    let table = rows(section("## Exit codes"));
    for line in EXIT_RS.lines() {
        let Some((_, value)) = line.trim().split_once(": i32 = ") else {
            continue;
        };
        let value = value.trim_end_matches(';');
        assert!(
            table.iter().any(|r| r[0] == value),
            "docs/api.md's exit code table has no row for {value} (src/exit.rs)"
        );
    }
}

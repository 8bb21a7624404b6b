//! Every agent route the CLI calls, in one place (SPEC §4). The ids in a path
//! are checked by `cli.rs` before they get here.

use std::time::Duration;

pub const CREDENTIALS: &str = "/v1/credentials";
pub const LOGIN: &str = "/v1/login";
pub const REGISTER_APP: &str = "/v1/register-app";

/// `GET /v1/credentials/{org}/{client}[?min_validity=SECONDS]`.
pub fn token(org_id: &str, client_id: &str, min_validity: Option<Duration>) -> String {
    match min_validity {
        Some(d) => format!(
            "{CREDENTIALS}/{org_id}/{client_id}?min_validity={}",
            d.as_secs()
        ),
        None => format!("{CREDENTIALS}/{org_id}/{client_id}"),
    }
}

/// `POST /v1/credentials/{org}/{client}/refresh`.
pub fn refresh(org_id: &str, client_id: &str) -> String {
    format!("{CREDENTIALS}/{org_id}/{client_id}/refresh")
}

/// `DELETE /v1/credentials/{org}/{client}[?revoke=true]`.
pub fn delete(org_id: &str, client_id: &str, revoke: bool) -> String {
    let query = if revoke { "?revoke=true" } else { "" };
    format!("{CREDENTIALS}/{org_id}/{client_id}{query}")
}

/// `GET /v1/login/{state}?wait=5`: waits up to 5 s for a change.
pub fn login_status(state: &str) -> String {
    format!("{LOGIN}/{state}?wait=5")
}

/// `POST /v1/service-accounts/{list,create,delete,rotate-secret}`.
pub fn service_accounts(op: &str) -> String {
    format!("/v1/service-accounts/{op}")
}

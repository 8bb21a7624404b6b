//! Every agent route the CLI calls, built from the contract's templates in
//! `snykey::wire::paths` (docs/api.md). The ids in a path are checked by `cli/`
//! before they get here.

use snykey::wire::paths::{self, fill};
use std::time::Duration;

pub const CREDENTIALS: &str = paths::CREDENTIALS;
pub const LOGIN: &str = paths::LOGIN;
pub const REGISTER_APP: &str = paths::REGISTER_APP;
pub const RELOAD: &str = paths::RELOAD;
pub const READY: &str = paths::READY;

/// `GET /v1/credentials/{org}/{client}[?min_validity=SECONDS]`.
pub fn token(org_id: &str, client_id: &str, min_validity: Option<Duration>) -> String {
    let path = fill(paths::CREDENTIAL, &[org_id, client_id]);
    match min_validity {
        Some(d) => format!("{path}?{}={}", paths::MIN_VALIDITY, d.as_secs()),
        None => path,
    }
}

/// `POST /v1/credentials/{org}/{client}/refresh`.
pub fn refresh(org_id: &str, client_id: &str) -> String {
    fill(paths::REFRESH, &[org_id, client_id])
}

/// `DELETE /v1/credentials/{org}/{client}[?revoke=true]`.
pub fn delete(org_id: &str, client_id: &str, revoke: bool) -> String {
    let path = fill(paths::CREDENTIAL, &[org_id, client_id]);
    if revoke {
        format!("{path}?{}=true", paths::REVOKE)
    } else {
        path
    }
}

/// `GET /v1/login/{state}?wait=5`: waits up to 5 s for a change.
pub fn login_status(state: &str) -> String {
    format!("{}?{}=5", fill(paths::LOGIN_STATUS, &[state]), paths::WAIT)
}

/// `POST /v1/service-accounts/{list,create,show,rename,delete,rotate-secret}`.
pub fn service_accounts(op: &str) -> String {
    fill(paths::SERVICE_ACCOUNTS, &[op])
}

//! Exit codes shared by `snykey-helper` and the admin CLI (docs/api.md "Exit codes", sysexits.h).
//! std-only.

use crate::wire::ErrorCode;

pub const OK: i32 = 0;
/// Bad command line, or the agent said the request was malformed.
pub const USAGE: i32 = 64;
/// Unknown credential.
pub const NO_INPUT: i32 = 66;
/// The agent is not reachable on its socket.
pub const UNAVAILABLE: i32 = 69;
/// A file could not be written (e.g. `snykey man --dir`).
pub const CANT_CREATE: i32 = 73;
/// Internal error (an answer we cannot understand).
pub const SOFTWARE: i32 = 70;
/// A temporary failure: Snyk, the store or the cache; retrying later may work.
pub const TEMP_FAIL: i32 = 75;
/// Not permitted: the credential needs a new login, or this peer is not allowed.
pub const NO_PERM: i32 = 77;
/// The data checked is wrong (`snykey audit verify`: a broken chain).
pub const DATA_ERR: i32 = 65;
/// The configuration is invalid.
pub const CONFIG: i32 = 78;

/// The exit code for an error answer of the agent: by its code; the CLI's
/// own codes and a code this client does not know go by the HTTP status.
pub fn for_error(status: u16, code: ErrorCode) -> i32 {
    use ErrorCode::*;
    match code {
        BadRequest | BodyTooLarge | MethodNotAllowed => USAGE,
        PeerNotAllowed | Forbidden | NeedsLogin => NO_PERM,
        NotFound | NoSuchRoute => NO_INPUT,
        SnykRefused | SnykRateLimited | SnykUnavailable | SnykUnreachable | SnykTimeout
        | SnykAnswerLost | StoreSealed | StoreConflict | StoreUnavailable | StoreDenied
        | CacheUnavailable | RefreshInProgress | NotReady | CallbackUnavailable | Internal => {
            TEMP_FAIL
        }
        ConfigInvalid => CONFIG,
        Usage | LoginFailed | Unknown => for_status(status),
    }
}

fn for_status(status: u16) -> i32 {
    match status {
        400 | 405 | 413 => USAGE,
        403 | 409 => NO_PERM,
        404 => NO_INPUT,
        _ => TEMP_FAIL,
    }
}

/// The line a client prints for an error answer of the agent: the agent's
/// sentence, and what to do next only if that sentence does not say it
/// already (one sentence, no repetition).
pub fn report(status: u16, code: ErrorCode, error: &str) -> String {
    let advice = advice(status, code);
    let error = error.trim_end_matches('.');
    if advice.is_empty() || already_advised(status, code, error) {
        error.to_string()
    } else {
        format!("{error} ({advice})")
    }
}

/// Does the agent's message already say what [`advice`] would?
fn already_advised(status: u16, code: ErrorCode, error: &str) -> bool {
    let markers: &[&str] = match (status, code) {
        (409, _) => &["snykey login"],
        (403, _) => &["allowed_uids", "allowed_gids"],
        (404, _) => &["snykey put"],
        (_, ErrorCode::StoreSealed) => &["unseal"],
        (_, ErrorCode::StoreUnavailable | ErrorCode::StoreDenied) => &["snykey doctor"],
        (_, ErrorCode::ConfigInvalid) => &["fix the file"],
        (503, _) | (502, _) | (504, _) => &["try again", "retry", "snykey status"],
        _ => &["snykey status"],
    };
    markers.iter().any(|m| error.contains(m))
}

/// One sentence on what to do next, for an error answer of the agent; empty
/// when the error itself says it (bad input: the message names what to fix).
pub fn advice(status: u16, code: ErrorCode) -> &'static str {
    match (status, code) {
        (_, ErrorCode::Usage) | (400, _) | (413, _) => "",
        (_, ErrorCode::ConfigInvalid) => "fix the file, then reload again",
        (409, _) => "run `snykey login` for this credential",
        (403, ErrorCode::Forbidden) => {
            "the agent's operator grants access in its config file ([[access]], server.admin_uids / admin_gids); SIGHUP applies it"
        }
        (403, _) => {
            "ask the agent's operator to allow your uid or group (server.allowed_uids / allowed_gids)"
        }
        (404, _) => "check the ids, or add the credential with `snykey put`",
        (_, ErrorCode::StoreSealed) => "unseal the secret store; snykey resumes by itself",
        // Not "see `snykey status`": that is what `snykey status` says when
        // it cannot list the store.
        (_, ErrorCode::StoreUnavailable | ErrorCode::StoreDenied) => {
            "the agent retries by itself; `snykey doctor` says what is wrong with its store"
        }
        (503, _) | (502, _) | (504, _) => {
            "retry in a moment; `snykey status` shows the credential's state"
        }
        _ => "see `snykey status`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_added_only_where_the_agent_did_not_say_what_to_do() {
        let m = "credential o/c needs a new login (Snyk refused its refresh token): run `snykey login --org-id o --client-id c`";
        assert_eq!(report(409, ErrorCode::NeedsLogin, m), m);
        let sealed = "the secret store is sealed: unseal it (bao operator unseal) and snykey resumes by itself";
        assert_eq!(report(503, ErrorCode::StoreSealed, sealed), sealed);
        assert_eq!(
            report(
                502,
                ErrorCode::SnykUnavailable,
                "Snyk is unavailable (HTTP 503)"
            ),
            "Snyk is unavailable (HTTP 503) (retry in a moment; `snykey status` shows the credential's state)"
        );
        assert_eq!(
            report(
                503,
                ErrorCode::StoreUnavailable,
                "store unreachable: cannot reach OpenBao: 127.0.0.1:8200 refused the connection"
            ),
            "store unreachable: cannot reach OpenBao: 127.0.0.1:8200 refused the connection (the agent retries by itself; `snykey doctor` says what is wrong with its store)"
        );
        assert_eq!(
            report(404, ErrorCode::NotFound, "no credential o/c."),
            "no credential o/c (check the ids, or add the credential with `snykey put`)"
        );
    }
    #[test]
    fn exit_codes_follow_the_code_and_strangers_the_status() {
        // Every code the agent sends maps as its status did (docs/api.md "Exit codes").
        for &c in ErrorCode::ALL {
            if !matches!(
                c,
                ErrorCode::Usage | ErrorCode::LoginFailed | ErrorCode::ConfigInvalid
            ) {
                assert_eq!(for_error(c.status(), c), for_status(c.status()), "{c}");
            }
        }
        assert_eq!(for_error(409, ErrorCode::NeedsLogin), NO_PERM);
        assert_eq!(for_error(404, ErrorCode::NotFound), NO_INPUT);
        assert_eq!(for_error(503, ErrorCode::StoreSealed), TEMP_FAIL);
        assert_eq!(for_error(403, ErrorCode::PeerNotAllowed), NO_PERM);
        assert_eq!(for_error(400, ErrorCode::BadRequest), USAGE);
        // A refused reload: the configuration is invalid.
        assert_eq!(for_error(422, ErrorCode::ConfigInvalid), CONFIG);
        // A newer agent's code: the status decides.
        assert_eq!(for_error(404, ErrorCode::Unknown), NO_INPUT);
        assert_eq!(for_error(418, ErrorCode::Unknown), TEMP_FAIL);
        assert_eq!(for_error(504, ErrorCode::LoginFailed), TEMP_FAIL);
    }
}

//! Exit codes shared by `snykey-helper` and the admin CLI (SPEC §5, sysexits.h).
//! std-only.

pub const OK: i32 = 0;
/// Bad command line, or the agent said the request was malformed.
pub const USAGE: i32 = 64;
/// Unknown credential.
pub const NO_INPUT: i32 = 66;
/// The agent is not reachable on its socket.
pub const UNAVAILABLE: i32 = 69;
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

/// The exit code for an error answer of the agent.
pub fn for_status(status: u16) -> i32 {
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
pub fn report(status: u16, code: &str, error: &str) -> String {
    let advice = advice(status, code);
    let error = error.trim_end_matches('.');
    if already_advised(status, code, error) {
        error.to_string()
    } else {
        format!("{error} ({advice})")
    }
}

/// Does the agent's message already say what [`advice`] would?
fn already_advised(status: u16, code: &str, error: &str) -> bool {
    let markers: &[&str] = match (status, code) {
        (409, _) => &["snykey login"],
        (403, _) => &["allowed_uids", "allowed_gids"],
        (404, _) => &["snykey put"],
        (_, "store_sealed") => &["unseal"],
        (503, _) | (502, _) | (504, _) => &["try again", "retry", "snykey status"],
        _ => &["snykey status"],
    };
    markers.iter().any(|m| error.contains(m))
}

/// One sentence on what to do next, for an error answer of the agent.
pub fn advice(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (409, _) => "run `snykey login` for this credential",
        (403, "forbidden") => {
            "the agent's operator grants access in its config file ([[access]], server.admin_uids / admin_gids); SIGHUP applies it"
        }
        (403, _) => {
            "ask the agent's operator to allow your uid or group (server.allowed_uids / allowed_gids)"
        }
        (404, _) => "check the ids, or add the credential with `snykey put`",
        (_, "store_sealed") => "unseal the secret store; snykey resumes by itself",
        (503, _) | (502, _) | (504, _) => {
            "retry in a moment; `snykey status` shows the credential's state"
        }
        _ => "see `snykey status`",
    }
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn advice_is_added_only_where_the_agent_did_not_say_what_to_do() {
        let m = "credential o/c needs a new login (Snyk refused its refresh token): run `snykey login --org-id o --client-id c`";
        assert_eq!(report(409, "needs_login", m), m);
        let sealed = "the secret store is sealed: unseal it (bao operator unseal) and snykey resumes by itself";
        assert_eq!(report(503, "store_sealed", sealed), sealed);
        assert_eq!(
            report(502, "snyk_unavailable", "Snyk is unavailable (HTTP 503)"),
            "Snyk is unavailable (HTTP 503) (retry in a moment; `snykey status` shows the credential's state)"
        );
        assert_eq!(
            report(404, "not_found", "no credential o/c."),
            "no credential o/c (check the ids, or add the credential with `snykey put`)"
        );
    }
}

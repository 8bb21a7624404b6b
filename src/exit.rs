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

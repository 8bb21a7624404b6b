//! The agent API's routes, query parameters and the answer fields a client
//! reads (docs/api.md): one list for the agent's router, the admin CLI and
//! `snykey-helper`. std-only, so the helper can use it without serde or an
//! async runtime.
//!
//! A template's `{name}` segments are path parameters; everything else is
//! literal. [`fill`] builds a path from a template (ids are checked by the
//! caller: they never need escaping).

pub const HEALTH: &str = "/v1/health";
pub const READY: &str = "/v1/ready";
pub const METRICS: &str = "/metrics";
/// `PUT` a credential; `GET` the list (or, with `?org_id=&client_id=`, a token);
/// `DELETE ?org_id=&client_id=` (the seed service's query form).
pub const CREDENTIALS: &str = "/v1/credentials";
/// `GET` a token, `DELETE` the credential.
pub const CREDENTIAL: &str = "/v1/credentials/{org_id}/{client_id}";
/// `POST`: mint a new token now (rate-limited per credential).
pub const REFRESH: &str = "/v1/credentials/{org_id}/{client_id}/refresh";
/// `DELETE ?org_id=&client_id=` (the seed service's query form).
pub const CACHE: &str = "/v1/cache";
/// `DELETE` a cached access token.
pub const CACHED: &str = "/v1/cache/{org_id}/{client_id}";
pub const LOGIN: &str = "/v1/login";
/// `GET ?wait=SECONDS`: a login's status.
pub const LOGIN_STATUS: &str = "/v1/login/{state}";
pub const REGISTER_APP: &str = "/v1/register-app";
/// `POST`; `{op}` is `list`, `create`, `show`, `rename`, `delete` or `rotate-secret`.
pub const SERVICE_ACCOUNTS: &str = "/v1/service-accounts/{op}";
/// `POST` (admins): re-read the config file; answered once it was applied or refused.
pub const RELOAD: &str = "/v1/reload";

/// The callback listener's routes (loopback TCP, not the socket).
pub const CALLBACK: &str = "/authorization-code/callback";
/// The seed service's redirect URI path, served the same way.
pub const SEED_CALLBACK: &str = "/v1/callback";

/// Query parameters.
pub const ORG_ID: &str = "org_id";
pub const CLIENT_ID: &str = "client_id";
pub const MIN_VALIDITY: &str = "min_validity";
pub const REVOKE: &str = "revoke";
pub const WAIT: &str = "wait";
/// `GET /v1/ready?write=true`: `snykey doctor`'s write check on a scratch record.
pub const WRITE: &str = "write";

/// Fields of a token answer and of an error answer.
pub const ACCESS_TOKEN: &str = "access_token";
pub const EXPIRES_AT: &str = "expires_at";
pub const TOKEN_TYPE: &str = "token_type";
pub const SNYK_API: &str = "snyk_api";
pub const ERROR: &str = "error";
pub const CODE: &str = "code";

/// `template` with its `{…}` segments replaced by `params`, in order.
/// Missing parameters leave the segment empty (a bug the tests catch).
pub fn fill(template: &str, params: &[&str]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut params = params.iter();
    for segment in template.split('/').skip(1) {
        out.push('/');
        if segment.starts_with('{') {
            out.push_str(params.next().copied().unwrap_or(""));
        } else {
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_to_the_spec_paths() {
        assert_eq!(fill(CREDENTIAL, &["o", "c"]), "/v1/credentials/o/c");
        assert_eq!(fill(REFRESH, &["o", "c"]), "/v1/credentials/o/c/refresh");
        assert_eq!(fill(CACHED, &["o", "c"]), "/v1/cache/o/c");
        assert_eq!(fill(LOGIN_STATUS, &["s"]), "/v1/login/s");
        assert_eq!(
            fill(SERVICE_ACCOUNTS, &["rotate-secret"]),
            "/v1/service-accounts/rotate-secret"
        );
        assert_eq!(fill(HEALTH, &[]), "/v1/health");
        assert_eq!(fill(METRICS, &[]), "/metrics");
    }
}

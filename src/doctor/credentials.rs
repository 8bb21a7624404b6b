//! `snykey doctor`: each credential the agent holds, and its published token.

use super::{Check, fail, pass};
use crate::client::AgentClient;
use crate::wire::{CredentialList, CredentialStatus, State, paths};
use hyper::Method;

/// Every credential the agent holds, each a check.
pub(super) async fn credential_checks(client: &AgentClient, checks: &mut Vec<Check>) {
    match client
        .call::<CredentialList>(Method::GET, paths::CREDENTIALS, None)
        .await
    {
        Ok(list) if list.credentials.is_empty() => checks.push(pass(
            "credentials",
            "none yet: add one with `snykey put` or `snykey login`",
        )),
        Ok(list) => {
            for c in list.credentials {
                let publish = publish_check(&c);
                checks.push(credential_check(c));
                checks.extend(publish);
            }
        }
        Err(e) => checks.push(fail("credentials", e.to_string(), "see the agent's log")),
    }
}

/// One credential as the agent reports it.
fn credential_check(c: CredentialStatus) -> Check {
    let id = format!("{}/{}", c.org_id, c.client_id);
    let expires = c.expires_at.as_deref().unwrap_or("-");
    let next = c.next_refresh_at.as_deref().unwrap_or("-");
    match c.state {
        State::Pending if c.failures == 0 => pass(
            "credential",
            format!("{id}: pending, its first access token is being minted"),
        ),
        State::Pending => fail(
            "credential",
            format!(
                "{id}: pending, no access token yet after {} failed attempt(s), last: {}",
                c.failures,
                c.last_error.as_deref().unwrap_or("-")
            ),
            format!(
                "the agent retries by itself (next at {next}); fix what the error names (is Snyk reachable? `snyk.api_url`)"
            ),
        ),
        State::Ok | State::Refreshing if c.failures == 0 => pass(
            "credential",
            format!(
                "{id}: {}, token valid until {expires}, next refresh {next}",
                c.state.as_str()
            ),
        ),
        State::Ok | State::Refreshing => fail(
            "credential",
            format!(
                "{id}: {} failed refresh(es), last: {}",
                c.failures,
                c.last_error.as_deref().unwrap_or("-")
            ),
            format!("the agent retries by itself (next at {next}); fix what the error names"),
        ),
        State::NeedsLogin => fail(
            "credential",
            format!(
                "{id}: needs a new login ({})",
                c.last_error
                    .as_deref()
                    .unwrap_or("its refresh token was refused")
            ),
            format!(
                "snykey login --org-id {} --client-id {}",
                c.org_id, c.client_id
            ),
        ),
        State::Degraded => fail(
            "credential",
            format!("{id}: degraded, its newest refresh token is only in the recovery journal"),
            "make the secret store writable again; the agent lands the token by itself",
        ),
    }
}

/// A published credential (`[publish]`): where jobs read its token, and
/// whether the agent can write it there.
fn publish_check(c: &CredentialStatus) -> Option<Check> {
    let p = c.published.as_ref()?;
    let id = format!("{}/{}", c.org_id, c.client_id);
    Some(if p.failures > 0 {
        fail(
            "publish",
            format!(
                "{id}: its token cannot be written to {} ({} failed attempt(s), last: {})",
                p.path,
                p.failures,
                p.last_error.as_deref().unwrap_or("-")
            ),
            format!(
                "the agent's OpenBao policy needs create, read and update on the published path's data ({}), read on its metadata and update on its destroy path (examples/ci/openbao-jwt.sh, policy snykey-publish); jobs find no token or an old one meanwhile, and the agent retries by itself",
                data_path(&p.path)
            ),
        )
    } else if let Some(w) = p.withdrawn {
        fail(
            "publish",
            format!(
                "{id}: {} holds no token ({}): {}",
                p.path,
                w.as_str(),
                w.explain()
            ),
            "a new token replaces it once the agent mints one: see the credential's line above",
        )
    } else if let Some(e) = &p.last_error {
        fail("publish", format!("{id}: {e}"), "do what the message says")
    } else {
        pass(
            "publish",
            match &p.expires_at {
                Some(exp) => format!(
                    "{id}: its token is published at {} (valid until {exp})",
                    p.path
                ),
                None => format!(
                    "{id}: published at {} (this agent has not written or read it yet)",
                    p.path
                ),
            },
        )
    })
}

/// `kv/snyk-tokens/o/c` as a policy names its data: `kv/data/snyk-tokens/o/c`.
fn data_path(path: &str) -> String {
    match path.split_once('/') {
        Some((mount, rest)) => format!("{mount}/data/{rest}"),
        None => path.to_string(),
    }
}

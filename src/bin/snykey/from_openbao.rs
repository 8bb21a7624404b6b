//! `snykey token --from-openbao`: a CI job reads the token an agent
//! published (`snykey::from_openbao`), then prints it or runs a command with
//! it, as `snykey-helper` does.

use crate::cli::{Credential, FormatArg, FromOpenBaoArgs};
use crate::credentials::exec_with;
use crate::{Failure, local, report};
use snykey::credential::CredKey;
use snykey::exit;
use snykey::from_openbao::{JwtSource, Request, fetch};
use snykey::render::{SnykEnv, token_output};
use std::time::Duration;

/// What a job asks for when it names no validity: the agent's own default.
const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(300);
/// One call to OpenBao or GitHub.
const TIMEOUT: Duration = Duration::from_secs(30);

pub fn token(
    c: Credential,
    args: FromOpenBaoArgs,
    min_validity: Option<Duration>,
    format: FormatArg,
    command: &[String],
) -> i32 {
    let request = match request(args, min_validity) {
        Ok(r) => r,
        Err(f) => return report(f),
    };
    let key = match CredKey::parse(&c.org_id.0, &c.client_id.0) {
        Ok(k) => k,
        Err(e) => return report(crate::usage(e.to_string())),
    };
    let Some(runtime) = local::runtime() else {
        return exit::SOFTWARE;
    };
    let outcome = runtime.block_on(fetch(&request, &key));
    drop(runtime);
    if let Err(e) = &outcome.revoked {
        eprintln!(
            "snykey: could not revoke the OpenBao token after the read ({e}); it ends with its TTL"
        );
    }
    let t = match outcome.token {
        Ok(t) => t,
        Err(e) => {
            eprintln!("snykey: {e}");
            return e.exit_code();
        }
    };
    let env = SnykEnv::new(t.api_url.as_deref(), &t.org_id);
    if !command.is_empty() {
        return report(exec_with(t.access_token.expose(), env, command));
    }
    print!(
        "{}",
        token_output(format.into(), t.access_token.expose(), &t.expires_at, env)
    );
    exit::OK
}

/// The request from the flags and the environment (`BAO_ADDR`, …); a usage
/// error names what is missing.
fn request(args: FromOpenBaoArgs, min_validity: Option<Duration>) -> Result<Request, Failure> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let addr = args
        .addr
        .or_else(|| env("BAO_ADDR"))
        .or_else(|| env("VAULT_ADDR"))
        .ok_or_else(|| {
            crate::usage("--from-openbao needs OpenBao's address: --addr, or BAO_ADDR".into())
        })?;
    let jwt = match (args.jwt_file, args.jwt_env, args.github_oidc) {
        (Some(f), None, false) => JwtSource::File(f),
        (None, Some(n), false) => JwtSource::Env(n),
        (None, None, true) => JwtSource::GitHub {
            audience: args.audience,
        },
        _ => {
            return Err(crate::usage(
                "--from-openbao needs the job's JWT: --jwt-file FILE, --jwt-env NAME (GitLab CI id_tokens) or --github-oidc (GitHub Actions)".into(),
            ));
        }
    };
    Ok(Request {
        addr,
        ca_cert: args
            .ca_cert
            .or_else(|| env("BAO_CACERT").map(Into::into))
            .or_else(|| env("VAULT_CACERT").map(Into::into)),
        auth_mount: args.auth_mount.unwrap_or_else(|| "jwt".into()),
        role: args.role,
        jwt,
        mount: args.mount.unwrap_or_else(|| "kv".into()),
        prefix: args.prefix.unwrap_or_else(|| "snyk-tokens".into()),
        min_validity: min_validity.unwrap_or(DEFAULT_MIN_VALIDITY),
        timeout: TIMEOUT,
    })
}

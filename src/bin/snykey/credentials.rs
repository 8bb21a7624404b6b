//! `put`, `token`, `refresh`, `status`, `delete`: one credential at a time.

use crate::cli::{Credential, FormatArg, PutArgs};
use crate::{Failure, routes, table, usage};
use hyper::Method;
use snykey::client::{AgentClient, ClientError};
use snykey::render::{Format, SnykEnv, token_output};
use snykey::secret::Secret;
use snykey::wire::{
    CredentialList, Message, PutCredential, PutCredentialResponse, State, TokenResponse,
};
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Reads a secret from a file or `-` (stdin). Never from argv.
pub fn read_secret(what: &str, path: &Path, stdin_used: &mut bool) -> Result<Secret, Failure> {
    let mut text = String::new();
    if path == Path::new("-") {
        if *stdin_used {
            return Err(usage(format!(
                "only one secret can come from stdin ({what} asks for it too)"
            )));
        }
        *stdin_used = true;
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| usage(format!("cannot read {what} from stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read {what} from {}: {e}", path.display())))?;
    }
    let s = Secret::new(text);
    if s.is_empty() {
        return Err(usage(format!("{what} is empty")));
    }
    Ok(s)
}

/// `snykey put`.
pub async fn put(client: &AgentClient, args: PutArgs) -> Result<(), Failure> {
    let mut stdin_used = false;
    let mut read = |what: &str, p: &Option<std::path::PathBuf>| {
        p.as_deref()
            .map(|p| read_secret(what, p, &mut stdin_used))
            .transpose()
    };
    let (org_id, client_id) = (args.org_id.0.clone(), args.client_id.0.clone());
    let body = PutCredential {
        org_id: args.org_id.0,
        client_id: args.client_id.0,
        kind: args.kind.map(Into::into),
        client_secret: read("the client secret", &args.client_secret_file)?,
        refresh_token: read("the refresh token", &args.refresh_token_file)?,
        private_key_pem: read("the private key", &args.private_key_file)?,
        key_id: args.key_id,
        api_key: read("the API key", &args.api_key_file)?,
        api_url: args.api_url,
    };
    let r: PutCredentialResponse = match client
        .call(Method::PUT, routes::CREDENTIALS, Some(json(&body)?))
        .await
    {
        Ok(r) => r,
        Err(e) => return Err(stored_but_pending(client, &org_id, &client_id, e).await),
    };
    if r.kind == snykey::wire::Kind::ApiKey {
        println!(
            "stored api_key credential {}/{}; an API key does not expire",
            r.org_id, r.client_id
        );
    } else {
        println!(
            "stored {} credential {}/{}; its access token is valid until {}",
            r.kind.as_str(),
            r.org_id,
            r.client_id,
            r.expires_at
        );
    }
    Ok(())
}

/// A `put` that failed at Snyk (unreachable, unavailable, timed out) may
/// still have stored the credential, which then waits for its first grant:
/// say so, with the state the agent shows, instead of a bare Snyk error.
async fn stored_but_pending(
    client: &AgentClient,
    org_id: &str,
    client_id: &str,
    e: ClientError,
) -> Failure {
    let ClientError::Api { status, .. } = &e else {
        return e.into();
    };
    if !matches!(status, 502 | 504) {
        return e.into();
    }
    let Ok(list) = client
        .call::<CredentialList>(Method::GET, routes::CREDENTIALS, None)
        .await
    else {
        return e.into();
    };
    let pending = list
        .credentials
        .iter()
        .any(|c| c.org_id == org_id && c.client_id == client_id && c.state == State::Pending);
    if !pending {
        return e.into();
    }
    // The agent's own words, without the generic advice `report` adds:
    // what to do next follows here.
    let why = match &e {
        snykey::client::ClientError::Api { error, .. } => error.trim_end_matches('.').to_string(),
        other => other.to_string(),
    };
    Failure::Local {
        exit: e.exit_code(),
        message: format!(
            "stored {org_id}/{client_id}, but its first access token could not be minted: {why}; its state is pending: the agent retries by itself (`snykey status` shows it; `snykey-helper` answers once a token is minted)"
        ),
    }
}

/// A request body as JSON.
pub fn json<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(body)
        .map_err(|e| Failure::Agent(snykey::client::ClientError::Protocol(e.to_string())))
}

/// Prints a token of `org_id`'s credential like the helper does.
fn print_token(format: Format, t: &TokenResponse, org_id: &str) {
    let env = SnykEnv::new(t.snyk_api.as_deref(), org_id).token_type(Some(&t.token_type));
    print!(
        "{}",
        token_output(format, t.access_token.expose(), &t.expires_at, env)
    );
}

/// Runs `command` with the token in its environment (`SNYK_OAUTH_TOKEN`,
/// and `SNYK_API` and `SNYK_CFG_ORG` as `--format env` prints them), in
/// place of this process: its exit status is ours. Returns only when it
/// could not be run.
pub fn exec_with(token: &str, env: SnykEnv<'_>, command: &[String]) -> Failure {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = command.split_first() else {
        return usage("a command is needed after --".into());
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env(env.token_var(), token);
    for (name, value) in env.vars() {
        cmd.env(name, value);
    }
    let e = cmd.exec();
    Failure::Local {
        exit: if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
        message: format!("cannot run {program}: {e}"),
    }
}

/// `snykey token`: printed, or a command run with it.
pub async fn token(
    client: &AgentClient,
    c: Credential,
    min_validity: Option<Duration>,
    format: FormatArg,
    command: &[String],
) -> Result<(), Failure> {
    let path = routes::token(&c.org_id.0, &c.client_id.0, min_validity);
    let t: TokenResponse = client.call(Method::GET, &path, None).await?;
    if !command.is_empty() {
        let env = SnykEnv::new(t.snyk_api.as_deref(), &c.org_id.0).token_type(Some(&t.token_type));
        return Err(exec_with(t.access_token.expose(), env, command));
    }
    print_token(format.into(), &t, &c.org_id.0);
    Ok(())
}

/// `snykey refresh`.
pub async fn refresh(
    client: &AgentClient,
    c: Credential,
    format: Option<FormatArg>,
) -> Result<(), Failure> {
    let path = routes::refresh(&c.org_id.0, &c.client_id.0);
    let t: TokenResponse = client.call(Method::POST, &path, None).await?;
    match format {
        Some(f) => print_token(f.into(), &t, &c.org_id.0),
        None => println!(
            "{}/{}: a new access token, valid until {}",
            c.org_id.0, c.client_id.0, t.expires_at
        ),
    }
    Ok(())
}

/// `snykey status`.
pub async fn status(client: &AgentClient, json: bool) -> Result<(), Failure> {
    let list: CredentialList = client.call(Method::GET, routes::CREDENTIALS, None).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        print!("{}", table::status(&list));
    }
    Ok(())
}

/// `snykey delete`.
pub async fn delete(client: &AgentClient, c: Credential, revoke: bool) -> Result<(), Failure> {
    let path = routes::delete(&c.org_id.0, &c.client_id.0, revoke);
    let m: Message = client.call(Method::DELETE, &path, None).await?;
    println!("{}", m.message);
    Ok(())
}

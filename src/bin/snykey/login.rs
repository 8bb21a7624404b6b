//! `snykey login` and `snykey register-app`: start a browser login at the
//! agent, print (and open) the URL, and follow it to its end.

use crate::cli::{LoginArgs, RegisterAppArgs};
use crate::credentials::{json, read_secret};
use crate::{Failure, routes};
use hyper::Method;
use snykey::client::{AgentClient, ClientError};
use snykey::wire::{
    CredentialList, LoginRequest, LoginStarted, LoginState, LoginStatus, RegisterAppRequest,
};
use std::time::{Duration, SystemTime};

/// `snykey login`.
pub async fn login(client: &AgentClient, args: LoginArgs) -> Result<(), Failure> {
    let mut stdin_used = false;
    let client_secret = args
        .client_secret_file
        .as_deref()
        .map(|p| read_secret("the client secret", p, &mut stdin_used))
        .transpose()?;
    let (org_id, client_id) = (args.org_id.0, args.client_id.0);
    if client_secret.is_none() {
        refuse_login_without_secret(client, &org_id, &client_id).await?;
    }
    let req = LoginRequest {
        org_id,
        client_id,
        client_secret,
        redirect_uri: None,
        scopes: args.scopes,
        api_url: args.api_url,
    };
    let started: LoginStarted = client
        .call(Method::POST, routes::LOGIN, Some(json(&req)?))
        .await?;
    follow(client, started, args.no_browser).await
}

/// `snykey register-app`.
pub async fn register_app(client: &AgentClient, args: RegisterAppArgs) -> Result<(), Failure> {
    let mut stdin_used = false;
    let auth_token = read_secret(
        "the Snyk auth token",
        &args.auth_token_file,
        &mut stdin_used,
    )?;
    let req = RegisterAppRequest {
        org_id: args.org_id,
        name: args.name,
        scopes: args.scopes,
        redirect_uris: args.redirect_uri,
        context: args.context,
        auth_token,
        api_url: args.api_url,
    };
    let started: LoginStarted = client
        .call(Method::POST, routes::REGISTER_APP, Some(json(&req)?))
        .await?;
    if let Some(id) = &started.client_id {
        println!(
            "registered the Snyk App; its client id is {id} (the client secret is in the secret store)"
        );
    }
    follow(client, started, args.no_browser).await
}

/// Opens the URL with the desktop's opener when there is a display.
fn open_browser(url: &str) {
    let has_display = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos");
    if !has_display {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    match std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => eprintln!("(opened it with {opener})"),
        Err(e) => eprintln!("(could not run {opener}: {e}; open the URL by hand)"),
    }
}

/// Prints the authorize URL, opens the browser if it can, and waits with a
/// visible countdown until the agent reports the login complete or failed.
async fn follow(
    client: &AgentClient,
    started: LoginStarted,
    no_browser: bool,
) -> Result<(), Failure> {
    println!(
        "Open this URL in a browser and approve the app:\n\n  {}\n",
        started.authorize_url
    );
    if !no_browser {
        open_browser(&started.authorize_url);
    }
    let deadline = humantime::parse_rfc3339(&started.expires_at)
        .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(600));
    let path = routes::login_status(&started.state);
    // On a terminal, one line redrawn in place; elsewhere (a log, a pipe) one
    // line per minute instead of a pile of `\r` frames.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_minute = None;
    loop {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let (m, sec) = (left.as_secs() / 60, left.as_secs() % 60);
        if terminal {
            eprint!(
                "\rwaiting for the browser to come back to the agent's callback ({m}m{sec:02}s left) "
            );
        } else if last_minute != Some(m) {
            last_minute = Some(m);
            eprintln!(
                "waiting for the browser to come back to the agent's callback ({m}m{sec:02}s left)"
            );
        }
        let status: LoginStatus = client.call(Method::GET, &path, None).await?;
        if status.state == LoginState::Pending {
            continue;
        }
        if terminal {
            eprintln!();
        }
        if status.state == LoginState::Complete {
            println!(
                "login complete: snykey now manages {}/{}",
                status.org_id, status.client_id
            );
            return Ok(());
        }
        return Err(failed(status, deadline).into());
    }
}

/// A failed login, classified by what the agent said of it: a login the
/// agent expired (its state answered past the deadline the agent set) is a
/// time-out (exit 75, start again); any other failure means Snyk or the user
/// refused (exit 77).
fn failed(status: LoginStatus, deadline: SystemTime) -> ClientError {
    let expired = SystemTime::now() >= deadline;
    ClientError::Api {
        status: if expired { 504 } else { 409 },
        code: if expired {
            "login_expired"
        } else {
            "login_failed"
        }
        .into(),
        error: status.error.unwrap_or_else(|| "the login failed".into()),
    }
}

/// `snykey login` without `--client-secret-file` logs in with the stored
/// secret: refuse at once when the agent holds no such credential, instead of
/// waiting for a browser login that cannot succeed.
async fn refuse_login_without_secret(
    client: &AgentClient,
    org_id: &str,
    client_id: &str,
) -> Result<(), Failure> {
    let list: CredentialList = client.call(Method::GET, routes::CREDENTIALS, None).await?;
    if list
        .credentials
        .iter()
        .any(|c| c.org_id == org_id && c.client_id == client_id)
    {
        return Ok(());
    }
    Err(Failure::Local {
        exit: snykey::exit::NO_INPUT,
        message: format!(
            "the agent holds no credential {org_id}/{client_id}, so it has no client secret to log in with: give it with --client-secret-file FILE (or - for stdin)"
        ),
    })
}

//! `snykey service-account list|create|show|rename|delete|rotate-secret`.

use crate::cli::{SaCommand, SaScope};
use crate::credentials::{json, read_secret};
use crate::{Failure, routes, table};
use hyper::Method;
use snykey::client::AgentClient;
use snykey::wire::{ServiceAccountList, ServiceAccountRequest, ServiceAccountResult};

/// The request every operation starts from: the scope and the auth token.
fn base(scope: &SaScope) -> Result<ServiceAccountRequest, Failure> {
    let mut stdin_used = false;
    let auth_token = read_secret(
        "the Snyk auth token",
        &scope.auth_token_file,
        &mut stdin_used,
    )?;
    Ok(ServiceAccountRequest {
        org_id: scope.org_id.clone(),
        group_id: scope.group_id.clone(),
        auth_token,
        api_url: scope.api_url.clone(),
        ..Default::default()
    })
}

/// The operation's name (its route) and its request, from the command line.
fn request(cmd: &SaCommand) -> Result<(&'static str, ServiceAccountRequest), Failure> {
    Ok(match cmd {
        SaCommand::List { scope, .. } => ("list", base(scope)?),
        SaCommand::Create {
            scope,
            name,
            auth_type,
            role_id,
            jwks_url,
            access_token_ttl,
        } => (
            "create",
            ServiceAccountRequest {
                name: Some(name.clone()),
                auth_type: Some(auth_type.as_str().into()),
                role_id: Some(role_id.clone()),
                jwks_url: jwks_url.clone(),
                access_token_ttl_seconds: access_token_ttl.map(|d| d.as_secs()),
                ..base(scope)?
            },
        ),
        SaCommand::Show { scope, target, .. } => (
            "show",
            ServiceAccountRequest {
                service_account_id: target.service_account_id.clone(),
                client_id: target.client_id.clone(),
                ..base(scope)?
            },
        ),
        SaCommand::Rename {
            scope,
            target,
            name,
        } => (
            "rename",
            ServiceAccountRequest {
                service_account_id: target.service_account_id.clone(),
                client_id: target.client_id.clone(),
                name: Some(name.clone()),
                ..base(scope)?
            },
        ),
        SaCommand::Delete { scope, target } => (
            "delete",
            ServiceAccountRequest {
                service_account_id: target.service_account_id.clone(),
                client_id: target.client_id.clone(),
                ..base(scope)?
            },
        ),
        SaCommand::RotateSecret {
            scope,
            target,
            mode,
        } => (
            "rotate-secret",
            ServiceAccountRequest {
                service_account_id: target.service_account_id.clone(),
                client_id: target.client_id.clone(),
                mode: mode.map(|m| m.as_str().to_string()),
                ..base(scope)?
            },
        ),
    })
}

pub async fn run(client: &AgentClient, cmd: SaCommand) -> Result<(), Failure> {
    let (op, req) = request(&cmd)?;
    let path = routes::service_accounts(op);
    let body = Some(json(&req)?);
    if let SaCommand::List { json, .. } = cmd {
        let list: ServiceAccountList = client.call(Method::POST, &path, body).await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
        } else {
            print!("{}", table::service_accounts(&list));
        }
        return Ok(());
    }
    let r: ServiceAccountResult = client.call(Method::POST, &path, body).await?;
    if let SaCommand::Show { json, .. } = cmd {
        let list = ServiceAccountList {
            service_accounts: r.service_account.into_iter().collect(),
        };
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list.service_accounts.first()).unwrap_or_default()
            );
        } else {
            print!("{}", table::service_accounts(&list));
        }
        return Ok(());
    }
    println!("{}", r.message);
    Ok(())
}

//! Wire bodies to the domain's words and back: the one place the API's JSON
//! meets the broker. Ids are parsed here, once per request.

use super::error::ApiError;
use super::http::key_from;
use crate::broker::login::{Login, LoginProgress, LoginStarted};
use crate::broker::register::AppRegistration;
use crate::broker::service_accounts::{SaAuth, SaCreate, SaDone, SaTarget};
use crate::clock::rfc3339;
use crate::credential::{CredKey, Kind, NewCredential, Summary};
use crate::ids::{OrgId, check_id};
use crate::snyk::rest::{Scope, ServiceAccount as SnykServiceAccount};
use crate::wire;
use std::time::SystemTime;

/// A request's `api_url`, checked as `snyk.api_url` is.
fn region(api_url: Option<String>) -> Result<Option<String>, ApiError> {
    api_url
        .map(|u| {
            crate::snyk::region::normalize_base_url(&u)
                .map_err(|m| ApiError::bad(format!("api_url: {m}")))
        })
        .transpose()
}

pub fn new_credential(body: wire::PutCredential) -> Result<NewCredential, ApiError> {
    Ok(NewCredential {
        key: key_from(&body.org_id, &body.client_id)?,
        kind: body.kind.unwrap_or(Kind::OauthApp),
        client_secret: body.client_secret,
        refresh_token: body.refresh_token,
        private_key_pem: body.private_key_pem,
        key_id: body.key_id,
        api_key: body.api_key,
        api_url: region(body.api_url)?,
    })
}

pub fn put_answer(
    key: &CredKey,
    kind: Kind,
    expires_at: SystemTime,
) -> wire::PutCredentialResponse {
    wire::PutCredentialResponse {
        org_id: key.org.to_string(),
        client_id: key.client.to_string(),
        kind,
        expires_at: rfc3339(expires_at),
    }
}

pub fn status(s: Summary) -> wire::CredentialStatus {
    wire::CredentialStatus {
        org_id: s.key.org.to_string(),
        client_id: s.key.client.to_string(),
        kind: s.kind,
        state: s.state,
        expires_at: s.expires_at.map(rfc3339),
        next_refresh_at: s.next_refresh_at.map(rfc3339),
        last_refresh_at: s.last_refresh_at.map(rfc3339),
        failures: s.failures,
        last_error: s.last_error,
        api_url: s.api_url,
        published: s.published.map(|p| wire::PublishStatus {
            path: p.path,
            expires_at: p.expires_at.map(rfc3339),
            withdrawn: p.withdrawn,
            failures: p.failures,
            last_error: p.last_error,
        }),
    }
}

pub fn login(body: wire::LoginRequest) -> Result<Login, ApiError> {
    Ok(Login {
        key: key_from(&body.org_id, &body.client_id)?,
        client_secret: body.client_secret,
        redirect_uri: body.redirect_uri,
        scopes: body.scopes,
        api_url: region(body.api_url)?,
    })
}

pub fn login_started(s: LoginStarted) -> wire::LoginStarted {
    wire::LoginStarted {
        client_id: s.client_id,
        authorize_url: s.authorize_url,
        state: s.state,
        expires_at: rfc3339(s.expires_at),
    }
}

pub fn login_status(p: LoginProgress) -> wire::LoginStatus {
    wire::LoginStatus {
        state: p.state,
        org_id: p.key.org.to_string(),
        client_id: p.key.client.to_string(),
        error: p.error,
    }
}

pub fn registration(body: wire::RegisterAppRequest) -> Result<AppRegistration, ApiError> {
    Ok(AppRegistration {
        org: OrgId::parse(&body.org_id).map_err(|e| ApiError::bad(e.to_string()))?,
        name: body.name,
        scopes: body.scopes,
        redirect_uris: body.redirect_uris,
        context: body.context,
        auth_token: body.auth_token,
        api_url: region(body.api_url)?,
    })
}

/// The org or group (exactly one) and the Snyk token of a service-account request.
pub fn sa_auth(body: &wire::ServiceAccountRequest) -> Result<SaAuth, ApiError> {
    let checked = |field, id: &String| {
        check_id(field, id)
            .map(|()| id.clone())
            .map_err(|e| ApiError::bad(e.to_string()))
    };
    let scope = match (&body.org_id, &body.group_id) {
        (Some(o), None) => Scope::Org(checked("org_id", o)?),
        (None, Some(g)) => Scope::Group(checked("group_id", g)?),
        _ => return Err(ApiError::bad("give exactly one of org_id or group_id")),
    };
    if body.auth_token.is_empty() {
        return Err(ApiError::bad("auth_token is empty"));
    }
    Ok(SaAuth {
        scope,
        auth_token: body.auth_token.clone(),
        api_url: region(body.api_url.clone())?,
    })
}

/// Which account: its id (checked as ids are: it goes into Snyk's URL), or
/// its client id.
pub fn sa_target(body: &wire::ServiceAccountRequest) -> Result<SaTarget, ApiError> {
    match (&body.service_account_id, &body.client_id) {
        (Some(id), _) => {
            check_id("service_account_id", id).map_err(|e| ApiError::bad(e.to_string()))?;
            Ok(SaTarget::Id(id.clone()))
        }
        (None, Some(c)) => Ok(SaTarget::ClientId(c.clone())),
        (None, None) => Err(ApiError::bad("give service_account_id or client_id")),
    }
}

pub fn sa_create(body: &wire::ServiceAccountRequest) -> Result<SaCreate, ApiError> {
    let name = body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("name is required"))?;
    let role_id = body
        .role_id
        .as_deref()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad("role_id is required"))?;
    Ok(SaCreate {
        name: name.to_string(),
        role_id: role_id.to_string(),
        auth_type: body
            .auth_type
            .clone()
            .unwrap_or_else(|| "oauth_client_secret".into()),
        jwks_url: body.jwks_url.clone(),
        access_token_ttl_seconds: body.access_token_ttl_seconds,
    })
}

/// `mode`: absent or `create` rotates with no downtime; `replace` replaces at once.
pub fn sa_replace(body: &wire::ServiceAccountRequest) -> Result<bool, ApiError> {
    match body.mode.as_deref() {
        None | Some("create") => Ok(false),
        Some("replace") => Ok(true),
        Some(other) => Err(ApiError::bad(format!("mode {other:?} is not replace"))),
    }
}

pub fn service_account(a: SnykServiceAccount) -> wire::ServiceAccount {
    wire::ServiceAccount {
        id: a.id,
        name: a.name,
        auth_type: a.auth_type,
        client_id: a.client_id,
        role_id: a.role_id,
    }
}

pub fn sa_result(done: SaDone) -> wire::ServiceAccountResult {
    wire::ServiceAccountResult {
        message: done.message,
        service_account: done.account.map(service_account),
    }
}

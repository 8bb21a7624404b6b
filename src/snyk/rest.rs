//! Snyk's REST API (JSON:API): app registration (and, beside it, service
//! accounts). Errors come back as one clear sentence; 429 is honoured.

use crate::secret::Secret;
use serde_json::{Value, json};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, Clone)]
pub enum RestError {
    #[error("Snyk refused the request (HTTP {status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("Snyk is unavailable (HTTP {status}): {detail}")]
    Unavailable { status: u16, detail: String },
    #[error("cannot reach Snyk: {0}")]
    Unreachable(String),
    #[error("Snyk's answer was not understood: {0}")]
    Protocol(String),
}

/// The Snyk REST client of one region.
#[derive(Clone)]
pub struct SnykRest {
    http: reqwest::Client,
    api_url: String,
    version: String,
}

/// The largest REST answer read (a page of 100 service accounts is a few
/// tens of KiB).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One sentence from a JSON:API error document.
fn error_sentence(status: u16, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let first = &v["errors"][0];
    let text = first["detail"]
        .as_str()
        .or(first["title"].as_str())
        .or(v["message"].as_str())
        .or(v["error"].as_str());
    let text = text.map(|t| {
        t.chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect::<String>()
    });
    text.unwrap_or_else(|| format!("HTTP {status}"))
}

impl SnykRest {
    pub fn new(
        api_url: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<SnykRest, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("snykey/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(SnykRest {
            http,
            api_url: api_url.to_string(),
            version: version.to_string(),
        })
    }

    /// The same client (its connections shared) for another region's API.
    pub fn at(&self, api_url: &str) -> SnykRest {
        SnykRest {
            http: self.http.clone(),
            api_url: api_url.to_string(),
            version: self.version.clone(),
        }
    }

    /// Sends a JSON:API request with `Authorization: token ...`; retries once
    /// on 429 when Snyk asks for a short wait.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth_token: &Secret,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        self.call_q(method, path, &[], auth_token, body).await
    }

    /// [`SnykRest::call`] with extra query parameters.
    pub async fn call_q(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        auth_token: &Secret,
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        let url = format!("{}/rest{path}", self.api_url);
        // One header value for both attempts, marked sensitive; the formatted
        // text is wiped here (reqwest's copy inside the request is not ours).
        let mut auth = {
            let text = zeroize::Zeroizing::new(format!("token {}", auth_token.expose()));
            reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
                RestError::Unreachable(
                    "the Snyk auth token has characters an HTTP header cannot carry (a stray newline?): check the auth token file".into(),
                )
            })?
        };
        auth.set_sensitive(true);
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .query(&[("version", self.version.as_str())])
                .query(query)
                .header(reqwest::header::AUTHORIZATION, auth.clone())
                .header(reqwest::header::ACCEPT, "application/vnd.api+json");
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/vnd.api+json")
                    .body(b.to_string());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| RestError::Unreachable(super::describe_transport(&e)))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let bytes = super::read_capped(resp, MAX_ANSWER)
                .await
                .map_err(|e| match e {
                    super::BodyError::TooLarge(max) => RestError::Protocol(format!(
                        "the answer (HTTP {status}) was larger than {} KiB",
                        max / 1024
                    )),
                    super::BodyError::Transport(e) => {
                        RestError::Unreachable(e.without_url().to_string())
                    }
                })?;
            if (200..300).contains(&status) {
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                return parse_body(&bytes);
            }
            if status == 429 && attempt == 0 && retry_after.is_some_and(|s| s <= 10) {
                tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                continue;
            }
            let detail = error_sentence(status, &bytes);
            return Err(if status == 429 || status >= 500 {
                RestError::Unavailable { status, detail }
            } else {
                RestError::Refused { status, detail }
            });
        }
        Err(RestError::Unavailable {
            status: 429,
            detail: "rate limited".into(),
        })
    }

    /// `POST /rest/orgs/{org_id}/apps/creations`: registers a Snyk App and
    /// returns its client id and secret.
    pub async fn create_app(
        &self,
        org_id: &str,
        auth_token: &Secret,
        name: &str,
        scopes: &[String],
        redirect_uris: &[String],
        context: &str,
    ) -> Result<(String, Secret), RestError> {
        let body = json!({"data": {"type": "app", "attributes": {
            "name": name, "scopes": scopes, "redirect_uris": redirect_uris, "context": context
        }}});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/orgs/{org_id}/apps/creations"),
                auth_token,
                Some(&body),
            )
            .await?;
        parse_app_creation(&v)
    }
}

/// A 2xx answer's body: JSON, or an error that says where it broke (never
/// what it held: an answer may carry a secret).
fn parse_body(bytes: &[u8]) -> Result<Value, RestError> {
    serde_json::from_slice(bytes).map_err(|e| {
        RestError::Protocol(format!(
            "the answer is not JSON: {}",
            crate::secret::json_error(&e)
        ))
    })
}

/// `POST /orgs/{org_id}/apps/creations`'s answer: client id and secret.
fn parse_app_creation(v: &Value) -> Result<(String, Secret), RestError> {
    let attrs = &v["data"]["attributes"];
    let client_id = attrs["client_id"]
        .as_str()
        .ok_or_else(|| RestError::Protocol("no client_id in the app creation answer".into()))?;
    // Trimmed as every secret is: blank is none.
    let secret = attrs["client_secret"]
        .as_str()
        .map(Secret::new)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RestError::Protocol("no client_secret in the app creation answer".into()))?;
    Ok((client_id.to_string(), secret))
}

/// Where a service account lives.
#[derive(Debug, Clone)]
pub enum Scope {
    Org(String),
    Group(String),
}

impl Scope {
    fn path(&self) -> String {
        match self {
            Scope::Org(id) => format!("/orgs/{id}/service_accounts"),
            Scope::Group(id) => format!("/groups/{id}/service_accounts"),
        }
    }

    /// The id the credential is kept under in snykey (its `org_id`).
    pub fn id(&self) -> &str {
        match self {
            Scope::Org(id) | Scope::Group(id) => id,
        }
    }
}

/// A service account as Snyk lists it (no secrets).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub auth_type: String,
    pub client_id: String,
    #[serde(default)]
    pub role_id: Option<String>,
}

/// One page of a service-account list: its accounts, and the cursor of
/// the next page (`starting_after` in `links.next`).
fn parse_sa_page(v: &Value) -> (Vec<ServiceAccount>, Option<String>) {
    let items = v["data"]
        .as_array()
        .map(|items| items.iter().filter_map(parse_sa).collect())
        .unwrap_or_default();
    let next = v["links"]["next"]
        .as_str()
        .and_then(|n| n.split("starting_after=").nth(1))
        .map(|s| s.split('&').next().unwrap_or(s).to_string());
    (items, next)
}

/// A service-account creation answer: the account and, for
/// `oauth_client_secret`, its first secret (for `api_key`, its API key).
fn parse_sa_creation(v: &Value) -> Result<(ServiceAccount, Option<Secret>), RestError> {
    let sa = parse_one_sa(v)?;
    let secret = match sa.auth_type.as_str() {
        "api_key" => v["data"]["attributes"]["api_key"]
            .as_str()
            .map(Secret::new)
            .filter(|s| !s.is_empty()),
        _ => parse_new_secret(v),
    };
    Ok((sa, secret))
}

/// The account of a one-account answer (`data` an object).
fn parse_one_sa(v: &Value) -> Result<ServiceAccount, RestError> {
    parse_sa(&v["data"])
        .ok_or_else(|| RestError::Protocol("no service account in the answer".into()))
}

/// The new secret in a service-account answer, if any.
fn parse_new_secret(v: &Value) -> Option<Secret> {
    v["data"]["attributes"]["client_secret"]
        .as_str()
        .map(Secret::new)
        .filter(|s| !s.is_empty())
}

fn parse_sa(v: &Value) -> Option<ServiceAccount> {
    let a = &v["attributes"];
    Some(ServiceAccount {
        id: v["id"].as_str().filter(|id| !id.is_empty())?.to_string(),
        name: a["name"].as_str().unwrap_or_default().to_string(),
        auth_type: a["auth_type"].as_str().unwrap_or_default().to_string(),
        client_id: a["client_id"].as_str().unwrap_or_default().to_string(),
        role_id: a["role_id"].as_str().map(str::to_string),
    })
}

impl SnykRest {
    /// `GET .../service_accounts`, following `links.next` (at most 50 pages).
    pub async fn list_service_accounts(
        &self,
        scope: &Scope,
        auth_token: &Secret,
    ) -> Result<Vec<ServiceAccount>, RestError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..50 {
            let mut q: Vec<(&str, &str)> = vec![("limit", "100")];
            if let Some(a) = after.as_deref() {
                q.push(("starting_after", a));
            }
            let v = self
                .call_q(reqwest::Method::GET, &scope.path(), &q, auth_token, None)
                .await?;
            let (items, next) = parse_sa_page(&v);
            out.extend(items);
            match next {
                Some(n) if Some(&n) != after.as_ref() => after = Some(n),
                _ => break,
            }
        }
        Ok(out)
    }

    /// `POST .../service_accounts`: returns the account and, for
    /// `oauth_client_secret`, its first secret.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_service_account(
        &self,
        scope: &Scope,
        auth_token: &Secret,
        name: &str,
        auth_type: &str,
        role_id: &str,
        jwks_url: Option<&str>,
        access_token_ttl_seconds: Option<u64>,
    ) -> Result<(ServiceAccount, Option<Secret>), RestError> {
        let mut attrs = json!({"name": name, "auth_type": auth_type, "role_id": role_id});
        if let Some(j) = jwks_url {
            attrs["jwks_url"] = json!(j);
        }
        if let Some(t) = access_token_ttl_seconds {
            attrs["access_token_ttl_seconds"] = json!(t);
        }
        let body = json!({"data": {"type": "service_account", "attributes": attrs}});
        let v = self
            .call(
                reqwest::Method::POST,
                &scope.path(),
                auth_token,
                Some(&body),
            )
            .await?;
        parse_sa_creation(&v)
    }

    /// `GET .../service_accounts/{id}`.
    pub async fn get_service_account(
        &self,
        scope: &Scope,
        auth_token: &Secret,
        id: &str,
    ) -> Result<ServiceAccount, RestError> {
        let path = format!("{}/{id}", scope.path());
        let v = self
            .call(reqwest::Method::GET, &path, auth_token, None)
            .await?;
        parse_one_sa(&v)
    }

    /// `PATCH .../service_accounts/{id}`: a new name (the one attribute Snyk
    /// lets change). Returns the account as Snyk answers it.
    pub async fn rename_service_account(
        &self,
        scope: &Scope,
        auth_token: &Secret,
        id: &str,
        name: &str,
    ) -> Result<ServiceAccount, RestError> {
        let body =
            json!({"data": {"type": "service_account", "id": id, "attributes": {"name": name}}});
        let path = format!("{}/{id}", scope.path());
        let v = self
            .call(reqwest::Method::PATCH, &path, auth_token, Some(&body))
            .await?;
        parse_one_sa(&v)
    }

    /// `DELETE .../service_accounts/{id}`.
    pub async fn delete_service_account(
        &self,
        scope: &Scope,
        auth_token: &Secret,
        id: &str,
    ) -> Result<(), RestError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{}/{id}", scope.path()),
            auth_token,
            None,
        )
        .await
        .map(|_| ())
    }

    /// `POST .../service_accounts/{id}/secrets` with `mode` create, replace or
    /// delete (`secret` names the one to delete). Returns the new secret, if any.
    pub async fn manage_secret(
        &self,
        scope: &Scope,
        auth_token: &Secret,
        id: &str,
        mode: &str,
        secret: Option<&Secret>,
    ) -> Result<Option<Secret>, RestError> {
        let mut attrs = json!({"mode": mode});
        if let Some(s) = secret {
            attrs["secret"] = json!(s.expose());
        }
        let body = json!({"data": {"type": "service_account", "attributes": attrs}});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{}/{id}/secrets", scope.path()),
                auth_token,
                Some(&body),
            )
            .await?;
        Ok(parse_new_secret(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_api_errors_become_one_sentence() {
        let body = br#"{"jsonapi":{"version":"1.0"},"errors":[{"status":"403","title":"Forbidden","detail":"You do not have permission to create apps in this org"}]}"#;
        assert_eq!(
            error_sentence(403, body),
            "You do not have permission to create apps in this org"
        );
        assert_eq!(error_sentence(500, b"oops"), "HTTP 500");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_rest_error_answer_becomes_one_short_printable_sentence(
            status in any::<u16>(),
            raw in proptest::collection::vec(any::<u8>(), 0..200),
            v in crate::prop::json_value("\\PC{0,400}".prop_map(String::from)),
            use_raw in any::<bool>(),
        ) {
            let body = if use_raw { raw } else { serde_json::to_vec(&v).unwrap() };
            let s = error_sentence(status, &body);
            prop_assert!(s.chars().count() <= 300);
            prop_assert!(!s.chars().any(char::is_control));
        }

        #[test]
        fn prop_any_service_account_item_is_read_without_panic(
            v in crate::prop::json_value("\\PC{0,20}".prop_map(String::from)),
        ) {
            if let Some(sa) = parse_sa(&v) {
                prop_assert_eq!(Some(sa.id.as_str()), v["id"].as_str());
            }
        }
    }
}

/// Every REST answer parser, fed what Snyk (or anything in its place) may
/// send (issue 15): no panic, nothing bigger than what came in, errors that
/// name the field and never quote a value, and round trips where we write
/// the same shape.
#[cfg(test)]
mod answer_prop_tests {
    use super::*;
    use proptest::prelude::*;

    const MARK: &str = "cs-SECRET-4e0a91";

    fn strings() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            Just(MARK.to_string()),
            Just(String::new()),
            Just(" \t".to_string()),
            "\\PC{0,16}".prop_map(String::from),
        ]
    }

    /// A service account item as Snyk sends it, attributes anything.
    fn item() -> impl Strategy<Value = Value> {
        (
            proptest::option::of(strings()),
            crate::prop::json_value(strings()),
            proptest::option::of(strings()),
        )
            .prop_map(|(id, attrs, secret)| {
                let mut item = json!({"type": "service_account", "id": id, "attributes": attrs});
                if let (Some(s), Some(a)) = (secret, item["attributes"].as_object_mut()) {
                    a.insert("client_secret".into(), Value::from(s));
                }
                item
            })
    }

    /// A JSON:API document: `data` (an item or a list), `links`, or anything.
    fn document() -> impl Strategy<Value = Value> {
        prop_oneof![
            item().prop_map(|i| json!({"data": i})),
            (proptest::collection::vec(item(), 0..6), proptest::option::of(strings())).prop_map(
                |(items, next)| json!({"data": items, "links": {"next": next.map(|n| format!("/rest/orgs/o/service_accounts?version=x&starting_after={n}&limit=100"))}})
            ),
            crate::prop::json_value(strings()),
        ]
    }

    fn quiet(e: &RestError) -> Result<(), TestCaseError> {
        let m = e.to_string();
        prop_assert!(!m.contains(MARK), "{}", m);
        prop_assert!(m.chars().count() < 300, "{}", m);
        Ok(())
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_success_body_is_json_or_an_error_without_its_bytes(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            v in crate::prop::json_value(strings()),
            cut in 0usize..64,
            use_raw in any::<bool>(),
        ) {
            let body = if use_raw {
                raw
            } else {
                let mut b = serde_json::to_vec(&v).unwrap();
                b.truncate(b.len().saturating_sub(cut));
                b
            };
            match parse_body(&body) {
                Ok(parsed) => prop_assert!(use_raw || cut == 0 || parsed.is_number() || parsed.is_boolean() || parsed.is_null()),
                Err(e) => quiet(&e)?,
            }
        }

        #[test]
        fn prop_app_creation_answers_give_id_and_secret_or_name_the_missing_field(v in document()) {
            match parse_app_creation(&v) {
                Ok((id, secret)) => {
                    prop_assert_eq!(Some(id.as_str()), v["data"]["attributes"]["client_id"].as_str());
                    prop_assert!(!secret.is_empty());
                }
                Err(e) => {
                    quiet(&e)?;
                    let m = e.to_string();
                    prop_assert!(m.contains("client_id") || m.contains("client_secret"), "{}", m);
                }
            }
        }

        #[test]
        fn prop_list_pages_give_at_most_their_items_and_a_clean_cursor(v in document()) {
            let (items, next) = parse_sa_page(&v);
            prop_assert!(items.len() <= v["data"].as_array().map_or(0, Vec::len));
            for sa in &items {
                prop_assert!(!sa.id.is_empty());
            }
            if let Some(n) = next {
                prop_assert!(!n.contains('&'));
                prop_assert!(n.len() <= v["links"]["next"].as_str().map_or(0, str::len));
            }
        }

        #[test]
        fn prop_creation_and_secret_answers_keep_the_secret_out_of_errors(v in document()) {
            match parse_sa_creation(&v) {
                Ok((sa, secret)) => {
                    prop_assert_eq!(Some(sa.id.as_str()), v["data"]["id"].as_str());
                    if let Some(s) = secret {
                        prop_assert!(!s.is_empty());
                        prop_assert_eq!(Some(s.expose()), v["data"]["attributes"]["client_secret"].as_str().map(str::trim));
                    }
                }
                Err(e) => quiet(&e)?,
            }
            if let Some(s) = parse_new_secret(&v) {
                prop_assert!(!s.is_empty());
                // Debug of the account never shows it.
                let shown = format!("{s:?}");
                prop_assert!(!shown.contains(MARK), "{}", shown);
            }
        }

        #[test]
        fn prop_service_accounts_round_trip(
            id in "[a-z0-9-]{1,36}",
            name in "\\PC{0,40}",
            auth_type in "oauth_client_secret|oauth_private_key_jwt",
            client_id in "[a-z0-9-]{1,36}",
            role_id in proptest::option::of("[a-z0-9-]{1,36}"),
        ) {
            // As Snyk lists it, and as the agent's answer carries it.
            let item = json!({"type": "service_account", "id": id, "attributes": {
                "name": name, "auth_type": auth_type, "client_id": client_id, "role_id": role_id}});
            let sa = parse_sa(&item).unwrap();
            prop_assert_eq!((&sa.id, &sa.name, &sa.auth_type, &sa.client_id, &sa.role_id),
                (&id, &name, &auth_type, &client_id, &role_id));
            let back: ServiceAccount = serde_json::from_value(serde_json::to_value(&sa).unwrap()).unwrap();
            prop_assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&sa).unwrap());
        }
    }

    // Regressions the properties above found.

    #[test]
    fn an_empty_secret_in_an_answer_is_no_secret() {
        // Was stored as the credential's client secret, which no grant takes.
        // A blank one too: secrets are trimmed.
        for blank in ["", " \n"] {
            let v = json!({"data": {"id": "sa1", "attributes": {"client_id": "c", "client_secret": blank}}});
            assert!(parse_new_secret(&v).is_none());
            assert!(parse_app_creation(&v).is_err());
            assert!(parse_sa_creation(&v).unwrap().1.is_none());
        }
    }

    #[test]
    fn a_listed_account_without_an_id_is_skipped() {
        // Was kept with id "": an account no command can name.
        let v = json!({"data": [{"id": "", "attributes": {"client_id": "c"}}, {"id": "sa2", "attributes": {}}]});
        let (items, next) = parse_sa_page(&v);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, "sa2");
        assert_eq!(next, None);
    }

    #[test]
    fn a_body_that_is_not_json_is_refused_without_quoting_it() {
        // Said where it broke, as every JSON error of ours does.
        let e = parse_body(format!("{{\"a\": {MARK}}}").as_bytes()).unwrap_err();
        assert!(!e.to_string().contains(MARK), "{e}");
        assert!(e.to_string().contains("line 1 column"), "{e}");
    }
}

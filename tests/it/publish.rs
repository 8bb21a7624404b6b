//! Issue 26 part 2: tokens published for jobs that cannot reach the socket,
//! on the real OpenBao. Jobs log in with OpenBao's JWT auth method
//! (`jwt_validation_pubkeys`: a test key, no network) using GitHub-shaped
//! OIDC tokens the test signs, each repository bound to a role whose policy
//! reads one credential's published path.

use crate::support::agent::{
    Agent, SNYKEY, assert_no_secrets, command, rsa_key, stderr, stdout, wait_for,
};
use crate::support::bao::Bao;
use crate::support::{Env, FakeSnyk};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) const ISSUER: &str = "https://token.actions.githubusercontent.com";
pub(crate) const AUDIENCE: &str = "https://openbao.test";
const ORG: &str = "acme";
const WEB: &str = "web-app";
const API: &str = "api-app";

/// The test's OIDC issuer: an RSA key OpenBao trusts through
/// `jwt_validation_pubkeys`.
pub(crate) struct Issuer {
    key: jsonwebtoken::EncodingKey,
    pub public_pem: String,
    pub public_file: PathBuf,
}

impl Issuer {
    pub fn new(dir: &Path) -> Issuer {
        let (private, public_pem) = rsa_key(dir, 2048);
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(private).unwrap()).unwrap();
        let public_file = dir.join("issuer.pub.pem");
        std::fs::write(&public_file, &public_pem).unwrap();
        Issuer {
            key,
            public_pem,
            public_file,
        }
    }

    /// A GitLab CI ID token of `project` (`id_tokens` with our audience),
    /// issued by `iss`.
    pub fn gitlab(&self, iss: &str, project: &str) -> String {
        self.sign(json!({
            "iss": iss,
            "sub": format!("project_path:{project}:ref_type:branch:ref:main"),
            "project_path": project,
            "namespace_path": project.split('/').next().unwrap(),
            "ref": "main",
            "ref_type": "branch",
            "pipeline_source": "push",
        }))
    }

    /// A GitHub Actions OIDC token of `repository` (the claims GitHub sends).
    pub fn github(&self, repository: &str) -> String {
        self.sign(json!({
            "iss": ISSUER,
            "sub": format!("repo:{repository}:ref:refs/heads/main"),
            "repository": repository,
            "repository_owner": repository.split('/').next().unwrap(),
            "ref": "refs/heads/main",
            "ref_type": "branch",
            "workflow": "snyk",
            "event_name": "push",
            "job_workflow_ref": format!("{repository}/.github/workflows/snyk.yml@refs/heads/main"),
            "run_id": "1234567890",
        }))
    }

    /// `claims` for our audience, valid for five minutes, signed RS256.
    fn sign(&self, mut claims: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let fields = claims.as_object_mut().unwrap();
        fields.insert("aud".into(), json!(AUDIENCE));
        fields.insert(
            "jti".into(),
            json!(format!("{:032x}", rand::random::<u128>())),
        );
        fields.insert("iat".into(), json!(now));
        fields.insert("nbf".into(), json!(now - 5));
        fields.insert("exp".into(), json!(now + 300));
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("test-key".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// JWT auth at `auth/jwt` trusting `issuer`; per repository a policy that
/// reads one credential's published path and a role bound to it.
pub(crate) fn jwt_auth(bao: &Bao, issuer: &Issuer, roles: &[(&str, &str, &str)]) {
    bao.ok("POST", "sys/auth/jwt", json!({"type": "jwt"}));
    bao.ok(
        "POST",
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": ISSUER}),
    );
    for (role, repository, client) in roles {
        bao.ok(
            "PUT",
            &format!("sys/policies/acl/read-{client}"),
            json!({"policy": format!("path \"kv/data/snyk-tokens/{ORG}/{client}\" {{ capabilities = [\"read\"] }}\n")}),
        );
        bao.ok(
            "POST",
            &format!("auth/jwt/role/{role}"),
            json!({"role_type": "jwt", "user_claim": "repository",
                   "bound_audiences": [AUDIENCE],
                   "bound_claims": {"repository": repository},
                   "token_policies": [format!("read-{client}")],
                   "token_ttl": "2m", "token_max_ttl": "2m"}),
        );
    }
}

/// A job's login: its OpenBao token, or the refusal's status.
fn login(bao: &Bao, role: &str, jwt: &str) -> Result<String, u16> {
    login_at(bao, "jwt", role, jwt)
}

/// A job's login at the JWT auth mount `mount`.
pub(crate) fn login_at(bao: &Bao, mount: &str, role: &str, jwt: &str) -> Result<String, u16> {
    let (st, v) = bao
        .call_as(
            "",
            "POST",
            &format!("auth/{mount}/login"),
            Some(&json!({"role": role, "jwt": jwt})),
        )
        .unwrap();
    match v["auth"]["client_token"].as_str() {
        Some(t) if st == 200 => Ok(t.to_string()),
        _ => Err(st),
    }
}

/// A job's read of a published path: (status, the record's data).
fn read(bao: &Bao, token: &str, client: &str) -> (u16, Value) {
    let (st, v) = bao
        .call_as(
            token,
            "GET",
            &format!("kv/data/snyk-tokens/{ORG}/{client}"),
            None,
        )
        .unwrap();
    (st, v["data"]["data"].clone())
}

/// `GET /rest/self` at the fake Snyk with the token as a bearer: its status.
fn snyk_accepts(fake: &FakeSnyk, token: &str) -> u16 {
    let url = fake.url();
    let hostport = url.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /rest/self HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// An agent on `bao` that publishes under `snyk-tokens`, with `extra` config.
fn publishing_agent(fake: &FakeSnyk, bao: &Bao, extra: &str) -> (Env, Agent) {
    let mut env = Env::on_bao(&fake.url(), bao);
    env.extra_config =
        format!("{extra}\n[publish]\nprefix = \"snyk-tokens\"\nmin_validity = \"6s\"\n");
    let agent = env.start();
    (env, agent)
}

fn put(env: &Env, agent: &Agent, fake: &FakeSnyk, client: &str) {
    let rt = fake.new_oauth_client(client, Some(&format!("cs-{client}")));
    let out = agent.put_oauth(env.path(), ORG, client, Some(&format!("cs-{client}")), &rt);
    assert!(out.status.success(), "put {client}: {}", stderr(&out));
}

/// The published record's data, once it holds a token.
fn published(bao: &Bao, client: &str) -> Value {
    published_within(bao, client, 20)
}

fn published_within(bao: &Bao, client: &str, secs: u64) -> Value {
    wait_for(
        &format!("{client}'s token to be published"),
        secs,
        || match bao.kv2_data("kv", &format!("snyk-tokens/{ORG}/{client}")) {
            Some(d) if d["access_token"].is_string() => Ok(d),
            other => Err(format!("{other:?}")),
        },
    )
}

/// Every refresh token and client secret the fake issued (its access
/// tokens excluded: those are what is published).
fn non_access_secrets(fake: &FakeSnyk) -> Vec<String> {
    fake.secrets()
        .into_iter()
        .filter(|s| fake.access_token_expiry(s).is_none())
        .collect()
}

/// Every version of every published record still kept: what it holds is a
/// published token or a marker, never a refresh token or a secret.
fn assert_no_version_holds_a_secret(bao: &Bao, fake: &FakeSnyk, clients: &[&str]) -> usize {
    let forbidden = non_access_secrets(fake);
    assert!(
        !forbidden.is_empty(),
        "the fake issued no refresh token or secret"
    );
    let allowed: HashSet<&str> = [
        "access_token",
        "expires_at",
        "api_url",
        "org_id",
        "generation",
        "withdrawn",
    ]
    .into();
    let mut seen = 0;
    for client in clients {
        let path = format!("snyk-tokens/{ORG}/{client}");
        for version in bao.kv2_history("kv", &path).into_iter().flatten() {
            seen += 1;
            let text = version.to_string();
            for s in &forbidden {
                assert!(
                    !text.contains(s.as_str()),
                    "a version of {path} holds a refresh token or secret"
                );
            }
            for k in version.as_object().unwrap().keys() {
                assert!(allowed.contains(k.as_str()), "{path} has a field {k}");
            }
        }
    }
    seen
}

/// The run exited `code` with `says` in its one line on stderr, and printed
/// nothing on stdout.
fn exits(out: &std::process::Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(says), "{}", stderr(out));
    assert!(stdout(out).is_empty(), "{}", stdout(out));
}

fn snykey_in(dir: &Path) -> std::process::Command {
    command(SNYKEY, dir)
}

#[test]
fn each_repository_reads_only_its_credentials_published_token_with_its_own_identity() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(dir.path());
    jwt_auth(
        &bao,
        &issuer,
        &[("web", "acme/web", WEB), ("api", "acme/api", API)],
    );
    let (env, agent) = publishing_agent(&fake, &bao, "");
    put(&env, &agent, &fake, WEB);
    put(&env, &agent, &fake, API);
    let web_published = published(&bao, WEB);
    published(&bao, API);
    // Only what a job needs: the token, its expiry, the region, the org.
    let mut fields: Vec<&String> = web_published.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "access_token",
            "api_url",
            "expires_at",
            "generation",
            "org_id"
        ]
    );
    assert_eq!(web_published["org_id"], ORG);
    assert_eq!(web_published["api_url"], fake.url().trim_end_matches('/'));

    // The web repository's job: logs in with its own OIDC token, reads its
    // credential's token, and the token works at Snyk.
    let web = login(&bao, "web", &issuer.github("acme/web")).expect("web's login");
    let (st, data) = read(&bao, &web, WEB);
    assert_eq!(st, 200, "{data}");
    let token = data["access_token"].as_str().unwrap();
    assert_eq!(snyk_accepts(&fake, token), 200);
    let expires = humantime::parse_rfc3339(data["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires.duration_since(SystemTime::now()).unwrap() >= Duration::from_secs(6));
    // Not the other credential's, not the store's records.
    assert_eq!(read(&bao, &web, API).0, 403);
    let (st, _) = bao
        .call_as(&web, "GET", &format!("kv/data/snyk/{ORG}/{WEB}"), None)
        .unwrap();
    assert_eq!(st, 403, "a job reads a store record");
    // The api repository's job: the mirror image.
    let api = login(&bao, "api", &issuer.github("acme/api")).expect("api's login");
    assert_eq!(read(&bao, &api, API).0, 200);
    assert_eq!(read(&bao, &api, WEB).0, 403);
    // A job cannot take another repository's role, nor forge a token.
    assert!(login(&bao, "web", &issuer.github("acme/api")).is_err());
    let stranger = Issuer::new(&dir.path().join("x").tap_mkdir());
    assert!(login(&bao, "web", &stranger.github("acme/web")).is_err());

    // `snykey status` shows where each token is published.
    let status = agent.status_of(ORG, WEB);
    assert_eq!(
        status["published"]["path"],
        format!("kv/snyk-tokens/{ORG}/{WEB}")
    );
    assert_eq!(status["published"]["failures"], 0);
    let table = stdout(&agent.cli(&["status"], None));
    assert!(
        table.contains("PUBLISHED") && table.contains("until "),
        "{table}"
    );
    // `snykey token ... -- COMMAND` from the agent too, like the helper's exec.
    let out = agent.cli(
        &[
            "token",
            ORG,
            API,
            "--",
            "sh",
            "-c",
            "test -n \"$SNYK_OAUTH_TOKEN\" && test \"$SNYK_CFG_ORG\" = acme && exit 4",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // Deleted with the credential: a marker, and no older version kept.
    let out = agent.cli(&["delete", ORG, WEB], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "its published token at kv/snyk-tokens/{ORG}/{WEB} is removed"
        )),
        "{}",
        stdout(&out)
    );
    let history = bao.kv2_history("kv", &format!("snyk-tokens/{ORG}/{WEB}"));
    let kept: Vec<&Value> = history.iter().flatten().collect();
    assert_eq!(kept.len(), 1, "{history:?}");
    assert_eq!(kept[0]["withdrawn"], "deleted");
    assert!(kept[0].get("access_token").is_none());
    let (st, data) = read(&bao, &web, WEB);
    assert_eq!((st, data["withdrawn"].as_str()), (200, Some("deleted")));
    // The other credential is untouched.
    assert!(published(&bao, API)["access_token"].is_string());
    assert!(assert_no_version_holds_a_secret(&bao, &fake, &[WEB, API]) >= 2);
    let log = agent.stop_and_log();
    assert_no_secrets("the agent's log", &log, &fake.secrets());
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// One read of the job's loop: when, and what the path held.
struct Seen {
    at: SystemTime,
    token: Option<String>,
    expires_at: Option<SystemTime>,
    generation: u64,
}

#[test]
fn jobs_reading_every_100ms_across_three_lifetimes_never_see_less_than_the_validity() {
    // Measures validity against the clock: in the serial group.
    let _serial = crate::support::wait::timing();
    let fake = FakeSnyk::start();
    fake.set_expires_in(20);
    let bao = Bao::dev();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(dir.path());
    jwt_auth(&bao, &issuer, &[("web", "acme/web", WEB)]);
    // Callers ask for as good as nothing: only publish.min_validity (6 s)
    // makes the refresh come early enough.
    let (env, agent) = publishing_agent(&fake, &bao, "[refresh]\nmin_validity = \"1s\"\n");
    put(&env, &agent, &fake, WEB);
    published(&bao, WEB);
    let mut seen: Vec<Seen> = Vec::new();
    let mut job = login(&bao, "web", &issuer.github("acme/web")).unwrap();
    let mut logged_in = Instant::now();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if logged_in.elapsed() > Duration::from_secs(60) {
            job = login(&bao, "web", &issuer.github("acme/web")).unwrap();
            logged_in = Instant::now();
        }
        let (st, data) = read(&bao, &job, WEB);
        let at = SystemTime::now();
        assert_eq!(st, 200, "{data}");
        seen.push(Seen {
            at,
            token: data["access_token"].as_str().map(str::to_string),
            expires_at: data["expires_at"]
                .as_str()
                .map(|e| humantime::parse_rfc3339(e).unwrap()),
            generation: data["generation"].as_u64().unwrap(),
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    let with_token: Vec<&Seen> = seen.iter().filter(|s| s.token.is_some()).collect();
    eprintln!(
        "{} reads in 60 s, {} with a token",
        seen.len(),
        with_token.len()
    );
    // Never less than publish.min_validity left.
    let least = with_token
        .iter()
        .map(|s| {
            s.expires_at
                .unwrap()
                .duration_since(s.at)
                .unwrap_or_default()
        })
        .min()
        .unwrap();
    eprintln!("the least validity a job read: {least:?}");
    assert!(
        least >= Duration::from_secs(6),
        "a job read a token with {least:?} left"
    );
    // A token nearly always (a withdrawal means the refresh came late).
    assert!(
        with_token.len() * 100 >= seen.len() * 98,
        "{} of {} reads found a token",
        with_token.len(),
        seen.len()
    );
    // Three lifetimes: at least three tokens, each one Snyk accepted, in
    // order (expiry and generation never go back).
    let distinct: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for s in &with_token {
            let t = s.token.as_deref().unwrap();
            if v.last() != Some(&t) {
                v.push(t);
            }
        }
        v
    };
    assert!(distinct.len() >= 3, "{} tokens in 60 s", distinct.len());
    let unique: HashSet<&str> = distinct.iter().copied().collect();
    assert_eq!(unique.len(), distinct.len(), "a token came back");
    for t in &unique {
        assert!(
            fake.access_token_expiry(t).is_some(),
            "a published token the fake never issued"
        );
    }
    for w in with_token.windows(2) {
        assert!(w[1].expires_at >= w[0].expires_at);
        assert!(w[1].generation >= w[0].generation);
    }
    assert_eq!(snyk_accepts(&fake, distinct.last().unwrap()), 200);
    assert!(assert_no_version_holds_a_secret(&bao, &fake, &[WEB]) >= 3);
    drop(agent);
}

#[test]
fn two_agents_publishing_the_same_credentials_never_move_the_record_back() {
    let fake = FakeSnyk::start();
    fake.set_expires_in(30);
    let bao = Bao::dev();
    let extra = "[refresh]\nforce_interval = \"1s\"\n";
    let (env_a, a) = publishing_agent(&fake, &bao, extra);
    let (env_b, b) = publishing_agent(&fake, &bao, extra);
    put(&env_a, &a, &fake, WEB);
    fake.new_service_account("sa-1", "sa-secret-1");
    let out = a.cli(
        &[
            "put",
            "--org-id",
            ORG,
            "--client-id",
            "sa-1",
            "--kind",
            "client_secret",
            "--client-secret-file",
            "-",
        ],
        Some("sa-secret-1"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    published(&bao, WEB);
    published(&bao, "sa-1");
    // A watcher reads both records as fast as it can; both agents mint
    // (forced refreshes, alternately) and publish.
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(Mutex::new(Vec::<(String, u64, SystemTime)>::new()));
    let watcher = {
        let (stop, records) = (Arc::clone(&stop), Arc::clone(&records));
        let port = bao.port;
        let token = bao.root_token.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for client in [WEB, "sa-1"] {
                    let path = format!("kv/data/snyk-tokens/{ORG}/{client}");
                    if let Ok((200, v)) =
                        crate::support::bao::http(port, &token, "GET", &path, None)
                    {
                        let d = &v["data"]["data"];
                        if let (Some(g), Some(e)) =
                            (d["generation"].as_u64(), d["expires_at"].as_str())
                        {
                            records.lock().unwrap().push((
                                client.to_string(),
                                g,
                                humantime::parse_rfc3339(e).unwrap(),
                            ));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(12) {
        n += 1;
        let agent = if n % 2 == 0 { &a } else { &b };
        let client = if n % 3 == 0 { WEB } else { "sa-1" };
        let out = agent.cli(&["refresh", ORG, client], None);
        assert!(out.status.success(), "refresh: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let records = records.lock().unwrap();
    for client in [WEB, "sa-1"] {
        let seq: Vec<(u64, SystemTime)> = records
            .iter()
            .filter(|(c, _, _)| c == client)
            .map(|(_, g, e)| (*g, *e))
            .collect();
        assert!(seq.len() > 50, "{client}: {} reads", seq.len());
        for w in seq.windows(2) {
            assert!(w[1] >= w[0], "{client}: the record went back: {w:?}");
            assert!(w[1].1 >= w[0].1, "{client}: the expiry went back: {w:?}");
        }
        let distinct: HashSet<&(u64, SystemTime)> = seq.iter().collect();
        assert!(distinct.len() >= 4, "{client}: {} records", distinct.len());
    }
    // Both agents published, and both found the path ahead of an offer of
    // theirs at times (the rule kept the newer record).
    for (agent, name) in [(&a, "a"), (&b, "b")] {
        let (_, metrics) = agent.http("GET", "/metrics", None);
        let count = |result: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("snykey_publishes_total{{result=\"{result}\"}} "))
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        assert!(
            count("written") > 0,
            "agent {name} never published:\n{metrics}"
        );
        assert_eq!(count("failed"), 0, "agent {name}");
    }
    assert!(assert_no_version_holds_a_secret(&bao, &fake, &[WEB, "sa-1"]) > 0);
    drop((env_b, b));
}

/// A stand-in for GitHub's OIDC token endpoint: answers
/// `GET /token?api-version=2.0&audience=AUD` with `{"value": JWT}` when asked
/// with the request token, 401 otherwise; records each query.
struct ActionsTokenServer {
    pub url: String,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl ActionsTokenServer {
    fn start(request_token: &str, jwt: String) -> ActionsTokenServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/token?api-version=2.0",
            listener.local_addr().unwrap().port()
        );
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (q, expected) = (Arc::clone(&queries), format!("bearer {request_token}"));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 8192];
                let n = conn.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let target = req.split_whitespace().nth(1).unwrap_or("").to_string();
                q.lock().unwrap().push(target);
                let authorized = req.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("authorization:")
                        && l[14..].trim() == expected
                });
                let (status, body) = if authorized {
                    ("200 OK", json!({"count": 1, "value": jwt}).to_string())
                } else {
                    (
                        "401 Unauthorized",
                        "{\"message\":\"bad token\"}".to_string(),
                    )
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ActionsTokenServer { url, queries }
    }
}

#[test]
fn snykey_token_from_openbao_logs_in_as_the_job_reads_and_revokes() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(dir.path());
    jwt_auth(
        &bao,
        &issuer,
        &[
            ("web", "acme/web", WEB),
            ("api", "acme/api", API),
            ("ghost", "acme/ghost", "ghost-app"),
        ],
    );
    let (env, agent) = publishing_agent(&fake, &bao, "");
    put(&env, &agent, &fake, WEB);
    put(&env, &agent, &fake, API);
    let published_token = published(&bao, WEB)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwt_file = dir.path().join("job.jwt");
    std::fs::write(&jwt_file, issuer.github("acme/web")).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = snykey_in(dir.path());
        cmd.args(["token", "--from-openbao", "--addr", &bao.plain_url()])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // The web repository's job, its JWT in a file.
    let web_jwt = jwt_file.to_str().unwrap().to_string();
    let as_web = |args: &[&str]| {
        let mut all = vec!["--role", "web", "--jwt-file", web_jwt.as_str()];
        all.extend_from_slice(args);
        run(&all, &[])
    };
    let revokes = || bao.audited("auth/token/revoke-self", true);
    let before = revokes();

    // 1. The JWT from a file: the token alone on stdout, nothing on stderr.
    let out = as_web(&[ORG, WEB]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{published_token}\n"));
    assert_eq!(stderr(&out), "");
    assert_eq!(snyk_accepts(&fake, &published_token), 200);
    // Its OpenBao token was revoked after the read.
    wait_for("the job's OpenBao token to be revoked", 5, || {
        revokes() > before
    });
    // The same formats as the helper.
    let out = as_web(&["--format", "json", ORG, WEB]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["access_token"], published_token.as_str());
    assert_eq!(v["token_type"], "bearer");
    let out = as_web(&["--format", "env", ORG, WEB]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("export SNYK_OAUTH_TOKEN={published_token}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "export SNYK_API={}",
            fake.url().trim_end_matches('/')
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("export SNYK_CFG_ORG={ORG}\n")),
        "{text}"
    );
    // exec: the command gets the variables and its status is ours.
    let seen = dir.path().join("seen");
    let script = format!(
        "printf '%s %s %s' \"$SNYK_OAUTH_TOKEN\" \"$SNYK_API\" \"$SNYK_CFG_ORG\" > {}; exit 3",
        seen.display()
    );
    let out = as_web(&[ORG, WEB, "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!(
            "{published_token} {} {ORG}",
            fake.url().trim_end_matches('/')
        )
    );
    // The ids and the address from the environment, as for the helper.
    let out = run(
        &["--role", "web", "--jwt-file", jwt_file.to_str().unwrap()],
        &[("SNYKEY_ORG_ID", ORG), ("SNYKEY_CLIENT_ID", WEB)],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // 2. Refusals, each with its exit code and a line that says why.
    let out = as_web(&["--min-validity", "2h", ORG, WEB]);
    exits(&out, 75, "less than the 7200s asked for");
    assert!(stdout(&out).is_empty());
    // The other repository's credential: 403 on its path.
    let out = as_web(&[ORG, API]);
    exits(&out, 77, "does not allow this job");
    // Another repository's identity for this role.
    let other = dir.path().join("other.jwt");
    std::fs::write(&other, issuer.github("acme/other")).unwrap();
    let out = run(
        &[
            "--role",
            "web",
            "--jwt-file",
            other.to_str().unwrap(),
            ORG,
            WEB,
        ],
        &[],
    );
    exits(&out, 77, "refused the JWT login");
    // Another prefix: outside its policy (77). Nothing published where its
    // policy reaches (66), no JWT given (64), no OpenBao (69).
    let out = as_web(&["--prefix", "elsewhere", ORG, WEB]);
    assert_eq!(
        out.status.code(),
        Some(77),
        "its policy does not reach another prefix: {}",
        stderr(&out)
    );
    let ghost = dir.path().join("ghost.jwt");
    std::fs::write(&ghost, issuer.github("acme/ghost")).unwrap();
    let out = run(
        &[
            "--role",
            "ghost",
            "--jwt-file",
            ghost.to_str().unwrap(),
            ORG,
            "ghost-app",
        ],
        &[],
    );
    exits(&out, 66, "nothing is published");
    let out = run(&["--role", "web", ORG, WEB], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let out = snykey_in(dir.path())
        .args([
            "token",
            "--from-openbao",
            "--addr",
            &format!("http://127.0.0.1:{}", crate::support::bao::free_port_pair()),
        ])
        .args([
            "--role",
            "web",
            "--jwt-file",
            jwt_file.to_str().unwrap(),
            ORG,
            WEB,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    // Flags that belong to --from-openbao are refused without it.
    let out = snykey_in(dir.path())
        .args(["token", "--jwt-file", "x", ORG, WEB])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));

    // 3. GitHub Actions: the JWT from $ACTIONS_ID_TOKEN_REQUEST_URL.
    let request_token = format!("ghs-request-{:x}", rand::random::<u64>());
    let actions = ActionsTokenServer::start(&request_token, issuer.github("acme/web"));
    let gh_env = [
        ("ACTIONS_ID_TOKEN_REQUEST_URL", actions.url.as_str()),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", request_token.as_str()),
    ];
    let out = run(
        &[
            "--role",
            "web",
            "--github-oidc",
            "--audience",
            AUDIENCE,
            ORG,
            WEB,
        ],
        &gh_env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{published_token}\n"));
    assert_eq!(
        actions.queries.lock().unwrap().last().unwrap(),
        "/token?api-version=2.0&audience=https%3A%2F%2Fopenbao.test"
    );
    // A wrong request token: GitHub refuses (77), the hint names the permission.
    let out = run(
        &[
            "--role",
            "web",
            "--github-oidc",
            "--audience",
            AUDIENCE,
            ORG,
            WEB,
        ],
        &[gh_env[0], ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")],
    );
    exits(&out, 77, "id-token: write");
    // Outside GitHub Actions (no variables): a usage error naming them.
    let out = run(&["--role", "web", "--github-oidc", ORG, WEB], &[]);
    exits(&out, 64, "ACTIONS_ID_TOKEN_REQUEST_URL");
    // GitLab's id_tokens: the JWT in a variable.
    let out = run(
        &["--role", "web", "--jwt-env", "SNYKEY_JWT", ORG, WEB],
        &[("SNYKEY_JWT", &issuer.github("acme/web"))],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // 4. A deleted credential: 66, saying so.
    let out = agent.cli(&["delete", ORG, WEB], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_web(&[ORG, WEB]);
    exits(&out, 66, "deleted");

    // No line of any run showed a JWT, the request token or an OpenBao token.
    let audit = std::fs::read_to_string(bao.audit_path()).unwrap();
    assert!(!audit.contains(&request_token));
    drop(actions);
}

#[test]
fn failing_to_publish_is_shown_counted_and_retried_and_never_blocks_the_socket() {
    let fake = FakeSnyk::start();
    let bao = Bao::dev();
    // The agent's policy covers its records but not the published paths.
    bao.ok(
        "PUT",
        "sys/policies/acl/store-only",
        json!({"policy": "path \"kv/data/snyk/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\npath \"kv/metadata/snyk/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\npath \"kv/destroy/snyk/*\" { capabilities = [\"update\"] }\n"}),
    );
    let token = bao.ok(
        "POST",
        "auth/token/create",
        json!({"policies": ["store-only"], "ttl": "1h", "no_parent": true}),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut env = Env::new(&fake.url());
    let token_file = env.path().join("bao-token");
    std::fs::write(&token_file, &token).unwrap();
    env.store_config = format!(
        "backend = \"openbao\"\naddr = {:?}\ntoken_file = {token_file:?}\n",
        bao.url()
    );
    env.extra_config = "[publish]\nprefix = \"snyk-tokens\"\nmin_validity = \"6s\"\n".into();
    let agent = env.start();
    put(&env, &agent, &fake, WEB);
    // Tokens are served on the socket all the same, at once.
    let started = Instant::now();
    let t = agent.token(ORG, WEB);
    assert!(fake.access_token_valid(&t));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Status: the failure, with OpenBao's refusal.
    let st = wait_for("the publish failure in the status", 20, || {
        let s = agent.status_of(ORG, WEB);
        if s["published"]["failures"].as_u64().unwrap_or(0) > 0 {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    });
    assert!(
        st["published"]["last_error"]
            .as_str()
            .unwrap()
            .contains("403"),
        "{st}"
    );
    // Ready: still ready, with a warning.
    let (code, body) = agent.http("GET", "/v1/ready", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("publishing tokens for jobs fails for 1 credential"),
        "{body}"
    );
    // Metrics: counted.
    let (_, metrics) = agent.http("GET", "/metrics", None);
    assert!(
        metrics.contains("snykey_publish_failing_credentials 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("snykey_publishes_total{result=\"failed\"}"),
        "{metrics}"
    );
    // Doctor: a failed check naming the policy path to grant.
    let out = command(SNYKEY, env.path())
        .args(["doctor", "--json", "--config"])
        .arg(&env.config)
        .arg("--socket")
        .arg(&env.socket)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "publish")
        .unwrap_or_else(|| panic!("no publish check: {report}"));
    assert_eq!(check["ok"], false);
    assert!(
        check["remedy"]
            .as_str()
            .unwrap()
            .contains(&format!("kv/data/snyk-tokens/{ORG}/{WEB}")),
        "{check}"
    );
    // Granted: the agent's retries (backing off, at most 5 minutes apart)
    // publish it, and all turns green.
    bao.ok(
        "PUT",
        "sys/policies/acl/store-only",
        json!({"policy": "path \"kv/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n"}),
    );
    let data = published_within(&bao, WEB, 60);
    assert!(fake.access_token_valid(data["access_token"].as_str().unwrap()));
    wait_for("the status to clear", 10, || {
        agent.status_of(ORG, WEB)["published"]["failures"] == 0
    });
    let (_, body) = agent.http("GET", "/v1/ready", None);
    assert!(!body.contains("publishing"), "{body}");
    let log = agent.stop_and_log();
    // A refusal on a published path is the policy's answer, not an expired
    // token: the agent does not log in again for it.
    assert!(
        !log.contains("re-authenticating"),
        "the agent logged in again for a refused publish"
    );
    assert!(
        log.contains("cannot write the published token for jobs"),
        "the failure is logged"
    );
    assert_no_secrets("the agent's log", &log, &fake.secrets());
}

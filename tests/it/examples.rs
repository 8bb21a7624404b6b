//! The deployment examples as a cluster and Compose would take them
//! (issue 23, items 6 and 7): the Kubernetes manifests checked offline
//! against the pinned schemas of every Kubernetes version they claim, the
//! sidecar's shape, and the Compose file's OpenBao init step run for real
//! against a real OpenBao.

use crate::fleet::yaml;
use crate::support::agent::{stderr, stdout};
use crate::support::bao::Bao;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// `kubernetes-validate` (PyPI, pinned in scripts/test): it ships the JSON
/// schemas of Kubernetes 1.25–1.37 and checks a file against one offline.
fn kubernetes_validate(version: &str, file: &Path) -> std::process::Output {
    Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", version])
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubernetes-validate is required by this test ({e}): pip install kubernetes-validate==1.37.0 (scripts/test does)"
            )
        })
}

/// The Job validates (strictly: an unknown field fails) against the
/// schemas of the versions the example names, and not against 1.27, which
/// has no native sidecars: the check reads the field the example needs.
#[test]
fn the_kubernetes_job_passes_the_schemas_of_the_versions_it_names() {
    let file = examples().join("kubernetes/job.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("Needs Kubernetes 1.29 or later"),
        "the example says which versions it needs"
    );
    for version in ["1.29.0", "1.33.0", "1.37.0"] {
        let out = kubernetes_validate(version, &file);
        assert!(
            out.status.success(),
            "{} against Kubernetes {version}:\n{}{}",
            file.display(),
            stdout(&out),
            stderr(&out)
        );
        let passed = stdout(&out).matches(" passed for resource ").count()
            + stderr(&out).matches(" passed for resource ").count();
        assert_eq!(passed, 3, "three resources checked: {}", stdout(&out));
    }
    let old = kubernetes_validate("1.27.0", &file);
    let said = format!("{}{}", stdout(&old), stderr(&old));
    assert!(
        !old.status.success() && said.contains("'restartPolicy' was unexpected"),
        "Kubernetes 1.27 has no native sidecars, and the check must see it:\n{said}"
    );
}

/// What the schemas cannot say: a Job that runs once, the agent as a native
/// sidecar probed on `/v1/ready`, the OpenBao token in the agent alone.
#[test]
fn the_kubernetes_job_runs_once_with_the_agent_as_a_ready_sidecar_holding_the_only_token() {
    let docs = yaml(&examples().join("kubernetes/job.yaml"));
    let docs = docs.as_array().unwrap();
    let kind = |k: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k} in the example"))
    };
    assert_eq!(
        kind("ServiceAccount")["automountServiceAccountToken"],
        false
    );
    let job = kind("Job");
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(
        job["spec"]["backoffLimit"], 0,
        "a failed scan is not re-run"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let agent = &pod["initContainers"][0];
    assert_eq!(agent["name"], "snykey");
    assert_eq!(agent["restartPolicy"], "Always", "a native sidecar");
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(
            agent[probe]["exec"]["command"],
            serde_json::json!(["snykey", "ready"]),
            "{probe} asks /v1/ready"
        );
    }
    // The projected service-account token: a volume mounted by the agent
    // only, at the path its config reads.
    let token_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["projected"]["sources"][0]["serviceAccountToken"].is_object())
        .expect("a projected service-account token volume")["name"]
        .clone();
    let mounts_of = |c: &Value| -> Vec<Value> {
        c["volumeMounts"]
            .as_array()
            .map(|m| m.iter().map(|m| m["name"].clone()).collect())
            .unwrap_or_default()
    };
    assert!(mounts_of(agent).contains(&token_volume));
    let apps = pod["containers"].as_array().unwrap();
    assert!(!apps.is_empty());
    for app in apps {
        assert!(
            !mounts_of(app).contains(&token_volume),
            "{} must not see the OpenBao token",
            app["name"]
        );
    }
    let config = kind("ConfigMap")["data"]["config.toml"].as_str().unwrap();
    let mount = agent["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == token_volume)
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        config.contains(&format!("kubernetes_jwt_file = \"{mount}/token\"")),
        "the agent reads the token where it is mounted"
    );
    // The probe's command exists and asks the agent (an unreachable agent is 69).
    let out = crate::support::agent::clean(crate::support::agent::SNYKEY)
        .args(["--socket", "/nonexistent/snykey.sock", "ready"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
}

/// The Compose init step as Compose would run it (`/bin/sh -euc SCRIPT`),
/// `$$` unescaped, with the environment the file gives it.
fn run_init(script: &str, addr: &str, token: &str) -> std::process::Output {
    Command::new("/bin/sh")
        .args(["-euc", script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", token)
        .output()
        .unwrap()
}

/// Compose: the agent waits for the init step to succeed (not merely to
/// start) and for Redis; the init step mounts KV v2 or says why it cannot,
/// with a non-zero exit — run here against a real OpenBao.
#[test]
fn the_compose_init_step_fails_loudly_and_the_agent_waits_for_its_success() {
    let compose = yaml(&examples().join("docker-compose.yml"));
    let services = &compose[0]["services"];
    assert_eq!(
        services["snykey"]["depends_on"]["openbao-init"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        services["snykey"]["depends_on"]["redis"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["openbao-init"]["depends_on"]["openbao"]["condition"],
        "service_healthy"
    );
    assert!(services["openbao"]["healthcheck"]["test"].is_array());
    let entry = services["openbao-init"]["entrypoint"].as_array().unwrap();
    assert_eq!(entry[..2], [Value::from("/bin/sh"), Value::from("-euc")]);
    let script = entry[2].as_str().unwrap().replace("$$", "$");
    assert!(!script.contains("|| true"), "nothing is hidden:\n{script}");

    let bao = Bao::dev();
    let addr = bao.plain_url();
    // The test server already has kv/ as KV v2: nothing to do, exit 0.
    let out = run_init(&script, &addr, &bao.root_token);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("already a KV v2 mount"),
        "{}",
        stdout(&out)
    );
    // No kv/ yet: mounted as KV v2.
    let (st, v) = bao.call("DELETE", "sys/mounts/kv", None);
    assert!(st < 300, "{st} {v}");
    let out = run_init(&script, &addr, &bao.root_token);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let (st, v) = bao.call("GET", "sys/mounts/kv", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["options"]["version"], "2", "{v}");
    // A token OpenBao refuses: non-zero, and the reason on stderr.
    let out = run_init(&script, &addr, "not-a-token");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    // kv/ of the wrong kind: non-zero, saying so.
    bao.call("DELETE", "sys/mounts/kv", None);
    let (st, v) = bao.call(
        "POST",
        "sys/mounts/kv",
        Some(&serde_json::json!({"type": "kv", "options": {"version": "1"}})),
    );
    assert!(st < 300, "{st} {v}");
    let out = run_init(&script, &addr, &bao.root_token);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not as KV v2"), "{}", stderr(&out));
    // OpenBao not there at all: non-zero.
    let port = crate::support::bao::free_port_pair();
    let out = run_init(&script, &format!("http://127.0.0.1:{port}"), "x");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(!stderr(&out).is_empty());
}

/// Item 7: the image builds on any architecture (nothing names one), with
/// the packaged profile, and without the build output in its context.
#[test]
fn the_dockerfile_names_no_architecture_and_the_context_leaves_build_output_out() {
    let dockerfile = std::fs::read_to_string(examples().join("Dockerfile")).unwrap();
    for arch in ["x86_64", "amd64", "aarch64", "arm64", "--target"] {
        let named = dockerfile
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains(arch));
        assert!(!named, "the Dockerfile names {arch} outside a comment");
    }
    assert!(dockerfile.contains("RUN scripts/build-dist"));
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect("a .dockerignore beside the build context");
    for entry in ["target", ".git"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            "{entry} is in the build context"
        );
    }
}

// --- issue 26 part 2: the CI examples of publishing (examples/ci/) ---

/// `hashicorp/vault-action`'s inputs, as its `action.yml` declares them at
/// v3.4.0 (commit 4c06c5ccf5c0761b6029f56cfb1dcf5565918a3b, read from
/// github.com/hashicorp/vault-action): the example may give it these and no
/// others. A newer version pinned in the example means reading its
/// `action.yml` again and updating this list and the commit.
const VAULT_ACTION_COMMIT: &str = "4c06c5ccf5c0761b6029f56cfb1dcf5565918a3b";
const VAULT_ACTION_INPUTS: &[&str] = &[
    "url",
    "secrets",
    "pki",
    "namespace",
    "method",
    "role",
    "path",
    "token",
    "roleId",
    "secretId",
    "githubToken",
    "kubernetesTokenPath",
    "username",
    "password",
    "authPayload",
    "extraHeaders",
    "exportEnv",
    "exportToken",
    "outputToken",
    "caCertificate",
    "clientCertificate",
    "clientKey",
    "tlsSkipVerify",
    "jwtPrivateKey",
    "jwtKeyPassword",
    "jwtGithubAudience",
    "jwtTtl",
    "secretEncodingType",
    "ignoreNotFound",
];
/// Its `required: true` inputs.
const VAULT_ACTION_REQUIRED: &[&str] = &["url"];
/// The fields of a published token a job may take (`wire::published`).
const PUBLISHED_FIELDS: &[&str] = &["access_token", "expires_at", "api_url", "org_id"];

/// Every `snykey token --from-openbao` command line of a CI file's `run` /
/// `script` steps, run for real against an OpenBao that is not there: clap
/// takes every flag (a usage error would exit 64), and the command gets as
/// far as reaching OpenBao (or GitHub's token endpoint): exit 69.
fn snykey_lines_parse(lines: &[String], env: &[(&str, &str)]) {
    assert!(!lines.is_empty(), "no snykey command in the example");
    let bin_dir = Path::new(crate::support::agent::SNYKEY).parent().unwrap();
    let dead = format!("http://127.0.0.1:{}", crate::support::bao::free_port_pair());
    let dir = tempfile::tempdir().unwrap();
    for line in lines {
        let mut cmd = crate::support::agent::command("/bin/sh", dir.path());
        cmd.args(["-c", line]).env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        );
        for var in ["OPENBAO_ADDR", "VAULT_SERVER_URL"] {
            cmd.env(var, &dead);
        }
        cmd.env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{dead}/token?api-version=2.0"),
        )
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(69),
            "{line}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

fn snykey_lines(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("snykey token") => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| snykey_lines(x, out)),
        Value::Object(m) => m.values().for_each(|x| snykey_lines(x, out)),
        _ => {}
    }
}

#[test]
fn the_github_actions_example_gives_vault_action_only_its_documented_inputs() {
    let docs = yaml(&examples().join("ci/github-actions.yml"));
    let workflow = &docs[0];
    assert_eq!(
        workflow["permissions"]["id-token"], "write",
        "a job needs id-token: write to ask for its OIDC token"
    );
    let mut vault_steps = 0;
    for (name, job) in workflow["jobs"].as_object().unwrap() {
        for step in job["steps"].as_array().unwrap() {
            let Some(uses) = step["uses"].as_str() else {
                continue;
            };
            let Some(reference) = uses.strip_prefix("hashicorp/vault-action@") else {
                continue;
            };
            vault_steps += 1;
            assert_eq!(
                reference, VAULT_ACTION_COMMIT,
                "{name}: pinned to the commit whose inputs are listed here"
            );
            let with = step["with"].as_object().unwrap();
            for input in with.keys() {
                assert!(
                    VAULT_ACTION_INPUTS.contains(&input.as_str()),
                    "{name}: vault-action has no input {input}"
                );
            }
            for input in VAULT_ACTION_REQUIRED {
                assert!(with.contains_key(*input), "{name}: {input} is required");
            }
            assert_eq!(with["method"], "jwt", "{name}");
            assert!(with["role"].is_string() && with["jwtGithubAudience"].is_string());
            // Each secret: `PATH FIELD | VAR`, a published path, a published field.
            let secrets: Vec<&str> = with["secrets"]
                .as_str()
                .unwrap()
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let mut vars = Vec::new();
            for s in &secrets {
                let (source, var) = s.split_once('|').unwrap();
                let mut words = source.split_whitespace();
                let (path, field) = (words.next().unwrap(), words.next().unwrap());
                assert!(
                    path.starts_with("kv/data/snyk-tokens/"),
                    "{name}: {path} is not a published path (KV v2 paths name data/)"
                );
                assert!(PUBLISHED_FIELDS.contains(&field), "{name}: {field}");
                vars.push(var.trim());
            }
            assert!(vars.contains(&"SNYK_OAUTH_TOKEN"), "{vars:?}");
        }
    }
    assert!(vault_steps > 0, "no vault-action step");
    let mut lines = Vec::new();
    snykey_lines(workflow, &mut lines);
    snykey_lines_parse(&lines, &[]);
}

#[test]
fn the_gitlab_example_reads_published_fields_with_the_jobs_id_token() {
    let docs = yaml(&examples().join("ci/gitlab-ci.yml"));
    let ci = &docs[0];
    for var in ["VAULT_SERVER_URL", "VAULT_AUTH_PATH", "VAULT_AUTH_ROLE"] {
        assert!(ci["variables"][var].is_string(), "{var}");
    }
    let mut secret_jobs = 0;
    for (name, job) in ci.as_object().unwrap() {
        let Some(ids) = job.get("id_tokens").and_then(Value::as_object) else {
            continue;
        };
        for (_, t) in ids {
            assert!(
                t["aud"].is_string(),
                "{name}: an id_token names its audience"
            );
        }
        if let Some(secrets) = job.get("secrets").and_then(Value::as_object) {
            secret_jobs += 1;
            for (var, s) in secrets {
                let vault = s["vault"].as_str().unwrap();
                let (path, mount) = vault.split_once('@').unwrap();
                assert_eq!(mount, "kv", "{name}: {vault}");
                let (path, field) = path.rsplit_once('/').unwrap();
                assert!(path.starts_with("snyk-tokens/"), "{name}: {vault}");
                assert!(PUBLISHED_FIELDS.contains(&field), "{name}: {field}");
                let token = s["token"].as_str().unwrap().trim_start_matches('$');
                assert!(
                    ids.contains_key(token),
                    "{name}: {var} logs in with {token}"
                );
            }
        }
    }
    assert!(secret_jobs > 0, "no job with secrets: vault");
    let mut lines = Vec::new();
    snykey_lines(ci, &mut lines);
    snykey_lines_parse(&lines, &[("SNYKEY_JWT", "x.y.z")]);
}

/// The OpenBao commands of the example, run for real (twice: it can be run
/// again): the agent's policy writes, withdraws and destroys published
/// tokens; a GitHub repository's and a GitLab project's jobs each log in with
/// their own identity and read that one path, nothing else.
#[test]
fn the_openbao_example_sets_up_roles_that_read_one_published_path() {
    use crate::publish::{AUDIENCE, ISSUER, Issuer, login_at};
    let bao = Bao::dev();
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::new(dir.path());
    let gitlab_iss = "https://gitlab.example";
    let script = examples().join("ci/openbao-jwt.sh");
    for _ in 0..2 {
        let out = Command::new("/bin/sh")
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("BAO_ADDR", bao.plain_url())
            .env("BAO_TOKEN", &bao.root_token)
            .env("ORG_ID", "acme")
            .env("CLIENT_ID", "web-app")
            .env("GITHUB_REPOSITORY", "acme/web")
            .env("GITLAB_PROJECT", "acme/web")
            .env("AUDIENCE", AUDIENCE)
            .env(
                "GITHUB_JWT_CONFIG",
                format!(
                    "jwt_validation_pubkeys=@{} bound_issuer={ISSUER}",
                    issuer.public_file.display()
                ),
            )
            .env(
                "GITLAB_JWT_CONFIG",
                format!(
                    "jwt_validation_pubkeys=@{} bound_issuer={gitlab_iss}",
                    issuer.public_file.display()
                ),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    // The agent's policy: create, check-and-set, metadata, destroy.
    let agent = bao.ok(
        "POST",
        "auth/token/create",
        serde_json::json!({"policies": ["snykey-publish"], "ttl": "5m"}),
    )["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let write = |path: &str, cas: u64| {
        bao.call_as(
            &agent,
            "POST",
            &format!("kv/data/snyk-tokens/acme/{path}"),
            Some(&serde_json::json!({"options": {"cas": cas},
                "data": {"access_token": "at", "expires_at": "2030-01-01T00:00:00Z", "org_id": "acme", "generation": 1}})),
        )
        .unwrap()
        .0
    };
    assert_eq!(write("web-app", 0), 200);
    assert_eq!(write("web-app", 1), 200);
    assert_eq!(write("api-app", 0), 200);
    let (st, _) = bao
        .call_as(&agent, "GET", "kv/metadata/snyk-tokens/acme/web-app", None)
        .unwrap();
    assert_eq!(st, 200);
    let (st, v) = bao
        .call_as(
            &agent,
            "POST",
            "kv/destroy/snyk-tokens/acme/web-app",
            Some(&serde_json::json!({"versions": [1]})),
        )
        .unwrap();
    assert!(st < 300, "{st} {v}");
    // Not the store's records.
    let (st, _) = bao
        .call_as(&agent, "GET", "kv/data/snyk/acme/web-app", None)
        .unwrap();
    assert_eq!(st, 403);
    // GitHub: acme/web reads its path, not another; another repository cannot log in.
    let read = |token: &str, path: &str| {
        bao.call_as(
            token,
            "GET",
            &format!("kv/data/snyk-tokens/acme/{path}"),
            None,
        )
        .unwrap()
        .0
    };
    let gh = login_at(&bao, "jwt", "snyk-github", &issuer.github("acme/web")).unwrap();
    assert_eq!(read(&gh, "web-app"), 200);
    assert_eq!(read(&gh, "api-app"), 403);
    assert!(login_at(&bao, "jwt", "snyk-github", &issuer.github("acme/other")).is_err());
    // GitLab: the same with the project's ID token, on its own mount.
    let gl = login_at(
        &bao,
        "jwt-gitlab",
        "snyk-gitlab",
        &issuer.gitlab(gitlab_iss, "acme/web"),
    )
    .unwrap();
    assert_eq!(read(&gl, "web-app"), 200);
    assert_eq!(read(&gl, "api-app"), 403);
    assert!(
        login_at(
            &bao,
            "jwt-gitlab",
            "snyk-gitlab",
            &issuer.gitlab(gitlab_iss, "acme/other")
        )
        .is_err()
    );
    // A GitHub token is no GitLab token (issuer bound per mount).
    assert!(
        login_at(
            &bao,
            "jwt-gitlab",
            "snyk-gitlab",
            &issuer.github("acme/web")
        )
        .is_err()
    );
}

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

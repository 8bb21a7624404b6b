//! What a newcomer reads before the first token (issue 24): the README's
//! first screen in the order it promises, and prerequisites that are true
//! for the build `cargo install --locked --path .` makes.

use crate::support::agent::{stderr, stdout};
use std::path::Path;
use std::process::Command;

/// "1.88", "1.88.0" -> (1, 88, 0).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.trim().split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("not a Rust version: {v:?}"))
    });
    let major = parts.next().unwrap_or(0);
    (major, parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The Rust version the README states builds every crate `cargo install
/// --locked` compiles: our own (`rust-version` in Cargo.toml, which clippy
/// holds the code to) and each locked dependency of the binaries
/// (dev-dependencies left out, this platform's only), which declares the
/// oldest Rust it builds with. (README said 1.85, Cargo.toml's figure, while
/// `time` 0.3.55 and `redis` 1.8.1, both in the lock, need 1.88: a newcomer
/// on 1.85 got a failed build, not a binary.)
#[test]
fn the_stated_rust_version_builds_every_locked_dependency() {
    let readme = readme();
    let stated = readme
        .split("Prerequisites: Rust ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect(
            "README states the Rust version under Install: \"Prerequisites: Rust X.Y or newer\"",
        );
    let ours = version(stated);

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = Command::new("rustc").arg("-vV").output().unwrap();
    let host = stdout(&host)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo metadata: {}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = m["packages"].as_array().unwrap();
    let rust_version = |id: &str| {
        packages
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["rust_version"].as_str())
            .map(version)
    };
    let nodes = m["resolve"]["nodes"].as_array().unwrap();
    let root = m["resolve"]["root"].as_str().unwrap().to_string();
    assert!(
        rust_version(&root).is_some(),
        "Cargo.toml states no rust-version"
    );

    // Every package the binaries are built from, ours included: the root's
    // normal and build dependencies, then everything those need.
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![root.clone()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for dep in node["deps"].as_array().unwrap() {
            let built = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| id != root || k["kind"] != "dev");
            if built {
                todo.push(dep["pkg"].as_str().unwrap().to_string());
            }
        }
    }
    let too_new: Vec<String> = seen
        .iter()
        .filter_map(|id| rust_version(id).filter(|v| *v > ours).map(|v| (id, v)))
        .map(|(id, v)| {
            let name = id.rsplit('#').next().unwrap_or(id);
            format!("{name} needs Rust {}.{}.{}", v.0, v.1, v.2)
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "README says Rust {stated} or newer, but what `cargo install --locked` builds needs more:\n{}",
        too_new.join("\n")
    );
}

/// The first screen: what it is, the prerequisites with the build time, the
/// install command, `snykey dev`, then the `exec` form.
#[test]
fn the_readme_opens_with_what_it_is_install_dev_and_exec_in_that_order() {
    let readme = readme();
    let at = |what: &str| {
        readme
            .find(what)
            .unwrap_or_else(|| panic!("README has no {what:?}"))
    };
    let order = [
        "Snyk refresh tokens are **single-use**",
        "## Install",
        "Prerequisites: Rust ",
        "The build takes ",
        "cargo install --locked --path .",
        "## Try it without a Snyk App: `snykey dev`",
        "## The `exec` form",
        "snykey-helper exec \"$ORG_ID\" \"$CLIENT_ID\" -- snyk test",
    ];
    let places: Vec<usize> = order.iter().map(|w| at(w)).collect();
    for (i, pair) in places.windows(2).enumerate() {
        assert!(
            pair[0] < pair[1],
            "README: {:?} comes after {:?}",
            order[i],
            order[i + 1]
        );
    }
    let section = |from: &str| {
        let start = at(from);
        let end = readme[start + 3..]
            .find("\n## ")
            .map_or(readme.len(), |e| start + 3 + e);
        &readme[start..end]
    };
    let install = section("## Install");
    assert!(
        install.contains("minutes") && install.contains("make") && install.contains("C compiler"),
        "the Install section states the build time and what the build needs:\n{install}"
    );
    // The exec form's section ends at the next heading.
    let exec_end = {
        let start = at("## The `exec` form");
        readme[start + 3..]
            .find("\n## ")
            .map_or(readme.len(), |e| start + 3 + e)
    };
    let exec_line = readme[..exec_end].lines().count();
    assert!(
        exec_line <= 80,
        "the exec form ends on line {exec_line}: not on the first screen any more"
    );
}

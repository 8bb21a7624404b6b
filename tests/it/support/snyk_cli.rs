//! The real Snyk CLI: the npm package `snyk` at a pinned version, installed
//! once into a cache directory under the build's target dir with
//! `npm install --ignore-scripts` (its install script would download the Go
//! binary; the TypeScript CLI in `dist/cli/index.js` runs under node
//! without it), run as `node …/node_modules/snyk/dist/cli/index.js`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The `snyk` npm package the tests run (`scripts/test` installs node and npm).
pub const SNYK_CLI_VERSION: &str = "1.1307.4";

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// `node`, or a failure that says how to install it.
pub fn node() -> PathBuf {
    find("node").unwrap_or_else(|| {
        panic!(
            "node is required by the Snyk CLI test: install Node.js and npm (`apt-get install nodejs npm`, or run scripts/test)"
        )
    })
}

static INSTALL: Mutex<()> = Mutex::new(());

/// The CLI's entry point, installed first if this cache has not got it.
pub fn snyk_cli() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("snyk-cli-{SNYK_CLI_VERSION}"));
    let entry = cache.join("node_modules/snyk/dist/cli/index.js");
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if entry.is_file() {
        return entry;
    }
    node();
    let npm = find("npm").unwrap_or_else(|| {
        panic!(
            "npm is required to install the Snyk CLI for its test: `apt-get install npm` (or run scripts/test)"
        )
    });
    // Into a staging directory, renamed into place when complete: another
    // test process installing at the same time cannot see half a package.
    let staging = tempfile::Builder::new()
        .prefix("snyk-cli-install-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let out = Command::new(&npm)
        .args([
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--prefix",
        ])
        .arg(staging.path())
        .arg(format!("snyk@{SNYK_CLI_VERSION}"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", npm.display()));
    assert!(
        out.status.success(),
        "npm install snyk@{SNYK_CLI_VERSION} failed (is the npm registry reachable?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let staged = staging.keep();
    if std::fs::rename(&staged, &cache).is_err() {
        // Another process won the race; its copy is as good.
        let _ = std::fs::remove_dir_all(&staged);
    }
    assert!(
        entry.is_file(),
        "the snyk package has no {}: did its layout change?",
        entry.display()
    );
    entry
}

/// A small npm project: a lockfile (v3) with one dependency, which the CLI
/// turns into a dep graph without touching the network.
pub fn npm_project(dir: &Path) -> PathBuf {
    let project = dir.join("demo-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name": "demo-project", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}}"#,
    )
    .unwrap();
    std::fs::write(
        project.join("package-lock.json"),
        r#"{
  "name": "demo-project",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {"name": "demo-project", "version": "1.0.0", "dependencies": {"ms": "2.1.3"}},
    "node_modules/ms": {
      "version": "2.1.3",
      "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz",
      "integrity": "sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA=="
    }
  }
}
"#,
    )
    .unwrap();
    project
}

//! The Debian package (issue 14): built with cargo-deb from the binaries
//! under test, then taken apart with dpkg-deb, and checked by lintian.

use crate::support::agent::{SNYKEY, stderr, stdout};
use std::path::Path;
use std::process::Command;

fn have(tool: &str, hint: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is required by this test: {hint} (scripts/test does)"
    );
}

#[test]
fn the_debian_package_installs_binaries_units_docs_man_pages_and_completions() {
    have("dpkg-deb", "apt-get install dpkg");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let deb_ok = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        deb_ok,
        "cargo-deb is required by this test: cargo install cargo-deb --locked (scripts/test does)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The binaries this test run built: package them as they are.
    let bin_dir = Path::new(SNYKEY).parent().unwrap();
    let profile = match bin_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("binaries in an unexpected place: {SNYKEY}"),
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(root.join("scripts/package"))
        .args(["--no-build", "--profile", profile, "--output"])
        .arg(out_dir.path())
        .env("CARGO", &cargo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory");
    let contents = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(contents.status.success());
    let listing = stdout(&contents);
    for path in [
        "./usr/bin/snykey",
        "./usr/bin/snykey-helper",
        "./usr/lib/systemd/system/snykey.service",
        "./usr/lib/systemd/system/snykey.socket",
        "./usr/lib/sysusers.d/snykey.conf",
        "./usr/lib/tmpfiles.d/snykey.conf",
        "./usr/share/doc/snykey/README.md",
        "./usr/share/doc/snykey/examples/config.toml",
        "./usr/share/man/man1/snykey.1.gz",
        "./usr/share/man/man1/snykey-refresh.1.gz",
        "./usr/share/bash-completion/completions/snykey",
        "./usr/share/zsh/vendor-completions/_snykey",
        "./usr/share/fish/vendor_completions.d/snykey.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{listing}"
        );
    }
    // The unit's Documentation= names a file the package installs.
    let unit = std::fs::read_to_string(root.join("systemd/snykey.service")).unwrap();
    assert!(unit.contains("Documentation=file:/usr/share/doc/snykey/README.md"));
    // Unpacked, the binary runs and says which commit it is.
    let x = tempfile::tempdir().unwrap();
    let st = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(x.path())
        .status()
        .unwrap();
    assert!(st.success());
    let v = Command::new(x.path().join("usr/bin/snykey"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(stdout(&v).contains("(commit "), "{}", stdout(&v));
    let info = Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .output()
        .unwrap();
    let info = stdout(&info);
    assert!(
        info.contains("Package: snykey") && info.contains("postinst"),
        "{info}"
    );
    // lintian, where it is installed: no errors.
    if Command::new("lintian").arg("--version").output().is_ok() {
        let l = Command::new("lintian")
            .arg("--no-tag-display-limit")
            .arg(&deb)
            .output()
            .unwrap();
        let errors: Vec<String> = stdout(&l)
            .lines()
            .filter(|line| line.starts_with("E:"))
            .map(str::to_string)
            .collect();
        assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    }
}

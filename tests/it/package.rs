//! The Debian package (issue 14): built with cargo-deb from the binaries
//! under test, then taken apart with dpkg-deb, and checked by lintian.

use crate::support::agent::{SNYKEY, stderr, stdout};
use std::path::{Path, PathBuf};
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

/// The `.deb` of the binaries this test run built (scripts/package
/// --no-build), written into `out_dir`; its path.
pub(crate) fn build_deb(out_dir: &Path) -> PathBuf {
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
    // One package build at a time: scripts/package writes target/deb-assets.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(root.join("scripts/package"))
        .args(["--no-build", "--profile", profile, "--output"])
        .arg(out_dir)
        .env("CARGO", &cargo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    std::fs::read_dir(out_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory")
}

#[test]
fn the_debian_package_installs_binaries_units_docs_man_pages_and_completions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = tempfile::tempdir().unwrap();
    let deb = build_deb(out_dir.path());
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
        "./usr/share/doc/snykey/docs/configuration.md",
        "./usr/share/doc/snykey/docs/api.md",
        "./usr/share/man/man1/snykey.1.gz",
        "./usr/share/man/man1/snykey-refresh.1.gz",
        "./usr/share/man/man1/snykey-reload.1.gz",
        "./usr/share/man/man1/snykey-helper.1.gz",
        "./usr/share/doc/snykey/copyright",
        "./usr/share/lintian/overrides/snykey",
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
    assert!(info.contains("Package: snykey"), "{info}");
    // What the agent needs at run time, and the maintainer scripts' helpers.
    let depends = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends: {info}"));
    for dep in ["ca-certificates", "init-system-helpers", "libc6"] {
        assert!(depends.contains(dep), "Depends: {depends}");
    }
    // Maintainer scripts: complete (no debhelper token left to fill in), and
    // a prerm that stops the units before their files go.
    let control = tempfile::tempdir().unwrap();
    let st = Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(control.path())
        .status()
        .unwrap();
    assert!(st.success());
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(control.path().join(script))
            .unwrap_or_else(|e| panic!("no {script} in the package: {e}"));
        assert!(!text.contains("#DEBHELPER#"), "{script}:\n{text}");
        let sh = Command::new("sh")
            .arg("-n")
            .arg(control.path().join(script))
            .output()
            .unwrap();
        assert!(
            sh.status.success(),
            "{script} is not valid sh: {}",
            stderr(&sh)
        );
    }
    let prerm = std::fs::read_to_string(control.path().join("prerm")).unwrap();
    assert!(prerm.contains("deb-systemd-invoke stop snykey.service snykey.socket"));
    // snykey-helper(1) reads as a man page (groff says nothing).
    let man = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(x.path().join("usr/share/man/man1/snykey-helper.1.gz"))
        .env("MANWIDTH", "100")
        .output()
        .expect("man (apt-get install man-db)");
    assert!(
        man.status.success() && stderr(&man).is_empty(),
        "{}",
        stderr(&man)
    );
    assert!(stdout(&man).contains("--min-validity"), "{}", stdout(&man));
    // lintian, pedantic and with info tags: nothing but the overrides the
    // package ships, each with its reason (debian/lintian-overrides).
    let l = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info", "--pedantic"])
        .arg(&deb)
        .output()
        .unwrap_or_else(|e| panic!("lintian is required by this test ({e}): apt-get install lintian (scripts/test does)"));
    // Two overrides are for the dist build's binaries (a static-pie helper,
    // a .comment section) and go unused on the debug binaries packaged here;
    // lintian on the dist .deb (scripts/package) prints nothing at all.
    const DIST_ONLY: &[&str] = &[
        "unused-override binary-has-unneeded-section",
        "unused-override shared-library-lacks-prerequisites",
    ];
    let said = stdout(&l);
    let tags: Vec<&str> = said
        .lines()
        .filter(|line| line.len() > 2 && line.as_bytes()[1] == b':')
        .filter(|line| !DIST_ONLY.iter().any(|d| line.contains(d)))
        .filter(|line| *line != "N: 0 hints overridden; 2 unused overrides")
        .collect();
    assert!(tags.is_empty(), "lintian:\n{}", tags.join("\n"));
}

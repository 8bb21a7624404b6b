//! The commands that need no agent: `check-config`, `doctor` (which asks the
//! agent itself), `completions`, `man`, `audit verify`.

use crate::cli::Cli;
use snykey::config::Config;
use snykey::exit;
use std::path::{Path, PathBuf};

/// A single-threaded runtime for one command, or `None` (said on stderr).
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("snykey: cannot start: {e}");
            None
        }
    }
}

/// `snykey check-config`: the access summary, then the effective config;
/// every file it names is checked as the agent would at start.
pub fn check_config(config: Option<&Path>) -> i32 {
    match Config::load(config).and_then(|c| c.check_files().map(|w| (c, w))) {
        Ok((c, warnings)) => {
            // SAFETY: geteuid cannot fail.
            let uid = unsafe { libc::geteuid() };
            println!("# access: {}", c.access.policy(&c.server, uid).summary());
            print!("{}", c.to_redacted_toml());
            if let Some(w) = c.protection_warning() {
                eprintln!("snykey: warning: {w}");
            }
            for w in warnings {
                eprintln!("snykey: warning: {w}");
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("snykey: invalid configuration: {e}");
            exit::CONFIG
        }
    }
}

/// `snykey doctor`: exit 0 only when every check passes, 1 otherwise.
pub fn doctor(socket: &Path, config: Option<&Path>, json: bool) -> i32 {
    let Some(runtime) = runtime() else {
        return exit::SOFTWARE;
    };
    let report = runtime.block_on(snykey::doctor::run(config, socket));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if report.ok { exit::OK } else { 1 }
}

/// `snykey completions SHELL`.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "snykey", &mut std::io::stdout());
    exit::OK
}

/// `snykey config-reference`: `docs/configuration.md` of this build.
pub fn config_reference() -> i32 {
    use std::io::Write;
    let text = snykey::config::reference::markdown();
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => exit::OK,
        // A closed pipe (`| head`) is not worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("snykey: cannot write the reference: {e}");
            exit::CANT_CREATE
        }
    }
}

/// `snykey man`: snykey(1) on stdout, or every page into a directory.
pub fn man(dir: Option<&Path>) -> i32 {
    let cmd = <Cli as clap::CommandFactory>::command();
    let result = match dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(d) => std::fs::create_dir_all(d).and_then(|_| clap_mangen::generate_to(cmd, d)),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("snykey: cannot write the man page: {e}");
            exit::CANT_CREATE
        }
    }
}

/// `snykey audit verify FILE...`.
pub fn audit_verify(files: &[PathBuf]) -> i32 {
    match snykey::audit::verify(files) {
        Ok(v) => {
            println!(
                "ok: {} line(s) in {} file(s), the hash chain is intact; the last line's SHA-256 is {}",
                v.lines,
                files.len(),
                v.last_hash
            );
            if v.starts_mid_chain {
                println!(
                    "note: the first line continues a chain from an earlier file that was not given (a rotated log?)"
                );
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("snykey: audit log check failed: {e}");
            exit::DATA_ERR
        }
    }
}

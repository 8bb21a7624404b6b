//! `snykey dev`: the library's dev session (`snykey::dev`) with this
//! binary's logging, a runtime, and what it prints.

use crate::cli::LogFormat;
use snykey::dev::{Commands, DevError};
use snykey::exit;

/// Runs a dev session until SIGINT/SIGTERM; the exit code.
pub fn dev(log_level: Option<String>, log_format: LogFormat) -> i32 {
    let env: Vec<(String, String)> = std::env::vars().collect();
    // Refusals and the directory come first, before any thread exists.
    let prepared = match snykey::dev::prepare(&env) {
        Ok(p) => p,
        Err(e) => return failed(&e),
    };
    print!("{}", snykey::dev::banner(&prepared));
    let level = log_level
        .or_else(|| std::env::var("SNYKEY_LOG").ok())
        .filter(|l| !l.is_empty());
    let apply = crate::serve::init_logging(Some(level.as_deref().unwrap_or("info")), log_format);
    let reloader: snykey::agent::LogReloader = Box::new(move |_file_level: Option<&str>| {
        Ok(match &level {
            Some(l) => format!("log filter stays {l:?}"),
            None => {
                apply("info")?;
                "log filter is \"info\"".to_string()
            }
        })
    });
    snykey::dirs::allow_shared_dirs(false);
    let bound =
        match snykey::api::socket::bind(prepared.socket(), prepared.config.server.socket_mode) {
            Ok(b) => b,
            Err(e) => return failed(&DevError::Failed(e)),
        };
    let commands = match std::env::current_exe() {
        Ok(exe) => Commands::beside(&exe, std::env::var_os("PATH").as_deref()),
        Err(_) => Commands {
            snykey: "snykey".into(),
            helper: "snykey-helper".into(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("snykey-dev")
        .build()
    {
        Ok(r) => r,
        Err(e) => return failed(&DevError::Failed(format!("cannot start the runtime: {e}"))),
    };
    let outcome = runtime.block_on(snykey::dev::run(prepared, bound, Some(reloader), |ready| {
        use std::io::Write;
        print!("{}", snykey::dev::next_steps(ready, &commands));
        let _ = std::io::stdout().flush();
    }));
    match outcome {
        Ok(()) => {
            println!("snykey dev: stopped; its directory is removed");
            exit::OK
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &DevError) -> i32 {
    eprintln!("snykey dev: {e}");
    match e {
        DevError::Refused(_) => exit::CONFIG,
        DevError::Failed(_) => exit::SOFTWARE,
    }
}

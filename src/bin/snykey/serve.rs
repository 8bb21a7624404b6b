//! `snykey serve`: logging (stderr or journald, a filter SIGHUP can change),
//! the socket (bound here or passed by systemd), the runtime, then
//! `snykey::agent::run`.

use crate::cli::LogFormat;
use snykey::config::Config;
use snykey::exit;
use std::path::Path;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// Sets up logging on stderr; returns a function that changes the filter (SIGHUP).
/// The function that changes the log filter later.
type ApplyFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub fn init_logging(level: Option<&str>, format: LogFormat) -> ApplyFilter {
    let filter_text = snykey::agent::effective_log_filter(level.unwrap_or("info"));
    let filter = EnvFilter::try_new(&filter_text).unwrap_or_else(|e| {
        eprintln!("snykey: invalid log filter {filter_text:?} ({e}); using info");
        EnvFilter::new("info")
    });
    let (filter, handle) = reload::Layer::new(filter);
    // Under systemd with stderr connected to the journal, log to journald
    // natively (structured fields, levels as priorities).
    let journald = if stderr_is_journal() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    let fmt = match (journald, format) {
        (Some(j), _) => j.with_syslog_identifier("snykey".into()).boxed(),
        (None, LogFormat::Text) => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        (None, LogFormat::Json) => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
    Box::new(move |text: &str| {
        let f = EnvFilter::try_new(snykey::agent::effective_log_filter(text))
            .map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    })
}

/// `JOURNAL_STREAM=dev:inode` names the journal's stream; it is ours only if
/// stderr is that very file (systemd(1), "JOURNAL_STREAM").
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    let fd = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned();
    let Ok(fd) = fd else { return false };
    let file = std::fs::File::from(fd);
    file.metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// Runs the agent until SIGTERM/SIGINT; the exit code.
pub fn serve(log_level: Option<String>, log_format: LogFormat, config: Option<&Path>) -> i32 {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("snykey: invalid configuration: {e}");
            return exit::CONFIG;
        }
    };
    // --log-level, then SNYKEY_LOG, pin the filter; otherwise the file's
    // server.log_level (which SIGHUP re-reads).
    let pinned = log_level
        .or_else(|| std::env::var("SNYKEY_LOG").ok())
        .filter(|l| !l.is_empty());
    let apply = init_logging(
        Some(pinned.as_deref().unwrap_or(&cfg.server.log_level)),
        log_format,
    );
    // Every file the configuration names, before anything is bound or
    // contacted: a missing token file is said to be missing (issue 24).
    match cfg.check_files() {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            eprintln!("snykey: invalid configuration: {e}");
            return exit::CONFIG;
        }
    }
    let reloader = log_reloader(pinned, apply);
    // Everything that touches the process (umask, env) happens before threads exist.
    snykey::dirs::allow_shared_dirs(cfg.server.allow_shared_dirs);
    let notifier = snykey::systemd::Notifier::from_env();
    let bound = match bind_socket(&cfg) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            return exit::UNAVAILABLE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("snykey")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return exit::SOFTWARE;
        }
    };
    let socket_path = bound.path.clone();
    let created = bound.created;
    match runtime.block_on(snykey::agent::run(cfg, bound, notifier, Some(reloader))) {
        Ok(()) => exit::OK,
        Err(e) => {
            tracing::error!("{e}");
            if created {
                let _ = std::fs::remove_file(&socket_path);
            }
            e.exit_code()
        }
    }
}

/// What SIGHUP does to the log filter: a filter pinned by `--log-level` or
/// `SNYKEY_LOG` stays; otherwise the file's `server.log_level` is applied.
fn log_reloader(pinned: Option<String>, apply: ApplyFilter) -> snykey::agent::LogReloader {
    Box::new(move |file_level: Option<&str>| match &pinned {
        Some(p) => Ok(format!(
            "log filter stays {p:?} (set by --log-level or SNYKEY_LOG, which override server.log_level)"
        )),
        None => {
            let level = file_level.unwrap_or("info");
            apply(level)?;
            Ok(format!("log filter is now {level:?}"))
        }
    })
}

/// The agent's socket: the one systemd passed (socket activation), else
/// bound here with its mode set at bind time.
fn bind_socket(cfg: &Config) -> Result<snykey::api::socket::Bound, String> {
    match snykey::api::socket::from_systemd(&cfg.server.socket)? {
        Some(b) => Ok(b),
        None => snykey::api::socket::bind(&cfg.server.socket, cfg.server.socket_mode),
    }
}

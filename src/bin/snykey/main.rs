//! `snykey`: the agent (`snykey serve`) and the admin CLI (the README).
//! Thin: `cli/` parses (every local mistake is a clap usage error, exit 64),
//! one file per command group calls the library or the agent, and the exit
//! code comes from the agent's answer (`snykey::exit`).

mod cli;
mod credentials;
mod dev;
mod from_openbao;
mod local;
mod login;
mod routes;
mod serve;
mod service;
mod service_accounts;
mod table;

use clap::{CommandFactory, Parser};
use cli::{AuditCommand, Cli, Command};
use snykey::client::{AgentClient, ClientError};
use snykey::exit;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// jemalloc instead of glibc's malloc: an agent holding 10 000 credentials
/// allocates its long-lived per-credential state in the middle of a burst of
/// short-lived buffers (10 000 start-up grants, HTTP bodies, store rewrites).
/// glibc's malloc strands the freed memory between the survivors (43–46 MiB
/// resident for 23 MiB in use, even after `malloc_trim`); jemalloc's size
/// classes keep the survivors packed and return the rest (32 MiB resident,
/// BENCHMARKS.md). mimalloc was measured too and kept 68 MiB.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (read once, before the first allocation):
/// a background thread returns freed pages after a second even while the
/// agent is idle (otherwise purging waits for the next allocation), straight
/// to the system (`muzzy_decay_ms:0`), and two arenas instead of four per core
/// (the agent's few threads do not contend; fewer arenas strand less memory).
/// `_RJEM_MALLOC_CONF` in the environment can still override them (the
/// crate builds jemalloc with the `_rjem_` prefix).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Why a client command failed.
pub enum Failure {
    /// The command line asks for something that cannot work (exit 64).
    Usage(clap::Error),
    /// A local finding that is not a usage error (e.g. no such credential).
    Local { exit: i32, message: String },
    /// The agent's answer, or no answer.
    Agent(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Agent(e)
    }
}

/// A usage error found after parsing (an unreadable secret file, stdin asked twice).
pub fn usage(message: String) -> Failure {
    Failure::Usage(Cli::command().error(clap::error::ErrorKind::ValueValidation, message))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version are not errors; everything else is a usage
        // error, and usage errors exit 64 everywhere (not clap's 2).
        Err(e) => return ExitCode::from(usage_exit(&e) as u8),
    };
    ExitCode::from(run(cli) as u8)
}

fn usage_exit(e: &clap::Error) -> i32 {
    let _ = e.print();
    if e.use_stderr() {
        exit::USAGE
    } else {
        exit::OK
    }
}

/// Runs the parsed command; its exit code. Over 80 lines on purpose: one
/// flat match, an arm per subcommand that only unpacks its arguments and
/// calls the file of its command group, so the whole dispatch reads in one
/// place; split, a reader would look in two places for one subcommand.
fn run(cli: Cli) -> i32 {
    // `--socket` after the subcommand wins over one before it.
    let socket = cli
        .command
        .agent_opts()
        .and_then(|a| a.socket.clone())
        .or(cli.socket.clone())
        .unwrap_or_else(snykey::paths::default_socket);
    match cli.command {
        Command::Serve { config, log } => serve::serve(
            log.log_level.or(cli.log.log_level),
            log.log_format.or(cli.log.log_format).unwrap_or_default(),
            config.as_deref(),
        ),
        Command::Dev { .. } if cli.socket.is_some() => usage_exit(&Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            "snykey dev keeps its socket in its own temporary directory and prints it; --socket is for the commands that talk to an agent",
        )),
        Command::Dev { log } => dev::dev(
            log.log_level.or(cli.log.log_level),
            log.log_format.or(cli.log.log_format).unwrap_or_default(),
        ),
        Command::CheckConfig { config } => local::check_config(config.as_deref()),
        Command::Doctor { config, json, .. } => local::doctor(&socket, config.as_deref(), json),
        Command::ConfigReference => local::config_reference(),
        Command::Completions { shell } => local::completions(shell),
        Command::Man { dir } => local::man(dir.as_deref()),
        Command::Audit(AuditCommand::Verify { files }) => local::audit_verify(&files),
        Command::Put(args) => agent(&socket, |c| async move { credentials::put(&c, args).await }),
        Command::Token {
            credential,
            min_validity,
            format,
            openbao,
            command,
            ..
        } if openbao.from_openbao => {
            from_openbao::token(credential.into(), openbao, min_validity, format, &command)
        }
        Command::Token {
            credential,
            min_validity,
            format,
            command,
            ..
        } => agent(&socket, |c| async move {
            credentials::token(&c, credential.into(), min_validity, format, &command).await
        }),
        Command::Refresh {
            credential, format, ..
        } => agent(&socket, |c| async move {
            credentials::refresh(&c, credential.into(), format).await
        }),
        Command::Status { json, .. } => {
            agent(
                &socket,
                |c| async move { credentials::status(&c, json).await },
            )
        }
        Command::Delete {
            credential, revoke, ..
        } => agent(&socket, |c| async move {
            credentials::delete(&c, credential, revoke).await
        }),
        Command::Reload { .. } => agent(&socket, |c| async move { service::reload(&c).await }),
        Command::Ready { .. } => agent(&socket, |c| async move { service::ready(&c).await }),
        Command::Login(args) => agent(&socket, |c| async move { login::login(&c, args).await }),
        Command::RegisterApp(args) => {
            agent(
                &socket,
                |c| async move { login::register_app(&c, args).await },
            )
        }
        Command::ServiceAccount(sa) => {
            agent(
                &socket,
                |c| async move { service_accounts::run(&c, sa).await },
            )
        }
    }
}

/// A failure's exit code, its line said on stderr.
fn report(failure: Failure) -> i32 {
    match failure {
        Failure::Usage(e) => usage_exit(&e),
        Failure::Local { exit, message } => {
            eprintln!("snykey: {message}");
            exit
        }
        Failure::Agent(e) => {
            eprintln!("snykey: {}", e.report());
            e.exit_code()
        }
    }
}

/// Runs one client command against the agent and turns its outcome into an exit code.
fn agent<F, Fut>(socket: &Path, command: F) -> i32
where
    F: FnOnce(AgentClient) -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let Some(runtime) = local::runtime() else {
        return exit::SOFTWARE;
    };
    // A put may wait on Snyk (with its retries); the agent's own timeouts come first.
    let client = AgentClient::new(socket, Duration::from_secs(120));
    match runtime.block_on(command(client)) {
        Ok(()) => exit::OK,
        Err(f) => report(f),
    }
}

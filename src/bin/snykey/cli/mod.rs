//! The command line (the README), as clap derive types. Everything a user can
//! get wrong locally — an id, a duration, a kind, a format — is parsed here,
//! so it is a clap usage error (exit 64) before anything is sent.
//!
//! One module per command group: [`common`] (the socket, logging options,
//! ids, durations), [`token`] (`token`, `refresh`), [`credentials`] (`put`,
//! `delete`, `login`, `register-app`), [`service_account`]; this file holds
//! the top-level parser and the list of subcommands.

mod common;
mod credentials;
mod service_account;
mod token;

pub use common::{AgentOpts, LogFormat, LogOpts};
pub use credentials::{Credential, LoginArgs, PutArgs, RegisterAppArgs};
pub use service_account::{SaCommand, SaScope};
pub use token::{FormatArg, FromOpenBaoArgs, TokenCredential};

use clap::{Parser, Subcommand};
use common::duration;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "snykey",
    version = snykey::LONG_VERSION,
    about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket",
    long_about = "Keeps Snyk OAuth access tokens fresh behind a Unix socket.\n\n`snykey serve` is the agent: it keeps each credential's refresh token or client secret in a secret store and mints access tokens. The other subcommands talk to a running agent over its socket. Tools get a token with `snykey-helper ORG_ID CLIENT_ID`.",
    after_help = "Exit codes: 0 ok, 64 usage, 66 unknown credential, 69 agent unreachable, 75 temporary failure (retry), 77 not permitted (log in again, or this uid is not allowed), 78 invalid configuration."
)]
pub struct Cli {
    /// The agent socket, for the commands that talk to the agent (also accepted after them); default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock or /run/snykey/snykey.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// `snykey serve`'s options, also accepted before the subcommand.
    #[command(flatten)]
    pub log: LogOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the agent.
    Serve {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        log: LogOpts,
    },
    /// Try snykey without a Snyk App: the agent on a temp directory against a simulated Snyk.
    ///
    /// Starts the agent on a fresh temporary directory (file store, memory
    /// cache, its own socket) with snykey's simulated Snyk on a loopback
    /// address, stores a demo credential (org demo-org, client demo-app) and
    /// prints the commands to try next: the helper, `exec`, `status`, and a
    /// `login --no-browser` whose URL the simulated Snyk completes. Nothing
    /// is sent to Snyk: a SNYKEY_SNYK_API_URL or SNYKEY_SNYK_APP_URL that is
    /// not a loopback address is refused (exit 78); other SNYKEY_* settings
    /// except [refresh] ones are ignored. Ctrl-C stops it and deletes the
    /// directory.
    Dev {
        #[command(flatten)]
        log: LogOpts,
    },
    /// Store a credential in the agent (secrets from files, `-` for stdin; never from argv).
    Put(PutArgs),
    /// Print a token (same as snykey-helper: ORG_ID and CLIENT_ID may come from SNYKEY_ORG_ID and SNYKEY_CLIENT_ID), or run a command with it.
    ///
    /// From the agent on the socket; or, with --from-openbao, as a CI job on
    /// a machine without an agent: the token an agent published in OpenBao
    /// ([publish]), read with the job's own identity (OpenBao's JWT auth: a
    /// JWT from --jwt-file, --jwt-env or --github-oidc). The OpenBao token
    /// the job gets is revoked after the read and never shown. A published
    /// token with less than --min-validity left is refused (exit 75).
    ///
    /// `snykey token ORG_ID CLIENT_ID -- COMMAND [ARG...]` runs COMMAND with
    /// SNYK_OAUTH_TOKEN, SNYK_API and SNYK_CFG_ORG (unless already set) in its
    /// environment and exits with its status, like `snykey-helper exec`.
    Token {
        #[command(flatten)]
        credential: TokenCredential,
        /// The token must stay valid at least this long (300, 5m, 1h30m, "5 minutes"); with --from-openbao default 5m.
        #[arg(long, value_parser = duration)]
        min_validity: Option<Duration>,
        /// token: the token alone; json: token and expiry; env: `export SNYK_OAUTH_TOKEN=...`.
        #[arg(long, value_enum, default_value_t = FormatArg::Token)]
        format: FormatArg,
        #[command(flatten)]
        openbao: FromOpenBaoArgs,
        #[command(flatten)]
        agent: AgentOpts,
        /// A command to run with the token in its environment instead of printing it (after `--`).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Mint a new access token now (e.g. after a 401 for a revoked token).
    ///
    /// At most one forced refresh per credential per refresh.force_interval
    /// (10 s); requests inside it get the token that one minted.
    Refresh {
        #[command(flatten)]
        credential: TokenCredential,
        /// Print the new token like `snykey token` (default: one line saying until when it is valid).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Show every credential the secret store holds, with its state in this agent.
    ///
    /// Exits 75 and says "store unreachable" when the agent cannot read the
    /// store (never an empty list that only looks true).
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Delete a credential (and with --revoke, revoke its refresh token at Snyk first).
    Delete {
        #[command(flatten)]
        credential: Credential,
        /// Revoke the refresh token at Snyk before deleting it here.
        #[arg(long)]
        revoke: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Log in through the browser (OAuth with PKCE) and let the agent manage the credential.
    Login(LoginArgs),
    /// Register a Snyk App (its secret goes straight into the store) and log in to it.
    RegisterApp(RegisterAppArgs),
    /// Manage Snyk service accounts (org or group level).
    #[command(subcommand)]
    ServiceAccount(SaCommand),
    /// Make the running agent re-read its config file, and say what changed.
    ///
    /// Waits until the agent applied the file or refused it. Exit 0 when
    /// applied (keys that cannot change live are named: they need a restart);
    /// 78 with the reason when the file is invalid, and the agent keeps
    /// running on the configuration it had. The systemd unit's ExecReload=
    /// (`systemctl reload snykey`). Admins only; SIGHUP does the same without
    /// an answer.
    Reload {
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Exit 0 when the agent can serve tokens (`/v1/ready`), else 75 with the reason.
    ///
    /// For probes (a Kubernetes startupProbe or readinessProbe of the agent
    /// container): the store and the cache answer, and the store is unsealed.
    Ready {
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Print the effective configuration (secrets redacted), or say what is wrong with it.
    CheckConfig {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check everything and say for each failure what to do (exit 0 only when all pass).
    ///
    /// In order: the socket, the agent and the allow-list, the config, store
    /// and cache, the store kind, the cache's role, Snyk and the clock, file
    /// modes, every credential's state. Exit 0 when all pass, else 1.
    Doctor {
        /// Config file (default $CONFIGURATION_DIRECTORY/config.toml, else /etc/snykey/config.toml, if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// JSON for scripts: {"ok": bool, "checks": [{name, ok, detail, remedy?}]}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        agent: AgentOpts,
    },
    /// Print a shell completion script (e.g. `snykey completions bash > /etc/bash_completion.d/snykey`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the configuration reference of this build (docs/configuration.md, Markdown).
    ///
    /// Every key of the config file with its type, default, SNYKEY_* variable,
    /// whether `snykey reload` applies it at once, and what is checked;
    /// written from the code that reads the configuration.
    ConfigReference,
    /// Print the man page snykey(1), or with --dir write it and one page per subcommand there.
    Man {
        /// Write snykey.1 and snykey-SUBCOMMAND.1 into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The audit log (server.audit_log).
    #[command(subcommand)]
    Audit(AuditCommand),
}

impl Command {
    /// `--socket` given after the subcommand, for those that talk to the agent.
    pub fn agent_opts(&self) -> Option<&AgentOpts> {
        match self {
            Command::Put(PutArgs { agent, .. })
            | Command::Token { agent, .. }
            | Command::Refresh { agent, .. }
            | Command::Status { agent, .. }
            | Command::Reload { agent }
            | Command::Ready { agent }
            | Command::Delete { agent, .. }
            | Command::Doctor { agent, .. }
            | Command::Login(LoginArgs { agent, .. })
            | Command::RegisterApp(RegisterAppArgs { agent, .. }) => Some(agent),
            Command::ServiceAccount(sa) => Some(&sa.scope().agent),
            Command::Serve { .. }
            | Command::Dev { .. }
            | Command::CheckConfig { .. }
            | Command::ConfigReference
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Audit(_) => None,
        }
    }
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain through FILEs, oldest first (e.g. audit.log.1 audit.log);
    /// exit 0 when intact, 65 naming the first broken line otherwise.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command, FormatArg};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("snykey").chain(args.iter().copied()))
    }

    #[test]
    fn an_unknown_kind_or_format_is_a_usage_error_not_none() {
        let base = ["put", "--org-id", "o", "--client-id", "c", "--kind"];
        let e = parse(&[&base[..], &["bogus"]].concat())
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidValue));
        assert!(parse(&[&base[..], &["private_key_jwt"]].concat()).is_ok());
        let e = parse(&["token", "o", "c", "--format", "yaml"])
            .err()
            .map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::InvalidValue));
        match parse(&["refresh", "o", "c", "--format", "env"]).map(|c| c.command) {
            Ok(Command::Refresh { format, .. }) => {
                assert!(matches!(format, Some(FormatArg::Env)))
            }
            _ => panic!("refresh --format env did not parse"),
        }
    }

    /// The options a subcommand's help lists (issue 24: `--socket` was on
    /// every page, `man` included).
    fn options_of(path: &[&str]) -> Vec<String> {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let mut at = &cmd;
        for name in path {
            at = at.find_subcommand(name).unwrap();
        }
        at.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    #[test]
    fn each_subcommand_lists_only_the_options_it_uses() {
        for local in [
            &["man"][..],
            &["completions"],
            &["check-config"],
            &["audit", "verify"],
        ] {
            let opts = options_of(local);
            for o in ["socket", "log-level", "log-format"] {
                assert!(
                    !opts.contains(&o.to_string()),
                    "{local:?} lists --{o}: {opts:?}"
                );
            }
        }
        let serve = options_of(&["serve"]);
        assert!(serve.contains(&"log-level".into()) && serve.contains(&"log-format".into()));
        assert!(!serve.contains(&"socket".into()), "{serve:?}");
        for client in [
            &["status"][..],
            &["token"],
            &["put"],
            &["login"],
            &["doctor"],
            &["service-account", "list"],
        ] {
            let opts = options_of(client);
            assert!(opts.contains(&"socket".into()), "{client:?}: {opts:?}");
            assert!(!opts.contains(&"log-level".into()), "{client:?}: {opts:?}");
        }
        // Both places still work, the one after the subcommand winning.
        let c = parse(&["--socket", "/a", "status", "--socket", "/b"])
            .ok()
            .unwrap();
        assert_eq!(c.command.agent_opts().unwrap().socket, Some("/b".into()));
        assert_eq!(c.socket, Some("/a".into()));
        let c = parse(&["--log-format", "json", "serve"]).ok().unwrap();
        assert!(matches!(c.log.log_format, Some(super::LogFormat::Json)));
    }

    #[test]
    fn bad_ids_and_durations_are_refused_before_anything_is_sent() {
        for args in [
            &["token", "o", "a:b"][..],
            &["delete", "../x", "c"],
            &["token", "o", "c", "--min-validity", "5 parsecs"],
            &["login", "--org-id", "o o", "--client-id", "c"],
        ] {
            let e = parse(args).err().map(|e| e.kind());
            assert_eq!(e, Some(ErrorKind::ValueValidation), "{args:?}");
        }
        for given in ["1h30m", "90 minutes", "5400"] {
            match parse(&["token", "o", "c", "--min-validity", given]).map(|c| c.command) {
                Ok(Command::Token { min_validity, .. }) => {
                    assert_eq!(min_validity, Some(std::time::Duration::from_secs(5400)))
                }
                _ => panic!("token --min-validity {given} did not parse"),
            }
        }
    }
}

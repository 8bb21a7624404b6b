//! Options and value parsers shared by several commands: the agent's
//! socket, `serve`'s logging options, ids and durations.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// `--socket` of the commands that talk to the agent (and only of those:
/// `man`, `completions`, `check-config`, `config-reference`, `audit` and
/// `serve` take none).
#[derive(Args, Clone, Default)]
pub struct AgentOpts {
    /// The agent socket; default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock or /run/snykey/snykey.sock.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// `snykey serve`'s logging options.
#[derive(Args, Clone, Default)]
pub struct LogOpts {
    /// Log filter (tracing syntax, e.g. `info`, `snykey=debug`); default $SNYKEY_LOG, else server.log_level.
    #[arg(long)]
    pub log_level: Option<String>,
    /// Log format on stderr (default text).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// An org, group or client id (docs/api.md), checked before anything is sent.
#[derive(Clone, Debug)]
pub struct Id(pub String);

pub(super) fn id(name: &'static str) -> impl Fn(&str) -> Result<Id, String> + Clone {
    move |v: &str| {
        snykey::ids::check_id(name, v)
            .map(|()| Id(v.to_string()))
            .map_err(|e| e.to_string())
    }
}

pub(super) fn duration(v: &str) -> Result<Duration, String> {
    snykey::duration::parse_duration(v)
}

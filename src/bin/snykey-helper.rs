//! `snykey-helper`: asks the agent for a token and prints it (SPEC §5).
//!
//! std only: no async runtime, no TLS, no config parsing. One `write` of a
//! fixed HTTP/1.1 request on the Unix socket, one read of the answer.

use snykey::exit;
use snykey::ids::check_id;
use snykey::render::{Format, field, string_fields, token_output};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Long enough for a refresh at Snyk with its retries; the agent times out first.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

const USAGE: &str = "usage: snykey-helper [--socket PATH] [--min-validity DUR] [--format token|json|env] ORG_ID CLIENT_ID
       snykey-helper [--socket PATH] [--min-validity DUR] exec ORG_ID CLIENT_ID -- COMMAND [ARG...]
ORG_ID and CLIENT_ID may come from SNYKEY_ORG_ID / SNYKEY_CLIENT_ID, the socket from SNYKEY_SOCKET.";

struct Args {
    socket: Option<PathBuf>,
    min_validity: Option<u64>,
    format: Format,
    exec: Option<Vec<String>>,
    ids: Vec<String>,
}

fn fail(code: i32, message: &str) -> i32 {
    eprintln!("snykey-helper: {message}");
    code
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        socket: None,
        min_validity: None,
        format: Format::Token,
        exec: None,
        ids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let mut exec_mode = false;
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-V" | "--version" => {
                println!("snykey-helper {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(exit::OK);
            }
            "--socket" => args.socket = Some(PathBuf::from(value("--socket")?)),
            "--min-validity" => {
                let v = value("--min-validity")?;
                let d = snykey::duration::parse_duration(&v)
                    .map_err(|e| format!("--min-validity: {e}"))?;
                args.min_validity = Some(d.as_secs());
            }
            "--format" => {
                let v = value("--format")?;
                args.format = Format::parse(&v)
                    .ok_or_else(|| format!("--format must be token, json or env, not {v:?}"))?;
            }
            "--" if exec_mode => {
                args.exec = Some(it.by_ref().collect());
                break;
            }
            "exec" if args.ids.is_empty() && !exec_mode => exec_mode = true,
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => args.ids.push(a),
        }
    }
    if exec_mode && args.exec.as_ref().is_none_or(|c| c.is_empty()) {
        return Err("exec needs a command after --".into());
    }
    Ok(args)
}

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return exit::OK;
        }
        Err(e) => return fail(exit::USAGE, &format!("{e}\n{USAGE}")),
    };
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (org, client) = match args.ids.as_slice() {
        [o, c] => (o.clone(), c.clone()),
        [] => match (env("SNYKEY_ORG_ID"), env("SNYKEY_CLIENT_ID")) {
            (Some(o), Some(c)) => (o, c),
            _ => {
                return fail(
                    exit::USAGE,
                    &format!(
                        "ORG_ID and CLIENT_ID are required (or SNYKEY_ORG_ID and SNYKEY_CLIENT_ID)\n{USAGE}"
                    ),
                );
            }
        },
        _ => {
            return fail(
                exit::USAGE,
                &format!(
                    "expected ORG_ID CLIENT_ID, got {} argument(s)\n{USAGE}",
                    args.ids.len()
                ),
            );
        }
    };
    for (name, v) in [("org_id", &org), ("client_id", &client)] {
        if let Err(e) = check_id(name, v) {
            return fail(exit::USAGE, &e.to_string());
        }
    }
    let socket = args.socket.unwrap_or_else(snykey::paths::default_socket);

    let mut request = format!("GET /v1/credentials/{org}/{client}");
    if let Some(mv) = args.min_validity {
        request.push_str(&format!("?min_validity={mv}"));
    }
    request.push_str(
        " HTTP/1.1\r\nHost: snykey\r\nUser-Agent: snykey-helper\r\nConnection: close\r\n\r\n",
    );

    let unreachable = |e: std::io::Error| {
        fail(
            exit::UNAVAILABLE,
            &format!(
                "cannot reach the snykey agent at {}: {e}; is `snykey serve` running? (set --socket or SNYKEY_SOCKET)",
                socket.display()
            ),
        )
    };
    let mut stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => return unreachable(e),
    };
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return unreachable(e);
    }
    let mut answer = Vec::with_capacity(2048);
    if let Err(e) = stream.read_to_end(&mut answer) {
        return unreachable(e);
    }
    let Some((status, body)) = parse_response(&answer) else {
        return fail(
            exit::SOFTWARE,
            "the agent's answer was not HTTP; is something else listening on the socket?",
        );
    };
    let fields = string_fields(body).unwrap_or_default();
    if status != 200 {
        let error = field(&fields, "error").unwrap_or("the agent refused the request");
        let code = field(&fields, "code").unwrap_or("");
        return fail(
            exit::for_status(status),
            &format!("{error} ({})", exit::advice(status, code)),
        );
    }
    let Some(token) = field(&fields, "access_token") else {
        return fail(exit::SOFTWARE, "the agent's answer had no access_token");
    };
    let expires_at = field(&fields, "expires_at").unwrap_or("");
    let snyk_api = field(&fields, "snyk_api");

    if let Some(command) = args.exec {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..]).env("SNYK_OAUTH_TOKEN", token);
        if let Some(api) = snyk_api {
            cmd.env("SNYK_API", api);
        }
        // Replaces this process: the command's exit status is ours.
        let e = cmd.exec();
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        };
        return fail(code, &format!("cannot run {}: {e}", command[0]));
    }
    let out = token_output(args.format, token, expires_at, snyk_api);
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return exit::SOFTWARE;
    }
    exit::OK
}

/// Status code and body of an HTTP/1.1 answer (Content-Length or read-to-close).
fn parse_response(raw: &[u8]) -> Option<(u16, &str)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut body = body;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                let n: usize = v.trim().parse().ok()?;
                body = body.get(..n)?;
            }
        }
    }
    Some((status, body))
}

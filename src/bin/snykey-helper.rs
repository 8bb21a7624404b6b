//! `snykey-helper`: asks the agent for a token and prints it (the README's "Getting a token into a tool").
//!
//! std only: no async runtime, no TLS, no config parsing. One `write` of a
//! fixed HTTP/1.1 request on the Unix socket, reads until the answer's
//! `Content-Length` is in (not until the agent closes).
//!
//! `#![no_main]`: the C `main` below is the entry point, so std's runtime
//! start-up does not run. On Linux that start-up reads `/proc/self/maps` (to
//! find the main thread's stack for the overflow guard), installs an
//! alternate signal stack and SEGV/BUS handlers, and ignores SIGPIPE — about
//! a fifth of the helper's whole run time, for a process that lives a
//! millisecond and recurses nowhere. What the helper needs of it is done here
//! instead: fds 0–2 are made valid (so the socket can never become "stdout"),
//! and the socket write uses `MSG_NOSIGNAL` instead of ignoring SIGPIPE.
//! `std::env::args` still works: glibc hands std the arguments through
//! `.init_array`.

#![cfg_attr(not(test), no_main)]

use snykey::exit;
use snykey::ids::check_id;
use snykey::render::{Format, SnykEnv, field, string_fields, token_output};
use snykey::wire::{ErrorCode, paths};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Longer than the agent ever keeps a token caller waiting (twice Snyk's
/// timeout plus ten seconds: 70 s by default; the agent answers 503 then, and
/// the refresh itself runs on), so the agent always answers first.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(150);

const USAGE: &str = "usage: snykey-helper [--socket PATH] [--min-validity DUR] [--refresh] [--format token|json|env] ORG_ID CLIENT_ID
       snykey-helper [--socket PATH] [--min-validity DUR] [--refresh] exec ORG_ID CLIENT_ID -- COMMAND [ARG...]
ORG_ID and CLIENT_ID may come from SNYKEY_ORG_ID / SNYKEY_CLIENT_ID, the socket from SNYKEY_SOCKET.";

/// `--help`: what the helper is, every option, the exit codes.
const HELP: &str = "snykey-helper: prints a fresh Snyk OAuth access token from the snykey agent.

  snykey-helper exec ORG_ID CLIENT_ID -- snyk test

or, in a shell script (`|| exit`: without it a failed helper leaves the token empty
and the script goes on):

  SNYK_OAUTH_TOKEN=$(snykey-helper ORG_ID CLIENT_ID) || exit
  export SNYK_OAUTH_TOKEN

Options:
  --socket PATH        the agent socket (default $SNYKEY_SOCKET, $XDG_RUNTIME_DIR/snykey/snykey.sock
                       or /run/snykey/snykey.sock)
  --min-validity DUR   the token must stay valid this long (300, 5m, 1h30m, '5 minutes'; default: the agent's)
  --refresh            mint a new token now, e.g. after a 401 for a revoked token (at most one per
                       credential per 10 s; callers inside that window get the same new token)
  --format FORMAT      token (default: the token and a newline), json, or env (export lines:
                       SNYK_OAUTH_TOKEN, SNYK_API, and SNYK_CFG_ORG unless already set;
                       SNYK_TOKEN in place of SNYK_OAUTH_TOKEN for an api_key credential)
  exec ... -- COMMAND  run COMMAND with SNYK_OAUTH_TOKEN (SNYK_TOKEN for an API key), SNYK_API
                       (the credential's region) and SNYK_CFG_ORG (ORG_ID, unless already set)
                       in its environment; exit with its status (COMMAND does not run when no
                       token can be had)
  -h, --help           this text;  -V, --version  the version and git commit

Exit codes: 0 ok; 64 usage; 66 unknown credential; 69 agent unreachable; 75 temporary failure
(Snyk or a backend: retry); 77 not permitted (the credential needs `snykey login`, or this uid is
not allowed on the socket). Errors are one line on stderr; a token never goes to stderr.
";

struct Args {
    socket: Option<PathBuf>,
    min_validity: Option<u64>,
    format: Format,
    exec: Option<Vec<String>>,
    ids: Vec<String>,
    refresh: bool,
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
        refresh: false,
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
            "--refresh" if inline.is_none() => args.refresh = true,
            "-V" | "--version" => {
                println!("snykey-helper {}", snykey::LONG_VERSION);
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

/// The process entry point (see the module comment for why not `fn main`).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    ensure_std_fds();
    run()
}

/// Opens `/dev/null` on any of fds 0–2 that is closed, as std's runtime would:
/// otherwise the agent socket could be given fd 1 and the token written back
/// into it instead of to stdout.
fn ensure_std_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the call's duration.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for p in fds {
        if p.revents & libc::POLLNVAL != 0 {
            // SAFETY: a NUL-terminated path; the fd is ours to keep open.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

fn run() -> i32 {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            print!("{HELP}");
            return exit::OK;
        }
        Err(e) => return fail(exit::USAGE, &format!("{e}\n{USAGE}")),
    };
    let (org, client) = match ids(&args) {
        Ok(ids) => ids,
        Err(code) => return code,
    };
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(snykey::paths::default_socket);
    let answer = match ask(&socket, &request(&args, &org, &client)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let Some((status, body)) = parse_response(&answer) else {
        return fail(
            exit::SOFTWARE,
            "the agent's answer was not HTTP; is something else listening on the socket?",
        );
    };
    let fields = string_fields(body).unwrap_or_default();
    if status != 200 {
        let error = field(&fields, paths::ERROR).unwrap_or("the agent refused the request");
        let code = ErrorCode::parse(field(&fields, paths::CODE).unwrap_or(""));
        return fail(
            exit::for_error(status, code),
            &exit::report(status, code, error),
        );
    }
    let Some(token) = field(&fields, paths::ACCESS_TOKEN) else {
        return fail(exit::SOFTWARE, "the agent's answer had no access_token");
    };
    let expires_at = field(&fields, paths::EXPIRES_AT).unwrap_or("");
    let env = SnykEnv::new(field(&fields, paths::SNYK_API), &org)
        .token_type(field(&fields, paths::TOKEN_TYPE));
    deliver(args, token, expires_at, env)
}

/// ORG_ID and CLIENT_ID from the arguments or the environment, checked
/// (docs/api.md); the exit code on a usage error.
fn ids(args: &Args) -> Result<(String, String), i32> {
    let env = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let (org, client) = match args.ids.as_slice() {
        [o, c] => (o.clone(), c.clone()),
        [] => match (env("SNYKEY_ORG_ID"), env("SNYKEY_CLIENT_ID")) {
            (Some(o), Some(c)) => (o, c),
            _ => {
                return Err(fail(
                    exit::USAGE,
                    &format!(
                        "ORG_ID and CLIENT_ID are required (or SNYKEY_ORG_ID and SNYKEY_CLIENT_ID)\n{USAGE}"
                    ),
                ));
            }
        },
        _ => {
            return Err(fail(
                exit::USAGE,
                &format!(
                    "expected ORG_ID CLIENT_ID, got {} argument(s)\n{USAGE}",
                    args.ids.len()
                ),
            ));
        }
    };
    for (name, v) in [("org_id", &org), ("client_id", &client)] {
        if let Err(e) = check_id(name, v) {
            return Err(fail(exit::USAGE, &e.to_string()));
        }
    }
    Ok((org, client))
}

/// The whole HTTP/1.1 request, written with one `send`.
fn request(args: &Args, org: &str, client: &str) -> String {
    let mut request = if args.refresh {
        // A forced refresh (rate-limited by the agent); --min-validity does
        // not apply: the answer is the newest token there is.
        format!("POST {}", paths::fill(paths::REFRESH, &[org, client]))
    } else {
        format!("GET {}", paths::fill(paths::CREDENTIAL, &[org, client]))
    };
    if let (Some(mv), false) = (args.min_validity, args.refresh) {
        request.push_str(&format!("?{}={mv}", paths::MIN_VALIDITY));
    }
    request.push_str(
        " HTTP/1.1\r\nHost: snykey\r\nUser-Agent: snykey-helper\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    request
}

/// Sends `request` to the agent and reads its whole answer; the exit code
/// when the agent cannot be reached or answers too much.
fn ask(socket: &std::path::Path, request: &str) -> Result<Vec<u8>, i32> {
    let unreachable = |e: std::io::Error| {
        fail(
            exit::UNAVAILABLE,
            &format!(
                "cannot reach the snykey agent at {}: {e}; is `snykey serve` running? (set --socket or SNYKEY_SOCKET)",
                socket.display()
            ),
        )
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    send_all(&stream, request.as_bytes()).map_err(unreachable)?;
    match read_answer(&mut stream) {
        Ok(a) => Ok(a),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(fail(
            exit::SOFTWARE,
            "the agent's answer was larger than 1 MiB; is something else listening on the socket?",
        )),
        Err(e) => Err(unreachable(e)),
    }
}

/// Prints the token, or runs the `exec` command with it (and with
/// `SNYK_API` and `SNYK_CFG_ORG`, as `--format env` prints them).
fn deliver(args: Args, token: &str, expires_at: &str, env: SnykEnv<'_>) -> i32 {
    if let Some(command) = args.exec {
        let mut cmd = Command::new(&command[0]);
        cmd.args(&command[1..]).env(env.token_var(), token);
        for (name, value) in env.vars() {
            cmd.env(name, value);
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
    let out = token_output(args.format, token, expires_at, env);
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

/// Writes all of `buf` with `MSG_NOSIGNAL`: a closed socket is an error to
/// report, not a SIGPIPE that kills the helper silently.
fn send_all(stream: &UnixStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads one HTTP/1.1 answer: until the head and `Content-Length` bytes of
/// body are in, or until the agent closes when there is no length.
/// The largest answer the helper reads: a token answer is a few hundred
/// bytes; whatever sends more is not the agent, and must not make the
/// helper allocate without bound.
const MAX_ANSWER: usize = 1024 * 1024;

fn read_answer(stream: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(answer);
        }
        if answer.len().saturating_add(n) > MAX_ANSWER {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "answer larger than 1 MiB",
            ));
        }
        answer.extend_from_slice(&chunk[..n]);
        if let Some(total) = complete_length(&answer) {
            if answer.len() >= total {
                return Ok(answer);
            }
        }
    }
}

/// The full length of an answer whose head is in and says `Content-Length`.
fn complete_length(raw: &[u8]) -> Option<usize> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    // An absurd Content-Length must not overflow (a panic in a debug
    // build, a wrapped "complete" length in a release one).
    end.checked_add(content_length(head)?.parse::<usize>().ok()?)
}

/// The `Content-Length` value of an answer's head, if it has one.
fn content_length(head: &str) -> Option<&str> {
    head.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.eq_ignore_ascii_case("content-length").then(|| v.trim())
    })
}

/// Status code and body of an HTTP/1.1 answer (Content-Length or read-to-close).
fn parse_response(raw: &[u8]) -> Option<(u16, &str)> {
    let text = std::str::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.split("\r\n").next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let body = match content_length(head) {
        Some(n) => body.get(..n.parse::<usize>().ok()?)?,
        None => body,
    };
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_complete_once_its_content_length_is_in() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(complete_length(&head[..20]), None, "head not in yet");
        assert_eq!(complete_length(head), Some(head.len() + 5));
        let no_length = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nabc";
        assert_eq!(complete_length(no_length), None, "read to close instead");
    }

    #[test]
    fn the_answer_is_read_up_to_its_length_without_waiting_for_a_close() {
        let (mut agent, mut helper) = UnixStream::pair().unwrap();
        agent
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap();
        // The agent keeps its end open: reading to the close would hang.
        helper
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let answer = read_answer(&mut helper).unwrap();
        assert_eq!(parse_response(&answer), Some((200, "{}")));
        drop(agent);
    }

    #[test]
    fn an_absurd_content_length_does_not_overflow() {
        // Seen while writing prop_hostile_heads_are_judged_without_panic:
        // end + length overflowed (a panic in a debug build).
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert_eq!(complete_length(raw.as_bytes()), None);
        assert_eq!(parse_response(raw.as_bytes()), None);
    }

    #[test]
    fn an_endless_answer_is_refused_at_one_mebibyte() {
        let (mut agent, mut helper) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let junk = vec![b'x'; 64 * 1024];
            // Until the helper hangs up (at most ~MAX_ANSWER + a socket buffer).
            while agent.write_all(&junk).is_ok() {}
        });
        helper
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let e = read_answer(&mut helper).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        drop(helper);
        writer.join().unwrap();
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn cases() -> u32 {
            std::env::var("SNYKEY_PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn prop_any_bytes_are_judged_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = complete_length(&raw);
                if let Some((_, body)) = parse_response(&raw) {
                    prop_assert!(body.len() <= raw.len());
                }
            }

            #[test]
            fn prop_hostile_heads_are_judged_without_panic(
                status in "[0-9]{0,6}|[a-z ]{0,4}",
                length in "[0-9]{0,25}|-1| 7 |0x10|\\PC{0,8}",
                body in "\\PC{0,64}",
            ) {
                let raw = format!("HTTP/1.1 {status} X\r\nContent-Length: {length}\r\n\r\n{body}");
                let _ = complete_length(raw.as_bytes());
                let _ = parse_response(raw.as_bytes());
            }

            #[test]
            fn prop_well_formed_answers_round_trip(status in 100u16..600, body in "\\PC{0,200}") {
                let raw = format!("HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                prop_assert_eq!(complete_length(raw.as_bytes()), Some(raw.len()));
                prop_assert_eq!(parse_response(raw.as_bytes()), Some((status, body.as_str())));
            }
        }
    }

    #[test]
    fn a_closed_socket_is_an_error_not_a_sigpipe() {
        let (agent, helper) = UnixStream::pair().unwrap();
        drop(agent);
        // The helper runs without std's runtime, so SIGPIPE is not ignored:
        // restore the default here (the test harness ignores it) so that a
        // plain write would kill this test process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let e = send_all(&helper, b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn closed_standard_fds_are_reopened_so_no_socket_takes_their_place() {
        // In a forked child: the other tests' threads open fds of their own.
        // The child only makes async-signal-safe calls (ensure_std_fds
        // allocates nothing) and reports through its exit status.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe {
                libc::close(0);
                libc::close(1);
                let closed =
                    libc::fcntl(0, libc::F_GETFD) == -1 && libc::fcntl(1, libc::F_GETFD) == -1;
                ensure_std_fds();
                let open = libc::fcntl(0, libc::F_GETFD) >= 0 && libc::fcntl(1, libc::F_GETFD) >= 0;
                let mut pair = [0; 2];
                let sockets =
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) == 0;
                let clear = sockets && pair[0] > 2 && pair[1] > 2;
                libc::_exit(if !closed {
                    2
                } else if !open {
                    3
                } else if !clear {
                    4
                } else {
                    0
                });
            }
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child did not exit");
        match libc::WEXITSTATUS(status) {
            0 => {}
            3 => panic!("fds 0 and 1 are still closed after ensure_std_fds"),
            4 => panic!("a socket got a standard fd"),
            c => panic!("the child could not close its fds (exit {c})"),
        }
    }
}

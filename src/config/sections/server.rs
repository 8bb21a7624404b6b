//! `[server]`: the agent's socket and who may use it, the listeners, the
//! audit log, logging and shutdown.

use crate::config::de;
use crate::config::keys::section;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

section! {
    /// `[server]`: the agent's socket and who may use it, the listeners, the
    /// audit log, logging and shutdown.
    pub struct ServerConfig {
        keys {
            /// The agent's Unix socket, created with `socket_mode` when it is bound. A
            /// missing directory is created 0700; an existing one that group or others
            /// may write to is refused (unless `allow_shared_dirs`). Under socket
            /// activation (`snykey.socket`) the socket systemd passes is used instead.
            #[key(
                default = "`$SNYKEY_SOCKET`, else `$RUNTIME_DIRECTORY/snykey.sock`, else `$XDG_RUNTIME_DIR/snykey/snykey.sock`, else `/run/snykey/snykey.sock`",
                check = "an absolute path whose directory exists or can be created",
                refuses = "run/snykey.sock"
            )]
            socket: PathBuf = PathBuf::new(),
            /// The socket file's mode, applied through the umask as it is bound, so
            /// there is no moment with looser permissions.
            #[key(
                check = "an octal mode (`\"0660\"`, or `660` written as a number) of at most 0777 in which the owner may read and write",
                refuses = "0400"
            )]
            #[serde(with = "de::mode")]
            socket_mode: u32 = 0o660,
            /// The uids allowed on the socket, read from each connection with
            /// `SO_PEERCRED`. With both allow-lists empty, whoever can open the socket
            /// file may use it. The agent's own uid is always allowed. A refused peer
            /// gets 403 `peer_not_allowed`.
            #[key(check = "a list of uids (whole numbers)", refuses = "root", live = true)]
            allowed_uids: Vec<u32> = Vec::new(),
            /// The gids allowed on the socket: a peer's primary group or any of its
            /// supplementary groups (`SO_PEERGROUPS`), so a pod's `fsGroup` works.
            #[key(check = "a list of gids (whole numbers)", refuses = "wheel", live = true)]
            allowed_gids: Vec<u32> = Vec::new(),
            /// Where the browser's OAuth redirect is received, on loopback. It is bound
            /// only while a login started on this agent is pending, and closed 30 s
            /// after the last one ended; a port another program holds is reported to
            /// whoever starts the login (503 `callback_unavailable`). Port 0 picks a
            /// free port (`redirect_uri` cannot be given then).
            #[key(
                check = "an address like `127.0.0.1:8080` on loopback (127.0.0.1 or [::1]): the redirect carries an authorization code",
                refuses = "0.0.0.0:8080"
            )]
            #[serde(with = "de::addr")]
            callback_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
            /// A TCP address that serves `GET /metrics` and `GET /v1/health` only (the
            /// socket serves them too).
            #[key(
                default = "none: no TCP listener",
                check = "empty, or an address like `127.0.0.1:9464`; one beyond loopback only with `metrics_allow_remote = true`",
                refuses = "0.0.0.0:9464"
            )]
            #[serde(with = "de::opt_addr")]
            metrics_listen: Option<SocketAddr> = None,
            /// Allows a `metrics_listen` address beyond loopback. Metrics name no
            /// credential, but such a listener is open to whoever reaches the host.
            #[key(check = "`true` or `false`", refuses = "maybe")]
            metrics_allow_remote: bool = false,
            /// Accepts a socket, store or journal directory, a secret file or the CA
            /// certificate that group or others may write to, with a warning, instead
            /// of refusing to start. A Kubernetes `emptyDir` is 0777 and a non-root
            /// agent cannot change it; anything in the pod could then replace what is
            /// in it.
            #[key(check = "`true` or `false`", refuses = "maybe")]
            allow_shared_dirs: bool = false,
            /// The redirect URI sent to Snyk in a browser login; the Snyk App must be
            /// registered with it. Give it only to use `localhost` or the path
            /// `/v1/callback`: otherwise it follows `callback_listen`.
            #[key(
                default = "`http://{callback_listen}/authorization-code/callback`",
                check = "a loopback `http://` URL that reaches `callback_listen` (the same address, or `localhost` for 127.0.0.1 and [::1]; the same port) at `/authorization-code/callback` or `/v1/callback`",
                refuses = "http://127.0.0.1:9/authorization-code/callback"
            )]
            redirect_uri: String = String::new(),
            /// How long requests in flight may take to finish after SIGTERM. Grants
            /// already sent to Snyk are waited for apart from this (up to twice
            /// `snyk.timeout` plus 10 s), so that the tokens they bring are kept.
            #[key(check = "a duration", refuses = "soon")]
            #[serde(with = "de::duration")]
            shutdown_grace: Duration = Duration::from_secs(10),
            /// How long a browser login stays valid; after it, its state is refused
            /// and `snykey login` exits 75.
            #[key(check = "a duration between 1s and 1h", refuses = "2h")]
            #[serde(with = "de::duration")]
            login_timeout: Duration = Duration::from_secs(600),
            /// The log filter, in tracing's syntax (`info`, `snykey=debug,warn`).
            /// `--log-level` and `$SNYKEY_LOG` override it; a reload then leaves the
            /// filter alone.
            #[key(
                check = "a tracing filter (empty means `info`)",
                refuses = "snykey=[",
                live = true
            )]
            log_level: String = "info".into(),
            /// Written into the store's claims while this agent sends a refresh token,
            /// and named in messages about them. Informational: agents recognise their
            /// own claims by a random nonce.
            #[key(
                default = "`<hostname>:<socket path>`",
                check = "at most 200 printable characters",
                refuses = "a\u{7}b"
            )]
            agent_id: String = String::new(),
            /// The directories `[[sink]]` token files may be written in (their real
            /// paths, symlinks resolved).
            #[key(
                default = "the socket's directory",
                check = "a list of absolute paths",
                refuses = "relative/dir"
            )]
            sink_dirs: Vec<PathBuf> = Vec::new(),
            /// The uids that may change things: put, delete and revoke credentials,
            /// clear a cached token, log in, register apps, manage service accounts,
            /// reload the configuration, and run `snykey doctor`'s store write check.
            /// The agent's own uid always may; while `admin_uids` and `admin_gids` are
            /// both empty, root may too. Every other peer on the socket may only read
            /// tokens (and `[[access]]` tables narrow which).
            #[key(check = "a list of uids (whole numbers)", refuses = "admin", live = true)]
            admin_uids: Vec<u32> = Vec::new(),
            /// Groups whose members (by primary or supplementary group) are admins
            /// like the uids in `admin_uids`.
            #[key(check = "a list of gids (whole numbers)", refuses = "admins", live = true)]
            admin_gids: Vec<u32> = Vec::new(),
            /// A hash-chained JSON-lines audit file: admin operations, refusals, grants
            /// at Snyk and the first hand-out of each token to each peer; never a
            /// secret. Created 0600; a reload reopens it (for logrotate); `snykey
            /// audit verify` checks the chain.
            #[key(
                default = "none: no audit log",
                check = "empty, or an absolute path to a regular file (created when missing) in a directory that exists or can be created",
                refuses = "audit.log",
                live = true
            )]
            #[serde(with = "de::opt_path")]
            audit_log: Option<PathBuf> = None,
        }
        derived {}
    }
}

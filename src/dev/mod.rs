//! `snykey dev`: the real agent on a fresh temporary directory, talking to a
//! **simulated Snyk** served in the same process — a way to see snykey work
//! (helper, `exec`, `status`, a browser login) without a Snyk App, in the
//! spirit of `bao server -dev`.
//!
//! * [`sim`] — the simulator's OAuth authority: clients, single-use refresh
//!   tokens, authorization codes with PKCE S256, access tokens. No I/O; the
//!   test suite's fake Snyk (`tests/it/support/fake_snyk.rs`) is built on it
//!   and adds fault injection and counters.
//! * [`server`] — its HTTP front on a loopback address.
//! * this module — the session: refuse anything that would reach Snyk,
//!   make the temp directory, write the agent's configuration into it,
//!   start the simulator and the agent, store one demo credential through
//!   the agent's own API, say what to try next, and on SIGINT/SIGTERM stop
//!   both and remove the directory.
//!
//! Nothing here ever talks to Snyk: `snyk.api_url` is the simulator's
//! address, the simulator listens on loopback only, and a
//! `SNYKEY_SNYK_API_URL` or `SNYKEY_SNYK_APP_URL` naming anything but a
//! loopback address is refused before anything starts.

pub mod server;
pub mod sim;

use crate::api::socket::Bound;
use crate::client::AgentClient;
use crate::config::Config;
use crate::secret::Secret;
use crate::wire::{Kind, PutCredential, PutCredentialResponse};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The demo credential's organization id.
pub const DEMO_ORG: &str = "demo-org";
/// The demo credential's client id (a Snyk App with a rotating refresh token).
pub const DEMO_CLIENT: &str = "demo-app";

/// The `SNYKEY_*` variables that would point the agent at Snyk.
const SNYK_URL_VARS: [&str; 2] = ["SNYKEY_SNYK_API_URL", "SNYKEY_SNYK_APP_URL"];

/// Config sections whose variables `snykey dev` honours: the refresh
/// timing. Everything else is its own (socket, store, cache, listeners).
const HONOURED_SECTIONS: [&str; 1] = ["SNYKEY_REFRESH_"];

/// Why `snykey dev` did not run.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// Something would make it talk to a real Snyk (exit 78).
    #[error("{0}")]
    Refused(String),
    /// It could not start or failed while running.
    #[error("{0}")]
    Failed(String),
}

/// The temporary directory of one `snykey dev` run, removed when dropped
/// (at the end of a run, on a failed start, on a panic that unwinds).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/snykey-dev-XXXXXXXX`, created 0700 (it holds the store).
    fn create() -> Result<TempDir, String> {
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let dir = base.join(sim::random_token("snykey-dev-", 10));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot create a directory in {}: {e}",
                        base.display()
                    ));
                }
            }
        }
        Err(format!(
            "cannot create a fresh directory in {}",
            base.display()
        ))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("snykey dev: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

/// A run made ready before any thread exists: the directory, the
/// simulator's listening socket and the agent's configuration.
pub struct Prepared {
    pub dir: TempDir,
    pub config: Config,
    /// The simulator's listener (bound, not yet served).
    sim_listener: std::net::TcpListener,
    sim_url: String,
    /// Variables that were ignored, for one line at start.
    pub ignored: Vec<String>,
    started: Instant,
}

impl Prepared {
    pub fn socket(&self) -> &Path {
        &self.config.server.socket
    }

    pub fn sim_url(&self) -> &str {
        &self.sim_url
    }
}

/// Where the simulator listens: loopback, on a free port unless
/// `SNYKEY_SNYK_API_URL`/`SNYKEY_SNYK_APP_URL` name a loopback address;
/// any other value of those is refused.
pub fn sim_address(env: &[(String, String)]) -> Result<SocketAddr, DevError> {
    let mut addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    for name in SNYK_URL_VARS {
        let Some((_, value)) = env.iter().find(|(k, v)| k == name && !v.is_empty()) else {
            continue;
        };
        let shown = crate::urls::redact_password(value);
        let refuse = || {
            DevError::Refused(format!(
                "snykey dev talks only to its own simulated Snyk, on a loopback address, but {name} is {shown:?}: unset it (run `snykey serve` to use a real Snyk)"
            ))
        };
        let url = url::Url::parse(value.trim()).map_err(|_| refuse())?;
        if url.scheme() != "http" {
            return Err(refuse());
        }
        let ip = match url.host() {
            Some(url::Host::Domain("localhost")) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => IpAddr::V6(ip),
            _ => return Err(refuse()),
        };
        addr = SocketAddr::new(ip, url.port().unwrap_or(0));
    }
    Ok(addr)
}

/// The variables the agent's configuration is read with: `SNYKEY_REFRESH_*`
/// and nothing else of the `SNYKEY_<SECTION>_<KEY>` kind (the socket,
/// store, cache and listeners are the run's own); the names of the ignored
/// ones. Non-config variables (`SNYKEY_LOG`, `PATH`, …) pass.
fn config_env(env: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    for (k, v) in env {
        let config_var = crate::config::SECTIONS
            .iter()
            .any(|s| k.starts_with(&format!("SNYKEY_{}_", s.name.to_ascii_uppercase())));
        if !config_var || HONOURED_SECTIONS.iter().any(|p| k.starts_with(p)) {
            kept.push((k.clone(), v.clone()));
        } else if !SNYK_URL_VARS.contains(&k.as_str()) {
            ignored.push(k.clone());
        }
    }
    (kept, ignored)
}

/// The configuration file of a run: everything in `dir`, Snyk at `sim_url`.
fn config_text(dir: &Path, sim_url: &str) -> String {
    let q = |p: PathBuf| format!("{:?}", p.display().to_string());
    format!(
        "# Written by `snykey dev`: a throwaway agent against a SIMULATED Snyk.\n\
         [server]\n\
         socket = {socket}\n\
         socket_mode = \"0600\"\n\
         callback_listen = \"127.0.0.1:0\"\n\
         shutdown_grace = \"2s\"\n\
         agent_id = \"snykey-dev\"\n\n\
         [snyk]\n\
         api_url = {api:?}\n\
         timeout = \"5s\"\n\n\
         [store]\n\
         backend = \"file\"\n\
         path = {store}\n\
         journal_dir = {journal}\n\n\
         [cache]\n\
         backend = \"memory\"\n",
        socket = q(dir.join("snykey.sock")),
        api = sim_url,
        store = q(dir.join("state/credentials.json")),
        journal = q(dir.join("state/journal")),
    )
}

/// A new file of mode 0600 holding `text`.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Refuses a real Snyk, makes the directory, binds the simulator's port and
/// loads the agent's configuration. Call before any thread exists (the
/// agent's socket is bound next, under a umask).
pub fn prepare(env: &[(String, String)]) -> Result<Prepared, DevError> {
    let started = Instant::now();
    let addr = sim_address(env)?;
    let dir = TempDir::create().map_err(DevError::Failed)?;
    let sim_listener = std::net::TcpListener::bind(addr).map_err(|e| {
        DevError::Failed(format!(
            "cannot listen on {addr} for the simulated Snyk: {e}"
        ))
    })?;
    let port = sim_listener
        .local_addr()
        .map_err(|e| DevError::Failed(e.to_string()))?
        .port();
    let sim_url = match addr.ip() {
        IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => format!("http://localhost:{port}"),
        ip => format!("http://{}", SocketAddr::new(ip, port)),
    };
    let file = dir.path().join("config.toml");
    write_private(&file, &config_text(dir.path(), &sim_url))
        .map_err(|e| DevError::Failed(format!("cannot write {}: {e}", file.display())))?;
    let (env, ignored) = config_env(env);
    let config = Config::load_from(Some(&file), &env)
        .map_err(|e| DevError::Failed(format!("invalid configuration: {e}")))?;
    if config.snyk.api_url != sim_url || config.snyk.app_url != sim_url {
        return Err(DevError::Refused(
            "snykey dev's configuration does not point at its simulated Snyk; refusing to start"
                .into(),
        ));
    }
    Ok(Prepared {
        dir,
        config,
        sim_listener,
        sim_url,
        ignored,
        started,
    })
}

/// The banner every run starts with.
pub fn banner(p: &Prepared) -> String {
    let mut s = format!(
        "snykey dev: NOT TALKING TO SNYK. A throwaway agent in {dir} uses a simulated Snyk\n\
         at {url} (loopback only); its tokens work nowhere else. Ctrl-C stops it and deletes {dir}.\n",
        dir = p.dir.path().display(),
        url = p.sim_url,
    );
    if !p.ignored.is_empty() {
        s.push_str(&format!(
            "snykey dev: ignored (a dev run has its own socket, store, cache and listeners): {}\n",
            p.ignored.join(", ")
        ));
    }
    s
}

/// What a running session tells its user.
#[derive(Debug, Clone)]
pub struct Ready {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub sim_url: String,
    /// From `prepare` to the demo credential's first token.
    pub elapsed: Duration,
}

/// How the printed commands name the two binaries (a bare name when `PATH`
/// finds that very file, else its path).
#[derive(Debug, Clone)]
pub struct Commands {
    pub snykey: String,
    pub helper: String,
}

impl Commands {
    /// For the binaries next to `exe` (the running `snykey`).
    pub fn beside(exe: &Path, path_var: Option<&std::ffi::OsStr>) -> Commands {
        let name = |bin: &str| {
            let full = exe.with_file_name(bin);
            let on_path = path_var
                .and_then(|p| {
                    std::env::split_paths(p)
                        .map(|d| d.join(bin))
                        .find(|c| c.is_file())
                })
                .and_then(|found| found.canonicalize().ok());
            if on_path.is_some() && on_path == full.canonicalize().ok() {
                bin.to_string()
            } else {
                crate::render::shell_quote(&full.display().to_string())
            }
        };
        Commands {
            snykey: name("snykey"),
            helper: name("snykey-helper"),
        }
    }
}

/// The next commands to try, one per line indented by two spaces.
pub fn next_steps(r: &Ready, c: &Commands) -> String {
    let (org, client) = (DEMO_ORG, DEMO_CLIENT);
    let socket = crate::render::shell_quote(&r.socket.display().to_string());
    format!(
        "\nReady in {ms} ms. A demo credential is stored: org {org}, client {client} (a Snyk App whose\n\
         refresh token the agent rotates). In another terminal:\n\n\
         \x20 export SNYKEY_SOCKET={socket}\n\
         \x20 {helper} {org} {client}\n\
         \x20 {helper} exec {org} {client} -- sh -c 'curl -sS -H \"Authorization: Bearer $SNYK_OAUTH_TOKEN\" \"$SNYK_API/rest/self\"; echo'\n\
         \x20 {snykey} status\n\
         \x20 {snykey} login --no-browser --org-id {org} --client-id {client}\n\n\
         The first prints a token; the second runs a command with SNYK_OAUTH_TOKEN, SNYK_API and\n\
         SNYK_CFG_ORG set (here: curl asks the simulated Snyk whether it accepts the token). The login\n\
         prints a URL: open it in a browser, or `curl -sL 'URL'`; the simulated Snyk consents at once\n\
         and sends you back to the agent's callback.\n",
        ms = r.elapsed.as_millis(),
        helper = c.helper,
        snykey = c.snykey,
    )
}

/// Waits until the agent answers on its socket.
async fn wait_for_agent(
    client: &AgentClient,
    agent: &tokio::task::JoinHandle<Result<(), crate::agent::StartError>>,
) -> Result<(), DevError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if agent.is_finished() {
            return Err(DevError::Failed("the agent stopped during start-up".into()));
        }
        match client
            .call::<serde_json::Value>(hyper::Method::GET, crate::wire::paths::HEALTH, None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(DevError::Failed(format!(
                    "the agent did not answer: {}",
                    e.report()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Stores the demo credential through the agent's API, as `snykey put`
/// does: a Snyk App's client secret and a refresh token the simulator
/// issued (the agent rotates it at once).
async fn seed(
    client: &AgentClient,
    authority: &std::sync::Mutex<sim::Authority>,
) -> Result<(), DevError> {
    let secret = sim::random_token("demo_secret_", 32);
    let refresh_token = {
        let mut a = authority.lock().unwrap_or_else(|p| p.into_inner());
        a.register(DEMO_CLIENT, Some(&secret));
        a.issue_refresh_token(DEMO_CLIENT)
    };
    let body = PutCredential {
        org_id: DEMO_ORG.into(),
        client_id: DEMO_CLIENT.into(),
        kind: Some(Kind::OauthApp),
        client_secret: Some(Secret::new(secret)),
        refresh_token: Some(Secret::new(refresh_token)),
        private_key_pem: None,
        key_id: None,
        api_key: None,
        api_url: None,
    };
    let body = serde_json::to_vec(&body).map_err(|e| DevError::Failed(e.to_string()))?;
    client
        .call::<PutCredentialResponse>(
            hyper::Method::PUT,
            crate::wire::paths::CREDENTIALS,
            Some(body),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            DevError::Failed(format!(
                "storing the demo credential failed: {}",
                e.report()
            ))
        })
}

/// Runs the session until SIGINT/SIGTERM: the simulator, the agent on
/// `bound`, the demo credential; `on_ready` is called once it serves.
/// The directory is removed when `prepared` is dropped, on every way out.
pub async fn run(
    prepared: Prepared,
    bound: Bound,
    log_reloader: Option<crate::agent::LogReloader>,
    on_ready: impl FnOnce(&Ready),
) -> Result<(), DevError> {
    let Prepared {
        dir,
        config,
        sim_listener,
        sim_url,
        started,
        ..
    } = prepared;
    let (stop_sim, sim_stopped) = watch::channel(false);
    sim_listener
        .set_nonblocking(true)
        .map_err(|e| DevError::Failed(e.to_string()))?;
    let listener = tokio::net::TcpListener::from_std(sim_listener)
        .map_err(|e| DevError::Failed(e.to_string()))?;
    let simulator = server::SimulatedSnyk::serve(listener, sim::Authority::default(), sim_stopped)
        .map_err(DevError::Failed)?;
    tracing::warn!(
        snyk = %sim_url,
        "dev mode: snyk.api_url is snykey's simulated Snyk on a loopback address; nothing is sent to Snyk"
    );
    let socket = config.server.socket.clone();
    let agent = tokio::spawn(crate::agent::run(
        config,
        bound,
        crate::systemd::Notifier::from_env(),
        log_reloader,
    ));
    let client = AgentClient::new(&socket, Duration::from_secs(30));
    let session = async {
        wait_for_agent(&client, &agent).await?;
        seed(&client, &simulator.authority).await?;
        let path =
            crate::wire::paths::fill(crate::wire::paths::CREDENTIAL, &[DEMO_ORG, DEMO_CLIENT]);
        client
            .call::<serde_json::Value>(hyper::Method::GET, &path, None)
            .await
            .map_err(|e| {
                DevError::Failed(format!("the demo credential gave no token: {}", e.report()))
            })?;
        Ok::<_, DevError>(())
    };
    let outcome = session.await;
    if outcome.is_ok() {
        on_ready(&Ready {
            dir: dir.path().to_path_buf(),
            socket: socket.clone(),
            sim_url: sim_url.clone(),
            elapsed: started.elapsed(),
        });
    } else if !agent.is_finished() {
        // The agent stops as it does on SIGTERM (its handlers are installed
        // before it answers on the socket): grants in flight finish first.
        // SAFETY: kill(2) on our own pid has no memory effects.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    }
    let ran = agent
        .await
        .map_err(|e| DevError::Failed(format!("the agent task failed: {e}")))
        .and_then(|r| r.map_err(|e| DevError::Failed(e.to_string())));
    let _ = stop_sim.send(true);
    simulator.stopped().await;
    drop(dir);
    // The agent's own failure says more than "it stopped during start-up".
    ran.and(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_a_loopback_snyk_url_is_accepted() {
        let free = sim_address(&env(&[])).unwrap();
        assert!(free.ip().is_loopback() && free.port() == 0);
        let pinned =
            sim_address(&env(&[("SNYKEY_SNYK_API_URL", "http://localhost:18080")])).unwrap();
        assert_eq!(pinned, "127.0.0.1:18080".parse().unwrap());
        for real in [
            "https://api.snyk.io",
            "https://api.eu.snyk.io",
            "http://10.1.2.3:8080",
            "https://localhost:8443",
            "not a url",
        ] {
            for var in SNYK_URL_VARS {
                let e = sim_address(&env(&[(var, real)])).unwrap_err();
                assert!(matches!(e, DevError::Refused(_)), "{var}={real}");
                assert!(e.to_string().contains(var), "{e}");
            }
        }
    }

    #[test]
    fn printed_commands_use_bare_names_only_when_path_finds_these_binaries() {
        let dir = tempfile::tempdir().unwrap();
        for bin in ["snykey", "snykey-helper"] {
            std::fs::write(dir.path().join(bin), "").unwrap();
        }
        let exe = dir.path().join("snykey");
        let on_path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        let c = Commands::beside(&exe, Some(&on_path));
        assert_eq!(
            (c.snykey.as_str(), c.helper.as_str()),
            ("snykey", "snykey-helper")
        );
        let c = Commands::beside(&exe, Some(std::ffi::OsStr::new("/nonexistent")));
        assert_eq!(
            c.helper,
            dir.path().join("snykey-helper").display().to_string()
        );
        let c = Commands::beside(&exe, None);
        assert_eq!(c.snykey, exe.display().to_string());
    }

    #[test]
    fn the_run_keeps_its_own_socket_store_and_cache() {
        let (kept, ignored) = config_env(&env(&[
            ("SNYKEY_STORE_BACKEND", "openbao"),
            ("SNYKEY_CACHE_URL", "redis://x"),
            ("SNYKEY_REFRESH_AT", "0.5"),
            ("SNYKEY_LOG", "debug"),
            ("SNYKEY_SNYK_API_URL", "http://localhost:1"),
        ]));
        let names: Vec<&str> = kept.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["SNYKEY_REFRESH_AT", "SNYKEY_LOG"]);
        assert_eq!(ignored, ["SNYKEY_STORE_BACKEND", "SNYKEY_CACHE_URL"]);
    }
}

//! Validation, one function per section: each takes its section as given,
//! fills in the defaults that depend on other keys or on the environment, and
//! refuses what cannot work, naming the key and where its value came from.

use super::files::{credential_path, hostname};
use super::sources::Sources;
use super::url_check::{
    check_cache_url, check_redirect, derive_app_url, normalize_base_url, normalize_base_url_any,
};
use super::{
    BaoAuth, PublishConfig, RefreshConfig, ServerConfig, SnykConfig, StoreBackend, StoreConfig,
};
use super::{ConfigError, Lookup};
use crate::urls::SecretUrl;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `[server]`: where the agent listens ([`server_listeners`]), its log
/// filter and login timeout, then its name and paths ([`server_paths`]).
pub(super) fn server(
    s: &mut ServerConfig,
    src: &Sources,
    env: Lookup<'_>,
) -> Result<(), ConfigError> {
    server_listeners(s, src, env)?;
    let err = |k: &str, m: &str| src.err("server", k, m);
    if s.log_level.trim().is_empty() {
        s.log_level = "info".into();
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&s.log_level) {
        return Err(src.err(
            "server",
            "log_level",
            format!("is not a log filter like \"info\" or \"snykey=debug\": {e}"),
        ));
    }
    if s.login_timeout < Duration::from_secs(1) || s.login_timeout > Duration::from_secs(3600) {
        return Err(err("login_timeout", "must be between 1s and 1h"));
    }
    server_paths(s, src)
}

/// The socket (its default from the environment) and its mode, the OAuth
/// callback and metrics listeners, and the redirect URI that follows the
/// callback listener.
fn server_listeners(
    s: &mut ServerConfig,
    src: &Sources,
    env: Lookup<'_>,
) -> Result<(), ConfigError> {
    let err = |k: &str, m: &str| src.err("server", k, m);
    if s.socket.as_os_str().is_empty() {
        s.socket = crate::paths::agent_socket_in(env);
    }
    if !s.socket.is_absolute() {
        return Err(src.err(
            "server",
            "socket",
            format!("{} must be an absolute path", quoted(&s.socket)),
        ));
    }
    if s.socket_mode & 0o600 != 0o600 {
        return Err(err(
            "socket_mode",
            "the owner needs read and write (at least 0600)",
        ));
    }
    if !s.callback_listen.ip().is_loopback() {
        return Err(src.err(
            "server",
            "callback_listen",
            format!(
                "\"{}\" must be a loopback address (127.0.0.1 or [::1]): the OAuth callback carries an authorization code",
                s.callback_listen
            ),
        ));
    }
    if s.metrics_listen.is_some_and(|a| !a.ip().is_loopback()) && !s.metrics_allow_remote {
        return Err(err(
            "metrics_listen",
            "is not a loopback address: anyone who can reach it may connect; set server.metrics_allow_remote = true to serve metrics beyond this host",
        ));
    }
    // Unless given, the redirect URI follows the listener; given, it must
    // reach it (issue 24: a changed callback_listen left it on 8080).
    if s.redirect_uri.is_empty() {
        s.redirect_uri = format!(
            "http://{}{}",
            s.callback_listen,
            crate::wire::paths::CALLBACK
        );
    } else {
        check_redirect(s.callback_listen, &s.redirect_uri)
            .map_err(|m| src.err("server", "redirect_uri", m))?;
    }
    Ok(())
}

/// The agent's id, the sink directories and the audit log: defaults taken
/// from the socket's path (so after [`server_listeners`]), paths absolute.
fn server_paths(s: &mut ServerConfig, src: &Sources) -> Result<(), ConfigError> {
    let err = |k: &str, m: &str| src.err("server", k, m);
    if s.agent_id.is_empty() {
        s.agent_id = format!("{}:{}", hostname(), s.socket.display());
    } else if s.agent_id.len() > 200 || s.agent_id.chars().any(char::is_control) {
        return Err(err("agent_id", "must be at most 200 printable characters"));
    }
    if s.sink_dirs.is_empty() && !src.is_given("server", "sink_dirs") {
        s.sink_dirs = s
            .socket
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
    }
    if let Some(d) = s.sink_dirs.iter().find(|d| !d.is_absolute()) {
        return Err(src.err(
            "server",
            "sink_dirs",
            format!(
                "{} is relative: every entry must be an absolute directory path",
                quoted(d)
            ),
        ));
    }
    if let Some(p) = s.audit_log.as_ref().filter(|p| !p.is_absolute()) {
        return Err(src.err(
            "server",
            "audit_log",
            format!("{} must be an absolute path", quoted(p)),
        ));
    }
    Ok(())
}

pub(super) fn snyk(s: &mut SnykConfig, src: &Sources) -> Result<(), ConfigError> {
    s.api_url = normalize_base_url(&s.api_url).map_err(|m| src.err("snyk", "api_url", m))?;
    s.app_url = if s.app_url.is_empty() {
        derive_app_url(&s.api_url)
    } else {
        normalize_base_url(&s.app_url).map_err(|m| src.err("snyk", "app_url", m))?
    };
    if !is_rest_version(&s.rest_version) {
        return Err(src.err(
            "snyk",
            "rest_version",
            format!(
                "{:?} is not a version like 2024-10-15 (optionally ~beta)",
                crate::urls::shown_value(&s.rest_version)
            ),
        ));
    }
    if s.timeout < Duration::from_secs(1) {
        return Err(src.err("snyk", "timeout", "must be at least 1s"));
    }
    Ok(())
}

pub(super) fn cache(
    c: &mut super::CacheConfig,
    src: &Sources,
    env: Lookup<'_>,
) -> Result<(), ConfigError> {
    check_cache_url(c.url.expose()).map_err(|m| src.err("cache", "url", m))?;
    if c.key_prefix.is_empty()
        || c.key_prefix
            .contains(|ch: char| ch.is_whitespace() || ch == ':')
    {
        return Err(src.err(
            "cache",
            "key_prefix",
            "must be non-empty, without spaces or ':'",
        ));
    }
    if let Some(p) = &c.password_file {
        c.password_file = Some(credential_path(src, "cache", "password_file", p, env)?);
    }
    super::files::cache_credentials(c, src)
}

pub(super) fn store(
    s: &mut StoreConfig,
    src: &Sources,
    env: Lookup<'_>,
) -> Result<(), ConfigError> {
    store_paths(s, src, env)?;
    store_openbao(s, src, env)
}

/// `cache.snapshot_path`: absolute, defaulting to the directory of the file
/// store's document (which one agent at a time can lock) or, with OpenBao,
/// to the journal directory (which one agent locks); `cache.snapshot_interval`.
pub(super) fn snapshot(
    c: &mut super::CacheConfig,
    store: &StoreConfig,
    src: &Sources,
) -> Result<(), ConfigError> {
    if c.snapshot_path.as_os_str().is_empty() {
        let dir = match store.backend {
            StoreBackend::File => store.path.parent().unwrap_or(&store.journal_dir),
            StoreBackend::OpenBao => &store.journal_dir,
        };
        c.snapshot_path = dir.join("access-tokens.snapshot");
    }
    if !c.snapshot_path.is_absolute() {
        return Err(src.err(
            "cache",
            "snapshot_path",
            format!("{} must be an absolute path", quoted(&c.snapshot_path)),
        ));
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&c.snapshot_interval) {
        return Err(src.err("cache", "snapshot_interval", "must be between 1s and 1h"));
    }
    Ok(())
}

/// `store.path` and `store.journal_dir`: absolute, defaulting to the state
/// directory (the journal beside a file store given its own path).
fn store_paths(s: &mut StoreConfig, src: &Sources, env: Lookup<'_>) -> Result<(), ConfigError> {
    let state_dir = crate::paths::default_state_dir_in(env);
    let path_given = !s.path.as_os_str().is_empty();
    if !path_given {
        s.path = state_dir.join("credentials.json");
    }
    if !s.path.is_absolute() {
        return Err(src.err(
            "store",
            "path",
            format!("{} must be an absolute path", quoted(&s.path)),
        ));
    }
    if s.journal_dir.as_os_str().is_empty() {
        s.journal_dir = match (s.backend, path_given) {
            (StoreBackend::File, true) => s.path.parent().map(|p| p.join("journal")),
            _ => None,
        }
        .unwrap_or_else(|| state_dir.join("journal"));
    }
    if !s.journal_dir.is_absolute() {
        return Err(src.err(
            "store",
            "journal_dir",
            format!("{} must be an absolute path", quoted(&s.journal_dir)),
        ));
    }
    Ok(())
}

/// The OpenBao keys: addresses (else `BAO_ADDR`/`VAULT_ADDR`), the token
/// (else `BAO_TOKEN`/`VAULT_TOKEN`), credential files, the KV mount and
/// prefix, and what the chosen `auth` needs.
fn store_openbao(s: &mut StoreConfig, src: &Sources, env: Lookup<'_>) -> Result<(), ConfigError> {
    let err = |k: &str, m: &str| src.err("store", k, m);
    if s.addrs.is_empty() {
        s.addrs = vec![SecretUrl::new(
            env("BAO_ADDR")
                .or_else(|| env("VAULT_ADDR"))
                .unwrap_or_else(|| "http://127.0.0.1:8200".into()),
        )];
    }
    let mut addrs: Vec<SecretUrl> = Vec::with_capacity(s.addrs.len());
    for a in &s.addrs {
        let a = normalize_base_url_any(a.expose()).map_err(|m| src.err("store", "addr", m))?;
        let a = SecretUrl::new(a);
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    s.addr = addrs[0].clone();
    s.addrs = addrs;
    if s.token.is_none() {
        s.token = env("BAO_TOKEN")
            .or_else(|| env("VAULT_TOKEN"))
            .map(crate::secret::Secret::new);
    }
    for (key, file) in [
        ("token_file", &mut s.token_file),
        ("role_id_file", &mut s.role_id_file),
        ("secret_id_file", &mut s.secret_id_file),
    ] {
        if let Some(p) = file.as_ref() {
            *file = Some(credential_path(src, "store", key, p, env)?);
        }
    }
    s.kubernetes_jwt_file = credential_path(
        src,
        "store",
        "kubernetes_jwt_file",
        &s.kubernetes_jwt_file,
        env,
    )?;
    if s.ca_cert.is_none() {
        s.ca_cert = env("BAO_CACERT")
            .or_else(|| env("VAULT_CACERT"))
            .map(PathBuf::from);
    }
    if s.kv_version != 1 && s.kv_version != 2 {
        return Err(src.err(
            "store",
            "kv_version",
            format!("{} must be 1 or 2", s.kv_version),
        ));
    }
    for (key, v) in [("mount", &mut s.mount), ("prefix", &mut s.prefix)] {
        kv_path(v).map_err(|m| src.err("store", key, m))?;
    }
    if s.backend == StoreBackend::OpenBao {
        match s.auth {
            BaoAuth::Token if s.token.is_none() && s.token_file.is_none() => {
                return Err(err(
                    "token",
                    "the openbao store with auth = \"token\" needs store.token, store.token_file or BAO_TOKEN",
                ));
            }
            BaoAuth::AppRole if s.role_id_file.is_none() || s.secret_id_file.is_none() => {
                return Err(err(
                    "auth",
                    "approle needs store.role_id_file and store.secret_id_file",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn refresh(r: &RefreshConfig, src: &Sources) -> Result<(), ConfigError> {
    if !(0.0..=0.5).contains(&r.jitter) {
        return Err(src.err("refresh", "jitter", "must be between 0 and 0.5"));
    }
    if !(r.at > 0.0 && r.at < 1.0) {
        return Err(src.err(
            "refresh",
            "at",
            "must be between 0 and 1 (exclusive), e.g. 0.67",
        ));
    }
    if r.min_validity > Duration::from_secs(24 * 3600) {
        return Err(src.err("refresh", "min_validity", "must be at most 24h"));
    }
    Ok(())
}

/// A KV mount or prefix, its slashes trimmed: a non-empty path without
/// empty, `.` or `..` segments.
fn kv_path(v: &mut String) -> Result<(), String> {
    *v = v.trim_matches('/').to_string();
    if v.is_empty()
        || v.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "{:?} must be a non-empty path without . or .. segments",
            crate::urls::shown_value(v)
        ));
    }
    Ok(())
}

/// `[publish]`: off unless `prefix` is given; then on the store's OpenBao,
/// KV v2, beside (never inside) the store's records.
pub(super) fn publish(
    p: &mut PublishConfig,
    store: &StoreConfig,
    src: &Sources,
) -> Result<(), ConfigError> {
    let err = |k: &str, m: String| src.err("publish", k, m);
    p.prefix = p.prefix.trim_matches('/').to_string();
    p.patterns = p
        .credentials
        .iter()
        .map(|c| crate::access::Pattern::parse(c))
        .collect::<Result<_, _>>()
        .map_err(|m| err("credentials", m))?;
    if p.min_validity < Duration::from_secs(1) || p.min_validity > Duration::from_secs(24 * 3600) {
        return Err(src.err(
            "publish",
            "min_validity",
            "must be between 1s and 24h (and below Snyk's token lifetime, an hour)",
        ));
    }
    if p.mount.trim_matches('/').is_empty() {
        p.mount = store.mount.clone();
    } else {
        kv_path(&mut p.mount).map_err(|m| err("mount", m))?;
    }
    if !p.enabled() {
        return Ok(());
    }
    kv_path(&mut p.prefix).map_err(|m| err("prefix", m))?;
    if store.backend != StoreBackend::OpenBao {
        return Err(err(
            "prefix",
            "publishing writes to OpenBao: it needs store.backend = \"openbao\" (jobs read the tokens there with their own identity)".into(),
        ));
    }
    if store.kv_version != 2 {
        return Err(err(
            "prefix",
            "publishing needs a KV v2 store (store.kv_version = 2): published tokens are ordered by the records' generations, which only KV v2 keeps across a delete".into(),
        ));
    }
    let segments = |s: &str| s.split('/').map(str::to_string).collect::<Vec<_>>();
    let (mine, theirs) = (segments(&p.prefix), segments(&store.prefix));
    if p.mount == store.mount && (mine.starts_with(&theirs) || theirs.starts_with(&mine)) {
        return Err(err(
            "prefix",
            format!(
                "{:?} overlaps store.prefix {:?} on the mount {:?}: jobs may read published tokens, never the store's records; pick a path beside it (e.g. \"snyk-tokens\")",
                p.prefix, store.prefix, p.mount
            ),
        ));
    }
    Ok(())
}

/// A path as a message shows it: quoted, anything secret-shaped redacted.
fn quoted(p: &Path) -> String {
    format!("{:?}", crate::urls::shown_value(&p.display().to_string()))
}

pub(super) fn is_rest_version(v: &str) -> bool {
    let (date, tag) = match v.split_once('~') {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && tag.is_none_or(|t| matches!(t, "beta" | "experimental"))
}

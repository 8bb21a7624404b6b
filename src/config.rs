//! Configuration: embedded defaults, then a TOML file, then `SNYKEY_<SECTION>_<KEY>`
//! environment variables (SPEC §7). Validated once, at start, into typed values;
//! every error names the key and where its value came from.

use crate::duration::{format_duration, parse_duration};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;
use toml::Value;

/// Where the agent looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/snykey/config.toml";
/// Snyk's default (US-01) region.
pub const DEFAULT_API_URL: &str = "https://api.snyk.io";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub snyk: SnykConfig,
    pub cache: CacheConfig,
    pub store: StoreConfig,
    pub refresh: RefreshConfig,
    /// Who may do what, and the audit trail (issue 17).
    pub access: AccessConfig,
    /// The file this was read from, if any (SIGHUP re-reads it).
    pub file: Option<PathBuf>,
    /// `[[sink]]` tables: token files the agent keeps current (issue 14).
    pub sinks: Vec<crate::sink::SinkConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    pub callback_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    /// `metrics_listen` may be a non-loopback address only when this is set:
    /// metrics name no credential, but the listener is open to the network.
    pub metrics_allow_remote: bool,
    /// Accept socket, store and journal directories that group or others can
    /// write to (a Kubernetes emptyDir), with a warning (see `crate::dirs`).
    pub allow_shared_dirs: bool,
    pub redirect_uri: String,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
    /// How long a browser login's state stays valid.
    pub login_timeout: Duration,
    /// Log filter from the file (tracing syntax); `--log-level` and
    /// `SNYKEY_LOG` override it. SIGHUP applies a changed value.
    pub log_level: Option<String>,
    /// Shown in store claims (SPEC §2), informational; default
    /// `<hostname>:<socket path>`.
    pub agent_id: String,
    /// Directories `[[sink]]` files may be written in (issue 14); default:
    /// the socket's directory.
    pub sink_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SnykConfig {
    /// Without a trailing slash, e.g. `https://api.eu.snyk.io`.
    pub api_url: String,
    pub app_url: String,
    pub rest_version: String,
    /// Timeout of one call to Snyk.
    pub timeout: Duration,
}

impl SnykConfig {
    pub fn is_default_region(&self) -> bool {
        self.api_url == DEFAULT_API_URL
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheBackend {
    Memory,
    Redis,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    /// May hold an ACL password, so it is a secret.
    pub url: Secret,
    pub key_prefix: String,
    // --- issue 14: secrets from files (cache.username, cache.password_file) ---
    /// The Redis ACL user, when not in the URL (`cache.username`).
    pub username: Option<String>,
    /// Where the Redis password came from (`cache.password_file`, resolved);
    /// its value is already in `url`.
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreBackend {
    File,
    OpenBao,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaoAuth {
    Token,
    AppRole,
    Kubernetes,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub path: PathBuf,
    /// The recovery journal of rotated refresh tokens (SPEC §2 step 4).
    pub journal_dir: PathBuf,
    /// The first of `addrs` (what one-node deployments and messages use).
    pub addr: String,
    /// Every node of the OpenBao cluster (`store.addr` as a TOML array, or
    /// comma-separated in `SNYKEY_STORE_ADDR`); the agent follows the active one.
    pub addrs: Vec<String>,
    pub auth: BaoAuth,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub role_id_file: Option<PathBuf>,
    pub secret_id_file: Option<PathBuf>,
    pub kubernetes_role: String,
    pub kubernetes_jwt_file: PathBuf,
    pub auth_mount: String,
    pub mount: String,
    pub kv_version: u8,
    pub prefix: String,
    pub ca_cert: Option<PathBuf>,
    /// SPEC §2 rule 7: this agent is the only one using this store prefix,
    /// so it may rotate with the journal as its durable copy while the store
    /// refuses writes. Always true for the file store.
    pub exclusive: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshConfig {
    pub min_validity: Duration,
    pub jitter: f64,
    pub at: f64,
    /// At most one forced refresh per credential per this interval (issue 14).
    pub force_interval: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Str,
    Int,
    Float,
    Duration,
    UintList,
    Bool,
    /// Issue 14: a list of strings (comma-separated in a variable).
    StrList,
}

/// Every key the config knows, with its type for environment variables.
const KEYS: &[(&str, &str, Kind)] = &[
    ("server", "socket", Kind::Str),
    ("server", "socket_mode", Kind::Str),
    ("server", "allowed_uids", Kind::UintList),
    ("server", "allowed_gids", Kind::UintList),
    ("server", "callback_listen", Kind::Str),
    ("server", "metrics_listen", Kind::Str),
    ("server", "metrics_allow_remote", Kind::Bool),
    ("server", "allow_shared_dirs", Kind::Bool),
    ("server", "redirect_uri", Kind::Str),
    ("server", "shutdown_grace", Kind::Duration),
    ("server", "login_timeout", Kind::Duration),
    ("server", "log_level", Kind::Str),
    ("server", "agent_id", Kind::Str),
    ("snyk", "api_url", Kind::Str),
    ("snyk", "app_url", Kind::Str),
    ("snyk", "rest_version", Kind::Str),
    ("snyk", "timeout", Kind::Duration),
    ("cache", "backend", Kind::Str),
    ("cache", "url", Kind::Str),
    ("cache", "key_prefix", Kind::Str),
    ("store", "backend", Kind::Str),
    ("store", "path", Kind::Str),
    ("store", "journal_dir", Kind::Str),
    ("store", "addr", Kind::Str),
    ("store", "auth", Kind::Str),
    ("store", "token", Kind::Str),
    ("store", "token_file", Kind::Str),
    ("store", "role_id_file", Kind::Str),
    ("store", "secret_id_file", Kind::Str),
    ("store", "kubernetes_role", Kind::Str),
    ("store", "kubernetes_jwt_file", Kind::Str),
    ("store", "auth_mount", Kind::Str),
    ("store", "mount", Kind::Str),
    ("store", "kv_version", Kind::Int),
    ("store", "prefix", Kind::Str),
    ("store", "ca_cert", Kind::Str),
    ("store", "exclusive", Kind::Bool),
    ("refresh", "min_validity", Kind::Duration),
    ("refresh", "jitter", Kind::Float),
    ("refresh", "at", Kind::Float),
    // --- issue 14: secrets from files, forced refresh ---
    ("cache", "username", Kind::Str),
    ("cache", "password_file", Kind::Str),
    ("refresh", "force_interval", Kind::Duration),
    ("server", "sink_dirs", Kind::StrList),
    // Issue 17: who may do what (see AccessConfig below).
    ("server", "admin_uids", Kind::UintList),
    ("server", "admin_gids", Kind::UintList),
    ("server", "audit_log", Kind::Str),
];

/// A raw value and where it came from, for error messages.
#[derive(Clone)]
struct Raw {
    value: Value,
    origin: String,
}

type RawMap = BTreeMap<(&'static str, &'static str), Raw>;

impl Config {
    /// Loads the config: `explicit` if given (must exist), else
    /// [`DEFAULT_CONFIG_FILE`] if present, else none; then the environment.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(explicit, &env)
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(
        explicit: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let file = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => default_config_files(&lookup)
                .into_iter()
                .find(|p| p.exists()),
        };
        let mut raw = RawMap::new();
        let mut sink_tables = None;
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            read_toml(path, &text, &mut raw)?;
            sink_tables = text
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("sink"))
                .map(|v| (path.clone(), v));
        }
        read_env(env, &mut raw)?;
        let mut cfg = build(&raw, &lookup)?;
        cfg.server.sink_dirs = sink_dirs(&raw, &cfg.server.socket)?;
        if let Some((path, tables)) = sink_tables {
            cfg.sinks = read_sinks(&path, tables, &cfg.server.sink_dirs)?;
        }
        cfg.file = file;
        Ok(cfg)
    }

    /// The effective configuration as TOML, secrets redacted (`snykey check-config`).
    pub fn to_redacted_toml(&self) -> String {
        let s = &self.server;
        let list = |v: &[u32]| {
            format!(
                "[{}]",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        let q = |v: &str| toml::Value::String(v.to_string()).to_string();
        let opt_path = |p: &Option<PathBuf>| {
            q(&p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default())
        };
        let mut out = String::new();
        out.push_str(&format!(
            "# effective configuration{}\n\n",
            match &self.file {
                Some(p) => format!(" (file {} + environment + defaults)", p.display()),
                None => " (no file: environment + embedded defaults)".into(),
            }
        ));
        out.push_str("[server]\n");
        out.push_str(&format!(
            "socket = {}\n",
            q(&s.socket.display().to_string())
        ));
        out.push_str(&format!("socket_mode = \"{:04o}\"\n", s.socket_mode));
        out.push_str(&format!("allowed_uids = {}\n", list(&s.allowed_uids)));
        out.push_str(&format!("allowed_gids = {}\n", list(&s.allowed_gids)));
        out.push_str(&format!(
            "callback_listen = {}\n",
            q(&s.callback_listen.to_string())
        ));
        out.push_str(&format!(
            "metrics_listen = {}\n",
            q(&s.metrics_listen.map(|a| a.to_string()).unwrap_or_default())
        ));
        out.push_str(&format!(
            "metrics_allow_remote = {}\n",
            s.metrics_allow_remote
        ));
        out.push_str(&format!("allow_shared_dirs = {}\n", s.allow_shared_dirs));
        out.push_str(&format!("redirect_uri = {}\n", q(&s.redirect_uri)));
        out.push_str(&format!(
            "shutdown_grace = {}\n",
            q(&format_duration(s.shutdown_grace))
        ));
        out.push_str(&format!(
            "login_timeout = {}\n",
            q(&format_duration(s.login_timeout))
        ));
        out.push_str(&format!(
            "sink_dirs = [{}]\n",
            s.sink_dirs
                .iter()
                .map(|p| q(&p.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&format!(
            "log_level = {}\n",
            q(s.log_level.as_deref().unwrap_or("info"))
        ));
        out.push_str(&format!("agent_id = {}\n", q(&s.agent_id)));
        self.access.server_keys_toml(&mut out);
        let k = &self.snyk;
        out.push_str("\n[snyk]\n");
        out.push_str(&format!("api_url = {}\n", q(&k.api_url)));
        out.push_str(&format!("app_url = {}\n", q(&k.app_url)));
        out.push_str(&format!("rest_version = {}\n", q(&k.rest_version)));
        out.push_str(&format!("timeout = {}\n", q(&format_duration(k.timeout))));
        let c = &self.cache;
        out.push_str("\n[cache]\n");
        out.push_str(&format!(
            "backend = {}\n",
            q(match c.backend {
                CacheBackend::Memory => "memory",
                CacheBackend::Redis => "redis",
            })
        ));
        out.push_str(&format!(
            "url = {}\n",
            q(&redact_url_password(c.url.expose()))
        ));
        out.push_str(&format!("key_prefix = {}\n", q(&c.key_prefix)));
        out.push_str(&format!(
            "username = {}\n",
            q(c.username.as_deref().unwrap_or(""))
        ));
        out.push_str(&format!("password_file = {}\n", opt_path(&c.password_file)));
        let t = &self.store;
        out.push_str("\n[store]\n");
        out.push_str(&format!(
            "backend = {}\n",
            q(match t.backend {
                StoreBackend::File => "file",
                StoreBackend::OpenBao => "openbao",
            })
        ));
        out.push_str(&format!("path = {}\n", q(&t.path.display().to_string())));
        out.push_str(&format!(
            "journal_dir = {}\n",
            q(&t.journal_dir.display().to_string())
        ));
        if t.addrs.len() > 1 {
            let list: Vec<String> = t.addrs.iter().map(|a| q(a)).collect();
            out.push_str(&format!("addr = [{}]\n", list.join(", ")));
        } else {
            out.push_str(&format!("addr = {}\n", q(&t.addr)));
        }
        out.push_str(&format!(
            "auth = {}\n",
            q(match t.auth {
                BaoAuth::Token => "token",
                BaoAuth::AppRole => "approle",
                BaoAuth::Kubernetes => "kubernetes",
            })
        ));
        // The only secret-valued key: shown as set or not, never its value.
        out.push_str(&format!(
            "token = {}\n",
            q(if t.token.is_some() { "[redacted]" } else { "" })
        ));
        out.push_str(&format!("token_file = {}\n", opt_path(&t.token_file)));
        out.push_str(&format!("role_id_file = {}\n", opt_path(&t.role_id_file)));
        out.push_str(&format!(
            "secret_id_file = {}\n",
            opt_path(&t.secret_id_file)
        ));
        out.push_str(&format!("kubernetes_role = {}\n", q(&t.kubernetes_role)));
        out.push_str(&format!(
            "kubernetes_jwt_file = {}\n",
            q(&t.kubernetes_jwt_file.display().to_string())
        ));
        out.push_str(&format!("auth_mount = {}\n", q(&t.auth_mount)));
        out.push_str(&format!("mount = {}\n", q(&t.mount)));
        out.push_str(&format!("kv_version = {}\n", t.kv_version));
        out.push_str(&format!("prefix = {}\n", q(&t.prefix)));
        out.push_str(&format!("ca_cert = {}\n", opt_path(&t.ca_cert)));
        out.push_str(&format!("exclusive = {}\n", t.exclusive));
        let r = &self.refresh;
        out.push_str("\n[refresh]\n");
        out.push_str(&format!(
            "min_validity = {}\n",
            q(&format_duration(r.min_validity))
        ));
        out.push_str(&format!("jitter = {}\n", r.jitter));
        out.push_str(&format!("at = {}\n", r.at));
        out.push_str(&format!(
            "force_interval = {}\n",
            q(&format_duration(r.force_interval))
        ));
        for sink in &self.sinks {
            out.push_str("\n[[sink]]\n");
            out.push_str(&format!("org_id = {}\n", q(&sink.org_id)));
            out.push_str(&format!("client_id = {}\n", q(&sink.client_id)));
            out.push_str(&format!("path = {}\n", q(&sink.path.display().to_string())));
            out.push_str(&format!(
                "format = {}\n",
                q(match sink.format {
                    crate::render::Format::Token => "token",
                    crate::render::Format::Json => "json",
                    crate::render::Format::Env => "env",
                })
            ));
            out.push_str(&format!("mode = \"{:04o}\"\n", sink.mode));
            if let Some(g) = sink.gid {
                out.push_str(&format!("group = \"{g}\"\n"));
            }
        }
        self.access.tables_toml(&mut out);
        out
    }
}

/// `redis://user:pw@host` → `redis://user:[redacted]@host`; query values
/// such as `?pass=` too (see [`crate::urls::redact_password`]).
pub fn redact_url_password(url: &str) -> String {
    crate::urls::redact_password(url)
}

/// An error names the key, never its value: a misplaced password (in
/// `cache.url`, or pasted into the wrong key) must not reach a log or a
/// terminal. Every text form of the value in `message` is replaced.
fn without_value(mut message: String, value: Option<&Value>) -> String {
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(t) => out.push(t),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Table(t) => t.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    if let Some(v) = value {
        strings(v, &mut texts);
    }
    for v in texts {
        for form in [format!("{v:?}"), format!("{:?}", v.trim())] {
            if form.len() > 2 {
                message = message.replace(&form, "(the value given)");
            }
        }
        let t = v.trim();
        if t.len() >= 4 {
            message = message.replace(t, "(the value given)");
        }
    }
    message
}

fn known(section: &str, key: &str) -> Option<(&'static str, &'static str, Kind)> {
    KEYS.iter()
        .copied()
        .find(|(s, k, _)| *s == section && *k == key)
}

fn read_toml(path: &Path, text: &str, raw: &mut RawMap) -> Result<(), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
    for (section, value) in table {
        // `[[sink]]` tables are read by `read_sinks` (issue 14).
        if section == "sink" {
            continue;
        }
        if section == ACCESS_SECTION {
            raw.insert(
                (ACCESS_SECTION, ""),
                Raw {
                    value,
                    origin: path.display().to_string(),
                },
            );
            continue;
        }
        let Value::Table(entries) = value else {
            return Err(ConfigError::Invalid {
                key: section.clone(),
                origin: path.display().to_string(),
                message: "expected a [section] table (server, snyk, cache, store, refresh)".into(),
            });
        };
        for (key, value) in entries {
            let Some((s, k, _)) = known(&section, &key) else {
                let sections: Vec<&str> = KEYS.iter().map(|(s, _, _)| *s).collect();
                let message = if sections.contains(&section.as_str()) {
                    let keys: Vec<&str> = KEYS
                        .iter()
                        .filter(|(s, _, _)| *s == section)
                        .map(|(_, k, _)| *k)
                        .collect();
                    format!("unknown key; [{section}] knows {}", keys.join(", "))
                } else {
                    "unknown section; the sections are server, snyk, cache, store, refresh"
                        .to_string()
                };
                return Err(ConfigError::Invalid {
                    key: format!("{section}.{key}"),
                    origin: path.display().to_string(),
                    message,
                });
            };
            raw.insert(
                (s, k),
                Raw {
                    value,
                    origin: path.display().to_string(),
                },
            );
        }
    }
    Ok(())
}

fn read_env(env: &[(String, String)], raw: &mut RawMap) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("SNYKEY_") else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let Some((section, key)) = lower.split_once('_') else {
            continue;
        };
        if section == ACCESS_SECTION {
            return Err(ConfigError::Invalid {
                key: "[[access]]".into(),
                origin: name.clone(),
                message: "[[access]] tables can only be written in the config file".into(),
            });
        }
        let Some((s, k, kind)) = known(section, key) else {
            // SNYKEY_SOCKET, SNYKEY_LOG, SNYKEY_ORG_ID... are not config keys; a
            // misspelt key in a config section is an error, not silently ignored.
            if KEYS.iter().any(|(s, _, _)| *s == section) {
                return Err(ConfigError::Invalid {
                    key: format!("{section}.{key}"),
                    origin: name.clone(),
                    message: "no such key in this section".into(),
                });
            }
            continue;
        };
        let invalid = |message: String| ConfigError::Invalid {
            key: format!("{s}.{k}"),
            origin: name.clone(),
            message: without_value(message, Some(&Value::String(value.clone()))),
        };
        let v = match kind {
            Kind::Str | Kind::Duration => Value::String(value.clone()),
            Kind::Int => Value::Integer(
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("{value:?} is not a whole number")))?,
            ),
            Kind::Float => Value::Float(
                value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(format!("{value:?} is not a number")))?,
            ),
            Kind::Bool => Value::Boolean(match value.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(invalid("expected true or false".to_string())),
            }),
            Kind::StrList => Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            ),
            Kind::UintList => Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .enumerate()
                    .map(|(i, p)| {
                        p.parse::<i64>().map(Value::Integer).map_err(|_| {
                            invalid(format!(
                                "entry {} is not a whole number (comma-separated list)",
                                i + 1
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        raw.insert(
            (s, k),
            Raw {
                value: v,
                origin: name.clone(),
            },
        );
    }
    Ok(())
}

struct Reader<'a> {
    raw: &'a RawMap,
}

impl Reader<'_> {
    fn err(&self, s: &str, k: &str, message: impl Into<String>) -> ConfigError {
        let origin = self
            .raw
            .get(&known(s, k).map(|(a, b, _)| (a, b)).unwrap_or(("", "")))
            .map(|r| r.origin.clone());
        let value = known(s, k).and_then(|(a, b, _)| self.raw.get(&(a, b)));
        ConfigError::Invalid {
            key: format!("{s}.{k}"),
            origin: origin.unwrap_or_else(|| "default".into()),
            message: without_value(message.into(), value.map(|r| &r.value)),
        }
    }

    fn get(&self, s: &'static str, k: &'static str) -> Option<&Value> {
        self.raw.get(&(s, k)).map(|r| &r.value)
    }

    fn string(
        &self,
        s: &'static str,
        k: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        match self.get(s, k) {
            None => Ok(default.to_string()),
            Some(Value::String(v)) => Ok(v.clone()),
            Some(other) => Err(self.err(
                s,
                k,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn opt_string(&self, s: &'static str, k: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(Some(self.string(s, k, "")?).filter(|v| !v.is_empty()))
    }

    fn boolean(
        &self,
        s: &'static str,
        k: &'static str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        match self.get(s, k) {
            None => Ok(default),
            Some(Value::Boolean(v)) => Ok(*v),
            Some(other) => Err(self.err(
                s,
                k,
                format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    fn int(&self, s: &'static str, k: &'static str, default: i64) -> Result<i64, ConfigError> {
        match self.get(s, k) {
            None => Ok(default),
            Some(Value::Integer(v)) => Ok(*v),
            Some(other) => Err(self.err(
                s,
                k,
                format!("expected a whole number, found {}", other.type_str()),
            )),
        }
    }

    fn float(&self, s: &'static str, k: &'static str, default: f64) -> Result<f64, ConfigError> {
        match self.get(s, k) {
            None => Ok(default),
            Some(Value::Float(v)) => Ok(*v),
            Some(Value::Integer(v)) => Ok(*v as f64),
            Some(other) => Err(self.err(
                s,
                k,
                format!("expected a number, found {}", other.type_str()),
            )),
        }
    }

    fn duration(
        &self,
        s: &'static str,
        k: &'static str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.get(s, k) {
            None => Ok(default),
            Some(Value::Integer(v)) if *v >= 0 => Ok(Duration::from_secs(*v as u64)),
            Some(Value::String(v)) => parse_duration(v).map_err(|m| self.err(s, k, m)),
            Some(other) => Err(self.err(
                s,
                k,
                format!(
                    "expected a duration like \"5m\", found {}",
                    other.type_str()
                ),
            )),
        }
    }

    fn uints(&self, s: &'static str, k: &'static str) -> Result<Vec<u32>, ConfigError> {
        match self.get(s, k) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Integer(i) if (0..=u32::MAX as i64).contains(i) => Ok(*i as u32),
                    other => {
                        Err(self.err(s, k, format!("{other} is not a valid id (0..4294967295)")))
                    }
                })
                .collect(),
            Some(other) => Err(self.err(
                s,
                k,
                format!("expected a list of numbers, found {}", other.type_str()),
            )),
        }
    }
}

fn build(raw: &RawMap, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let r = Reader { raw };

    // [server]
    let socket = match r.opt_string("server", "socket")? {
        Some(p) => PathBuf::from(p),
        None => crate::paths::agent_socket_in(env),
    };
    if !socket.is_absolute() {
        return Err(r.err("server", "socket", "must be an absolute path"));
    }
    let mode_text = match r.get("server", "socket_mode") {
        Some(Value::Integer(i)) => i.to_string(),
        _ => r.string("server", "socket_mode", "0660")?,
    };
    let socket_mode = u32::from_str_radix(mode_text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            r.err(
                "server",
                "socket_mode",
                format!("{mode_text:?} is not an octal mode like \"0660\""),
            )
        })?;
    if socket_mode & 0o600 != 0o600 {
        return Err(r.err(
            "server",
            "socket_mode",
            "the owner needs read and write (at least 0600)",
        ));
    }
    let callback_text = r.string("server", "callback_listen", "127.0.0.1:8080")?;
    let callback_listen: SocketAddr = callback_text.parse().map_err(|_| {
        r.err(
            "server",
            "callback_listen",
            format!("{callback_text:?} is not an address like 127.0.0.1:8080"),
        )
    })?;
    if !callback_listen.ip().is_loopback() {
        return Err(r.err(
            "server",
            "callback_listen",
            "must be a loopback address (127.0.0.1 or [::1]): the OAuth callback carries an authorization code",
        ));
    }
    let metrics_listen = match r.opt_string("server", "metrics_listen")? {
        None => None,
        Some(t) => Some(t.parse::<SocketAddr>().map_err(|_| {
            r.err(
                "server",
                "metrics_listen",
                format!("{t:?} is not an address like 127.0.0.1:9464"),
            )
        })?),
    };
    let metrics_allow_remote = r.boolean("server", "metrics_allow_remote", false)?;
    if let Some(addr) = metrics_listen {
        if !addr.ip().is_loopback() && !metrics_allow_remote {
            return Err(r.err(
                "server",
                "metrics_listen",
                "is not a loopback address: anyone who can reach it may connect; set server.metrics_allow_remote = true to serve metrics beyond this host",
            ));
        }
    }
    let redirect_uri = match r.opt_string("server", "redirect_uri")? {
        Some(u) => {
            if !crate::urls::is_loopback_http(&u) {
                return Err(r.err(
                    "server",
                    "redirect_uri",
                    "must point at the loopback callback listener (http://127.0.0.1:PORT/...)",
                ));
            }
            u
        }
        None => format!("http://{callback_listen}/authorization-code/callback"),
    };
    let server = ServerConfig {
        socket,
        socket_mode,
        allowed_uids: r.uints("server", "allowed_uids")?,
        allowed_gids: r.uints("server", "allowed_gids")?,
        callback_listen,
        metrics_listen,
        metrics_allow_remote,
        allow_shared_dirs: r.boolean("server", "allow_shared_dirs", false)?,
        redirect_uri,
        shutdown_grace: r.duration("server", "shutdown_grace", Duration::from_secs(10))?,
        login_timeout: r.duration("server", "login_timeout", Duration::from_secs(600))?,
        log_level: r.opt_string("server", "log_level")?,
        agent_id: String::new(),
        sink_dirs: Vec::new(),
    };
    if let Some(level) = &server.log_level {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
            return Err(r.err(
                "server",
                "log_level",
                format!("{level:?} is not a log filter like \"info\" or \"snykey=debug\": {e}"),
            ));
        }
    }
    if server.login_timeout < Duration::from_secs(1)
        || server.login_timeout > Duration::from_secs(3600)
    {
        return Err(r.err("server", "login_timeout", "must be between 1s and 1h"));
    }

    // [snyk]
    let api_url = normalize_base_url(&r.string("snyk", "api_url", DEFAULT_API_URL)?)
        .map_err(|m| r.err("snyk", "api_url", m))?;
    let app_url = match r.opt_string("snyk", "app_url")? {
        Some(u) => normalize_base_url(&u).map_err(|m| r.err("snyk", "app_url", m))?,
        None => derive_app_url(&api_url),
    };
    let rest_version = r.string("snyk", "rest_version", "2024-10-15")?;
    if !is_rest_version(&rest_version) {
        return Err(r.err(
            "snyk",
            "rest_version",
            format!("{rest_version:?} is not a version like 2024-10-15 (optionally ~beta)"),
        ));
    }
    let timeout = r.duration("snyk", "timeout", Duration::from_secs(30))?;
    if timeout < Duration::from_secs(1) {
        return Err(r.err("snyk", "timeout", "must be at least 1s"));
    }
    let snyk = SnykConfig {
        api_url,
        app_url,
        rest_version,
        timeout,
    };

    // [cache]
    let cache_backend = match r.string("cache", "backend", "memory")?.as_str() {
        "memory" => CacheBackend::Memory,
        "redis" => CacheBackend::Redis,
        other => {
            return Err(r.err(
                "cache",
                "backend",
                format!("{other:?} is not \"memory\" or \"redis\""),
            ));
        }
    };
    let cache_url = r.string("cache", "url", "redis://127.0.0.1:6379/0")?;
    if !(cache_url.starts_with("redis://")
        || cache_url.starts_with("rediss://")
        || cache_url.starts_with("redis+unix://")
        || cache_url.starts_with("unix://"))
    {
        check_sentinel_url(&cache_url).map_err(|m| r.err("cache", "url", m))?;
    }
    let key_prefix = r.string("cache", "key_prefix", "snyk")?;
    if key_prefix.is_empty() || key_prefix.contains(|c: char| c.is_whitespace() || c == ':') {
        return Err(r.err(
            "cache",
            "key_prefix",
            "must be non-empty, without spaces or ':'",
        ));
    }
    let (cache_url, username, password_file) = cache_credentials(&r, cache_url, env)?;
    let cache = CacheConfig {
        backend: cache_backend,
        url: cache_url,
        key_prefix,
        username,
        password_file,
    };

    // [store]
    let store_backend = match r.string("store", "backend", "file")?.as_str() {
        "file" => StoreBackend::File,
        "openbao" | "vault" => StoreBackend::OpenBao,
        other => {
            return Err(r.err(
                "store",
                "backend",
                format!("{other:?} is not \"file\" or \"openbao\""),
            ));
        }
    };
    let state_dir = crate::paths::default_state_dir_in(env);
    let path = r
        .opt_string("store", "path")?
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("credentials.json"));
    if !path.is_absolute() {
        return Err(r.err("store", "path", "must be an absolute path"));
    }
    let journal_dir = match r.opt_string("store", "journal_dir")? {
        Some(p) => PathBuf::from(p),
        None => match (store_backend, r.get("store", "path")) {
            (StoreBackend::File, Some(_)) => path
                .parent()
                .map(|p| p.join("journal"))
                .unwrap_or_else(|| state_dir.join("journal")),
            _ => state_dir.join("journal"),
        },
    };
    if !journal_dir.is_absolute() {
        return Err(r.err("store", "journal_dir", "must be an absolute path"));
    }
    let addrs = store_addrs(&r, env)?;
    let addr = addrs[0].clone();
    let auth = match r.string("store", "auth", "token")?.as_str() {
        "token" => BaoAuth::Token,
        "approle" => BaoAuth::AppRole,
        "kubernetes" => BaoAuth::Kubernetes,
        other => {
            return Err(r.err(
                "store",
                "auth",
                format!("{other:?} is not token, approle or kubernetes"),
            ));
        }
    };
    let token = r
        .opt_string("store", "token")?
        .or_else(|| env("BAO_TOKEN"))
        .or_else(|| env("VAULT_TOKEN"))
        .map(Secret::new);
    let opt_path = |k: &'static str| -> Result<Option<PathBuf>, ConfigError> {
        match r.opt_string("store", k)? {
            Some(p) if k.ends_with("_file") => credential_path(&r, "store", k, &p, env).map(Some),
            other => Ok(other.map(PathBuf::from)),
        }
    };
    let ca_cert = match opt_path("ca_cert")? {
        Some(p) => Some(p),
        None => env("BAO_CACERT")
            .or_else(|| env("VAULT_CACERT"))
            .map(PathBuf::from),
    };
    let kv_version = r.int("store", "kv_version", 2)?;
    if kv_version != 1 && kv_version != 2 {
        return Err(r.err("store", "kv_version", "must be 1 or 2"));
    }
    let mount = r
        .string("store", "mount", "kv")?
        .trim_matches('/')
        .to_string();
    let prefix = r
        .string("store", "prefix", "snyk")?
        .trim_matches('/')
        .to_string();
    for (k, v) in [("mount", &mount), ("prefix", &prefix)] {
        if v.is_empty()
            || v.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(r.err(
                "store",
                if k == "mount" { "mount" } else { "prefix" },
                "must be a non-empty path without . or .. segments",
            ));
        }
    }
    let exclusive = r.boolean("store", "exclusive", false)? || store_backend == StoreBackend::File;
    let store = StoreConfig {
        exclusive,
        backend: store_backend,
        path,
        journal_dir,
        addr,
        addrs,
        auth,
        token,
        token_file: opt_path("token_file")?,
        role_id_file: opt_path("role_id_file")?,
        secret_id_file: opt_path("secret_id_file")?,
        kubernetes_role: r.string("store", "kubernetes_role", "snykey")?,
        kubernetes_jwt_file: credential_path(
            &r,
            "store",
            "kubernetes_jwt_file",
            &r.string(
                "store",
                "kubernetes_jwt_file",
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            )?,
            env,
        )?,
        auth_mount: r.string("store", "auth_mount", "")?,
        mount,
        kv_version: kv_version as u8,
        prefix,
        ca_cert,
    };
    if store.backend == StoreBackend::OpenBao {
        match store.auth {
            BaoAuth::Token if store.token.is_none() && store.token_file.is_none() => {
                return Err(r.err("store", "token", "the openbao store with auth = \"token\" needs store.token, store.token_file or BAO_TOKEN"));
            }
            BaoAuth::AppRole if store.role_id_file.is_none() || store.secret_id_file.is_none() => {
                return Err(r.err(
                    "store",
                    "auth",
                    "approle needs store.role_id_file and store.secret_id_file",
                ));
            }
            _ => {}
        }
    }

    // [refresh]
    let refresh = RefreshConfig {
        min_validity: r.duration("refresh", "min_validity", Duration::from_secs(300))?,
        jitter: r.float("refresh", "jitter", 0.1)?,
        at: r.float("refresh", "at", 0.67)?,
        force_interval: r.duration(
            "refresh",
            "force_interval",
            crate::broker::force::DEFAULT_INTERVAL,
        )?,
    };
    if !(0.0..=0.5).contains(&refresh.jitter) {
        return Err(r.err("refresh", "jitter", "must be between 0 and 0.5"));
    }
    if !(refresh.at > 0.0 && refresh.at < 1.0) {
        return Err(r.err(
            "refresh",
            "at",
            "must be between 0 and 1 (exclusive), e.g. 0.67",
        ));
    }
    if refresh.min_validity > Duration::from_secs(24 * 3600) {
        return Err(r.err("refresh", "min_validity", "must be at most 24h"));
    }

    let mut server = server;
    server.agent_id = match r.opt_string("server", "agent_id")? {
        Some(id) if id.len() <= 200 && !id.chars().any(char::is_control) => id,
        Some(_) => {
            return Err(r.err(
                "server",
                "agent_id",
                "must be at most 200 printable characters",
            ));
        }
        None => format!("{}:{}", hostname(), server.socket.display()),
    };

    let access = build_access(&r)?;

    Ok(Config {
        server,
        snyk,
        cache,
        store,
        refresh,
        access,
        file: None,
        sinks: Vec::new(),
    })
}

// --- issue 14: systemd directories and credentials, secrets from files ---

/// The config files tried, in order, when `--config` is not given:
/// `$CONFIGURATION_DIRECTORY/config.toml` (systemd's `ConfigurationDirectory=`;
/// the first of a colon-separated list), then [`DEFAULT_CONFIG_FILE`].
pub fn default_config_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dir) = crate::paths::first_dir(env, "CONFIGURATION_DIRECTORY") {
        files.push(dir.join("config.toml"));
    }
    files.push(PathBuf::from(DEFAULT_CONFIG_FILE));
    files
}

/// A `*_file` setting: an absolute path as it is; a relative one names a
/// systemd credential, resolved under `$CREDENTIALS_DIRECTORY`
/// (`LoadCredential=`, systemd.exec(5)). Without that directory a relative
/// path is refused rather than resolved against whatever the working directory is.
fn credential_path(
    r: &Reader<'_>,
    s: &'static str,
    k: &'static str,
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(value);
    if p.is_absolute() {
        return Ok(p);
    }
    match env("CREDENTIALS_DIRECTORY") {
        Some(dir) => {
            if p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(r.err(
                    s,
                    k,
                    format!("{value:?}: a credential name must not contain . or .. segments"),
                ));
            }
            Ok(PathBuf::from(dir).join(p))
        }
        None => Err(r.err(
            s,
            k,
            format!(
                "{value:?} is relative, and $CREDENTIALS_DIRECTORY is not set: give an absolute path, or load it with systemd's LoadCredential="
            ),
        )),
    }
}

/// `server.sink_dirs`: absolute directories; default the socket's directory.
fn sink_dirs(raw: &RawMap, socket: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let r = Reader { raw };
    match r.get("server", "sink_dirs") {
        None => Ok(socket.parent().map(Path::to_path_buf).into_iter().collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(p) if Path::new(p).is_absolute() => Ok(PathBuf::from(p)),
                other => Err(r.err(
                    "server",
                    "sink_dirs",
                    format!("{other} is not an absolute directory path"),
                )),
            })
            .collect(),
        Some(other) => Err(r.err(
            "server",
            "sink_dirs",
            format!("expected a list of directories, found {}", other.type_str()),
        )),
    }
}

/// The `[[sink]]` tables: each names a credential, a path inside
/// `server.sink_dirs`, and optionally `format` (token), `mode` ("0640") and
/// `group` (a name or gid).
fn read_sinks(
    file: &Path,
    tables: Value,
    allowed: &[PathBuf],
) -> Result<Vec<crate::sink::SinkConfig>, ConfigError> {
    let origin = file.display().to_string();
    let invalid = |i: usize, key: &str, message: String| ConfigError::Invalid {
        key: format!("sink[{i}].{key}"),
        origin: origin.clone(),
        message,
    };
    let Value::Array(items) = tables else {
        return Err(invalid(0, "", "write sinks as [[sink]] tables".into()));
    };
    let mut sinks: Vec<crate::sink::SinkConfig> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Table(t) = item else {
            return Err(invalid(i, "", "expected a [[sink]] table".into()));
        };
        for k in t.keys() {
            if !["org_id", "client_id", "path", "format", "mode", "group"].contains(&k.as_str()) {
                return Err(invalid(
                    i,
                    k,
                    "unknown key; a sink knows org_id, client_id, path, format, mode, group".into(),
                ));
            }
        }
        let string = |k: &str| -> Result<Option<String>, ConfigError> {
            match t.get(k) {
                None => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(Value::Integer(v)) if k == "group" => Ok(Some(v.to_string())),
                Some(other) => Err(invalid(i, k, format!("expected a string, found {other}"))),
            }
        };
        let need = |k: &str| -> Result<String, ConfigError> {
            string(k)?.ok_or_else(|| invalid(i, k, "is required".into()))
        };
        let org_id = need("org_id")?;
        let client_id = need("client_id")?;
        for (k, v) in [("org_id", &org_id), ("client_id", &client_id)] {
            crate::ids::check_id(k, v).map_err(|e| invalid(i, k, e.to_string()))?;
        }
        let path = PathBuf::from(need("path")?);
        if !path.is_absolute() {
            return Err(invalid(i, "path", "must be an absolute path".into()));
        }
        crate::sink::check_path(&path, allowed).map_err(|m| invalid(i, "path", m))?;
        if sinks.iter().any(|s| s.path == path) {
            return Err(invalid(
                i,
                "path",
                "another sink writes the same file".into(),
            ));
        }
        let format = match string("format")? {
            None => crate::render::Format::Token,
            Some(f) => crate::render::Format::parse(&f)
                .ok_or_else(|| invalid(i, "format", format!("{f:?} is not token, json or env")))?,
        };
        let mode_text = string("mode")?.unwrap_or_else(|| "0640".into());
        let mode = u32::from_str_radix(mode_text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m & 0o600 == 0o600 && *m & !0o660 == 0)
            .ok_or_else(|| {
                invalid(
                    i,
                    "mode",
                    format!("{mode_text:?}: an octal mode between 0600 and 0660 (the owner reads and writes; never others)"),
                )
            })?;
        let gid = match string("group")? {
            None => None,
            Some(g) => Some(resolve_group(&g).ok_or_else(|| {
                invalid(i, "group", format!("{g:?} is not a group on this system"))
            })?),
        };
        sinks.push(crate::sink::SinkConfig {
            org_id,
            client_id,
            path,
            format,
            mode,
            gid,
        });
    }
    Ok(sinks)
}

/// A group name or number → its gid.
fn resolve_group(g: &str) -> Option<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Some(n);
    }
    let name = std::ffi::CString::new(g).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives it.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// `cache.username` and `cache.password_file` folded into the Redis URL, so
/// that the password can live in a file (or a systemd credential) instead of
/// the config file or the environment. Either may be in the URL instead, not both.
fn cache_credentials(
    r: &Reader<'_>,
    url: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Secret, Option<String>, Option<PathBuf>), ConfigError> {
    let username = r.opt_string("cache", "username")?;
    let password_file = match r.opt_string("cache", "password_file")? {
        Some(p) => Some(credential_path(r, "cache", "password_file", &p, env)?),
        None => None,
    };
    if username.is_none() && password_file.is_none() {
        return Ok((Secret::new(url), None, None));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok((Secret::new(url), username, password_file));
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err(r.err(
            "cache",
            if password_file.is_some() {
                "password_file"
            } else {
                "username"
            },
            "cache.url already has user:password@; give the user and password in one place",
        ));
    }
    if scheme.contains("unix") {
        return Err(r.err(
            "cache",
            "password_file",
            "a unix:// Redis URL takes no user or password here",
        ));
    }
    let password = match &password_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                r.err(
                    "cache",
                    "password_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let secret = Secret::new(text.trim_end_matches(['\n', '\r']).to_string());
            if secret.is_empty() {
                return Err(r.err(
                    "cache",
                    "password_file",
                    format!("{} is empty", p.display()),
                ));
            }
            Some(secret)
        }
        None => None,
    };
    let mut userinfo = String::new();
    if let Some(u) = &username {
        userinfo.push_str(&percent_encode_userinfo(u));
    }
    if let Some(pw) = &password {
        userinfo.push(':');
        userinfo.push_str(&percent_encode_userinfo(pw.expose()));
    }
    let full = Secret::new(format!("{scheme}://{userinfo}@{rest}"));
    Ok((full, username, password_file))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the
/// Redis client decodes the user and password of its URL).
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `store.addr`: one address, a TOML array of the nodes of one cluster, or
/// (from `SNYKEY_STORE_ADDR`) a comma-separated list; else `BAO_ADDR` /
/// `VAULT_ADDR` (one address), else the local default.
fn store_addrs(
    r: &Reader<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let given: Vec<String> = match r.get("store", "addr") {
        None => Vec::new(),
        Some(Value::String(v)) => v
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(a) => Ok(a.trim().to_string()),
                other => Err(r.err(
                    "store",
                    "addr",
                    format!("expected addresses, found {}", other.type_str()),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(r.err(
                "store",
                "addr",
                format!(
                    "expected an address or a list of addresses, found {}",
                    other.type_str()
                ),
            ));
        }
    };
    let given = if given.is_empty() {
        vec![
            env("BAO_ADDR")
                .or_else(|| env("VAULT_ADDR"))
                .unwrap_or_else(|| "http://127.0.0.1:8200".into()),
        ]
    } else {
        given
    };
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for a in given {
        let a = normalize_base_url_any(&a).map_err(|m| r.err("store", "addr", m))?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// `cache.url` in the Sentinel form of SPEC §7, or an error naming the forms.
fn check_sentinel_url(url: &str) -> Result<(), String> {
    match crate::cache::redis::parse_sentinel_url(url) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(
            "must start with redis://, rediss://, unix://, or for Sentinel \
             redis+sentinel:// or rediss+sentinel://"
                .into(),
        ),
        Err(m) => Err(m),
    }
}

fn is_rest_version(v: &str) -> bool {
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

/// A Snyk base URL: https, or http only to a loopback host (tests, proxies).
fn normalize_base_url(u: &str) -> Result<String, String> {
    let n = normalize_base_url_any(u)?;
    if n.starts_with("https://") {
        return Ok(n);
    }
    let host = n.trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or("");
    let hostname = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    let loopback = hostname == "localhost"
        || hostname
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if loopback {
        Ok(n)
    } else {
        Err(format!(
            "{:?} must use https:// (plain http is allowed only to a loopback address)",
            crate::urls::redact_password(u)
        ))
    }
}

fn normalize_base_url_any(u: &str) -> Result<String, String> {
    let t = u.trim().trim_end_matches('/');
    // Messages quote the URL only with any password redacted.
    let shown = crate::urls::redact_password(u);
    let parsed = reqwest::Url::parse(t).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{shown:?} must be an http(s):// URL with a host"));
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(format!(
            "{shown:?} must not carry a query, fragment or credentials"
        ));
    }
    Ok(t.to_string())
}

/// `https://api.eu.snyk.io` → `https://app.eu.snyk.io` (SPEC §7).
pub fn derive_app_url(api_url: &str) -> String {
    match api_url.split_once("://") {
        Some((scheme, rest)) if rest.starts_with("api.") => {
            format!("{scheme}://app.{}", &rest[4..])
        }
        _ => api_url.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Issue 17: who may do what, and the audit trail. `server.admin_uids`,
// `server.admin_gids`, `server.audit_log` and the repeatable `[[access]]`
// table; the decisions themselves are in `crate::access`.

/// The top-level `[[access]]` array of tables.
const ACCESS_SECTION: &str = "access";

/// `server.admin_*`, `server.audit_log` and the `[[access]]` tables, validated.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub admin_uids: Vec<u32>,
    pub admin_gids: Vec<u32>,
    /// The hash-chained audit file; `None` when off.
    pub audit_log: Option<PathBuf>,
    pub grants: Vec<crate::access::Grant>,
}

impl AccessConfig {
    /// The policy in force for an agent running as `own_uid`.
    pub fn policy(&self, server: &ServerConfig, own_uid: u32) -> crate::access::Policy {
        crate::access::Policy {
            allowed_uids: server.allowed_uids.clone(),
            allowed_gids: server.allowed_gids.clone(),
            admin_uids: self.admin_uids.clone(),
            admin_gids: self.admin_gids.clone(),
            grants: self.grants.clone(),
            own_uid,
        }
    }

    fn server_keys_toml(&self, out: &mut String) {
        let list = |v: &[u32]| {
            format!(
                "[{}]",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )
        };
        out.push_str(&format!("admin_uids = {}\n", list(&self.admin_uids)));
        out.push_str(&format!("admin_gids = {}\n", list(&self.admin_gids)));
        let audit = self
            .audit_log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        out.push_str(&format!("audit_log = {}\n", toml::Value::String(audit)));
    }

    fn tables_toml(&self, out: &mut String) {
        for g in &self.grants {
            let creds: Vec<String> = g
                .credentials
                .iter()
                .map(|p| toml::Value::String(p.to_string()).to_string())
                .collect();
            let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            out.push_str(&format!(
                "\n[[access]]\ncredentials = [{}]\nuids = [{}]\ngids = [{}]\n",
                creds.join(", "),
                list(&g.uids),
                list(&g.gids)
            ));
        }
    }
}

fn build_access(r: &Reader<'_>) -> Result<AccessConfig, ConfigError> {
    let audit_log = r.opt_string("server", "audit_log")?.map(PathBuf::from);
    if audit_log.as_ref().is_some_and(|p| !p.is_absolute()) {
        return Err(r.err("server", "audit_log", "must be an absolute path"));
    }
    let mut grants = Vec::new();
    if let Some(raw) = r.raw.get(&(ACCESS_SECTION, "")) {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            key,
            origin: raw.origin.clone(),
            message,
        };
        let Value::Array(tables) = &raw.value else {
            return Err(invalid(
                "access".into(),
                "must be written as [[access]] tables (an array of tables)".into(),
            ));
        };
        for (i, t) in tables.iter().enumerate() {
            let at = |k: &str| format!("access[{i}]{k}");
            let Value::Table(t) = t else {
                return Err(invalid(at(""), "must be a table".into()));
            };
            if let Some(k) = t
                .keys()
                .find(|k| !matches!(k.as_str(), "credentials" | "uids" | "gids"))
            {
                return Err(invalid(
                    at(&format!(".{k}")),
                    "unknown key; [[access]] knows credentials, uids, gids".into(),
                ));
            }
            let credentials = match t.get("credentials") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => crate::access::Pattern::parse(s),
                        other => Err(format!("{other} is not a string")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| invalid(at(".credentials"), m))?,
                _ => {
                    return Err(invalid(
                        at(".credentials"),
                        "must be a non-empty list like [\"ORG_ID/CLIENT_ID\", \"ORG_ID/*\"]".into(),
                    ));
                }
            };
            let ids = |k: &str| -> Result<Vec<u32>, ConfigError> {
                match t.get(k) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| match v {
                            Value::Integer(n) if (0..=u32::MAX as i64).contains(n) => Ok(*n as u32),
                            other => Err(invalid(
                                at(&format!(".{k}")),
                                format!("{other} is not a valid id (0..4294967295)"),
                            )),
                        })
                        .collect(),
                    Some(other) => Err(invalid(
                        at(&format!(".{k}")),
                        format!("expected a list of numbers, found {}", other.type_str()),
                    )),
                }
            };
            let (uids, gids) = (ids("uids")?, ids("gids")?);
            if uids.is_empty() && gids.is_empty() {
                return Err(invalid(
                    at(""),
                    "grants nobody: give it uids or gids".into(),
                ));
            }
            grants.push(crate::access::Grant {
                credentials,
                uids,
                gids,
            });
        }
    }
    Ok(AccessConfig {
        admin_uids: r.uints("server", "admin_uids")?,
        admin_gids: r.uints("server", "admin_gids")?,
        audit_log,
        grants,
    })
}

impl Config {
    /// SPEC §2's KV v1 paragraph, for `check-config` (the agent says the
    /// same at start and in `/v1/ready`).
    pub fn protection_warning(&self) -> Option<&'static str> {
        (self.store.backend == StoreBackend::OpenBao && self.store.kv_version == 1)
            .then_some(crate::broker::rotation::UNPROTECTED)
    }
}

/// This host's name (for the default `server.agent_id`).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn load(toml_text: Option<&str>, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let mut base = env(&[
            ("SNYKEY_SOCKET", "/tmp/x.sock"),
            ("XDG_STATE_HOME", "/tmp/state"),
        ]);
        base.extend(env(e));
        match toml_text {
            Some(t) => {
                std::fs::write(&path, t).unwrap();
                Config::load_from(Some(&path), &base)
            }
            None => Config::load_from(None, &base),
        }
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.server.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.server.socket_mode, 0o660);
        assert_eq!(c.cache.backend, CacheBackend::Memory);
        assert_eq!(c.store.backend, StoreBackend::File);
        assert_eq!(
            c.store.path,
            PathBuf::from("/tmp/state/snykey/credentials.json")
        );
        assert_eq!(c.snyk.api_url, "https://api.snyk.io");
        assert_eq!(c.snyk.app_url, "https://app.snyk.io");
        assert_eq!(c.refresh.min_validity, Duration::from_secs(300));
        assert_eq!(
            c.server.redirect_uri,
            "http://127.0.0.1:8080/authorization-code/callback"
        );
    }

    #[test]
    fn env_overrides_file_and_lists_are_comma_separated() {
        let c = load(
            Some("[snyk]\napi_url = \"https://api.eu.snyk.io/\"\n[refresh]\nmin_validity = 60\n"),
            &[
                ("SNYKEY_SERVER_ALLOWED_UIDS", "0, 1000"),
                ("SNYKEY_REFRESH_MIN_VALIDITY", "1h30m"),
            ],
        )
        .unwrap();
        assert_eq!(c.snyk.api_url, "https://api.eu.snyk.io");
        assert_eq!(c.snyk.app_url, "https://app.eu.snyk.io");
        assert_eq!(c.server.allowed_uids, vec![0, 1000]);
        assert_eq!(c.refresh.min_validity, Duration::from_secs(5400));
    }

    #[test]
    fn errors_name_the_key_and_its_origin() {
        let e = load(Some("[store]\npth = \"/x\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store.pth") && e.contains("c.toml") && e.contains("path"),
            "{e}"
        );
        let e = load(None, &[("SNYKEY_REFRESH_JITTER", "lots")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("refresh.jitter") && e.contains("SNYKEY_REFRESH_JITTER"),
            "{e}"
        );
        let e = load(None, &[("SNYKEY_CACHE_BACKNED", "redis")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.backned"), "{e}");
        let e = load(None, &[("SNYKEY_SERVER_CALLBACK_LISTEN", "0.0.0.0:8080")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.callback_listen") && e.contains("loopback"),
            "{e}"
        );
        let e = load(None, &[("SNYKEY_SNYK_API_URL", "http://api.snyk.io")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("snyk.api_url") && e.contains("https"), "{e}");
        let e = load(Some("[refresh]\nmin_validity = \"5 parsecs\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("refresh.min_validity"), "{e}");
        let e = load(None, &[("SNYKEY_SERVER_SOCKET_MODE", "0999")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.socket_mode"), "{e}");
    }

    #[test]
    fn unrelated_snykey_variables_are_not_config_keys() {
        assert!(
            load(
                None,
                &[
                    ("SNYKEY_LOG", "trace"),
                    ("SNYKEY_ORG_ID", "o"),
                    ("SNYKEY_CLIENT_ID", "c")
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn check_config_output_redacts_secrets() {
        let c = load(
            None,
            &[
                ("SNYKEY_CACHE_URL", "redis://snykey:pa55word@redis:6379/1"),
                ("BAO_TOKEN", "s.supersecret"),
            ],
        )
        .unwrap();
        let out = c.to_redacted_toml();
        assert!(
            !out.contains("pa55word") && !out.contains("supersecret"),
            "{out}"
        );
        assert!(
            out.contains("redis://snykey:[redacted]@redis:6379/1"),
            "{out}"
        );
        // The output is itself a valid config.
        let _: toml::Table = out.parse().unwrap();
    }

    #[test]
    fn redirect_uris_that_only_look_like_loopback_are_refused() {
        for u in [
            "http://127.evil.example/authorization-code/callback",
            "http://127.0.0.1@evil.example/authorization-code/callback",
            "http://localhost.evil.example/cb",
        ] {
            let e = load(None, &[("SNYKEY_SERVER_REDIRECT_URI", u)])
                .unwrap_err()
                .to_string();
            assert!(e.contains("server.redirect_uri"), "{u}: {e}");
            assert!(!e.contains("evil"), "the error quotes the value: {e}");
        }
        let c = load(
            None,
            &[("SNYKEY_SERVER_REDIRECT_URI", "http://[::1]:8080/cb")],
        )
        .unwrap();
        assert_eq!(c.server.redirect_uri, "http://[::1]:8080/cb");
    }

    #[test]
    fn remote_metrics_need_an_explicit_allow() {
        let e = load(None, &[("SNYKEY_SERVER_METRICS_LISTEN", "0.0.0.0:9464")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.metrics_listen") && e.contains("metrics_allow_remote"),
            "{e}"
        );
        let c = load(
            None,
            &[
                ("SNYKEY_SERVER_METRICS_LISTEN", "0.0.0.0:9464"),
                ("SNYKEY_SERVER_METRICS_ALLOW_REMOTE", "true"),
            ],
        )
        .unwrap();
        assert!(c.server.metrics_allow_remote);
        assert!(c.to_redacted_toml().contains("metrics_allow_remote = true"));
        let c = load(None, &[("SNYKEY_SERVER_METRICS_LISTEN", "[::1]:9464")]).unwrap();
        assert!(!c.server.metrics_allow_remote);
    }

    #[test]
    fn a_password_in_a_store_or_snyk_url_is_refused_without_being_quoted() {
        for (var, url) in [
            ("SNYKEY_STORE_ADDR", "http://:hunter2@127.0.0.1:8200"),
            ("SNYKEY_STORE_ADDR", "https://bao:hunter2@bao.example:8200"),
            ("SNYKEY_STORE_ADDR", "https://bao:hunter2@[bad"),
            ("SNYKEY_SNYK_API_URL", "https://u:hunter2@api.snyk.io"),
            ("SNYKEY_SNYK_API_URL", "http://u:hunter2@api.snyk.io"),
        ] {
            let e = load(None, &[(var, url)]).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{var}={url}: {e}");
        }
    }

    #[test]
    fn check_config_hides_a_redis_unix_socket_password() {
        let c = load(
            None,
            &[
                ("SNYKEY_CACHE_BACKEND", "redis"),
                (
                    "SNYKEY_CACHE_URL",
                    "redis+unix:///run/redis/redis.sock?db=2&pass=pa55word",
                ),
            ],
        )
        .unwrap();
        let out = c.to_redacted_toml();
        assert!(!out.contains("pa55word"), "{out}");
        assert!(
            out.contains("redis+unix:///run/redis/redis.sock?db=2&pass=[redacted]"),
            "{out}"
        );
    }

    #[test]
    fn the_example_config_is_valid_and_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        load(Some(&text), &[]).unwrap();
        for (section, key, _) in KEYS {
            let section_text = text
                .split(&format!("[{section}]"))
                .nth(1)
                .unwrap_or_default();
            let section_text = section_text.split("\n[").next().unwrap_or_default();
            assert!(
                section_text.contains(&format!("\n{key} = ")),
                "examples/config.toml lacks {section}.{key}"
            );
        }
    }

    // --- issue 14: systemd directories and credentials, secrets from files ---

    #[test]
    fn a_relative_file_setting_names_a_systemd_credential() {
        let creds = tempfile::tempdir().unwrap();
        let dir = creds.path().display().to_string();
        let c = load(
            Some("[store]\nbackend = \"openbao\"\ntoken_file = \"bao-token\"\n"),
            &[("CREDENTIALS_DIRECTORY", &dir)],
        )
        .unwrap();
        assert_eq!(c.store.token_file, Some(creds.path().join("bao-token")));
        // An absolute path stays as it is.
        let c = load(
            Some("[store]\nauth = \"approle\"\nrole_id_file = \"/etc/r\"\nsecret_id_file = \"sid\"\n"),
            &[("CREDENTIALS_DIRECTORY", &dir)],
        )
        .unwrap();
        assert_eq!(c.store.role_id_file, Some(PathBuf::from("/etc/r")));
        assert_eq!(c.store.secret_id_file, Some(creds.path().join("sid")));
        // Relative without the variable: refused, naming the key and the fix.
        let e = load(Some("[store]\ntoken_file = \"bao-token\"\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("store.token_file") && e.contains("CREDENTIALS_DIRECTORY"),
            "{e}"
        );
        // No escaping the credentials directory.
        let e = load(
            Some("[store]\ntoken_file = \"../etc/shadow\"\n"),
            &[("CREDENTIALS_DIRECTORY", &dir)],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("store.token_file"), "{e}");
    }

    #[test]
    fn the_redis_password_comes_from_a_file_and_the_user_from_its_own_key() {
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("redis-pw"), "s3cr:t/@x\n").unwrap();
        let dir = creds.path().display().to_string();
        let c = load(
            Some("[cache]\nbackend = \"redis\"\nurl = \"rediss://redis.internal:6380/2\"\nusername = \"snykey\"\npassword_file = \"redis-pw\"\n"),
            &[("CREDENTIALS_DIRECTORY", &dir)],
        )
        .unwrap();
        assert_eq!(
            c.cache.url.expose(),
            "rediss://snykey:s3cr%3At%2F%40x@redis.internal:6380/2"
        );
        assert_eq!(c.cache.username.as_deref(), Some("snykey"));
        let out = c.to_redacted_toml();
        assert!(!out.contains("s3cr"), "{out}");
        assert!(out.contains("password_file = "), "{out}");
        // A password alone authenticates as the default user.
        let c = load(
            None,
            &[
                ("CREDENTIALS_DIRECTORY", &dir),
                ("SNYKEY_CACHE_PASSWORD_FILE", "redis-pw"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.cache.url.expose(),
            "redis://:s3cr%3At%2F%40x@127.0.0.1:6379/0"
        );
        // Not in two places at once; not from a missing or empty file.
        let e = load(
            None,
            &[
                ("CREDENTIALS_DIRECTORY", &dir),
                ("SNYKEY_CACHE_URL", "redis://u:p@h:6379/0"),
                ("SNYKEY_CACHE_PASSWORD_FILE", "redis-pw"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cache.password_file") && e.contains("one place"),
            "{e}"
        );
        let e = load(
            None,
            &[
                ("CREDENTIALS_DIRECTORY", &dir),
                ("SNYKEY_CACHE_PASSWORD_FILE", "missing"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cache.password_file") && e.contains("cannot read"),
            "{e}"
        );
        assert!(!e.contains("s3cr"), "{e}");
    }

    #[test]
    fn systemd_directories_set_the_default_paths() {
        let conf = tempfile::tempdir().unwrap();
        std::fs::write(
            conf.path().join("config.toml"),
            "[snyk]\napi_url = \"https://api.eu.snyk.io\"\n",
        )
        .unwrap();
        let conf_dir = conf.path().display().to_string();
        let e = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let c = Config::load_from(
            None,
            &e(&[
                ("STATE_DIRECTORY", "/var/lib/snykey"),
                ("RUNTIME_DIRECTORY", "/run/snykey-test"),
                ("CONFIGURATION_DIRECTORY", &conf_dir),
                ("XDG_STATE_HOME", "/home/u/.local/state"),
            ]),
        )
        .unwrap();
        assert_eq!(c.file, Some(conf.path().join("config.toml")));
        assert_eq!(c.snyk.api_url, "https://api.eu.snyk.io");
        assert_eq!(
            c.server.socket,
            PathBuf::from("/run/snykey-test/snykey.sock")
        );
        assert_eq!(
            c.store.path,
            PathBuf::from("/var/lib/snykey/credentials.json")
        );
        assert_eq!(
            c.store.journal_dir,
            PathBuf::from("/var/lib/snykey/journal")
        );
        // Without them: XDG.
        let c = Config::load_from(
            None,
            &e(&[
                ("XDG_STATE_HOME", "/home/u/.local/state"),
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.store.path,
            PathBuf::from("/home/u/.local/state/snykey/credentials.json")
        );
        assert_eq!(
            c.server.socket,
            PathBuf::from("/run/user/1000/snykey/snykey.sock")
        );
        assert_eq!(
            default_config_files(
                &|n: &str| (n == "CONFIGURATION_DIRECTORY").then(|| "/etc/snykey-alt".to_string())
            ),
            vec![
                PathBuf::from("/etc/snykey-alt/config.toml"),
                PathBuf::from(DEFAULT_CONFIG_FILE)
            ]
        );
    }

    #[test]
    fn access_tables_admins_and_audit_log_are_read_and_checked() {
        let c = load(
            Some(
                "[server]\nadmin_uids = [1500]\naudit_log = \"/var/log/snykey/audit.log\"\n\n[[access]]\ncredentials = [\"o1/c1\", \"o2/*\"]\nuids = [1001]\n\n[[access]]\ncredentials = [\"o3/c3\"]\ngids = [2001]\n",
            ),
            &[("SNYKEY_SERVER_ADMIN_GIDS", "3000,3001")],
        )
        .unwrap();
        let a = &c.access;
        assert_eq!(a.admin_uids, vec![1500]);
        assert_eq!(a.admin_gids, vec![3000, 3001]);
        assert_eq!(
            a.audit_log.as_deref(),
            Some(Path::new("/var/log/snykey/audit.log"))
        );
        assert_eq!(a.grants.len(), 2);
        assert_eq!(a.grants[0].credentials.len(), 2);
        assert_eq!(a.grants[1].gids, vec![2001]);
        // check-config prints them back as a valid config that reads the same.
        let out = c.to_redacted_toml();
        assert!(
            out.contains("[[access]]\ncredentials = [\"o1/c1\", \"o2/*\"]"),
            "{out}"
        );
        let again = load(Some(&out), &[]).unwrap();
        assert_eq!(again.access.grants, a.grants);
        assert_eq!(again.access.admin_gids, vec![3000, 3001]);
        // Defaults: nothing configured.
        let d = load(None, &[]).unwrap();
        assert!(d.access.grants.is_empty() && d.access.admin_uids.is_empty());
        assert!(d.access.audit_log.is_none());
    }

    #[test]
    fn bad_access_tables_are_refused_with_the_table_named() {
        for (text, want) in [
            (
                "[[access]]\ncredentials = [\"o1\"]\nuids = [1]\n",
                "access[0].credentials",
            ),
            (
                "[[access]]\ncredentials = []\nuids = [1]\n",
                "access[0].credentials",
            ),
            ("[[access]]\ncredentials = [\"o/c\"]\n", "grants nobody"),
            (
                "[[access]]\ncredentials = [\"o/c\"]\nuids = [-1]\n",
                "access[0].uids",
            ),
            (
                "[[access]]\ncredentials = [\"o/c\"]\nuid = [1]\n",
                "access[0].uid",
            ),
            (
                "[[access]]\ncredentials = [\"o/c\"]\nuids = [1]\n[[access]]\ncredentials = [\"../x/c\"]\nuids = [1]\n",
                "access[1].credentials",
            ),
            ("[access]\ncredentials = [\"o/c\"]\n", "[[access]] tables"),
            ("[server]\naudit_log = \"audit.log\"\n", "server.audit_log"),
        ] {
            let e = load(Some(text), &[]).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("c.toml"), "{text}: {e}");
        }
        let e = load(None, &[("SNYKEY_ACCESS_UIDS", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("only be written in the config file"), "{e}");
    }

    #[test]
    fn rest_versions_are_checked() {
        assert!(is_rest_version("2024-10-15"));
        assert!(is_rest_version("2024-10-15~beta"));
        assert!(!is_rest_version("2024-1-15"));
        assert!(!is_rest_version("latest"));
    }
    #[test]
    fn cache_url_takes_the_sentinel_forms_and_redacts_their_password() {
        let c = load(
            Some("[cache]\nbackend = \"redis\"\nurl = \"redis+sentinel://snykey:pw-xyz@10.0.0.1:26379,10.0.0.2:26379/mymaster/2\"\n"),
            &[],
        )
        .unwrap();
        assert!(c.cache.url.expose().starts_with("redis+sentinel://"));
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("pw-xyz"), "{shown}");
        assert!(
            load(
                None,
                &[("SNYKEY_CACHE_URL", "rediss+sentinel://s1,s2:26380/m")]
            )
            .is_ok()
        );
        let e = load(
            None,
            &[("SNYKEY_CACHE_URL", "redis+sentinel://u:pw-xyz@s1:26379")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cache.url") && e.contains("master"), "{e}");
        assert!(!e.contains("pw-xyz"), "{e}");
        let e = load(None, &[("SNYKEY_CACHE_URL", "http://x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis+sentinel://"), "{e}");
    }
    #[test]
    fn store_addr_takes_the_nodes_of_a_cluster() {
        let c = load(
            Some("[store]\naddr = [\"https://bao-1:8200\", \"https://bao-2:8200/\"]\n"),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.store.addrs,
            vec!["https://bao-1:8200", "https://bao-2:8200"]
        );
        assert_eq!(c.store.addr, "https://bao-1:8200");
        assert!(
            c.to_redacted_toml()
                .contains("addr = [\"https://bao-1:8200\", \"https://bao-2:8200\"]")
        );
        let c = load(
            None,
            &[(
                "SNYKEY_STORE_ADDR",
                "http://127.0.0.1:8200, http://127.0.0.1:8210",
            )],
        )
        .unwrap();
        assert_eq!(c.store.addrs.len(), 2);
        // BAO_ADDR stays one address.
        let c = load(None, &[("BAO_ADDR", "http://127.0.0.1:8300")]).unwrap();
        assert_eq!(c.store.addrs, vec!["http://127.0.0.1:8300"]);
        let e = load(Some("[store]\naddr = [1]\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.addr"), "{e}");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    const MARK: &str = "pw-SECRET-4e1d";

    fn load(toml_text: Option<&str>, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let mut env: Vec<(String, String)> = vec![
            ("SNYKEY_SOCKET".into(), "/tmp/x.sock".into()),
            ("XDG_STATE_HOME".into(), "/tmp/state".into()),
        ];
        env.extend(e.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        match toml_text {
            Some(t) => {
                std::fs::write(&path, t).unwrap();
                Config::load_from(Some(&path), &env)
            }
            None => Config::load_from(None, &env),
        }
    }

    #[test]
    fn a_bad_value_is_named_by_its_key_not_quoted() {
        // Found by the two properties below: values were quoted in errors.
        for (var, value) in [
            ("SNYKEY_SERVER_SOCKET_MODE", "pw-SECRET-4e1d"),
            ("SNYKEY_STORE_KV_VERSION", "pw-SECRET-4e1d"),
            ("SNYKEY_SERVER_ALLOWED_UIDS", "0,pw-SECRET-4e1d"),
            ("SNYKEY_SERVER_CALLBACK_LISTEN", "pw-SECRET-4e1d"),
        ] {
            let e = load(None, &[(var, value)]).unwrap_err().to_string();
            assert!(!e.contains(MARK), "{e}");
        }
        let e = load(
            Some("[refresh]\nmin_validity = { x = \"pw-SECRET-4e1d\" }\n"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("refresh.min_validity") && !e.contains(MARK),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_toml_text_is_judged_without_panic(text in "\\PC{0,200}|(\\[(server|store|cache|snyk|refresh)\\]\n)?[a-z_]{1,16} = (\"\\PC{0,20}\"|[0-9-]{1,22}|true|\\[\\]|\\{\\})\n") {
            let _ = load(Some(&text), &[]);
        }

        #[test]
        fn prop_toml_errors_never_quote_a_value(
            index in 0..KEYS.len(),
            shape in 0u8..5,
            junk in "\\PC{0,12}",
        ) {
            let (section, key, _) = KEYS[index];
            let line = match shape {
                0 => format!("{key} = \"{MARK}{junk}"),
                1 => format!("{key} = {MARK}{junk}"),
                2 => format!("{key} = [\"{MARK}\", 1]"),
                3 => format!("{key} = {{ x = \"{MARK}\" }}"),
                _ => format!("{key} = \"{MARK}\"\n{key} = \"{MARK}\""),
            };
            let text = format!("[{section}]\n{line}\n");
            if let Err(e) = load(Some(&text), &[]) {
                let msg = e.to_string();
                prop_assert!(!msg.contains(MARK), "{}", msg);
            }
        }

        #[test]
        fn prop_env_values_fail_naming_the_key_not_the_value(
            index in 0..KEYS.len(),
            junk in "\\PC{0,20}|[0-9]{0,25}|-1|0x10|1e9",
            mark in any::<bool>(),
        ) {
            let (section, key, _) = KEYS[index];
            let var = format!("SNYKEY_{}_{}", section.to_uppercase(), key.to_uppercase());
            let value = if mark { format!("{MARK}{junk}") } else { junk };
            if let Err(e) = load(None, &[(&var, &value)]) {
                let msg = e.to_string();
                prop_assert!(msg.contains(&format!("{section}.{key}")), "{}", msg);
                prop_assert!(!msg.contains(MARK), "{}.{} quotes its value: {}", section, key, msg);
            }
        }
    }
}

//! Configuration: embedded defaults, then a TOML file, then
//! `SNYKEY_<SECTION>_<KEY>` environment variables (docs/configuration.md). Validated once,
//! at start, into typed values; every error names the key and where its value
//! came from (the file, the variable, or the default), never the value.
//!
//! * `sections/` — the section structs, one file per section: the one place
//!   a key is declared, with its doc, check and reload behaviour beside it
//!   (`keys.rs`: the macro that declares them).
//! * `sources.rs` — the file and the environment, read by one generic pass;
//!   `given.rs` — the deserializer that parses a variable's text as its field's type.
//! * `de.rs` — the field forms (durations, modes, addresses, secrets).
//! * `check.rs` — validation, one function per section.
//! * `tables.rs` — the `[[sink]]` and `[[access]]` arrays of tables.
//! * `files.rs`, `url_check.rs` — credentials from files, URL checks.
//! * `on_disk.rs` — every file and directory the configuration names, checked
//!   by `check-config` and before the agent starts ([`Config::check_files`]).
//! * `show.rs` — `check-config`'s output, serialized from the same structs.
//! * `reference.rs` — `docs/configuration.md`, written from the same structs
//!   (`snykey config-reference`).

mod check;
mod de;
mod files;
mod given;
pub mod keys;
pub mod on_disk;
pub mod reference;
mod sections;
mod show;
mod sources;
mod tables;
mod url_check;

pub use sections::{
    BaoAuth, CacheBackend, CacheConfig, PublishConfig, RefreshConfig, ServerConfig, SnykConfig,
    StoreBackend, StoreConfig,
};
pub use sources::default_config_files;
pub use url_check::derive_app_url;

use sources::Sources;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the agent looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/snykey/config.toml";
/// Snyk's default (US-01) region.
pub const DEFAULT_API_URL: &str = "https://api.snyk.io";

/// A `[section]` of the configuration, from its struct.
pub(crate) struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    /// The TOML keys, in declaration order.
    pub keys: &'static [&'static str],
    pub docs: &'static [keys::KeyDoc],
    pub defaults: fn() -> toml::Table,
}

macro_rules! sections {
    ($($name:literal => $ty:ident),* $(,)?) => {
        &[$(Section {
            name: $name,
            doc: $ty::DOC,
            keys: $ty::KEYS,
            docs: $ty::DOCS,
            defaults: $ty::default_values,
        }),*]
    };
}

/// Every section, in the order of the file and the reference.
pub(crate) const SECTIONS: &[Section] = sections! {
    "server" => ServerConfig,
    "snyk" => SnykConfig,
    "cache" => CacheConfig,
    "store" => StoreConfig,
    "refresh" => RefreshConfig,
    "publish" => PublishConfig,
};

/// An environment lookup (a variable set and non-empty).
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    /// A file or directory the configuration names is not usable
    /// ([`on_disk`]): the key and the file are named.
    #[error("{key}: {message}")]
    File { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, origin: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_string(),
            origin: origin.to_string(),
            message: message.into(),
        }
    }
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub snyk: SnykConfig,
    pub cache: CacheConfig,
    pub store: StoreConfig,
    pub refresh: RefreshConfig,
    /// `[publish]`: tokens published for jobs on other machines.
    pub publish: PublishConfig,
    /// The `[[access]]` tables: who may read which tokens (issue 17).
    pub access: AccessConfig,
    /// The file this was read from, if any (SIGHUP re-reads it).
    pub file: Option<PathBuf>,
    /// `[[sink]]` tables: token files the agent keeps current (issue 14).
    pub sinks: Vec<crate::sink::SinkConfig>,
}

/// The `[[access]]` tables, validated; the decisions are in `crate::access`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessConfig {
    pub grants: Vec<crate::access::Grant>,
}

impl AccessConfig {
    /// The policy in force for an agent running as `own_uid`.
    pub fn policy(&self, server: &ServerConfig, own_uid: u32) -> crate::access::Policy {
        crate::access::Policy {
            allowed_uids: server.allowed_uids.clone(),
            allowed_gids: server.allowed_gids.clone(),
            admin_uids: server.admin_uids.clone(),
            admin_gids: server.admin_gids.clone(),
            grants: self.grants.clone(),
            own_uid,
        }
    }
}

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
        let mut src = Sources::default();
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            src.read_toml(path, &text)?;
        }
        src.read_env(env)?;
        let mut cfg = Config {
            server: src.section("server")?,
            snyk: src.section("snyk")?,
            cache: src.section("cache")?,
            store: src.section("store")?,
            refresh: src.section("refresh")?,
            publish: src.section("publish")?,
            access: AccessConfig::default(),
            file,
            sinks: Vec::new(),
        };
        check::server(&mut cfg.server, &src, &lookup)?;
        check::snyk(&mut cfg.snyk, &src)?;
        check::cache(&mut cfg.cache, &src, &lookup)?;
        check::store(&mut cfg.store, &src, &lookup)?;
        check::snapshot(&mut cfg.cache, &cfg.store, &src)?;
        check::refresh(&cfg.refresh, &src)?;
        check::publish(&mut cfg.publish, &cfg.store, &src)?;
        cfg.access.grants = tables::grants(src.access.as_ref())?;
        cfg.sinks = tables::sinks(src.sinks.as_ref(), &cfg.server.sink_dirs)?;
        Ok(cfg)
    }

    /// Every key as `section.key`, from the section structs.
    pub fn keys() -> impl Iterator<Item = String> {
        SECTIONS
            .iter()
            .flat_map(|s| s.keys.iter().map(move |k| format!("{}.{k}", s.name)))
    }

    /// What a reload applies at once: every key declared `live`, as
    /// `section.key`, and `[[table]]` for the arrays of tables that are.
    pub fn live_keys() -> impl Iterator<Item = String> {
        let keys = SECTIONS.iter().flat_map(|s| {
            s.docs
                .iter()
                .filter(|d| d.live)
                .map(move |d| format!("{}.{}", s.name, d.key))
        });
        let tables = tables::TABLES
            .iter()
            .filter(|t| t.live)
            .map(|t| format!("[[{}]]", t.name));
        keys.chain(tables)
    }

    /// Whether a reload applies `key` (as [`Config::changed_keys`] names it).
    pub fn is_live(key: &str) -> bool {
        Config::live_keys().any(|k| k == key)
    }

    /// Takes from `new` what a reload applies ([`Config::live_keys`]),
    /// keeping the rest as it is.
    pub fn keep_live(&mut self, new: &Config) {
        self.server.keep_live(&new.server);
        self.snyk.keep_live(&new.snyk);
        self.cache.keep_live(&new.cache);
        self.store.keep_live(&new.store);
        self.refresh.keep_live(&new.refresh);
        if Config::is_live("[[access]]") {
            self.access = new.access.clone();
        }
        if Config::is_live("[[sink]]") {
            self.sinks = new.sinks.clone();
        }
    }

    /// The keys whose values differ between `self` and `other`, as
    /// `section.key`, plus `[[access]]` and `[[sink]]` when those tables differ.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |section: &str, keys: Vec<&'static str>| {
            out.extend(keys.into_iter().map(|k| format!("{section}.{k}")));
        };
        add("server", self.server.changed(&other.server));
        add("snyk", self.snyk.changed(&other.snyk));
        add("cache", self.cache.changed(&other.cache));
        add("store", self.store.changed(&other.store));
        add("refresh", self.refresh.changed(&other.refresh));
        add("publish", self.publish.changed(&other.publish));
        if self.access != other.access {
            out.push("[[access]]".into());
        }
        if self.sinks != other.sinks {
            out.push("[[sink]]".into());
        }
        out
    }

    /// docs/protocol.md, "Where claims live", for `check-config` (the agent says the
    /// same at start and in `/v1/ready`).
    pub fn protection_warning(&self) -> Option<&'static str> {
        (self.store.backend == StoreBackend::OpenBao && self.store.kv_version == 1)
            .then_some(crate::broker::rotation::UNPROTECTED)
    }
}

/// `redis://user:pw@host` → `redis://user:[redacted]@host`; query values
/// such as `?pass=` too (see [`crate::urls::redact_password`]).
pub fn redact_url_password(url: &str) -> String {
    crate::urls::redact_password(url)
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

//! Where each value came from: the TOML file, then `SNYKEY_<SECTION>_<KEY>`
//! variables, read by one generic pass for every key of every section (the
//! keys are the section structs' own `KEYS`). A variable's text is handed to
//! serde as it is and parsed as whatever the field's type asks for (a number,
//! `true`/`yes`/`1`, a comma-separated list), so no table of key types exists.

use super::{ConfigError, SECTIONS};
use serde::de::DeserializeOwned;
use serde::de::value::MapDeserializer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Value;

type Error = toml::de::Error;

/// A value as given: TOML from the file, or a variable's text.
#[derive(Clone, Debug)]
pub(super) enum Given {
    Toml(Value),
    Env(String),
}

#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub value: Given,
    /// The file's path or the variable's name.
    pub origin: String,
}

/// Every value given, per section and key, plus the `[[sink]]` and
/// `[[access]]` arrays of tables (file only).
#[derive(Default)]
pub(super) struct Sources {
    sections: BTreeMap<&'static str, BTreeMap<String, Entry>>,
    pub sinks: Option<Entry>,
    pub access: Option<Entry>,
}

fn keys_of(section: &str) -> Option<(&'static str, &'static [&'static str])> {
    SECTIONS
        .iter()
        .find(|s| s.name == section)
        .map(|s| (s.name, s.keys))
}

fn section_names() -> String {
    let names: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
    names.join(", ")
}

impl Sources {
    /// The `[section]` tables of a config file.
    pub fn read_toml(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.message().to_string(),
            })?;
        let origin = path.display().to_string();
        for (section, value) in table {
            let entry = |value| {
                Some(Entry {
                    value: Given::Toml(value),
                    origin: origin.clone(),
                })
            };
            match section.as_str() {
                "sink" => self.sinks = entry(value),
                "access" => self.access = entry(value),
                _ => {
                    let Value::Table(entries) = value else {
                        return Err(ConfigError::invalid(
                            &section,
                            &origin,
                            format!("expected a [section] table ({})", section_names()),
                        ));
                    };
                    for (key, value) in entries {
                        self.insert(&section, key, Given::Toml(value), &origin)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// `SNYKEY_<SECTION>_<KEY>` variables; other `SNYKEY_*` variables
    /// (`SNYKEY_SOCKET`, `SNYKEY_LOG`, …) are not config keys.
    pub fn read_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("SNYKEY_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some((section, key)) = lower.split_once('_') else {
                continue;
            };
            if section == "access" {
                return Err(ConfigError::invalid(
                    "[[access]]",
                    name,
                    "[[access]] tables can only be written in the config file",
                ));
            }
            if keys_of(section).is_some() {
                self.insert(section, key.to_string(), Given::Env(value.clone()), name)?;
            }
        }
        Ok(())
    }

    fn insert(
        &mut self,
        section: &str,
        key: String,
        value: Given,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let Some((s, keys)) = keys_of(section) else {
            return Err(ConfigError::invalid(
                &format!("{section}.{key}"),
                origin,
                format!("unknown section; the sections are {}", section_names()),
            ));
        };
        if !keys.contains(&key.as_str()) {
            return Err(ConfigError::invalid(
                &format!("{section}.{key}"),
                origin,
                format!("unknown key; [{section}] knows {}", keys.join(", ")),
            ));
        }
        let origin = origin.to_string();
        self.sections
            .entry(s)
            .or_default()
            .insert(key, Entry { value, origin });
        Ok(())
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.sections.get(section)?.get(key)
    }

    pub fn is_given(&self, section: &str, key: &str) -> bool {
        self.get(section, key).is_some()
    }

    /// `section.key (from ORIGIN): message`. The message may quote the value
    /// given, as the operator wrote it; every text form of it is replaced by
    /// what may be shown ([`crate::urls::shown_value`]: no password, no
    /// token-shaped text), and nothing of it at all for a key that holds a
    /// secret ([`super::sections::SECRET_KEYS`]).
    pub fn err(&self, section: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let entry = self.get(section, key);
        let origin = entry.map_or("default", |e| e.origin.as_str());
        let secret = super::sections::SECRET_KEYS.contains(&(section, key));
        let message = scrub_value(message.into(), entry.map(|e| &e.value), secret);
        ConfigError::invalid(&format!("{section}.{key}"), origin, message)
    }

    /// The section's struct from the values given (defaults for the rest).
    /// When it does not deserialize, each key is tried alone to name the one
    /// at fault.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let empty = BTreeMap::new();
        let entries = self.sections.get(name).unwrap_or(&empty);
        let all = entries.iter().map(|(k, e)| (k.clone(), e.value.clone()));
        match T::deserialize(MapDeserializer::<_, Error>::new(all)) {
            Ok(v) => Ok(v),
            Err(_) => {
                for (key, entry) in entries {
                    let one = std::iter::once((key.clone(), entry.value.clone()));
                    if let Err(e) = T::deserialize(MapDeserializer::<_, Error>::new(one)) {
                        return Err(self.err(name, key, e.message().to_string()));
                    }
                }
                // Serde's message may quote a value: name the section only.
                Err(ConfigError::invalid(
                    name,
                    "the config",
                    "its keys do not fit together; compare them with examples/config.toml",
                ))
            }
        }
    }
}

/// A message about a value as it may be printed: every text form of the
/// value given (as written, quoted, trimmed, each item of a list) is replaced
/// by its shown form — the same text when nothing in it is secret — or, for
/// a key that holds a secret, by "(the value given)". A misplaced password
/// (in `cache.url`, or a token pasted into the wrong key) never reaches a log
/// or a terminal; a typo in `snyk.api_url` is shown as typed.
pub(super) fn scrub_value(mut message: String, value: Option<&Given>, secret: bool) -> String {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(t) => out.push(t.clone()),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Table(t) => t.values().for_each(|x| strings(x, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    match value {
        Some(Given::Toml(v)) => strings(v, &mut texts),
        Some(Given::Env(t)) => {
            texts.push(t.clone());
            texts.extend(t.split(',').map(str::to_string));
        }
        None => {}
    }
    // Longest first: a list's whole text before its items.
    texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for v in texts {
        for t in [v.as_str(), v.trim()] {
            let shown = if secret {
                "(the value given)".to_string()
            } else {
                crate::urls::shown_value(t)
            };
            if shown == t {
                continue;
            }
            for form in [format!("{t:?}"), format!("{:?}", t.trim())] {
                if form.len() > 2 {
                    message = message.replace(&form, &format!("{shown:?}"));
                }
            }
            if t.len() >= 4 {
                message = message.replace(t, &shown);
            }
        }
    }
    message
}

/// The config files tried, in order, when `--config` is not given:
/// `$CONFIGURATION_DIRECTORY/config.toml` (systemd's `ConfigurationDirectory=`;
/// the first of a colon-separated list), then [`super::DEFAULT_CONFIG_FILE`].
pub fn default_config_files(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(dir) = crate::paths::first_dir(env, "CONFIGURATION_DIRECTORY") {
        files.push(dir.join("config.toml"));
    }
    files.push(PathBuf::from(super::DEFAULT_CONFIG_FILE));
    files
}

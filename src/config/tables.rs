//! The arrays of tables: `[[sink]]` (token files the agent keeps current,
//! issue 14) and `[[access]]` (who may read which credentials' tokens, issue
//! 17). Each is one serde struct declared like a section (`keys.rs`), read
//! with `deny_unknown_fields` and printed back by `check-config` from the
//! same struct.

use super::keys::{KeyDoc, section};
use super::sources::{Entry, Given, scrub_value};
use super::{ConfigError, de};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::Value;

section! {
    /// `[[sink]]`: a token file the agent keeps current, for an app that cannot
    /// run `snykey-helper`. It is written atomically at start and after every
    /// refresh (a temp file with the mode and group asked, fsync, rename) and
    /// never holds an expired token: it is removed when its token expired and
    /// no new one can be had, and comes back with the next one. Repeatable; in
    /// the config file only (no variables).
    pub(super) struct SinkTable {
        keys {
            /// The credential's org id.
            #[key(
                check = "required; an id (`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)",
                refuses = r#""../x""#
            )]
            org_id: String = String::new(),
            /// The credential's client id.
            #[key(check = "required; as for `org_id`", refuses = r#""""#)]
            client_id: String = String::new(),
            /// The file to write.
            #[key(
                check = "required; an absolute path that is not a symlink, whose real directory is inside `server.sink_dirs`; one file per sink",
                refuses = r#""snyk-token""#
            )]
            path: PathBuf = PathBuf::new(),
            /// What the file holds: `token` (the token and a newline), `json` (as
            /// `snykey-helper --format json` prints) or `env` (`export` lines for
            /// `SNYK_OAUTH_TOKEN` and `SNYK_API`).
            #[key(check = "`token`, `json` or `env`", refuses = r#""yaml""#)]
            format: String = "token".into(),
            /// The file's mode.
            #[key(
                check = "an octal mode from 0600 to 0660: the owner reads and writes, others never read",
                refuses = r#""0644""#
            )]
            #[serde(with = "de::mode")]
            mode: u32 = 0o640,
            /// The file's group, by name or gid (printed as the gid).
            #[key(
                default = "none: the group a new file gets",
                check = "a gid, or the name of a group on this host",
                refuses = r#""no-such-group-snykey""#
            )]
            #[serde(with = "de::opt_group", skip_serializing_if = "Option::is_none")]
            group: Option<String> = None,
        }
        derived {}
    }
}

section! {
    /// `[[access]]`: who may read which credentials' tokens. With no
    /// `[[access]]` table every peer allowed on the socket may read every
    /// credential; with one or more, a token read (`snykey-helper`, `snykey
    /// token`, `GET /v1/credentials/{org_id}/{client_id}`) needs an admin or a
    /// table whose `credentials` match and whose `uids` or `gids` include the
    /// peer, and `snykey status` lists only what the peer may read. A refusal
    /// is the same 403 whether the credential exists or not. Repeatable; in
    /// the config file only (no variables).
    pub(super) struct AccessTable {
        keys {
            /// The credentials granted: `ORG_ID/CLIENT_ID`, or `ORG_ID/*` for every
            /// credential of an organisation.
            #[key(
                check = "a non-empty list of `ORG_ID/CLIENT_ID` or `ORG_ID/*` with valid ids",
                refuses = r#"["org-without-client"]"#
            )]
            credentials: Vec<String> = Vec::new(),
            /// The peers granted, by uid.
            #[key(
                check = "a list of uids; `uids` and `gids` are not both empty",
                refuses = r#"["root"]"#
            )]
            uids: Vec<u32> = Vec::new(),
            /// The peers granted, by primary or supplementary group.
            #[key(check = "a list of gids", refuses = "[-1]")]
            gids: Vec<u32> = Vec::new(),
        }
        derived {}
    }
}

/// An array of tables, for the reference and for reloads.
pub(crate) struct Table {
    pub name: &'static str,
    pub doc: &'static str,
    pub keys: &'static [KeyDoc],
    pub defaults: fn() -> toml::Table,
    /// A reload applies a changed table at once (else it needs a restart).
    pub live: bool,
}

/// Every array of tables.
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "sink",
        doc: SinkTable::DOC,
        keys: SinkTable::DOCS,
        defaults: SinkTable::default_values,
        live: false,
    },
    Table {
        name: "access",
        doc: AccessTable::DOC,
        keys: AccessTable::DOCS,
        defaults: AccessTable::default_values,
        live: true,
    },
];

/// `NAME[i].key (from ORIGIN): message` for the `i`th table.
fn invalid(origin: &str, at: String, message: String) -> ConfigError {
    ConfigError::invalid(&at, origin, message)
}

/// Each table of the array `entry` as a `T`; an error names the table and,
/// where it can be told, the key.
fn tables<T: DeserializeOwned>(name: &str, entry: &Entry) -> Result<Vec<T>, ConfigError> {
    let origin = entry.origin.as_str();
    let Given::Toml(Value::Array(items)) = &entry.value else {
        return Err(invalid(
            origin,
            name.into(),
            format!("must be written as [[{name}]] tables (an array of tables)"),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Table(t) = item else {
            return Err(invalid(
                origin,
                format!("{name}[{i}]"),
                "must be a table".into(),
            ));
        };
        match T::deserialize(item.clone()) {
            Ok(v) => out.push(v),
            Err(whole) => {
                let key = t.iter().find(|(k, v)| {
                    let one = toml::Table::from_iter([((*k).clone(), (*v).clone())]);
                    T::deserialize(Value::Table(one)).is_err()
                });
                let (at, value) = match key {
                    Some((k, v)) => (format!("{name}[{i}].{k}"), Some(Given::Toml(v.clone()))),
                    None => (format!("{name}[{i}]"), None),
                };
                let message = scrub_value(whole.message().to_string(), value.as_ref(), false);
                return Err(invalid(origin, at, message));
            }
        }
    }
    Ok(out)
}

/// The `[[sink]]` tables, each checked against `server.sink_dirs`.
pub(super) fn sinks(
    entry: Option<&Entry>,
    allowed: &[PathBuf],
) -> Result<Vec<crate::sink::SinkConfig>, ConfigError> {
    let Some(entry) = entry else {
        return Ok(Vec::new());
    };
    let origin = entry.origin.as_str();
    let mut sinks: Vec<crate::sink::SinkConfig> = Vec::new();
    for (i, t) in tables::<SinkTable>("sink", entry)?.into_iter().enumerate() {
        let bad = |k: &str, m: String| invalid(origin, format!("sink[{i}].{k}"), m);
        for (k, v) in [("org_id", &t.org_id), ("client_id", &t.client_id)] {
            if v.is_empty() {
                return Err(bad(k, "is required".into()));
            }
            crate::ids::check_id(k, v).map_err(|e| bad(k, e.to_string()))?;
        }
        if t.path.as_os_str().is_empty() {
            return Err(bad("path", "is required".into()));
        }
        if !t.path.is_absolute() {
            return Err(bad("path", "must be an absolute path".into()));
        }
        crate::sink::check_path(&t.path, allowed).map_err(|m| bad("path", m))?;
        if sinks.iter().any(|s| s.path == t.path) {
            return Err(bad("path", "another sink writes the same file".into()));
        }
        let format = crate::render::Format::parse(&t.format)
            .ok_or_else(|| bad("format", "is not token, json or env".into()))?;
        let mode = t.mode;
        if mode & 0o600 != 0o600 || mode & !0o660 != 0 {
            return Err(bad(
                "mode",
                "an octal mode between 0600 and 0660 (the owner reads and writes; never others)"
                    .into(),
            ));
        }
        let gid = match &t.group {
            None => None,
            Some(g) => Some(
                super::files::resolve_group(g)
                    .ok_or_else(|| bad("group", format!("{g:?} is not a group on this system")))?,
            ),
        };
        sinks.push(crate::sink::SinkConfig {
            org_id: t.org_id,
            client_id: t.client_id,
            path: t.path,
            format,
            mode,
            gid,
        });
    }
    Ok(sinks)
}

/// A sink as `check-config` prints it.
pub(super) fn sink_table(s: &crate::sink::SinkConfig) -> SinkTable {
    SinkTable {
        org_id: s.org_id.clone(),
        client_id: s.client_id.clone(),
        path: s.path.clone(),
        format: match s.format {
            crate::render::Format::Token => "token",
            crate::render::Format::Json => "json",
            crate::render::Format::Env => "env",
        }
        .into(),
        mode: s.mode,
        group: s.gid.map(|g| g.to_string()),
    }
}

/// The `[[access]]` tables.
pub(super) fn grants(entry: Option<&Entry>) -> Result<Vec<crate::access::Grant>, ConfigError> {
    let Some(entry) = entry else {
        return Ok(Vec::new());
    };
    let origin = entry.origin.as_str();
    let mut grants = Vec::new();
    for (i, t) in tables::<AccessTable>("access", entry)?
        .into_iter()
        .enumerate()
    {
        let at = |k: &str| format!("access[{i}]{k}");
        if t.credentials.is_empty() {
            return Err(invalid(
                origin,
                at(".credentials"),
                "must be a non-empty list like [\"ORG_ID/CLIENT_ID\", \"ORG_ID/*\"]".into(),
            ));
        }
        let credentials = t
            .credentials
            .iter()
            .map(|s| crate::access::Pattern::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| invalid(origin, at(".credentials"), m))?;
        if t.uids.is_empty() && t.gids.is_empty() {
            return Err(invalid(
                origin,
                at(""),
                "grants nobody: give it uids or gids".into(),
            ));
        }
        grants.push(crate::access::Grant {
            credentials,
            uids: t.uids,
            gids: t.gids,
        });
    }
    Ok(grants)
}

/// A grant as `check-config` prints it.
pub(super) fn access_table(g: &crate::access::Grant) -> AccessTable {
    AccessTable {
        credentials: g.credentials.iter().map(ToString::to_string).collect(),
        uids: g.uids.clone(),
        gids: g.gids.clone(),
    }
}

//! Field forms that serde's defaults do not cover: each module is a
//! `#[serde(with = "…")]` pair, reading what docs/configuration.md accepts (from TOML or,
//! as text, from an environment variable) and writing what `check-config`
//! prints. Messages quote the value as written, so the operator sees what is
//! wrong; the message goes through `Sources::err`, which redacts whatever in
//! it could be secret (a password, a token pasted into the wrong key).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

/// Text or a whole number, as text (durations and modes accept both).
struct TextOrInt;

impl Visitor<'_> for TextOrInt {
    type Value = Result<String, i64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a whole number")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Err(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Err)
            .map_err(|_| E::custom("the number is too large"))
    }
}

/// Serde's "invalid type" message names the type found, never the value.
fn found<E: de::Error>(what: &str, e: E) -> E {
    let text = e.to_string();
    let kind = ["string", "integer", "float", "boolean", "sequence", "map"]
        .into_iter()
        .find(|k| text.contains(k))
        .unwrap_or("another type");
    E::custom(format!("expected {what}, found {kind}"))
}

fn text_or_int<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
) -> Result<Result<String, i64>, D::Error> {
    d.deserialize_any(TextOrInt).map_err(|e| found(what, e))
}

/// A value as a message quotes it ([`crate::urls::shown_value`]).
fn shown(t: &str) -> String {
    crate::urls::shown_value(t.trim())
}

fn text<'de, D: Deserializer<'de>>(d: D, what: &str) -> Result<String, D::Error> {
    String::deserialize(d).map_err(|e| found(what, e))
}

/// Durations: whole seconds or humantime (`300`, `"5m"`, `"1h30m"`,
/// `"5 minutes"`; [`crate::duration::parse_duration`]).
pub mod duration {
    use super::*;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match text_or_int(d, "a duration like \"5m\"")? {
            Ok(t) => crate::duration::parse_duration(&t).map_err(de::Error::custom),
            Err(n) => u64::try_from(n)
                .map(Duration::from_secs)
                .map_err(|_| de::Error::custom("a duration cannot be negative")),
        }
    }
}

/// A file mode in octal: `"0660"` (or `660` written as a number).
pub mod mode {
    use super::*;

    pub fn serialize<S: Serializer>(m: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{m:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let t = match text_or_int(d, "an octal mode like \"0660\"")? {
            Ok(t) => t,
            Err(n) => n.to_string(),
        };
        u32::from_str_radix(t.trim().trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "{:?} is not an octal mode like \"0660\"",
                    shown(&t)
                ))
            })
    }
}

/// A socket address like `127.0.0.1:8080`.
pub mod addr {
    use super::*;
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let t = text(d, "an address like 127.0.0.1:8080")?;
        t.trim().parse().map_err(|_| {
            de::Error::custom(format!(
                "{:?} is not an address like 127.0.0.1:8080",
                shown(&t)
            ))
        })
    }
}

/// An optional socket address: `""` is none (and is how none is printed).
pub mod opt_addr {
    use super::*;
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let t = text(d, "an address like 127.0.0.1:9464")?;
        if t.trim().is_empty() {
            return Ok(None);
        }
        t.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format!(
                "{:?} is not an address like 127.0.0.1:9464",
                shown(&t)
            ))
        })
    }
}

/// An optional string: `""` is none.
pub mod opt_string {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Some(text(d, "a string")?).filter(|t| !t.is_empty()))
    }
}

/// An optional path: `""` is none.
pub mod opt_path {
    use super::*;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(p) => s.collect_str(&p.display()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Some(text(d, "a path")?)
            .filter(|t| !t.is_empty())
            .map(PathBuf::from))
    }
}

/// An optional secret: `""` is none; printed as `"[redacted]"` when set, so
/// the type, not the printer, keeps it out of `check-config`.
pub mod opt_secret {
    use super::*;
    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if v.is_some() { "[redacted]" } else { "" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        let t = text(d, "a string")?;
        Ok((!t.is_empty()).then(|| Secret::new(t)))
    }
}

/// `store.addr`: one address, a list, or a comma-separated list.
pub mod addrs {
    use super::*;

    use crate::urls::SecretUrl;

    /// Each address as its type shows it: with any password redacted.
    pub fn serialize<S: Serializer>(v: &[SecretUrl], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => serde::Serialize::serialize(one, s),
            many => s.collect_seq(many),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SecretUrl>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            One(String),
            Many(Vec<String>),
        }
        let given = Given::deserialize(d)
            .map_err(|_| de::Error::custom("expected an address or a list of addresses"))?;
        let list = match given {
            Given::One(t) => t.split(',').map(str::to_string).collect(),
            Given::Many(v) => v,
        };
        Ok(list
            .into_iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .map(SecretUrl::new)
            .collect())
    }
}

/// A group: a name or a gid (text or number); `""` is none.
pub mod opt_group {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match text_or_int(d, "a group name or gid")? {
            Ok(t) => Some(t).filter(|t| !t.is_empty()),
            Err(n) => Some(n.to_string()),
        })
    }
}

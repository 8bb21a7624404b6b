//! Secrets in memory: a string that never prints and is wiped when dropped.
//!
//! Every refresh token, access token, client secret, private key and Snyk auth
//! token in snykey lives in a [`Secret`]. Its `Debug` says `Secret([redacted])`
//! and it has no `Display`, so a secret cannot end up in a log line, an error
//! message or a panic by accident: reading one takes an explicit
//! [`Secret::expose`]. Serialization does write the value, because the store,
//! the journal and the agent's token answer have to carry it.
//!
//! Clones share one copy of the value (reference counted): the hot token, the
//! memory cache, the store's document and the broker's last-seen record all
//! point at the same bytes, so a secret exists once in memory however many
//! places hold it, and it is wiped when the last holder lets go.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroize;

/// A secret string: redacted in `Debug`, zeroized on drop of the last clone.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Arc<Value>);

/// The one copy of a secret's bytes, wiped when dropped.
#[derive(PartialEq, Eq, Default)]
struct Value(Box<str>);

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: zeros are valid UTF-8, so the str stays a str.
        unsafe { self.0.as_bytes_mut() }.zeroize();
    }
}

impl Secret {
    /// Wraps a value. Surrounding whitespace (a trailing newline from a file) is removed.
    pub fn new(value: impl Into<String>) -> Secret {
        let mut s: String = value.into();
        let trimmed = s.trim();
        // Copied into an exactly sized box (rather than shrunk in place, which
        // may move it and free the old bytes unwiped); the original is wiped.
        let exact: Box<str> = trimmed.into();
        s.zeroize();
        Secret(Arc::new(Value(exact)))
    }

    /// The secret value. Every call site is a place where a secret leaves its box.
    pub fn expose(&self) -> &str {
        &self.0.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.0.is_empty()
    }

    /// A short, non-reversible tag that identifies a secret in logs and journals
    /// without revealing it (first 8 hex digits of its SHA-256).
    pub fn fingerprint(&self) -> String {
        self.digest()[..8].to_string()
    }

    /// The whole SHA-256 of the value, hex: how a store record, a claim and a
    /// journal entry name a refresh token (docs/storage.md) without holding it.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.expose().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Secret::new(s))
    }
}

/// A JSON error without the offending value: serde's messages can quote a
/// value ("invalid type: string \"...\""), and in a request body, a store
/// record or a journal entry that value may be a secret. Messages that name a
/// field (unknown, missing, duplicate) are kept: they say what to fix and
/// quote no value.
pub fn json_error(e: &serde_json::Error) -> String {
    const MAX_FIELD_MESSAGE: usize = 240;
    let m = e.to_string();
    for kind in ["unknown field", "missing field", "duplicate field"] {
        if m.starts_with(kind) {
            // A field's name is not a value, but an unknown one comes from
            // the sender: shown only while the message stays one short line.
            if m.chars().count() <= MAX_FIELD_MESSAGE {
                return m;
            }
            return format!(
                "{kind} (its name is too long to show) at line {} column {}",
                e.line(),
                e.column()
            );
        }
    }
    let what = match e.classify() {
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Eof => "the JSON ends too early",
        serde_json::error::Category::Data => "a value has the wrong type or is not allowed",
        serde_json::error::Category::Io => "the data could not be read",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// A growable byte buffer for serialized secrets (request bodies, the file
/// store's document, journal entries) that wipes every buffer it lets go of.
///
/// A plain `Vec` that grows moves its bytes to a bigger allocation and frees
/// the old one as it is: each doubling leaves a plaintext copy in freed
/// memory. Here growth is done by hand (new zeroizing buffer, copy, wipe the
/// old) and the final buffer is wiped when dropped.
#[derive(Default)]
pub struct WipingBuf(zeroize::Zeroizing<Vec<u8>>);

impl WipingBuf {
    pub fn with_capacity(n: usize) -> WipingBuf {
        WipingBuf(zeroize::Zeroizing::new(Vec::with_capacity(n)))
    }

    /// Appends `data`, never letting the `Vec` reallocate on its own.
    pub fn extend(&mut self, data: &[u8]) {
        let needed = self.0.len().saturating_add(data.len());
        if needed > self.0.capacity() {
            let want = needed.max(self.0.capacity().saturating_mul(2)).max(256);
            let mut next = zeroize::Zeroizing::new(Vec::with_capacity(want));
            next.extend_from_slice(&self.0);
            // The old buffer is zeroized as it drops here.
            self.0 = next;
        }
        self.0.extend_from_slice(data);
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn into_inner(self) -> zeroize::Zeroizing<Vec<u8>> {
        self.0
    }
}

impl std::io::Write for WipingBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `serde_json::to_vec` for values that carry secrets: no copy of the
/// output is left behind in freed memory (see [`WipingBuf`]).
pub fn to_json_wiped<T: Serialize + ?Sized>(
    value: &T,
) -> Result<zeroize::Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut buf = WipingBuf::with_capacity(1024);
    serde_json::to_writer(&mut buf, value)?;
    Ok(buf.into_inner())
}

/// Wipes every string in a JSON value (a request map built from a record
/// before it is dropped).
pub fn wipe_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(wipe_json),
        serde_json::Value::Object(m) => m.values_mut().for_each(wipe_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        let shown = format!("{s:?} {:#?}", Some(&s));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn clones_share_one_copy_of_the_value() {
        let a = Secret::new(String::from("tok-shared"));
        let b = a.clone();
        assert_eq!(a.expose().as_ptr(), b.expose().as_ptr());
        drop(a);
        assert_eq!(b.expose(), "tok-shared");
    }

    #[test]
    fn trailing_newline_from_a_file_is_trimmed() {
        assert_eq!(Secret::new("abc\n").expose(), "abc");
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let s = Secret::new("tok");
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "\"tok\"");
        let back: Secret = serde_json::from_str(&j).unwrap();
        assert_eq!(back.expose(), "tok");
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        let a = Secret::new("x").fingerprint();
        assert_eq!(a, Secret::new("x").fingerprint());
        assert_eq!(a.len(), 8);
        assert_ne!(a, Secret::new("y").fingerprint());
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        org_id: String,
        refresh_token: Option<Secret>,
        n: Option<u64>,
    }

    #[test]
    fn a_long_unknown_field_name_is_not_echoed() {
        // Found by prop_json_errors_never_quote_a_value_and_stay_short: a
        // 3 000-character key came back whole in the 400's message.
        let key = "k".repeat(3000);
        let text = serde_json::json!({ "org_id": "o", key.clone(): 1 }).to_string();
        let e = serde_json::from_str::<Body>(&text).unwrap_err();
        let shown = json_error(&e);
        assert!(
            shown.starts_with("unknown field") && !shown.contains(&key),
            "{shown}"
        );
        let e = serde_json::from_str::<Body>(r#"{"org_id":"o","refresh_tokn":"x"}"#).unwrap_err();
        assert!(json_error(&e).contains("refresh_tokn"));
    }

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_json_errors_never_quote_a_value_and_stay_short(
            key in "[a-z_]{1,12}|\\PC{1,600}",
            value in "rt-SECRET-[a-z0-9]{8}",
            as_number in any::<bool>(),
        ) {
            let text = if as_number {
                format!("{{\"org_id\":\"o\",\"n\":\"{value}\"}}")
            } else {
                serde_json::json!({ "org_id": "o", key.clone(): value.clone() }).to_string()
            };
            if let Err(e) = serde_json::from_str::<Body>(&text) {
                let shown = json_error(&e);
                prop_assert!(!shown.contains(&value), "{}", shown);
                prop_assert!(shown.chars().count() <= 300, "{} characters", shown.chars().count());
            }
        }
    }
}

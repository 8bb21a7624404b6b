//! How a configuration key is declared: once, as a field of a serde struct,
//! with everything said about it beside the field. [`section!`] turns one
//! field list into
//!
//! * the struct (`#[serde(default, deny_unknown_fields)]`),
//! * `KEYS`, the TOML key names (the environment pass and the unknown-key
//!   errors read them),
//! * `changed`, the keys whose values differ (what a reload reports),
//! * `keep_live`, which takes the keys marked `live = true` from a newly read
//!   configuration (what a reload applies; everything else needs a restart),
//! * `DOC` and `DOCS`, what `docs/configuration.md` says about the section
//!   and each key ([`super::reference`] writes it; a test keeps the committed
//!   file equal to what it writes).
//!
//! A field is written as
//!
//! ```text
//! /// What it is for, in sentences (the reference's text).
//! #[key(default = "…", check = "…", refuses = "…", live = true)]
//! #[serde(with = "de::duration")]
//! name as "toml-name": Type = default,
//! ```
//!
//! Every part but the name, type and embedded default is optional to the macro, but not to
//! the tests: a key without a doc comment or a `check` fails
//! `config::reference`'s tests, naming it. `default` is said where the
//! embedded default is not a plain value (derived from another key or the
//! environment); `refuses` is a value the check refuses (a `SNYKEY_*`
//! variable's text for a section key, TOML for a table's), which a test
//! feeds to the loader to prove the check line true; `live = true` marks a key that
//! `snykey reload` / SIGHUP applies to the running agent.

/// What the reference says about one key, declared next to its field.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The TOML key.
    pub key: &'static str,
    /// The field's doc comment, one line per `///` line.
    pub doc: &'static str,
    /// One line: what is validated.
    pub check: &'static str,
    /// The default in words, where it is not a plain value.
    pub default: Option<&'static str>,
    /// A value the check refuses.
    pub refuses: Option<&'static str>,
    /// A reload applies a changed value at once.
    pub live: bool,
    /// The field's Rust type, as written.
    pub rust_type: &'static str,
    /// The serde `with` module that reads and writes the value, if any.
    pub with: Option<&'static str>,
}

/// Declares a section (or `[[table]]`) struct and its `Default`; see the
/// module's doc. Fields under `derived` are computed by validation, never
/// read nor printed.
macro_rules! section {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident {
            keys { $(
                $(#[doc = $doc:literal])*
                $(#[key(
                    $(default = $default:literal,)?
                    check = $check:literal
                    $(, refuses = $bad:literal)?
                    $(, live = $live:tt)?
                )])?
                $(#[serde(with = $with:literal $(, skip_serializing_if = $skip:literal)?)])?
                $field:ident $(as $key:literal)? : $ty:ty = $dv:expr,
            )* }
            derived { $( $(#[$dmeta:meta])* $dfield:ident : $dty:ty = $ddv:expr, )* }
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde(with = $with $(, skip_serializing_if = $skip)?)])?
                $(#[serde(rename = $key)])?
                pub $field: $ty,
            )*
            $( $(#[$dmeta])* #[serde(skip)] pub $dfield: $dty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $dv, )* $( $dfield: $ddv, )* }
            }
        }

        // The arrays of tables use their docs and defaults only.
        #[allow(dead_code)]
        impl $name {
            /// The TOML keys of this section, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$(section!(@key $field $($key)?)),*];

            /// The section's doc comment (the reference's introduction).
            pub const DOC: &'static str = concat!($($sdoc, "\n"),*);

            /// What the reference says about each key, in declaration order.
            pub const DOCS: &'static [$crate::config::keys::KeyDoc] = &[$(
                $crate::config::keys::KeyDoc {
                    key: section!(@key $field $($key)?),
                    doc: concat!($($doc, "\n"),*),
                    check: section!(@text $($check)?),
                    default: section!(@opt $($($default)?)?),
                    refuses: section!(@opt $($($bad)?)?),
                    live: section!(@live $($($live)?)?),
                    rust_type: stringify!($ty),
                    with: section!(@opt $($with)?),
                }
            ),*];

            /// The keys whose values differ between `self` and `other`.
            pub fn changed(&self, other: &Self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $( if self.$field != other.$field { keys.push(section!(@key $field $($key)?)); } )*
                keys
            }

            /// Takes the values of the keys marked `live` from `new`: what a
            /// reload applies to the running agent.
            #[allow(unused_variables)]
            pub fn keep_live(&mut self, new: &Self) {
                $( section!(@keep self new $field $($($live)?)?); )*
            }

            /// The embedded defaults as TOML values (what the reference shows).
            pub fn default_values() -> toml::Table {
                toml::Table::try_from(Self::default()).unwrap_or_default()
            }
        }
    };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@text) => { "" };
    (@text $s:literal) => { $s };
    (@opt) => { None };
    (@opt $s:literal) => { Some($s) };
    (@live) => { false };
    (@live $live:tt) => { $live };
    (@keep $s:ident $new:ident $field:ident) => {};
    (@keep $s:ident $new:ident $field:ident false) => {};
    (@keep $s:ident $new:ident $field:ident true) => { $s.$field.clone_from(&$new.$field) };
}

pub(super) use section;

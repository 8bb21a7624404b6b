//! The `[section]` tables of the configuration as serde structs: the one
//! place a key is declared, with everything `docs/configuration.md` says about
//! it beside the field ([`section!`](super::keys), which also generates each
//! struct's `KEYS`, `changed` and `keep_live`, so that the key table, the
//! environment overrides, `check-config`, reloads and the reference cannot
//! drift apart).
//!
//! One file per section: [`server`], [`snyk`], [`cache`], [`store`],
//! [`refresh`], [`publish`].
//!
//! Values here are as given (an empty string is "not given"); `check.rs`
//! fills in the defaults that depend on other keys or on the environment.

mod cache;
mod publish;
mod refresh;
mod server;
mod snyk;
mod store;

pub use cache::{CacheBackend, CacheConfig};
pub use publish::PublishConfig;
pub use refresh::RefreshConfig;
pub use server::ServerConfig;
pub use snyk::SnykConfig;
pub use store::{BaoAuth, StoreBackend, StoreConfig};

/// The keys whose values are secrets: an error about one never shows its
/// value (every other value is shown, with what is secret in it redacted:
/// see [`crate::urls::shown_value`]).
pub(crate) const SECRET_KEYS: &[(&str, &str)] = &[("store", "token")];

//! snykey keeps Snyk OAuth access tokens fresh behind a Unix socket, so that
//! tools get a valid token with one local call and never touch refresh
//! tokens or client secrets. The contract is in `docs/` (`protocol.md`,
//! `api.md`, `configuration.md`, `storage.md`, `operations.md`); this is the
//! map of the crate.
//!
//! * [`access`] — who may do what: the socket allow-list, admins, per-credential
//!   token reads (`[[access]]`); pure decisions the routing layer asks for.
//! * [`audit`] — the hash-chained audit log (`server.audit_log`) and its verifier.
//! * [`agent`] — `snykey serve`: wiring, signals (SIGTERM stops, SIGHUP reloads), sd_notify.
//! * `reload` — re-reading the config while the agent runs (SIGHUP, `POST /v1/reload`):
//!   what applies live, what needs a restart, a refused file changes nothing.
//! * [`config`] — the configuration: embedded defaults, then a TOML file,
//!   then `SNYKEY_<SECTION>_<KEY>` variables; validated once at start.
//! * [`dirs`] — an existing socket, store or journal directory must not be writable by others.
//! * [`ids`] — `OrgId`/`ClientId`: the only way an id reaches a store path or a cache key.
//! * [`credential`] — the words every layer shares: `CredKey`, `Kind`,
//!   `State`, the stored `Record`.
//! * [`secret`] — the redacting, zeroizing [`secret::Secret`] every token and key lives in.
//! * [`wire`] — the whole client/agent contract: bodies, routes
//!   (`wire::paths`), error codes and their statuses; shared by agent, CLI and helper.
//! * [`snyk`] — Snyk's OAuth endpoints, with errors that say whether a refresh
//!   token was consumed.
//! * [`store`] — the `SecretStore` seam and its backends (file, OpenBao).
//! * [`cache`] — the `TokenCache` seam (with the cross-agent refresh lock) and its backends;
//!   `cache::snapshot`, the memory cache's tokens kept across a restart.
//! * [`broker`] — the heart: per-credential single flight, the rotation rule
//!   (`broker::rotation`), and the recovery journal (`broker::journal`).
//! * [`api`] — the HTTP/1.1 agent API on the Unix socket: routes, peer checks,
//!   graceful shutdown.
//! * [`client`] — the admin CLI's client for that API (hyperlocal).
//! * [`doctor`] — `snykey doctor`: every check with its remedy.
//! * `doc_links` (tests only) — every `docs/…` reference and "rule N" cited resolves.
//! * [`from_openbao`] — `snykey token --from-openbao`: a job's side of
//!   publishing (a JWT login with its own identity, one read, revoked).
//! * [`dev`] — `snykey dev`: the agent on a temp directory against a
//!   **simulated Snyk** (`dev::sim`, `dev::server`; loopback only, never
//!   Snyk), which the test suite's fake Snyk is built on too.
//! * `sink` — token files (`[[sink]]`) kept current for apps that read a file.
//! * `metrics` — Prometheus metrics, without per-credential labels.
//! * [`systemd`] — sd_notify and the watchdog (socket activation is in `api::socket`).
//! * `urls` — loopback checks on a URL's parsed host; password redaction for logged URLs;
//!   what an error message may show of a configuration value (`shown_value`).
//! * `wiring` — the agent's side of the configuration: the settings each
//!   part is built with, made from `config`'s sections.
//! * [`duration`], [`paths`], [`exit`], [`render`], `clock`, `locks` — small shared pieces;
//!   `duration`, `ids`, `exit`, `render`, `paths`, `wire::paths` and
//!   `wire::ErrorCode` are std-only so `snykey-helper` can use them without an
//!   async runtime.
//!
//! `ARCHITECTURE.md` has the layers, where each part of `docs/` lives and which
//! module keeps each invariant. Modules not marked `pub` here are the
//! agent's own; the binaries and tests use only the public ones.

pub mod access;
pub mod agent;
pub mod api;
pub mod audit;
pub mod broker;
pub mod cache;
pub mod client;
mod clock;
pub mod config;
pub mod credential;
pub mod dev;
pub mod dirs;
#[cfg(test)]
mod doc_links;
pub mod doctor;
pub mod duration;
pub mod exit;
pub mod from_openbao;
pub mod ids;
mod locks;
mod metrics;
pub mod paths;
#[cfg(test)]
pub(crate) mod prop;
mod reload;
pub mod render;
pub mod secret;
mod sink;
pub mod snyk;
pub mod store;
pub mod systemd;
mod urls;
pub mod wire;
mod wiring;

/// The git commit the binaries were built from (`build.rs`; "unknown" outside git).
pub const GIT_COMMIT: &str = env!("SNYKEY_GIT_COMMIT");

/// What `--version` prints after the program name: the version and the commit.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SNYKEY_GIT_COMMIT"),
    ")"
);

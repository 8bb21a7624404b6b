//! The agent API: HTTP/1.1 + JSON on a Unix socket (SPEC §4).
//!
//! * [`socket`] — binding the socket with its mode set at bind time, or taking
//!   a systemd-activated one; peer credentials.
//! * [`server`] — the accept loop, per-request allow-list checks, graceful shutdown.
//! * [`routes`] — request routing and the one mapping of errors to HTTP statuses.

pub mod routes;
pub mod server;
pub mod socket;

pub use server::{AppState, serve};

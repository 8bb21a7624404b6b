//! Integration tests: the real `snykey serve`, `snykey` and `snykey-helper`
//! binaries against a strict fake Snyk, over the real Unix socket.

mod support;

mod api;
mod backends;
mod chaos;
mod fleet;
mod helper;
mod host;
mod login;
mod refresh;
mod rotation;
mod service_accounts;
mod store;

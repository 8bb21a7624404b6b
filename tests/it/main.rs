//! Integration tests: the real `snykey serve`, `snykey` and `snykey-helper`
//! binaries against a strict fake Snyk, over the real Unix socket.

mod support;

mod access;
mod api;
mod api_keys;
mod audit_grants;
mod backends;
mod booted;
mod chaos;
mod contract;
mod dev;
mod doctor_store;
mod edges;
mod examples;
mod exclusive;
mod fleet;
mod guarantees;
mod helper;
mod host;
mod install;
mod journal;
mod login;
mod operator;
mod package;
mod promise;
mod publish;
mod refresh;
mod regions;
mod rotation;
mod service_accounts;
mod snapshot;
mod snyk_cli;
mod store;
mod truth;

//! Test support: a strict fake Snyk, real OpenBao and Redis servers started
//! per test, a harness that runs the real `snykey serve` binary on a socket
//! in a temp dir, and the set-up of two agents sharing a store and a cache.

pub mod agent;
pub mod bao;
pub mod bao_cluster;
pub mod fake_snyk;
pub mod k8s;
pub mod machine;
pub mod openbao;
pub mod redis;
pub mod sentinel;
pub mod serve;
pub mod shared;
pub mod snyk_cli;
pub mod wait;

pub use agent::{Agent, Env};
pub use fake_snyk::{FakeSnyk, Fault};

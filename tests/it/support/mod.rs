//! Test support: a strict fake Snyk and a harness that runs the real
//! `snykey serve` binary on a socket in a temp dir.

pub mod agent;
pub mod fake_snyk;
pub mod openbao;
pub mod redis;
pub mod serve;

pub use agent::{Agent, Env};
pub use fake_snyk::{FakeSnyk, Fault};

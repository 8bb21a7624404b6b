//! Talking to Snyk: the OAuth token and revoke endpoints ([`oauth`]).

pub mod jwt;
pub mod oauth;
pub mod pkce;
pub mod rest;

pub use oauth::{GrantError, SnykOAuth, TokenGrant};

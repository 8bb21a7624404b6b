//! Talking to Snyk: the OAuth token and revoke endpoints ([`oauth`]).

pub mod oauth;

pub use oauth::{GrantError, SnykOAuth, TokenGrant};

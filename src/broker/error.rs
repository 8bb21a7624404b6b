//! What can go wrong in the broker, each variant saying what it means; the
//! API gives each its code and status in one place (`api::error`).

use crate::cache::CacheError;
use crate::credential::CredKey;
use crate::snyk::GrantError;
use crate::store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("{0}")]
    BadInput(String),
    #[error(
        "no credential {0} is managed by this agent: add it with `snykey put` or `snykey login`"
    )]
    NotFound(CredKey),
    #[error("{0}")]
    NeedsLogin(String),
    #[error("{0}")]
    Snyk(GrantError),
    #[error("{0}")]
    Store(StoreError),
    #[error("{0}")]
    Cache(CacheError),
    /// A new refresh token (or secret) could not be made durable: nothing is
    /// handed out until it is (docs/protocol.md I2).
    #[error("{0}")]
    NotDurable(String),
    /// Another agent (or an earlier answer) must finish first: try again shortly.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Rest(crate::snyk::rest::RestError),
    #[error(
        "no login with this state is known to this agent (it may have expired): start it again with `snykey login`"
    )]
    UnknownLogin,
    #[error(
        "the OAuth callback listener is not running (see server.callback_listen in the agent log): no browser login is possible"
    )]
    CallbackNotRunning,
    /// A task of the agent's own failed (a bug): the journal keeps what was durable.
    #[error("{0}")]
    Internal(String),
    /// An operation that stopped half-way: the sentence says what is done
    /// and what is left; `cause` (what failed) decides the code.
    #[error("{message}")]
    Partial {
        message: String,
        cause: Box<BrokerError>,
    },
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        crate::metrics::backend_error("store");
        BrokerError::Store(e)
    }
}

impl From<CacheError> for BrokerError {
    fn from(e: CacheError) -> Self {
        crate::metrics::backend_error("cache");
        BrokerError::Cache(e)
    }
}

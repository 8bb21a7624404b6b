//! Every error `code` of the agent API (docs/api.md), with the HTTP status it is
//! answered with. std-only: `snykey-helper` and [`crate::exit`] read it.
//!
//! A client reading a code it does not know (from a newer agent) gets
//! [`ErrorCode::Unknown`] and falls back on the HTTP status.

/// The `code` of an error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Bad input: the message names what to fix.
    BadRequest,
    BodyTooLarge,
    MethodNotAllowed,
    NoSuchRoute,
    /// The peer's uid/gid is not in `server.allowed_uids`/`allowed_gids`.
    PeerNotAllowed,
    /// Allowed on the socket, but not for this operation (admins, `[[access]]`).
    Forbidden,
    /// No such credential, or no such login.
    NotFound,
    NeedsLogin,
    SnykRefused,
    SnykRateLimited,
    SnykUnavailable,
    SnykUnreachable,
    SnykTimeout,
    /// A send's answer was lost in transit (docs/protocol.md rule 6).
    SnykAnswerLost,
    StoreSealed,
    StoreConflict,
    StoreUnavailable,
    /// The store refused the agent's own token or policy (permission denied):
    /// a configuration to fix, not an outage to wait out.
    StoreDenied,
    CacheUnavailable,
    RefreshInProgress,
    NotReady,
    /// The loopback callback listener is not running: no browser login.
    CallbackUnavailable,
    /// `POST /v1/reload`: the agent's config file is invalid; the agent keeps
    /// running on the configuration it had.
    ConfigInvalid,
    /// A bug in the agent (a task of its own failed).
    Internal,
    /// The admin CLI's own: a usage error found before any request.
    Usage,
    /// The admin CLI's own: a browser login ended in failure.
    LoginFailed,
    /// A code this client does not know (a newer agent).
    Unknown,
}

impl ErrorCode {
    /// Every code but [`ErrorCode::Unknown`].
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::BodyTooLarge,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NoSuchRoute,
        ErrorCode::PeerNotAllowed,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NeedsLogin,
        ErrorCode::SnykRefused,
        ErrorCode::SnykRateLimited,
        ErrorCode::SnykUnavailable,
        ErrorCode::SnykUnreachable,
        ErrorCode::SnykTimeout,
        ErrorCode::SnykAnswerLost,
        ErrorCode::StoreSealed,
        ErrorCode::StoreConflict,
        ErrorCode::StoreUnavailable,
        ErrorCode::StoreDenied,
        ErrorCode::CacheUnavailable,
        ErrorCode::RefreshInProgress,
        ErrorCode::NotReady,
        ErrorCode::CallbackUnavailable,
        ErrorCode::ConfigInvalid,
        ErrorCode::Internal,
        ErrorCode::Usage,
        ErrorCode::LoginFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::PeerNotAllowed => "peer_not_allowed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NeedsLogin => "needs_login",
            ErrorCode::SnykRefused => "snyk_refused",
            ErrorCode::SnykRateLimited => "snyk_rate_limited",
            ErrorCode::SnykUnavailable => "snyk_unavailable",
            ErrorCode::SnykUnreachable => "snyk_unreachable",
            ErrorCode::SnykTimeout => "snyk_timeout",
            ErrorCode::SnykAnswerLost => "snyk_answer_lost",
            ErrorCode::StoreSealed => "store_sealed",
            ErrorCode::StoreConflict => "store_conflict",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::StoreDenied => "store_denied",
            ErrorCode::CacheUnavailable => "cache_unavailable",
            ErrorCode::RefreshInProgress => "refresh_in_progress",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::CallbackUnavailable => "callback_unavailable",
            ErrorCode::ConfigInvalid => "config_invalid",
            ErrorCode::Internal => "internal",
            ErrorCode::Usage => "usage",
            ErrorCode::LoginFailed => "login_failed",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The code named `s`; [`ErrorCode::Unknown`] for any other string.
    pub fn parse(s: &str) -> ErrorCode {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .unwrap_or(ErrorCode::Unknown)
    }

    /// The HTTP status the agent answers this code with (docs/api.md). The CLI's
    /// own codes and `Unknown` have none of their own: the status they come
    /// with decides.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::Usage => 400,
            ErrorCode::PeerNotAllowed | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound | ErrorCode::NoSuchRoute => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::NeedsLogin | ErrorCode::LoginFailed => 409,
            ErrorCode::BodyTooLarge => 413,
            ErrorCode::ConfigInvalid => 422,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
            ErrorCode::SnykRefused
            | ErrorCode::SnykRateLimited
            | ErrorCode::SnykUnavailable
            | ErrorCode::SnykUnreachable
            | ErrorCode::SnykAnswerLost => 502,
            ErrorCode::StoreSealed
            | ErrorCode::StoreConflict
            | ErrorCode::StoreUnavailable
            | ErrorCode::StoreDenied
            | ErrorCode::CacheUnavailable
            | ErrorCode::RefreshInProgress
            | ErrorCode::NotReady
            | ErrorCode::CallbackUnavailable => 503,
            ErrorCode::SnykTimeout => 504,
        }
    }
}

/// The admin CLI builds its own errors with `"usage".into()`.
impl From<&str> for ErrorCode {
    fn from(s: &str) -> ErrorCode {
        ErrorCode::parse(s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_and_strangers_are_unknown() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), *c);
        }
        assert_eq!(ErrorCode::parse("from_a_newer_agent"), ErrorCode::Unknown);
        assert_eq!(ErrorCode::parse("unknown"), ErrorCode::Unknown);
        assert_eq!(ErrorCode::ALL.len(), 26);
    }
}

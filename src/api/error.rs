//! The one mapping of what went wrong to an error answer: each failure gets
//! its [`ErrorCode`], and the code decides the HTTP status
//! ([`ErrorCode::status`], docs/api.md).

use super::answer::{Resp, json};
use crate::access::Refusal;
use crate::broker::BrokerError;
use crate::cache::CacheError;
use crate::snyk::GrantError;
use crate::snyk::rest::RestError;
use crate::store::StoreError;
use crate::wire::{ErrorBody, ErrorCode};
use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER};
use std::time::Duration;

/// An error answer: its code, the sentence, and optionally a Retry-After.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Bad input: the message names what to fix.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// `{"error": ..., "code": ...}` with the code's status.
    pub fn into_response(self) -> Resp {
        let status = self.status();
        let mut r = json(
            status,
            &ErrorBody {
                error: self.message,
                code: self.code,
            },
        );
        if let Some(ra) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&ra.as_secs().max(1).to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        r
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::new(r.code(), r.to_string())
    }
}

/// The code of a store failure.
pub(super) fn store_code(e: &StoreError) -> ErrorCode {
    match e {
        StoreError::Sealed => ErrorCode::StoreSealed,
        StoreError::Conflict { .. } => ErrorCode::StoreConflict,
        StoreError::Denied(_) => ErrorCode::StoreDenied,
        StoreError::Unavailable(_) | StoreError::Corrupt { .. } => ErrorCode::StoreUnavailable,
    }
}

/// The code of a broker error: what the caller is told went wrong.
fn code_of(e: &BrokerError) -> ErrorCode {
    match e {
        BrokerError::BadInput(_) => ErrorCode::BadRequest,
        BrokerError::NotFound(_) | BrokerError::UnknownLogin => ErrorCode::NotFound,
        BrokerError::NeedsLogin(_) => ErrorCode::NeedsLogin,
        BrokerError::Snyk(g) => match g {
            GrantError::Permanent { .. } | GrantError::Refused { .. } => ErrorCode::SnykRefused,
            GrantError::Unavailable { status: 429, .. } => ErrorCode::SnykRateLimited,
            GrantError::Unavailable { .. } => ErrorCode::SnykUnavailable,
            GrantError::Unreachable { .. } => ErrorCode::SnykUnreachable,
            GrantError::Unknown {
                timed_out: true, ..
            } => ErrorCode::SnykTimeout,
            GrantError::Unknown { .. } => ErrorCode::SnykAnswerLost,
        },
        BrokerError::Rest(RestError::Refused { .. }) => ErrorCode::SnykRefused,
        BrokerError::Rest(RestError::Unavailable { .. }) => ErrorCode::SnykUnavailable,
        BrokerError::Rest(_) => ErrorCode::SnykUnreachable,
        BrokerError::Store(e) => store_code(e),
        BrokerError::NotDurable(_) => ErrorCode::StoreUnavailable,
        BrokerError::Cache(CacheError::LockTimeout(_)) | BrokerError::Busy(_) => {
            ErrorCode::RefreshInProgress
        }
        BrokerError::Cache(_) => ErrorCode::CacheUnavailable,
        BrokerError::CallbackNotRunning => ErrorCode::CallbackUnavailable,
        BrokerError::Internal(_) => ErrorCode::Internal,
        BrokerError::Partial { cause, .. } => code_of(cause),
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        let retry_after = match &e {
            BrokerError::Snyk(g) => g.retry_after(),
            BrokerError::Partial { cause, .. } => match cause.as_ref() {
                BrokerError::Snyk(g) => g.retry_after(),
                _ => None,
            },
            _ => None,
        };
        ApiError {
            code: code_of(&e),
            message: e.to_string(),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_the_status_spec_4_names() {
        let status = |e: BrokerError| ApiError::from(e).status().as_u16();
        assert_eq!(status(BrokerError::BadInput("x".into())), 400);
        assert_eq!(status(BrokerError::UnknownLogin), 404);
        assert_eq!(status(BrokerError::NeedsLogin("x".into())), 409);
        assert_eq!(status(BrokerError::Store(StoreError::Sealed)), 503);
        assert_eq!(status(BrokerError::Busy("x".into())), 503);
        assert_eq!(status(BrokerError::Internal("x".into())), 500);
        let e = ApiError::from(BrokerError::CallbackNotRunning);
        assert_eq!(e.code, ErrorCode::CallbackUnavailable);
        assert_eq!(e.status().as_u16(), 503);
        assert!(e.message.contains("callback listener"), "{}", e.message);
        let e = ApiError::from(BrokerError::Snyk(GrantError::Unknown {
            timed_out: true,
            message: "x".into(),
        }));
        assert_eq!((e.code, e.status().as_u16()), (ErrorCode::SnykTimeout, 504));
    }
}

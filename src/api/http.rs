//! Reading requests: JSON bodies of bounded size (read into a buffer that
//! wipes itself), percent-decoded path segments, the query string.

use super::error::ApiError;
use crate::credential::CredKey;
use crate::duration::parse_duration;
use crate::wire::{ErrorCode, paths};
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use std::time::Duration;

/// Request bodies larger than this get 413.
pub const MAX_BODY: usize = 64 * 1024;

/// A query string's pairs, decoded.
pub type Query = Vec<(String, String)>;

/// Percent-decodes one path segment (so `..%2Fx` is judged as `../x`).
pub fn decode_segment(s: &str) -> Result<String, ApiError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => out.push(v),
                None => return Err(ApiError::bad("malformed percent-encoding in the path")),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad("the path is not valid UTF-8"))
}

pub fn query_pairs(req: &Request<Incoming>) -> Result<Query, ApiError> {
    match req.uri().query() {
        None => Ok(Vec::new()),
        Some(q) => {
            serde_urlencoded::from_str(q).map_err(|_| ApiError::bad("malformed query string"))
        }
    }
}

pub fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The one place a request's ids become a [`CredKey`].
pub fn key_from(org: &str, client: &str) -> Result<CredKey, ApiError> {
    CredKey::parse(org, client).map_err(|e| ApiError::bad(e.to_string()))
}

/// The seed service's `?org_id=&client_id=` form.
pub fn key_from_query(pairs: &[(String, String)]) -> Result<CredKey, ApiError> {
    let org = query_get(pairs, paths::ORG_ID)
        .ok_or_else(|| ApiError::bad("org_id is required (?org_id=...&client_id=...)"))?;
    let client = query_get(pairs, paths::CLIENT_ID)
        .ok_or_else(|| ApiError::bad("client_id is required (?org_id=...&client_id=...)"))?;
    key_from(org, client)
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body is larger than {} KiB", MAX_BODY / 1024),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    // The body may carry a refresh token, a client secret or a private key:
    // it is gathered in a buffer that wipes itself (and every smaller buffer
    // it outgrew), sized from Content-Length when there is one. hyper's own
    // read buffer is beyond our reach.
    let capacity = declared.map_or(1024, |len| len as usize).min(MAX_BODY);
    let mut body = crate::secret::WipingBuf::with_capacity(capacity);
    let mut incoming = Limited::new(req.into_body(), MAX_BODY);
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::bad("could not read the request body")
            }
        })?;
        if let Ok(data) = frame.into_data() {
            body.extend(&data);
        }
    }
    let body = body.into_inner();
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "the request body is not the expected JSON: {}",
            crate::secret::json_error(&e)
        ))
    })
}

/// `?min_validity=`: at most 24 h.
pub fn min_validity(pairs: &[(String, String)]) -> Result<Option<Duration>, ApiError> {
    match query_get(pairs, paths::MIN_VALIDITY) {
        None | Some("") => Ok(None),
        Some(v) => {
            let d = parse_duration(v).map_err(|m| ApiError::bad(format!("min_validity: {m}")))?;
            if d > Duration::from_secs(24 * 3600) {
                return Err(ApiError::bad("min_validity must be at most 24h"));
            }
            Ok(Some(d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_a_value() {
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","client_secret":12345678}"#,
        )
        .unwrap_err();
        let m = crate::secret::json_error(&e);
        assert!(!m.contains("12345678") && m.contains("wrong type"), "{m}");
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","kind":"s3cr3t"}"#,
        )
        .unwrap_err();
        assert!(!crate::secret::json_error(&e).contains("s3cr3t"));
        let e = serde_json::from_str::<crate::wire::PutCredential>(
            r#"{"org_id":"o","client_id":"c","refresh_tokn":"x"}"#,
        )
        .unwrap_err();
        assert!(crate::secret::json_error(&e).contains("unknown field `refresh_tokn`"));
    }

    #[test]
    fn percent_decoding_exposes_path_tricks_to_validation() {
        assert_eq!(decode_segment("..%2Fx").ok().unwrap(), "../x");
        assert!(key_from(&decode_segment("..%2Fx").ok().unwrap(), "c").is_err());
        assert!(decode_segment("%zz").is_err());
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    fn percent_encode_all(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #![proptest_config(crate::prop::config(1024))]

        #[test]
        fn prop_path_segments_decode_without_panic_or_growth(s in "\\PC{0,300}|[%0-9A-Fa-f./]{0,64}") {
            if let Ok(d) = decode_segment(&s) {
                prop_assert!(d.len() <= s.len());
                if !s.contains('%') {
                    prop_assert_eq!(&d, &s);
                }
            }
        }

        #[test]
        fn prop_encoded_segments_round_trip(s in "\\PC{0,100}") {
            prop_assert_eq!(decode_segment(&percent_encode_all(&s)).ok(), Some(s));
        }

        #[test]
        fn prop_decoded_ids_still_pass_id_validation(s in "[A-Za-z0-9._%/:-]{0,40}") {
            // Whatever a segment decodes to, it reaches a key only through CredKey.
            if let Ok(d) = decode_segment(&s) {
                if let Ok(k) = key_from(&d, "c") {
                    prop_assert!(!k.org.as_str().contains('/') && !k.org.as_str().starts_with('.'));
                }
            }
        }
    }
}

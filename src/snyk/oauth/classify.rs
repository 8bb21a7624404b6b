//! What an error answer from the token or revoke endpoint means for the
//! token that was sent (docs/protocol.md rule 6), and the argument for each case.

use super::GrantError;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
}

/// Maps an error answer (any status but 2xx) whose content type is
/// `application/json` to what it means for the token that was sent: the
/// simulation's entry point (its pages are HTML, its Snyk's errors JSON).
/// The agent reads the content type too: [`classify_answer`].
pub fn classify_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> GrantError {
    classify_answer(status, Some("application/json"), body, retry_after)
}

/// Maps an error answer (any status but 2xx) to what it means for the token
/// that was sent. docs/protocol.md rule 6: only an OAuth error body proves that
/// Snyk's token endpoint answered, and so that it did not consume the token
/// (or, for `invalid_grant` and the like, that it refuses it for good).
///
/// **What counts as an OAuth error body** (RFC 6749 §5.2, [`is_oauth_error`]):
/// the answer says `Content-Type: application/json`, its body is a JSON
/// object, and its `error` is an OAuth error code: lowercase ASCII words
/// joined by `_` (`invalid_grant`, `invalid_client`, `invalid_request`,
/// `temporarily_unavailable`, `token_inactive`). Every code the RFCs and
/// IANA's OAuth error registry define has that shape. The rest of the world
/// writes JSON errors too, and none of it knows the token's fate: a gateway's
/// `{"error":"Forbidden"}`, Snyk's own V1 API `{"code":401,"error":"Not
/// authorised"}`, an API gateway's `{"message":"Forbidden"}`, a WAF's JSON
/// with `text/plain` or no content type, `{"error":"forbidden"}` (one word,
/// no code). Each of these is an unknown outcome: taking one for "not
/// consumed" would send the token again at once, a replay at Snyk whenever
/// the page came on the way back after Snyk rotated. The residual risk: an
/// intermediary that writes a JSON body with an OAuth-shaped code (a second
/// OAuth server in the path) is believed.
///
/// An answer without an OAuth error body was written by something between
/// the agent and Snyk, and nothing tells us whether that was before or
/// after it forwarded the request. Per status:
///
/// * **3xx** — the token endpoint never redirects (and redirects are not
///   followed: the token goes nowhere else). A captive portal or a proxy's
///   login redirect usually intercepts before forwarding, but a rule on a
///   load balancer may answer on the way back: unknown.
/// * **401, 403** — a WAF, a proxy or an SSO gateway page. One that inspects
///   answers blocks the one carrying Snyk's tokens after Snyk rotated:
///   unknown (the case this rule exists for).
/// * **407** — a forward proxy wants credentials, normally before it
///   forwards; a chain of proxies or a reverse proxy answering it after its
///   upstream did cannot be told apart: unknown.
/// * **408** — a proxy that gave up waiting, for the client or for its
///   upstream (after forwarding): unknown.
/// * **429** — a rate limiter in front usually refuses before forwarding,
///   but a gateway relaying an upstream 429 without its body, or limiting on
///   the way back, looks the same: unknown. (Snyk's own 429 carries an OAuth
///   body and is "not consumed", honouring `Retry-After`.)
/// * **400, 404, 405 and every other 4xx** — a page from an intermediary, or
///   a wrong `snyk.api_url`; the same reasoning: unknown.
/// * **5xx** — a gateway page (502/503/504): unknown.
///
/// The cost: an unknown outcome is retried once across all agents after the
/// quiet period, and a second one ends in `needs_login` although the token
/// may be live; the alternative, sending again at once, is a replay at Snyk
/// whenever the page came after the rotation.
pub fn classify_answer(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
    retry_after: Option<Duration>,
) -> GrantError {
    let raw: Option<RawError> = is_json(content_type)
        .then(|| serde_json::from_slice(body).ok())
        .flatten();
    let oauth_body = raw
        .as_ref()
        .is_some_and(|r| r.error.as_deref().is_some_and(is_oauth_error));
    if !oauth_body {
        let what = match status {
            300..=399 => "a redirect",
            401 | 403 => "a proxy or firewall page",
            407 => "a proxy asking for credentials",
            408 => "a proxy timeout",
            429 => "a rate limiter's page",
            500..=599 => "a gateway page",
            _ => "a page",
        };
        return GrantError::Unknown {
            timed_out: status == 504 || status == 408,
            message: format!(
                "HTTP {status} without an OAuth error body ({what} from something between the agent and Snyk, or a wrong snyk.api_url)"
            ),
        };
    }
    if status == 429 || status >= 500 {
        return GrantError::Unavailable {
            status,
            retry_after,
        };
    }
    let error = raw
        .as_ref()
        .and_then(|r| r.error.clone())
        .unwrap_or_else(|| format!("http_{status}"));
    let description = raw
        .as_ref()
        .and_then(|r| r.error_description.clone().or_else(|| r.message.clone()))
        .map(|d| sanitize(&d));
    let error = sanitize(&error);
    let auth_failed = description
        .as_deref()
        .is_some_and(|d| d.to_ascii_lowercase().contains("authentication failed"));
    let permanent = matches!(
        error.as_str(),
        "invalid_grant" | "token_inactive" | "invalid_client" | "unauthorized_client"
    ) || auth_failed;
    if permanent {
        GrantError::Permanent { error, description }
    } else {
        GrantError::Refused {
            status,
            error,
            description,
        }
    }
}

/// Is the answer's `Content-Type` JSON (`application/json`, any parameters)?
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// An OAuth error code's shape (RFC 6749 §5.2 and every registered code):
/// two or more lowercase ASCII words joined by `_`, at most 64 characters.
fn is_oauth_error(code: &str) -> bool {
    code.len() <= 64
        && code.contains('_')
        && code
            .split('_')
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Keeps an error text from Snyk printable and short.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_grant_and_token_inactive_are_permanent() {
        for e in ["invalid_grant", "token_inactive", "invalid_client"] {
            let g = classify_error(400, format!("{{\"error\":\"{e}\"}}").as_bytes(), None);
            assert!(g.is_permanent(), "{e}");
            assert!(!g.token_not_consumed());
        }
        let g = classify_error(
            401,
            br#"{"error":"other_error","error_description":"Authentication failed"}"#,
            None,
        );
        assert!(g.is_permanent());
    }

    #[test]
    fn other_4xx_5xx_and_429_did_not_consume_the_token() {
        let g = classify_error(400, br#"{"error":"invalid_request"}"#, None);
        assert!(matches!(g, GrantError::Refused { .. }) && g.token_not_consumed());
        let g = classify_error(503, br#"{"error":"temporarily_unavailable"}"#, None);
        assert!(matches!(g, GrantError::Unavailable { status: 503, .. }) && g.token_not_consumed());
        // A gateway page without an OAuth body: Snyk may have processed it.
        for status in [502, 503, 504] {
            let g = classify_error(status, b"<html>Bad Gateway</html>", None);
            assert!(
                matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                "{status}"
            );
        }
        // Snyk's own 429 (an OAuth body) did not consume it; its wait counts.
        let g = classify_error(
            429,
            br#"{"error":"rate_limited"}"#,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(g.retry_after(), Some(Duration::from_secs(7)));
        assert!(g.token_not_consumed());
        assert!(g.to_string().contains("retry after 7s"));
    }

    /// Issue 22 item 6: a 3xx or 4xx answer without an OAuth error body (a
    /// proxy's 403/407/408 page, a WAF, a captive portal) and a 429 without
    /// one prove nothing about the token: unknown outcomes, never "not
    /// consumed".
    #[test]
    fn a_3xx_or_4xx_page_without_an_oauth_body_is_an_unknown_outcome() {
        for status in [
            301, 302, 307, 400, 401, 403, 404, 405, 407, 408, 413, 429, 451,
        ] {
            for body in [
                &b"<html><body>Access denied</body></html>"[..],
                b"",
                br#"{"message":"Forbidden"}"#,
                br#"{"error":""}"#,
                br#"{"errors":[{"status":"404","detail":"not found"}]}"#,
            ] {
                let g = classify_error(status, body, Some(Duration::from_secs(3)));
                assert!(
                    matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                    "{status} {}: {g:?}",
                    String::from_utf8_lossy(body)
                );
                assert!(g.to_string().contains(&format!("HTTP {status}")), "{g}");
            }
        }
        // With an OAuth error body the same statuses are Snyk's own answers.
        let g = classify_error(403, br#"{"error":"access_denied"}"#, None);
        assert!(g.token_not_consumed(), "{g:?}");
    }

    /// A JSON error page that is not an OAuth error — a gateway's
    /// `{"error":"Forbidden"}`, Snyk's V1 API's `{"error":"Not authorised"}`,
    /// a one-word lowercase `error`, an OAuth-looking body sent as
    /// `text/html`, `text/plain` or with no content type — proves nothing
    /// about the token: an unknown outcome, never "refused, not consumed".
    #[test]
    fn a_json_page_that_is_not_an_oauth_error_is_an_unknown_outcome() {
        let json = Some("application/json");
        for (status, ctype, body) in [
            (403, json, &br#"{"error":"Forbidden"}"#[..]),
            (
                401,
                json,
                br#"{"code":401,"error":"Not authorised","message":"Not authorised"}"#,
            ),
            (400, json, br#"{"error":"forbidden"}"#),
            (400, json, br#"{"error":"Bad Request","status":400}"#),
            (400, json, br#"{"error":"INVALID_GRANT"}"#),
            (400, json, br#"{"error":"invalid grant"}"#),
            (400, json, br#"{"error":"_"}"#),
            (429, json, br#"{"error":"Too Many Requests"}"#),
            (503, json, br#"{"error":"Service Unavailable"}"#),
            (400, Some("text/html"), br#"{"error":"invalid_grant"}"#),
            (
                400,
                Some("text/plain; charset=utf-8"),
                br#"{"error":"invalid_request"}"#,
            ),
            (400, None, br#"{"error":"invalid_request"}"#),
            (503, None, br#"{"error":"temporarily_unavailable"}"#),
        ] {
            let g = classify_answer(status, ctype, body, None);
            assert!(
                matches!(g, GrantError::Unknown { .. }) && !g.token_not_consumed(),
                "{status} {ctype:?} {}: {g:?}",
                String::from_utf8_lossy(body)
            );
            assert!(!g.is_permanent() && !g.is_malformed(), "{g:?}");
        }
        // Snyk's own OAuth errors, with their content type and parameters.
        for ctype in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            let g = classify_answer(400, Some(ctype), br#"{"error":"invalid_request"}"#, None);
            assert!(g.is_malformed() && g.token_not_consumed(), "{ctype}: {g:?}");
            let g = classify_answer(400, Some(ctype), br#"{"error":"invalid_grant"}"#, None);
            assert!(g.is_permanent(), "{ctype}: {g:?}");
            let g = classify_answer(
                503,
                Some(ctype),
                br#"{"error":"temporarily_unavailable"}"#,
                None,
            );
            assert!(
                matches!(g, GrantError::Unavailable { .. }),
                "{ctype}: {g:?}"
            );
        }
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_error_answers_are_classified_without_panic(
            status in 0u16..1000,
            error in proptest::option::of("invalid_grant|token_inactive|invalid_client|server_error|\\PC{0,300}"),
            description in proptest::option::of("\\PC{0,400}|authentication failed|Authentication Failed!"),
            raw_junk in proptest::collection::vec(any::<u8>(), 0..64),
            use_junk in any::<bool>(),
        ) {
            let body = if use_junk {
                raw_junk
            } else {
                serde_json::json!({"error": error, "error_description": description}).to_string().into_bytes()
            };
            let e = classify_error(status, &body, None);
            let oauth_body = !use_junk && error.as_deref().is_some_and(is_oauth_error);
            if !oauth_body {
                // Only an OAuth error body proves the token was not consumed.
                prop_assert!(matches!(e, GrantError::Unknown { .. }), "{:?}", e);
            }
            match &e {
                GrantError::Permanent { error, description } | GrantError::Refused { error, description, .. } => {
                    prop_assert!(error.chars().count() <= 200);
                    prop_assert!(!error.chars().any(char::is_control));
                    if let Some(d) = description {
                        prop_assert!(d.chars().count() <= 200);
                        prop_assert!(!d.chars().any(char::is_control));
                    }
                }
                _ => {}
            }
            // One line, whatever Snyk sent.
            prop_assert!(!e.to_string().contains('\n'));
        }
    }
}

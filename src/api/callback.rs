//! The loopback listener for the browser's OAuth redirect
//! (`GET /authorization-code/callback`, and the seed's `GET /v1/callback`),
//! and the small pages it answers the browser with. No secret and no code
//! ever appears on a page; every page is `no-store`, with a CSP that allows
//! nothing but its own inline style, and no referrer.

use crate::broker::Broker;
use crate::broker::login::CallbackOutcome;
use crate::locks::Recover;
use crate::wire::paths;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A page: a title, a sentence, and what to do next.
pub fn page(
    status: StatusCode,
    ok: bool,
    title: &str,
    message: &str,
    next: &str,
) -> Response<Full<Bytes>> {
    let color = if ok { "#1f7a4d" } else { "#b3261e" };
    let mark = if ok { "&#10003;" } else { "&#10007;" };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>snykey: {title}</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f6f7f9;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}}\
main{{background:#fff;border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.08);padding:2.5rem 3rem;max-width:34rem}}\
h1{{font-size:1.4rem;margin:0 0 .8rem;color:{color}}}p{{color:#333;line-height:1.5;margin:.4rem 0}}.next{{color:#555}}\
.mark{{font-size:2rem;color:{color}}}footer{{margin-top:1.5rem;color:#999;font-size:.8rem}}\
</style></head><body><main><div class=\"mark\">{mark}</div><h1>{title}</h1><p>{message}</p><p class=\"next\">{next}</p>\
<footer>snykey</footer></main></body></html>",
        title = escape(title),
        message = escape(message),
        next = escape(next),
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let set = |h: &mut hyper::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(h, "content-type", "text/html; charset=utf-8");
    set(h, "cache-control", "no-store");
    set(h, "pragma", "no-cache");
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    r
}

/// The page for a callback's outcome.
pub fn outcome_page(outcome: &CallbackOutcome) -> Response<Full<Bytes>> {
    match outcome {
        CallbackOutcome::Success { org_id, client_id } => page(
            StatusCode::OK,
            true,
            "Login complete",
            &format!(
                "snykey now manages the credential {org_id}/{client_id} and keeps its token fresh."
            ),
            "You can close this tab.",
        ),
        CallbackOutcome::UnknownState => page(
            StatusCode::BAD_REQUEST,
            false,
            "This login link is not valid",
            "The login it belongs to is unknown, has expired, or was already completed. Nothing was changed.",
            "Start a new login with `snykey login` and use the link it prints.",
        ),
        CallbackOutcome::Denied { error, description } => page(
            StatusCode::BAD_REQUEST,
            false,
            "Snyk did not grant access",
            &format!(
                "Snyk returned {error}{}. Nothing was changed.",
                description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            "If this was a mistake, start the login again with `snykey login` and approve the app.",
        ),
        CallbackOutcome::ExchangeFailed(why) => page(
            StatusCode::BAD_GATEWAY,
            false,
            "The login could not be completed",
            &format!("Exchanging the authorization code with Snyk failed: {why}"),
            "Check `snykey status` and the agent's log, then start the login again with `snykey login`.",
        ),
        CallbackOutcome::BadRequest(why) => page(
            StatusCode::BAD_REQUEST,
            false,
            "The login could not be completed",
            why,
            "Start the login again with `snykey login`.",
        ),
    }
}

/// The loopback listener for the browser's redirect, bound only while a
/// browser login started on this agent is pending (issue 24): with no login
/// pending its port is free — another program (the Snyk CLI's own login, a
/// second agent on the host, a dev server) may use it, and nothing on this
/// host answers redirects nobody asked for. A login binds it as it starts,
/// so a port held by another program is reported to the person starting the
/// login, naming the port, instead of being logged once at start-up; it is
/// closed [`LINGER`] (30 s) after the last pending login completed, failed or
/// expired.
///
/// With a Redis cache a pending login is visible to every agent sharing it,
/// but only the agent the login was started on listens for its callback: the
/// browser comes back to the host (or `ssh -L` tunnel) of the agent the user
/// asked.
pub struct CallbackListener {
    addr: SocketAddr,
    /// `server.redirect_uri` as configured; when it is the default it follows
    /// the port actually bound (`callback_listen` may name port 0).
    redirect_uri: String,
    follows_port: bool,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    open: std::sync::Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// Requests starting a login right now (the login is not tracked yet).
    holds: usize,
    /// Set while bound: stops this listener.
    stop: Option<watch::Sender<bool>>,
}

/// How long the listener stays bound after the last pending login ended: a
/// browser reloading the callback page, or coming back just after its login
/// expired, gets the page that says so rather than a refused connection.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the listener bound while a login is being started.
pub struct Hold(Arc<CallbackListener>);

impl Drop for Hold {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().recover();
        open.holds = open.holds.saturating_sub(1);
    }
}

impl CallbackListener {
    pub fn new(
        addr: SocketAddr,
        redirect_uri: &str,
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<CallbackListener> {
        Arc::new(CallbackListener {
            addr,
            redirect_uri: redirect_uri.to_string(),
            follows_port: redirect_uri == format!("http://{addr}{}", paths::CALLBACK),
            broker,
            shutdown,
            open: std::sync::Mutex::new(Open::default()),
        })
    }

    /// Binds the listener unless it is bound, and keeps it bound until the
    /// returned hold is dropped (by then the login is tracked, and keeps it
    /// bound itself). The error says why it cannot listen.
    pub fn hold(self: &Arc<Self>) -> Result<Hold, String> {
        let mut open = self.open.lock().recover();
        if open.stop.is_none() {
            let (bound, stop) = self.bind()?;
            let uri = if self.follows_port {
                format!("http://{bound}{}", paths::CALLBACK)
            } else {
                self.redirect_uri.clone()
            };
            tracing::info!(listen = %bound, redirect_uri = %uri, "OAuth callback listener ready (a browser login is pending)");
            self.broker.login.set_listening(uri);
            open.stop = Some(stop);
        }
        open.holds += 1;
        Ok(Hold(Arc::clone(self)))
    }

    /// Binds and serves; a task closes the listener when nothing holds it
    /// and no login is pending, or at shutdown.
    fn bind(self: &Arc<Self>) -> Result<(SocketAddr, watch::Sender<bool>), String> {
        if !self.addr.ip().is_loopback() {
            return Err(format!(
                "refusing to listen for OAuth callbacks on {}: server.callback_listen must be a loopback address",
                self.addr
            ));
        }
        let cannot = |e: std::io::Error| {
            format!(
                "cannot listen for the browser's OAuth redirect on {} (server.callback_listen): {e}; stop the program holding the port, or choose another callback_listen (the redirect URI follows it)",
                self.addr
            )
        };
        let std_listener = std::net::TcpListener::bind(self.addr).map_err(cannot)?;
        std_listener.set_nonblocking(true).map_err(cannot)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(cannot)?;
        let bound = listener.local_addr().map_err(cannot)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let broker = Arc::clone(&self.broker);
        super::serve_tcp(listener, stop_rx, move |req| {
            let broker = Arc::clone(&broker);
            async move { handle(&broker, req).await }
        });
        tokio::spawn(Arc::clone(self).close_when_idle());
        Ok((bound, stop_tx))
    }

    /// Checks once a second whether the listener is still needed; closes it
    /// [`LINGER`] after the last login ended.
    async fn close_when_idle(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            // A dropped sender is a shutdown too (never a loop on an error).
            let gone = tokio::select! {
                _ = tick.tick() => false,
                changed = shutdown.changed() => changed.is_err(),
            };
            let stopping = gone || *shutdown.borrow();
            let mut open = self.open.lock().recover();
            let idle = open.holds == 0 && !self.broker.logins_pending();
            idle_since = if idle {
                Some(idle_since.unwrap_or_else(tokio::time::Instant::now))
            } else {
                None
            };
            if stopping || idle_since.is_some_and(|t| t.elapsed() >= LINGER) {
                if let Some(stop) = open.stop.take() {
                    let _ = stop.send(true);
                }
                self.broker.login.set_closed();
                drop(open);
                if !stopping {
                    tracing::info!(listen = %self.addr, "OAuth callback listener closed: no browser login is pending");
                }
                return;
            }
        }
    }
}

/// The callback's query (untrusted: any local process or web page can send
/// one). Malformed means empty: the broker then answers "unknown state".
/// Its size is bounded by the listener's head limit.
pub(crate) fn callback_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

async fn handle(
    broker: &Arc<Broker>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if req.method() != hyper::Method::GET
        || (path != paths::CALLBACK && path != paths::SEED_CALLBACK)
    {
        return page(
            StatusCode::NOT_FOUND,
            false,
            "Not found",
            "This address only receives Snyk's login redirect.",
            "Nothing to do here.",
        );
    }
    let params = callback_params(req.uri().query());
    let outcome = broker.callback(&params).await;
    audit_exchange(&outcome);
    crate::metrics::request(
        "callback",
        match outcome {
            CallbackOutcome::Success { .. } => 200,
            CallbackOutcome::ExchangeFailed(_) => 502,
            _ => 400,
        },
    );
    outcome_page(&outcome)
}

/// The code exchange is a grant at Snyk: one audit line, whatever its outcome
/// (a refused or unknown state never reached Snyk and is not a grant).
fn audit_exchange(outcome: &CallbackOutcome) {
    let (outcome, code, key) = match outcome {
        CallbackOutcome::Success { org_id, client_id } => (
            "ok",
            None,
            crate::credential::CredKey::parse(org_id, client_id).ok(),
        ),
        CallbackOutcome::ExchangeFailed(_) => ("error", Some("exchange_failed"), None),
        CallbackOutcome::Denied { .. } => ("refused", Some("denied_by_user"), None),
        _ => return,
    };
    crate::audit::grant(
        crate::audit::GrantKind::CodeExchange,
        key.as_ref(),
        outcome,
        code,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_and_carry_security_headers() {
        use http_body_util::BodyExt;
        let r = page(StatusCode::BAD_REQUEST, false, "t<script>", "m&", "n\"");
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        let html = String::from_utf8(bytes.to_vec()).unwrap();
        // Each part is on the page, escaped: the title in <title> and <h1>.
        assert!(!html.contains("t<script>"), "{html}");
        assert!(
            html.contains("<title>snykey: t&lt;script&gt;</title>"),
            "{html}"
        );
        assert!(html.contains("<h1>t&lt;script&gt;</h1>"), "{html}");
        assert!(html.contains("<p>m&amp;</p>"), "{html}");
        assert!(html.contains("<p class=\"next\">n&quot;</p>"), "{html}");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use http_body_util::BodyExt;
    use proptest::prelude::*;

    fn body_of(r: Response<Full<Bytes>>) -> String {
        let collected = block_on(r.into_body().collect()).unwrap();
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    proptest! {
        #![proptest_config(crate::prop::config(256))]

        #[test]
        fn prop_any_callback_query_is_read_without_panic(q in "\\PC{0,200}|(state|code|error|instance)=[%0-9A-Za-z<>&\"'+]{0,60}(&(state|code|error)=[%0-9A-Za-z]{0,20}){0,4}") {
            let params = callback_params(Some(&q));
            prop_assert!(params.len() <= q.matches('&').count() + 1);
            if let Some(state) = params.get("state") {
                if crate::snyk::pkce::is_valid_state(state) {
                    prop_assert!(state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
                }
            }
        }

        #[test]
        fn prop_what_snyk_or_a_page_sends_back_is_escaped_on_the_page(
            // Each carries a mark the page template cannot contain, followed
            // by what would break out of HTML if it were not escaped.
            error in "\\PC{0,20}Zq7<[a-z]{1,8}[^>]{0,20}>\\PC{0,20}",
            description in proptest::option::of("\\PC{0,20}Zq8[<>\"'&]\\PC{0,40}"),
        ) {
            let html = body_of(outcome_page(&CallbackOutcome::Denied {
                error: error.clone(),
                description: description.clone(),
            }));
            prop_assert!(!html.contains(&error), "{}", html);
            prop_assert!(html.contains(&escape(&error)), "{}", html);
            if let Some(d) = description {
                prop_assert!(html.contains(&escape(&d)), "{}", html);
                // (`&` alone escapes to `&amp;`, which still starts with `&`.)
                if d.contains(['<', '>', '"', '\'']) {
                    prop_assert!(!html.contains(&d), "{}", html);
                }
            }
        }
    }
}

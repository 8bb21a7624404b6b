//! The URL-valued keys: Snyk's base URLs, OpenBao's addresses and the Redis
//! URL forms. Messages quote a URL only with any password redacted.

/// `cache.url`: `redis://`, `rediss://`, `redis+unix://`, `unix://`, or the
/// Sentinel forms of docs/configuration.md.
pub(super) fn check_cache_url(url: &str) -> Result<(), String> {
    if ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|p| url.starts_with(p))
    {
        return Ok(());
    }
    match crate::cache::redis::parse_sentinel_url(url) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(
            "must start with redis://, rediss://, unix://, or for Sentinel \
             redis+sentinel:// or rediss+sentinel://"
                .into(),
        ),
        Err(m) => Err(m),
    }
}

pub use crate::snyk::region::derive_app_url;
pub(super) use crate::snyk::region::{normalize_base_url, normalize_base_url_any};

/// `server.redirect_uri` given explicitly: the browser must come back to the
/// callback listener itself — the same loopback address (`localhost` for
/// 127.0.0.1 or [::1]), the same port, a path the listener serves. A
/// mismatch would send the authorization code to a port nobody (or another
/// program) listens on, after the user approved the app.
pub(super) fn check_redirect(listen: std::net::SocketAddr, uri: &str) -> Result<(), String> {
    use crate::wire::paths::{CALLBACK, SEED_CALLBACK};
    let shown = crate::urls::shown_value(uri);
    if !crate::urls::is_loopback_http(uri) {
        return Err(format!(
            "{shown:?} must point at the loopback callback listener (http://127.0.0.1:PORT{CALLBACK})"
        ));
    }
    let Ok(parsed) = url::Url::parse(uri) else {
        return Err(format!("{shown:?} is not a URL"));
    };
    if listen.port() == 0 {
        return Err(format!(
            "{shown:?} is given, but server.callback_listen = \"{listen}\" picks a random port: give callback_listen a fixed port, or drop redirect_uri (it follows callback_listen)"
        ));
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host_matches = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip) == listen.ip(),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip) == listen.ip(),
        // The browser resolves it to 127.0.0.1 or [::1].
        Some(url::Host::Domain(_)) => {
            listen.ip() == std::net::IpAddr::from([127, 0, 0, 1])
                || listen.ip() == std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        }
        None => false,
    };
    if !host_matches || port != listen.port() {
        return Err(format!(
            "{shown:?} does not reach server.callback_listen = \"{listen}\": the browser would bring the login back to a port this agent does not listen on; drop redirect_uri (it follows callback_listen) or make the two name the same address and port"
        ));
    }
    if parsed.path() != CALLBACK && parsed.path() != SEED_CALLBACK {
        return Err(format!(
            "{shown:?} has a path the callback listener does not serve: use {CALLBACK} (or {SEED_CALLBACK})"
        ));
    }
    Ok(())
}

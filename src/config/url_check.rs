//! The URL-valued keys: Snyk's base URLs, OpenBao's addresses and the Redis
//! URL forms. Messages quote a URL only with any password redacted.

/// `cache.url`: `redis://`, `rediss://`, `redis+unix://`, `unix://`, or the
/// Sentinel forms of SPEC §7.
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

/// A Snyk base URL: https, or http only to a loopback host (tests, proxies).
pub(super) fn normalize_base_url(u: &str) -> Result<String, String> {
    let n = normalize_base_url_any(u)?;
    if n.starts_with("https://") {
        return Ok(n);
    }
    let loopback = url::Url::parse(&n).is_ok_and(|p| match p.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    });
    if loopback {
        Ok(n)
    } else {
        Err(format!(
            "{:?} must use https:// (plain http is allowed only to a loopback address)",
            crate::urls::shown_value(u)
        ))
    }
}

/// An http(s) base URL with a host and nothing else: no query, fragment or
/// credentials (so no address held in the config can carry a password).
pub(super) fn normalize_base_url_any(u: &str) -> Result<String, String> {
    let t = u.trim().trim_end_matches('/');
    let shown = crate::urls::shown_value(u);
    let parsed = url::Url::parse(t).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{shown:?} must be an http(s):// URL with a host"));
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(format!(
            "{shown:?} must not carry a query, fragment or credentials"
        ));
    }
    Ok(t.to_string())
}

/// `https://api.eu.snyk.io` → `https://app.eu.snyk.io` (SPEC §7).
pub fn derive_app_url(api_url: &str) -> String {
    match api_url.split_once("://") {
        Some((scheme, rest)) if rest.starts_with("api.") => {
            format!("{scheme}://app.{}", &rest[4..])
        }
        _ => api_url.to_string(),
    }
}

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

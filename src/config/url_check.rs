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
            crate::urls::redact_password(u)
        ))
    }
}

/// An http(s) base URL with a host and nothing else: no query, fragment or
/// credentials (so no address held in the config can carry a password).
pub(super) fn normalize_base_url_any(u: &str) -> Result<String, String> {
    let t = u.trim().trim_end_matches('/');
    let shown = crate::urls::redact_password(u);
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

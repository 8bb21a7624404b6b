//! A Snyk region: the base URL of its API (`https://api.eu.snyk.io`), as
//! `snyk.api_url` and every credential's own `api_url` are checked, and the
//! app URL a browser login uses there.

/// A Snyk base URL: https, or http only to a loopback host (tests, proxies).
pub fn normalize_base_url(u: &str) -> Result<String, String> {
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
pub fn normalize_base_url_any(u: &str) -> Result<String, String> {
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

/// `https://api.eu.snyk.io` → `https://app.eu.snyk.io` (docs/configuration.md).
pub fn derive_app_url(api_url: &str) -> String {
    match api_url.split_once("://") {
        Some((scheme, rest)) if rest.starts_with("api.") => {
            format!("{scheme}://app.{}", &rest[4..])
        }
        _ => api_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_an_https_base_url_or_plain_http_to_a_loopback_address() {
        assert_eq!(
            normalize_base_url(" https://api.eu.snyk.io/ ").unwrap(),
            "https://api.eu.snyk.io"
        );
        assert_eq!(
            normalize_base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "http://api.snyk.io",
            "ftp://api.snyk.io",
            "api.snyk.io",
            "https://api.snyk.io/?region=eu",
            "https://u:pwSECRET@api.snyk.io",
        ] {
            let e = normalize_base_url(bad).unwrap_err();
            assert!(!e.contains("pwSECRET"), "{e}");
        }
        assert_eq!(
            derive_app_url("https://api.eu.snyk.io"),
            "https://app.eu.snyk.io"
        );
        assert_eq!(derive_app_url("http://127.0.0.1:1"), "http://127.0.0.1:1");
    }
}

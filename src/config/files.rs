//! Values that come from files and the host: systemd credentials
//! (`$CREDENTIALS_DIRECTORY`), the Redis password file, group names, the
//! host name.

use super::sources::Sources;
use super::{CacheConfig, ConfigError, Lookup};
use crate::secret::Secret;
use std::path::{Path, PathBuf};

/// A `*_file` setting: an absolute path as it is; a relative one names a
/// systemd credential, resolved under `$CREDENTIALS_DIRECTORY`
/// (`LoadCredential=`, systemd.exec(5)). Without that directory a relative
/// path is refused rather than resolved against whatever the working directory is.
pub(super) fn credential_path(
    src: &Sources,
    section: &str,
    key: &str,
    p: &Path,
    env: Lookup<'_>,
) -> Result<PathBuf, ConfigError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    match env("CREDENTIALS_DIRECTORY") {
        Some(dir) => {
            if p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(src.err(
                    section,
                    key,
                    "a credential name must not contain . or .. segments",
                ));
            }
            Ok(PathBuf::from(dir).join(p))
        }
        None => Err(src.err(
            section,
            key,
            "is relative, and $CREDENTIALS_DIRECTORY is not set: give an absolute path, or load it with systemd's LoadCredential=",
        )),
    }
}

/// `cache.username` and `cache.password_file` are checked against the URL
/// (the user and password in one place only) and the password is read, so
/// that it can live in a file or a systemd credential instead of the config
/// file or the environment. [`CacheConfig::connection_url`] puts them together.
pub(super) fn cache_credentials(c: &mut CacheConfig, src: &Sources) -> Result<(), ConfigError> {
    if c.username.is_none() && c.password_file.is_none() {
        return Ok(());
    }
    let key = if c.password_file.is_some() {
        "password_file"
    } else {
        "username"
    };
    let Some((scheme, rest)) = c.url.expose().split_once("://") else {
        return Ok(());
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        return Err(src.err(
            "cache",
            key,
            "cache.url already has user:password@; give the user and password in one place",
        ));
    }
    if scheme.contains("unix") {
        return Err(src.err(
            "cache",
            "password_file",
            "a unix:// Redis URL takes no user or password here",
        ));
    }
    if let Some(p) = &c.password_file {
        let text = std::fs::read_to_string(p).map_err(|e| {
            src.err(
                "cache",
                "password_file",
                format!("cannot read {}: {e}", p.display()),
            )
        })?;
        let secret = Secret::new(text.trim_end_matches(['\n', '\r']).to_string());
        if secret.is_empty() {
            return Err(src.err(
                "cache",
                "password_file",
                format!("{} is empty", p.display()),
            ));
        }
        c.password = Some(secret);
    }
    Ok(())
}

impl CacheConfig {
    /// The URL the Redis client connects with: `url`, with `username` and the
    /// password from `password_file` folded in (percent-encoded) when given.
    pub fn connection_url(&self) -> crate::urls::SecretUrl {
        if self.username.is_none() && self.password.is_none() {
            return self.url.clone();
        }
        let Some((scheme, rest)) = self.url.expose().split_once("://") else {
            return self.url.clone();
        };
        let mut userinfo = zeroize::Zeroizing::new(String::new());
        if let Some(u) = &self.username {
            userinfo.push_str(&percent_encode_userinfo(u));
        }
        if let Some(pw) = &self.password {
            userinfo.push(':');
            userinfo.push_str(&percent_encode_userinfo(pw.expose()));
        }
        crate::urls::SecretUrl::new(format!("{scheme}://{}@{rest}", userinfo.as_str()))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the
/// Redis client decodes the user and password of its URL).
fn percent_encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A group name or number → its gid.
pub(super) fn resolve_group(g: &str) -> Option<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Some(n);
    }
    let name = std::ffi::CString::new(g).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives it.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// This host's name (for the default `server.agent_id`).
pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // when the name fits, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

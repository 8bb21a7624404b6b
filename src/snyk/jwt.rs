//! `private_key_jwt` client assertions (RFC 7523) for Snyk service accounts:
//! RS256, header `kid`; claims `iss` = `sub` = client id, `aud` = the full
//! token URL of the region, a unique `jti`, `iat`, `exp` = now + 300 s.

use crate::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// How long an assertion is valid.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// The smallest RSA key accepted.
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// The DER inside a PEM block, and whether it is PKCS#1 (`RSA PRIVATE KEY`).
fn pem_der(pem: &str) -> Result<(Vec<u8>, bool), String> {
    let text = pem.trim();
    let (label, pkcs1) = if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        ("RSA PRIVATE KEY", true)
    } else if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        ("PRIVATE KEY", false)
    } else if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(
            "the private key is encrypted: give it unencrypted (the secret store protects it)"
                .into(),
        );
    } else {
        return Err(
            "the private key must be a PEM RSA key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
                .into(),
        );
    };
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    if !text.contains(&format!("-----END {label}-----")) {
        return Err("the PEM block is not terminated".into());
    }
    let der = STANDARD
        .decode(body.trim())
        .map_err(|_| "the PEM body is not valid base64".to_string())?;
    Ok((der, pkcs1))
}

/// Checks that `pem` is an RSA private key of at least 2048 bits; returns its size.
pub fn validate_key(pem: &str) -> Result<usize, String> {
    let (der, pkcs1) = pem_der(pem)?;
    let kp = if pkcs1 {
        aws_lc_rs::rsa::KeyPair::from_der(&der)
    } else {
        aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
    }
    .map_err(|e| match e.description_() {
        // aws-lc refuses small RSA keys when it parses them.
        "TooSmall" => format!(
            "the RSA key is smaller than {MIN_RSA_BITS} bits; at least {MIN_RSA_BITS} are required"
        ),
        why => format!("the private key is not a valid RSA private key ({why})"),
    })?;
    let bits = kp.public_modulus_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    Ok(bits)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh signed assertion (new `jti` every call).
pub fn assertion(
    client_id: &str,
    token_url: &str,
    key_pem: &Secret,
    key_id: &str,
    now: SystemTime,
) -> Result<Secret, String> {
    let key = EncodingKey::from_rsa_pem(key_pem.expose().as_bytes())
        .map_err(|_| "the stored private key cannot sign (not an RSA PEM key)".to_string())?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_id.to_string());
    let mut jti = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut jti);
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: token_url,
        jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        iat: unix(now),
        exp: unix(now + ASSERTION_LIFETIME),
    };
    jsonwebtoken::encode(&header, &claims, &key)
        .map(Secret::new)
        .map_err(|e| format!("cannot sign the client assertion: {}", e.kind_name()))
}

trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind::*;
        match self.kind() {
            InvalidRsaKey(_) => "invalid RSA key",
            InvalidKeyFormat => "invalid key format",
            _ => "signing error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_keys_are_refused_with_a_clear_error() {
        assert!(validate_key("hello").unwrap_err().contains("PEM RSA key"));
        assert!(
            validate_key("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            validate_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err()
                .contains("not a valid RSA")
        );
        assert!(
            validate_key(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
            )
            .unwrap_err()
            .contains("encrypted")
        );
    }
}

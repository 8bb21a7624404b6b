//! Organisation and client identifiers.
//!
//! An id reaches a store path, a cache key or a journal file name only as an
//! [`OrgId`] or [`ClientId`], and those can only be built by [`parse_id`]'s
//! rule from docs/api.md: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`. So `../x`, `a:b`,
//! an empty string or 200 characters can never become a path or a key.
//! This module is std-only: `snykey-helper` uses it too.

use std::fmt;

/// Why an id was refused; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: it must be 1-128 characters of A-Z a-z 0-9 . _ - and start with a letter or digit",
            self.field, self.reason
        )
    }
}

impl std::error::Error for IdError {}

/// Checks an id against docs/api.md. `field` names it in the error ("org_id").
pub fn check_id(field: &'static str, s: &str) -> Result<(), IdError> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(IdError {
            field,
            reason: "is empty",
        });
    };
    if bytes.len() > 128 {
        return Err(IdError {
            field,
            reason: "is longer than 128 characters",
        });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError {
            field,
            reason: "does not start with a letter or digit",
        });
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(IdError {
            field,
            reason: "has a character outside A-Z a-z 0-9 . _ -",
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($name:ident, $field:literal) => {
        #[doc = concat!("A validated `", $field, "` (docs/api.md).")]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id($field, s)?;
                Ok($name(s.into()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
    };
}

id_type!(OrgId, "org_id");
id_type!(ClientId, "client_id");

/// The org part of the scratch record `snykey doctor` has the agent write
/// and remove: it starts with `_`, which [`check_id`] refuses, so no
/// credential can ever have it and no request can name it.
pub const SCRATCH_ORG: &str = "_snykey";

/// The scratch record's ids (`_snykey/doctor`), built without the check that
/// refuses them: a store path under the configured prefix (the agent's policy
/// covers it), never a credential.
pub(crate) fn scratch_ids() -> (OrgId, ClientId) {
    (OrgId(SCRATCH_ORG.into()), ClientId("doctor".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_and_dotted_names_are_accepted() {
        assert!(check_id("org_id", "0b7f8c3e-1d2a-4c5b-9e8f-123456789abc").is_ok());
        assert!(check_id("org_id", "my.org_1-x").is_ok());
        assert!(check_id("org_id", &"a".repeat(128)).is_ok());
    }

    #[test]
    fn path_and_key_tricks_are_refused() {
        for bad in [
            "", "../x", "..", ".hidden", "a:b", "a/b", "a b", "-x", "é", "a\0b",
        ] {
            assert!(check_id("org_id", bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_id("org_id", &"a".repeat(129)).is_err());
        assert!(check_id("org_id", &"a".repeat(200)).is_err());
    }

    #[test]
    fn the_scratch_key_can_never_be_a_credential() {
        use crate::credential::CredKey;
        let k = CredKey::scratch();
        assert_eq!(k.to_string(), "_snykey/doctor");
        assert!(CredKey::parse(k.org.as_str(), k.client.as_str()).is_err());
    }

    #[test]
    fn the_error_names_the_field_and_the_rule() {
        let e = check_id("client_id", "a:b").unwrap_err().to_string();
        assert!(e.starts_with("client_id "), "{e}");
        assert!(e.contains("A-Z a-z 0-9 . _ -"), "{e}");
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    /// The docs/api.md rule, written independently of `check_id`.
    fn spec_allows(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    }

    proptest! {
        #![proptest_config(crate::prop::config(512))]

        #[test]
        fn prop_ids_follow_the_spec_rule_and_never_quote_the_input(s in "\\PC{0,200}|[A-Za-z0-9._:/%-]{0,140}") {
            let r = check_id("org_id", &s);
            prop_assert_eq!(r.is_ok(), spec_allows(&s), "{:?}", s);
            if let Err(e) = r {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("org_id "), "{}", msg);
                prop_assert!(msg.len() < 200, "{}", msg);
                if s.len() >= 12 {
                    prop_assert!(!msg.contains(&s), "{}", msg);
                }
            }
        }

        #[test]
        fn prop_valid_ids_round_trip(s in "[A-Za-z0-9][A-Za-z0-9._-]{0,127}", c in "[A-Za-z0-9][A-Za-z0-9._-]{0,127}") {
            let org = OrgId::parse(&s).unwrap();
            let client = ClientId::parse(&c).unwrap();
            prop_assert_eq!(org.as_str(), s.as_str());
            prop_assert_eq!(client.as_str(), c.as_str());
        }
    }
}

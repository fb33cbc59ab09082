//! Identifiers that appear in topics, JSON messages and chunk headers.
//!
//! Every identifier is validated when it is built or deserialised, so a
//! value of one of these types can be put into a topic, a file name or a
//! SQL literal without further checks.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Longest device, clinic or centre id, in bytes. MQTT allows 65535; we keep
/// ids short because they are repeated in every topic over a slow link.
pub const MAX_NAME_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long, more than {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    /// Covers the MQTT specials `/`, `+`, `#`, as well as whitespace and
    /// control characters: ids are limited to `[A-Za-z0-9._-]`.
    #[error("{kind} contains {ch:?} at byte {at}; allowed are A-Z a-z 0-9 . _ -")]
    BadChar {
        kind: &'static str,
        ch: char,
        at: usize,
    },
    #[error("{kind} {value:?} is not a lowercase hyphenated UUID")]
    NotUuid { kind: &'static str, value: String },
    #[error("{kind} is the nil UUID")]
    NilUuid { kind: &'static str },
    #[error("patient pseudonym {0:?} is not of the form k<key version>-<32 lowercase hex digits>")]
    NotPseudonym(String),
}

fn check_name(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_NAME_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max: MAX_NAME_ID_LEN,
        });
    }
    if let Some((at, ch)) = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::BadChar { kind, ch, at });
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_name($kind, &s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A device's id, which is also its MQTT user name (the broker ACL ties
    /// `ecg/v1/dev/%u/#` to it).
    DeviceId,
    "device id"
);
name_id!(
    /// The clinic a device belongs to.
    ClinicId,
    "clinic id"
);
name_id!(
    /// A chest-pain centre that receives alerts.
    CentreId,
    "centre id"
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// Any non-nil UUID; the nil UUID is what uninitialised device
            /// memory looks like, so it is refused.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, IdError> {
                if uuid.is_nil() {
                    return Err(IdError::NilUuid { kind: $kind });
                }
                Ok(Self(uuid))
            }

            pub fn from_bytes(bytes: [u8; 16]) -> Result<Self, IdError> {
                Self::from_uuid(Uuid::from_bytes(bytes))
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            /// Only the canonical lowercase hyphenated form is accepted, so
            /// that one id has exactly one topic spelling.
            fn from_str(s: &str) -> Result<Self, IdError> {
                let not_uuid = || IdError::NotUuid { kind: $kind, value: s.chars().take(80).collect() };
                if s.len() != 36 {
                    return Err(not_uuid());
                }
                let uuid = Uuid::try_parse(s).map_err(|_| not_uuid())?;
                if uuid.hyphenated().to_string() != s {
                    return Err(not_uuid());
                }
                Self::from_uuid(uuid)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// One recording session of one patient on one device. 16 bytes in a
    /// chunk header, lowercase hyphenated UUID text everywhere else.
    VisitId,
    "visit id"
);
uuid_id!(
    /// One suspected-STEMI alert (re-publications for escalation keep it).
    AlertId,
    "alert id"
);

/// A keyed pseudonym of a patient: `k<key version>-<32 lowercase hex>`,
/// the first 16 bytes of HMAC-SHA256(key, local patient identifier) computed
/// on the device, so the raw identifier never leaves the clinic. The format
/// is strict so that a raw identifier (a name, an ID-card number) cannot
/// pass for a pseudonym.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct PatientPseudonym(String);

impl PatientPseudonym {
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = s
            .strip_prefix('k')
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(version, digest)| {
                (1..=5).contains(&version.len())
                    && version.bytes().all(|b| b.is_ascii_digit())
                    && digest.len() == 32
                    && digest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        if !ok {
            return Err(IdError::NotPseudonym(s.chars().take(80).collect()));
        }
        Ok(Self(s))
    }

    /// Builds the pseudonym from a key version and the 16-byte keyed digest.
    pub fn from_digest(key_version: u16, digest: &[u8; 16]) -> Self {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("k{key_version}-{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PatientPseudonym {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl From<PatientPseudonym> for String {
    fn from(p: PatientPseudonym) -> String {
        p.0
    }
}

impl fmt::Display for PatientPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_ids_reject_mqtt_specials_and_bounds() {
        assert!(DeviceId::new("dev-001.a_b").is_ok());
        for bad in ["a/b", "a+b", "a#b", "a b", "é", "a\0b"] {
            assert!(
                matches!(DeviceId::new(bad), Err(IdError::BadChar { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(DeviceId::new(""), Err(IdError::Empty { .. })));
        assert!(DeviceId::new("x".repeat(MAX_NAME_ID_LEN)).is_ok());
        assert!(matches!(
            DeviceId::new("x".repeat(MAX_NAME_ID_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn visit_ids_must_be_canonical_non_nil_uuids() {
        let s = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let id: VisitId = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        assert_eq!(VisitId::from_bytes(*id.as_bytes()), Ok(id));
        assert!("0F8FAD5B-D9CB-469F-A165-70867728950E"
            .parse::<VisitId>()
            .is_err());
        assert!("0f8fad5bd9cb469fa16570867728950e"
            .parse::<VisitId>()
            .is_err());
        assert!(matches!(
            "00000000-0000-0000-0000-000000000000".parse::<VisitId>(),
            Err(IdError::NilUuid { .. })
        ));
    }

    #[test]
    fn pseudonyms_have_one_strict_form() {
        assert!(PatientPseudonym::new("k1-9f86d081884c7d659a2feaa0c55ad015").is_ok());
        for bad in [
            "110101199003077777",
            "k1-9F86D081884C7D659A2FEAA0C55AD015",
            "k-9f86d081884c7d659a2feaa0c55ad015",
            "k1-9f86d081884c7d659a2feaa0c55ad01",
            "Zhang San",
        ] {
            assert!(PatientPseudonym::new(bad).is_err(), "{bad:?}");
        }
        let p = PatientPseudonym::from_digest(u16::MAX, &[0xab; 16]);
        assert_eq!(PatientPseudonym::new(p.as_str()), Ok(p));
    }
}

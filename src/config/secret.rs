//! A password in a config file: read into a [`Secret`], so the section that holds it never
//! prints it (`Debug` shows `Secret(***)`) and an error about it never echoes it; written back
//! in clear, so a config round-trips.

use std::fmt;

use serde::{Deserializer, Serializer, de};

use crate::auth::Secret;

/// `#[serde(with = "super::secret::option")]` for an `Option<Secret>` field.
pub(super) mod option {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(
        s: &Option<Secret>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match s {
            Some(s) => serializer.serialize_str(s.expose()),
            None => serializer.serialize_none(),
        }
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        deserializer.deserialize_string(Visitor).map(Some)
    }
}

/// Takes a string; anything else is refused without showing the value (serde's own message
/// would: `invalid type: integer `123456``).
struct Visitor;

const NOT_A_STRING: &str = "must be a string (quote it)";

impl de::Visitor<'_> for Visitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret::new(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(E::custom(NOT_A_STRING))
    }
}

//! Config of the router: [`RouterConfig`], built into [`RouterSettings`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::error::{ConfigPath, InvalidConfig};
use super::section::Section;
use crate::health::EndpointId;
use crate::route::{Failback, RouterBuilder};

/// The knobs of a [`RouterBuilder`] from a config file (the endpoints are code: their ids are
/// the adapter's). Every field is optional and defaults to the builder's default.
///
/// ```toml
/// failback = "30s"      # or "manual"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// When to move back to a preferred endpoint: a duration it must stay up for
    /// ([`Failback::After`]), or `"manual"` ([`Failback::Manual`]). Default 30 s.
    #[serde(with = "failback", skip_serializing_if = "Option::is_none")]
    pub failback: Option<Failback>,
}

/// A validated [`RouterConfig`]: applies its values to any [`RouterBuilder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterSettings {
    failback: Option<Failback>,
}

impl RouterSettings {
    /// Sets on `builder` every value the config gave.
    pub fn apply<K: EndpointId>(&self, builder: RouterBuilder<K>) -> RouterBuilder<K> {
        match self.failback {
            Some(f) => builder.failback(f),
            None => builder,
        }
    }

    /// The failback the config gave, if any.
    pub fn failback(&self) -> Option<Failback> {
        self.failback
    }
}

impl Section for RouterConfig {
    type Output = RouterSettings;

    /// Every failback the file can spell is one the builder takes: nothing is rejected here.
    fn build_at(&self, _at: &ConfigPath) -> Result<RouterSettings, InvalidConfig> {
        Ok(RouterSettings {
            failback: self.failback,
        })
    }
}

/// [`Failback`] as `"30s"` or `"manual"`.
mod failback {
    use super::*;

    pub(super) fn serialize<S: Serializer>(f: &Option<Failback>, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Some(Failback::After(d)) => s.serialize_str(&crate::config::duration::format(*d)),
            Some(Failback::Manual) => s.serialize_str("manual"),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Failback>, D::Error> {
        d.deserialize_str(Visitor).map(Some)
    }

    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = Failback;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"30s\", or \"manual\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Failback, E> {
            if v == "manual" {
                return Ok(Failback::Manual);
            }
            crate::config::duration::parse(v)
                .map(Failback::After)
                .map_err(|e| E::custom(format!("{e}; or \"manual\"")))
        }
    }
}

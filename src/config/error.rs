//! Where a rejected value sits in a config ([`ConfigPath`]) and the error that names it
//! ([`InvalidConfig`]).

use std::fmt;

use crate::error::ConfigError;

/// The dotted path of a config section: `redis`, `redis.timeouts`, `payments.retry.backoff`.
///
/// A [`Section`](super::Section) builds under a path and names every rejected value by it, so
/// the error of a nested section reads `invalid `payments.retry.backoff.base`: …`.
///
/// ```
/// use switchover::config::ConfigPath;
///
/// let at = ConfigPath::new("redis").join("timeouts");
/// assert_eq!(at.to_string(), "redis.timeouts");
/// assert_eq!(at.field("response"), "redis.timeouts.response");
/// assert_eq!(ConfigPath::root().field("deadline"), "deadline");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfigPath(String);

impl ConfigPath {
    /// The top of a config: fields are named by themselves.
    pub const fn root() -> Self {
        ConfigPath(String::new())
    }

    /// A top-level section (`"redis"`); an empty name is the root.
    pub fn new(section: impl Into<String>) -> Self {
        ConfigPath(section.into())
    }

    /// The path of a subsection.
    #[must_use]
    pub fn join(&self, section: &str) -> Self {
        ConfigPath(self.field(section))
    }

    /// The dotted name of `field` in this section.
    pub fn field(&self, field: &str) -> String {
        match (self.0.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => self.0.clone(),
            (false, false) => format!("{}.{field}", self.0),
        }
    }

    /// The path as written (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A rejection of `field` of this section for `reason`.
    pub fn invalid(&self, field: &str, reason: impl Into<String>) -> InvalidConfig {
        InvalidConfig {
            path: self.field(field),
            reason: reason.into(),
        }
    }

    /// A builder's [`ConfigError`] for a field of this section, named by its full path.
    pub fn rejected(&self, error: ConfigError) -> InvalidConfig {
        self.invalid(error.field(), error.reason())
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A config value was rejected: by the builder it feeds (a zero attempt count, a cap below the
/// base) or when it was read (`"2x"` is not a duration, an unknown field). Names the value by
/// its dotted path.
///
/// ```
/// use switchover::config::{ConfigPath, RetryConfig, Section};
///
/// let config = RetryConfig { max_attempts: Some(0), ..RetryConfig::default() };
/// let err = config.build_at(&ConfigPath::new("payments.retry")).unwrap_err();
/// assert_eq!(err.path(), "payments.retry.max_attempts");
/// assert_eq!(err.to_string(), "invalid `payments.retry.max_attempts`: must be at least 1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{path}`: {reason}")]
pub struct InvalidConfig {
    path: String,
    reason: String,
}

impl InvalidConfig {
    pub(super) fn new(path: String, reason: String) -> Self {
        InvalidConfig { path, reason }
    }

    /// The dotted path of the rejected value (`redis.timeouts.response`); empty when the
    /// document as a whole was rejected (not a table, a syntax error before any key).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

//! The connection settings both pools' sections carry (Postgres, Redis): how often host names
//! are looked up again and the maximum connection age, checked as the builders check them.
//!
//! The fields themselves stay declared in each section: a section rejects unknown fields, which
//! `#[serde(flatten)]` does not support, and each links its own builder's method.

use std::time::Duration;

use super::error::{ConfigPath, InvalidConfig};
use crate::retry::MAX_DEADLINE;

/// Checks a section's `resolve_interval` (above zero, at most a day) and `max_connection_age`
/// (a duration above zero, or `"off"`), naming the field under `at`.
pub(super) fn check(
    at: &ConfigPath,
    resolve_interval: Option<Duration>,
    max_connection_age: Option<Option<Duration>>,
) -> Result<(), InvalidConfig> {
    if let Some(d) = resolve_interval
        && (d.is_zero() || d > MAX_DEADLINE)
    {
        return Err(at.invalid("resolve_interval", "must be above zero and at most a day"));
    }
    if let Some(Some(d)) = max_connection_age
        && d.is_zero()
    {
        return Err(at.invalid(
            "max_connection_age",
            "must be above zero (or \"off\" for no limit)",
        ));
    }
    Ok(())
}

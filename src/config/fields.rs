//! The field names a builder's [`ConfigError`](crate::ConfigError) carries for values that an
//! adapter's section keeps in a nested core section, so the error can be named by its path.

/// The health tracker builder's fields: a pool's `build` reports them as they are, and
/// [`HealthConfig`](super::HealthConfig) spells them the same.
pub(super) const HEALTH: [&str; 12] = [
    "failure_threshold",
    "failure_rate",
    "recovery_successes",
    "ejection_base",
    "ejection_growth",
    "ejection_cap",
    "stable_after",
    "throttling_marks_down",
    "probe_interval",
    "probe_timeout",
    "heartbeat",
    "heartbeat_jitter",
];

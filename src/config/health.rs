//! Config of the health tracker: [`HealthConfig`], built into [`HealthSettings`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::section::Section;
use crate::health::{EndpointId, FailureRate, HealthTracker, HealthTrackerBuilder};

/// The knobs of a [`HealthTrackerBuilder`] from a config file. Every field is optional and
/// defaults to the builder's default (see its table). The probe itself is code, not config.
///
/// ```toml
/// failure_threshold = 3
/// failure_rate = { ratio = 0.5, window = 100 }
/// recovery_successes = 2
/// ejection_base = "1s"
/// ejection_growth = 2.0
/// ejection_cap = "30s"
/// stable_after = "30s"
/// throttling_marks_down = false
/// probe_interval = "1s"
/// probe_timeout = "500ms"
/// heartbeat = "5s"
/// heartbeat_jitter = 0.2
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// See [`failure_threshold`](HealthTrackerBuilder::failure_threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    /// See [`failure_rate`](HealthTrackerBuilder::failure_rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<FailureRateConfig>,
    /// See [`recovery_successes`](HealthTrackerBuilder::recovery_successes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_successes: Option<u32>,
    /// See [`ejection_base`](HealthTrackerBuilder::ejection_base).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ejection_base: Option<Duration>,
    /// See [`ejection_growth`](HealthTrackerBuilder::ejection_growth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejection_growth: Option<f64>,
    /// See [`ejection_cap`](HealthTrackerBuilder::ejection_cap).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ejection_cap: Option<Duration>,
    /// See [`stable_after`](HealthTrackerBuilder::stable_after).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub stable_after: Option<Duration>,
    /// See [`throttling_marks_down`](HealthTrackerBuilder::throttling_marks_down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttling_marks_down: Option<bool>,
    /// See [`probe_interval`](HealthTrackerBuilder::probe_interval).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub probe_interval: Option<Duration>,
    /// See [`probe_timeout`](HealthTrackerBuilder::probe_timeout).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub probe_timeout: Option<Duration>,
    /// See [`heartbeat`](HealthTrackerBuilder::heartbeat).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<Duration>,
    /// See [`heartbeat_jitter`](HealthTrackerBuilder::heartbeat_jitter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_jitter: Option<f64>,
}

/// A [`FailureRate`] from a config file: `{ ratio = 0.5, window = 100 }`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRateConfig {
    /// The failure share that trips, in `(0, 1]`.
    pub ratio: f64,
    /// The outcomes in a window, at least 1.
    pub window: u32,
}

/// A validated [`HealthConfig`]: applies its values to any [`HealthTrackerBuilder`], keeping
/// the builder's own value for every field the config left out. `Copy`, so an adapter's
/// `health(|h| settings.apply(h))` closure can own it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HealthSettings {
    failure_threshold: Option<u32>,
    failure_rate: Option<FailureRate>,
    recovery_successes: Option<u32>,
    ejection_base: Option<Duration>,
    ejection_growth: Option<f64>,
    ejection_cap: Option<Duration>,
    stable_after: Option<Duration>,
    throttling_marks_down: Option<bool>,
    probe_interval: Option<Duration>,
    probe_timeout: Option<Duration>,
    heartbeat: Option<Duration>,
    heartbeat_jitter: Option<f64>,
}

impl HealthSettings {
    /// Sets on `builder` every value the config gave.
    pub fn apply<K: EndpointId>(
        &self,
        mut builder: HealthTrackerBuilder<K>,
    ) -> HealthTrackerBuilder<K> {
        if let Some(n) = self.failure_threshold {
            builder = builder.failure_threshold(n);
        }
        if let Some(r) = self.failure_rate {
            builder = builder.failure_rate(r);
        }
        if let Some(n) = self.recovery_successes {
            builder = builder.recovery_successes(n);
        }
        if let Some(d) = self.ejection_base {
            builder = builder.ejection_base(d);
        }
        if let Some(g) = self.ejection_growth {
            builder = builder.ejection_growth(g);
        }
        if let Some(d) = self.ejection_cap {
            builder = builder.ejection_cap(d);
        }
        if let Some(d) = self.stable_after {
            builder = builder.stable_after(d);
        }
        if let Some(yes) = self.throttling_marks_down {
            builder = builder.throttling_marks_down(yes);
        }
        if let Some(d) = self.probe_interval {
            builder = builder.probe_interval(d);
        }
        if let Some(d) = self.probe_timeout {
            builder = builder.probe_timeout(d);
        }
        if let Some(d) = self.heartbeat {
            builder = builder.heartbeat(d);
        }
        if let Some(f) = self.heartbeat_jitter {
            builder = builder.heartbeat_jitter(f);
        }
        builder
    }
}

impl Section for HealthConfig {
    type Output = HealthSettings;

    /// Checks the values with the tracker builder's own validation (a builder with these
    /// values over the defaults, built without endpoints or probe) and returns them as
    /// settings. A check between a value set here and one an adapter sets on its own builder
    /// happens when that builder is built.
    fn build_at(&self, at: &ConfigPath) -> Result<HealthSettings, InvalidConfig> {
        let settings = HealthSettings {
            failure_threshold: self.failure_threshold,
            failure_rate: self
                .failure_rate
                .map(|r| FailureRate::new(r.ratio, r.window)),
            recovery_successes: self.recovery_successes,
            ejection_base: self.ejection_base,
            ejection_growth: self.ejection_growth,
            ejection_cap: self.ejection_cap,
            stable_after: self.stable_after,
            throttling_marks_down: self.throttling_marks_down,
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
            heartbeat: self.heartbeat,
            heartbeat_jitter: self.heartbeat_jitter,
        };
        settings
            .apply(HealthTracker::<u8>::builder())
            .build()
            .map_err(|e| at.rejected(e))?;
        Ok(settings)
    }
}

use std::time::Duration;

use rand::RngExt;
use rand::rngs::SmallRng;

use crate::error::ConfigError;

/// Marks an endpoint down when too large a share of its recent outcomes failed, in addition to
/// the consecutive-failure threshold.
///
/// Outcomes are counted in tumbling windows of [`window`](Self::window) outcomes (successes and
/// transient failures; permanent errors never count). The endpoint is ejected as soon as the
/// failures in the current window reach `ratio × window` (rounded up), so a bad window trips
/// before it is complete. Counting by outcomes rather than by time keeps the success path free
/// of clock reads.
///
/// ```
/// use switchover::health::FailureRate;
///
/// // Eject after 50 failures among 100 outcomes.
/// let rate = FailureRate::new(0.5, 100);
/// assert_eq!(rate.failures_to_trip(), 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailureRate {
    ratio: f64,
    window: u32,
}

impl FailureRate {
    /// Trips at `ratio` (in `(0, 1]`) failures among `window` (at least 1) outcomes. Checked when
    /// the tracker is built.
    pub const fn new(ratio: f64, window: u32) -> Self {
        FailureRate { ratio, window }
    }

    /// The failure share that trips.
    pub const fn ratio(&self) -> f64 {
        self.ratio
    }

    /// The number of outcomes in a window.
    pub const fn window(&self) -> u32 {
        self.window
    }

    /// The failures within one window that eject the endpoint.
    pub fn failures_to_trip(&self) -> u32 {
        ((self.ratio * f64::from(self.window)).ceil() as u32).clamp(1, self.window.max(1))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(ConfigError::new(
                "failure_rate",
                format!("ratio must be in (0, 1], got {}", self.ratio),
            ));
        }
        if self.window == 0 {
            return Err(ConfigError::new(
                "failure_rate",
                "window must be at least 1 outcome",
            ));
        }
        Ok(())
    }
}

/// The tracker's policy, validated. Copied into the shared core at build time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HealthConfig {
    pub(crate) failure_threshold: u32,
    pub(crate) failure_rate: Option<FailureRate>,
    /// Precomputed from `failure_rate`.
    pub(crate) rate_trip: u32,
    pub(crate) recovery_successes: u32,
    pub(crate) ejection_base: Duration,
    pub(crate) ejection_growth: f64,
    pub(crate) ejection_cap: Duration,
    pub(crate) stable_after: Duration,
    pub(crate) throttling_marks_down: bool,
    pub(crate) probe_interval: Duration,
    pub(crate) probe_timeout: Duration,
    pub(crate) heartbeat: Option<Duration>,
    /// Each heartbeat is due `heartbeat × (1 − jitter × u)` after the previous probe started,
    /// `u` uniform in `[0, 1]`.
    pub(crate) heartbeat_jitter: f64,
    /// A heartbeat that runs out of time is missed even when the endpoint answered meanwhile
    /// (peers that all take writes: leaving a slow one costs nothing).
    pub(crate) late_beats_missed: bool,
    /// The seed of the tracker's jitter RNG (`None`: from entropy).
    pub(crate) heartbeat_seed: Option<u64>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: 3,
            failure_rate: None,
            rate_trip: 0,
            recovery_successes: 2,
            ejection_base: Duration::from_secs(1),
            ejection_growth: 2.0,
            ejection_cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(30),
            throttling_marks_down: false,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            heartbeat: None,
            heartbeat_jitter: 0.2,
            late_beats_missed: false,
            heartbeat_seed: None,
        }
    }
}

impl HealthConfig {
    /// The ejection time of the `n`-th consecutive ejection (1-based):
    /// `min(base × growth^(n-1), cap)`.
    pub(crate) fn ejection_for(&self, n: u32) -> Duration {
        let exp = n.saturating_sub(1).min(4096) as i32;
        let secs = self.ejection_base.as_secs_f64() * self.ejection_growth.powi(exp);
        if !secs.is_finite() || secs >= self.ejection_cap.as_secs_f64() {
            self.ejection_cap
        } else {
            Duration::from_secs_f64(secs).min(self.ejection_cap)
        }
    }

    /// The delay from one probe's start to the next heartbeat: `heartbeat × (1 − jitter × u)`
    /// with `u` drawn from `rng` (no draw without jitter), so never later than `heartbeat`.
    pub(crate) fn next_beat(&self, heartbeat: Duration, rng: &mut SmallRng) -> Duration {
        let h = u64::try_from(heartbeat.as_nanos()).unwrap_or(u64::MAX);
        // At most a day (validated), so `h × jitter` fits a u64 exactly enough.
        let most = (h as f64 * self.heartbeat_jitter) as u64;
        if most == 0 {
            return heartbeat;
        }
        Duration::from_nanos(h - rng.random_range(0..=most.min(h)))
    }

    pub(crate) fn validate(mut self) -> Result<Self, ConfigError> {
        if self.failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be at least 1"));
        }
        if self.recovery_successes == 0 {
            return Err(ConfigError::new("recovery_successes", "must be at least 1"));
        }
        if self.ejection_base.is_zero() {
            return Err(ConfigError::new("ejection_base", "must be above zero"));
        }
        if !self.ejection_growth.is_finite() || self.ejection_growth < 1.0 {
            return Err(ConfigError::new(
                "ejection_growth",
                format!(
                    "must be a finite number of at least 1, got {}",
                    self.ejection_growth
                ),
            ));
        }
        if self.ejection_cap < self.ejection_base {
            return Err(ConfigError::new(
                "ejection_cap",
                format!(
                    "{:?} is shorter than the ejection base {:?}",
                    self.ejection_cap, self.ejection_base
                ),
            ));
        }
        let day = Duration::from_secs(24 * 3600);
        for (field, d) in [
            ("ejection_cap", self.ejection_cap),
            ("stable_after", self.stable_after),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
        ] {
            if d > day {
                return Err(ConfigError::new(
                    field,
                    format!("{d:?} is longer than the limit of one day"),
                ));
            }
        }
        if self.probe_interval.is_zero() {
            return Err(ConfigError::new("probe_interval", "must be above zero"));
        }
        if self.probe_timeout.is_zero() {
            return Err(ConfigError::new("probe_timeout", "must be above zero"));
        }
        if let Some(h) = self.heartbeat
            && (h.is_zero() || h > day)
        {
            return Err(ConfigError::new(
                "heartbeat",
                format!("must be above zero and at most one day, got {h:?}"),
            ));
        }
        if !(0.0..1.0).contains(&self.heartbeat_jitter) {
            return Err(ConfigError::new(
                "heartbeat_jitter",
                format!(
                    "must be a fraction in [0, 1), got {}",
                    self.heartbeat_jitter
                ),
            ));
        }
        if let Some(rate) = self.failure_rate {
            rate.validate()?;
            self.rate_trip = rate.failures_to_trip();
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ejection_grows_by_factor_and_stops_at_cap() {
        let c = HealthConfig {
            ejection_base: ms(1000),
            ejection_growth: 2.0,
            ejection_cap: ms(10_000),
            ..HealthConfig::default()
        };
        let got: Vec<_> = (1..=6).map(|n| c.ejection_for(n)).collect();
        assert_eq!(
            got,
            [
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10_000),
                ms(10_000)
            ]
        );
        // No overflow at absurd streaks.
        assert_eq!(c.ejection_for(u32::MAX), ms(10_000));
        // Streak 0 is treated as the first ejection.
        assert_eq!(c.ejection_for(0), ms(1000));
    }

    #[test]
    fn growth_of_one_keeps_the_base() {
        let c = HealthConfig {
            ejection_growth: 1.0,
            ..HealthConfig::default()
        };
        assert_eq!(c.ejection_for(50), Duration::from_secs(1));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (
                HealthConfig {
                    failure_threshold: 0,
                    ..Default::default()
                },
                "failure_threshold",
            ),
            (
                HealthConfig {
                    recovery_successes: 0,
                    ..Default::default()
                },
                "recovery_successes",
            ),
            (
                HealthConfig {
                    ejection_base: Duration::ZERO,
                    ..Default::default()
                },
                "ejection_base",
            ),
            (
                HealthConfig {
                    ejection_growth: 0.5,
                    ..Default::default()
                },
                "ejection_growth",
            ),
            (
                HealthConfig {
                    ejection_growth: f64::NAN,
                    ..Default::default()
                },
                "ejection_growth",
            ),
            (
                HealthConfig {
                    ejection_cap: ms(10),
                    ..Default::default()
                },
                "ejection_cap",
            ),
            (
                HealthConfig {
                    probe_interval: Duration::ZERO,
                    ..Default::default()
                },
                "probe_interval",
            ),
            (
                HealthConfig {
                    heartbeat: Some(Duration::ZERO),
                    ..Default::default()
                },
                "heartbeat",
            ),
            (
                HealthConfig {
                    heartbeat_jitter: f64::NAN,
                    ..Default::default()
                },
                "heartbeat_jitter",
            ),
            (
                HealthConfig {
                    heartbeat_jitter: -0.1,
                    ..Default::default()
                },
                "heartbeat_jitter",
            ),
            (
                HealthConfig {
                    heartbeat_jitter: 1.0,
                    ..Default::default()
                },
                "heartbeat_jitter",
            ),
            (
                HealthConfig {
                    failure_rate: Some(FailureRate::new(1.5, 10)),
                    ..Default::default()
                },
                "failure_rate",
            ),
            (
                HealthConfig {
                    failure_rate: Some(FailureRate::new(0.5, 0)),
                    ..Default::default()
                },
                "failure_rate",
            ),
        ];
        for (c, field) in bad {
            assert_eq!(c.validate().unwrap_err().field(), field);
        }
        assert!(HealthConfig::default().validate().is_ok());
    }

    #[test]
    fn beats_are_never_later_than_the_heartbeat_nor_earlier_than_its_jitter_allows() {
        use rand::SeedableRng;
        let mut rng = SmallRng::seed_from_u64(7);
        let h = ms(200);
        let jittered = HealthConfig {
            heartbeat_jitter: 0.2,
            ..HealthConfig::default()
        };
        let beats: Vec<_> = (0..1000).map(|_| jittered.next_beat(h, &mut rng)).collect();
        assert!(beats.iter().all(|d| (ms(160)..=ms(200)).contains(d)));
        // Spread over the range, not stuck at one end.
        assert!(beats.iter().any(|d| *d < ms(170)));
        assert!(beats.iter().any(|d| *d > ms(190)));
        let exact = HealthConfig {
            heartbeat_jitter: 0.0,
            ..HealthConfig::default()
        };
        assert!((0..100).all(|_| exact.next_beat(h, &mut rng) == h));
        // Close to 1: down to almost nothing, never zero-length overflow.
        let wide = HealthConfig {
            heartbeat_jitter: 0.999_999,
            ..HealthConfig::default()
        };
        assert!((0..100).all(|_| wide.next_beat(h, &mut rng) <= h));
    }

    #[test]
    fn failure_rate_trip_count_rounds_up() {
        assert_eq!(FailureRate::new(0.5, 10).failures_to_trip(), 5);
        assert_eq!(FailureRate::new(0.25, 10).failures_to_trip(), 3);
        assert_eq!(FailureRate::new(1.0, 7).failures_to_trip(), 7);
        assert_eq!(FailureRate::new(0.0001, 7).failures_to_trip(), 1);
    }
}

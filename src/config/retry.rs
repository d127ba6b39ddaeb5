//! Config of the retry executor: [`RetryConfig`] (with [`BackoffConfig`]) and [`BudgetConfig`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::section::Section;
use crate::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryPolicy};

/// A [`RetryPolicy`] from a config file. Every field is optional and defaults to the policy
/// builder's default (see [`RetryPolicyBuilder`](crate::retry::RetryPolicyBuilder)).
///
/// ```toml
/// max_attempts = 4
/// deadline = "2s"
/// attempt_timeout = "500ms"
/// max_delay = "5s"
/// throttle_factor = 2.0
///
/// [backoff]
/// base = "50ms"
/// factor = 2.0
/// cap = "1s"
/// jitter = "full"   # none | full | equal | decorrelated
/// seed = 7          # for reproducible schedules
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// See [`max_attempts`](crate::retry::RetryPolicyBuilder::max_attempts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// See [`deadline`](crate::retry::RetryPolicyBuilder::deadline).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// See [`attempt_timeout`](crate::retry::RetryPolicyBuilder::attempt_timeout).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<Duration>,
    /// See [`max_delay`](crate::retry::RetryPolicyBuilder::max_delay).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay: Option<Duration>,
    /// See [`throttle_factor`](crate::retry::RetryPolicyBuilder::throttle_factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle_factor: Option<f64>,
    /// The exponential backoff; left out, the base policy's backoff is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffConfig>,
}

impl RetryConfig {
    /// Builds a policy that starts from `base` and changes only what this config sets: the
    /// way an adapter applies a config over its own default policy.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchover::config::{ConfigPath, RetryConfig};
    /// use switchover::retry::RetryPolicy;
    ///
    /// let base = RetryPolicy::builder().max_attempts(4).deadline(Duration::from_secs(1)).build()?;
    /// let config = RetryConfig { max_attempts: Some(6), ..RetryConfig::default() };
    /// let policy = config.build_from(&base, &ConfigPath::new("retry"))?;
    /// assert_eq!(policy.max_attempts(), 6);
    /// assert_eq!(policy.deadline(), Some(Duration::from_secs(1)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the first value the policy or backoff builder rejects.
    pub fn build_from(
        &self,
        base: &RetryPolicy,
        at: &ConfigPath,
    ) -> Result<RetryPolicy, InvalidConfig> {
        let mut b = base.to_builder();
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(d) = self.deadline {
            b = b.deadline(d);
        }
        if let Some(d) = self.attempt_timeout {
            b = b.attempt_timeout(d);
        }
        if let Some(d) = self.max_delay {
            b = b.max_delay(d);
        }
        if let Some(f) = self.throttle_factor {
            b = b.throttle_factor(f);
        }
        if let Some(backoff) = &self.backoff {
            b = b.backoff(backoff.build_from(base.backoff(), &at.join("backoff"))?);
        }
        b.build().map_err(|e| at.rejected(e))
    }
}

impl Section for RetryConfig {
    type Output = RetryPolicy;

    /// [`build_from`](RetryConfig::build_from) the default policy.
    fn build_at(&self, at: &ConfigPath) -> Result<RetryPolicy, InvalidConfig> {
        self.build_from(&RetryPolicy::default(), at)
    }
}

/// An [`ExponentialBackoff`] from a config file; every field defaults to the backoff builder's
/// default (50 ms base, factor 2, 5 s cap, full jitter, no seed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// See [`base`](crate::retry::ExponentialBackoffBuilder::base).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub base: Option<Duration>,
    /// See [`factor`](crate::retry::ExponentialBackoffBuilder::factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// See [`cap`](crate::retry::ExponentialBackoffBuilder::cap).
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub cap: Option<Duration>,
    /// `"none"`, `"full"`, `"equal"` or `"decorrelated"` (see [`Jitter`]).
    #[serde(with = "jitter", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Jitter>,
    /// See [`seed`](crate::retry::ExponentialBackoffBuilder::seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl BackoffConfig {
    /// Builds a backoff that keeps `base`'s base, factor, cap and jitter where this config
    /// sets none. A seed comes only from the config: a backoff does not expose its own.
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the value the backoff builder rejects.
    pub fn build_from(
        &self,
        base: &ExponentialBackoff,
        at: &ConfigPath,
    ) -> Result<ExponentialBackoff, InvalidConfig> {
        let mut b = ExponentialBackoff::builder()
            .base(self.base.unwrap_or(base.base()))
            .factor(self.factor.unwrap_or(base.factor()))
            .cap(self.cap.unwrap_or(base.cap()))
            .jitter(self.jitter.unwrap_or(base.jitter()));
        if let Some(seed) = self.seed {
            b = b.seed(seed);
        }
        b.build().map_err(|e| at.rejected(e))
    }
}

impl Section for BackoffConfig {
    type Output = ExponentialBackoff;

    fn build_at(&self, at: &ConfigPath) -> Result<ExponentialBackoff, InvalidConfig> {
        self.build_from(&ExponentialBackoff::default(), at)
    }
}

/// A [`RetryBudget`] from a config file; every field defaults to the budget builder's default
/// (capacity 500, 5 per retry, 10 per retry after a timeout, 1 back per success).
///
/// Each [`build`](Section::build) makes a new, full bucket: build it once and share it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// See [`capacity`](crate::retry::RetryBudgetBuilder::capacity).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// See [`retry_cost`](crate::retry::RetryBudgetBuilder::retry_cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_cost: Option<u32>,
    /// See [`timeout_retry_cost`](crate::retry::RetryBudgetBuilder::timeout_retry_cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_retry_cost: Option<u32>,
    /// See [`success_refill`](crate::retry::RetryBudgetBuilder::success_refill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_refill: Option<u32>,
}

impl Section for BudgetConfig {
    type Output = RetryBudget;

    fn build_at(&self, at: &ConfigPath) -> Result<RetryBudget, InvalidConfig> {
        let mut b = RetryBudget::builder();
        if let Some(n) = self.capacity {
            b = b.capacity(n);
        }
        if let Some(n) = self.retry_cost {
            b = b.retry_cost(n);
        }
        if let Some(n) = self.timeout_retry_cost {
            b = b.timeout_retry_cost(n);
        }
        if let Some(n) = self.success_refill {
            b = b.success_refill(n);
        }
        b.build().map_err(|e| at.rejected(e))
    }
}

/// [`Jitter`] by name.
mod jitter {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::retry::Jitter;

    const NAMES: [(&str, Jitter); 4] = [
        ("none", Jitter::None),
        ("full", Jitter::Full),
        ("equal", Jitter::Equal),
        ("decorrelated", Jitter::Decorrelated),
    ];

    pub(super) fn serialize<S: Serializer>(j: &Option<Jitter>, s: S) -> Result<S::Ok, S::Error> {
        match NAMES.iter().find(|(_, v)| Some(*v) == *j) {
            Some((name, _)) => s.serialize_str(name),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Jitter>, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, j)) => Ok(Some(*j)),
            None => Err(de::Error::unknown_variant(
                &name,
                &["none", "full", "equal", "decorrelated"],
            )),
        }
    }
}

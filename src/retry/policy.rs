use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::backoff::{Backoff, ExponentialBackoff};
use super::executor::Retry;
use crate::error::{ByClassify, ConfigError};

/// The longest deadline or attempt timeout a policy accepts: one day. Anything longer is almost
/// certainly a unit mistake (milliseconds passed as seconds).
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// The most attempts a policy accepts.
pub const MAX_ATTEMPTS: u32 = 10_000;

/// How to retry: attempts, deadline, per-attempt timeout, backoff and delay ceiling.
///
/// Defaults: 3 attempts, no deadline, no per-attempt timeout, [`ExponentialBackoff::default`]
/// (50 ms base, factor 2, 5 s cap, full jitter), throttled errors wait twice the scheduled
/// delay, and no single wait (including a server's `Retry-After`) longer than 20 s.
///
/// A policy is immutable and cheap to share; run calls with [`retry`](Self::retry) or
/// [`run`](Self::run). With a seeded backoff, the policy numbers the schedules of its calls
/// (see [`schedule`](Self::schedule)); its clones and the policies derived from it with
/// [`to_builder`](Self::to_builder) continue the same count.
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::RetryPolicy;
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(5)
///     .deadline(Duration::from_secs(2))
///     .attempt_timeout(Duration::from_millis(300))
///     .build()?;
/// assert_eq!(policy.max_attempts(), 5);
///
/// // Bad input is refused when the policy is built, naming the field.
/// let err = RetryPolicy::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_attempts");
/// # Ok::<(), switchover::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryPolicy<B = ExponentialBackoff> {
    pub(super) max_attempts: u32,
    pub(super) deadline: Option<Duration>,
    pub(super) attempt_timeout: Option<Duration>,
    pub(super) max_delay: Duration,
    pub(super) throttle_factor: f64,
    pub(super) backoff: B,
    /// `deadline` or `attempt_timeout` is set: the first attempt needs the clock. Derived by
    /// [`RetryPolicyBuilder::build`], so the executor checks one flag instead of two options.
    pub(super) limited: bool,
    /// Schedules handed out, when the backoff numbers them ([`Backoff::numbered`]); shared by
    /// clones and derived policies.
    pub(super) schedules: Option<Arc<AtomicU64>>,
}

impl<B: fmt::Debug> fmt::Debug for RetryPolicy<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_delay", &self.max_delay)
            .field("throttle_factor", &self.throttle_factor)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            deadline: None,
            attempt_timeout: None,
            max_delay: Duration::from_secs(20),
            throttle_factor: 2.0,
            backoff: ExponentialBackoff::default(),
            limited: false,
            schedules: None,
        }
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::default(),
        }
    }

    /// A policy that makes a single attempt: useful where retrying happens elsewhere.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
}

impl<B: Backoff> RetryPolicy<B> {
    /// Prepares a retried call of `op`: set idempotency, a budget, a classifier or a hook on the
    /// returned [`Retry`], then [`run`](Retry::run) it.
    pub fn retry<F>(&self, op: F) -> Retry<'_, B, F, ByClassify, ()> {
        Retry::new(self, op)
    }

    /// Runs `op` with this policy: not idempotent, no budget, errors classified by their
    /// [`Classify`](crate::Classify) implementation. Shorthand for `self.retry(op).run()`.
    pub async fn run<F, Fut, T, E>(&self, op: F) -> Result<T, super::RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: crate::Classify,
    {
        self.retry(op).run().await
    }

    /// The schedule of waits for the next call, as the executor takes it at a call's first
    /// failure. A backoff that numbers its schedules (a seeded [`ExponentialBackoff`]) gives the
    /// n-th call of this policy its n-th schedule, so that calls sharing a seeded policy do not
    /// all wait alike and two policies built with one seed replay the same sequence; any other
    /// backoff gives [`Backoff::schedule`].
    pub fn schedule(&self) -> B::Schedule {
        match &self.schedules {
            Some(n) => self.backoff.schedule_nth(n.fetch_add(1, Ordering::Relaxed)),
            None => self.backoff.schedule(),
        }
    }
}

impl<B: Clone> RetryPolicy<B> {
    /// A builder holding this policy's settings, to derive a changed policy:
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchover::retry::RetryPolicy;
    ///
    /// let base = RetryPolicy::builder().max_attempts(5).build()?;
    /// let bounded = base.to_builder().deadline(Duration::from_secs(1)).build()?;
    /// assert_eq!(bounded.max_attempts(), 5);
    /// assert_eq!(bounded.deadline(), Some(Duration::from_secs(1)));
    /// # Ok::<(), switchover::ConfigError>(())
    /// ```
    pub fn to_builder(&self) -> RetryPolicyBuilder<B> {
        RetryPolicyBuilder {
            policy: self.clone(),
        }
    }
}

impl<B> RetryPolicy<B> {
    /// The most attempts one call makes, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The total time one call may take, measured from its start, the operation's own time
    /// included.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The time one attempt may take.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The longest single wait between attempts, a server's `Retry-After` included.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// How much longer than scheduled the executor waits after a throttled error.
    pub fn throttle_factor(&self) -> f64 {
        self.throttle_factor
    }

    /// The backoff.
    pub fn backoff(&self) -> &B {
        &self.backoff
    }
}

/// Builder of [`RetryPolicy`]. Validation happens in [`build`](Self::build).
#[derive(Clone, Debug)]
#[must_use]
pub struct RetryPolicyBuilder<B = ExponentialBackoff> {
    policy: RetryPolicy<B>,
}

impl<B> RetryPolicyBuilder<B> {
    /// The most attempts one call makes, the first included (default 3; 1 to
    /// [`MAX_ATTEMPTS`]).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.max_attempts = n;
        self
    }

    /// The total time one call may take from its start, attempts and waits included (default:
    /// none). The executor never sleeps past it: when the next wait would end after the
    /// deadline it gives up at once.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.policy.deadline = Some(deadline);
        self
    }

    /// The time one attempt may take (default: none). An attempt that runs out of time is a
    /// transient failure that may have executed: retried only for idempotent operations.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.policy.attempt_timeout = Some(timeout);
        self
    }

    /// The longest single wait (default 20 s). A server's `Retry-After` longer than this is cut
    /// to it.
    pub fn max_delay(mut self, ceiling: Duration) -> Self {
        self.policy.max_delay = ceiling;
        self
    }

    /// How much longer than scheduled to wait after a throttled error (default 2; at least 1).
    pub fn throttle_factor(mut self, factor: f64) -> Self {
        self.policy.throttle_factor = factor;
        self
    }

    /// The schedule of waits (default [`ExponentialBackoff::default`]).
    pub fn backoff<B2: Backoff>(self, backoff: B2) -> RetryPolicyBuilder<B2> {
        let p = self.policy;
        RetryPolicyBuilder {
            policy: RetryPolicy {
                max_attempts: p.max_attempts,
                deadline: p.deadline,
                attempt_timeout: p.attempt_timeout,
                max_delay: p.max_delay,
                throttle_factor: p.throttle_factor,
                backoff,
                limited: p.limited,
                // A new backoff starts a new sequence of schedules.
                schedules: None,
            },
        }
    }
}

impl<B: Backoff> RetryPolicyBuilder<B> {
    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field for zero or more than [`MAX_ATTEMPTS`] attempts, a
    /// zero deadline, attempt timeout or ceiling, one longer than [`MAX_DEADLINE`], or a
    /// throttle factor below 1.
    pub fn build(self) -> Result<RetryPolicy<B>, ConfigError> {
        let p = &self.policy;
        if p.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts", "must be at least 1"));
        }
        if p.max_attempts > MAX_ATTEMPTS {
            return Err(ConfigError::new(
                "max_attempts",
                format!(
                    "{} is more than the limit of {MAX_ATTEMPTS}",
                    p.max_attempts
                ),
            ));
        }
        for (field, value) in [
            ("deadline", p.deadline),
            ("attempt_timeout", p.attempt_timeout),
            ("max_delay", Some(p.max_delay)),
        ] {
            match value {
                Some(d) if d.is_zero() => {
                    return Err(ConfigError::new(field, "must be above zero"));
                }
                Some(d) if d > MAX_DEADLINE => {
                    return Err(ConfigError::new(
                        field,
                        format!("{d:?} is longer than the limit of {MAX_DEADLINE:?}"),
                    ));
                }
                _ => {}
            }
        }
        if !p.throttle_factor.is_finite() || p.throttle_factor < 1.0 {
            return Err(ConfigError::new(
                "throttle_factor",
                format!(
                    "must be a finite number of at least 1, got {}",
                    p.throttle_factor
                ),
            ));
        }
        let mut policy = self.policy;
        policy.limited = policy.deadline.is_some() || policy.attempt_timeout.is_some();
        policy.schedules = match policy.schedules.take() {
            // Derived from a numbering policy with the same backoff: continue its count.
            Some(n) => Some(n),
            None if policy.backoff.numbered() => Some(Arc::new(AtomicU64::new(0))),
            None => None,
        };
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_the_field() {
        let cases = [
            (
                RetryPolicy::builder().max_attempts(0).build(),
                "max_attempts",
            ),
            (
                RetryPolicy::builder()
                    .max_attempts(MAX_ATTEMPTS + 1)
                    .build(),
                "max_attempts",
            ),
            (
                RetryPolicy::builder().deadline(Duration::ZERO).build(),
                "deadline",
            ),
            (
                RetryPolicy::builder()
                    .deadline(Duration::from_secs(365 * 24 * 3600))
                    .build(),
                "deadline",
            ),
            (
                RetryPolicy::builder()
                    .attempt_timeout(Duration::ZERO)
                    .build(),
                "attempt_timeout",
            ),
            (
                RetryPolicy::builder().max_delay(Duration::ZERO).build(),
                "max_delay",
            ),
            (
                RetryPolicy::builder().throttle_factor(0.5).build(),
                "throttle_factor",
            ),
        ];
        for (result, field) in cases {
            assert_eq!(result.unwrap_err().field(), field);
        }
    }

    #[test]
    fn defaults_are_documented_values() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert_eq!(p.deadline(), None);
        assert_eq!(p.attempt_timeout(), None);
        assert_eq!(p.max_delay(), Duration::from_secs(20));
        assert_eq!(p.backoff().cap(), Duration::from_secs(5));
        assert_eq!(RetryPolicy::no_retry().max_attempts(), 1);
    }
}

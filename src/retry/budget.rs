use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::ConfigError;

/// A shared, lock-free token bucket that bounds how much retrying a whole process does.
///
/// Every retry withdraws tokens (a retry after a timeout costs more, since timeouts are the
/// failures that pile up load); every success puts a few back. When the bucket cannot pay for a
/// retry, the executor stops with [`StopReason::BudgetExhausted`](super::StopReason) instead of
/// adding load to a struggling backend. This is what keeps a fleet of clients from turning an
/// outage into a retry storm.
///
/// Clones share one bucket: create it once and hand it to every executor call that should draw
/// from it. Defaults follow the AWS SDKs' retry quota: capacity 500, 5 tokens per retry, 10 per
/// retry after a timeout, 1 back per success. The bucket starts full.
///
/// ```
/// use switchover::retry::RetryBudget;
///
/// let budget = RetryBudget::builder().capacity(10).retry_cost(5).build()?;
/// assert!(budget.try_withdraw(5));
/// assert!(budget.try_withdraw(5));
/// assert!(!budget.try_withdraw(5)); // empty: no more retries
/// budget.deposit_success();
/// assert_eq!(budget.available(), 1);
/// # Ok::<(), switchover::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tokens: AtomicU32,
    capacity: u32,
    retry_cost: u32,
    timeout_retry_cost: u32,
    success_refill: u32,
    name: &'static str,
    /// `switchover.retry.budget.tokens{budget=name}`, set whenever the tokens change.
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudget {
    /// A full bucket with the default settings.
    pub fn new() -> Self {
        // The defaults are valid by construction.
        Self::from_builder(Self::builder())
    }

    /// A builder starting from the defaults.
    pub const fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            capacity: 500,
            retry_cost: 5,
            timeout_retry_cost: 10,
            success_refill: 1,
            name: "default",
        }
    }

    fn from_builder(b: RetryBudgetBuilder) -> Self {
        RetryBudget {
            inner: Arc::new(Inner {
                tokens: AtomicU32::new(b.capacity),
                capacity: b.capacity,
                retry_cost: b.retry_cost,
                timeout_retry_cost: b.timeout_retry_cost,
                success_refill: b.success_refill,
                name: b.name,
                #[cfg(feature = "metrics")]
                gauge: {
                    let g = crate::observe::budget::gauge(b.name);
                    g.set(f64::from(b.capacity));
                    g
                },
            }),
        }
    }

    /// The budget's name (the `budget` label of its token gauge with the `metrics` feature).
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Tokens in the bucket now.
    pub fn available(&self) -> u32 {
        self.inner.tokens.load(Ordering::Relaxed)
    }

    /// The bucket's capacity.
    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }

    /// Takes `cost` tokens if the bucket holds that many; `false` (and takes nothing) otherwise.
    pub fn try_withdraw(&self, cost: u32) -> bool {
        let taken = self
            .inner
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| t.checked_sub(cost));
        #[cfg(feature = "metrics")]
        if let Ok(before) = taken {
            self.inner.gauge.set(f64::from(before - cost));
        }
        taken.is_ok()
    }

    /// Pays for one retry: the timeout cost when the failure was a timeout, the plain retry
    /// cost otherwise. `false` when the bucket cannot pay.
    pub fn withdraw_retry(&self, after_timeout: bool) -> bool {
        let cost = if after_timeout {
            self.inner.timeout_retry_cost
        } else {
            self.inner.retry_cost
        };
        self.try_withdraw(cost)
    }

    /// Puts the per-success refill back, never above capacity. When the bucket is already
    /// full (the usual case) this is one relaxed load and one comparison: no read-modify-write.
    #[inline]
    pub fn deposit_success(&self) {
        let inner = &*self.inner;
        // Fullness first: it is the common case, and it makes the refill check moot.
        if inner.tokens.load(Ordering::Relaxed) >= inner.capacity || inner.success_refill == 0 {
            return;
        }
        let refilled = inner
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                (t < inner.capacity)
                    .then(|| t.saturating_add(inner.success_refill).min(inner.capacity))
            });
        #[cfg(feature = "metrics")]
        if let Ok(before) = refilled {
            let after = before
                .saturating_add(inner.success_refill)
                .min(inner.capacity);
            inner.gauge.set(f64::from(after));
        }
        let _ = refilled;
    }
}

/// Builder of [`RetryBudget`].
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct RetryBudgetBuilder {
    capacity: u32,
    retry_cost: u32,
    timeout_retry_cost: u32,
    success_refill: u32,
    name: &'static str,
}

impl RetryBudgetBuilder {
    /// Tokens in a full bucket (default 500). Must be at least `retry_cost`.
    pub const fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity;
        self
    }

    /// Tokens one retry costs (default 5). Must be above zero.
    pub const fn retry_cost(mut self, cost: u32) -> Self {
        self.retry_cost = cost;
        self
    }

    /// Tokens a retry after a timeout costs (default 10). Must be above zero.
    pub const fn timeout_retry_cost(mut self, cost: u32) -> Self {
        self.timeout_retry_cost = cost;
        self
    }

    /// Tokens one success puts back (default 1). Zero makes the budget a fixed allowance.
    pub const fn success_refill(mut self, tokens: u32) -> Self {
        self.success_refill = tokens;
        self
    }

    /// The budget's name: the `budget` label of its token gauge with the `metrics` feature
    /// (default `default`).
    pub const fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Validates and builds a full bucket.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when a cost is zero or the capacity cannot pay for
    /// a single retry.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if self.retry_cost == 0 {
            return Err(ConfigError::new("retry_cost", "must be above zero"));
        }
        if self.timeout_retry_cost == 0 {
            return Err(ConfigError::new("timeout_retry_cost", "must be above zero"));
        }
        if self.capacity < self.retry_cost {
            return Err(ConfigError::new(
                "capacity",
                format!(
                    "{} cannot pay for a single retry costing {}",
                    self.capacity, self.retry_cost
                ),
            ));
        }
        Ok(RetryBudget::from_builder(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_aws_quota() {
        let b = RetryBudget::new();
        assert_eq!(b.available(), 500);
        assert!(b.withdraw_retry(false));
        assert_eq!(b.available(), 495);
        assert!(b.withdraw_retry(true));
        assert_eq!(b.available(), 485);
        b.deposit_success();
        assert_eq!(b.available(), 486);
    }

    #[test]
    fn never_goes_below_zero_or_above_capacity() {
        let b = RetryBudget::builder()
            .capacity(12)
            .retry_cost(5)
            .success_refill(4)
            .build()
            .unwrap();
        assert!(b.try_withdraw(5));
        assert!(b.try_withdraw(5));
        assert!(!b.try_withdraw(5));
        assert_eq!(b.available(), 2);
        for _ in 0..10 {
            b.deposit_success();
        }
        assert_eq!(b.available(), 12);
    }

    #[test]
    fn clones_share_one_bucket() {
        let a = RetryBudget::builder().capacity(5).build().unwrap();
        let b = a.clone();
        assert!(a.try_withdraw(5));
        assert!(!b.try_withdraw(1));
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = RetryBudget::builder().retry_cost(0).build().unwrap_err();
        assert_eq!(e.field(), "retry_cost");
        let e = RetryBudget::builder().capacity(1).build().unwrap_err();
        assert_eq!(e.field(), "capacity");
        let e = RetryBudget::builder()
            .timeout_retry_cost(0)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "timeout_retry_cost");
    }
}

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::error::{RetryError, StopReason, give_up};
use super::hook::{OnRetry, RetryEvent};
use super::policy::RetryPolicy;
use super::run::{FirstAttempt, Handover, Run};
use crate::error::{ByClassify, Classification, Classifier, ErrorClass};

/// One retried call being prepared: made by [`RetryPolicy::retry`], started by
/// [`run`](Self::run).
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::{ConstantBackoff, RetryBudget, RetryPolicy};
/// use switchover::Classification;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = RetryPolicy::builder()
///     .max_attempts(4)
///     .backoff(ConstantBackoff::new(Duration::from_millis(1)))
///     .build()
///     .unwrap();
/// let budget = RetryBudget::new();
/// let mut calls = 0;
/// let result = policy
///     .retry(|| {
///         calls += 1;
///         let n = calls;
///         async move { if n < 3 { Err("busy") } else { Ok(n) } }
///     })
///     .idempotent(true)
///     .budget(&budget)
///     .classify_with(|_: &&str| Classification::transient())
///     .on_retry(|ev| println!("attempt {} failed, waiting {:?}", ev.attempt(), ev.delay()))
///     .run()
///     .await;
/// assert_eq!(result.unwrap(), 3);
/// # }
/// ```
#[must_use = "a retried call does nothing until `run` is awaited"]
pub struct Retry<'a, B, F, C = ByClassify, H = ()> {
    pub(super) policy: &'a RetryPolicy<B>,
    pub(super) op: F,
    pub(super) classifier: C,
    pub(super) hook: H,
    pub(super) budget: Option<&'a RetryBudget>,
    pub(super) idempotent: bool,
    /// Each attempt ends by itself within this long (see [`Retry::bounded_by`]).
    pub(super) bound: Option<Duration>,
    /// When the call started, if the caller read the clock for it (see [`Retry::started_at`]).
    pub(super) started_at: Option<Instant>,
}

impl<B: fmt::Debug, F, C, H> fmt::Debug for Retry<'_, B, F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("policy", &self.policy)
            .field("idempotent", &self.idempotent)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<'a, B, F> Retry<'a, B, F> {
    pub(super) fn new(policy: &'a RetryPolicy<B>, op: F) -> Self {
        Retry {
            policy,
            op,
            classifier: ByClassify,
            hook: (),
            budget: None,
            idempotent: false,
            bound: None,
            started_at: None,
        }
    }
}

impl<'a, B, F, C, H> Retry<'a, B, F, C, H> {
    /// Declares whether running the operation twice is harmless (default `false`). Failures
    /// that may have executed are retried only for idempotent operations; failures that surely
    /// did not execute are always retried.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Draws retries from a shared [`RetryBudget`] (default: none) and refills it on success.
    pub fn budget(mut self, budget: &'a RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Declares that every attempt ends by itself within `bound` (the operation enforces a
    /// timeout of its own, such as a client's response timeout), so the executor builds no
    /// timer for an attempt whose limit (attempt timeout, or what is left of the deadline) is
    /// at least `bound`: the attempt cannot outlive it anyway. An attempt with a tighter limit
    /// is timed as usual, so the deadline still holds. The executor trusts the promise: an
    /// attempt that does not end within `bound` is not cut (test with the paused clock).
    pub fn bounded_by(mut self, bound: Duration) -> Self {
        self.bound = Some(bound);
        self
    }

    /// Declares that the call started at `at`, a clock reading the caller took just before
    /// the first poll (the runner's first attempt start): the deadline and the first
    /// attempt's limit count from it, and the first attempt reads no clock of its own.
    pub(crate) fn started_at(mut self, at: Instant) -> Self {
        self.started_at = Some(at);
        self
    }

    /// `true` when an attempt limited to `limit` needs no timer of ours.
    #[inline]
    pub(super) fn ends_within(&self, limit: Duration) -> bool {
        self.bound.is_some_and(|b| b <= limit)
    }

    /// Classifies errors with `classifier` instead of their [`Classify`](crate::Classify)
    /// implementation. Any `Fn(&E) -> Classification` will do.
    pub fn classify_with<C2>(self, classifier: C2) -> Retry<'a, B, F, C2, H> {
        Retry {
            policy: self.policy,
            op: self.op,
            classifier,
            hook: self.hook,
            budget: self.budget,
            idempotent: self.idempotent,
            bound: self.bound,
            started_at: self.started_at,
        }
    }

    /// Calls `hook` before every retry, with the failed attempt, its error and the wait.
    ///
    /// Takes a closure, whose argument type is inferred; [`with_hook`](Self::with_hook) takes any
    /// [`OnRetry`] implementation.
    pub fn on_retry<T, E, Fut, H2>(self, hook: H2) -> Retry<'a, B, F, C, H2>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        H2: FnMut(&RetryEvent<'_, E>),
    {
        self.with_hook(hook)
    }

    /// Calls `hook` (any [`OnRetry`] implementation) before every retry.
    pub fn with_hook<H2>(self, hook: H2) -> Retry<'a, B, F, C, H2> {
        Retry {
            policy: self.policy,
            op: self.op,
            classifier: self.classifier,
            hook,
            budget: self.budget,
            idempotent: self.idempotent,
            bound: self.bound,
            started_at: self.started_at,
        }
    }

    /// Runs the call: attempts the operation until it succeeds or the policy says stop.
    ///
    /// A first-try success allocates nothing and takes no lock; it reads the clock only when
    /// the policy has a deadline or an attempt timeout, and builds a timer (one allocation)
    /// only when such an attempt is not ready at once and not [bounded](Self::bounded_by) by
    /// the operation itself. The retry path (schedule, waits) lives in one heap
    /// allocation made at the first failure, which keeps the returned [`Run`] future small and
    /// its success path short. Nothing runs until the future is polled: the operation is first
    /// called by the first poll. Each attempt's future is dropped as soon as it ends.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] with the last error, the attempt count and the [`StopReason`].
    #[allow(clippy::type_complexity)]
    pub fn run<T, E, Fut>(
        self,
    ) -> Run<
        Self,
        Fut,
        impl Future<Output = Result<T, RetryError<E>>> + use<'a, B, F, C, H, Fut, T, E>,
        Handover<'a, B, F, C, H, T, E>,
    >
    where
        B: Backoff,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
        H: OnRetry<E>,
    {
        Run::new(self, Self::start_retries)
    }

    /// Starts the retries where the first attempt left off.
    fn start_retries<T, E, Fut>(
        h: Handover<'a, B, F, C, H, T, E>,
    ) -> impl Future<Output = Result<T, RetryError<E>>> + use<'a, B, F, C, H, Fut, T, E>
    where
        B: Backoff,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
        H: OnRetry<E>,
    {
        h.retry.retry_loop(h.deadline_at, h.limit, h.outcome)
    }

    /// The rest of a call whose first attempt ran elsewhere (a [`FirstAttempt`] of the crate's
    /// own) and failed with `outcome` (`None`: its limit cut it), under the deadline and the
    /// first attempt's limit that [`Run`] computed: exactly what [`run`](Self::run) does after
    /// a failed first attempt.
    #[cfg(feature = "tower")]
    pub(crate) async fn resume<T, E, Fut>(
        self,
        deadline_at: Option<Instant>,
        limit: Option<(Duration, bool)>,
        outcome: Option<Result<T, E>>,
    ) -> Result<T, RetryError<E>>
    where
        B: Backoff,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
        H: OnRetry<E>,
    {
        self.retry_loop(deadline_at, limit, outcome).await
    }

    /// Everything after a failed first attempt.
    async fn retry_loop<T, E, Fut>(
        mut self,
        deadline_at: Option<Instant>,
        mut limit: Option<(Duration, bool)>,
        mut outcome: Option<Result<T, E>>,
    ) -> Result<T, RetryError<E>>
    where
        B: Backoff,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
        H: OnRetry<E>,
    {
        let policy = self.policy;
        let mut schedule: Option<B::Schedule> = None;
        let mut attempts: u32 = 1;
        let mut last_error: Option<E> = None;

        loop {
            let (classification, timed_out) = match outcome {
                Some(Ok(value)) => {
                    if let Some(budget) = self.budget {
                        budget.deposit_success();
                    }
                    return Ok(value);
                }
                Some(Err(e)) => {
                    let c = self.classifier.classify(&e);
                    last_error = Some(e);
                    (c, false)
                }
                None => {
                    if let Some((_, true)) = limit {
                        return Err(give_up(
                            StopReason::DeadlineExceeded,
                            attempts,
                            last_error,
                            Some(Classification::transient()),
                            true,
                        ));
                    }
                    (Classification::transient(), true)
                }
            };
            // From here on the failed attempt's error (if it returned one) is `last_error`.
            let failed_error = if timed_out { None } else { last_error.as_ref() };

            let stop = if classification.class() == ErrorClass::Permanent {
                Some(StopReason::Permanent)
            } else if !classification.is_retry_safe(self.idempotent) {
                Some(if timed_out {
                    StopReason::AttemptTimedOut
                } else {
                    StopReason::NotIdempotent
                })
            } else if attempts >= policy.max_attempts {
                Some(StopReason::AttemptsExhausted)
            } else {
                None
            };
            let scheduled = match stop {
                Some(_) => None,
                None => schedule.get_or_insert_with(|| policy.schedule()).next(),
            };
            let delay = match (stop, scheduled) {
                (Some(reason), _) => {
                    return Err(give_up(
                        reason,
                        attempts,
                        last_error,
                        Some(classification),
                        timed_out,
                    ));
                }
                (None, None) => {
                    return Err(give_up(
                        StopReason::AttemptsExhausted,
                        attempts,
                        last_error,
                        Some(classification),
                        timed_out,
                    ));
                }
                (None, Some(d)) => d,
            };

            let delay = match classification.retry_after() {
                Some(suggested) => suggested,
                None if classification.class() == ErrorClass::Throttled => {
                    stretch(delay, policy.throttle_factor)
                }
                None => delay,
            }
            .min(policy.max_delay);

            // Waking up at or after the deadline leaves no time for an attempt: stop now rather
            // than sleep for nothing.
            let stop = if deadline_at.is_some_and(|at| Instant::now() + delay >= at) {
                Some(StopReason::DeadlineExceeded)
            } else if self.budget.is_some_and(|b| !b.withdraw_retry(timed_out)) {
                Some(StopReason::BudgetExhausted)
            } else {
                None
            };
            if let Some(reason) = stop {
                return Err(give_up(
                    reason,
                    attempts,
                    last_error,
                    Some(classification),
                    timed_out,
                ));
            }

            tracing::debug!(
                target: "switchover::retry",
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                class = %classification.class(),
                execution = %classification.execution(),
                timed_out,
                "attempt failed; retrying"
            );
            self.hook.on_retry(&RetryEvent {
                attempt: attempts,
                delay,
                error: failed_error,
                classification,
            });
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }

            attempts += 1;
            limit = attempt_limit(policy.attempt_timeout, deadline_at);
            outcome = match limit {
                None => Some((self.op)().await),
                Some((t, _)) if self.ends_within(t) => Some((self.op)().await),
                Some((t, _)) => tokio::time::timeout(t, (self.op)()).await.ok(),
            };
        }
    }
}

impl<'a, B, F, C, H, Fut, T, E> FirstAttempt for Retry<'a, B, F, C, H>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Backoff = B;
    type Attempt = Fut;
    type Ok = T;
    type Err = E;
    type Handover = Handover<'a, B, F, C, H, T, E>;

    #[inline]
    fn policy(&self) -> &RetryPolicy<B> {
        self.policy
    }

    #[inline]
    fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    #[inline]
    fn ends_within(&self, limit: Duration) -> bool {
        Retry::ends_within(self, limit)
    }

    #[inline]
    fn first_attempt(&mut self) -> Fut {
        (self.op)()
    }

    #[inline]
    fn outcome(&self, output: Result<T, E>) -> Result<T, E> {
        output
    }

    #[inline]
    fn succeeded(&self) {
        if let Some(budget) = self.budget {
            budget.deposit_success();
        }
    }

    fn hand_over(
        self,
        deadline_at: Option<Instant>,
        limit: Option<(Duration, bool)>,
        outcome: Option<Result<T, E>>,
    ) -> Self::Handover {
        Handover {
            retry: self,
            deadline_at,
            limit,
            outcome,
        }
    }
}

/// `delay × factor`, saturating at [`Duration::MAX`] where `Duration::mul_f64` would panic (a
/// huge throttle factor); the caller then cuts it to the ceiling.
#[inline]
fn stretch(delay: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// The time the next attempt may take — the tighter of the attempt timeout and what is left of
/// the deadline — and whether the deadline is the tighter one.
#[inline]
fn attempt_limit(
    attempt_timeout: Option<Duration>,
    deadline_at: Option<Instant>,
) -> Option<(Duration, bool)> {
    let remaining = deadline_at.map(|at| at.saturating_duration_since(Instant::now()));
    match (attempt_timeout, remaining) {
        (Some(t), Some(r)) => Some((t.min(r), r <= t)),
        (Some(t), None) => Some((t, false)),
        (None, Some(r)) => Some((r, true)),
        (None, None) => None,
    }
}

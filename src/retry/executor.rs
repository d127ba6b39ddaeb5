use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::policy::RetryPolicy;
use crate::error::{ByClassify, Classification, Classifier, ErrorClass};

/// Why the executor stopped without a success.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The last error was permanent: retrying could not help.
    Permanent,
    /// The last error may have executed and the operation was not declared idempotent, so
    /// retrying could have run it twice.
    NotIdempotent,
    /// The last attempt ran out of its per-attempt timeout and could not be retried (not
    /// idempotent).
    AttemptTimedOut,
    /// Every allowed attempt failed (or the backoff schedule ended).
    AttemptsExhausted,
    /// The deadline passed, or the next wait would have ended after it.
    DeadlineExceeded,
    /// The shared retry budget could not pay for another retry.
    BudgetExhausted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Permanent => "permanent error",
            StopReason::NotIdempotent => {
                "not retried: the operation may have executed and is not idempotent"
            }
            StopReason::AttemptTimedOut => "attempt timed out",
            StopReason::AttemptsExhausted => "attempts exhausted",
            StopReason::DeadlineExceeded => "deadline exceeded",
            StopReason::BudgetExhausted => "retry budget exhausted",
        })
    }
}

/// A call that did not succeed: the caller's last error, how many attempts were made, and why
/// the executor stopped.
///
/// `Display` says why it stopped; the caller's error is the [`source`](StdError::source).
pub struct RetryError<E> {
    reason: StopReason,
    attempts: u32,
    last_error: Option<E>,
    classification: Option<Classification>,
    timed_out: bool,
}

impl<E> RetryError<E> {
    /// Why the executor stopped.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// How many attempts were started, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The most recent error the operation returned. `None` when no attempt returned an error
    /// (every attempt timed out, or the deadline passed during the first).
    pub fn last_error(&self) -> Option<&E> {
        self.last_error.as_ref()
    }

    /// Takes the most recent error the operation returned.
    pub fn into_last_error(self) -> Option<E> {
        self.last_error
    }

    /// How the last failure was classified (a timeout is transient and may have executed).
    pub fn classification(&self) -> Option<Classification> {
        self.classification
    }

    /// `true` when the last attempt ended by a timeout (per-attempt or deadline) rather than
    /// an error of the operation.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl<E: fmt::Debug> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("reason", &self.reason)
            .field("attempts", &self.attempts)
            .field("last_error", &self.last_error)
            .field("timed_out", &self.timed_out)
            .finish()
    }
}

impl<E> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(f, "{} after {} attempt{s}", self.reason, self.attempts)
    }
}

impl<E: StdError + 'static> StdError for RetryError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.last_error
            .as_ref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// What the executor tells the hook before each retry.
#[derive(Debug)]
pub struct RetryEvent<'a, E> {
    attempt: u32,
    delay: Duration,
    error: Option<&'a E>,
    classification: Classification,
}

impl<'a, E> RetryEvent<'a, E> {
    /// The attempt that just failed (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How long the executor waits before the next attempt.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The error of the failed attempt; `None` when it timed out.
    pub fn error(&self) -> Option<&'a E> {
        self.error
    }

    /// How the failure was classified.
    pub fn classification(&self) -> Classification {
        self.classification
    }

    /// `true` when the failed attempt ran out of its timeout.
    pub fn timed_out(&self) -> bool {
        self.error.is_none()
    }
}

/// A hook called before each retry. Implemented for `()` (no hook) and for every
/// `FnMut(&RetryEvent<'_, E>)`.
pub trait OnRetry<E> {
    /// Called after a failed attempt, before waiting for the next one.
    fn on_retry(&mut self, event: &RetryEvent<'_, E>);
}

impl<E> OnRetry<E> for () {
    #[inline]
    fn on_retry(&mut self, _: &RetryEvent<'_, E>) {}
}

impl<E, F> OnRetry<E> for F
where
    F: FnMut(&RetryEvent<'_, E>),
{
    #[inline]
    fn on_retry(&mut self, event: &RetryEvent<'_, E>) {
        self(event)
    }
}

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
    policy: &'a RetryPolicy<B>,
    op: F,
    classifier: C,
    hook: H,
    budget: Option<&'a RetryBudget>,
    idempotent: bool,
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
        }
    }

    /// Runs the call: attempts the operation until it succeeds or the policy says stop.
    ///
    /// A first-try success allocates nothing, takes no lock, and reads the clock only when
    /// the policy has a deadline or an attempt timeout. The retry path (schedule, waits) lives
    /// in one heap allocation made at the first failure, which keeps the returned [`Run`]
    /// future small and its success path short. Nothing runs until the future is polled.
    ///
    /// # Errors
    ///
    /// A [`RetryError`] with the last error, the attempt count and the [`StopReason`].
    #[allow(clippy::type_complexity)]
    pub fn run<T, E, Fut>(
        self,
    ) -> Run<
        impl Future<Output = Result<T, Handover<'a, B, F, C, H, T, E>>> + use<'a, B, F, C, H, Fut, T, E>,
        impl Future<Output = Result<T, Handover<'a, B, F, C, H, T, E>>> + use<'a, B, F, C, H, Fut, T, E>,
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
        let first = if self.policy.deadline.is_none() && self.policy.attempt_timeout.is_none() {
            First::Plain {
                fut: self.first_plain(),
            }
        } else {
            First::Timed {
                fut: self.first_timed(),
            }
        };
        Run {
            first,
            retrying: None,
            start_retries: Self::start_retries,
        }
    }

    /// The first attempt of a policy without deadline or attempt timeout.
    async fn first_plain<T, E, Fut>(mut self) -> Result<T, Handover<'a, B, F, C, H, T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match (self.op)().await {
            Ok(value) => Ok(succeeded(self.budget, value)),
            Err(e) => Err(Handover {
                retry: self,
                deadline_at: None,
                limit: None,
                outcome: Some(Err(e)),
            }),
        }
    }

    /// The first attempt under a deadline or an attempt timeout.
    async fn first_timed<T, E, Fut>(mut self) -> Result<T, Handover<'a, B, F, C, H, T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline_at = self.policy.deadline.map(|d| Instant::now() + d);
        let limit = attempt_limit(self.policy.attempt_timeout, deadline_at);
        // With neither set this path is not taken; an unbounded limit keeps it correct anyway.
        let bound = limit.map_or(Duration::MAX, |(t, _)| t);
        match tokio::time::timeout(bound, (self.op)()).await.ok() {
            Some(Ok(value)) => Ok(succeeded(self.budget, value)),
            outcome => Err(Handover {
                retry: self,
                deadline_at,
                limit,
                outcome,
            }),
        }
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
                None => schedule
                    .get_or_insert_with(|| policy.backoff.schedule())
                    .next(),
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
                    delay.mul_f64(policy.throttle_factor)
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
                Some((t, _)) => tokio::time::timeout(t, (self.op)()).await.ok(),
            };
        }
    }
}

/// What a failed first attempt hands to the retries: the call, its deadline, the first
/// attempt's limit and outcome. Appears only in the type of [`Run`].
pub struct Handover<'a, B, F, C, H, T, E> {
    retry: Retry<'a, B, F, C, H>,
    deadline_at: Option<Instant>,
    limit: Option<(Duration, bool)>,
    outcome: Option<Result<T, E>>,
}

impl<B, F, C, H, T, E> fmt::Debug for Handover<'_, B, F, C, H, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field("deadline_at", &self.deadline_at)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of a retried call, returned by [`Retry::run`].
    ///
    /// The first attempt is polled in place; only a failure moves the call into one heap
    /// allocation for the retries.
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<P, Q, S, A> {
        #[pin]
        first: First<P, Q>,
        retrying: Option<Pin<Box<S>>>,
        start_retries: fn(A) -> S,
    }
}

pin_project_lite::pin_project! {
    #[project = FirstProj]
    enum First<P, Q> {
        Plain { #[pin] fut: P },
        Timed { #[pin] fut: Q },
    }
}

impl<P, Q, S, A> fmt::Debug for Run<P, Q, S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("retrying", &self.retrying.is_some())
            .finish_non_exhaustive()
    }
}

impl<P, Q, S, A, T, E> Future for Run<P, Q, S, A>
where
    P: Future<Output = Result<T, A>>,
    Q: Future<Output = Result<T, A>>,
    S: Future<Output = Result<T, RetryError<E>>>,
{
    type Output = Result<T, RetryError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(retrying) = this.retrying {
            return retrying.as_mut().poll(cx);
        }
        let first = match this.first.project() {
            FirstProj::Plain { fut } => ready!(fut.poll(cx)),
            FirstProj::Timed { fut } => ready!(fut.poll(cx)),
        };
        match first {
            Ok(value) => Poll::Ready(Ok(value)),
            Err(handover) => {
                let retrying = this
                    .retrying
                    .insert(Box::pin((this.start_retries)(handover)));
                retrying.as_mut().poll(cx)
            }
        }
    }
}

/// Book-keeping of a success on the first attempt.
#[inline]
fn succeeded<T>(budget: Option<&RetryBudget>, value: T) -> T {
    if let Some(budget) = budget {
        budget.deposit_success();
    }
    value
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

fn give_up<E>(
    reason: StopReason,
    attempts: u32,
    last_error: Option<E>,
    classification: Option<Classification>,
    timed_out: bool,
) -> RetryError<E> {
    tracing::debug!(
        target: "switchover::retry",
        attempts,
        reason = %reason,
        timed_out,
        "giving up"
    );
    RetryError {
        reason,
        attempts,
        last_error,
        classification,
        timed_out,
    }
}

use std::error::Error as StdError;
use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::policy::{MAX_DEADLINE, RetryPolicy};
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
    /// Each attempt ends by itself within this long (see [`Retry::bounded_by`]).
    bound: Option<Duration>,
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

    /// `true` when an attempt limited to `limit` needs no timer of ours.
    #[inline]
    fn ends_within(&self, limit: Duration) -> bool {
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
        }
    }

    /// Runs the call: attempts the operation until it succeeds or the policy says stop.
    ///
    /// A first-try success allocates nothing and takes no lock; it reads the clock only when
    /// the policy has a deadline or an attempt timeout, and builds a timer only when such an
    /// attempt is not ready at once. The retry path (schedule, waits) lives in one heap
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
        Run {
            retry: Some(self),
            attempt: None,
            limit: None,
            aux: Aux::Empty,
            start_retries: Self::start_retries,
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
    /// The first attempt is polled in place by a hand-written state machine: a policy without
    /// deadline or attempt timeout reads no clock and builds no timer, and one with them builds
    /// its timer only when the attempt is not ready at once. Only a failure moves the call into
    /// one heap allocation for the retries.
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<R, Fut, S, A> {
        // The call; taken by a success or, at the first failure, by the retries.
        retry: Option<R>,
        // The first attempt, once started: `None` until the first poll.
        #[pin]
        attempt: Option<Fut>,
        // The first attempt's deadline and time limit, when the policy has them.
        limit: Option<FirstLimit>,
        // The first attempt's timer, then the retries.
        #[pin]
        aux: Aux<S>,
        start_retries: fn(A) -> S,
    }
}

pin_project_lite::pin_project! {
    #[project = AuxProj]
    // A plain tag rather than a niche in `Sleep`: checking it is one byte compare.
    #[repr(u8)]
    enum Aux<S> {
        Empty,
        // Built when a limited first attempt is not ready at once.
        Timer { #[pin] sleep: Sleep },
        // The rest of the call, after a failed first attempt.
        Retrying { fut: Pin<Box<S>> },
    }
}

/// The deadline and time limit of a first attempt.
#[derive(Clone, Copy, Debug)]
struct FirstLimit {
    deadline_at: Option<Instant>,
    /// The time the attempt may take and whether the deadline is the tighter bound.
    limit: (Duration, bool),
    /// When the attempt times out.
    at: Instant,
    /// Whether the executor times it (not when the operation ends by itself within the
    /// limit, see [`Retry::bounded_by`]).
    timed: bool,
}

impl<R, Fut, S, A> fmt::Debug for Run<R, Fut, S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.retry, &self.attempt, &self.aux) {
            (_, _, Aux::Retrying { .. }) => "retrying",
            (None, _, _) => "done",
            (Some(_), None, _) => "idle",
            (Some(_), Some(_), _) => "first attempt",
        };
        f.debug_struct("Run")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<'a, B, F, C, H, Fut, S, T, E> Future
    for Run<Retry<'a, B, F, C, H>, Fut, S, Handover<'a, B, F, C, H, T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    S: Future<Output = Result<T, RetryError<E>>>,
{
    type Output = Result<T, RetryError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(retry) = this.retry.as_mut() else {
            // Taken by the retries (or by a success: then this panics).
            return poll_retrying(this.aux, cx);
        };
        if this.attempt.is_none() {
            // The first poll. The clock is read before the operation is called: the deadline
            // counts the call.
            if retry.policy.limited {
                let limit = first_limit(retry.policy);
                *this.limit = Some(FirstLimit {
                    timed: !retry.ends_within(limit.limit.0),
                    ..limit
                });
            }
            this.attempt.set(Some((retry.op)()));
        }
        let Some(attempt) = this.attempt.as_mut().as_pin_mut() else {
            unreachable!("the first attempt has started")
        };
        let outcome = match *this.limit {
            Some(limit) if limit.timed => {
                ready!(poll_limited(attempt, this.aux.as_mut(), limit.at, cx))
            }
            _ => Some(ready!(attempt.poll(cx))),
        };
        // An attempt that ended is dropped at once, as an awaited future is: whatever it holds
        // (a connection, a guard that records the outcome) is released before anything else.
        this.attempt.set(None);
        if let Some(Ok(value)) = outcome {
            if let Some(budget) = retry.budget {
                budget.deposit_success();
            }
            *this.retry = None;
            return Poll::Ready(Ok(value));
        }
        let Some(retry) = this.retry.take() else {
            unreachable!("the first attempt keeps its operation until it fails")
        };
        let limit = *this.limit;
        let fut = Box::pin((this.start_retries)(Handover {
            retry,
            deadline_at: limit.and_then(|l| l.deadline_at),
            limit: limit.map(|l| l.limit),
            outcome,
        }));
        this.aux.set(Aux::Retrying { fut });
        poll_retrying(this.aux, cx)
    }
}

#[inline]
fn poll_retrying<S: Future>(aux: Pin<&mut Aux<S>>, cx: &mut Context<'_>) -> Poll<S::Output> {
    match aux.project() {
        AuxProj::Retrying { fut } => fut.as_mut().poll(cx),
        _ => panic!("`Run` polled after it completed"),
    }
}

/// The first attempt's deadline and limit, for a policy with a deadline or an attempt
/// timeout. Out of line, so that the unlimited first attempt stays short.
#[inline(never)]
fn first_limit<B>(policy: &RetryPolicy<B>) -> FirstLimit {
    let now = Instant::now();
    let deadline_at = policy.deadline.map(|d| now + d);
    let limit = match (policy.attempt_timeout, policy.deadline) {
        (Some(t), Some(d)) => (t.min(d), d <= t),
        (Some(t), None) => (t, false),
        (None, Some(d)) => (d, true),
        // Not called without a limit; the longest one keeps it correct anyway.
        (None, None) => (MAX_DEADLINE, false),
    };
    FirstLimit {
        deadline_at,
        limit,
        at: now + limit.0,
        timed: true,
    }
}

/// Polls an attempt under its time limit as `tokio::time::Timeout` does, but builds the timer
/// only when the attempt is not ready at once. `Ready(None)` when the limit passed.
fn poll_limited<Fut: Future, S>(
    attempt: Pin<&mut Fut>,
    mut aux: Pin<&mut Aux<S>>,
    at: Instant,
    cx: &mut Context<'_>,
) -> Poll<Option<Fut::Output>> {
    let had_budget_before = tokio::task::coop::has_budget_remaining();
    if let Poll::Ready(out) = attempt.poll(cx) {
        // The attempt ended: its timer goes (deregistered), as with a finished `Timeout`.
        if let Aux::Timer { .. } = *aux {
            aux.set(Aux::Empty);
        }
        return Poll::Ready(Some(out));
    }
    if let Aux::Empty = *aux {
        aux.set(Aux::Timer {
            sleep: tokio::time::sleep_until(at),
        });
    }
    let AuxProj::Timer { sleep } = aux.as_mut().project() else {
        unreachable!("the timer of a limited first attempt")
    };
    // When the attempt itself used up the task's budget, the timer is polled unconstrained, so
    // that an attempt which always exhausts the budget still times out (as `Timeout` does).
    if had_budget_before && !tokio::task::coop::has_budget_remaining() {
        ready!(pin!(tokio::task::coop::unconstrained(sleep)).poll(cx));
    } else {
        ready!(sleep.poll(cx));
    }
    aux.set(Aux::Empty);
    Poll::Ready(None)
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

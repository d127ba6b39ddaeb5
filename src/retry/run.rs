//! The future of a retried call ([`Run`]): the first attempt polled in place by a hand-written
//! state machine, the retries boxed only after a failure.

use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::executor::Retry;
use super::policy::{MAX_DEADLINE, RetryPolicy};

/// What a failed first attempt hands to the retries: the call, its deadline, the first
/// attempt's limit and outcome. Appears only in the type of [`Run`].
pub struct Handover<'a, B, F, C, H, T, E> {
    pub(super) retry: Retry<'a, B, F, C, H>,
    pub(super) deadline_at: Option<Instant>,
    pub(super) limit: Option<(Duration, bool)>,
    pub(super) outcome: Option<Result<T, E>>,
}

impl<B, F, C, H, T, E> fmt::Debug for Handover<'_, B, F, C, H, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field("deadline_at", &self.deadline_at)
            .finish_non_exhaustive()
    }
}

/// A call as [`Run`] sees it until its first attempt ends: the policy's limits, the operation
/// that makes the first attempt, and what to hand to the retries after a failure.
///
/// Implemented by [`Retry`] (the closure API) and, inside the crate, by calls whose future must
/// have a name: the `tower` layer's, whose first attempt is the service's future (given to
/// `Run::started`) and which owns its policy, so that [`Run`] over it is a `Service::Future`
/// without a box. Public in a private module: it cannot be named outside the crate.
pub trait FirstAttempt {
    /// The policy's backoff.
    type Backoff;
    /// The future of the first attempt.
    type Attempt: Future;
    /// A success's value.
    type Ok;
    /// A failed attempt's error, as the retries classify it.
    type Err;
    /// What the retries start from.
    type Handover;

    /// Whether [`Run`] starts the retries out of line. The closure API's does not: there LLVM
    /// keeps the first attempt's state in registers only with the failure path inline
    /// (callgrind: 46 → 59 instructions per first-try success out of line). The `tower` layer's
    /// does: its first-attempt path, much larger inline, is then inlined into its poll.
    const RETRIES_OUT_OF_LINE: bool = false;

    /// The policy: its deadline and attempt timeout limit the first attempt.
    fn policy(&self) -> &RetryPolicy<Self::Backoff>;
    /// When the call started, if the caller read the clock for it.
    fn started_at(&self) -> Option<Instant>;
    /// `true` when an attempt limited to `limit` ends by itself (needs no timer).
    fn ends_within(&self, limit: Duration) -> bool;
    /// Starts the first attempt: called once, by the first poll, unless the call was made with
    /// its first attempt started (`Run::started`).
    fn first_attempt(&mut self) -> Self::Attempt;
    /// The first attempt's output as a success or a failed attempt.
    fn outcome(&self, output: <Self::Attempt as Future>::Output) -> Result<Self::Ok, Self::Err>;
    /// The first attempt succeeded (a budget is refilled).
    fn succeeded(&self);
    /// The first attempt failed (`outcome`), or its limit cut it (`None`): what the retries
    /// start from.
    fn hand_over(
        self,
        deadline_at: Option<Instant>,
        limit: Option<(Duration, bool)>,
        outcome: Option<Result<Self::Ok, Self::Err>>,
    ) -> Self::Handover;
}

pin_project_lite::pin_project! {
    /// The future of a retried call, returned by [`Retry::run`].
    ///
    /// The first attempt is polled in place by a hand-written state machine: a policy without
    /// deadline or attempt timeout reads no clock and builds no timer, and one with them builds
    /// its timer only when the attempt is not ready at once (nor bounded by the operation
    /// itself, see [`Retry::bounded_by`]). Only a failure moves the call into one heap
    /// allocation for the retries.
    ///
    /// The timer and the retries are both held through a `Box`, so that dropping this future
    /// is one inlined tag check: with a `Sleep` in place its drop glue was an out-of-line call
    /// that took the future's address, and the optimiser then kept every field in memory
    /// (callgrind, first-try success: 73 → 46 instructions per call, direct 26).
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<R, Fut, S, A> {
        // The call; taken by a success or, at the first failure, by the retries.
        retry: Option<R>,
        // The first attempt, once started: `None` until the first poll, unless the caller
        // started it (see `Run::started`).
        #[pin]
        attempt: Option<Fut>,
        // The first attempt's deadline and time limit, read by the first poll.
        limit: Limit,
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
        // Built when a limited first attempt is not ready at once; boxed, so that this enum's
        // drop is small enough to inline (see `Run`).
        Timer { sleep: Pin<Box<Sleep>> },
        // The rest of the call, after a failed first attempt.
        Retrying { fut: Pin<Box<S>> },
    }
}

/// The first attempt's limit: not read before the first poll, then the policy's.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Unread,
    Unlimited,
    /// Limited, but the operation ends by itself within the limit and the caller gave the
    /// call's start: nothing to time and nothing to keep, as the start and the limit can be
    /// read again from the call and its policy if the attempt fails (callgrind, a Redis
    /// command: about 45 instructions fewer than building and storing the [`FirstLimit`]).
    Bounded,
    Limited(FirstLimit),
}

impl Limit {
    /// The first attempt's limit, for the retries after it failed.
    #[inline]
    fn get<R: FirstAttempt>(self, retry: &R) -> Option<FirstLimit> {
        match self {
            Limit::Limited(l) => Some(l),
            Limit::Bounded => Some(FirstLimit {
                timed: false,
                ..first_limit(retry.policy(), retry.started_at())
            }),
            Limit::Unread | Limit::Unlimited => None,
        }
    }
}

/// The start and time limit of a first attempt; the instants built from them only when needed
/// (a timer to build, retries to start).
#[derive(Clone, Copy, Debug)]
struct FirstLimit {
    /// When the call started: the deadline counts from here.
    start: Instant,
    /// The time the attempt may take and whether the deadline is the tighter bound.
    limit: (Duration, bool),
    /// Whether the executor times it (not when the operation ends by itself within the
    /// limit, see [`Retry::bounded_by`]).
    timed: bool,
}

impl<R, Fut, S, A> Run<R, Fut, S, A> {
    /// The future of `retry`, whose retries (after a failed first attempt) `start_retries`
    /// builds.
    pub(crate) fn new(retry: R, start_retries: fn(A) -> S) -> Self {
        Run {
            retry: Some(retry),
            attempt: None,
            limit: Limit::Unread,
            aux: Aux::Empty,
            start_retries,
        }
    }

    /// The future of `retry` whose first attempt the caller already started (a `tower`
    /// service's future, made by `Service::call`): [`FirstAttempt::first_attempt`] is not
    /// called; the limit is still read by the first poll.
    #[cfg(feature = "tower")]
    pub(crate) fn started(retry: R, attempt: Fut, start_retries: fn(A) -> S) -> Self {
        Run {
            retry: Some(retry),
            attempt: Some(attempt),
            limit: Limit::Unread,
            aux: Aux::Empty,
            start_retries,
        }
    }
}

impl<R, Fut, S, A> fmt::Debug for Run<R, Fut, S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.retry, &self.limit, &self.aux) {
            (_, _, Aux::Retrying { .. }) => "retrying",
            (None, _, _) => "done",
            (Some(_), Limit::Unread, _) => "idle",
            (Some(_), _, _) => "first attempt",
        };
        f.debug_struct("Run")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<R, S, X> Future for Run<R, R::Attempt, S, R::Handover>
where
    R: FirstAttempt,
    S: Future<Output = Result<R::Ok, X>>,
{
    type Output = Result<R::Ok, X>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_call(cx)
    }
}

impl<R, S, X> Run<R, R::Attempt, S, R::Handover>
where
    R: FirstAttempt,
    S: Future<Output = Result<R::Ok, X>>,
{
    /// The body of `poll`, always inlined: the executor's `poll` is `#[inline]` (LLVM decides,
    /// and there keeps the first attempt's state in registers), a named future over `Run`
    /// whose failure path is out of line (the `tower` layer's) inlines it into its own poll.
    #[inline(always)]
    pub(crate) fn poll_call(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R::Ok, X>> {
        let mut this = self.project();
        let Some(retry) = this.retry.as_mut() else {
            // Taken by the retries (or by a success: then this panics).
            return poll_retrying(this.aux, cx);
        };
        if let Limit::Unread = *this.limit {
            // The first poll. The clock is read before the operation is called: the deadline
            // counts the call.
            let policy = retry.policy();
            *this.limit = if policy.limited {
                let started_at = retry.started_at();
                if started_at.is_some() && retry.ends_within(limit_of(policy).0) {
                    Limit::Bounded
                } else {
                    let limit = first_limit(policy, started_at);
                    Limit::Limited(FirstLimit {
                        timed: !retry.ends_within(limit.limit.0),
                        ..limit
                    })
                }
            } else {
                Limit::Unlimited
            };
            if this.attempt.is_none() {
                this.attempt.set(Some(retry.first_attempt()));
            }
        }
        let Some(attempt) = this.attempt.as_mut().as_pin_mut() else {
            unreachable!("the first attempt has started")
        };
        let output = match *this.limit {
            Limit::Limited(limit) if limit.timed => {
                ready!(poll_limited(attempt, this.aux.as_mut(), &limit, cx))
            }
            _ => Some(ready!(attempt.poll(cx))),
        };
        // An attempt that ended is dropped at once, as an awaited future is: whatever it holds
        // (a connection, a guard that records the outcome) is released before anything else.
        this.attempt.set(None);
        // Every arm moves the whole outcome: nothing of it is left to drop on the success path.
        let failed = match output {
            Some(out) => match retry.outcome(out) {
                Ok(value) => {
                    retry.succeeded();
                    *this.retry = None;
                    return Poll::Ready(Ok(value));
                }
                Err(e) => Some(Err(e)),
            },
            None => None,
        };
        let limit = this.limit.get(&*retry);
        let Some(retry) = this.retry.take() else {
            unreachable!("the first attempt keeps its operation until it fails")
        };
        let fut = if R::RETRIES_OUT_OF_LINE {
            start_retries_out_of_line(retry, limit, *this.start_retries, failed)
        } else {
            start_retries(retry, limit, *this.start_retries, failed)
        };
        this.aux.set(Aux::Retrying { fut });
        poll_retrying(this.aux, cx)
    }
}

/// After a failed first attempt (`outcome`; `None`: its limit cut it): moves the call into the
/// retries' allocation. Inline, or out of line through [`start_retries_out_of_line`] (see
/// [`FirstAttempt::RETRIES_OUT_OF_LINE`]).
#[inline]
fn start_retries<R: FirstAttempt, S>(
    retry: R,
    limit: Option<FirstLimit>,
    start: fn(R::Handover) -> S,
    outcome: Option<Result<R::Ok, R::Err>>,
) -> Pin<Box<S>> {
    let deadline_at = limit.and_then(|l| l.deadline_at(retry.policy()));
    Box::pin(start(retry.hand_over(
        deadline_at,
        limit.map(|l| l.limit),
        outcome,
    )))
}

/// [`start_retries`], out of line and by value (no address into the future escapes).
#[inline(never)]
fn start_retries_out_of_line<R: FirstAttempt, S>(
    retry: R,
    limit: Option<FirstLimit>,
    start: fn(R::Handover) -> S,
    outcome: Option<Result<R::Ok, R::Err>>,
) -> Pin<Box<S>> {
    start_retries(retry, limit, start, outcome)
}

/// Polls the retries, through their allocation: out of line, so that the first attempt's
/// path stays short.
#[inline(never)]
fn poll_boxed<S: Future>(fut: Pin<&mut S>, cx: &mut Context<'_>) -> Poll<S::Output> {
    fut.poll(cx)
}

#[inline]
fn poll_retrying<S: Future>(aux: Pin<&mut Aux<S>>, cx: &mut Context<'_>) -> Poll<S::Output> {
    match aux.project() {
        AuxProj::Retrying { fut } => poll_boxed(fut.as_mut(), cx),
        _ => panic!("`Run` polled after it completed"),
    }
}

impl FirstLimit {
    /// The call's deadline.
    fn deadline_at<B>(&self, policy: &RetryPolicy<B>) -> Option<Instant> {
        policy.deadline.map(|d| self.start + d)
    }
}

/// The first attempt's start and limit, for a policy with a deadline or an attempt timeout:
/// from `started_at` when the caller read the clock for the call, else from a reading of its
/// own. Out of line, so that the unlimited first attempt stays short.
#[inline(never)]
fn first_limit<B>(policy: &RetryPolicy<B>, started_at: Option<Instant>) -> FirstLimit {
    FirstLimit {
        start: started_at.unwrap_or_else(Instant::now),
        limit: limit_of(policy),
        timed: true,
    }
}

/// The time a first attempt may take under `policy`, and whether the deadline is the tighter
/// bound.
#[inline]
fn limit_of<B>(policy: &RetryPolicy<B>) -> (Duration, bool) {
    match (policy.attempt_timeout, policy.deadline) {
        (Some(t), Some(d)) => (t.min(d), d <= t),
        (Some(t), None) => (t, false),
        (None, Some(d)) => (d, true),
        // Not called without a limit; the longest one keeps it correct anyway.
        (None, None) => (MAX_DEADLINE, false),
    }
}

/// Polls an attempt under its time limit as `tokio::time::Timeout` does, but builds the timer
/// only when the attempt is not ready at once. `Ready(None)` when the limit passed.
fn poll_limited<Fut: Future, S>(
    attempt: Pin<&mut Fut>,
    mut aux: Pin<&mut Aux<S>>,
    limit: &FirstLimit,
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
            sleep: Box::pin(tokio::time::sleep_until(limit.start + limit.limit.0)),
        });
    }
    let AuxProj::Timer { sleep } = aux.as_mut().project() else {
        unreachable!("the timer of a limited first attempt")
    };
    // When the attempt itself used up the task's budget, the timer is polled unconstrained, so
    // that an attempt which always exhausts the budget still times out (as `Timeout` does).
    if had_budget_before && !tokio::task::coop::has_budget_remaining() {
        ready!(pin!(tokio::task::coop::unconstrained(sleep.as_mut())).poll(cx));
    } else {
        ready!(sleep.as_mut().poll(cx));
    }
    aux.set(Aux::Empty);
    Poll::Ready(None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::{Instant, advance};

    use crate::Classification;
    use crate::retry::{ConstantBackoff, RetryPolicy, StopReason};

    fn transient(_: &()) -> Classification {
        Classification::transient()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy() -> RetryPolicy<ConstantBackoff> {
        RetryPolicy::builder()
            .max_attempts(3)
            .deadline(ms(100))
            .backoff(ConstantBackoff::new(ms(10)))
            .build()
            .unwrap()
    }

    /// A start handed in by the caller is where the deadline counts from: read 60 ms before
    /// the first poll, a 100 ms deadline leaves the first attempt 40 ms.
    #[tokio::test(start_paused = true)]
    async fn a_given_start_is_where_the_deadline_counts_from() {
        let start = Instant::now();
        advance(ms(60)).await;
        let polled = Instant::now();
        let err = policy()
            .retry(std::future::pending::<Result<(), ()>>)
            .started_at(start)
            .classify_with(transient)
            .idempotent(true)
            .run()
            .await
            .unwrap_err();
        assert_eq!(err.reason(), StopReason::DeadlineExceeded);
        assert_eq!(err.attempts(), 1);
        assert_eq!(polled.elapsed(), ms(40));
        assert_eq!(start.elapsed(), ms(100));
    }

    /// A first attempt bounded by the operation itself keeps no limit of its own, yet after it
    /// failed the retries still count the deadline from the given start: read 20 ms before
    /// the first poll, a 100 ms deadline leaves room for two 30 ms attempts, not three.
    #[tokio::test(start_paused = true)]
    async fn a_bounded_first_attempt_that_fails_keeps_the_given_start() {
        let start = Instant::now();
        advance(ms(20)).await;
        let err = policy()
            .retry(|| async {
                tokio::time::sleep(ms(30)).await;
                Err::<(), ()>(())
            })
            .bounded_by(ms(50))
            .started_at(start)
            .classify_with(transient)
            .idempotent(true)
            .run()
            .await
            .unwrap_err();
        assert_eq!(err.reason(), StopReason::DeadlineExceeded);
        assert_eq!(err.attempts(), 2);
        assert_eq!(start.elapsed(), ms(90));
    }

    /// Without a given start the first poll reads the clock: the whole deadline is left,
    /// however long ago the future was made.
    #[tokio::test(start_paused = true)]
    async fn without_a_start_the_first_poll_reads_the_clock() {
        let p = policy();
        let fut = p
            .retry(std::future::pending::<Result<(), ()>>)
            .classify_with(transient)
            .idempotent(true)
            .run();
        advance(ms(60)).await;
        let polled = Instant::now();
        let err = fut.await.unwrap_err();
        assert_eq!(err.reason(), StopReason::DeadlineExceeded);
        assert_eq!(polled.elapsed(), ms(100));
    }

    /// The first attempt's timer lives on the heap, and an attempt that ends before it
    /// drops it: a limited attempt that answers after a pending first poll succeeds, and the
    /// call's deadline still holds for the retries that follow a timed-out one.
    #[tokio::test(start_paused = true)]
    async fn a_limited_first_attempt_pending_then_ready_succeeds() {
        let p = RetryPolicy::builder()
            .attempt_timeout(ms(50))
            .deadline(ms(120))
            .backoff(ConstantBackoff::new(ms(10)))
            .build()
            .unwrap();
        let start = Instant::now();
        let got = p
            .retry(|| async {
                tokio::time::sleep(ms(30)).await;
                Ok::<_, ()>(7)
            })
            .classify_with(transient)
            .run()
            .await;
        assert_eq!(got.ok(), Some(7));
        assert_eq!(start.elapsed(), ms(30));

        // Every attempt hangs: cut at 50, 10 wait, cut at 110, then 10 ms would reach the
        // deadline: stop there, at 110 ms.
        let start = Instant::now();
        let err = p
            .retry(std::future::pending::<Result<(), ()>>)
            .classify_with(transient)
            .idempotent(true)
            .run()
            .await
            .unwrap_err();
        assert_eq!(err.reason(), StopReason::DeadlineExceeded);
        assert_eq!(err.attempts(), 2);
        assert_eq!(start.elapsed(), ms(110));
    }
}

//! The future of a retried call ([`Run`]): the first attempt polled in place by a hand-written
//! state machine, the retries boxed only after a failure.

use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::error::RetryError;
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

impl<R, Fut, S, A> Run<R, Fut, S, A> {
    /// The future of `retry`, whose retries (after a failed first attempt) `start_retries`
    /// builds.
    pub(super) fn new(retry: R, start_retries: fn(A) -> S) -> Self {
        Run {
            retry: Some(retry),
            attempt: None,
            limit: None,
            aux: Aux::Empty,
            start_retries,
        }
    }
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

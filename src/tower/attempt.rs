//! One attempt through a service, as both [`Retry`](super::Retry) and
//! [`Upstreams`](super::Upstreams) run it inside the executor, and the translation of the
//! executor's verdict into the caller's result.

use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tower_service::Service;

use super::error::{Error, ErrorKind};
use super::policy::Policy;
use crate::error::{Classification, Execution};
use crate::retry::{RetryError, StopReason};

/// Why an attempt failed, as the executor sees it.
pub(super) enum Failure<Res, E> {
    /// The service returned an error.
    Service(E),
    /// The service failed while getting ready: nothing was sent.
    NotReady(E),
    /// The service answered with a response the policy classifies as retryable.
    Response(Res, Classification),
    /// The replay could not copy the request for this retry: nothing was sent.
    Unreplayable,
}

impl<Res, E> Failure<Res, E> {
    pub(super) fn classify<Req, P: Policy<Req, Res, E>>(&self, policy: &P) -> Classification {
        match self {
            Failure::Service(e) => policy.classify_error(e),
            Failure::NotReady(e) => policy.classify_error(e).not_executed(),
            Failure::Response(_, c) => *c,
            Failure::Unreplayable => Classification::permanent().not_executed(),
        }
    }
}

pin_project_lite::pin_project! {
    /// An attempt whose call is made: awaits the service's future and turns a retryable
    /// response into a [`Failure`]. Marks the call as possibly executed when dropped before
    /// its answer (cut by a timeout, or the caller gave up).
    pub(super) struct Called<'a, F, P, Req> {
        #[pin]
        fut: F,
        policy: &'a P,
        executed: &'a AtomicBool,
        done: bool,
        _req: PhantomData<fn(Req)>,
    }

    impl<'a, F, P, Req> PinnedDrop for Called<'a, F, P, Req> {
        fn drop(this: Pin<&mut Self>) {
            if !this.done {
                this.executed.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl<'a, F, P, Req> Called<'a, F, P, Req> {
    pub(super) fn new(fut: F, policy: &'a P, executed: &'a AtomicBool) -> Self {
        Called {
            fut,
            policy,
            executed,
            done: false,
            _req: PhantomData,
        }
    }
}

impl<F, P, Req, Res, E> Future for Called<'_, F, P, Req>
where
    F: Future<Output = Result<Res, E>>,
    P: Policy<Req, Res, E>,
{
    type Output = Result<Res, Failure<Res, E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = read::<Req, _, _, _>(*this.policy, ready!(this.fut.poll(cx)));
        *this.done = true;
        if let Err(Failure::Response(_, c)) = &result
            && c.execution() == Execution::MayHaveExecuted
        {
            this.executed.store(true, Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}

/// A service's answer as the executor reads it: a response the policy classifies as retryable
/// is a failed attempt.
#[inline]
pub(super) fn read<Req, P, Res, E>(
    policy: &P,
    result: Result<Res, E>,
) -> Result<Res, Failure<Res, E>>
where
    P: Policy<Req, Res, E>,
{
    match result {
        Ok(res) => match policy.classify_response(&res) {
            Some(c) if c.class().is_retryable() => Err(Failure::Response(res, c)),
            _ => Ok(res),
        },
        Err(e) => Err(Failure::Service(e)),
    }
}

/// An attempt through a fresh clone of the service: waits for it to be ready, then calls.
/// `None` for either means the request could not be copied for this retry.
pub(super) async fn fresh<S, Req, P>(
    service: Option<S>,
    request: Option<Req>,
    policy: &P,
    executed: &AtomicBool,
) -> Result<S::Response, Failure<S::Response, S::Error>>
where
    S: Service<Req>,
    P: Policy<Req, S::Response, S::Error>,
{
    let (Some(mut svc), Some(req)) = (service, request) else {
        return Err(Failure::Unreplayable);
    };
    poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(Failure::NotReady)?;
    Called::new(svc.call(req), policy, executed).await
}

pin_project_lite::pin_project! {
    /// The first attempt ([`Called`]) or a retry ([`fresh`]): one type for the executor.
    #[project = EitherProj]
    pub(super) enum Either<A, B> {
        First { #[pin] fut: A },
        Retry { #[pin] fut: B },
    }
}

impl<A: Future, B: Future<Output = A::Output>> Future for Either<A, B> {
    type Output = A::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A::Output> {
        match self.project() {
            EitherProj::First { fut } => fut.poll(cx),
            EitherProj::Retry { fut } => fut.poll(cx),
        }
    }
}

/// What the caller gets when the executor stopped: the last retryable response as it came, or
/// an [`Error`] that says what failed and why the layer stopped.
pub(super) fn finish<Res, E>(
    err: RetryError<Failure<Res, E>>,
    upstream: Option<String>,
    may_have_executed: bool,
    sent_once: bool,
) -> Result<Res, Error<E>> {
    let (stop, attempts) = (err.reason(), err.attempts());
    let (classification, timed_out) = (err.classification(), err.timed_out());
    let (kind, source, unreplayable) = match err.into_last_error() {
        Some(Failure::Response(res, _)) if !timed_out => return Ok(res),
        Some(Failure::Service(e)) if timed_out => (ErrorKind::TimedOut, Some(e), false),
        _ if timed_out => (ErrorKind::TimedOut, None, false),
        Some(Failure::Service(e)) => (ErrorKind::Service, Some(e), false),
        Some(Failure::NotReady(e)) => (ErrorKind::NotReady, Some(e), false),
        Some(Failure::Unreplayable) => (ErrorKind::Service, None, true),
        Some(Failure::Response(..)) | None => (ErrorKind::TimedOut, None, false),
    };
    // Sent once for want of a copy, and stopped only because no attempt was left: a retry
    // would have been made.
    let unreplayable = unreplayable || (sent_once && stop == StopReason::AttemptsExhausted);
    let error = Error::new(kind, source)
        .stopped(stop, attempts, classification)
        .on(upstream)
        .executed(may_have_executed);
    Err(if unreplayable {
        error.not_replayable()
    } else {
        error
    })
}

//! One attempt through a service, as both [`Retry`](super::Retry) and
//! [`Upstreams`](super::Upstreams) run it inside the executor, and the translation of the
//! executor's verdict into the caller's result.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// What one attempt sends through.
pub(super) enum Sender<S, F> {
    /// The future of a call already made on the service `poll_ready` readied.
    Called(F),
    /// The service `poll_ready` readied, to call now.
    Ready(S),
    /// A clone of the service, to get ready first.
    Fresh(S),
}

/// Runs one attempt: gets the service ready if needed, calls it, and turns a retryable
/// response into a [`Failure`]. Sets `executed` when the attempt may have run (it was in
/// flight when cut, or a response says so).
pub(super) async fn attempt<S, Req, P>(
    sender: Sender<S, S::Future>,
    request: Option<Req>,
    policy: &P,
    executed: &AtomicBool,
) -> Result<S::Response, Failure<S::Response, S::Error>>
where
    S: Service<Req>,
    P: Policy<Req, S::Response, S::Error>,
{
    let fut = match (sender, request) {
        (Sender::Called(fut), _) => fut,
        (Sender::Ready(mut svc), Some(req)) => svc.call(req),
        (Sender::Fresh(mut svc), Some(req)) => {
            poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Failure::NotReady)?;
            svc.call(req)
        }
        (_, None) => return Err(Failure::Unreplayable),
    };
    let in_flight = InFlight(Some(executed));
    let result = fut.await;
    in_flight.disarm();
    match result {
        Ok(res) => match policy.classify_response(&res) {
            Some(c) if c.class().is_retryable() => {
                if c.execution() == Execution::MayHaveExecuted {
                    executed.store(true, Ordering::Relaxed);
                }
                Err(Failure::Response(res, c))
            }
            _ => Ok(res),
        },
        Err(e) => Err(Failure::Service(e)),
    }
}

/// Marks the call as possibly executed when an attempt is dropped while in flight (cut by a
/// timeout, or the caller gave up).
struct InFlight<'a>(Option<&'a AtomicBool>);

impl InFlight<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(true, Ordering::Relaxed);
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

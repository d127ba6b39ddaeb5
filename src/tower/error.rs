//! The error of a call through the layer.

use std::error::Error as StdError;
use std::fmt;

use crate::error::{Classification, Classify, Execution};
use crate::retry::StopReason;

/// What the last failure of a call was.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The service returned an error ([`Error::service_error`]).
    Service,
    /// The service failed while getting ready, so the request was not sent.
    NotReady,
    /// The policy's attempt timeout or deadline cut the last attempt.
    TimedOut,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Service => "service error",
            ErrorKind::NotReady => "service not ready",
            ErrorKind::TimedOut => "timed out",
        })
    }
}

/// A call through [`Retry`](super::Retry) or [`Upstreams`](super::Upstreams) that did not
/// succeed: what the last failure was ([`kind`](Self::kind)), why the layer stopped
/// ([`stop_reason`](Self::stop_reason)), how many attempts it made, on which upstream the
/// last one ran, and whether anything may have executed. The service's own error is the
/// [`source`](StdError::source).
///
/// A failing *response* (an HTTP `503` the layer gave up retrying) is not an error: the
/// caller gets that response.
///
/// ```no_run
/// # async fn demo(err: switchover::tower::Error<std::io::Error>) {
/// if err.is_not_replayable() {
///     eprintln!("sent once (its body cannot be replayed): {err}");
/// } else if err.may_have_executed() {
///     eprintln!("may have been applied; check before trying again: {err}");
/// }
/// # }
/// ```
pub struct Error<E> {
    inner: Box<Inner<E>>,
}

struct Inner<E> {
    kind: ErrorKind,
    stop: Option<StopReason>,
    attempts: u32,
    upstream: Option<String>,
    execution: Execution,
    classification: Option<Classification>,
    not_replayable: bool,
    source: Option<E>,
}

impl<E> Error<E> {
    pub(super) fn new(kind: ErrorKind, source: Option<E>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                stop: None,
                attempts: 0,
                upstream: None,
                execution: Execution::NotExecuted,
                classification: None,
                not_replayable: false,
                source,
            }),
        }
    }

    pub(super) fn stopped(
        mut self,
        stop: StopReason,
        attempts: u32,
        classification: Option<Classification>,
    ) -> Self {
        self.inner.stop = Some(stop);
        self.inner.attempts = attempts;
        self.inner.classification = classification;
        self
    }

    pub(super) fn on(mut self, upstream: Option<String>) -> Self {
        self.inner.upstream = upstream;
        self
    }

    pub(super) fn executed(mut self, may_have: bool) -> Self {
        self.inner.execution = if may_have {
            Execution::MayHaveExecuted
        } else {
            Execution::NotExecuted
        };
        self
    }

    pub(super) fn not_replayable(mut self) -> Self {
        self.inner.not_replayable = true;
        self
    }

    /// What the last failure was.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Why the layer stopped; `None` when no attempt started (the service failed in
    /// `poll_ready`).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.stop
    }

    /// How many attempts were started, the first included.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The upstream of the last failed attempt ([`Upstreams`](super::Upstreams) only).
    pub fn upstream(&self) -> Option<&str> {
        self.inner.upstream.as_deref()
    }

    /// `NotExecuted` only when no attempt of the call can have run on a server.
    pub fn execution(&self) -> Execution {
        self.inner.execution
    }

    /// `true` when an attempt may have run: read before trying a non-idempotent request again.
    pub fn may_have_executed(&self) -> bool {
        self.inner.execution == Execution::MayHaveExecuted
    }

    /// How the last failure was classified.
    pub fn classification(&self) -> Option<Classification> {
        self.inner.classification
    }

    /// `true` when the last attempt was cut by the attempt timeout or the deadline.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::TimedOut
    }

    /// `true` when the shared retry budget refused a retry.
    pub fn is_budget_exhausted(&self) -> bool {
        self.inner.stop == Some(StopReason::BudgetExhausted)
    }

    /// `true` when the deadline passed, or the next wait would have ended after it.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.inner.stop == Some(StopReason::DeadlineExceeded)
    }

    /// `true` when the failure was retryable but the request was sent once, because its
    /// [`Replay`](super::Replay) could not copy it.
    pub fn is_not_replayable(&self) -> bool {
        self.inner.not_replayable
    }

    /// The service's error of the last failure that returned one (with
    /// [`ErrorKind::TimedOut`], an earlier attempt's, if any).
    pub fn service_error(&self) -> Option<&E> {
        self.inner.source.as_ref()
    }

    /// Takes the service's error.
    pub fn into_service_error(self) -> Option<E> {
        self.inner.source
    }
}

impl<E> Classify for Error<E> {
    fn classify(&self) -> Classification {
        self.inner
            .classification
            .unwrap_or_else(Classification::transient)
            .with_execution(self.inner.execution)
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Error")
            .field("kind", &i.kind)
            .field("stop", &i.stop)
            .field("attempts", &i.attempts)
            .field("upstream", &i.upstream)
            .field("execution", &i.execution)
            .field("not_replayable", &i.not_replayable)
            .field("source", &i.source)
            .finish()
    }
}

impl<E> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        fmt::Display::fmt(&i.kind, f)?;
        if let Some(up) = &i.upstream {
            write!(f, " on `{up}`")?;
        }
        if i.not_replayable {
            f.write_str(": sent once, the request cannot be replayed")?;
        } else if let Some(stop) = i.stop {
            let s = if i.attempts == 1 { "" } else { "s" };
            write!(f, ": {stop} after {} attempt{s}", i.attempts)?;
        }
        Ok(())
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

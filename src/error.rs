//! The error vocabulary every part of `switchover` speaks.
//!
//! Each error the library sees is classified once, by the code that knows where it came from,
//! into a [`Classification`]:
//!
//! - an [`ErrorClass`]: [`Permanent`](ErrorClass::Permanent) (the caller's fault: never retried,
//!   says nothing about the endpoint), [`Transient`](ErrorClass::Transient) (retry; counts against
//!   the endpoint) or [`Throttled`](ErrorClass::Throttled) (retry with more patience; pressure, not
//!   an outage);
//! - an [`Execution`]: whether the request [may have executed](Execution::MayHaveExecuted) (a
//!   timeout after the request was sent) or [surely did not](Execution::NotExecuted) (connection
//!   refused, a `READONLY` reply, a request rejected before it ran);
//! - an optional server-suggested delay (`Retry-After` style).
//!
//! Implement [`Classify`] for your own error types, or pass any closure
//! `Fn(&E) -> Classification` where a [`Classifier`] is expected.
//!
//! ```
//! use std::time::Duration;
//! use switchover::{Classification, Classify, ErrorClass, Execution};
//!
//! #[derive(Debug)]
//! enum MyError {
//!     BadRequest,
//!     Refused,
//!     Timeout,
//!     SlowDown { retry_after: Duration },
//! }
//!
//! impl Classify for MyError {
//!     fn classify(&self) -> Classification {
//!         match self {
//!             MyError::BadRequest => Classification::permanent(),
//!             MyError::Refused => Classification::transient().not_executed(),
//!             MyError::Timeout => Classification::transient(),
//!             MyError::SlowDown { retry_after } => {
//!                 Classification::throttled().not_executed().with_retry_after(*retry_after)
//!             }
//!         }
//!     }
//! }
//!
//! let c = MyError::Timeout.classify();
//! assert_eq!(c.class(), ErrorClass::Transient);
//! assert_eq!(c.execution(), Execution::MayHaveExecuted);
//! assert!(!c.is_retry_safe(false));
//! assert!(c.is_retry_safe(true));
//! ```

use std::fmt;
use std::time::Duration;

/// What an error means for retrying and for the health of the endpoint it came from.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The caller's fault (bad request, failed condition, missing permission). Never retried and
    /// never counted against the endpoint.
    Permanent,
    /// The endpoint failed (refused, reset, timed out, internal error). Retried, and counted
    /// against the endpoint's health.
    Transient,
    /// The endpoint is shedding load. Retried with a longer delay; tracked separately and, by
    /// default, does not mark the endpoint down.
    Throttled,
}

impl ErrorClass {
    /// `true` for the classes the retry executor may retry (transient and throttled).
    #[inline]
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Throttled)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled => "throttled",
        })
    }
}

/// Whether a failed request may have had its effect on the server.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Execution {
    /// The request may have run (it was sent and no answer came back, or the answer was lost).
    /// Retrying is safe only for idempotent operations.
    MayHaveExecuted,
    /// The request surely did not run (connection refused, rejected before execution,
    /// `READONLY`). Retrying is always safe.
    NotExecuted,
}

impl fmt::Display for Execution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Execution::MayHaveExecuted => "may have executed",
            Execution::NotExecuted => "not executed",
        })
    }
}

/// The full verdict on one error: class, execution, and a server-suggested delay.
///
/// Built with [`permanent`](Self::permanent), [`transient`](Self::transient) or
/// [`throttled`](Self::throttled), then refined. A new classification says
/// [`Execution::MayHaveExecuted`] (the conservative answer) until [`not_executed`](Self::not_executed)
/// is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Classification {
    class: ErrorClass,
    execution: Execution,
    retry_after: Option<Duration>,
    redirected: bool,
    timed_out: bool,
}

impl Classification {
    /// A classification of the given class that may have executed and suggests no delay.
    #[inline]
    pub const fn new(class: ErrorClass) -> Self {
        Classification {
            class,
            execution: Execution::MayHaveExecuted,
            retry_after: None,
            redirected: false,
            timed_out: false,
        }
    }

    /// The caller's fault: never retried, never counted against the endpoint.
    #[inline]
    pub const fn permanent() -> Self {
        Self::new(ErrorClass::Permanent)
    }

    /// An endpoint failure: retried, counted against the endpoint.
    #[inline]
    pub const fn transient() -> Self {
        Self::new(ErrorClass::Transient)
    }

    /// Load shedding: retried with more patience, not an outage.
    #[inline]
    pub const fn throttled() -> Self {
        Self::new(ErrorClass::Throttled)
    }

    /// Marks the request as surely not executed, so retrying is safe even when the operation
    /// is not idempotent.
    #[inline]
    #[must_use]
    pub const fn not_executed(mut self) -> Self {
        self.execution = Execution::NotExecuted;
        self
    }

    /// Marks the request as possibly executed (the default).
    #[inline]
    #[must_use]
    pub const fn may_have_executed(mut self) -> Self {
        self.execution = Execution::MayHaveExecuted;
        self
    }

    /// Sets whether the request may have executed.
    #[inline]
    #[must_use]
    pub const fn with_execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// Attaches a server-suggested delay before the next attempt. The executor honours it but
    /// clamps it to its deadline and to its configured ceiling.
    #[inline]
    #[must_use]
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// A transient refusal by an endpoint that is healthy but not the one to use now (a
    /// demoted primary's `READONLY`, "the primary moved since this attempt picked its
    /// endpoint"): surely not executed, retried at once (a zero `Retry-After`), and never
    /// counted against the endpoint's health — the endpoint did its job by saying so.
    #[inline]
    pub const fn redirected() -> Self {
        Classification {
            class: ErrorClass::Transient,
            execution: Execution::NotExecuted,
            retry_after: Some(Duration::ZERO),
            redirected: true,
            timed_out: false,
        }
    }

    /// Marks the attempt as having run out of time inside the operation (a client's own
    /// response timeout, such as redis-rs's): recorded on the endpoint like an attempt the
    /// runner cut, with [`Endpoint::record_timeout`](crate::health::Endpoint::record_timeout)
    /// — with a heartbeat, slow is not dead and the heartbeat's verdict counts — not as a
    /// failure. The class and execution are unchanged.
    #[inline]
    #[must_use]
    pub const fn timed_out(mut self) -> Self {
        self.timed_out = true;
        self
    }

    /// `true` when marked [`timed_out`](Self::timed_out).
    #[inline]
    pub const fn is_timed_out(&self) -> bool {
        self.timed_out
    }

    /// `true` for a [`redirected`](Self::redirected) refusal.
    #[inline]
    pub const fn is_redirected(&self) -> bool {
        self.redirected
    }

    /// The class.
    #[inline]
    pub const fn class(&self) -> ErrorClass {
        self.class
    }

    /// Whether the request may have executed.
    #[inline]
    pub const fn execution(&self) -> Execution {
        self.execution
    }

    /// The server-suggested delay, if any.
    #[inline]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// `true` when the error's class is retryable and retrying cannot run the operation twice
    /// by surprise: the request surely did not execute, or the operation is `idempotent`.
    #[inline]
    pub const fn is_retry_safe(&self, idempotent: bool) -> bool {
        self.class.is_retryable()
            && (idempotent || matches!(self.execution, Execution::NotExecuted))
    }

    /// `true` when this outcome says the endpoint failed (transient), as opposed to the caller
    /// (permanent), load (throttled) or a [redirect](Self::redirected) to another endpoint.
    #[inline]
    pub const fn counts_against_endpoint(&self) -> bool {
        matches!(self.class, ErrorClass::Transient) && !self.redirected
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.class, self.execution)?;
        if self.redirected {
            f.write_str(", redirected")?;
        }
        if let Some(d) = self.retry_after {
            write!(f, ", retry after {d:?}")?;
        }
        Ok(())
    }
}

/// An error that can say what it means for retrying and for its endpoint.
///
/// Implement it for your own error types; the adapters implement it for the client crates'
/// errors. For one-off cases pass a closure to the executor instead (see [`Classifier`]).
pub trait Classify {
    /// Classifies this error.
    fn classify(&self) -> Classification;
}

impl<T: Classify + ?Sized> Classify for &T {
    #[inline]
    fn classify(&self) -> Classification {
        (**self).classify()
    }
}

impl<T: Classify + ?Sized> Classify for Box<T> {
    #[inline]
    fn classify(&self) -> Classification {
        (**self).classify()
    }
}

impl Classify for std::io::Error {
    /// Connection refused and `NotConnected` surely did not execute; other I/O failures
    /// (reset, broken pipe, timed out, unexpected EOF) may have. Invalid input or data is
    /// permanent.
    fn classify(&self) -> Classification {
        use std::io::ErrorKind::*;
        match self.kind() {
            ConnectionRefused | NotConnected | AddrNotAvailable => {
                Classification::transient().not_executed()
            }
            InvalidInput | InvalidData | PermissionDenied | Unsupported => {
                Classification::permanent()
            }
            _ => Classification::transient(),
        }
    }
}

/// Classifies errors of type `E`: the strategy the executor uses to read an error.
///
/// [`ByClassify`] (the default) defers to `E`'s [`Classify`] implementation. Any closure
/// `Fn(&E) -> Classification` is a classifier too:
///
/// ```
/// use switchover::{Classification, Classifier};
///
/// let by_status = |status: &u16| match *status {
///     429 => Classification::throttled().not_executed(),
///     500..=599 => Classification::transient(),
///     _ => Classification::permanent(),
/// };
/// assert!(by_status.classify(&503).is_retry_safe(true));
/// assert!(!by_status.classify(&404).is_retry_safe(true));
/// ```
pub trait Classifier<E: ?Sized> {
    /// Classifies `error`.
    fn classify(&self, error: &E) -> Classification;
}

impl<E: ?Sized, F> Classifier<E> for F
where
    F: Fn(&E) -> Classification,
{
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        self(error)
    }
}

/// The default [`Classifier`]: asks the error itself through [`Classify`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ByClassify;

impl<E: Classify + ?Sized> Classifier<E> for ByClassify {
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        error.classify()
    }
}

/// A configuration value was rejected when a policy, builder or pool was built.
///
/// The message names the field and says what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// A rejection of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the rejected field.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_safety_follows_class_execution_and_idempotency() {
        let permanent = Classification::permanent().not_executed();
        assert!(!permanent.is_retry_safe(true));

        let timeout = Classification::transient();
        assert!(!timeout.is_retry_safe(false));
        assert!(timeout.is_retry_safe(true));

        let refused = Classification::transient().not_executed();
        assert!(refused.is_retry_safe(false));

        let throttled = Classification::throttled().not_executed();
        assert!(throttled.is_retry_safe(false));
        assert!(!throttled.counts_against_endpoint());
        assert!(refused.counts_against_endpoint());
    }

    #[test]
    fn io_errors_classify_by_kind() {
        use std::io::{Error, ErrorKind};
        let refused = Error::from(ErrorKind::ConnectionRefused).classify();
        assert_eq!(refused.execution(), Execution::NotExecuted);
        let reset = Error::from(ErrorKind::ConnectionReset).classify();
        assert_eq!(reset.class(), ErrorClass::Transient);
        assert_eq!(reset.execution(), Execution::MayHaveExecuted);
        let invalid = Error::from(ErrorKind::InvalidInput).classify();
        assert_eq!(invalid.class(), ErrorClass::Permanent);
    }

    #[test]
    fn closures_are_classifiers() {
        let c = |e: &&str| {
            if *e == "busy" {
                Classification::throttled().with_retry_after(Duration::from_millis(5))
            } else {
                Classification::permanent()
            }
        };
        let got = Classifier::classify(&c, &"busy");
        assert_eq!(got.retry_after(), Some(Duration::from_millis(5)));
        assert_eq!(
            got.to_string(),
            "throttled, may have executed, retry after 5ms"
        );
    }

    #[test]
    fn config_error_names_the_field() {
        let e = ConfigError::new("max_attempts", "must be at least 1");
        assert_eq!(e.to_string(), "invalid `max_attempts`: must be at least 1");
        assert_eq!(e.field(), "max_attempts");
    }
}

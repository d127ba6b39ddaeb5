//! How a retried call fails: why it stopped ([`StopReason`]) and what it keeps ([`RetryError`]).

use std::error::Error as StdError;
use std::fmt;

use crate::error::Classification;

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

pub(super) fn give_up<E>(
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

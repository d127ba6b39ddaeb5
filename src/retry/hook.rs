//! The hook called before each retry ([`OnRetry`]) and what it is told ([`RetryEvent`]).

use std::time::Duration;

use crate::error::Classification;

/// What the executor tells the hook before each retry.
#[derive(Debug)]
pub struct RetryEvent<'a, E> {
    pub(super) attempt: u32,
    pub(super) delay: Duration,
    pub(super) error: Option<&'a E>,
    pub(super) classification: Classification,
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

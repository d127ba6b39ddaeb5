//! How the layer reads a service's requests and outcomes: [`Policy`], with [`ErrorPolicy`]
//! for services whose responses are always successes.

use crate::error::{Classification, Classify};

/// What the layer needs to know about one kind of service: which requests are safe to run
/// twice, which responses are failures, and what its errors mean.
///
/// [`ErrorPolicy`] fits any service whose errors implement [`Classify`];
/// [`HttpPolicy`](crate::http::HttpPolicy) (feature `http`) reads HTTP methods, statuses and
/// `Retry-After`. Like `tower::retry::Policy`, a policy is cloned into every call.
pub trait Policy<Req, Res, E> {
    /// Whether running `request` twice is harmless. A failure that may have executed is
    /// retried only for an idempotent request; one that surely did not execute always is.
    fn is_idempotent(&self, request: &Req) -> bool;

    /// `None` when `response` is a success. A retryable classification (transient or
    /// throttled: an HTTP `503` or `429`) makes the layer treat the response as a failed
    /// attempt: recorded against the upstream and retried when safe; when the layer stops
    /// retrying, the caller gets the last such response. A permanent classification is
    /// handed to the caller at once, as a success would be.
    fn classify_response(&self, response: &Res) -> Option<Classification>;

    /// What an error of the service means.
    fn classify_error(&self, error: &E) -> Classification;
}

/// A [`Policy`] for services that report failures as errors: every response is a success,
/// errors are classified by their [`Classify`] implementation, and requests are not
/// idempotent unless [`idempotent`](Self::idempotent) says so.
///
/// ```
/// use switchover::tower::{ErrorPolicy, Policy};
///
/// let reads = ErrorPolicy::new().idempotent();
/// assert!(Policy::<&str, (), std::io::Error>::is_idempotent(&reads, &"GET /items"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorPolicy {
    idempotent: bool,
}

impl ErrorPolicy {
    /// Requests are not idempotent: retried only after failures that surely did not execute.
    pub const fn new() -> Self {
        ErrorPolicy { idempotent: false }
    }

    /// Every request is idempotent (a read-only service): retried after any retryable
    /// failure.
    pub const fn idempotent(self) -> Self {
        ErrorPolicy { idempotent: true }
    }
}

impl<Req, Res, E: Classify> Policy<Req, Res, E> for ErrorPolicy {
    #[inline]
    fn is_idempotent(&self, _: &Req) -> bool {
        self.idempotent
    }

    #[inline]
    fn classify_response(&self, _: &Res) -> Option<Classification> {
        None
    }

    #[inline]
    fn classify_error(&self, error: &E) -> Classification {
        error.classify()
    }
}

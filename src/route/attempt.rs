//! What the runner hands each attempt ([`Attempt`]), where attempts go ([`Target`]), and how a
//! routed call fails ([`RouteError`]).

use std::error::Error as StdError;
use std::fmt;
use std::ops::Deref;

use super::read::ReadPolicy;
use super::router::Router;
use crate::error::Classification;
use crate::health::{Endpoint, EndpointId};
use crate::retry::{RetryError, StopReason};

/// One attempt of a routed call, as the operation sees it: the endpoint to use, the attempt
/// number, the router's generation when the endpoint was picked, and the endpoints that already
/// failed in this call.
///
/// Derefs to the [`Endpoint`], so `attempt.id()` reads the endpoint's id. Borrows the
/// endpoint from the router (no reference count is touched); clone the endpoint to keep it.
#[derive(Clone)]
pub struct Attempt<'r, K> {
    endpoint: &'r Endpoint<K>,
    number: u32,
    generation: u64,
    failed: Vec<&'r Endpoint<K>>,
}

impl<K: EndpointId> fmt::Debug for Attempt<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("endpoint", self.endpoint.id())
            .field("number", &self.number)
            .field("generation", &self.generation)
            .field(
                "failed",
                &self.failed.iter().map(|e| e.id()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<'r, K> Attempt<'r, K> {
    pub(super) fn new(
        endpoint: &'r Endpoint<K>,
        number: u32,
        generation: u64,
        failed: Vec<&'r Endpoint<K>>,
    ) -> Self {
        Attempt {
            endpoint,
            number,
            generation,
            failed,
        }
    }

    /// The endpoint this attempt goes to.
    pub fn endpoint(&self) -> &'r Endpoint<K> {
        self.endpoint
    }

    /// The attempt number: 1 for the first.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// `true` for the first attempt of the call.
    pub fn is_first(&self) -> bool {
        self.number == 1
    }

    /// The router's generation when this attempt's endpoint was picked.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The endpoints where an earlier attempt of this call failed in a way that counts
    /// against them (a transient error or a timeout), each once, in order.
    pub fn failed(&self) -> &[&'r Endpoint<K>] {
        &self.failed
    }
}

impl<K> Deref for Attempt<'_, K> {
    type Target = Endpoint<K>;

    fn deref(&self) -> &Endpoint<K> {
        self.endpoint
    }
}

/// Where the attempts of a routed call go.
#[non_exhaustive]
pub enum Target<'a, K> {
    /// Every attempt to the router's active endpoint at that moment (writes): a retry goes
    /// elsewhere only once the router has failed over.
    Active,
    /// The active endpoint; once it has failed in this call, the most preferred available
    /// primary candidate that has not failed in this call yet (DynamoDB's any-healthy
    /// writes). When every candidate has failed, the active endpoint again.
    ActiveThenUntried,
    /// The endpoint the read policy chooses (the active one when it chooses none). A retry
    /// whose choice already failed in this call goes to an available replica that has not,
    /// else to the primary if it has not, else to the policy's choice again.
    Read(&'a dyn ReadPolicy<K>),
}

impl<K> Clone for Target<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Target<'_, K> {}

impl<K> fmt::Debug for Target<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Active => "Active",
            Target::ActiveThenUntried => "ActiveThenUntried",
            Target::Read(_) => "Read",
        })
    }
}

impl<'a, K: EndpointId> Target<'a, K> {
    /// The endpoint of a first attempt.
    #[inline]
    pub(super) fn first<'r>(&self, router: &'r Router<K>) -> &'r Endpoint<K> {
        match self {
            Target::Active | Target::ActiveThenUntried => router.active().endpoint(),
            Target::Read(p) => router
                .read_target(*p)
                .unwrap_or_else(|| router.active().endpoint()),
        }
    }

    /// The endpoint of a retry, given the endpoints that already failed in this call.
    pub(super) fn next<'r>(
        &self,
        router: &'r Router<K>,
        failed: &[&'r Endpoint<K>],
    ) -> &'r Endpoint<K> {
        let has_failed = |ep: &Endpoint<K>| failed.iter().any(|f| f.ptr_eq(ep));
        let chosen = self.first(router);
        match self {
            Target::Active => chosen,
            _ if !has_failed(chosen) => chosen,
            Target::ActiveThenUntried => router
                .best_candidate(|ep| !has_failed(ep))
                .unwrap_or(chosen),
            Target::Read(_) => {
                let active = router.active();
                let candidates = router.read_candidates(&active);
                let replica = candidates.replicas().find(|ep| !has_failed(ep));
                replica
                    .or_else(|| candidates.primary().filter(|ep| !has_failed(ep)))
                    .unwrap_or(chosen)
            }
        }
    }
}

/// A routed call that did not succeed: the executor's [`RetryError`] (the last error, the
/// attempt count, why it stopped), the endpoint of the last failed attempt, and whether any
/// attempt may have executed.
///
/// `Display` says why it stopped and where; the caller's error is the
/// [`source`](StdError::source).
pub struct RouteError<K, E> {
    error: RetryError<E>,
    endpoint: Option<K>,
    may_have_executed: bool,
}

impl<K, E> RouteError<K, E> {
    pub(super) fn new(error: RetryError<E>, endpoint: Option<K>, may_have_executed: bool) -> Self {
        RouteError {
            error,
            endpoint,
            may_have_executed,
        }
    }

    /// The endpoint of the last attempt that failed or was cut; `None` when the caller's
    /// deadline ran out before any attempt ended.
    pub fn endpoint(&self) -> Option<&K> {
        self.endpoint.as_ref()
    }

    /// `true` when any attempt of the call may have executed (it failed in a way that does
    /// not prove it did not run, or it was cut by a timeout while in flight).
    pub fn may_have_executed(&self) -> bool {
        self.may_have_executed
    }

    /// Why the executor stopped.
    pub fn reason(&self) -> StopReason {
        self.error.reason()
    }

    /// How many attempts were started, the first included.
    pub fn attempts(&self) -> u32 {
        self.error.attempts()
    }

    /// The most recent error the operation returned (see [`RetryError::last_error`]).
    pub fn last_error(&self) -> Option<&E> {
        self.error.last_error()
    }

    /// Takes the most recent error the operation returned.
    pub fn into_last_error(self) -> Option<E> {
        self.error.into_last_error()
    }

    /// How the last failure was classified.
    pub fn classification(&self) -> Option<Classification> {
        self.error.classification()
    }

    /// `true` when the last attempt ended by a timeout rather than an error of the operation.
    pub fn timed_out(&self) -> bool {
        self.error.timed_out()
    }

    /// The executor's error.
    pub fn retry_error(&self) -> &RetryError<E> {
        &self.error
    }

    /// Takes the executor's error.
    pub fn into_retry_error(self) -> RetryError<E> {
        self.error
    }
}

impl<K: fmt::Debug, E: fmt::Debug> fmt::Debug for RouteError<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteError")
            .field("error", &self.error)
            .field("endpoint", &self.endpoint)
            .field("may_have_executed", &self.may_have_executed)
            .finish()
    }
}

impl<K: fmt::Debug, E> fmt::Display for RouteError<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)?;
        if let Some(ep) = &self.endpoint {
            write!(f, " (last on {ep:?})")?;
        }
        Ok(())
    }
}

impl<K: fmt::Debug, E: StdError + 'static> StdError for RouteError<K, E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

use std::fmt;
use std::future::Future;

use tokio::time::Instant;

use super::read::ReadPolicy;
use super::router::Router;
use crate::error::{ByClassify, Classification, Classifier, Classify};
use crate::health::{Endpoint, EndpointId};
use crate::retry::{Backoff, OnRetry, RetryBudget, RetryError, RetryPolicy};

/// One call of an operation through the router and the retry executor: made by
/// [`Router::call`], started by [`run`](Self::run).
///
/// Each attempt goes to the endpoint the router picks at that moment (the active one, or the
/// [`read`](Self::read) policy's choice), and its outcome is recorded on that endpoint: a
/// success with its latency, a failure through the classifier, and an attempt cut by the
/// policy's attempt timeout or deadline as a transient failure. A transient failure is retried
/// per the [`RetryPolicy`], on whatever the router picks next, so a failover inside one call is
/// invisible to the caller.
#[must_use = "a routed call does nothing until `run` is awaited"]
pub struct RoutedCall<'a, K, B, F, C = ByClassify, H = ()> {
    router: &'a Router<K>,
    policy: &'a RetryPolicy<B>,
    op: F,
    classifier: C,
    hook: H,
    budget: Option<&'a RetryBudget>,
    idempotent: bool,
    read: Option<&'a dyn ReadPolicy<K>>,
}

impl<K: EndpointId, B: fmt::Debug, F, C, H> fmt::Debug for RoutedCall<'_, K, B, F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedCall")
            .field("router", self.router)
            .field("policy", self.policy)
            .field("idempotent", &self.idempotent)
            .field("read", &self.read.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> Router<K> {
    /// Prepares a call of `op` through this router with `policy`: set idempotency, a read
    /// policy, a budget, a classifier or a hook on the returned [`RoutedCall`], then
    /// [`run`](RoutedCall::run) it.
    ///
    /// `op` receives the endpoint of each attempt (a cheap clone of its handle) and returns the
    /// attempt's future.
    pub fn call<'a, B, F>(&'a self, policy: &'a RetryPolicy<B>, op: F) -> RoutedCall<'a, K, B, F> {
        RoutedCall {
            router: self,
            policy,
            op,
            classifier: ByClassify,
            hook: (),
            budget: None,
            idempotent: false,
            read: None,
        }
    }

    /// Runs a write (or any call for the active endpoint) with `policy`; errors classified by
    /// their [`Classify`] implementation. Shorthand for
    /// `self.call(policy, op).idempotent(idempotent).run()`.
    ///
    /// # Errors
    ///
    /// The executor's [`RetryError`] with the last error.
    pub async fn run<B, F, Fut, T, E>(
        &self,
        policy: &RetryPolicy<B>,
        idempotent: bool,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        B: Backoff,
        F: FnMut(Endpoint<K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        self.call(policy, op).idempotent(idempotent).run().await
    }

    /// Runs a read on the endpoint `read` picks for each attempt (idempotent). Shorthand for
    /// `self.call(policy, op).read(read).idempotent(true).run()`.
    ///
    /// # Errors
    ///
    /// The executor's [`RetryError`] with the last error.
    pub async fn run_read<B, P, F, Fut, T, E>(
        &self,
        policy: &RetryPolicy<B>,
        read: &P,
        op: F,
    ) -> Result<T, RetryError<E>>
    where
        B: Backoff,
        P: ReadPolicy<K>,
        F: FnMut(Endpoint<K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        self.call(policy, op)
            .read(read)
            .idempotent(true)
            .run()
            .await
    }
}

impl<'a, K: EndpointId, B, F, C, H> RoutedCall<'a, K, B, F, C, H> {
    /// Declares whether running the operation twice is harmless (default `false`); see
    /// [`Retry::idempotent`](crate::retry::Retry::idempotent).
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Sends each attempt to the endpoint `policy` chooses instead of the active one. When the
    /// policy finds none (e.g. [`ReplicaOnly`](super::ReplicaOnly) with every replica down),
    /// the attempt goes to the active endpoint: the runner never refuses.
    pub fn read(mut self, policy: &'a dyn ReadPolicy<K>) -> Self {
        self.read = Some(policy);
        self
    }

    /// Draws retries from a shared [`RetryBudget`] (default: none).
    pub fn budget(mut self, budget: &'a RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Classifies errors with `classifier` (for the executor and for the endpoint's health)
    /// instead of their [`Classify`] implementation.
    pub fn classify_with<C2>(self, classifier: C2) -> RoutedCall<'a, K, B, F, C2, H> {
        RoutedCall {
            router: self.router,
            policy: self.policy,
            op: self.op,
            classifier,
            hook: self.hook,
            budget: self.budget,
            idempotent: self.idempotent,
            read: self.read,
        }
    }

    /// Calls `hook` before every retry (see [`Retry::on_retry`](crate::retry::Retry::on_retry)).
    pub fn on_retry<H2>(self, hook: H2) -> RoutedCall<'a, K, B, F, C, H2> {
        RoutedCall {
            router: self.router,
            policy: self.policy,
            op: self.op,
            classifier: self.classifier,
            hook,
            budget: self.budget,
            idempotent: self.idempotent,
            read: self.read,
        }
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// The executor's [`RetryError`] with the last error, the attempt count and the reason.
    pub async fn run<T, E, Fut>(self) -> Result<T, RetryError<E>>
    where
        B: Backoff,
        F: FnMut(Endpoint<K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classifier<E>,
        H: OnRetry<E>,
    {
        let RoutedCall {
            router,
            policy,
            mut op,
            classifier,
            hook,
            budget,
            idempotent,
            read,
        } = self;
        let attempt_timeout = policy.attempt_timeout();
        // Read before the executor reads its own clock, so this deadline is never later than
        // the executor's.
        let deadline_at = policy.deadline().map(|d| Instant::now() + d);
        let timed = attempt_timeout.is_some() || deadline_at.is_some();
        let classifier = &classifier;
        let attempt = || {
            let endpoint = match read {
                Some(p) => router
                    .read_target(p)
                    .unwrap_or_else(|| router.active().endpoint())
                    .clone(),
                None => router.active().endpoint().clone(),
            };
            // Read before the executor starts its timer, so `cut_at` is never later than it.
            let start = Instant::now();
            let cut_at = if timed {
                match (attempt_timeout.map(|t| start + t), deadline_at) {
                    (Some(a), Some(d)) => Some(a.min(d)),
                    (a, d) => a.or(d),
                }
            } else {
                None
            };
            let fut = op(endpoint.clone());
            async move {
                let mut guard = CutGuard {
                    endpoint: &endpoint,
                    cut_at,
                };
                let result = fut.await;
                guard.cut_at = None;
                drop(guard);
                match &result {
                    Ok(_) => endpoint.record_success_with_latency(start.elapsed()),
                    Err(e) => endpoint.record_failure(classifier.classify(e)),
                }
                result
            }
        };
        let mut retry = policy
            .retry(attempt)
            .idempotent(idempotent)
            .classify_with(ByRef(classifier))
            .with_hook(hook);
        if let Some(b) = budget {
            retry = retry.budget(b);
        }
        retry.run().await
    }
}

/// Records a timeout on the endpoint when an attempt is dropped at or after the time the
/// executor cuts it (attempt timeout or deadline). Dropped earlier, the caller gave up: nothing
/// is recorded.
struct CutGuard<'a, K: EndpointId> {
    endpoint: &'a Endpoint<K>,
    cut_at: Option<Instant>,
}

impl<K: EndpointId> Drop for CutGuard<'_, K> {
    fn drop(&mut self) {
        if let Some(at) = self.cut_at
            && Instant::now() >= at
        {
            self.endpoint.record_failure(Classification::transient());
        }
    }
}

struct ByRef<'c, C>(&'c C);

impl<E, C: Classifier<E>> Classifier<E> for ByRef<'_, C> {
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        self.0.classify(error)
    }
}

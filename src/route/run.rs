//! The operation runner: the one attempt loop of the crate. Every adapter runs its calls
//! through it, so what it does (pick an endpoint, bound the attempt, record the outcome, retry
//! elsewhere) exists once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{Attempt, RouteError, Target};
use super::router::Router;
use crate::error::{ByClassify, Classification, Classifier, Classify, Execution};
use crate::health::{Endpoint, EndpointId};
use crate::observe::{Observer, RecentFailures};
use crate::retry::{Backoff, OnRetry, RetryBudget, RetryPolicy};

/// One call of an operation through the router and the retry executor: made by
/// [`Router::call`], started by [`run`](Self::run).
///
/// Each attempt goes to the endpoint the [`Target`] picks at that moment (by default the
/// active one), and its outcome is recorded on that endpoint: a success with its latency, a
/// failure through the classifier, and an attempt cut by the policy's attempt timeout or
/// deadline as a transient failure. A transient failure is retried per the [`RetryPolicy`], on
/// whatever the target picks next, so a failover inside one call is invisible to the caller.
#[must_use = "a routed call does nothing until `run` is awaited"]
pub struct RoutedCall<'a, K, B, F, C = ByClassify, H = ()> {
    router: &'a Router<K>,
    policy: &'a RetryPolicy<B>,
    op: F,
    classifier: C,
    hook: H,
    budget: Option<&'a RetryBudget>,
    idempotent: bool,
    target: Target<'a, K>,
    bound: Option<Duration>,
}

impl<K: EndpointId, B: fmt::Debug, F, C, H> fmt::Debug for RoutedCall<'_, K, B, F, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedCall")
            .field("router", self.router)
            .field("policy", self.policy)
            .field("idempotent", &self.idempotent)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> Router<K> {
    /// Prepares a call of `op` through this router with `policy`: set idempotency, a
    /// [`Target`], a budget, a classifier or a hook on the returned [`RoutedCall`], then
    /// [`run`](RoutedCall::run) it.
    ///
    /// `op` receives each attempt's [`Attempt`] (the endpoint, the attempt number, the
    /// endpoints that already failed in this call) and returns the attempt's future.
    pub fn call<'a, B, F, Fut>(
        &'a self,
        policy: &'a RetryPolicy<B>,
        op: F,
    ) -> RoutedCall<'a, K, B, F>
    where
        F: FnMut(Attempt<'a, K>) -> Fut,
        Fut: Future,
    {
        RoutedCall {
            router: self,
            policy,
            op,
            classifier: ByClassify,
            hook: (),
            budget: None,
            idempotent: false,
            target: Target::Active,
            bound: None,
        }
    }

    /// Runs a write (or any call for the active endpoint) with `policy`, not idempotent;
    /// errors classified by their [`Classify`] implementation. Shorthand for
    /// `self.call(policy, op).run()`.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] with the last error.
    pub async fn run<'a, B, F, Fut, T, E>(
        &'a self,
        policy: &'a RetryPolicy<B>,
        op: F,
    ) -> Result<T, RouteError<K, E>>
    where
        B: Backoff,
        F: FnMut(Attempt<'a, K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        self.call(policy, op).run().await
    }

    /// [`run`](Self::run) for an operation that is harmless to run twice. Shorthand for
    /// `self.call(policy, op).idempotent(true).run()`.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] with the last error.
    pub async fn run_idempotent<'a, B, F, Fut, T, E>(
        &'a self,
        policy: &'a RetryPolicy<B>,
        op: F,
    ) -> Result<T, RouteError<K, E>>
    where
        B: Backoff,
        F: FnMut(Attempt<'a, K>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify,
    {
        self.call(policy, op).idempotent(true).run().await
    }

    /// Runs a read on the endpoint `read` picks for each attempt (idempotent). Shorthand for
    /// `self.call(policy, op).read(read).idempotent(true).run()`.
    ///
    /// # Errors
    ///
    /// A [`RouteError`] with the last error.
    pub async fn run_read<'a, B, P, F, Fut, T, E>(
        &'a self,
        policy: &'a RetryPolicy<B>,
        read: &'a P,
        op: F,
    ) -> Result<T, RouteError<K, E>>
    where
        B: Backoff,
        P: super::ReadPolicy<K>,
        F: FnMut(Attempt<'a, K>) -> Fut,
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

    /// Where each attempt goes (default [`Target::Active`]).
    pub fn target(mut self, target: Target<'a, K>) -> Self {
        self.target = target;
        self
    }

    /// Shorthand for [`target`](Self::target)`(Target::Read(policy))`.
    pub fn read(self, policy: &'a dyn super::ReadPolicy<K>) -> Self {
        self.target(Target::Read(policy))
    }

    /// Draws retries from a shared [`RetryBudget`] (default: none).
    pub fn budget(mut self, budget: &'a RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Declares that every attempt ends by itself within `bound` (the adapter's own response
    /// timeout), so the executor builds no timer for attempts whose limit is at least that;
    /// see [`Retry::bounded_by`](crate::retry::Retry::bounded_by). The runner still records an
    /// attempt cut by the policy's limit.
    pub fn bounded_by(mut self, bound: Duration) -> Self {
        self.bound = Some(bound);
        self
    }

    /// [`budget`](Self::budget) when `budget` is `Some`.
    pub fn maybe_budget(mut self, budget: Option<&'a RetryBudget>) -> Self {
        self.budget = budget;
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
            target: self.target,
            bound: self.bound,
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
            target: self.target,
            bound: self.bound,
        }
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// A [`RouteError`]: the executor's [`RetryError`](crate::retry::RetryError) (last error,
    /// attempt count, reason), the endpoint of the last attempt and whether any attempt may
    /// have executed.
    pub async fn run<T, E, Fut>(self) -> Result<T, RouteError<K, E>>
    where
        B: Backoff,
        F: FnMut(Attempt<'a, K>) -> Fut,
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
            target,
            bound,
        } = self;
        let attempt_timeout = policy.attempt_timeout();
        let deadline = policy.deadline();
        let timed = attempt_timeout.is_some() || deadline.is_some();
        let classifier = &classifier;
        let call = CallState::new(router.observer());
        let state = &call;
        let mut number = 0u32;
        // The call's one clock reading before its first attempt: that attempt's start, and
        // (handed to the executor) where the deadline and the first attempt's limit count from.
        let first_start = Instant::now();
        let attempt = || {
            number += 1;
            let (endpoint, failed) = if number == 1 {
                // The first attempt: no failure to avoid, no lock, no allocation.
                (target.first(router), Vec::new())
            } else {
                let failed = state.failed_snapshot();
                (target.next(router, &failed), failed)
            };
            let start = if number == 1 {
                first_start
            } else {
                Instant::now()
            };
            // When the executor cuts this attempt, as a time after its start: the attempt
            // timeout or what is left of the deadline, whichever is tighter.
            let cut_after = if timed {
                let left = match deadline {
                    Some(d) if number == 1 => Some(d),
                    Some(d) => Some(d.saturating_sub(start.saturating_duration_since(first_start))),
                    None => None,
                };
                match (attempt_timeout, left) {
                    (Some(t), Some(l)) => Some(t.min(l)),
                    (t, l) => t.or(l),
                }
            } else {
                None
            };
            // `open`: a switch waits for its first success (same load as the generation).
            let (generation, open) = router.generation_and_open();
            Recorded {
                fut: op(Attempt::new(endpoint, number, generation, failed)),
                guard: CutGuard {
                    endpoint,
                    start,
                    cut_after,
                    state,
                },
                router,
                classifier,
                generation,
                open,
            }
        };
        let mut retry = policy
            .retry(attempt)
            .started_at(first_start)
            .idempotent(idempotent)
            .classify_with(ByRef(classifier))
            .with_hook(hook);
        if let Some(b) = bound {
            retry = retry.bounded_by(b);
        }
        if let Some(b) = budget {
            retry = retry.budget(b);
        }
        let result = retry.run().await;
        result.map_err(|e| {
            let (last, may_have_executed) = call.finish();
            if e.reason() == crate::retry::StopReason::BudgetExhausted {
                let errors = e
                    .classification()
                    .map_or_else(RecentFailures::default, |c| {
                        RecentFailures::one(c, e.timed_out())
                    });
                router
                    .observer()
                    .budget_exhausted(last.clone(), e.attempts(), errors);
            }
            RouteError::new(e, last, may_have_executed)
        })
    }
}

/// What the attempts of one call share: the endpoints that failed, the last one, and whether
/// anything may have run. Touched only on failures.
struct CallState<'r, K> {
    failures: Mutex<Failures<'r, K>>,
    may_have_executed: AtomicBool,
    observer: &'r Observer<K>,
}

struct Failures<'r, K> {
    /// Endpoints where an attempt of this call failed in a way that counts against them
    /// (transient, or cut by a timeout), each once, in order.
    failed: Vec<&'r Endpoint<K>>,
    /// The endpoint of the last attempt that failed or was cut.
    last: Option<&'r Endpoint<K>>,
}

impl<'r, K> CallState<'r, K> {
    fn new(observer: &'r Observer<K>) -> Self {
        CallState {
            failures: Mutex::new(Failures {
                failed: Vec::new(),
                last: None,
            }),
            may_have_executed: AtomicBool::new(false),
            observer,
        }
    }
}

impl<'r, K: EndpointId> CallState<'r, K> {
    /// Records a failed attempt on `endpoint` (its health and this call's book-keeping).
    fn failed(&self, endpoint: &'r Endpoint<K>, c: Classification, start: Instant, cut: bool) {
        if cut {
            // Slow is not dead: with a heartbeat, its verdict counts instead.
            endpoint.record_timeout_at(Some(start));
        } else {
            endpoint.record_failure_at(c, Some(start), false);
        }
        self.observer
            .metrics
            .attempt_failed(RecentFailures::one(c, cut).outcome());
        if c.execution() == Execution::MayHaveExecuted {
            self.may_have_executed.store(true, Ordering::Relaxed);
        }
        let mut f = crate::sync::lock(&self.failures);
        if c.counts_against_endpoint() && !f.failed.iter().any(|e| e.ptr_eq(endpoint)) {
            f.failed.push(endpoint);
        }
        f.last = Some(endpoint);
    }

    fn failed_snapshot(&self) -> Vec<&'r Endpoint<K>> {
        crate::sync::lock(&self.failures).failed.clone()
    }

    fn finish(&self) -> (Option<K>, bool) {
        let f = crate::sync::lock(&self.failures);
        (
            f.last.as_ref().map(|e| e.id().clone()),
            self.may_have_executed.load(Ordering::Relaxed),
        )
    }
}

/// Records a timeout on the endpoint when an attempt is dropped at or after the time the
/// executor cuts it (attempt timeout or deadline): a cut attempt was in flight, so it may have
/// executed. Dropped earlier, the caller gave up: nothing is recorded.
struct CutGuard<'s, 'r, K: EndpointId> {
    endpoint: &'r Endpoint<K>,
    start: Instant,
    /// How long after `start` the executor cuts the attempt (`None`: never; or it ended).
    cut_after: Option<Duration>,
    state: &'s CallState<'r, K>,
}

impl<K: EndpointId> Drop for CutGuard<'_, '_, K> {
    fn drop(&mut self) {
        if let Some(after) = self.cut_after
            && self.start.elapsed() >= after
        {
            self.state
                .failed(self.endpoint, Classification::transient(), self.start, true);
        }
    }
}

pin_project_lite::pin_project! {
    /// One attempt's future with its book-keeping, written by hand so that the operation's
    /// future is stored once (an `async` block would hold it both as a capture and as the
    /// awaited value): on completion the outcome is recorded on the endpoint (a success with
    /// its latency, a failure through the classifier); dropped unfinished at or after its cut
    /// time, the guard records the cut.
    struct Recorded<'s, 'r, K: EndpointId, Fut, C> {
        #[pin]
        fut: Fut,
        guard: CutGuard<'s, 'r, K>,
        router: &'r Router<K>,
        classifier: &'s C,
        generation: u64,
        open: bool,
    }
}

impl<K: EndpointId, Fut, C, T, E> Future for Recorded<'_, '_, K, Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    C: Classifier<E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        let guard = this.guard;
        // It ended: not a cut, whenever it is dropped.
        guard.cut_after = None;
        let (endpoint, start) = (guard.endpoint, guard.start);
        match &result {
            Ok(_) => {
                let latency = start.elapsed();
                endpoint.record_success_with_latency(latency);
                this.router.observer().metrics.attempt_ok();
                if *this.open {
                    this.router
                        .first_success(endpoint, *this.generation, start + latency);
                }
            }
            Err(e) => guard
                .state
                .failed(endpoint, this.classifier.classify(e), start, false),
        }
        Poll::Ready(result)
    }
}

struct ByRef<'c, C>(&'c C);

impl<E, C: Classifier<E>> Classifier<E> for ByRef<'_, C> {
    #[inline]
    fn classify(&self, error: &E) -> Classification {
        self.0.classify(error)
    }
}

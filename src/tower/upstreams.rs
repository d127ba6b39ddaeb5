//! [`Upstreams`]: one service over several upstreams, with failover by the router.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use tower_service::Service;

use super::attempt::{Called, Either, Failure, finish, fresh};
use super::builder::UpstreamsBuilder;
use super::error::{Error, ErrorKind};
use super::future::ResponseFuture;
use super::policy::{ErrorPolicy, Policy};
use super::replay::{ByClone, Replay};
use crate::health::{Endpoint, EndpointId, HealthTracker};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::route::{Router, Target};

/// A service over several upstreams (a primary API and its fallback, the same client pointed
/// at two base URLs): each call goes to the router's active upstream, a retry after a failure
/// goes to the most preferred upstream not yet failed in that call, every outcome is recorded
/// on its upstream's health, and the router fails over and back (with hysteresis) from that
/// health. Built by [`Upstreams::builder`].
///
/// Readiness follows the upstream the next call goes to: `poll_ready` polls the active
/// upstream's service (a clone held until `call`), so its back-pressure is the caller's; a
/// retry on another upstream waits for that one to be ready inside the call. A service that
/// fails in `poll_ready` counts as a failure of its upstream (not executed) and the error is
/// returned. An exhausted budget never makes the service unready.
///
/// Cheap to clone: clones share the router, the health and the upstreams.
pub struct Upstreams<K, S, P = ErrorPolicy, R = ByClone> {
    shared: Arc<Shared<K, S, P, R>>,
    ready: Option<(usize, S)>,
}

pub(super) struct Shared<K, S, P, R> {
    pub(super) router: Router<K>,
    /// In the router's order of endpoints.
    pub(super) upstreams: Vec<(Endpoint<K>, S)>,
    pub(super) retry: RetryPolicy,
    /// `retry` with one attempt: for requests the replay cannot copy.
    pub(super) once: RetryPolicy,
    pub(super) budget: Option<RetryBudget>,
    pub(super) policy: P,
    pub(super) replay: R,
}

impl<K: EndpointId, S, P, R> Shared<K, S, P, R> {
    fn index_of(&self, endpoint: &Endpoint<K>) -> usize {
        self.upstreams
            .iter()
            .position(|(ep, _)| ep.ptr_eq(endpoint))
            .unwrap_or(0)
    }
}

impl<K, S, P, R> Upstreams<K, S, P, R> {
    pub(super) fn from_shared(shared: Shared<K, S, P, R>) -> Self {
        Upstreams {
            shared: Arc::new(shared),
            ready: None,
        }
    }
}

impl<K: EndpointId, S> Upstreams<K, S> {
    /// A builder with no upstream and the documented defaults.
    pub fn builder() -> UpstreamsBuilder<K, S> {
        UpstreamsBuilder::new()
    }
}

impl<K: EndpointId, S, P, R> Upstreams<K, S, P, R> {
    /// The router over the upstreams: subscribe to its switches.
    pub fn router(&self) -> &Router<K> {
        &self.shared.router
    }

    /// The health tracker of the upstreams.
    pub fn tracker(&self) -> &HealthTracker<K> {
        self.shared.router.tracker()
    }

    /// The upstream the next call goes to (re-evaluates the router).
    pub fn active(&self) -> &K {
        self.shared.router.active().id()
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.shared.retry
    }

    /// The shared budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.budget.as_ref()
    }
}

impl<K, S, P, R> Clone for Upstreams<K, S, P, R> {
    /// A handle on the same upstreams, not ready (poll it ready before calling).
    fn clone(&self) -> Self {
        Upstreams {
            shared: Arc::clone(&self.shared),
            ready: None,
        }
    }
}

impl<K: EndpointId, S, P, R> fmt::Debug for Upstreams<K, S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstreams")
            .field("router", &self.shared.router)
            .field("retry", &self.shared.retry)
            .field("budget", &self.shared.budget)
            .field("ready", &self.ready.as_ref().map(|(i, _)| i))
            .finish_non_exhaustive()
    }
}

impl<K, S, P, R, Req> Service<Req> for Upstreams<K, S, P, R>
where
    K: EndpointId + fmt::Display,
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    P: Policy<Req, S::Response, S::Error> + Send + Sync + 'static,
    R: Replay<Req> + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Response, Error<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let shared = &*self.shared;
        let active = shared.router.active().endpoint();
        let i = shared.index_of(active);
        if self.ready.as_ref().is_some_and(|(j, _)| *j != i) {
            // The router moved since this handle got ready: release that readiness.
            self.ready = None;
        }
        let (_, svc) = self
            .ready
            .get_or_insert_with(|| (i, shared.upstreams[i].1.clone()));
        match svc.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.ready = None;
                active.record_failure(shared.policy.classify_error(&e).not_executed());
                let error =
                    Error::new(ErrorKind::NotReady, Some(e)).on(Some(active.id().to_string()));
                Poll::Ready(Err(error))
            }
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        let ready = self.ready.take();
        let idempotent = shared.policy.is_idempotent(&request);
        let retries = shared.retry.max_attempts() > 1;
        let template = if retries {
            shared.replay.replay(&request)
        } else {
            None
        };
        ResponseFuture::new(run(shared, ready, request, template, idempotent, retries))
    }
}

/// One call through the router's runner: the first attempt uses the readied service when the
/// runner picks its upstream, every other attempt a fresh clone of the picked upstream's.
async fn run<K, S, P, R, Req>(
    shared: Arc<Shared<K, S, P, R>>,
    ready: Option<(usize, S)>,
    request: Req,
    template: Option<Req>,
    idempotent: bool,
    retries: bool,
) -> Result<S::Response, Error<S::Error>>
where
    K: EndpointId + fmt::Display,
    S: Service<Req> + Clone,
    P: Policy<Req, S::Response, S::Error>,
    R: Replay<Req>,
{
    let shared = &*shared;
    let sent_once = retries && template.is_none();
    let retry = if sent_once {
        &shared.once
    } else {
        &shared.retry
    };
    // The runner tracks execution itself; attempts still need somewhere to say it.
    let executed = AtomicBool::new(false);
    let executed = &executed;
    let policy = &shared.policy;
    let mut first = Some((ready, request));
    let result = shared
        .router
        .call(retry, move |at| {
            let i = shared.index_of(at.endpoint());
            match first.take() {
                Some((Some((j, mut svc)), req)) if j == i => Either::First {
                    fut: Called::new(svc.call(req), policy, executed),
                },
                first_or_retry => {
                    let req = match first_or_retry {
                        Some((_, req)) => Some(req),
                        None => template.as_ref().and_then(|t| shared.replay.replay(t)),
                    };
                    let svc = Some(shared.upstreams[i].1.clone());
                    Either::Retry {
                        fut: fresh(svc, req, policy, executed),
                    }
                }
            }
        })
        .idempotent(idempotent)
        .target(Target::ActiveThenUntried)
        .maybe_budget(shared.budget.as_ref())
        .classify_with(|f: &Failure<S::Response, S::Error>| f.classify::<Req, P>(policy))
        .run()
        .await;
    match result {
        Ok(res) => Ok(res),
        Err(e) => {
            let upstream = e.endpoint().map(|k| k.to_string());
            let may_have_executed = e.may_have_executed();
            finish(e.into_retry_error(), upstream, may_have_executed, sent_once)
        }
    }
}

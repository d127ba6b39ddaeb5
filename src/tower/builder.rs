//! [`UpstreamsBuilder`]: the upstreams, their order, and the knobs of the engine under them.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::policy::ErrorPolicy;
use super::replay::ByClone;
use super::upstreams::{Shared, Upstreams};
use crate::error::ConfigError;
use crate::health::{EndpointId, HealthTracker, HealthTrackerBuilder, ProbeResult};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::route::{Failback, Router};

type Customize<K> = Box<dyn FnOnce(HealthTrackerBuilder<K>) -> HealthTrackerBuilder<K> + Send>;
type MakeProbe<K, S> =
    Box<dyn FnOnce(&[(K, S)], HealthTrackerBuilder<K>) -> HealthTrackerBuilder<K> + Send>;

/// Builder of [`Upstreams`]. Upstreams are preferred in the order they are added.
///
/// | setting | default |
/// |---|---|
/// | [`retry_policy`](Self::retry_policy) | 3 attempts, 10 s deadline, otherwise [`RetryPolicy`]'s defaults |
/// | [`budget`](Self::budget) | none |
/// | [`policy`](Self::policy) | [`ErrorPolicy`] |
/// | [`replay`](Self::replay) | [`ByClone`] |
/// | [`health`](Self::health) | the [`HealthTrackerBuilder`] defaults (3 failures in a row eject for 1 s, growing) |
/// | [`probe`](Self::probe) | none: an ejected upstream comes back only through a probe, so set one to fail back |
/// | [`failback`](Self::failback) | [`Failback::After`] 30 s up |
///
/// ```
/// use std::time::Duration;
/// use switchover::route::Failback;
/// use switchover::tower::{ErrorPolicy, Upstreams};
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let primary = tower::service_fn(|_: ()| async {
///     Err::<&str, _>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
/// });
/// let fallback = tower::service_fn(|_: ()| async { Ok::<_, std::io::Error>("fallback") });
/// let mut api = Upstreams::builder()
///     .upstream("primary", tower::util::Either::Left(primary))
///     .upstream("fallback", tower::util::Either::Right(fallback))
///     .policy(ErrorPolicy::new())
///     .failback(Failback::After(Duration::from_secs(5)))
///     .build()?;
/// // Refused by the primary, served by the fallback within the same call.
/// assert_eq!(api.ready().await?.call(()).await?, "fallback");
/// # Ok(()) }
/// ```
#[must_use]
pub struct UpstreamsBuilder<K, S, P = ErrorPolicy, R = ByClone> {
    upstreams: Vec<(K, S)>,
    retry: Option<RetryPolicy>,
    budget: Option<RetryBudget>,
    policy: P,
    replay: R,
    health: Option<Customize<K>>,
    probe: Option<MakeProbe<K, S>>,
    failback: Failback,
}

impl<K: EndpointId, S, P: fmt::Debug, R: fmt::Debug> fmt::Debug for UpstreamsBuilder<K, S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamsBuilder")
            .field(
                "upstreams",
                &self.upstreams.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("policy", &self.policy)
            .field("replay", &self.replay)
            .field("probe", &self.probe.is_some())
            .field("failback", &self.failback)
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId, S> UpstreamsBuilder<K, S> {
    pub(super) fn new() -> Self {
        UpstreamsBuilder {
            upstreams: Vec::new(),
            retry: None,
            budget: None,
            policy: ErrorPolicy::new(),
            replay: ByClone,
            health: None,
            probe: None,
            failback: Failback::default(),
        }
    }
}

impl<K: EndpointId, S, P, R> UpstreamsBuilder<K, S, P, R> {
    /// Adds an upstream, less preferred than those added before it.
    pub fn upstream(mut self, id: K, service: S) -> Self {
        self.upstreams.push((id, service));
        self
    }

    /// How calls are retried across the upstreams (default: 3 attempts, 10 s deadline, and
    /// [`RetryPolicy`]'s other defaults).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// A shared retry budget every retry draws from (default: none).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Tunes the health tracker of the upstreams, e.g.
    /// `.health(|h| h.failure_threshold(2).ejection_base(Duration::from_millis(500)))`.
    pub fn health(
        mut self,
        customize: impl FnOnce(HealthTrackerBuilder<K>) -> HealthTrackerBuilder<K> + Send + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// When to move back to a more preferred upstream (default [`Failback::After`] 30 s: it
    /// must have stayed up that long).
    pub fn failback(mut self, failback: Failback) -> Self {
        self.failback = failback;
        self
    }

    /// Reads requests and outcomes with `policy` (default [`ErrorPolicy`]).
    pub fn policy<P2>(self, policy: P2) -> UpstreamsBuilder<K, S, P2, R> {
        UpstreamsBuilder {
            upstreams: self.upstreams,
            retry: self.retry,
            budget: self.budget,
            policy,
            replay: self.replay,
            health: self.health,
            probe: self.probe,
            failback: self.failback,
        }
    }

    /// Copies requests for retries with `replay` (default [`ByClone`]).
    pub fn replay<R2>(self, replay: R2) -> UpstreamsBuilder<K, S, P, R2> {
        UpstreamsBuilder {
            upstreams: self.upstreams,
            retry: self.retry,
            budget: self.budget,
            policy: self.policy,
            replay,
            health: self.health,
            probe: self.probe,
            failback: self.failback,
        }
    }

    /// Probes upstreams that are down (and, with a heartbeat, those that are up) by sending
    /// `request()` through each one's own service: up when it answers with a response
    /// `is_up` accepts, down on an error, a refused response or no answer within the tracker's
    /// probe timeout (see [`health`](Self::health) for the interval and timeout). Without a
    /// probe an ejected upstream never comes back, so there is no failback.
    ///
    /// For HTTP: `.probe(|| Request::get("/health").body(Empty::new()).unwrap(), |r| r.status().is_success())`.
    pub fn probe<Req, F, U>(mut self, request: F, is_up: U) -> Self
    where
        F: Fn() -> Req + Send + Sync + 'static,
        U: Fn(&S::Response) -> bool + Send + Sync + 'static,
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Future: Send,
        Req: Send + 'static,
    {
        self.probe = Some(Box::new(move |upstreams: &[(K, S)], h| {
            let upstreams: Arc<[(K, S)]> = upstreams.iter().cloned().collect();
            let is_up = Arc::new(is_up);
            h.probe(move |id: &K| {
                let svc = upstreams
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(_, s)| s.clone());
                let req = request();
                let is_up = Arc::clone(&is_up);
                async move {
                    let Some(mut svc) = svc else {
                        return ProbeResult::down();
                    };
                    let start = Instant::now();
                    if poll_fn(|cx| svc.poll_ready(cx)).await.is_err() {
                        return ProbeResult::down();
                    }
                    match svc.call(req).await {
                        Ok(res) if is_up(&res) => ProbeResult::up().with_latency(start.elapsed()),
                        _ => ProbeResult::down(),
                    }
                }
            })
        }));
        self
    }

    /// Builds the tracker (and its probe task, if any) and the router; must be called inside a
    /// Tokio runtime when a probe is set.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for no upstream (`upstreams`), an upstream added twice, a health
    /// setting the tracker refuses, or a probe outside a Tokio runtime.
    pub fn build(self) -> Result<Upstreams<K, S, P, R>, ConfigError>
    where
        S: Clone,
    {
        if self.upstreams.is_empty() {
            return Err(ConfigError::new(
                "upstreams",
                "at least one upstream is needed",
            ));
        }
        let retry = match self.retry {
            Some(policy) => policy,
            None => RetryPolicy::builder()
                .deadline(Duration::from_secs(10))
                .build()?,
        };
        let ids: Vec<K> = self.upstreams.iter().map(|(k, _)| k.clone()).collect();
        let mut h = HealthTracker::builder().endpoints(ids.iter().cloned());
        if let Some(customize) = self.health {
            h = customize(h);
        }
        if let Some(make) = self.probe {
            h = make(&self.upstreams, h);
        }
        let tracker = h.build()?;
        let router = Router::builder(&tracker)
            .endpoints(ids)
            .failback(self.failback)
            .build()
            .map_err(|e| ConfigError::new("upstreams", e.reason().to_owned()))?;
        let upstreams = self
            .upstreams
            .into_iter()
            .zip(
                router
                    .endpoints()
                    .map(|(ep, _)| ep.clone())
                    .collect::<Vec<_>>(),
            )
            .map(|((_, svc), ep)| (ep, svc))
            .collect();
        Ok(Upstreams::from_shared(Shared {
            router,
            upstreams,
            once: super::service::single_attempt(&retry),
            retry,
            budget: self.budget,
            policy: self.policy,
            replay: self.replay,
        }))
    }
}

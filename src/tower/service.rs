//! [`RetryLayer`] and its service [`Retry`]: every call of one service through the retry
//! executor.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::call::{Call, start_retries};
use super::error::{Error, ErrorKind};
use super::future::RetryFuture;
use super::policy::{ErrorPolicy, Policy};
use super::replay::{ByClone, Replay};
use crate::retry::{RetryBudget, RetryPolicy};

/// Runs every call of the wrapped service through the retry executor: attempts, deadline,
/// attempt timeout and backoff from a [`RetryPolicy`], an optional shared [`RetryBudget`],
/// idempotency and failure classes from a [`Policy`], request copies from a [`Replay`].
///
/// | setting | default |
/// |---|---|
/// | retry policy | given to [`new`](Self::new) |
/// | [`budget`](Self::budget) | none |
/// | [`policy`](Self::policy) | [`ErrorPolicy`]: errors by [`Classify`](crate::Classify), not idempotent |
/// | [`replay`](Self::replay) | [`ByClone`] |
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
/// use switchover::retry::{RetryBudget, RetryPolicy};
/// use switchover::tower::{ErrorPolicy, RetryLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = RetryPolicy::builder()
///     .max_attempts(3)
///     .deadline(Duration::from_secs(2))
///     .build()?;
/// // Clones of a service share its state: the retries go through clones.
/// let calls = Arc::new(AtomicU32::new(0));
/// let flaky = tower::service_fn(move |name: &'static str| {
///     let refused = calls.fetch_add(1, Ordering::Relaxed) < 2;
///     async move {
///         if refused {
///             Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
///         } else {
///             Ok(format!("hello, {name}"))
///         }
///     }
/// });
/// let mut svc = ServiceBuilder::new()
///     .layer(RetryLayer::new(policy).budget(RetryBudget::new()).policy(ErrorPolicy::new()))
///     .service(flaky);
/// // Refused twice (surely not executed, so retried though not idempotent), then served.
/// assert_eq!(svc.ready().await?.call("tower").await?, "hello, tower");
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryLayer<P = ErrorPolicy, R = ByClone> {
    config: Config<P, R>,
}

#[derive(Clone)]
pub(super) struct Config<P, R> {
    pub(super) retry: RetryPolicy,
    /// `retry` with one attempt: for requests the replay cannot copy.
    pub(super) once: RetryPolicy,
    pub(super) budget: Option<RetryBudget>,
    pub(super) policy: P,
    pub(super) replay: R,
}

impl<P: fmt::Debug, R: fmt::Debug> fmt::Debug for Config<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("policy", &self.policy)
            .field("replay", &self.replay)
            .finish()
    }
}

impl<P: fmt::Debug, R: fmt::Debug> fmt::Debug for RetryLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.config, f)
    }
}

impl RetryLayer {
    /// A layer that retries by `policy`, with no budget, the [`ErrorPolicy`] and [`ByClone`].
    pub fn new(policy: RetryPolicy) -> Self {
        RetryLayer {
            config: Config {
                once: single_attempt(&policy),
                retry: policy,
                budget: None,
                policy: ErrorPolicy::new(),
                replay: ByClone,
            },
        }
    }
}

impl<P, R> RetryLayer<P, R> {
    /// Draws every retry from `budget` (shared by its clones) and refills it on success.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// Reads requests and outcomes with `policy` (an
    /// [`HttpPolicy`](crate::http::HttpPolicy) for HTTP services).
    pub fn policy<P2>(self, policy: P2) -> RetryLayer<P2, R> {
        let c = self.config;
        RetryLayer {
            config: Config {
                retry: c.retry,
                once: c.once,
                budget: c.budget,
                policy,
                replay: c.replay,
            },
        }
    }

    /// Copies requests for retries with `replay` (e.g. [`SendOnce`](super::SendOnce), or a
    /// closure calling a client's `try_clone`).
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<P, R2> {
        let c = self.config;
        RetryLayer {
            config: Config {
                retry: c.retry,
                once: c.once,
                budget: c.budget,
                policy: c.policy,
                replay,
            },
        }
    }
}

impl<S, P: Clone, R: Clone> Layer<S> for RetryLayer<P, R> {
    type Service = Retry<S, P, R>;

    fn layer(&self, inner: S) -> Retry<S, P, R> {
        Retry {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// A service whose calls run through the retry executor; made by [`RetryLayer`].
///
/// Readiness is the wrapped service's: `poll_ready` polls it, and `call` sends the first
/// attempt through the service it readied. Each retry takes a fresh clone of the service and
/// waits for it to be ready, so a concurrency limit or a full pool below holds retries back
/// too. An exhausted budget never makes the service unready: it only stops retries, and
/// successes refill it.
#[derive(Clone)]
pub struct Retry<S, P = ErrorPolicy, R = ByClone> {
    inner: S,
    config: Arc<Config<P, R>>,
}

impl<S: fmt::Debug, P: fmt::Debug, R: fmt::Debug> fmt::Debug for Retry<S, P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, P, R> Retry<S, P, R> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    /// The shared budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.config.budget.as_ref()
    }
}

impl<S, P, R, Req> Service<Req> for Retry<S, P, R>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    P: Policy<Req, S::Response, S::Error> + Send + Sync + 'static,
    R: Replay<Req> + Send + Sync + 'static,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = RetryFuture<S, P, R, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::new(ErrorKind::NotReady, Some(e)))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let config = Arc::clone(&self.config);
        let idempotent = config.policy.is_idempotent(&request);
        let retries = config.retry.max_attempts() > 1;
        let template = if retries {
            config.replay.replay(&request)
        } else {
            None
        };
        let sent_once = retries && template.is_none();
        let source = template.is_some().then(|| self.inner.clone());
        let first = self.inner.call(request);
        let call = Call::new(config, source, template, idempotent, sent_once);
        RetryFuture::new(call, first, start_retries)
    }
}

/// `policy` with a single attempt (same deadline and attempt timeout).
pub(super) fn single_attempt(policy: &RetryPolicy) -> RetryPolicy {
    policy
        .to_builder()
        .max_attempts(1)
        .build()
        .unwrap_or_else(|_| RetryPolicy::no_retry())
}

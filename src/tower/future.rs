//! The futures of a call through the layer: [`RetryFuture`] for [`Retry`](super::Retry),
//! [`ResponseFuture`] for [`Upstreams`](super::Upstreams).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower_service::Service;

use super::call::{Call, CallRun, StartRetries};
use super::error::Error;
use super::policy::Policy;

pin_project_lite::pin_project! {
    /// The future returned by [`Retry`](super::Retry): the executor's own future over the
    /// call, without a box.
    ///
    /// The first attempt is the service's future, polled in place by the executor's first-attempt
    /// state machine (a timer only when the policy has a limit and the attempt is not ready at
    /// once); a first-try success allocates nothing. After a failed first attempt the retries
    /// run in one allocation, each through a fresh clone of the service.
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryFuture<S, P, R, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        run: CallRun<S, P, R, Req>,
    }
}

impl<S: Service<Req>, P, R, Req> RetryFuture<S, P, R, Req> {
    pub(super) fn new(
        call: Call<S, P, R, Req>,
        first: S::Future,
        start_retries: StartRetries<S, P, R, Req>,
    ) -> Self {
        RetryFuture {
            run: CallRun::started(call, first, start_retries),
        }
    }
}

impl<S, P, R, Req> Future for RetryFuture<S, P, R, Req>
where
    S: Service<Req>,
    P: Policy<Req, S::Response, S::Error>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().run.poll_call(cx)
    }
}

impl<S: Service<Req>, P, R, Req> fmt::Debug for RetryFuture<S, P, R, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture")
            .field("run", &self.run)
            .finish()
    }
}

/// The future returned by [`Upstreams`](super::Upstreams).
///
/// One heap allocation per call: the attempts run inside the router's runner, whose future has
/// no name a `Service::Future` could spell on stable Rust.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<T, E> {
    inner: Pin<Box<dyn Future<Output = Result<T, E>> + Send>>,
}

impl<T, E> ResponseFuture<T, E> {
    pub(super) fn new(fut: impl Future<Output = Result<T, E>> + Send + 'static) -> Self {
        ResponseFuture {
            inner: Box::pin(fut),
        }
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

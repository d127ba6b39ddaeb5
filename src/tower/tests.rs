//! The layer's decisions against a scripted service under the paused clock: exact waits,
//! attempt counts, execution flags and readiness failures. Real-server tests are in
//! `tests/tower.rs`.

use std::collections::VecDeque;
use std::future::{Ready, poll_fn, ready};
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::*;
use crate::error::{Classification, Classify, Execution};
use crate::retry::{ExponentialBackoff, Jitter, RetryPolicy, StopReason};

/// What the scripted service does on one call (or one `poll_ready`).
#[derive(Clone, Debug)]
enum Step {
    Ok(u32),
    Fail(io::ErrorKind),
    Hang,
}

/// A service that plays a shared script: each call takes the next step; `not_ready` makes
/// `poll_ready` fail that many times first. Clones share the script.
#[derive(Clone, Default)]
struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
    not_ready: Arc<Mutex<u32>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let s = Scripted::default();
        s.steps.lock().unwrap().extend(steps);
        s
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

impl Service<u32> for Scripted {
    type Response = u32;
    type Error = io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = io::Result<u32>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut n = self.not_ready.lock().unwrap();
        if *n > 0 {
            *n -= 1;
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Ok(req));
        Box::pin(async move {
            match step {
                Step::Ok(n) => Ok(n),
                Step::Fail(kind) => Err(kind.into()),
                Step::Hang => std::future::pending().await,
            }
        })
    }
}

fn policy(attempts: u32) -> RetryPolicy {
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(100))
        .cap(Duration::from_millis(100))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    RetryPolicy::builder()
        .max_attempts(attempts)
        .backoff(backoff)
        .build()
        .unwrap()
}

async fn call<S: Service<u32>>(svc: &mut S, req: u32) -> Result<S::Response, S::Error> {
    poll_fn(|cx| svc.poll_ready(cx)).await?;
    svc.call(req).await
}

#[tokio::test(start_paused = true)]
async fn refused_calls_are_retried_on_the_backoff_even_when_not_idempotent() {
    use io::ErrorKind::ConnectionRefused as Refused;
    let inner = Scripted::new([Step::Fail(Refused), Step::Fail(Refused), Step::Ok(7)]);
    let mut svc = RetryLayer::new(policy(3)).layer(inner.clone());
    let start = Instant::now();
    assert_eq!(call(&mut svc, 1).await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(inner.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failure_that_may_have_run_is_retried_only_for_idempotent_requests() {
    use io::ErrorKind::ConnectionReset as Reset;
    let inner = Scripted::new([Step::Fail(Reset), Step::Fail(Reset), Step::Ok(7)]);
    let mut once = RetryLayer::new(policy(3)).layer(inner.clone());
    let err = call(&mut once, 1).await.unwrap_err();
    assert_eq!(err.stop_reason(), Some(StopReason::NotIdempotent));
    assert_eq!(
        (err.attempts(), err.execution()),
        (1, Execution::MayHaveExecuted)
    );
    assert_eq!(err.kind(), ErrorKind::Service);

    let mut retried = RetryLayer::new(policy(3))
        .policy(ErrorPolicy::new().idempotent())
        .layer(inner.clone());
    assert_eq!(call(&mut retried, 1).await.unwrap(), 7);
    assert_eq!(inner.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_by_its_timeout_may_have_run() {
    let inner = Scripted::new([Step::Hang, Step::Hang]);
    let timed = policy(2)
        .to_builder()
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let mut svc = RetryLayer::new(timed)
        .policy(ErrorPolicy::new().idempotent())
        .layer(inner.clone());
    let start = Instant::now();
    let err = call(&mut svc, 1).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(50 + 100 + 50));
    assert!(err.is_timeout());
    assert_eq!(err.stop_reason(), Some(StopReason::AttemptsExhausted));
    assert!(err.may_have_executed());
    assert!(err.service_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_once_is_flagged_only_when_a_retry_would_have_followed() {
    use io::ErrorKind::{ConnectionRefused, InvalidInput};
    let inner = Scripted::new([Step::Fail(ConnectionRefused), Step::Fail(InvalidInput)]);
    let mut svc = RetryLayer::new(policy(3))
        .replay(SendOnce)
        .layer(inner.clone());
    let err = call(&mut svc, 1).await.unwrap_err();
    assert!(err.is_not_replayable());
    assert_eq!(
        (err.attempts(), err.execution()),
        (1, Execution::NotExecuted)
    );
    // A permanent error would not have been retried anyway: no flag.
    let err = call(&mut svc, 1).await.unwrap_err();
    assert!(!err.is_not_replayable());
    assert_eq!(err.stop_reason(), Some(StopReason::Permanent));
    assert_eq!(inner.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_its_clone_to_be_ready_and_a_readiness_failure_sent_nothing() {
    use io::ErrorKind::ConnectionRefused as Refused;
    let inner = Scripted::new([Step::Fail(Refused)]);
    let mut svc = RetryLayer::new(policy(2)).layer(inner.clone());
    poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    // The retry's clone fails to get ready: nothing more is sent, and nothing ran.
    *inner.not_ready.lock().unwrap() = 1;
    let err = svc.call(1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotReady);
    assert_eq!(
        (err.attempts(), err.execution()),
        (2, Execution::NotExecuted)
    );
    assert_eq!(inner.calls(), 1);
    assert_eq!(err.classify().class(), Classification::transient().class());
}

#[tokio::test(start_paused = true)]
async fn upstreams_record_a_readiness_failure_on_the_active_upstream() {
    let primary = Scripted::default();
    *primary.not_ready.lock().unwrap() = 3;
    let mut api = Upstreams::builder()
        .upstream("primary", primary.clone())
        .upstream("fallback", Scripted::default())
        .retry_policy(policy(2))
        .health(|h| h.failure_threshold(3))
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = poll_fn(|cx| api.poll_ready(cx)).await.unwrap_err();
        assert_eq!(
            (err.kind(), err.upstream()),
            (ErrorKind::NotReady, Some("primary"))
        );
        assert_eq!(err.stop_reason(), None);
    }
    // Three failures in a row ejected it: the next call is the fallback's.
    assert_eq!(api.active(), &"fallback");
    assert_eq!(call(&mut api, 5).await.unwrap(), 5);
    assert_eq!(primary.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn upstreams_retry_on_the_next_upstream_at_once_when_the_first_refuses() {
    use io::ErrorKind::ConnectionRefused as Refused;
    let primary = Scripted::new([Step::Fail(Refused)]);
    let fallback = Scripted::default();
    let mut api = Upstreams::builder()
        .upstream("primary", primary.clone())
        .upstream("fallback", fallback.clone())
        .retry_policy(policy(2))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(call(&mut api, 9).await.unwrap(), 9);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100),
        "one backoff wait"
    );
    assert_eq!((primary.calls(), fallback.calls()), (1, 1));
    let stats = api.tracker().endpoint(&"primary").unwrap().stats();
    assert_eq!(stats.failures_total, 1);
}

#[cfg(feature = "http")]
mod http_policy {
    use ::http::{Request, Response};

    use super::*;
    use crate::http::HttpPolicy;

    /// A status and its `Retry-After`, if any.
    type Answer = (u16, Option<&'static str>);

    /// An HTTP service answering from a script of statuses and `Retry-After` values.
    #[derive(Clone)]
    struct Statuses(Arc<Mutex<VecDeque<Answer>>>, Arc<Mutex<Vec<Instant>>>);

    impl Service<Request<()>> for Statuses {
        type Response = Response<()>;
        type Error = io::Error;
        type Future = Ready<io::Result<Response<()>>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.1.lock().unwrap().push(Instant::now());
            let (code, after) = self.0.lock().unwrap().pop_front().unwrap_or((200, None));
            let mut res = Response::builder().status(code);
            if let Some(a) = after {
                res = res.header("retry-after", a);
            }
            ready(Ok(res.body(()).unwrap()))
        }
    }

    fn statuses(script: &[Answer]) -> Statuses {
        Statuses(
            Arc::new(Mutex::new(script.iter().copied().collect())),
            Arc::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_backoff_exactly_and_the_last_failing_response_is_returned() {
        let inner = statuses(&[(429, Some("2")), (503, Some("1")), (503, None)]);
        let mut svc = RetryLayer::new(policy(3))
            .policy(HttpPolicy::new())
            .layer(inner.clone());
        let start = Instant::now();
        let res = poll_fn(|cx| svc.poll_ready(cx))
            .await
            .map(|_| svc.call(Request::get("/").body(()).unwrap()));
        let res = res.unwrap().await.unwrap();
        assert_eq!(res.status(), 503, "the caller gets the last 503");
        assert_eq!(start.elapsed(), Duration::from_millis(2000 + 1000));
        let calls = inner.1.lock().unwrap().clone();
        assert_eq!(calls[1] - calls[0], Duration::from_secs(2));
        assert_eq!(calls[2] - calls[1], Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_error_is_returned_at_once_and_a_post_503_is_not_repeated() {
        let inner = statuses(&[(404, None), (503, None)]);
        let mut svc = RetryLayer::new(policy(3))
            .policy(HttpPolicy::new())
            .layer(inner.clone());
        let get = Request::get("/missing").body(()).unwrap();
        assert_eq!(call_http(&mut svc, get).await.status(), 404);
        let post = Request::post("/charges").body(()).unwrap();
        assert_eq!(call_http(&mut svc, post).await.status(), 503);
        assert_eq!(inner.1.lock().unwrap().len(), 2);
    }

    async fn call_http<S>(svc: &mut S, req: Request<()>) -> Response<()>
    where
        S: Service<Request<()>, Response = Response<()>>,
        S::Error: std::fmt::Debug,
    {
        poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
        svc.call(req).await.unwrap()
    }
}

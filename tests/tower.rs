//! The `tower` layer over real HTTP servers on 127.0.0.1 (hyper) and a real client
//! (hyper-util): `Retry-After` in both forms and its clamping, `POST` retry safety, fallback
//! and failback with hysteresis, readiness under back-pressure and an exhausted budget.
//! Real time throughout (never a paused clock against a real server).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use switchover::http::{BaseUrl, HttpPolicy, Idempotent};
use switchover::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryPolicy, StopReason};
use switchover::route::{Failback, RouteEvent, SwitchReason};
use switchover::tower::{RetryLayer, SendOnce, Upstreams};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = Full<Bytes>;
type HttpClient = Client<HttpConnector, Body>;

#[path = "tower/server.rs"]
mod server;

use server::{Seen, Server};

fn status(code: u16) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::default())
        .unwrap()
}

fn text(body: &'static str) -> Response<Body> {
    Response::new(Body::new(Bytes::from_static(body.as_bytes())))
}

fn with_retry_after(code: u16, value: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("retry-after", value)
        .body(Body::default())
        .unwrap()
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::default()).unwrap()
}

fn post(uri: &str) -> Request<Body> {
    Request::post(uri).body(Body::from("{}")).unwrap()
}

/// A port nothing listens on: connecting is refused.
async fn refused_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

async fn body_of(res: Response<Incoming>) -> String {
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A policy whose own backoff is 1 ms: any longer wait comes from `Retry-After`.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(attempts)
        .backoff(
            ExponentialBackoff::builder()
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(1))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn gap(seen: &[Seen], i: usize) -> Duration {
    seen[i + 1].at - seen[i].at
}

#[tokio::test]
async fn retry_after_in_seconds_replaces_the_backoff() {
    let server = Server::start(|s| match s.n {
        0 => (Duration::ZERO, with_retry_after(429, "1")),
        _ => (Duration::ZERO, text("ok")),
    })
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(quick(3)).policy(HttpPolicy::new()))
        .service(client());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(&format!("{}/items", server.base())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let waited = gap(&seen, 0);
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_replaces_the_backoff() {
    let server = Server::start(|s| match s.n {
        0 => {
            // Whole seconds: the wait is between 1 and 2 s from now.
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
            (Duration::ZERO, with_retry_after(503, &at))
        }
        _ => (Duration::ZERO, text("ok")),
    })
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(quick(3)).policy(HttpPolicy::new()))
        .service(client());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(&server.base()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let waited = gap(&seen, 0);
    assert!(waited >= Duration::from_millis(950), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}

#[tokio::test]
async fn retry_after_is_clamped_to_max_delay_and_never_waits_past_the_deadline() {
    let server = Server::start(|s| match s.n {
        0 => (Duration::ZERO, with_retry_after(429, "3600")),
        _ => (Duration::ZERO, text("ok")),
    })
    .await;
    let capped = quick(3)
        .to_builder()
        .max_delay(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(capped).policy(HttpPolicy::new()))
        .service(client());
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(&server.base()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let waited = gap(&server.seen(), 0);
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_millis(900), "{waited:?}");

    // With a deadline shorter than the asked wait, the layer gives up at once and hands
    // back the 429 it got.
    let always = Server::start(|_| (Duration::ZERO, with_retry_after(429, "3600"))).await;
    let bounded = quick(3)
        .to_builder()
        .deadline(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(bounded).policy(HttpPolicy::new()))
        .service(client());
    let start = Instant::now();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get(&always.base()))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(always.seen().len(), 1);
}

#[tokio::test]
async fn a_post_is_not_retried_after_it_was_sent_unless_marked() {
    let server = Server::start(|_| (Duration::ZERO, status(503))).await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(quick(3)).policy(HttpPolicy::new()))
        .service(client());
    let uri = format!("{}/v1/charges", server.base());

    // A 503 may come after the charge was made: sent once, and the caller sees the 503.
    let res = svc.ready().await.unwrap().call(post(&uri)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.count(Method::POST), 1);

    // With an Idempotency-Key the server dedupes: retried to the attempt limit.
    let mut keyed = post(&uri);
    keyed
        .headers_mut()
        .insert("idempotency-key", "charge-42".parse().unwrap());
    let res = svc.ready().await.unwrap().call(keyed).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.count(Method::POST), 1 + 3);

    // Marked idempotent by the caller: the same.
    let mut marked = post(&uri);
    marked.extensions_mut().insert(Idempotent);
    svc.ready().await.unwrap().call(marked).await.unwrap();
    assert_eq!(server.count(Method::POST), 1 + 3 + 3);

    // A GET is idempotent by its method.
    svc.ready().await.unwrap().call(get(&uri)).await.unwrap();
    assert_eq!(server.count(Method::GET), 3);
}

#[tokio::test]
async fn a_refused_post_surely_did_not_run_so_it_goes_to_the_fallback() {
    let fallback = Server::start(|_| (Duration::ZERO, text("fallback"))).await;
    let client = client();
    let mut api = Upstreams::builder()
        .upstream(
            "primary",
            BaseUrl::new(client.clone(), &refused_port().await).unwrap(),
        )
        .upstream("fallback", BaseUrl::new(client, &fallback.base()).unwrap())
        .retry_policy(quick(3))
        .policy(HttpPolicy::new())
        .build()
        .unwrap();
    let res = api
        .ready()
        .await
        .unwrap()
        .call(post("/v1/charges"))
        .await
        .unwrap();
    assert_eq!(body_of(res).await, "fallback");
    let seen = fallback.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.clone(), seen[0].path.as_str()),
        (Method::POST, "/v1/charges")
    );
    assert_eq!(
        api.tracker()
            .endpoint(&"primary")
            .unwrap()
            .stats()
            .failures_total,
        1
    );
}

#[tokio::test]
async fn a_request_that_cannot_be_replayed_is_sent_once_and_says_so() {
    let mut svc = ServiceBuilder::new()
        .layer(
            RetryLayer::new(quick(3))
                .policy(HttpPolicy::new())
                .replay(SendOnce),
        )
        .service(client());
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(get(&refused_port().await))
        .await
        .unwrap_err();
    assert!(err.is_not_replayable(), "{err}");
    assert_eq!(err.attempts(), 1);
    assert!(
        !err.may_have_executed(),
        "a refused connection sent nothing"
    );
    assert!(err.to_string().contains("cannot be replayed"), "{err}");
    assert!(err.service_error().unwrap().is_connect());
}

/// Which upstream served each call, and when.
async fn call_until<S>(
    api: &mut S,
    until: impl Fn(&[(Instant, String)]) -> bool,
) -> Vec<(Instant, String)>
where
    S: Service<Request<Body>, Response = Response<Incoming>>,
    S::Error: std::fmt::Debug,
{
    let mut served = Vec::new();
    let end = Instant::now() + Duration::from_secs(8);
    while Instant::now() < end && !until(&served) {
        let res = api.ready().await.unwrap().call(get("/pay")).await.unwrap();
        let who = if res.status().is_success() {
            body_of(res).await
        } else {
            res.status().to_string()
        };
        served.push((Instant::now(), who));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    served
}

#[tokio::test]
async fn fails_over_to_the_fallback_and_back_only_after_the_primary_stayed_up() {
    let sick = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let primary_sick = Arc::clone(&sick);
    let primary = Server::start(move |_| {
        if primary_sick.load(std::sync::atomic::Ordering::Relaxed) {
            (Duration::ZERO, status(503))
        } else {
            (Duration::ZERO, text("primary"))
        }
    })
    .await;
    let fallback = Server::start(|_| (Duration::ZERO, text("fallback"))).await;
    let client = client();
    let hysteresis = Duration::from_millis(800);
    let mut api = Upstreams::builder()
        .upstream(
            "primary",
            BaseUrl::new(client.clone(), &primary.base()).unwrap(),
        )
        .upstream("fallback", BaseUrl::new(client, &fallback.base()).unwrap())
        .retry_policy(quick(3))
        .policy(HttpPolicy::new())
        .health(|h| {
            h.failure_threshold(2)
                .ejection_base(Duration::from_millis(200))
                .probe_interval(Duration::from_millis(50))
        })
        .probe(
            || get("/health"),
            |res: &Response<Incoming>| res.status().is_success(),
        )
        .failback(Failback::After(hysteresis))
        .build()
        .unwrap();
    let mut switches = api.router().subscribe();
    let mut health = api.tracker().subscribe();

    let served = call_until(&mut api, |s| s.len() >= 3).await;
    assert!(served.iter().all(|(_, who)| who == "primary"), "{served:?}");

    // The primary answers 503: every call is still served, by the fallback within the call.
    sick.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = call_until(&mut api, |s| s.len() >= 5).await;
    assert!(
        served.iter().all(|(_, who)| who == "fallback"),
        "{served:?}"
    );
    match switches.try_recv().unwrap() {
        RouteEvent::Switched {
            from, to, reason, ..
        } => {
            assert_eq!(
                (from, to, reason),
                ("primary", "fallback", SwitchReason::Failover)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(api.active(), &"fallback");

    // The primary heals; the probe brings it up, and the calls come back to it only once it
    // has stayed up for the hysteresis.
    sick.store(false, std::sync::atomic::Ordering::Relaxed);
    let served = call_until(&mut api, |s| {
        s.last().is_some_and(|(_, who)| who == "primary")
    })
    .await;
    let back_at = served.last().unwrap().0;
    let up_at = std::iter::from_fn(|| health.try_recv().ok())
        .filter(|e| e.endpoint == "primary" && e.to == switchover::HealthState::Up)
        .map(|e| e.at)
        .last()
        .expect("the probe brought the primary back up");
    assert!(
        back_at - up_at >= hysteresis,
        "failed back {:?} after up",
        back_at - up_at
    );
    assert!(back_at - up_at < hysteresis + Duration::from_millis(500));
    assert!(
        served
            .iter()
            .rev()
            .skip(1)
            .all(|(_, who)| who == "fallback"),
        "{served:?}"
    );
    match switches.try_recv().unwrap() {
        RouteEvent::Switched {
            from, to, reason, ..
        } => {
            assert_eq!(
                (from, to, reason),
                ("fallback", "primary", SwitchReason::Failback)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn readiness_is_the_inner_services_so_a_concurrency_limit_holds_callers_back() {
    let server = Server::start(|s| match s.path.as_str() {
        "/slow" => (Duration::from_millis(300), text("slow")),
        _ => (Duration::ZERO, text("fast")),
    })
    .await;
    let mut svc = ServiceBuilder::new()
        .layer(RetryLayer::new(quick(3)).policy(HttpPolicy::new()))
        .concurrency_limit(1)
        .service(client());
    let slow = svc
        .ready()
        .await
        .unwrap()
        .call(get(&format!("{}/slow", server.base())));
    let slow = tokio::spawn(slow);
    // The one permit is in the slow call: not ready until it ends.
    let waited = tokio::time::timeout(Duration::from_millis(100), svc.ready()).await;
    assert!(waited.is_err(), "ready while the limit is taken");
    let start = Instant::now();
    svc.ready().await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(100));
    assert_eq!(body_of(slow.await.unwrap().unwrap()).await, "slow");
    let fast = svc.call(get(&server.base())).await.unwrap();
    assert_eq!(body_of(fast).await, "fast");
}

#[tokio::test]
async fn an_exhausted_budget_stops_retries_but_never_readiness() {
    // Two retries' worth of tokens, and a success refills one token.
    let budget = RetryBudget::builder()
        .capacity(10)
        .retry_cost(5)
        .timeout_retry_cost(5)
        .success_refill(1)
        .build()
        .unwrap();
    let layer = RetryLayer::new(quick(5))
        .policy(HttpPolicy::new())
        .budget(budget.clone());
    let mut down = ServiceBuilder::new().layer(layer.clone()).service(client());
    let dead = refused_port().await;

    let err = down
        .ready()
        .await
        .unwrap()
        .call(get(&dead))
        .await
        .unwrap_err();
    assert!(err.is_budget_exhausted(), "{err}");
    assert_eq!(err.stop_reason(), Some(StopReason::BudgetExhausted));
    assert_eq!(
        err.attempts(),
        3,
        "the first attempt and the two retries the budget paid for"
    );
    assert_eq!(budget.available(), 0);

    // Empty budget: still ready at once, and each call makes its one attempt.
    for _ in 0..3 {
        let ready = tokio::time::timeout(Duration::from_millis(50), down.ready()).await;
        let svc = ready.expect("ready with an empty budget").unwrap();
        let err = svc.call(get(&dead)).await.unwrap_err();
        assert!(err.is_budget_exhausted());
        assert_eq!(err.attempts(), 1);
    }

    // Successes through the same budget refill it; then a retry is paid for again.
    let server = Server::start(|_| (Duration::ZERO, text("ok"))).await;
    let mut up = ServiceBuilder::new().layer(layer).service(client());
    for _ in 0..5 {
        up.ready()
            .await
            .unwrap()
            .call(get(&server.base()))
            .await
            .unwrap();
    }
    assert_eq!(budget.available(), 5);
    let err = down
        .ready()
        .await
        .unwrap()
        .call(get(&dead))
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 2);
    assert!(err.is_budget_exhausted());
}

#[tokio::test]
async fn a_dead_primary_is_left_within_the_call_and_the_error_names_the_upstream() {
    let mut primary = Server::start(|_| (Duration::ZERO, text("primary"))).await;
    // No idle connection to lose: after the kill every attempt is refused at connect.
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let mut api = Upstreams::builder()
        .upstream(
            "primary",
            BaseUrl::new(client.clone(), &primary.base()).unwrap(),
        )
        .upstream(
            "fallback",
            BaseUrl::new(client, &refused_port().await).unwrap(),
        )
        .retry_policy(quick(2))
        .policy(HttpPolicy::new())
        .build()
        .unwrap();
    let res = api.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(body_of(res).await, "primary");
    primary.kill().await;
    // Both refuse now: the error names the last upstream tried and says nothing ran.
    let err = api.ready().await.unwrap().call(get("/")).await.unwrap_err();
    assert_eq!(err.upstream(), Some("fallback"));
    assert_eq!(err.attempts(), 2);
    assert!(!err.may_have_executed(), "{err:?}");
    assert_eq!(err.stop_reason(), Some(StopReason::AttemptsExhausted));
}

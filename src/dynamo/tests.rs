//! The table's failover logic under Tokio's paused clock, against a scripted backend: each
//! region answers every request with a scripted step (success, refusal, reset, SDK timeout, a
//! service error, or a black hole that never answers), and the health probe is scripted too.
//! The regions' clients point at an unused loopback port and are never used: the operations
//! passed to the table answer by the region of the client they get, without a request, and
//! the probe sends none.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_smithy_types::body::SdkBody;
use tokio::time::Instant;

use super::{Error, FailureKind, RegionConfig, RegionName, Table, TableBuilder, WriteMode};
use crate::error::Execution;
use crate::health::{HealthState, ProbeResult};
use crate::retry::{ExponentialBackoff, Jitter, RetryPolicy, StopReason};
use crate::route::{Failback, RouteEvent, SwitchReason};

/// What a region does with one request.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Answers at once.
    Ok,
    /// Answers after this long.
    Slow(Duration),
    /// The connection is refused: surely not executed.
    Refused,
    /// The connection is reset after the request was sent: may have executed.
    Reset,
    /// The SDK's own attempt timeout.
    SdkTimeout,
    /// A service error with this code and HTTP status.
    Service(&'static str, u16),
    /// Accepts the request and never answers.
    BlackHole,
}

type Outcome = Result<RegionName, SdkError<PutItemError, HttpResponse>>;

impl Step {
    async fn answer(self, region: RegionName) -> Outcome {
        let io =
            |kind| SdkError::dispatch_failure(ConnectorError::io(io::Error::from(kind).into()));
        match self {
            Step::Ok => Ok(region),
            Step::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(region)
            }
            Step::Refused => Err(io(io::ErrorKind::ConnectionRefused)),
            Step::Reset => Err(io(io::ErrorKind::ConnectionReset)),
            Step::SdkTimeout => Err(SdkError::timeout_error("attempt timeout")),
            Step::Service(code, status) => {
                let meta = ErrorMetadata::builder()
                    .code(code)
                    .message("scripted")
                    .build();
                let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
                Err(SdkError::service_error(PutItemError::generic(meta), raw))
            }
            Step::BlackHole => std::future::pending().await,
        }
    }
}

/// The scripted regions: a steady step per region (default [`Step::Ok`]), optionally preceded
/// by queued steps, and the log of every request as (region, physical table, ms since start).
#[derive(Clone)]
struct Backend {
    state: Arc<Mutex<Script>>,
}

struct Script {
    start: Instant,
    steady: HashMap<String, Step>,
    queued: HashMap<String, VecDeque<Step>>,
    calls: Vec<(String, String, u64)>,
}

impl Backend {
    fn new() -> Self {
        Backend {
            state: Arc::new(Mutex::new(Script {
                start: Instant::now(),
                steady: HashMap::new(),
                queued: HashMap::new(),
                calls: Vec::new(),
            })),
        }
    }

    /// `region` answers every request with `step` (after any queued steps).
    fn set(&self, region: &str, step: Step) -> &Self {
        self.state
            .lock()
            .unwrap()
            .steady
            .insert(region.into(), step);
        self
    }

    /// `region` answers its next requests with `steps`, then with its steady step.
    fn queue(&self, region: &str, steps: impl IntoIterator<Item = Step>) -> &Self {
        let mut s = self.state.lock().unwrap();
        s.queued.entry(region.into()).or_default().extend(steps);
        self
    }

    /// The requests so far, as (region, ms since the backend was made).
    fn calls(&self) -> Vec<(String, u64)> {
        let s = self.state.lock().unwrap();
        s.calls.iter().map(|(r, _, t)| (r.clone(), *t)).collect()
    }

    /// The physical table names of the requests so far.
    fn tables(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.calls.iter().map(|(_, t, _)| t.clone()).collect()
    }

    /// An operation for [`Table::read`] / [`Table::write`]: answers by the region of the
    /// client it is handed, never sending a request. Like the SDK's, its future does nothing
    /// until polled: a request is logged (and takes its step) when it is first polled.
    fn op(
        &self,
    ) -> impl FnMut(&Client, &str) -> std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let backend = self.clone();
        move |client, table| {
            let region = client.config().region().expect("region set").to_string();
            let (backend, table) = (backend.clone(), table.to_owned());
            Box::pin(async move {
                let step = {
                    let mut s = backend.state.lock().unwrap();
                    let at = s.start.elapsed().as_millis() as u64;
                    s.calls.push((region.clone(), table, at));
                    match s.queued.get_mut(&region).and_then(VecDeque::pop_front) {
                        Some(step) => step,
                        None => s.steady.get(&region).copied().unwrap_or(Step::Ok),
                    }
                };
                step.answer(RegionName::new(region)).await
            })
        }
    }
}

/// The scripted health probe: a region is down for it until [`set_up`](Self::set_up); every
/// probe is counted.
#[derive(Clone, Default)]
struct Prober {
    up: Arc<Mutex<HashMap<String, bool>>>,
    /// Regions whose probes never answer.
    frozen: Arc<Mutex<Vec<String>>>,
    probes: Arc<Mutex<Vec<(String, u64)>>>,
    start: Arc<Mutex<Option<Instant>>>,
}

impl Prober {
    fn set_up(&self, region: &str) {
        self.up.lock().unwrap().insert(region.into(), true);
    }

    /// Probes of `region` never answer (a frozen process).
    fn freeze(&self, region: &str) {
        self.frozen.lock().unwrap().push(region.into());
    }

    /// The probes so far, as (region, ms since the prober was first used).
    fn probe_log(&self) -> Vec<(String, u64)> {
        self.probes.lock().unwrap().clone()
    }

    fn probes_of(&self, region: &str) -> usize {
        self.probes
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == region)
            .count()
    }

    fn probe(
        &self,
    ) -> impl Fn(&RegionName) -> std::pin::Pin<Box<dyn Future<Output = ProbeResult> + Send>>
    + Send
    + Sync
    + use<> {
        let this = self.clone();
        let start = *self.start.lock().unwrap().get_or_insert_with(Instant::now);
        move |id| {
            let at = start.elapsed().as_millis() as u64;
            this.probes.lock().unwrap().push((id.to_string(), at));
            if this.frozen.lock().unwrap().iter().any(|r| r == id.as_str()) {
                return Box::pin(std::future::pending());
            }
            let up = this.up.lock().unwrap().get(id.as_str()).copied();
            Box::pin(std::future::ready(if up == Some(true) {
                ProbeResult::up()
            } else {
                ProbeResult::down()
            }))
        }
    }
}

/// A constant 10 ms between attempts (no jitter), at most `attempts`.
fn every_10ms(attempts: u32) -> crate::retry::RetryPolicyBuilder {
    RetryPolicy::builder().max_attempts(attempts).backoff(
        ExponentialBackoff::builder()
            .base(Duration::from_millis(10))
            .factor(1.0)
            .jitter(Jitter::None)
            .build()
            .unwrap(),
    )
}

/// A table over regions `r1` (preferred) and `r2`, whose clients point at a port nothing
/// listens on (and are never used), with physical table names `orders-r1` and `orders-r2`,
/// 4 attempts 10 ms apart, and manual failback. No heartbeat and no suspicion: these tests
/// pin down the attempt loop itself; the silent-region tests below use the defaults.
fn builder() -> TableBuilder {
    defaults().heartbeat(None).suspect_after(None)
}

/// [`builder`] with the handle's defaults for heartbeats and suspicion.
fn defaults() -> TableBuilder {
    Table::builder("orders")
        .region(RegionConfig::endpoint("r1", "http://127.0.0.1:9").table_name("orders-r1"))
        .region(RegionConfig::endpoint("r2", "http://127.0.0.1:9").table_name("orders-r2"))
        .retry_policy(every_10ms(4).build().unwrap())
        .failback(Failback::Manual)
}

fn build(builder: TableBuilder) -> (Table, Prober) {
    let prober = Prober::default();
    let table = builder.build_with_probe(prober.probe()).unwrap();
    (table, prober)
}

fn calls(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(r, t)| ((*r).to_owned(), *t)).collect()
}

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn stats(table: &Table, region: &str) -> crate::health::EndpointStats {
    table
        .tracker()
        .endpoint(&RegionName::new(region))
        .unwrap()
        .stats()
}

#[tokio::test(start_paused = true)]
async fn primary_only_write_retries_in_place_then_follows_the_failover() {
    let backend = Backend::new();
    backend.set("r1", Step::Refused);
    let (table, _) = build(builder());
    let mut events = table.subscribe();
    let start = Instant::now();

    // Not idempotent, but refused connections surely did not execute: retried.
    let served = table.write(backend.op()).send().await.unwrap();

    assert_eq!(served, "r2");
    assert_eq!(ms(start), 20);
    // Two refusals in r1 (the failure threshold) while it is active, then r2.
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r1", 10), ("r2", 20)]));
    assert_eq!(backend.tables(), ["orders-r1", "orders-r1", "orders-r2"]);
    assert_eq!(table.active_region(), "r2");
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));
    match events.try_recv() {
        Ok(RouteEvent::Switched {
            from,
            to,
            generation,
            reason,
            ..
        }) => {
            assert_eq!((from.as_str(), to.as_str()), ("r1", "r2"));
            assert_eq!((generation, reason), (1, SwitchReason::Failover));
        }
        other => panic!("expected a switch, got {other:?}"),
    }
    assert!(events.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn any_healthy_write_goes_to_an_untried_region_at_once_without_a_switch() {
    let backend = Backend::new();
    backend.set("r1", Step::Refused);
    let (table, _) = build(
        builder()
            .write_mode(WriteMode::AnyHealthy)
            .health(|h| h.failure_threshold(100)),
    );

    let served = table.write(backend.op()).send().await.unwrap();

    assert_eq!(served, "r2");
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r2", 10)]));
    assert_eq!(table.active_region(), "r1");
    assert_eq!(table.region_state("r1"), Some(HealthState::Up));
}

#[tokio::test(start_paused = true)]
async fn writes_that_must_stay_on_the_active_region_never_leave_it() {
    let backend = Backend::new();
    backend.set("r1", Step::Refused);
    let (table, _) = build(
        builder()
            .write_mode(WriteMode::AnyHealthy)
            .health(|h| h.failure_threshold(100)),
    );

    let err = table
        .write(backend.op())
        .active_region_only()
        .idempotent(true)
        .send()
        .await
        .unwrap_err();

    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r1", 10), ("r1", 20), ("r1", 30)])
    );
    assert_eq!(err.kind(), FailureKind::ConnectFailed);
    assert_eq!(err.stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.region(), Some("r1"));
    assert_eq!(err.table_name(), Some("orders-r1"));
    assert_eq!(err.execution(), Execution::NotExecuted);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_may_have_executed_is_retried_only_when_idempotent() {
    let backend = Backend::new();
    backend.set("r1", Step::Reset);
    let (table, _) = build(builder());

    let err = table.write(backend.op()).send().await.unwrap_err();
    assert_eq!(backend.calls(), calls(&[("r1", 0)]));
    assert_eq!(err.kind(), FailureKind::Dispatch);
    assert_eq!(err.stop_reason(), StopReason::NotIdempotent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.region(), Some("r1"));
    assert_eq!(err.execution(), Execution::MayHaveExecuted);
    assert!(err.sdk_error().is_some());

    // The same failure on an idempotent write: retried, and r1 (now at its second failure in
    // a row) is down, so the retry goes to r2.
    let served = table
        .write(backend.op())
        .idempotent(true)
        .send()
        .await
        .unwrap();
    assert_eq!(served, "r2");
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r1", 0), ("r2", 10)]));
    assert_eq!(table.active_region(), "r2");
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_is_retried_in_a_region_that_has_not_failed() {
    let backend = Backend::new();
    backend.set("r1", Step::Service("InternalServerError", 500));
    let (table, _) = build(builder());

    let served = table.read(backend.op()).send().await.unwrap();

    assert_eq!(served, "r2");
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r2", 10)]));
    // One failure is below the threshold: r1 stays up and active.
    assert_eq!(table.active_region(), "r1");
    let r1 = stats(&table, "r1");
    assert_eq!((r1.state, r1.consecutive_failures), (HealthState::Up, 1));
}

#[tokio::test(start_paused = true)]
async fn a_write_cut_by_the_deadline_is_a_timeout_where_it_was_in_flight() {
    let backend = Backend::new();
    backend.set("r1", Step::Refused).set("r2", Step::BlackHole);
    let (table, _) = build(
        builder().write_mode(WriteMode::AnyHealthy).retry_policy(
            every_10ms(4)
                .deadline(Duration::from_millis(600))
                .build()
                .unwrap(),
        ),
    );
    let start = Instant::now();

    let err: Error<PutItemError> = table.write(backend.op()).send().await.unwrap_err();

    assert_eq!(ms(start), 600);
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r2", 10)]));
    assert_eq!(err.stop_reason(), StopReason::DeadlineExceeded);
    assert_eq!(err.attempts(), 2);
    // Not r1's refusal: the write was in flight in r2 and may have run there.
    assert_eq!(err.kind(), FailureKind::Timeout);
    assert_eq!(err.region(), Some("r2"));
    assert_eq!(err.table_name(), Some("orders-r2"));
    assert_eq!(err.execution(), Execution::MayHaveExecuted);
    assert!(err.sdk_error().is_none());
    // The cut attempt counts against r2.
    assert_eq!(stats(&table, "r2").failures_total, 1);
    assert_eq!(stats(&table, "r1").failures_total, 1);
}

#[tokio::test(start_paused = true)]
async fn the_policy_is_kept_and_its_attempt_timeout_fails_over_from_a_black_hole() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    let policy = every_10ms(4)
        .attempt_timeout(Duration::from_millis(300))
        .max_delay(Duration::from_secs(7))
        .throttle_factor(3.0)
        .build()
        .unwrap();
    let (table, _) = build(builder().retry_policy(policy));
    // As given, with the operation timeout (default 2 s) as deadline since it had none.
    let kept = table.retry_policy();
    assert_eq!(kept.attempt_timeout(), Some(Duration::from_millis(300)));
    assert_eq!(kept.deadline(), Some(Duration::from_secs(2)));
    assert_eq!(kept.max_delay(), Duration::from_secs(7));
    assert_eq!(kept.throttle_factor(), 3.0);
    assert_eq!(kept.max_attempts(), 4);
    let start = Instant::now();

    let served = table.read(backend.op()).send().await;

    // Reads leave r1 after its first cut; the runner counted both cuts against r1 below.
    assert_eq!(served.unwrap(), "r2");
    assert_eq!(ms(start), 310);
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r2", 310)]));
    assert_eq!(stats(&table, "r1").failures_total, 1);

    let served = table.write(backend.op()).idempotent(true).send().await;
    assert_eq!(served.unwrap(), "r2");
    assert_eq!(ms(start), 620);
    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r2", 310), ("r1", 310), ("r2", 620)])
    );
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));
    assert_eq!(table.active_region(), "r2");
}

#[tokio::test(start_paused = true)]
async fn the_handle_bounds_an_attempt_when_the_client_does_not() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    // No attempt timeout in the policy: the handle's own bound (attempt 500 ms + 100 ms).
    let (table, _) = build(builder());
    let start = Instant::now();

    let err = table.write(backend.op()).send().await.unwrap_err();
    assert_eq!(ms(start), 600);
    assert_eq!(err.kind(), FailureKind::Timeout);
    assert_eq!(err.stop_reason(), StopReason::NotIdempotent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.region(), Some("r1"));
    assert_eq!(err.execution(), Execution::MayHaveExecuted);
    assert!(err.sdk_error().is_none());

    let served = table.write(backend.op()).idempotent(true).send().await;
    assert_eq!(served.unwrap(), "r2");
    assert_eq!(ms(start), 1210);
    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r1", 600), ("r2", 1210)])
    );
    assert_eq!(table.active_region(), "r2");
}

#[tokio::test(start_paused = true)]
async fn an_sdk_timeout_counts_against_the_region_and_fails_over() {
    let backend = Backend::new();
    backend.set("r1", Step::SdkTimeout);
    let (table, _) = build(builder());

    let served = table.write(backend.op()).idempotent(true).send().await;

    assert_eq!(served.unwrap(), "r2");
    assert_eq!(backend.calls(), calls(&[("r1", 0), ("r1", 10), ("r2", 20)]));
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));
}

#[tokio::test(start_paused = true)]
async fn throttling_is_retried_in_the_same_region_and_never_fails_over() {
    const CODE: &str = "ProvisionedThroughputExceededException";
    let backend = Backend::new();
    backend.set("r1", Step::Service(CODE, 400));
    let (table, _) = build(builder().write_mode(WriteMode::AnyHealthy));
    let start = Instant::now();

    let err = table.write(backend.op()).send().await.unwrap_err();

    // 10 ms × the default throttle factor of 2 between attempts, all in r1.
    assert_eq!(ms(start), 60);
    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r1", 20), ("r1", 40), ("r1", 60)])
    );
    assert!(err.is_throttled());
    assert_eq!(err.code(), Some(CODE));
    assert_eq!(err.stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.attempts(), 4);
    assert_eq!(err.region(), Some("r1"));
    assert_eq!(err.execution(), Execution::NotExecuted);
    let r1 = stats(&table, "r1");
    assert_eq!(
        (r1.state, r1.throttled_total, r1.failures_total),
        (HealthState::Up, 4, 0)
    );
    assert_eq!(table.active_region(), "r1");
}

#[tokio::test(start_paused = true)]
async fn a_missing_table_is_returned_at_once_and_never_counted() {
    let backend = Backend::new();
    backend.set("r1", Step::Service("ResourceNotFoundException", 400));
    let (table, _) = build(builder());

    let err = table
        .write(backend.op())
        .idempotent(true)
        .send()
        .await
        .unwrap_err();

    assert_eq!(backend.calls(), calls(&[("r1", 0)]));
    assert!(err.is_table_not_found());
    assert_eq!(err.stop_reason(), StopReason::Permanent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        (err.region(), err.table_name()),
        (Some("r1"), Some("orders-r1"))
    );
    assert_eq!(err.execution(), Execution::NotExecuted);
    let text = err.to_string();
    assert!(
        text.contains("orders-r1") && text.contains("configuration"),
        "{text}"
    );
    let r1 = stats(&table, "r1");
    assert_eq!((r1.state, r1.failures_total), (HealthState::Up, 0));
}

#[tokio::test(start_paused = true)]
async fn every_success_records_its_latency_on_its_region() {
    let backend = Backend::new();
    backend.set("r1", Step::Slow(Duration::from_millis(40)));
    backend.queue("r2", [Step::Slow(Duration::from_millis(15))]);
    let (table, _) = build(builder().write_mode(WriteMode::AnyHealthy));

    table.read(backend.op()).send().await.unwrap();
    assert_eq!(stats(&table, "r1").latency, Some(Duration::from_millis(40)));

    // A write that fails in r1 and succeeds in r2: the latency is r2's.
    backend.queue("r1", [Step::Refused]);
    table.write(backend.op()).send().await.unwrap();
    assert_eq!(stats(&table, "r2").latency, Some(Duration::from_millis(15)));
    assert_eq!(stats(&table, "r1").latency, Some(Duration::from_millis(40)));
}

#[tokio::test(start_paused = true)]
async fn a_down_region_gets_no_calls_until_the_probe_brings_it_back() {
    let backend = Backend::new();
    backend.queue("r1", [Step::Refused, Step::Refused]);
    let (table, prober) = build(builder().failback(Failback::After(Duration::from_secs(5))));

    table.write(backend.op()).send().await.unwrap();
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));
    for _ in 0..20 {
        table.write(backend.op()).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two seconds later: r1 was probed (and said down), never called.
    let r1_calls = |b: &Backend| b.calls().iter().filter(|(r, _)| r == "r1").count();
    assert_eq!(r1_calls(&backend), 2);
    assert!(prober.probes_of("r1") > 0);
    assert_eq!(
        prober.probes_of("r2"),
        0,
        "no heartbeat: an up region is not probed"
    );
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));

    prober.set_up("r1");
    while table.region_state("r1") != Some(HealthState::Up) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r1_calls(&backend), 2);
    // Back up, but the table fails back only once r1 has stayed up for 5 s.
    let due = stats(&table, "r1").since + Duration::from_secs(5);
    tokio::time::sleep_until(due - Duration::from_millis(1)).await;
    assert_eq!(table.write(backend.op()).send().await.unwrap(), "r2");
    tokio::time::sleep_until(due).await;
    assert_eq!(table.write(backend.op()).send().await.unwrap(), "r1");
    assert_eq!(table.active_region(), "r1");
}

mod silent;

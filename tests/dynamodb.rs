//! The DynamoDB adapter against real DynamoDB Local regions (one Java process per region),
//! with faults from process signals, the fault proxy, and a small fake upstream for 5xx and
//! throttling answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use switchover::dynamo::{
    Error, FailureKind, Item, RegionConfig, Table, TableBuilder, Timeouts, WriteMode,
};
use switchover::health::{HealthState, TransitionReason};
use switchover::retry::StopReason;
use switchover::route::{Failback, RouteEvent, SwitchReason};
use switchover::testing::{DynamoDbLocal, DynamoDbRegions, FaultProxy, Mode};
use switchover::{ErrorClass, Execution};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};

const TABLE: &str = "orders";

/// Generous limits: real servers on a loaded machine. No test asserts on timing except as a
/// bound of these.
fn timeouts() -> Timeouts {
    Timeouts::new()
        .attempt(Duration::from_secs(1))
        .operation(Duration::from_secs(4))
}

const CALL_BOUND: Duration = Duration::from_secs(6);
const SCENARIO_BOUND: Duration = Duration::from_secs(60);

fn key(pk: &str) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk.to_owned()))])
}

fn item(pk: &str, n: u64) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("n".to_owned(), AttributeValue::N(n.to_string())),
    ])
}

fn region(node: &DynamoDbLocal) -> RegionConfig {
    RegionConfig::endpoint(node.region(), node.endpoint_url())
}

/// Starts the regions, creates the table in each, and warms every JVM up with a write and a
/// read (the first requests to a fresh DynamoDB Local are slow).
async fn regions(names: &[&str]) -> DynamoDbRegions {
    let regions = DynamoDbRegions::start(names)
        .await
        .expect("DynamoDB Local regions start");
    regions
        .create_table(TABLE, "pk")
        .await
        .expect("table created");
    for node in regions.regions() {
        warm(node).await;
    }
    regions
}

async fn warm(node: &DynamoDbLocal) {
    let client = node.client();
    for i in 0..5 {
        client
            .put_item()
            .table_name(TABLE)
            .set_item(Some(item("warm", i)))
            .send()
            .await
            .expect("warm-up put");
        client
            .get_item()
            .table_name(TABLE)
            .set_key(Some(key("warm")))
            .send()
            .await
            .expect("warm-up get");
    }
}

fn builder(regions: impl IntoIterator<Item = RegionConfig>) -> TableBuilder {
    Table::builder(TABLE)
        .regions(regions)
        .timeouts(timeouts())
        .failback(Failback::Manual)
}

/// [`builder`] without heartbeats or suspicion, for the tests that count requests or failures
/// exactly: a heartbeat is a request too, and on a loaded machine an answer slower than the
/// suspect delay counts one failure (both are the silent-region tests' subject).
fn exact(regions: impl IntoIterator<Item = RegionConfig>) -> TableBuilder {
    builder(regions).heartbeat(None).suspect_after(None)
}

async fn exists_in(node: &DynamoDbLocal, pk: &str) -> bool {
    node.client()
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key(pk)))
        .consistent_read(true)
        .send()
        .await
        .expect("direct read")
        .item
        .is_some()
}

/// One write and one read through the handle, each bounded; panics on any error.
async fn write_and_read(table: &Table, pk: &str, n: u64) {
    let put = timeout(CALL_BOUND, table.put_item(item(pk, n)).send())
        .await
        .unwrap_or_else(|_| panic!("put {pk} outlived its deadline"));
    put.unwrap_or_else(|e| panic!("put {pk} failed: {e} ({:?})", e.kind()));
    let get = timeout(CALL_BOUND, table.get_item(key(pk)).send())
        .await
        .unwrap_or_else(|_| panic!("get {pk} outlived its deadline"));
    get.unwrap_or_else(|e| panic!("get {pk} failed: {e} ({:?})", e.kind()));
}

fn switched_to(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<RouteEvent<switchover::dynamo::RegionName>>,
) -> Vec<(String, String, SwitchReason, Instant)> {
    let mut out = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let RouteEvent::Switched {
            from,
            to,
            reason,
            at,
            ..
        } = ev
        {
            out.push((from.to_string(), to.to_string(), reason, at));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_preferred_region_mid_workload_writes_continue() {
    let mut regions = regions(&["use1", "usw2"]).await;
    let table = builder(regions.regions().iter().map(region))
        .build()
        .expect("table builds");
    let mut events = table.subscribe();

    timeout(SCENARIO_BOUND, async {
        for i in 0..20 {
            write_and_read(&table, &format!("before-{i}"), i).await;
        }
        assert_eq!(table.active_region(), "use1");
        regions
            .region_mut("use1")
            .unwrap()
            .kill()
            .await
            .expect("kill use1");
        for i in 0..40 {
            write_and_read(&table, &format!("after-{i}"), i).await;
        }
    })
    .await
    .expect("workload finishes");

    assert_eq!(table.active_region(), "usw2");
    assert_eq!(table.region_state("use1"), Some(HealthState::Down));
    let usw2 = regions.region("usw2").unwrap();
    for i in 0..40 {
        assert!(
            exists_in(usw2, &format!("after-{i}")).await,
            "after-{i} is in usw2"
        );
    }
    let switches = switched_to(&mut events);
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(
        (
            switches[0].0.as_str(),
            switches[0].1.as_str(),
            switches[0].2
        ),
        ("use1", "usw2", SwitchReason::Failover)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_preferred_region_fails_over_within_deadlines() {
    let regions = regions(&["euw1", "euc1"]).await;
    let euw1 = regions.region("euw1").unwrap();
    let proxy = FaultProxy::start(euw1.addr()).await.expect("proxy starts");
    let table = builder([
        RegionConfig::endpoint("euw1", format!("http://{}", proxy.addr())),
        region(regions.region("euc1").unwrap()),
    ])
    .build()
    .expect("table builds");

    timeout(SCENARIO_BOUND, async {
        for i in 0..10 {
            write_and_read(&table, &format!("before-{i}"), i).await;
        }
        proxy.set_mode(Mode::BlackHole).await.expect("black hole");
        // Every call is bounded by CALL_BOUND (inside write_and_read): none may hang.
        for i in 0..30 {
            write_and_read(&table, &format!("after-{i}"), i).await;
        }
    })
    .await
    .expect("workload finishes");

    assert_eq!(table.active_region(), "euc1");
    let euc1 = regions.region("euc1").unwrap();
    for i in 0..30 {
        assert!(
            exists_in(euc1, &format!("after-{i}")).await,
            "after-{i} is in euc1"
        );
    }
}

/// A fake DynamoDB endpoint that answers every request with one fixed error.
struct FakeDynamo {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

const THROTTLE: u8 = 0;
const INTERNAL_ERROR: u8 = 1;

impl FakeDynamo {
    async fn start(mode: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(mode));
        let requests = Arc::new(AtomicU64::new(0));
        let (m, r) = (Arc::clone(&mode), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&m), Arc::clone(&r)));
            }
        });
        FakeDynamo {
            addr,
            mode,
            requests,
            task,
        }
    }
}

impl Drop for FakeDynamo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: tokio::net::TcpStream, mode: Arc<AtomicU8>, requests: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    loop {
        // Read one request: headers, then Content-Length bytes of body.
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..header_end + length);
        requests.fetch_add(1, Ordering::SeqCst);
        let (status, code) = match mode.load(Ordering::SeqCst) {
            THROTTLE => ("400 Bad Request", "ProvisionedThroughputExceededException"),
            _ => ("500 Internal Server Error", "InternalServerError"),
        };
        let body = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"injected by the test"}}"#
        );
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             x-amzn-RequestId: fake\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_classified_and_only_errors_fail_over() {
    let regions = regions(&["aps1"]).await;
    let fake = FakeDynamo::start(THROTTLE).await;
    let table = exact([
        RegionConfig::endpoint("fake", format!("http://{}", fake.addr)),
        region(regions.region("aps1").unwrap()),
    ])
    .build()
    .expect("table builds");

    // Throttling: retried in the same region, never a failover.
    let err = timeout(CALL_BOUND, table.put_item(item("t", 1)).send())
        .await
        .expect("bounded")
        .expect_err("every attempt is throttled");
    assert!(err.is_throttled(), "{err:?}");
    assert_eq!(err.kind(), FailureKind::Throttled);
    assert_eq!(err.region(), Some("fake"));
    assert_eq!(err.stop_reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
    let sdk = err.sdk_error().expect("the SDK error is kept");
    assert_eq!(
        switchover::dynamo::classify(sdk).class(),
        ErrorClass::Throttled
    );
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        u64::from(err.attempts())
    );
    assert_eq!(table.active_region(), "fake");
    assert_eq!(table.region_state("fake"), Some(HealthState::Up));
    let fake_ep = table
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id() == "fake")
        .unwrap();
    assert_eq!(fake_ep.throttled_total(), u64::from(err.attempts()));

    // 5xx: transient, may have executed. A non-idempotent update is not retried...
    fake.mode.store(INTERNAL_ERROR, Ordering::SeqCst);
    let err = timeout(
        CALL_BOUND,
        table
            .update_item(key("counter"), "ADD n :one")
            .value(":one", AttributeValue::N("1".into()))
            .send(),
    )
    .await
    .expect("bounded")
    .expect_err("the fake answers 500");
    assert_eq!(err.kind(), FailureKind::ServerError);
    assert_eq!(err.code(), Some("InternalServerError"));
    assert_eq!(err.stop_reason(), StopReason::NotIdempotent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.execution(), Execution::MayHaveExecuted);

    // ...an idempotent put is, and the region's failures move the table to the next region.
    timeout(CALL_BOUND, table.put_item(item("p", 1)).send())
        .await
        .expect("bounded")
        .expect("the put fails over to aps1");
    assert_eq!(table.active_region(), "aps1");
    assert_eq!(table.region_state("fake"), Some(HealthState::Down));
    assert!(exists_in(regions.region("aps1").unwrap(), "p").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_check_failure_returns_at_once_and_region_stays_healthy() {
    let regions = regions(&["sae1", "cac1"]).await;
    let table = exact(regions.regions().iter().map(region))
        .build()
        .expect("table builds");
    table
        .put_item(item("unique", 1))
        .send()
        .await
        .expect("first put");
    for _ in 0..5 {
        let err = timeout(
            CALL_BOUND,
            table
                .put_item(item("unique", 2))
                .condition("attribute_not_exists(pk)")
                .send(),
        )
        .await
        .expect("bounded")
        .expect_err("the condition fails");
        assert!(err.is_conditional_check_failed(), "{err:?}");
        assert_eq!(err.kind(), FailureKind::Rejected);
        assert_eq!(err.attempts(), 1);
        assert_eq!(err.stop_reason(), StopReason::Permanent);
        assert_eq!(err.region(), Some("sae1"));
    }
    assert_eq!(table.region_state("sae1"), Some(HealthState::Up));
    let ep = table
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id() == "sae1")
        .unwrap();
    assert_eq!(ep.stats().consecutive_failures, 0);
    assert_eq!(ep.stats().failures_total, 0);
    assert_eq!(table.active_region(), "sae1");
    // The item kept its first value.
    let got = table
        .get_item(key("unique"))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["n"], AttributeValue::N("1".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_region_fails_back_only_after_hysteresis() {
    const HYSTERESIS: Duration = Duration::from_secs(3);
    let regions = regions(&["afs1", "mes1"]).await;
    let proxy = FaultProxy::start(regions.region("afs1").unwrap().addr())
        .await
        .expect("proxy starts");
    let table = builder([
        RegionConfig::endpoint("afs1", format!("http://{}", proxy.addr())),
        region(regions.region("mes1").unwrap()),
    ])
    .failback(Failback::After(HYSTERESIS))
    .build()
    .expect("table builds");
    let mut route = table.subscribe();
    let mut health = table.tracker().subscribe();

    timeout(SCENARIO_BOUND, async {
        let mut n = 0;
        for _ in 0..5 {
            n += 1;
            write_and_read(&table, &format!("k{n}"), n).await;
        }
        proxy.set_mode(Mode::Refuse).await.unwrap();
        proxy.reset_connections();
        while table.active_region() != "mes1" {
            n += 1;
            write_and_read(&table, &format!("k{n}"), n).await;
        }
        proxy.set_mode(Mode::Pass).await.unwrap();
        // Keep the workload going until the table is back on its preferred region.
        while table.active_region() != "afs1" {
            n += 1;
            write_and_read(&table, &format!("k{n}"), n).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("fails over and back");

    let mut up_at = None;
    while let Ok(ev) = health.try_recv() {
        if ev.endpoint == "afs1" && ev.to == HealthState::Up {
            assert!(
                matches!(ev.reason, TransitionReason::Recovered { .. }),
                "{ev:?}"
            );
            up_at = Some(ev.at);
        }
    }
    let up_at = up_at.expect("afs1 recovered");
    let switches = switched_to(&mut route);
    assert_eq!(switches.len(), 2, "{switches:?}");
    assert_eq!(
        (switches[0].1.as_str(), switches[0].2),
        ("mes1", SwitchReason::Failover)
    );
    let (_, to, reason, back_at) = &switches[1];
    assert_eq!((to.as_str(), *reason), ("afs1", SwitchReason::Failback));
    assert!(
        back_at.duration_since(up_at) >= HYSTERESIS,
        "failed back {:?} after recovery, before the {HYSTERESIS:?} hysteresis",
        back_at.duration_since(up_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_in_one_region_is_a_clear_configuration_error() {
    let regions = DynamoDbRegions::start(&["eun1", "euw3"])
        .await
        .expect("regions start");
    regions
        .region("eun1")
        .unwrap()
        .create_table(TABLE, "pk")
        .await
        .unwrap();
    warm(regions.region("eun1").unwrap()).await;
    let table = exact([
        region(regions.region("eun1").unwrap()),
        region(regions.region("euw3").unwrap()).table_name("orders-euw3"),
    ])
    .build()
    .expect("table builds");

    assert_eq!(
        table
            .missing_tables()
            .await
            .into_iter()
            .map(|(r, t)| (r.to_string(), t))
            .collect::<Vec<_>>(),
        [("euw3".to_owned(), "orders-euw3".to_owned())]
    );

    table.evacuate("eun1").expect("evacuate");
    assert_eq!(table.active_region(), "euw3");
    for _ in 0..4 {
        let err: Error<_> = timeout(CALL_BOUND, table.put_item(item("x", 1)).send())
            .await
            .expect("bounded")
            .expect_err("the table is missing in euw3");
        assert!(err.is_table_not_found(), "{err:?}");
        assert_eq!(err.region(), Some("euw3"));
        assert_eq!(err.table_name(), Some("orders-euw3"));
        assert_eq!(err.attempts(), 1);
        let text = err.to_string();
        assert!(
            text.contains("orders-euw3") && text.contains("euw3") && text.contains("configuration"),
            "{text}"
        );
    }
    // Not an outage: never counted against the region.
    assert_eq!(table.region_state("euw3"), Some(HealthState::Up));
    table.restore("eun1").expect("restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_healthy_writes_retry_elsewhere_but_transactions_stay_on_the_active_region() {
    let regions = regions(&["r-a", "r-b"]).await;
    let proxy = FaultProxy::start(regions.region("r-a").unwrap().addr())
        .await
        .expect("proxy starts");
    let table = builder([
        RegionConfig::endpoint("r-a", format!("http://{}", proxy.addr())),
        region(regions.region("r-b").unwrap()),
    ])
    .write_mode(WriteMode::AnyHealthy)
    // Keep the router on r-a: only the write mode moves writes.
    .health(|h| h.failure_threshold(100))
    .build()
    .expect("table builds");
    table.put_item(item("warm", 0)).send().await.unwrap();
    proxy.set_mode(Mode::Refuse).await.unwrap();
    proxy.reset_connections();

    // A plain write goes to r-b on its second attempt; the router has not switched.
    timeout(CALL_BOUND, table.put_item(item("any", 1)).send())
        .await
        .expect("bounded")
        .expect("written in r-b");
    assert!(exists_in(regions.region("r-b").unwrap(), "any").await);
    assert_eq!(table.active_region(), "r-a");

    // A transaction (with a client request token: idempotent) only ever goes to the active
    // region, so it fails there, refused (surely not executed).
    let err = timeout(
        CALL_BOUND,
        table
            .active(|client, name| {
                let put = Put::builder()
                    .table_name(name)
                    .set_item(Some(item("tx", 1)))
                    .build()
                    .expect("put is complete");
                client
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(put).build())
                    .client_request_token("tx-1")
                    .send()
            })
            .idempotent(true)
            .send(),
    )
    .await
    .expect("bounded")
    .expect_err("r-a refuses");
    assert_eq!(err.kind(), FailureKind::ConnectFailed);
    assert_eq!(err.region(), Some("r-a"));
    assert_eq!(err.execution(), Execution::NotExecuted);
    assert!(err.attempts() > 1);
    assert!(!exists_in(regions.region("r-b").unwrap(), "tx").await);
}

/// A write refused in one region (surely not executed) and then cut by the deadline while in
/// flight in another must be reported as a timeout there that may have executed, not as the
/// earlier refusal: a caller would otherwise re-send a non-idempotent write that may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_cut_by_the_deadline_in_flight_may_have_executed() {
    use switchover::retry::RetryPolicy;

    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}", refused.local_addr().unwrap());
    drop(refused); // nothing listens there now: connections are refused
    // Accepts connections (the kernel's backlog) and never answers: a black hole.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    let table = Table::builder(TABLE)
        .region(RegionConfig::endpoint("refusing", refused_url))
        .region(RegionConfig::endpoint("hole", hole_url))
        .write_mode(WriteMode::AnyHealthy)
        .timeouts(timeouts())
        // The deadline is this test's subject: no suspicion to end the attempt earlier.
        .heartbeat(None)
        .suspect_after(None)
        // The deadline ends before the 1 s attempt timeout of the second attempt.
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(4)
                .deadline(Duration::from_millis(600))
                .build()
                .unwrap(),
        )
        .failback(Failback::Manual)
        .build()
        .expect("table builds");

    let err = timeout(
        CALL_BOUND,
        table
            .update_item(key("counter"), "ADD n :one")
            .value(":one", AttributeValue::N("1".into()))
            .send(),
    )
    .await
    .expect("bounded")
    .expect_err("nothing answers");
    assert_eq!(err.stop_reason(), StopReason::DeadlineExceeded, "{err:?}");
    assert!(err.attempts() >= 2, "{err:?}");
    assert_eq!(err.region(), Some("hole"), "{err:?}");
    assert_eq!(err.kind(), FailureKind::Timeout, "{err:?}");
    assert_eq!(err.execution(), Execution::MayHaveExecuted, "{err:?}");
    drop(hole);
}

/// A retry policy's own attempt timeout, shorter than the handle's, must still count a
/// black-holed region's timed-out attempts against it, or the table never fails over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_attempt_timeout_still_fails_over_from_a_black_hole() {
    use switchover::retry::RetryPolicy;

    let regions = regions(&["ok-1"]).await;
    // Accepts connections (the kernel's backlog) and never answers: a black hole.
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let table = builder([
        RegionConfig::endpoint("hole", format!("http://{}", hole.local_addr().unwrap())),
        region(regions.region("ok-1").unwrap()),
    ])
    .retry_policy(
        RetryPolicy::builder()
            .max_attempts(4)
            .attempt_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .build()
    .expect("table builds");

    timeout(SCENARIO_BOUND, async {
        for i in 0..3 {
            write_and_read(&table, &format!("p-{i}"), i).await;
        }
    })
    .await
    .expect("workload finishes");
    assert_eq!(table.active_region(), "ok-1");
    assert_eq!(table.region_state("hole"), Some(HealthState::Down));
    drop(hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_moves_traffic_and_is_announced() {
    let regions = regions(&["e-1", "e-2"]).await;
    let table = builder(regions.regions().iter().map(region))
        .build()
        .expect("table builds");
    let mut events = table.subscribe();
    table.evacuate("e-1").expect("evacuate");
    table.put_item(item("drill", 1)).send().await.unwrap();
    assert!(exists_in(regions.region("e-2").unwrap(), "drill").await);
    let switches = switched_to(&mut events);
    assert_eq!(switches.len(), 1, "{switches:?}");
    assert_eq!(
        (switches[0].1.as_str(), switches[0].2),
        ("e-2", SwitchReason::Evacuated)
    );
    assert!(table.evacuate("nowhere").is_err());
    table.restore("e-1").expect("restore");
    assert_eq!(table.region_state("e-1"), Some(HealthState::Up));
}

#[tokio::test]
async fn bad_configuration_is_refused_at_build() {
    let e = Table::builder(TABLE).build().unwrap_err();
    assert_eq!(e.field(), "regions");
    let e = Table::builder("  ")
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:1"))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "table_name");
    let e = Table::builder(TABLE)
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:1"))
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:2"))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "regions");
    assert!(e.to_string().contains("`a` is listed twice"), "{e}");
    let e = Table::builder(TABLE)
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:1").table_name(""))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "table_name");
    let e = Table::builder(TABLE)
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:1"))
        .timeouts(Timeouts::new().attempt(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "attempt_timeout");
    let e = Table::builder(TABLE)
        .region(RegionConfig::endpoint("a", "http://127.0.0.1:1"))
        .health(|h| h.failure_threshold(0))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "failure_threshold");
}

#[tokio::test]
async fn credentials_never_show_in_debug_or_errors() {
    let secret = "wJalrXUtnFEMI-K7MDENG-SECRET";
    let key_id = "AKIA-SECRET-ID";
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", refused.local_addr().unwrap());
    drop(refused); // nothing listens there now: connections are refused
    let builder = Table::builder(TABLE)
        .region(
            RegionConfig::endpoint("z", url).credentials(Credentials::new(
                key_id,
                secret,
                Some("SESSION-TOKEN-SECRET".into()),
                None,
                "test",
            )),
        )
        .timeouts(timeouts());
    let builder_debug = format!("{builder:?}");
    let table = builder.build().unwrap();
    let err = table.put_item(item("a", 1)).send().await.unwrap_err();
    assert_eq!(err.kind(), FailureKind::ConnectFailed);
    let mut chain = format!("{err} {err:?} {table:?} {builder_debug}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    for needle in [secret, key_id, "SESSION-TOKEN-SECRET"] {
        assert!(!chain.contains(needle), "{needle} leaked: {chain}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_config_and_own_client_regions_and_get_item_canary() {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Region, SharedCredentialsProvider};
    use switchover::dynamo::Canary;

    let regions = regions(&["c-1", "c-2"]).await;
    let proxy = FaultProxy::start(regions.region("c-1").unwrap().addr())
        .await
        .expect("proxy starts");
    let sdk = aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("ignored"))
        .endpoint_url(regions.region("c-2").unwrap().endpoint_url())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "sdkconfig",
            "sdkconfig",
            None,
            None,
            "test",
        )))
        .build();
    let table = builder([
        RegionConfig::endpoint("c-1", format!("http://{}", proxy.addr())),
        RegionConfig::from_sdk_config("c-2", &sdk),
    ])
    .canary(Canary::GetItem(key("canary")))
    .build()
    .expect("table builds");

    timeout(SCENARIO_BOUND, async {
        write_and_read(&table, "first", 1).await;
        proxy.set_mode(Mode::Refuse).await.unwrap();
        proxy.reset_connections();
        write_and_read(&table, "second", 2).await;
        assert_eq!(table.active_region(), "c-2");
        assert!(exists_in(regions.region("c-2").unwrap(), "second").await);
        assert_eq!(table.region_state("c-1"), Some(HealthState::Down));
        // The GetItem canary brings the region back once it answers again.
        proxy.set_mode(Mode::Pass).await.unwrap();
        while table.region_state("c-1") != Some(HealthState::Up) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("recovers through the canary");

    // A client you built is used as it is.
    let own = Table::builder(TABLE)
        .region(RegionConfig::from_client(
            "c-2",
            regions.region("c-2").unwrap().client(),
        ))
        .build()
        .expect("table builds");
    own.put_item(item("own", 1)).send().await.expect("put");
    assert!(exists_in(regions.region("c-2").unwrap(), "own").await);
    let err = Table::builder(TABLE)
        .region(
            RegionConfig::from_client("c-2", regions.region("c-2").unwrap().client())
                .credentials(Credentials::new("a", "b", None, None, "test")),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_latency_reads_go_to_the_nearest_region_writes_stay_active() {
    use switchover::route::LowestLatency;

    let regions = regions(&["far", "near"]).await;
    // Each region holds its own copy of the item, naming the region (no replication here).
    for node in regions.regions() {
        node.client()
            .put_item()
            .table_name(TABLE)
            .item("pk", AttributeValue::S("where".into()))
            .item("region", AttributeValue::S(node.region().into()))
            .send()
            .await
            .unwrap();
    }
    let proxy = FaultProxy::start(regions.region("far").unwrap().addr())
        .await
        .expect("proxy starts");
    proxy
        .set_mode(Mode::Latency {
            delay: Duration::from_millis(150),
            jitter: Duration::ZERO,
        })
        .await
        .unwrap();
    let table = builder([
        RegionConfig::endpoint("far", format!("http://{}", proxy.addr())),
        region(regions.region("near").unwrap()),
    ])
    .read_policy(LowestLatency)
    .heartbeat(Duration::from_millis(100))
    .build()
    .expect("table builds");

    let served_by = |item: Option<Item>| match item.and_then(|i| i.get("region").cloned()) {
        Some(AttributeValue::S(s)) => s,
        other => panic!("unexpected item {other:?}"),
    };
    timeout(SCENARIO_BOUND, async {
        // Once both regions have latency samples, reads settle on the near one.
        loop {
            let got = table.get_item(key("where")).send().await.unwrap();
            if served_by(got) == "near" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..10 {
            let got = table.get_item(key("where")).send().await.unwrap();
            assert_eq!(served_by(got), "near");
        }
        // Writes and strongly consistent reads still go to the active (preferred) region.
        table.put_item(item("w", 1)).send().await.unwrap();
        assert!(exists_in(regions.region("far").unwrap(), "w").await);
        let got = table
            .get_item(key("where"))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert_eq!(served_by(got), "far");
    })
    .await
    .expect("reads move to the near region");
    assert_eq!(table.active_region(), "far");
}

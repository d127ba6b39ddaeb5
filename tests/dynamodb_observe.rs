//! What a DynamoDB table handle reports about itself, against real DynamoDB Local regions: its
//! health document (JSON) through a kill and a failback, the timeline's phases against the gap
//! the workload measures itself, and the `switchover.*` metrics a recorder sees. Real time
//! (real servers): outcomes and generous bounds are asserted, figures are printed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use switchover::dynamo::{Item, RegionConfig, Table, Timeouts};
use switchover::observe::{EventKind, Status};
use switchover::route::Failback;
use switchover::testing::{DynamoDbLocal, DynamoDbRegions};
use tokio::time::{Instant, sleep, timeout};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{assert_heartbeat_rate, counter, recorder, take};

const TABLE: &str = "orders";
const SCENARIO_BOUND: Duration = Duration::from_secs(60);

fn item(pk: &str, n: u64) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("n".to_owned(), AttributeValue::N(n.to_string())),
    ])
}

/// Starts the regions with the table in each, every JVM warmed up by a few writes.
async fn regions(names: &[&str]) -> DynamoDbRegions {
    let regions = DynamoDbRegions::start(names)
        .await
        .expect("DynamoDB Local regions start");
    regions.create_table(TABLE, "pk").await.expect("table");
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
    }
}

fn region(node: &DynamoDbLocal) -> RegionConfig {
    RegionConfig::endpoint(node.region(), node.endpoint_url())
}

/// Every attempt the workload made: (region, started, ended, succeeded).
type Log = Arc<Mutex<Vec<(String, Instant, Instant, bool)>>>;

/// One idempotent whole-item put through the table, every attempt logged.
async fn logged_put(table: &Table, log: &Log, n: u64) -> bool {
    let call = table.write(|client, name| {
        let region = client.config().region().expect("region").to_string();
        let log = Arc::clone(log);
        let started = Instant::now();
        let fut = client
            .put_item()
            .table_name(name)
            .set_item(Some(item(&format!("k{n}"), n)))
            .send();
        async move {
            let out = fut.await;
            log.lock()
                .unwrap()
                .push((region, started, Instant::now(), out.is_ok()));
            out
        }
    });
    call.idempotent(true).send().await.is_ok()
}

/// The gap the workload saw: from the start of its first failed attempt in `from` to the end
/// of its first success in `to` after it.
fn measured_gap(log: &Log, from: &str, to: &str) -> Option<Duration> {
    let log = log.lock().unwrap();
    let first_failure = log.iter().find(|(r, .., ok)| r == from && !ok)?.1;
    let first_success = log
        .iter()
        .find(|(r, started, _, ok)| r == to && *ok && *started >= first_failure)?
        .2;
    Some(first_success - first_failure)
}

fn check<'a>(health: &'a Value, region: &str) -> &'a Value {
    health["checks"]["dynamodb:region"]
        .as_array()
        .expect("the region checks")
        .iter()
        .find(|c| c["componentId"] == region)
        .unwrap_or_else(|| panic!("a check of {region} in {health}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_timeline_and_metrics_through_a_kill_and_a_failback() {
    let snapshotter = recorder();
    let mut regions = regions(&["obs-east", "obs-west"]).await;
    let table = Table::builder(TABLE)
        .region(region(regions.region("obs-east").unwrap()))
        .region(region(regions.region("obs-west").unwrap()))
        .timeouts(
            Timeouts::new()
                .attempt(Duration::from_secs(1))
                .operation(Duration::from_secs(4)),
        )
        // No heartbeat: the first failure of the incident is then one of the workload's own
        // attempts, which the test can time.
        .heartbeat(None)
        .failback(Failback::After(Duration::from_secs(2)))
        .build()
        .expect("table builds");
    let router = "dynamodb:orders";
    let log: Log = Arc::default();

    // Steady: pass, every region checked, the preferred one active.
    for n in 0..10 {
        assert!(logged_put(&table, &log, n).await, "steady put {n}");
    }
    let health = serde_json::to_value(table.health()).unwrap();
    assert_eq!(health["status"], "pass", "{health}");
    assert_eq!(
        health["checks"]["dynamodb:region"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let east = check(&health, "obs-east");
    assert_eq!(east["observedValue"]["active"], true);
    assert_eq!(east["observedValue"]["state"], "up");
    assert_eq!(east["observedValue"]["tableName"], TABLE);
    assert!(east["observedValue"]["latencyMs"].as_f64().unwrap() > 0.0);
    assert_eq!(check(&health, "obs-west")["observedValue"]["active"], false);

    // Kill the active region: the workload moves on; the health says warn.
    regions
        .region_mut("obs-east")
        .unwrap()
        .kill()
        .await
        .unwrap();
    let mut n = 10;
    timeout(SCENARIO_BOUND, async {
        while measured_gap(&log, "obs-east", "obs-west").is_none() {
            n += 1;
            logged_put(&table, &log, n).await;
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the workload reaches obs-west");
    let gap = measured_gap(&log, "obs-east", "obs-west").unwrap();
    let health = serde_json::to_value(table.health()).unwrap();
    println!("health after the kill: {health}");
    assert_eq!(health["status"], "warn", "{health}");
    let east = check(&health, "obs-east");
    assert_eq!(east["status"], "warn");
    assert_ne!(east["observedValue"]["state"], "up");
    assert_eq!(east["observedValue"]["active"], false);
    let west = check(&health, "obs-west");
    assert_eq!(west["status"], "warn", "failed over: {west}");
    assert_eq!(west["observedValue"]["active"], true);
    assert_eq!(west["observedValue"]["generation"], 1);
    assert_eq!(table.health().status, Status::Warn);

    // The timeline's phases of that failover add up to the gap the workload measured.
    let failover = table.timeline().last_failover().expect("a failover");
    assert_eq!(
        (failover.from.as_str(), failover.to.as_str()),
        ("obs-east", "obs-west")
    );
    let p = failover.phases;
    let sum = p.detection + p.rediscovery + p.switch + p.first_success;
    assert_eq!(sum, p.total());
    let (sum_ms, gap_ms) = (sum.as_secs_f64() * 1e3, gap.as_secs_f64() * 1e3);
    println!(
        "failover: detection {:?} rediscovery {:?} switch {:?} first success {:?}; \
         phases sum {sum_ms:.3} ms, measured gap {gap_ms:.3} ms",
        p.detection, p.rediscovery, p.switch, p.first_success
    );
    assert!(
        (sum_ms - gap_ms).abs() <= 0.05 * gap_ms + 0.1,
        "phases sum {sum_ms:.3} ms vs measured gap {gap_ms:.3} ms"
    );
    let kinds: Vec<&str> = table
        .timeline()
        .events()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|n| *n == k)
            .unwrap_or_else(|| panic!("{k} in {kinds:?}"))
    };
    assert!(
        at("down") < at("switch") && at("switch") < at("failover"),
        "{kinds:?}"
    );
    let json = serde_json::to_value(table.timeline()).unwrap();
    assert_eq!(json["failovers"][0]["from"], "obs-east", "{json}");

    // Back: restarted (empty, refilled as a Global Table would be), probed up, failed back.
    let east = regions.region_mut("obs-east").unwrap();
    east.restart().await.unwrap();
    east.create_table(TABLE, "pk").await.unwrap();
    regions
        .copy_items(TABLE, "obs-west", "obs-east")
        .await
        .unwrap();
    timeout(SCENARIO_BOUND, async {
        while table.active_region() != "obs-east" {
            n += 1;
            logged_put(&table, &log, n).await;
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("fails back to obs-east");
    let health = serde_json::to_value(table.health()).unwrap();
    assert_eq!(health["status"], "pass", "{health}");
    assert_eq!(check(&health, "obs-east")["observedValue"]["generation"], 2);
    let events = table.timeline().events();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Switch { to, .. } if to == "obs-east")),
        "{events:?}"
    );

    // The recorder saw the table's switches and attempts under its router label.
    let snapshot = snapshotter.snapshot().into_vec();
    let switches = |reason| {
        counter(
            &snapshot,
            "switchover.switches",
            &[("router", router), ("reason", reason)],
        )
    };
    assert_eq!(switches("failover"), 1);
    assert_eq!(switches("failback"), 1);
    let attempts = |outcome| {
        counter(
            &snapshot,
            "switchover.attempts",
            &[("router", router), ("outcome", outcome)],
        )
    };
    assert!(
        attempts("success") >= n,
        "{} successes for {n} puts",
        attempts("success")
    );
    assert!(
        attempts("transient") >= 1,
        "the kill's failed attempts are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_only_when_no_region_can_take_writes() {
    recorder();
    let mut regions = regions(&["solo-1"]).await;
    let table = Table::builder(TABLE)
        .region(region(regions.region("solo-1").unwrap()))
        .heartbeat(None)
        .build()
        .expect("table builds");
    table.put_item(item("a", 1)).send().await.expect("put");
    assert_eq!(table.health().status, Status::Pass);

    regions.region_mut("solo-1").unwrap().kill().await.unwrap();
    for _ in 0..3 {
        let _ = table.put_item(item("a", 2)).send().await;
    }
    let health = table.health();
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(health.status, Status::Fail, "{json}");
    assert_eq!(health.status.http_code(), 503);
    let solo = check(&json, "solo-1");
    assert_eq!(solo["status"], "fail");
    assert!(
        solo["output"]
            .as_str()
            .unwrap()
            .contains("no primary candidate"),
        "{solo}"
    );
}

/// Every region's heartbeat (the default 200 ms canary) as `switchover.heartbeat.duration`, at
/// its rate, on a recorder of this test only (current-thread runtime: every task of the table
/// records to it).
#[tokio::test]
async fn each_region_heartbeats_at_its_rate() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let regions = regions(&["beat-east", "beat-west"]).await;
    let table = Table::builder(TABLE)
        .region(region(regions.region("beat-east").unwrap()))
        .region(region(regions.region("beat-west").unwrap()))
        .build()
        .expect("table builds");
    table.put_item(item("a", 1)).send().await.expect("put");
    let _ = take(&snap);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let beats = take(&snap);
    let window = started.elapsed().as_secs_f64();
    assert_heartbeat_rate(
        &beats,
        "dynamodb:orders",
        &["beat-east", "beat-west"],
        window,
    );
}

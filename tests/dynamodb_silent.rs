//! Silent regions against real DynamoDB Local processes: the preferred region is frozen
//! (`SIGSTOP`: the kernel accepts connections, nothing answers). The first success comes from
//! the next region, later calls do not wait out the frozen one, and the table fails back after
//! the region resumes. Real time: attempt counts and regions are asserted, timings printed and
//! held only to generous bounds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::dynamo::{Item, RegionConfig, Table};
use switchover::health::HealthState;
use switchover::route::Failback;
use switchover::testing::{DynamoDbLocal, DynamoDbRegions};
use tokio::time::{Instant, sleep, timeout};

const TABLE: &str = "orders";

fn item(pk: &str, n: u64) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("n".to_owned(), AttributeValue::N(n.to_string())),
    ])
}

async fn regions(names: &[&str]) -> DynamoDbRegions {
    let regions = DynamoDbRegions::start(names)
        .await
        .expect("DynamoDB Local regions start");
    regions.create_table(TABLE, "pk").await.expect("table");
    for node in regions.regions() {
        let client = node.client();
        for i in 0..20 {
            client
                .put_item()
                .table_name(TABLE)
                .set_item(Some(item("warm", i)))
                .send()
                .await
                .expect("warm-up put");
        }
    }
    regions
}

fn region(node: &DynamoDbLocal) -> RegionConfig {
    RegionConfig::endpoint(node.region(), node.endpoint_url())
}

/// Every attempt: (region, started, ended, succeeded, is a write).
type Log = Arc<Mutex<Vec<(String, Instant, Instant, bool, bool)>>>;

/// One whole-item put (idempotent) and one eventually consistent get, every attempt logged;
/// `true` when both succeeded.
async fn put_and_get(table: &Table, log: &Log, n: u64) -> bool {
    let logged = |write: bool| {
        let log = Arc::clone(log);
        move |region: String, started: Instant, ok: bool| {
            log.lock()
                .unwrap()
                .push((region, started, Instant::now(), ok, write));
        }
    };
    let done = logged(true);
    let put = table
        .write(|client, name| {
            let (region, started, done) = (
                client.config().region().unwrap().to_string(),
                Instant::now(),
                done.clone(),
            );
            let fut = client
                .put_item()
                .table_name(name)
                .set_item(Some(item(&format!("k{n}"), n)))
                .send();
            async move {
                let out = fut.await;
                done(region, started, out.is_ok());
                out
            }
        })
        .idempotent(true)
        .send()
        .await;
    let done = logged(false);
    let get = table
        .read(|client, name| {
            let (region, started, done) = (
                client.config().region().unwrap().to_string(),
                Instant::now(),
                done.clone(),
            );
            let fut = client
                .get_item()
                .table_name(name)
                .key("pk", AttributeValue::S(format!("k{n}")))
                .send();
            async move {
                let out = fut.await;
                done(region, started, out.is_ok());
                out
            }
        })
        .send()
        .await;
    put.is_ok() && get.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_region_is_left_after_one_suspect_delay_and_failed_back_after_resume() {
    let mut regions = regions(&["frz-a", "frz-b"]).await;
    // Every setting is the handle's default but the failback delay (2 s, to keep it short).
    let table = Table::builder(TABLE)
        .region(region(regions.region("frz-a").unwrap()))
        .region(region(regions.region("frz-b").unwrap()))
        .failback(Failback::After(Duration::from_secs(2)))
        .build()
        .expect("table builds");
    let log: Log = Arc::default();
    let mut n = 0;
    for _ in 0..20 {
        n += 1;
        assert!(put_and_get(&table, &log, n).await, "steady {n}");
    }

    regions.region_mut("frz-a").unwrap().pause().unwrap();
    let frozen_at = Instant::now();
    let mut failed = 0;
    timeout(Duration::from_secs(30), async {
        while frozen_at.elapsed() < Duration::from_secs(3) {
            n += 1;
            if !put_and_get(&table, &log, n).await {
                failed += 1;
            }
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the workload keeps going");
    let after: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, started, ..)| *started >= frozen_at)
        .cloned()
        .collect();
    let first_in_b = |write: bool| {
        after
            .iter()
            .find(|(r, _, _, ok, w)| r == "frz-b" && *ok && *w == write)
            .map(|(_, _, ended, ..)| *ended - frozen_at)
    };
    let (first_get, first_put) = (first_in_b(false).unwrap(), first_in_b(true).unwrap());
    let in_a = after.iter().filter(|(r, ..)| r == "frz-a").count();
    let longest = after.iter().map(|(_, s, e, ..)| *e - *s).max().unwrap();
    println!(
        "frozen: first GetItem from frz-b {first_get:?}, first PutItem {first_put:?} after the \
         stop; {in_a} attempt(s) sent to frz-a after it, longest attempt {longest:?}; \
         {failed} failed op pair(s)"
    );
    assert_eq!(failed, 0, "idempotent puts and reads all succeed");
    // Only what was in flight at the stop (at most a put and a get) went to the frozen region:
    // nothing after it waited out the attempt timeout there.
    assert!(in_a <= 2, "{in_a} attempts in frz-a: {after:?}");
    assert!(first_get < Duration::from_secs(1) && first_put < Duration::from_secs(1));
    assert_eq!(table.region_state("frz-a"), Some(HealthState::Down));
    assert_eq!(table.active_region(), "frz-b");

    // Resume (SIGCONT): probed back up, then failed back after the 2 s delay.
    regions.region_mut("frz-a").unwrap().resume().unwrap();
    let resumed_at = Instant::now();
    timeout(Duration::from_secs(30), async {
        while table.active_region() != "frz-a" {
            n += 1;
            put_and_get(&table, &log, n).await;
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("fails back after the resume");
    println!("failed back {:?} after the resume", resumed_at.elapsed());
}

//! Throughput of one DynamoDB Local region through the table handle against the raw SDK client.
//!
//! - `raw`: `GetItem` / `PutItem` with the SDK client the handle built for the region (same
//!   timeouts, SDK retries off, same connection pool);
//! - `switchover`: the same requests through `Table::get_item` / `Table::put_item` (routing,
//!   retry executor, health recording, error classification).
//!
//! Loopback round trips to a Java emulator dominate both; the difference is the handle's
//! overhead. A last interleaved run compares the handle with its default heartbeat (every
//! 200 ms per region) against the same handle with `heartbeat(None)`: the heartbeat's cost on
//! throughput (`raw` there is heartbeat off, `switchover` heartbeat on). Needs `java` and DynamoDB Local (see `scripts/install-deps.sh`).
//!
//! Instructions by count, under callgrind (DynamoDB Local is another process, not counted):
//! `dynamodb --loop N raw|switchover|switchover-quiet` runs `N` `GetItem`s of one side after
//! the warm-up (`raw` is the SDK client of a handle without heartbeat, `switchover-quiet` a
//! handle without heartbeat); run it with `N` and `2N` and divide the difference by `N`.
//! `dynamodb --idle SECS default|no-heartbeat` leaves a handle idle for `SECS` seconds after the
//! warm-up; the differences of the counts, divided by `SECS`, are its background work's
//! instructions per second.

#[path = "support/interleave.rs"]
mod interleave;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{Criterion, criterion_group};
use switchover::dynamo::{RegionConfig, Table};
use switchover::testing::DynamoDbLocal;

const TABLE: &str = "bench";

fn item(pk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("v".to_owned(), AttributeValue::S("x".repeat(100))),
    ])
}

fn key(pk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk.to_owned()))])
}

/// Starts one region with the table and a handle on it, warmed up.
fn start(rt: &tokio::runtime::Runtime) -> (DynamoDbLocal, Table) {
    start_with(rt, true)
}

/// [`start`], the handle with its default heartbeat or none.
fn start_with(rt: &tokio::runtime::Runtime, heartbeat: bool) -> (DynamoDbLocal, Table) {
    rt.block_on(async {
        let node = DynamoDbLocal::start("bench-1")
            .await
            .expect("DynamoDB Local starts");
        node.create_table(TABLE, "pk").await.expect("table");
        let builder =
            Table::builder(TABLE).region(RegionConfig::endpoint("bench-1", node.endpoint_url()));
        let builder = if heartbeat {
            builder
        } else {
            builder.heartbeat(None)
        };
        let table = builder.build().expect("table handle");
        // Warm the JVM up.
        for _ in 0..500 {
            table.put_item(item("k")).send().await.expect("warm-up put");
            table.get_item(key("k")).send().await.expect("warm-up get");
        }
        (node, table)
    })
}

/// `GetItem` of the bench's item straight through the SDK client.
async fn raw_get(client: &Client) {
    client
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key("k")))
        .send()
        .await
        .expect("get");
}

fn get_item(c: &mut Criterion, rt: &tokio::runtime::Runtime, table: &Table, client: &Client) {
    let mut group = c.benchmark_group("dynamodb_get_item");
    group
        .sample_size(60)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async { raw_get(client).await })
    });
    group.bench_function("switchover", |b| {
        b.to_async(rt)
            .iter(|| async { table.get_item(key("k")).send().await.expect("get") })
    });
    group.finish();
}

fn put_item(c: &mut Criterion, rt: &tokio::runtime::Runtime, table: &Table, client: &Client) {
    let mut group = c.benchmark_group("dynamodb_put_item");
    group
        .sample_size(60)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async {
            client
                .put_item()
                .table_name(TABLE)
                .set_item(Some(item("k")))
                .send()
                .await
                .expect("put")
        })
    });
    group.bench_function("switchover", |b| {
        b.to_async(rt)
            .iter(|| async { table.put_item(item("k")).send().await.expect("put") })
    });
    group.finish();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (node, table) = start(&rt);
    let (client, name) = table.region_client("bench-1").expect("region");
    assert_eq!(name, TABLE);
    let client = client.clone();

    get_item(c, &rt, &table, &client);
    put_item(c, &rt, &table, &client);

    // Drift-proof comparison: alternate blocks of raw and handle calls.
    rt.block_on(interleave::interleaved(
        "get_item",
        30,
        100,
        || async {
            raw_get(&client).await;
        },
        || async {
            table.get_item(key("k")).send().await.expect("get");
        },
    ));
    // The heartbeat's cost: the same region through a handle without heartbeat (`raw` in the
    // printout) and through the default one (`switchover`), interleaved.
    let quiet = rt.block_on(async {
        Table::builder(TABLE)
            .region(RegionConfig::endpoint("bench-1", node.endpoint_url()))
            .heartbeat(None)
            .build()
            .expect("table handle")
    });
    rt.block_on(interleave::interleaved(
        "get_item heartbeat off (raw) vs on (switchover)",
        30,
        100,
        || async {
            quiet.get_item(key("k")).send().await.expect("get");
        },
        || async {
            table.get_item(key("k")).send().await.expect("get");
        },
    ));
    drop(quiet);
    drop(table);
    drop(node);
}

criterion_group!(benches, bench);

/// `--loop N raw|switchover|switchover-quiet`: `N` `GetItem`s through one side.
fn plain_loop(args: &[String]) {
    let usage = "usage: dynamodb --loop N raw|switchover|switchover-quiet";
    let [n, side] = args else { panic!("{usage}") };
    let n: u32 = n.parse().expect("N");
    let (raw, heartbeat) = match side.as_str() {
        "raw" => (true, false),
        "switchover" => (false, true),
        "switchover-quiet" => (false, false),
        _ => panic!("{usage}"),
    };
    let rt = runtime();
    let (node, table) = start_with(&rt, heartbeat);
    let client = table.region_client("bench-1").expect("region").0.clone();
    let start = std::time::Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            if raw {
                raw_get(&client).await;
            } else {
                table.get_item(key("k")).send().await.expect("get");
            }
        }
    });
    println!("{side}: {:?} per call ({n} calls)", start.elapsed() / n);
    drop(table);
    drop(node);
}

/// `--idle SECS default|no-heartbeat`: a warmed-up handle left idle for `SECS` seconds.
fn idle(args: &[String]) {
    let usage = "usage: dynamodb --idle SECS default|no-heartbeat";
    let [secs, side] = args else {
        panic!("{usage}")
    };
    let secs: u64 = secs.parse().expect("SECS");
    let heartbeat = match side.as_str() {
        "default" => true,
        "no-heartbeat" => false,
        _ => panic!("{usage}"),
    };
    let rt = runtime();
    let (node, table) = start_with(&rt, heartbeat);
    rt.block_on(async { tokio::time::sleep(Duration::from_secs(secs)).await });
    println!("idle {secs} s");
    drop(table);
    drop(node);
}

fn main() {
    if interleave::run_mode(&[("--loop", plain_loop), ("--idle", idle)]) {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

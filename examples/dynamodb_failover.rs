//! A DynamoDB region failover drill against two real DynamoDB Local "regions".
//!
//! Starts `us-east-1` (preferred) and `us-west-2`, creates the table in both, and runs a write
//! workload and a read workload through one [`Table`] handle. After two seconds the preferred
//! region fails; the workload keeps going on `us-west-2`; four seconds later the region comes
//! back (restarted, and refilled from `us-west-2` as a Global Table would catch up), and the
//! handle fails back once the region has stayed healthy for the failback delay.
//!
//! ```text
//! cargo run --example dynamodb_failover --features dynamodb,testing             # kill (SIGKILL)
//! cargo run --example dynamodb_failover --features dynamodb,testing -- blackhole # network black hole
//! ```
//!
//! Every setting of the handle is its default except the failback delay (5 s instead of 30 s,
//! to keep the drill short). Writes are whole-item puts (idempotent). The last line is
//! `summary: backend=dynamodb switches=N failed_ops=N max_gap_ms=N`, where `max_gap_ms` is the
//! longest time without a successful write, measured.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::dynamo::{RegionConfig, Table};
use switchover::route::{Failback, RouteEvent};
use switchover::testing::{DynamoDbRegions, FaultProxy, Mode};
use tokio::sync::Mutex;
use tokio::time::Instant;

const TABLE: &str = "drill";
const PREFERRED: &str = "us-east-1";
const SECONDARY: &str = "us-west-2";
const FAILBACK: Duration = Duration::from_secs(5);

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn item(pk: String, n: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("n".to_owned(), AttributeValue::N(n.to_string())),
    ])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let blackhole = std::env::args().nth(1).as_deref() == Some("blackhole");
    let mut regions = DynamoDbRegions::start(&[PREFERRED, SECONDARY]).await?;
    regions.create_table(TABLE, "pk").await?;
    // Warm the JVMs up: the first requests to a fresh DynamoDB Local are slow.
    for node in regions.regions() {
        let client = node.client();
        for i in 0..20 {
            client
                .put_item()
                .table_name(TABLE)
                .set_item(Some(item("warm".into(), i)))
                .send()
                .await?;
        }
    }
    let proxy = FaultProxy::start(regions.region(PREFERRED)?.addr()).await?;
    let preferred_url = if blackhole {
        format!("http://{}", proxy.addr())
    } else {
        regions.region(PREFERRED)?.endpoint_url()
    };

    let table = Table::builder(TABLE)
        .region(RegionConfig::endpoint(PREFERRED, preferred_url))
        .region(RegionConfig::endpoint(
            SECONDARY,
            regions.region(SECONDARY)?.endpoint_url(),
        ))
        .failback(Failback::After(FAILBACK))
        .build()?;

    let start = Instant::now();
    let mut route = table.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    // (time of the last successful write, longest gap so far)
    let gaps = Arc::new(Mutex::new((Instant::now(), Duration::ZERO)));
    println!(
        "[{:>6} ms] start: table `{TABLE}` in {PREFERRED} (preferred) and {SECONDARY}; fault = {}",
        ms(start),
        if blackhole {
            "black hole (proxy)"
        } else {
            "kill (SIGKILL)"
        }
    );

    let writer = {
        let (table, stop, failed, writes, gaps) = (
            table.clone(),
            Arc::clone(&stop),
            Arc::clone(&failed),
            Arc::clone(&writes),
            Arc::clone(&gaps),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match table.put_item(item(format!("order-{n}"), n)).send().await {
                    Ok(_) => {
                        writes.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        let mut g = gaps.lock().await;
                        g.1 = g.1.max(now - g.0);
                        g.0 = now;
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        println!("[{:>6} ms] write order-{n} FAILED: {e}", ms(start));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let reader = {
        let (table, stop, failed, reads) = (
            table.clone(),
            Arc::clone(&stop),
            Arc::clone(&failed),
            Arc::clone(&reads),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = HashMap::from([(
                    "pk".to_owned(),
                    AttributeValue::S(format!("order-{}", n / 2)),
                )]);
                match table.get_item(key).send().await {
                    Ok(_) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        println!("[{:>6} ms] read FAILED: {e}", ms(start));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut switches = 0u32;
    let mut report = |route: &mut tokio::sync::mpsc::UnboundedReceiver<_>| {
        while let Ok(ev) = route.try_recv() {
            if let RouteEvent::Switched {
                from,
                to,
                generation,
                reason,
                at,
                ..
            } = ev
            {
                switches += 1;
                println!(
                    "[{:>6} ms] switch: {from} -> {to} ({reason}, generation {generation})",
                    at.duration_since(start).as_millis()
                );
            }
        }
    };
    let progress = |label: &str| {
        println!(
            "[{:>6} ms] {label}: writes={} reads={} active={}",
            ms(start),
            writes.load(Ordering::Relaxed),
            reads.load(Ordering::Relaxed),
            table.active_region()
        );
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    progress("steady");
    if blackhole {
        proxy.set_mode(Mode::BlackHole).await?;
        println!("[{:>6} ms] fault: {PREFERRED} black-holed", ms(start));
    } else {
        regions.region_mut(PREFERRED)?.kill().await?;
        println!("[{:>6} ms] fault: {PREFERRED} killed", ms(start));
    }
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report(&mut route);
        progress("degraded");
    }

    if blackhole {
        proxy.set_mode(Mode::Pass).await?;
        proxy.reset_connections();
        println!("[{:>6} ms] restore: {PREFERRED} reachable again", ms(start));
    } else {
        regions.region_mut(PREFERRED)?.restart().await?;
        regions.region(PREFERRED)?.create_table(TABLE, "pk").await?;
        println!(
            "[{:>6} ms] restore: {PREFERRED} restarted (empty)",
            ms(start)
        );
    }
    let copied = regions.copy_items(TABLE, SECONDARY, PREFERRED).await?;
    println!(
        "[{:>6} ms] restore: {copied} items replicated {SECONDARY} -> {PREFERRED}",
        ms(start)
    );

    let deadline = Instant::now() + FAILBACK + Duration::from_secs(20);
    while table.active_region() != PREFERRED && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report(&mut route);
    }
    report(&mut route);
    progress("recovered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    writer.await?;
    reader.await?;
    report(&mut route);
    progress("done");

    // The gap still open when the workload stopped counts too.
    let (last_ok, longest) = *gaps.lock().await;
    let max_gap = longest.max(stopped_at.saturating_duration_since(last_ok));
    println!(
        "summary: backend=dynamodb switches={switches} failed_ops={} max_gap_ms={}",
        failed.load(Ordering::Relaxed),
        max_gap.as_millis()
    );
    Ok(())
}

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
//! cargo run --example dynamodb_failover --features dynamodb,testing -- silent    # frozen (SIGSTOP)
//! ```
//!
//! Every setting of the handle is its default except the failback delay (5 s instead of 30 s,
//! to keep the drill short). Writes are whole-item puts (idempotent). The last line is
//! `summary: backend=dynamodb switches=N failed_ops=N max_gap_ms=N`, where `max_gap_ms` is the
//! longest time without a successful write, measured. Before it, the phases of the failover
//! from the table's timeline ([`Table::timeline`]), one line each.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::dynamo::{RegionConfig, RegionName, Table};
use switchover::route::{Failback, RouteEvent, SwitchReason};
use switchover::testing::{DynamoDbRegions, FaultProxy, Mode};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
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

/// The counters the workload tasks share.
#[derive(Clone)]
struct Workload {
    start: Instant,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    /// (time of the last successful write, longest gap so far)
    gaps: Arc<Mutex<(Instant, Duration)>>,
}

impl Workload {
    fn new(start: Instant) -> Self {
        Workload {
            start,
            stop: Arc::new(AtomicBool::new(false)),
            failed: Arc::new(AtomicU64::new(0)),
            writes: Arc::new(AtomicU64::new(0)),
            reads: Arc::new(AtomicU64::new(0)),
            gaps: Arc::new(Mutex::new((Instant::now(), Duration::ZERO))),
        }
    }

    /// Whole-item puts of `order-N`, every 5 ms, until stopped.
    fn spawn_writer(&self, table: Table) -> JoinHandle<()> {
        let w = self.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !w.stop.load(Ordering::Relaxed) {
                n += 1;
                match table.put_item(item(format!("order-{n}"), n)).send().await {
                    Ok(_) => {
                        w.writes.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        let mut g = w.gaps.lock().await;
                        g.1 = g.1.max(now - g.0);
                        g.0 = now;
                    }
                    Err(e) => {
                        w.failed.fetch_add(1, Ordering::Relaxed);
                        println!("[{:>6} ms] write order-{n} FAILED: {e}", ms(w.start));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }

    /// Eventually consistent gets of recent keys, every 5 ms, until stopped.
    fn spawn_reader(&self, table: Table) -> JoinHandle<()> {
        let w = self.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !w.stop.load(Ordering::Relaxed) {
                n += 1;
                let key = HashMap::from([(
                    "pk".to_owned(),
                    AttributeValue::S(format!("order-{}", n / 2)),
                )]);
                match table.get_item(key).send().await {
                    Ok(_) => {
                        w.reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        w.failed.fetch_add(1, Ordering::Relaxed);
                        println!("[{:>6} ms] read FAILED: {e}", ms(w.start));
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }

    fn progress(&self, label: &str, table: &Table) {
        println!(
            "[{:>6} ms] {label}: writes={} reads={} active={}",
            ms(self.start),
            self.writes.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
            table.active_region()
        );
    }
}

/// Prints the switches received so far; returns how many.
fn report(route: &mut mpsc::UnboundedReceiver<RouteEvent<RegionName>>, start: Instant) -> u32 {
    let mut switches = 0;
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
    switches
}

/// Prints the phases of the table's first failover, one line each, from its timeline.
fn print_timeline(table: &Table) {
    let timeline = table.timeline();
    let Some(f) = timeline
        .failovers()
        .into_iter()
        .find(|f| f.reason == SwitchReason::Failover)
    else {
        println!("timeline: no failover recorded");
        return;
    };
    println!(
        "timeline: failover {} -> {} (generation {}, {} switch(es))",
        f.from, f.to, f.generation, f.switches
    );
    let p = f.phases;
    for (phase, d) in [
        ("detection", p.detection),
        ("rediscovery", p.rediscovery),
        ("switch", p.switch),
        ("first_success", p.first_success),
        ("total", p.total()),
    ] {
        println!("timeline:   {phase:<13} {:>9.1} ms", d.as_secs_f64() * 1e3);
    }
}

/// Starts the two regions with the table in both, warmed up.
async fn start_regions() -> Result<DynamoDbRegions, Box<dyn std::error::Error>> {
    let regions = DynamoDbRegions::start(&[PREFERRED, SECONDARY]).await?;
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
    Ok(regions)
}

/// How the preferred region fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL: connections refused.
    Kill,
    /// The fault proxy accepts and never answers.
    BlackHole,
    /// SIGSTOP: the process is frozen, the kernel still accepts connections.
    Silent,
}

/// Takes the preferred region out.
async fn inject(
    fault: Fault,
    regions: &mut DynamoDbRegions,
    proxy: &FaultProxy,
    start: Instant,
) -> Result<(), Box<dyn std::error::Error>> {
    match fault {
        Fault::BlackHole => {
            proxy.set_mode(Mode::BlackHole).await?;
            println!("[{:>6} ms] fault: {PREFERRED} black-holed", ms(start));
        }
        Fault::Silent => {
            regions.region_mut(PREFERRED)?.pause()?;
            println!("[{:>6} ms] fault: {PREFERRED} frozen (SIGSTOP)", ms(start));
        }
        Fault::Kill => {
            regions.region_mut(PREFERRED)?.kill().await?;
            println!("[{:>6} ms] fault: {PREFERRED} killed", ms(start));
        }
    }
    Ok(())
}

/// Brings the preferred region back and refills it from the secondary.
async fn restore(
    fault: Fault,
    regions: &mut DynamoDbRegions,
    proxy: &FaultProxy,
    start: Instant,
) -> Result<(), Box<dyn std::error::Error>> {
    if fault == Fault::BlackHole {
        proxy.set_mode(Mode::Pass).await?;
        proxy.reset_connections();
        println!("[{:>6} ms] restore: {PREFERRED} reachable again", ms(start));
    } else if fault == Fault::Silent {
        regions.region_mut(PREFERRED)?.resume()?;
        println!(
            "[{:>6} ms] restore: {PREFERRED} resumed (SIGCONT)",
            ms(start)
        );
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
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fault = match std::env::args().nth(1).as_deref() {
        Some("blackhole") => Fault::BlackHole,
        Some("silent") => Fault::Silent,
        _ => Fault::Kill,
    };
    let blackhole = fault == Fault::BlackHole;
    let mut regions = start_regions().await?;
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
    let work = Workload::new(start);
    let fault_name = match fault {
        Fault::BlackHole => "black hole (proxy)",
        Fault::Silent => "frozen (SIGSTOP)",
        Fault::Kill => "kill (SIGKILL)",
    };
    println!(
        "[{:>6} ms] start: table `{TABLE}` in {PREFERRED} (preferred) and {SECONDARY}; fault = {fault_name}",
        ms(start)
    );
    let writer = work.spawn_writer(table.clone());
    let reader = work.spawn_reader(table.clone());

    tokio::time::sleep(Duration::from_secs(2)).await;
    work.progress("steady", &table);
    inject(fault, &mut regions, &proxy, start).await?;
    let mut switches = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        switches += report(&mut route, start);
        work.progress("degraded", &table);
    }
    restore(fault, &mut regions, &proxy, start).await?;

    let deadline = Instant::now() + FAILBACK + Duration::from_secs(20);
    while table.active_region() != PREFERRED && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        switches += report(&mut route, start);
    }
    switches += report(&mut route, start);
    work.progress("recovered", &table);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = Instant::now();
    work.stop.store(true, Ordering::Relaxed);
    writer.await?;
    reader.await?;
    switches += report(&mut route, start);
    work.progress("done", &table);

    print_timeline(&table);
    // The gap still open when the workload stopped counts too.
    let (last_ok, longest) = *work.gaps.lock().await;
    let max_gap = longest.max(stopped_at.saturating_duration_since(last_ok));
    println!(
        "summary: backend=dynamodb switches={switches} failed_ops={} max_gap_ms={}",
        work.failed.load(Ordering::Relaxed),
        max_gap.as_millis()
    );
    Ok(())
}

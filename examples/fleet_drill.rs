//! A fleet drill: twenty instances in one process, each with its own [`Table`] handle and its
//! own fault proxies to two DynamoDB Local regions, writing items of one shared key space;
//! a third DynamoDB Local holds the fleet lease's control record.
//!
//! ```text
//! cargo run --release --all-features --example fleet_drill            # baseline, then coordinated
//! cargo run --release --all-features --example fleet_drill -- baseline
//! cargo run --release --all-features --example fleet_drill -- coordinated
//! ```
//!
//! Phases: all reach both regions (4 s); half the instances (10–19) lose `us-east-1`, their
//! proxies black-hole it (10 s); `us-east-1` is black-holed for every instance (10 s); it
//! returns (12 s; failback after 5 s of every instance reaching it).
//!
//! - **baseline** (`coordinated=no`): every handle decides alone, as before the lease.
//! - **coordinated** (`coordinated=yes`): every handle follows the fleet lease
//!   ([`TableBuilder::authority`](switchover::dynamo::TableBuilder::authority)).
//!
//! A **split write** is a write accepted by a region other than the fleet's active region of
//! the epoch its instance routed under (coordinated; each epoch's region is taken from what
//! the instances followed), or other than the region most instances were routing to at that
//! moment (baseline; a tie counts for the preferred region). The region that accepted a write
//! is known from the physical table name its attempt was sent to (each region's table has its
//! own). `follow_ms_max` is the longest time from a decision's `decided_at` (written by the
//! holder) to the last instance routing by it (coordinated; 0 in the baseline, where nothing is
//! decided for the fleet). Every failed write is counted and explained per phase.
//!
//! Writes: every instance puts one whole item (`k0`..`k99`) every 200 ms, with a retry policy
//! of 40 attempts (backoff 25..250 ms) within the 2 s operation deadline, so a write waits out
//! its deadline for its region (or a new decision) rather than failing at the fourth attempt.
//! The same policy runs in both modes.
//!
//! Each run ends with
//! `summary: backend=dynamodb instances=20 coordinated=yes|no split_writes=N follow_ms_max=N failed_ops=N`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::dynamo::fleet::FleetLease;
use switchover::dynamo::{RegionConfig, Table};
use switchover::retry::{ExponentialBackoff, Jitter, RetryPolicy};
use switchover::route::{AuthorityEvent, Failback};
use switchover::testing::{DynamoDbLocal, DynamoDbRegions, FaultProxy, Mode};
use tokio::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const INSTANCES: usize = 20;
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
const CONTROL: &str = "fleet_control";
const FAILBACK: Duration = Duration::from_secs(5);
const PHASES: [(&str, Duration); 4] = [
    ("all reach both", Duration::from_secs(4)),
    ("half lose us-east-1", Duration::from_secs(10)),
    ("us-east-1 dead for all", Duration::from_secs(10)),
    ("us-east-1 back", Duration::from_secs(12)),
];

struct Instance {
    table: Table,
    /// The proxies to us-east-1 and us-west-2.
    proxies: [FaultProxy; 2],
}

/// A write the fleet accepted.
struct Accepted {
    region: u8,
    epoch: u64,
    majority: u8,
    /// The region of the newest decision at that moment (coordinated).
    latest: Option<u8>,
}

/// A write that failed.
struct Failed {
    phase: usize,
    instance: usize,
    error: String,
    /// Whether the instance could reach the region its write was routed to.
    reaches_active: bool,
}

#[derive(Default)]
struct Log {
    accepted: Vec<Accepted>,
    failed: Vec<Failed>,
    /// (instance, epoch, primary, lag ms) of every Followed event.
    followed: Vec<(usize, u64, String, Option<u64>)>,
    /// The newest epoch seen followed, and its region.
    latest: Option<(u64, u8)>,
}

fn code(region: &str) -> u8 {
    u8::from(region != EAST)
}

fn policy() -> Res<RetryPolicy> {
    Ok(RetryPolicy::builder()
        .max_attempts(40)
        .deadline(Duration::from_secs(2))
        .backoff(
            ExponentialBackoff::builder()
                .base(Duration::from_millis(25))
                .cap(Duration::from_millis(250))
                .jitter(Jitter::Full)
                .build()?,
        )
        .build()?)
}

async fn build_fleet(
    regions: &DynamoDbRegions,
    control: &DynamoDbLocal,
    run: usize,
    coordinated: bool,
) -> Res<Vec<Instance>> {
    let mut fleet = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let proxies = [
            FaultProxy::start(regions.region(EAST)?.addr()).await?,
            FaultProxy::start(regions.region(WEST)?.addr()).await?,
        ];
        let mut builder = Table::builder("drill")
            .region(
                RegionConfig::endpoint(EAST, format!("http://{}", proxies[0].addr()))
                    .table_name(format!("drill_{run}_east")),
            )
            .region(
                RegionConfig::endpoint(WEST, format!("http://{}", proxies[1].addr()))
                    .table_name(format!("drill_{run}_west")),
            )
            .failback(Failback::After(FAILBACK))
            .retry_policy(policy()?);
        if coordinated {
            builder = builder.authority(
                FleetLease::dynamodb(
                    control.client(),
                    CONTROL,
                    format!("drill-{run}"),
                    format!("i{i}"),
                )
                .failback_after(FAILBACK),
            );
        }
        fleet.push(Instance {
            table: builder.build()?,
            proxies,
        });
    }
    Ok(fleet)
}

/// One instance's writer: a whole-item put of a random shared key every 200 ms.
async fn writer(
    i: usize,
    fleet: Arc<Vec<Instance>>,
    log: Arc<Mutex<Log>>,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
) {
    let me = &fleet[i].table;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let n = seq.fetch_add(1, Ordering::Relaxed);
        let key = format!("k{}", n.wrapping_mul(2_654_435_761) % 100);
        let sent: Mutex<Option<(u8, u64)>> = Mutex::new(None);
        let out = me
            .write(|client, table| {
                let epoch = me.follower().map_or(0, |f| f.epoch());
                let region = u8::from(table.ends_with("_west"));
                *sent.lock().unwrap() = Some((region, epoch));
                client
                    .put_item()
                    .table_name(table)
                    .item("pk", AttributeValue::S(key.clone()))
                    .item("by", AttributeValue::S(format!("i{i}")))
                    .item("n", AttributeValue::N(n.to_string()))
                    .send()
            })
            .idempotent(true)
            .send()
            .await;
        let sent = *sent.lock().unwrap();
        match out {
            Ok(_) => {
                let Some((region, epoch)) = sent else {
                    continue;
                };
                let east = fleet
                    .iter()
                    .filter(|x| x.table.router().active().id() == EAST)
                    .count();
                let majority = u8::from(east * 2 < INSTANCES);
                let mut log = log.lock().unwrap();
                let latest = log.latest.map(|(_, r)| r);
                log.accepted.push(Accepted {
                    region,
                    epoch,
                    majority,
                    latest,
                });
            }
            Err(e) => {
                let active = me.router().active();
                let reaches_active = active.endpoint().is_available();
                log.lock().unwrap().failed.push(Failed {
                    phase: usize::from(phase.load(Ordering::Relaxed)),
                    instance: i,
                    error: format!("{e}"),
                    reaches_active,
                });
            }
        }
    }
}

/// Collects every instance's Followed events.
fn watch(fleet: &[Instance], log: &Arc<Mutex<Log>>) {
    for (i, inst) in fleet.iter().enumerate() {
        let Some(f) = inst.table.follower() else {
            continue;
        };
        let mut ev = f.subscribe();
        let log = Arc::clone(log);
        tokio::spawn(async move {
            while let Some(e) = ev.recv().await {
                if let AuthorityEvent::Followed {
                    primary,
                    epoch,
                    lag,
                    ..
                } = e
                {
                    let lag = lag.map(|d| d.as_millis() as u64);
                    let mut log = log.lock().unwrap();
                    log.followed
                        .push((i, epoch, primary.as_str().to_owned(), lag));
                    if log.latest.is_none_or(|(e, _)| epoch > e) {
                        log.latest = Some((epoch, code(primary.as_str())));
                    }
                }
            }
        });
    }
}

async fn set_east(fleet: &[Instance], who: std::ops::Range<usize>, mode: Mode) -> Res<()> {
    for inst in &fleet[who] {
        if mode == Mode::Pass {
            // Drop what the hole held: those requests timed out long ago.
            inst.proxies[0].set_mode(Mode::Reset).await?;
        }
        inst.proxies[0].set_mode(mode).await?;
    }
    Ok(())
}

fn status(fleet: &[Instance], start: Instant, label: &str) {
    let on_east = fleet
        .iter()
        .filter(|x| x.table.router().active().id() == EAST)
        .count();
    let epochs: BTreeMap<u64, usize> = fleet.iter().fold(BTreeMap::new(), |mut m, x| {
        *m.entry(x.table.follower().map_or(0, |f| f.epoch()))
            .or_default() += 1;
        m
    });
    println!(
        "[{:>6} ms] {label}: routing to {EAST}: {on_east}, to {WEST}: {}; epochs {epochs:?}",
        start.elapsed().as_millis(),
        INSTANCES - on_east
    );
}

async fn run(
    regions: &DynamoDbRegions,
    control: &DynamoDbLocal,
    run: usize,
    coordinated: bool,
) -> Res<()> {
    regions
        .region(EAST)?
        .create_table(&format!("drill_{run}_east"), "pk")
        .await?;
    regions
        .region(WEST)?
        .create_table(&format!("drill_{run}_west"), "pk")
        .await?;
    let fleet = Arc::new(build_fleet(regions, control, run, coordinated).await?);
    let log = Arc::new(Mutex::new(Log::default()));
    watch(&fleet, &log);
    // Steady state first: every instance reaches both regions and routes to us-east-1 (a
    // cold JVM can miss the first heartbeats; the fleet then fails back after 5 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let steady = || {
        fleet.iter().all(|x| {
            x.table
                .regions()
                .all(|r| x.table.region_state(r).is_some_and(|s| s.is_available()))
                && x.table.router().active().id() == EAST
                && x.table.follower().is_none_or(|f| f.epoch() > 0)
        })
    };
    while !steady() {
        if Instant::now() > deadline {
            return Err("the fleet did not settle on us-east-1 within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let (phase, stop, seq) = (
        Arc::new(AtomicU8::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let writers: Vec<_> = (0..INSTANCES)
        .map(|i| {
            tokio::spawn(writer(
                i,
                Arc::clone(&fleet),
                Arc::clone(&log),
                Arc::clone(&phase),
                Arc::clone(&stop),
                Arc::clone(&seq),
            ))
        })
        .collect();
    for (p, (label, d)) in PHASES.iter().enumerate() {
        phase.store(p as u8, Ordering::Relaxed);
        match p {
            1 => set_east(&fleet, INSTANCES / 2..INSTANCES, Mode::BlackHole).await?,
            2 => set_east(&fleet, 0..INSTANCES / 2, Mode::BlackHole).await?,
            3 => set_east(&fleet, 0..INSTANCES, Mode::Pass).await?,
            _ => {}
        }
        println!("[{:>6} ms] phase {p}: {label}", start.elapsed().as_millis());
        let end = Instant::now() + *d;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(2).min(end - Instant::now())).await;
            status(&fleet, start, label);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let log = log.lock().unwrap();
    summarize(&log, coordinated, run);
    Ok(())
}

fn summarize(log: &Log, coordinated: bool, run: usize) {
    // Each epoch's region, from what the instances followed (conditional writes: one each).
    let mut epoch_region: HashMap<u64, u8> = HashMap::new();
    let mut conflicts = 0;
    for (_, epoch, primary, _) in &log.followed {
        let r = code(primary);
        if *epoch_region.entry(*epoch).or_insert(r) != r {
            conflicts += 1;
        }
    }
    let split = log
        .accepted
        .iter()
        .filter(|a| {
            if coordinated {
                epoch_region.get(&a.epoch) != Some(&a.region)
            } else {
                a.region != a.majority
            }
        })
        .count();
    let off_latest = log
        .accepted
        .iter()
        .filter(|a| a.latest.is_some_and(|l| l != a.region))
        .count();
    // The first record of the run was written before the workload; later epochs are decisions.
    let first_epoch = log.followed.iter().map(|f| f.1).min().unwrap_or(0);
    let follow_ms_max = log
        .followed
        .iter()
        .filter(|f| f.1 > first_epoch)
        .filter_map(|f| f.3)
        .max()
        .unwrap_or(0);
    let mut per_epoch: BTreeMap<u64, (String, usize, u64)> = BTreeMap::new();
    for (_, epoch, primary, lag) in &log.followed {
        let e = per_epoch.entry(*epoch).or_insert((primary.clone(), 0, 0));
        e.1 += 1;
        e.2 = e.2.max(lag.unwrap_or(0));
    }
    for (epoch, (primary, n, lag)) in &per_epoch {
        println!("epoch {epoch}: {primary}, followed by {n} instances, slowest after {lag} ms");
    }
    let by_region = |r: u8| log.accepted.iter().filter(|a| a.region == r).count();
    println!(
        "run {run}: accepted {} writes ({EAST}: {}, {WEST}: {}); accepted by a region other than the newest decision's (follow window): {off_latest}; epochs with two regions: {conflicts}",
        log.accepted.len(),
        by_region(0),
        by_region(1),
    );
    let mut why: BTreeMap<(usize, bool, String), (usize, Vec<usize>)> = BTreeMap::new();
    for f in &log.failed {
        let short: String = f.error.chars().take(90).collect();
        let e = why
            .entry((f.phase, f.reaches_active, short))
            .or_insert((0, Vec::new()));
        e.0 += 1;
        if !e.1.contains(&f.instance) {
            e.1.push(f.instance);
        }
    }
    for ((phase, reaches, error), (n, who)) in &why {
        println!(
            "failed: {n} in phase {phase} ({}), instance reaches its routed region afterwards: {reaches}; instances {who:?}: {error}",
            PHASES[*phase].0
        );
    }
    println!(
        "summary: backend=dynamodb instances={INSTANCES} coordinated={} split_writes={split} follow_ms_max={follow_ms_max} failed_ops={}",
        if coordinated { "yes" } else { "no" },
        log.failed.len()
    );
}

#[tokio::main]
async fn main() -> Res<()> {
    let modes: Vec<bool> = match std::env::args().nth(1).as_deref() {
        None => vec![false, true],
        Some("baseline") => vec![false],
        Some("coordinated") => vec![true],
        Some(other) => return Err(format!("unknown mode {other:?} (baseline|coordinated)").into()),
    };
    let regions = DynamoDbRegions::start(&[EAST, WEST]).await?;
    // Warm the JVMs up: the first requests to a fresh DynamoDB Local are slow.
    regions.create_table("warm", "pk").await?;
    for node in regions.regions() {
        let client = node.client();
        for i in 0..50 {
            client
                .put_item()
                .table_name("warm")
                .item("pk", AttributeValue::S(format!("w{i}")))
                .send()
                .await?;
        }
    }
    let control = DynamoDbLocal::start("control-1").await?;
    control.create_table(CONTROL, "pk").await?;
    for (run, coordinated) in modes.into_iter().enumerate() {
        println!(
            "== run {run}: {}",
            if coordinated {
                "coordinated (fleet lease)"
            } else {
                "baseline (each instance alone)"
            }
        );
        self::run(&regions, &control, run, coordinated).await?;
    }
    Ok(())
}

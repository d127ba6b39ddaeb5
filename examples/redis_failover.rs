//! A Sentinel failover drill through the Redis split pool.
//!
//! Starts a primary, two replicas and three sentinels with the testing kit, runs a SET/GET
//! workload through [`SplitPool`], kills the primary, lets Sentinel promote a replica and keeps
//! going. Prints a timeline and one summary line:
//!
//! `summary: backend=redis switches=N failed_ops=N max_gap_ms=N client_gap_ms=N`
//!
//! - `max_gap_ms`: the longest time with no successful write;
//! - `client_gap_ms`: from the moment the new primary accepted writes (seen by a side connection
//!   polling `ROLE` on every replica, independent of the pool) to the first successful write
//!   through the pool.
//!
//! Run with `cargo run --example redis_failover --features redis,testing`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::SplitPool;
use switchover::testing::{RedisSentinel, RespClient};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const RUN_FOR: Duration = Duration::from_secs(12);
const KILL_AFTER: Duration = Duration::from_secs(2);

/// When a replica first answered `ROLE` with `master`, and which one.
type Promotion = Arc<Mutex<Option<(Instant, SocketAddr)>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut fixture = RedisSentinel::start(2, 3).await?;
    let start = Instant::now();
    let old_primary = fixture.replica_set().primary().addr();
    let replicas: Vec<_> = fixture.replica_set().replicas().map(|r| r.addr()).collect();
    println!(
        "{:>6} ms  primary {old_primary}, replicas {replicas:?}, 3 sentinels",
        0
    );
    let pool = SplitPool::builder()
        .sentinels(fixture.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(fixture.master_name())
        .build()
        .await?;
    let ms = move |at: Instant| at.saturating_duration_since(start).as_millis();
    println!(
        "{:>6} ms  pool ready, primary {}",
        ms(Instant::now()),
        pool.primary_addr()
    );

    let promoted = Promotion::default();
    let stop = Arc::new(AtomicBool::new(false));
    let observer = observe_promotion(replicas, promoted.clone(), stop.clone());
    let mut workload = Workload::new(start);
    workload.run(&pool, &mut fixture, old_primary).await?;
    stop.store(true, Ordering::Relaxed);
    if let Err(e) = observer.await {
        println!("observer failed: {e}");
    }
    let promoted = *promoted.lock().await;
    let client_gap_ms = workload.client_gap_ms(promoted);
    if let Ok(new) = fixture.current_primary().await {
        println!(
            "{:>6} ms  sentinel names {new} as primary; pool uses {}",
            ms(Instant::now()),
            pool.primary_addr()
        );
    }
    println!(
        "summary: backend=redis switches={} failed_ops={} max_gap_ms={} client_gap_ms={}",
        pool.status().switches,
        workload.failed_ops,
        workload.max_gap.as_millis(),
        client_gap_ms
    );
    Ok(())
}

/// Side observer: polls `ROLE` on every replica, independent of the pool, and notes the first
/// that answers `master`.
fn observe_promotion(
    replicas: Vec<SocketAddr>,
    promoted: Promotion,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for r in &replicas {
            clients.push((*r, RespClient::connect(*r).await.ok()));
        }
        while !stop.load(Ordering::Relaxed) {
            for (addr, client) in clients.iter_mut() {
                if client.is_none() {
                    *client = RespClient::connect(*addr).await.ok();
                }
                let Some(c) = client.as_mut() else { continue };
                let Ok(role) = c.command(&["ROLE"]).await else {
                    // Sentinel kills client connections of the node it promotes.
                    *client = None;
                    continue;
                };
                let first = role.as_array().and_then(|a| a.first());
                if first.and_then(|f| f.as_str()) == Some("master") {
                    let mut slot = promoted.lock().await;
                    if slot.is_none() {
                        *slot = Some((Instant::now(), *addr));
                    }
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

/// The SET/GET workload and what it saw.
struct Workload {
    start: Instant,
    failed_ops: u64,
    last_write_ok: Instant,
    max_gap: Duration,
    write_oks: Vec<Instant>,
    reported_switches: u64,
}

impl Workload {
    fn new(start: Instant) -> Self {
        Workload {
            start,
            failed_ops: 0,
            last_write_ok: Instant::now(),
            max_gap: Duration::ZERO,
            write_oks: Vec::new(),
            reported_switches: 0,
        }
    }

    fn ms(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.start).as_millis()
    }

    /// One SET and one GET every 10 ms for [`RUN_FOR`]; writes declared idempotent (plain
    /// SETs). Kills the primary after [`KILL_AFTER`].
    async fn run(
        &mut self,
        pool: &SplitPool,
        fixture: &mut RedisSentinel,
        old_primary: SocketAddr,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut con = pool.idempotent();
        let mut killed = false;
        let mut i = 0u64;
        while self.start.elapsed() < RUN_FOR {
            if !killed && self.start.elapsed() >= KILL_AFTER {
                fixture.kill_primary().await?;
                killed = true;
                let now = self.ms(Instant::now());
                println!("{now:>6} ms  killed primary {old_primary} (SIGKILL)");
            }
            i += 1;
            let key = format!("key{}", i % 1000);
            let set = con.set::<_, _, ()>(&key, i).await;
            self.wrote(set);
            if let Err(e) = con.get::<_, Option<u64>>(&key).await {
                self.failed_ops += 1;
                println!("{:>6} ms  GET failed: {e}", self.ms(Instant::now()));
            }
            self.report_switch(pool);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The gap still open when the workload stops counts too.
        self.max_gap = self.max_gap.max(self.last_write_ok.elapsed());
        Ok(())
    }

    fn wrote(&mut self, r: redis::RedisResult<()>) {
        match r {
            Ok(()) => {
                let now = Instant::now();
                self.max_gap = self.max_gap.max(now - self.last_write_ok);
                self.last_write_ok = now;
                self.write_oks.push(now);
            }
            Err(e) => {
                self.failed_ops += 1;
                println!("{:>6} ms  SET failed: {e}", self.ms(Instant::now()));
            }
        }
    }

    fn report_switch(&mut self, pool: &SplitPool) {
        let switches = pool.status().switches;
        if switches != self.reported_switches {
            self.reported_switches = switches;
            println!(
                "{:>6} ms  pool switched primary to {} (generation {})",
                self.ms(Instant::now()),
                pool.primary_addr(),
                pool.status().generation
            );
        }
    }

    /// From the promotion the observer saw to the first write through the pool after it.
    fn client_gap_ms(&self, promoted: Option<(Instant, SocketAddr)>) -> u128 {
        let Some((at, addr)) = promoted else {
            return u128::MAX;
        };
        println!(
            "{:>6} ms  side connection: {addr} answers ROLE master",
            self.ms(at)
        );
        match self.write_oks.iter().find(|t| **t >= at) {
            Some(first) => {
                println!(
                    "{:>6} ms  first write through the pool on the new primary",
                    self.ms(*first)
                );
                (*first - at).as_millis()
            }
            None => u128::MAX,
        }
    }
}

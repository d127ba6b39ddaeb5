//! A Sentinel failover drill through the Redis split pool.
//!
//! Starts a primary, two replicas and three sentinels with the testing kit, runs a SET/GET
//! workload through [`SplitPool`], kills the primary, lets Sentinel promote a replica and keeps
//! going. Prints a timeline and one summary line:
//!
//! `summary: backend=redis tls=off switches=N failed_ops=N max_gap_ms=N client_gap_ms=N`
//!
//! With `-- tls` (feature `tls`) every node and sentinel listens on a TLS port only, replicates
//! and gossips over TLS, and the pool verifies their certificates against a test CA
//! (`tls=on`). With `-- silent` the primary is frozen (`SIGSTOP`: its connections stay open
//! and nothing is answered, as in a stuck process or a paused VM) instead of killed; the pool
//! finds it by its heartbeat. Both can be given: `-- silent tls`.
//!
//! - `max_gap_ms`: the longest time with no successful write;
//! - `client_gap_ms`: from the moment the new primary accepted writes (seen by a side connection
//!   polling `ROLE` on every replica, independent of the pool) to the first successful write
//!   through the pool.
//!
//! Run with `cargo run --example redis_failover --features redis,testing`, over TLS with
//! `cargo run --example redis_failover --features redis,testing,tls -- tls`, silent with
//! `cargo run --example redis_failover --features redis,testing -- silent`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::{SplitPool, SplitPoolBuilder};
use switchover::testing::{Error as KitError, RedisSentinel, RespClient};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const RUN_FOR: Duration = Duration::from_secs(12);
const KILL_AFTER: Duration = Duration::from_secs(2);

/// When a replica first answered `ROLE` with `master`, and which one.
type Promotion = Arc<Mutex<Option<(Instant, SocketAddr)>>>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tls = std::env::args().skip(1).any(|a| a == "tls");
    let silent = std::env::args().skip(1).any(|a| a == "silent");
    let drill = Drill::start(tls).await?;
    let mut fixture = drill.fixture;
    let _ca = drill.ca;
    let start = Instant::now();
    let old_primary = fixture.replica_set().primary().addr();
    let replicas: Vec<_> = fixture.replica_set().replicas().map(|r| r.addr()).collect();
    println!(
        "{:>6} ms  primary {old_primary}, replicas {replicas:?}, 3 sentinels, tls {}",
        0,
        on_off(tls)
    );
    let builder = SplitPool::builder()
        .sentinels(fixture.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(fixture.master_name());
    let pool = (drill.tls_pool)(builder).build().await?;
    let ms = move |at: Instant| at.saturating_duration_since(start).as_millis();
    println!(
        "{:>6} ms  pool ready, primary {}",
        ms(Instant::now()),
        pool.primary_addr()
    );

    let promoted = Promotion::default();
    let stop = Arc::new(AtomicBool::new(false));
    let observer = observe_promotion(drill.dial, replicas, promoted.clone(), stop.clone());
    let mut workload = Workload::new(start, silent);
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
        "summary: backend=redis tls={} switches={} failed_ops={} max_gap_ms={} client_gap_ms={}",
        on_off(tls),
        pool.status().switches,
        workload.failed_ops,
        workload.max_gap.as_millis(),
        client_gap_ms
    );
    Ok(())
}

fn on_off(tls: bool) -> &'static str {
    if tls { "on" } else { "off" }
}

/// A side connection to one node: plaintext, or TLS with the fixture's client.
type Dial = Arc<dyn Fn(SocketAddr) -> BoxFuture<Result<RespClient, KitError>> + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
/// The TLS settings of the pool (none in plaintext).
type TlsPool = Box<dyn FnOnce(SplitPoolBuilder) -> SplitPoolBuilder>;

/// The fixture, how the side observer reaches a node, and the pool's TLS settings.
struct Drill {
    fixture: RedisSentinel,
    dial: Dial,
    tls_pool: TlsPool,
    /// The test CA's directory, kept until the end.
    ca: Option<Box<dyn std::any::Any>>,
}

impl Drill {
    async fn start(tls: bool) -> Result<Self, Box<dyn std::error::Error>> {
        if tls {
            return Self::start_tls().await;
        }
        Ok(Drill {
            fixture: RedisSentinel::start(2, 3).await?,
            dial: Arc::new(|addr| Box::pin(RespClient::connect(addr))),
            tls_pool: Box::new(|b| b),
            ca: None,
        })
    }

    /// Every node and sentinel on TLS only; the pool trusts the test CA and verifies each
    /// node's IP address (the addresses Sentinel reports) against its certificate.
    #[cfg(feature = "tls")]
    async fn start_tls() -> Result<Self, Box<dyn std::error::Error>> {
        use switchover::testing::{RedisTls, TestCa};
        use switchover::tls::{Roots, TlsOptions};
        let ca = TestCa::new()?;
        let kit = RedisTls::new(&ca)?;
        let fixture = RedisSentinel::start_tls(2, 3, &kit).await?;
        let ca_file = ca.cert_path().to_path_buf();
        Ok(Drill {
            fixture,
            dial: Arc::new(move |addr| {
                let tls = kit.clone();
                Box::pin(async move {
                    RespClient::connect_tls(addr, &tls, Duration::from_secs(5)).await
                })
            }),
            tls_pool: Box::new(move |b| b.tls(TlsOptions::new().roots(Roots::PemFile(ca_file)))),
            ca: Some(Box::new(ca)),
        })
    }

    #[cfg(not(feature = "tls"))]
    async fn start_tls() -> Result<Self, Box<dyn std::error::Error>> {
        Err("`-- tls` needs the tls feature: --features redis,testing,tls".into())
    }
}

/// Side observer: polls `ROLE` on every replica, independent of the pool, and notes the first
/// that answers `master`.
fn observe_promotion(
    dial: Dial,
    replicas: Vec<SocketAddr>,
    promoted: Promotion,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for r in &replicas {
            clients.push((*r, dial(*r).await.ok()));
        }
        while !stop.load(Ordering::Relaxed) {
            for (addr, client) in clients.iter_mut() {
                if client.is_none() {
                    *client = dial(*addr).await.ok();
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
    /// Freeze the primary (`SIGSTOP`) instead of killing it.
    silent: bool,
}

impl Workload {
    fn new(start: Instant, silent: bool) -> Self {
        Workload {
            start,
            failed_ops: 0,
            last_write_ok: Instant::now(),
            max_gap: Duration::ZERO,
            write_oks: Vec::new(),
            reported_switches: 0,
            silent,
        }
    }

    fn ms(&self, at: Instant) -> u128 {
        at.saturating_duration_since(self.start).as_millis()
    }

    /// One SET and one GET every 10 ms for [`RUN_FOR`]; writes declared idempotent (plain
    /// SETs). Kills (or freezes) the primary after [`KILL_AFTER`].
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
                killed = true;
                if self.silent {
                    fixture.replica_set_mut().primary_mut().pause()?;
                    let now = self.ms(Instant::now());
                    println!("{now:>6} ms  froze primary {old_primary} (SIGSTOP)");
                } else {
                    fixture.kill_primary().await?;
                    let now = self.ms(Instant::now());
                    println!("{now:>6} ms  killed primary {old_primary} (SIGKILL)");
                }
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

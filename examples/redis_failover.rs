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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::SplitPool;
use switchover::testing::{RedisSentinel, RespClient};
use tokio::sync::Mutex;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut fixture = RedisSentinel::start(2, 3).await?;
    let start = Instant::now();
    let ms = move |at: Instant| at.saturating_duration_since(start).as_millis();
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
    println!(
        "{:>6} ms  pool ready, primary {}",
        ms(Instant::now()),
        pool.primary_addr()
    );

    // Side observer: polls ROLE on every replica, independent of the pool.
    let promoted_at: Arc<Mutex<Option<(Instant, std::net::SocketAddr)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn({
        let promoted_at = promoted_at.clone();
        let stop = stop.clone();
        let replicas = replicas.clone();
        async move {
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
                    let role = match c.command(&["ROLE"]).await {
                        Ok(r) => r,
                        Err(_) => {
                            // Sentinel kills client connections of the node it promotes.
                            *client = None;
                            continue;
                        }
                    };
                    let is_master = role
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(|f| f.as_str())
                        == Some("master");
                    if is_master {
                        let mut slot = promoted_at.lock().await;
                        if slot.is_none() {
                            *slot = Some((Instant::now(), *addr));
                        }
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    // Workload: one SET and one GET every 10 ms; writes declared idempotent (plain SETs).
    let mut con = pool.idempotent();
    let mut failed_ops = 0u64;
    let mut last_write_ok = Instant::now();
    let mut max_gap = Duration::ZERO;
    let mut write_oks: Vec<Instant> = Vec::new();
    let mut killed_at = None;
    let mut i = 0u64;
    let run_for = Duration::from_secs(12);
    let kill_after = Duration::from_secs(2);
    let mut reported_switch = 0;
    while start.elapsed() < run_for {
        if killed_at.is_none() && start.elapsed() >= kill_after {
            fixture.kill_primary().await?;
            let now = Instant::now();
            killed_at = Some(now);
            println!("{:>6} ms  killed primary {old_primary} (SIGKILL)", ms(now));
        }
        i += 1;
        let key = format!("key{}", i % 1000);
        match con.set::<_, _, ()>(&key, i).await {
            Ok(()) => {
                let now = Instant::now();
                max_gap = max_gap.max(now - last_write_ok);
                last_write_ok = now;
                write_oks.push(now);
            }
            Err(e) => {
                failed_ops += 1;
                println!("{:>6} ms  SET failed: {e}", ms(Instant::now()));
            }
        }
        match con.get::<_, Option<u64>>(&key).await {
            Ok(_) => {}
            Err(e) => {
                failed_ops += 1;
                println!("{:>6} ms  GET failed: {e}", ms(Instant::now()));
            }
        }
        let switches = pool.status().switches;
        if switches != reported_switch {
            reported_switch = switches;
            println!(
                "{:>6} ms  pool switched primary to {} (generation {})",
                ms(Instant::now()),
                pool.primary_addr(),
                pool.status().generation
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The gap still open when the workload stopped counts too.
    max_gap = max_gap.max(last_write_ok.elapsed());
    stop.store(true, Ordering::Relaxed);
    if let Err(e) = observer.await {
        println!("observer failed: {e}");
    }

    let promoted = *promoted_at.lock().await;
    let client_gap_ms = match promoted {
        Some((at, addr)) => {
            println!(
                "{:>6} ms  side connection: {addr} answers ROLE master",
                ms(at)
            );
            match write_oks.iter().find(|t| **t >= at) {
                Some(first) => {
                    println!(
                        "{:>6} ms  first write through the pool on the new primary",
                        ms(*first)
                    );
                    (*first - at).as_millis()
                }
                None => u128::MAX,
            }
        }
        None => u128::MAX,
    };
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
        failed_ops,
        max_gap.as_millis(),
        client_gap_ms
    );
    Ok(())
}

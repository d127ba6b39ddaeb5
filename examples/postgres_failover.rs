//! A Postgres failover drill: a primary and a streaming standby from the testing kit, an
//! INSERT/SELECT workload through [`FailoverPool`], the primary killed (or, with `-- silent`,
//! frozen) and the standby promoted while the workload runs.
//!
//! `-- silent` freezes the primary instead of killing it: `SIGSTOP` to the postmaster and
//! every process it started ([`PgNode::pause`](switchover::testing::PgNode::pause)), so the
//! kernel keeps accepting and acknowledging and no error ever reaches the client; only the
//! pool's heartbeat can tell. The frozen server is resumed when the drill ends.
//!
//! Prints a timeline and ends with one line:
//!
//! `summary: backend=postgres tls=on|off switches=N failed_ops=N max_gap_ms=N client_gap_ms=N`
//!
//! - `tls`: `on` with `-- tls` (the servers run `ssl=on` with a certificate from a throw-away
//!   CA and admit TCP logins only over TLS; the pool connects with `sslmode=verify-full` and
//!   that CA), else `off`;
//! - `switches`: router switches (the generation, which grows by one per switch from 0);
//! - `failed_ops`: workload operations that returned an error;
//! - `max_gap_ms`: the longest time without a successful write (between two, or from the last
//!   one to the end of the workload);
//! - `client_gap_ms`: from the moment the promotion completed (measured independently, by the
//!   fixture polling `pg_is_in_recovery()` with `psql`) to the first successful write through
//!   the pool after it.
//!
//! Run with `cargo run --release --example postgres_failover --features postgres,testing`, or
//! over TLS with `cargo run --release --example postgres_failover --features
//! postgres,testing,tls -- tls`; add `silent` for the frozen primary (`-- silent`, `-- silent
//! tls`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use switchover::postgres::FailoverPool;
use switchover::retry::RetryPolicy;
use switchover::route::RouteEvent;
use switchover::testing::PgCluster;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let ms = move |at: Instant| at.saturating_duration_since(t0).as_millis() as u64;
    let tls = std::env::args().skip(1).any(|a| a == "tls");
    let silent = std::env::args().skip(1).any(|a| a == "silent");
    println!(
        "[{:>6} ms] starting a primary and a standby{}",
        0,
        if tls { " (TLS only)" } else { "" }
    );
    let (mut cluster, ssl) = start(tls).await?;
    cluster
        .primary()
        .sql("CREATE TABLE ledger (id bigserial PRIMARY KEY, n bigint NOT NULL, at timestamptz DEFAULT now())")
        .await?;
    cluster.wait_for_replay(1, Duration::from_secs(30)).await?;
    let hosts: Vec<(String, u16)> = cluster
        .nodes()
        .iter()
        .map(|n| (n.host().to_owned(), n.port()))
        .collect();
    println!(
        "[{:>6} ms] primary {}:{}, standby {}:{}",
        ms(Instant::now()),
        hosts[0].0,
        hosts[0].1,
        hosts[1].0,
        hosts[1].1
    );

    let pool = FailoverPool::builder()
        .connection_string(format!("user=postgres dbname=postgres {}", ssl.options))
        .hosts(hosts.clone())
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(1000)
                .deadline(Duration::from_secs(30))
                .build()?,
        )
        .build()?;

    // Print switches from the router's events (the summary counts them from the generation,
    // which cannot lag behind like this task can).
    {
        let mut events = pool.router().subscribe();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let RouteEvent::Switched {
                    from,
                    to,
                    generation,
                    reason,
                    at,
                    ..
                } = ev
                {
                    println!(
                        "[{:>6} ms] router: {from} -> {to} ({reason}), generation {generation}",
                        ms(at)
                    );
                }
            }
        });
    }

    // The workload: an INSERT then a SELECT of the row, in one transaction, every 10 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let successes: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let failed = Arc::new(AtomicU64::new(0));
    let workload = {
        let (pool, stop, successes, failed) = (
            pool.clone(),
            stop.clone(),
            successes.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let mut n: i64 = 0;
            let mut last_host = String::new();
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let result = pool
                    .transaction(move |tx| {
                        Box::pin(async move {
                            let id: i64 = tx
                                .query_one("INSERT INTO ledger (n) VALUES ($1) RETURNING id", &[&n])
                                .await?
                                .get(0);
                            let row = tx
                                .query_one(
                                    "SELECT n, inet_server_port() FROM ledger WHERE id = $1",
                                    &[&id],
                                )
                                .await?;
                            let port: i32 = row.get(1);
                            Ok(port)
                        })
                    })
                    .await;
                let now = Instant::now();
                match result {
                    Ok(port) => {
                        let host = format!("127.0.0.1:{port}");
                        if host != last_host {
                            println!("[{:>6} ms] writes now succeed on {host}", ms(now));
                            last_host = host.clone();
                        }
                        successes.lock().await.push((now, host));
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        println!("[{:>6} ms] write {n} failed: {e}", ms(now));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    if silent {
        println!(
            "[{:>6} ms] freezing the primary (SIGSTOP to the postmaster and its children)",
            ms(Instant::now())
        );
        cluster.primary_mut().pause()?;
        println!(
            "[{:>6} ms] primary frozen; promoting the standby",
            ms(Instant::now())
        );
    } else {
        println!(
            "[{:>6} ms] killing the primary (pg_ctl stop -m immediate)",
            ms(Instant::now())
        );
        cluster.kill_primary().await?;
        println!(
            "[{:>6} ms] primary dead; promoting the standby",
            ms(Instant::now())
        );
    }
    cluster.promote(1).await?;
    let promoted_at = Instant::now();
    println!(
        "[{:>6} ms] promotion complete (pg_is_in_recovery() = false)",
        ms(promoted_at)
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    workload.await?;

    let successes = successes.lock().await;
    let new_primary = format!("{}:{}", hosts[1].0, hosts[1].1);
    let first_after = successes
        .iter()
        .find(|(at, host)| *at >= promoted_at && *host == new_primary)
        .map(|(at, _)| *at);
    let client_gap_ms = match first_after {
        Some(at) => (at - promoted_at).as_millis() as u64,
        None => {
            println!("no successful write on the new primary after the promotion");
            u64::MAX
        }
    };
    // Gaps between successes, and the one still open when the workload stopped.
    let trailing = successes.last().map_or(0, |s| {
        stopped_at.saturating_duration_since(s.0).as_millis() as u64
    });
    let max_gap_ms = successes
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis() as u64)
        .max()
        .unwrap_or(0)
        .max(trailing);
    println!(
        "[{:>6} ms] {} writes succeeded, last on {}; primary is now {} (generation {})",
        ms(Instant::now()),
        successes.len(),
        successes.last().map(|s| s.1.as_str()).unwrap_or("-"),
        pool.primary(),
        pool.generation()
    );
    println!(
        "summary: backend=postgres tls={} switches={} failed_ops={} max_gap_ms={} client_gap_ms={}",
        if tls { "on" } else { "off" },
        // Starts at 0 and grows by exactly one per switch.
        pool.generation(),
        failed.load(Ordering::Relaxed),
        max_gap_ms,
        client_gap_ms
    );
    Ok(())
}

/// The connection options of the drill, and the CA they point at (kept alive with them).
struct Ssl {
    options: String,
    #[cfg(feature = "tls")]
    _ca: Option<switchover::testing::TestCa>,
}

/// The cluster: plain, or with `tls`, TLS-only with a verify-full pool.
async fn start(tls: bool) -> Result<(PgCluster, Ssl), Box<dyn std::error::Error>> {
    if !tls {
        let ssl = Ssl {
            options: "sslmode=disable".to_owned(),
            #[cfg(feature = "tls")]
            _ca: None,
        };
        return Ok((PgCluster::start(1).await?, ssl));
    }
    #[cfg(feature = "tls")]
    {
        use switchover::testing::{LOCALHOST_NAMES, TestCa};
        let ca = TestCa::new()?;
        let cert = ca.server("postgres", LOCALHOST_NAMES)?;
        let cluster = PgCluster::builder()
            .standbys(1)
            .tls(&cert)
            .ssl_only()
            .start()
            .await?;
        let options = format!(
            "sslmode=verify-full sslrootcert={}",
            ca.cert_path().display()
        );
        Ok((
            cluster,
            Ssl {
                options,
                _ca: Some(ca),
            },
        ))
    }
    #[cfg(not(feature = "tls"))]
    Err("`-- tls` needs the `tls` feature: --features postgres,testing,tls".into())
}

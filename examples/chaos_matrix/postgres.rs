//! The Postgres row: a `FailoverPool` over a primary and a streaming standby, the standby
//! promoted by the drill (as an operator or Patroni would) after kill, stop, freeze, partition
//! (each node in its own network namespace) and read-only fence; the fault proxy in front of the primary for reset, latency and flap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchover::postgres::FailoverPool;
use switchover::retry::{ExponentialBackoff, Jitter, RetryPolicy};
use switchover::testing::{FaultProxy, Mode, PgCluster, PgNode};
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

use crate::cell::Fault;
use crate::workload::{BoxFuture, Gap, OpError, Ops, Record, ServerLoss, Stored, Workload};
use crate::{AFTER, LATENCY_MS, Run, WARM_UP, log, log_lost};

type Error = Box<dyn std::error::Error>;

/// Every call's deadline (the pool's retry policy).
const DEADLINE: Duration = Duration::from_secs(5);

pub async fn run(fault: Fault) -> Run {
    if fault == Fault::Failback {
        return Run::NotApplicable(
            "no preferred host: the pool follows whichever host is primary \
             (and the kit cannot rejoin a killed primary as a standby: no pg_rewind)"
                .into(),
        );
    }
    cell(fault)
        .await
        .unwrap_or_else(|e| Run::Broken(e.to_string()))
}

fn policy() -> Result<RetryPolicy, Error> {
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()?;
    Ok(RetryPolicy::builder()
        .max_attempts(1000)
        .deadline(DEADLINE)
        .backoff(backoff)
        .build()?)
}

/// What a fault left: how to measure the gap, what the server may have lost, which node
/// holds the data now.
struct Marks {
    gap: Gap,
    loss: ServerLoss,
    primary: usize,
    note: String,
}

async fn cell(fault: Fault) -> Result<Run, Error> {
    let name = format!("postgres/{}", fault.name());
    let t0 = Instant::now();
    // Partitioned: every node in its own network namespace.
    let mut cluster = if fault == Fault::Partition {
        PgCluster::start_in_netns(1).await?
    } else {
        PgCluster::start(1).await?
    };
    cluster
        .primary()
        .sql("CREATE TABLE chaos_idem (id bigint PRIMARY KEY); CREATE TABLE chaos_once (op bigint NOT NULL)")
        .await?;
    cluster.wait_for_replay(1, Duration::from_secs(30)).await?;
    let proxy = FaultProxy::start(cluster.nodes()[0].addr()).await?;
    let proxied = matches!(fault, Fault::Reset | Fault::Latency | Fault::Flap);
    let (primary, standby) = (&cluster.nodes()[0], &cluster.nodes()[1]);
    let first = if proxied {
        ("127.0.0.1".to_owned(), proxy.addr().port())
    } else {
        (primary.host().to_owned(), primary.port())
    };
    let hosts = [first, (standby.host().to_owned(), standby.port())];
    let pool = FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres sslmode=disable")
        .hosts(hosts)
        .retry_policy(policy()?)
        .build()?;
    log(&name, t0, "cluster up, pool built");
    let work = Workload::start(Arc::new(PgOps::new(pool.clone())), DEADLINE);
    tokio::time::sleep(WARM_UP).await;
    let injected = Instant::now();
    let marks = match inject(fault, &mut cluster, &proxy, &name, t0).await {
        Ok(m) => m,
        Err(e) => {
            work.finish().await;
            return Err(e);
        }
    };
    let anchor = match marks.gap {
        Gap::FirstWriteAfter(a) => a,
        Gap::LongestBetween(_, to) => to,
    };
    // Calls caught by the fault may run to their deadline: wait for them too, so the gap is
    // measured rather than cut off.
    let end = (anchor + AFTER).max(injected + DEADLINE + Duration::from_secs(1));
    tokio::time::sleep_until(end.max(Instant::now())).await;
    let record = work.finish().await;
    log(
        &name,
        t0,
        format!(
            "workload stopped: {} calls; pool primary {}, generation {}",
            record.ops.len(),
            pool.primary(),
            pool.generation()
        ),
    );
    for e in &record.errors {
        log(&name, t0, format!("error seen: {e}"));
    }
    let stored = stored(&cluster.nodes()[marks.primary], &record).await?;
    log_lost(&name, t0, injected, &record.lost_acks(&stored, marks.loss));
    Ok(Run::Measured {
        counts: record.counts(&stored, marks.loss, marks.gap),
        note: marks.note,
        problem: None,
    })
}

async fn inject(
    fault: Fault,
    cluster: &mut PgCluster,
    proxy: &FaultProxy,
    name: &str,
    t0: Instant,
) -> Result<Marks, Error> {
    let at = Instant::now();
    match fault {
        Fault::Kill | Fault::Stop | Fault::Freeze | Fault::Partition => {
            failover(fault, cluster, name, t0).await
        }
        Fault::Demote => {
            cluster.nodes()[0].fence_read_only().await?;
            log(name, t0, "primary fenced read-only");
            let lsn = cluster.nodes()[0].wal_lsn().await?;
            cluster.nodes()[1]
                .wait_for_replay(&lsn, Duration::from_secs(10))
                .await?;
            let watch = watch_promotion(&cluster.nodes()[1]);
            cluster.promote(1).await?;
            let promoted_at = watch.await??;
            log(name, t0, "standby promoted");
            Ok(Marks {
                gap: Gap::FirstWriteAfter(promoted_at),
                loss: ServerLoss::default(),
                primary: 1,
                note: String::new(),
            })
        }
        Fault::AllDown => {
            cluster.node_mut(0)?.kill().await?;
            cluster.node_mut(1)?.kill().await?;
            log(name, t0, "both servers killed (immediate)");
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster.node_mut(0)?.restart().await?;
            let back = Instant::now();
            cluster.node_mut(1)?.restart().await?;
            log(name, t0, "both servers back");
            Ok(Marks {
                gap: Gap::FirstWriteAfter(back),
                loss: ServerLoss::default(),
                primary: 0,
                note: String::new(),
            })
        }
        _ => {
            let gap = match fault {
                Fault::Reset => {
                    proxy.reset_connections();
                    Gap::FirstWriteAfter(at)
                }
                Fault::Latency => {
                    let delay = Duration::from_millis(LATENCY_MS);
                    let jitter = Duration::ZERO;
                    proxy.set_mode(Mode::Latency { delay, jitter }).await?;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    proxy.set_mode(Mode::Pass).await?;
                    Gap::LongestBetween(at, Instant::now() + Duration::from_secs(1))
                }
                _ => {
                    for _ in 0..4 {
                        proxy.set_mode(Mode::Reset).await?;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        proxy.set_mode(Mode::Pass).await?;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Gap::LongestBetween(at, Instant::now() + Duration::from_secs(1))
                }
            };
            log(name, t0, format!("{} done", fault.name()));
            Ok(Marks {
                gap,
                loss: ServerLoss::default(),
                primary: 0,
                note: String::new(),
            })
        }
    }
}

/// The primary killed, stopped, frozen or partitioned; the standby's replay position read; the
/// standby promoted.
async fn failover(
    fault: Fault,
    cluster: &mut PgCluster,
    name: &str,
    t0: Instant,
) -> Result<Marks, Error> {
    let before = lsn(&cluster.nodes()[0].wal_lsn().await?)?;
    let read_at = Instant::now();
    match fault {
        Fault::Kill => cluster.node_mut(0)?.kill().await?,
        Fault::Stop => cluster.node_mut(0)?.stop().await?,
        Fault::Partition => cluster.nodes()[0].partition().await?,
        _ => cluster.node_mut(0)?.pause()?,
    }
    // Until the server is gone (or frozen), it may still ack writes.
    let fault_at = Instant::now();
    log(name, t0, format!("{} the primary", fault.name()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reached = lsn(&cluster.nodes()[1].wal_lsn().await?)?;
    let watch = watch_promotion(&cluster.nodes()[1]);
    cluster.promote(1).await?;
    let promoted_at = watch.await??;
    log(name, t0, "standby promoted");
    Ok(Marks {
        gap: Gap::FirstWriteAfter(promoted_at),
        loss: ServerLoss {
            exposed_until: Some(fault_at),
            safe_before: (reached >= before).then_some(read_at),
        },
        primary: 1,
        note: format!("old primary at LSN {before:X}, standby had replayed {reached:X}"),
    })
}

/// Polls `pg_is_in_recovery()` on the standby every 2 ms from a side connection; when it
/// turns false.
fn watch_promotion(standby: &PgNode) -> tokio::task::JoinHandle<Result<Instant, String>> {
    let conn = format!(
        "host={} port={} user=postgres dbname=postgres",
        standby.host(),
        standby.port()
    );
    tokio::spawn(async move {
        let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("side connection to the standby: {e}"))?;
        tokio::spawn(connection);
        let limit = Instant::now() + Duration::from_secs(30);
        while Instant::now() < limit {
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .map_err(|e| format!("side connection: {e}"))?;
            if !row.get::<_, bool>(0) {
                return Ok(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err("the standby did not leave recovery within 30 s".into())
    })
}

/// A WAL position `X/Y` as a number.
fn lsn(s: &str) -> Result<u64, Error> {
    let (hi, lo) = s.split_once('/').ok_or_else(|| format!("bad LSN {s:?}"))?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

/// What `node` holds of the workload's rows.
async fn stored(node: &PgNode, _record: &Record) -> Result<Stored, Error> {
    let mut stored = Stored::default();
    for line in node.sql("SELECT id FROM chaos_idem").await?.lines() {
        stored.idempotent.insert(line.trim().parse()?);
    }
    let mut once = HashMap::new();
    let rows = node
        .sql("SELECT op, count(*) FROM chaos_once GROUP BY op")
        .await?;
    for line in rows.lines() {
        let (op, n) = line.split_once('|').ok_or("bad row")?;
        once.insert(op.trim().parse()?, n.trim().parse()?);
    }
    stored.once = once;
    Ok(stored)
}

/// The workload's calls: a SELECT and an upsert on the idempotent handle, an INSERT without
/// a key in a transaction on the plain one (retried only when it surely did not commit).
struct PgOps {
    pool: FailoverPool,
    idempotent: FailoverPool,
}

impl PgOps {
    fn new(pool: FailoverPool) -> Self {
        PgOps {
            idempotent: pool.idempotent(),
            pool,
        }
    }
}

fn op_error(e: switchover::postgres::Error) -> OpError {
    let message = e.to_string();
    let wrong_role = e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
        || message.contains("read-only transaction")
        || message.contains("recovery is in progress");
    OpError {
        message,
        wrong_role,
    }
}

impl Ops for PgOps {
    fn read(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let id = id as i64;
        Box::pin(async move {
            self.idempotent
                .run(move |c| {
                    Box::pin(async move {
                        c.query_opt("SELECT id FROM chaos_idem WHERE id = $1", &[&id])
                            .await
                            .map(drop)
                    })
                })
                .await
                .map_err(op_error)
        })
    }

    fn write_idempotent(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let id = id as i64;
        Box::pin(async move {
            self.idempotent
                .run(move |c| {
                    Box::pin(async move {
                        c.execute(
                            "INSERT INTO chaos_idem (id) VALUES ($1) ON CONFLICT DO NOTHING",
                            &[&id],
                        )
                        .await
                        .map(drop)
                    })
                })
                .await
                .map_err(op_error)
        })
    }

    fn write_once(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let id = id as i64;
        Box::pin(async move {
            self.pool
                .transaction(move |tx| {
                    Box::pin(async move {
                        tx.execute("INSERT INTO chaos_once (op) VALUES ($1)", &[&id])
                            .await
                            .map(drop)
                    })
                })
                .await
                .map_err(op_error)
        })
    }
}

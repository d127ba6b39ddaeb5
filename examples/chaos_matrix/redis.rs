//! The Redis row: a `SplitPool` over Sentinel (kill, stop, freeze), over one server behind the
//! fault proxy (reset, latency, flap), and over a static primary + replica (demotion with
//! `FAILOVER`, all down then back).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchover::redis::{SplitPool, default_retry_policy, is_readonly};
use switchover::testing::{
    FaultProxy, Mode, RedisReplicaSet, RedisSentinel, RedisServer, Reply, RespClient,
};
use tokio::time::Instant;

use crate::cell::Fault;
use crate::workload::{BoxFuture, Gap, OpError, Ops, ServerLoss, Stored, Workload};
use crate::{AFTER, LATENCY_MS, Run, WARM_UP, log, log_lost};

type Error = Box<dyn std::error::Error>;

/// Every call's deadline (the pool's retry policy).
const DEADLINE: Duration = Duration::from_secs(5);
/// How long a side connection waits for a replica to report `master`.
const PROMOTION_LIMIT: Duration = Duration::from_secs(20);

pub async fn run(fault: Fault) -> Run {
    let result = match fault {
        Fault::Kill | Fault::Stop | Fault::Freeze | Fault::Partition => sentinel_cell(fault).await,
        Fault::Reset | Fault::Latency | Fault::Flap => proxy_cell(fault).await,
        Fault::Demote | Fault::AllDown => pair_cell(fault).await,
        Fault::Failback => {
            return Run::NotApplicable(
                "no preferred node: the pool follows whichever node is primary \
                 (a switch back is the demote cell)"
                    .into(),
            );
        }
    };
    result.unwrap_or_else(|e| Run::Broken(e.to_string()))
}

fn policy() -> Result<switchover::retry::RetryPolicy, Error> {
    Ok(default_retry_policy()
        .to_builder()
        .max_attempts(1000)
        .deadline(DEADLINE)
        .build()?)
}

/// What a fault left: how to measure the gap, what the server may have lost, where the data
/// is now.
struct Marks {
    gap: Gap,
    loss: ServerLoss,
    primary: SocketAddr,
    note: String,
    /// Nodes to ask `ROLE` at the end: if another one is primary by then (a second
    /// failover), its data is what counts.
    recheck: Vec<SocketAddr>,
}

/// Runs the workload through `pool`, injects the fault with `inject` after the warm-up, keeps
/// going for [`AFTER`], and counts.
async fn measure<F>(name: &str, pool: SplitPool, inject: F) -> Result<Run, Error>
where
    F: AsyncFnOnce(Instant) -> Result<Marks, Error>,
{
    let t0 = Instant::now();
    let work = Workload::start(Arc::new(RedisOps::new(pool.clone())), DEADLINE);
    tokio::time::sleep(WARM_UP).await;
    let injected = Instant::now();
    let marks = match inject(t0).await {
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
        name,
        t0,
        format!(
            "workload stopped: {} calls; pool generation {}, switches {}, discovery runs {}",
            record.ops.len(),
            pool.status().generation,
            pool.status().switches,
            pool.status().discoveries
        ),
    );
    for e in &record.errors {
        log(name, t0, format!("error seen: {e}"));
    }
    let mut primary = marks.primary;
    for addr in &marks.recheck {
        if *addr != primary && role(*addr).await.as_deref() == Some("master") {
            log(
                name,
                t0,
                format!("{addr} is primary at the end, not {primary}"),
            );
            primary = *addr;
        }
    }
    let stored = stored(primary, &record).await?;
    log_lost(name, t0, injected, &record.lost_acks(&stored, marks.loss));
    Ok(Run::Measured {
        counts: record.counts(&stored, marks.loss, marks.gap),
        note: marks.note,
        problem: None,
    })
}

/// Kill, graceful stop, SIGSTOP or partition of the primary of a Sentinel set (2 replicas, 3
/// sentinels; for the partition each node in its own network namespace); Sentinel promotes a
/// replica.
async fn sentinel_cell(fault: Fault) -> Result<Run, Error> {
    let name = format!("redis/{}", fault.name());
    let mut fx = if fault == Fault::Partition {
        RedisSentinel::start_in_netns(2, 3).await?
    } else {
        RedisSentinel::start(2, 3).await?
    };
    let pool = SplitPool::builder()
        .sentinels(fx.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(fx.master_name())
        .retry_policy(policy()?)
        .build()
        .await?;
    let replicas: Vec<SocketAddr> = fx.replica_set().replicas().map(|r| r.addr()).collect();
    let fx = &mut fx;
    let inject = async |t0: Instant| -> Result<Marks, Error> {
        let watch = watch_promotion(replicas.clone());
        let primary = fx.replica_set().primary();
        let before = offset(primary, "master_repl_offset").await?;
        let read_at = Instant::now();
        let node = fx.replica_set_mut().primary_mut();
        match fault {
            Fault::Kill => node.kill().await?,
            Fault::Stop => node.shutdown().await?,
            Fault::Partition => node.partition().await?,
            _ => node.pause()?,
        }
        // Until the process is gone (or frozen), it may still ack writes.
        let fault_at = Instant::now();
        log(&name, t0, format!("{} the primary", fault.name()));
        // Bytes already on their way still arrive; then the replicas' offsets stand still.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut offsets = HashMap::new();
        for r in fx.replica_set().replicas() {
            offsets.insert(r.addr(), offset(r, "slave_repl_offset").await.unwrap_or(-1));
        }
        let (promoted_at, new) = watch.await??;
        log(
            &name,
            t0,
            format!("side connection: {new} answers ROLE master"),
        );
        let reached = offsets.get(&new).copied().unwrap_or(-1);
        Ok(Marks {
            gap: Gap::FirstWriteAfter(promoted_at),
            loss: ServerLoss {
                exposed_until: Some(fault_at),
                safe_before: (reached >= before).then_some(read_at),
            },
            primary: new,
            note: format!("old primary offset {before}, new primary had {reached}"),
            recheck: replicas.clone(),
        })
    };
    measure(&name, pool, inject).await
}

/// One server behind the fault proxy: every connection reset once, 400 ms on every reply for
/// 2 s, or four flaps of 250 ms reset / 250 ms pass.
async fn proxy_cell(fault: Fault) -> Result<Run, Error> {
    let name = format!("redis/{}", fault.name());
    let server = RedisServer::start().await?;
    let proxy = FaultProxy::start(server.addr()).await?;
    let pool = SplitPool::builder()
        .nodes([proxy.addr().to_string()])
        .retry_policy(policy()?)
        .build()
        .await?;
    let inject = async |t0: Instant| -> Result<Marks, Error> {
        let at = Instant::now();
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
        log(
            &name,
            t0,
            format!("{} done; proxy accepted {}", fault.name(), proxy.accepted()),
        );
        Ok(Marks {
            gap,
            loss: ServerLoss::default(),
            primary: server.addr(),
            note: String::new(),
            recheck: Vec::new(),
        })
    };
    measure(&name, pool, inject).await
}

/// A static primary + replica: `FAILOVER` (a coordinated demotion), or both killed and
/// restarted (they come back empty: no persistence in the fixture).
async fn pair_cell(fault: Fault) -> Result<Run, Error> {
    let name = format!("redis/{}", fault.name());
    let mut set = RedisReplicaSet::start(1).await?;
    let (p, r) = (set.primary_index(), 1 - set.primary_index());
    let (primary, replica) = (set.nodes()[p].addr(), set.nodes()[r].addr());
    let pool = SplitPool::builder()
        .nodes([primary.to_string(), replica.to_string()])
        .retry_policy(policy()?)
        .build()
        .await?;
    let set = &mut set;
    let inject = async |t0: Instant| -> Result<Marks, Error> {
        if fault == Fault::Demote {
            let watch = watch_promotion(vec![replica]);
            set.nodes()[p].cmd(&["FAILOVER"]).await?;
            let (promoted_at, _) = watch.await??;
            set.set_primary_addr(replica);
            log(
                &name,
                t0,
                format!("FAILOVER: {replica} answers ROLE master"),
            );
            return Ok(Marks {
                gap: Gap::FirstWriteAfter(promoted_at),
                loss: ServerLoss::default(),
                primary: replica,
                note: String::new(),
                recheck: vec![primary],
            });
        }
        set.node_mut(p)?.kill().await?;
        set.node_mut(r)?.kill().await?;
        let down_at = Instant::now();
        log(&name, t0, "both nodes killed");
        tokio::time::sleep(Duration::from_secs(1)).await;
        set.node_mut(p)?.restart().await?;
        let back = Instant::now();
        set.node_mut(r)?.restart().await?;
        log(&name, t0, "both nodes back (empty)");
        Ok(Marks {
            gap: Gap::FirstWriteAfter(back),
            loss: ServerLoss {
                exposed_until: Some(down_at),
                safe_before: None,
            },
            primary,
            note: "writes acked before the outage count as server_lost (restarted empty)".into(),
            recheck: vec![replica],
        })
    };
    measure(&name, pool, inject).await
}

/// Polls `ROLE` on `replicas` every 2 ms from side connections; the first that answers
/// `master`, and when.
fn watch_promotion(
    replicas: Vec<SocketAddr>,
) -> tokio::task::JoinHandle<Result<(Instant, SocketAddr), String>> {
    tokio::spawn(async move {
        let limit = Instant::now() + PROMOTION_LIMIT;
        let mut clients: Vec<(SocketAddr, Option<RespClient>)> =
            replicas.iter().map(|r| (*r, None)).collect();
        while Instant::now() < limit {
            for (addr, client) in clients.iter_mut() {
                if client.is_none() {
                    let timeout = Duration::from_millis(200);
                    *client = RespClient::connect_with_timeout(*addr, timeout).await.ok();
                }
                let Some(c) = client.as_mut() else { continue };
                match c.command(&["ROLE"]).await {
                    Ok(role) => {
                        let first = role.as_array().and_then(|a| a.first());
                        if first.and_then(Reply::as_str) == Some("master") {
                            return Ok((Instant::now(), *addr));
                        }
                    }
                    // Sentinel closes the client connections of the node it promotes.
                    Err(_) => *client = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Err(format!(
            "no replica of {replicas:?} became primary within {PROMOTION_LIMIT:?}"
        ))
    })
}

/// The role a node reports, from a fresh side connection (`None`: no answer).
async fn role(addr: SocketAddr) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut c = RespClient::connect_with_timeout(addr, timeout).await.ok()?;
    let reply = c.command(&["ROLE"]).await.ok()?;
    let first = reply.as_array()?.first()?.as_str()?;
    Some(first.to_owned())
}

/// A replication offset from `INFO replication`.
async fn offset(node: &RedisServer, field: &str) -> Result<i64, Error> {
    let info = node.info_replication().await?;
    info.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(field)?
                .strip_prefix(':')?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("INFO replication of {} has no {field}", node.addr()).into())
}

/// What the node at `addr` holds of the workload's keys.
async fn stored(addr: SocketAddr, record: &crate::workload::Record) -> Result<Stored, Error> {
    let mut c = RespClient::connect(addr).await?;
    let mut stored = Stored::default();
    for chunk in record.idempotent_ids().chunks(200) {
        for (id, v) in chunk.iter().zip(mget(&mut c, "i", chunk).await?) {
            if v.is_some() {
                stored.idempotent.insert(*id);
            }
        }
    }
    for chunk in record.once_ids().chunks(200) {
        for (id, v) in chunk.iter().zip(mget(&mut c, "n", chunk).await?) {
            if let Some(n) = v {
                stored.once.insert(*id, n.parse()?);
            }
        }
    }
    Ok(stored)
}

async fn mget(c: &mut RespClient, prefix: &str, ids: &[u64]) -> Result<Vec<Option<String>>, Error> {
    let mut args = vec!["MGET".to_owned()];
    args.extend(ids.iter().map(|id| format!("{prefix}:{id}")));
    let reply = c.command(&args).await?;
    let values = reply.as_array().ok_or("MGET without an array")?;
    Ok(values
        .iter()
        .map(|v| v.as_str().map(str::to_owned))
        .collect())
}

/// The workload's calls through the pool: `GET i:N`, `SET i:N 1` on the idempotent handle,
/// `INCR n:N` on the plain one (not retried once it may have run).
struct RedisOps {
    pool: SplitPool,
    idempotent: SplitPool,
}

impl RedisOps {
    fn new(pool: SplitPool) -> Self {
        RedisOps {
            idempotent: pool.idempotent(),
            pool,
        }
    }
}

fn op_error(e: ::redis::RedisError) -> OpError {
    let message = e.to_string();
    OpError {
        wrong_role: is_readonly(&e) || message.contains("READONLY"),
        message,
    }
}

impl Ops for RedisOps {
    fn read(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let mut con = self.pool.clone();
        Box::pin(async move {
            ::redis::cmd("GET")
                .arg(format!("i:{id}"))
                .query_async::<Option<String>>(&mut con)
                .await
                .map(drop)
                .map_err(op_error)
        })
    }

    fn write_idempotent(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let mut con = self.idempotent.clone();
        Box::pin(async move {
            ::redis::cmd("SET")
                .arg(format!("i:{id}"))
                .arg(1)
                .query_async::<()>(&mut con)
                .await
                .map_err(op_error)
        })
    }

    fn write_once(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        let mut con = self.pool.clone();
        Box::pin(async move {
            ::redis::cmd("INCR")
                .arg(format!("n:{id}"))
                .query_async::<i64>(&mut con)
                .await
                .map(drop)
                .map_err(op_error)
        })
    }
}

//! The DynamoDB row: one `Table` handle over two DynamoDB Local "regions", each behind the fault
//! proxy; the preferred region is killed, stopped, frozen, reset, slowed or flapped; both go
//! down and come back; the preferred one returns and the handle fails back to it.
//!
//! DynamoDB Local has no replication and keeps data in memory: the drill replicates nothing, so
//! a write lives in the region that applied it, and what a killed region held is gone (counted as
//! `server_lost`). The stored state is the sum over the regions still running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::dynamo::{RegionConfig, Table};
use switchover::route::Failback;
use switchover::testing::{DynamoDbLocal, DynamoDbRegions, FaultProxy, Mode};
use tokio::time::Instant;

use crate::cell::Fault;
use crate::workload::{BoxFuture, Gap, OpError, Ops, ServerLoss, Stored, Workload};
use crate::{AFTER, LATENCY_MS, Run, WARM_UP, log, log_lost};

type Error = Box<dyn std::error::Error>;

const TABLE: &str = "chaos";
const PREFERRED: &str = "us-east-1";
const SECONDARY: &str = "us-west-2";
/// The handle's failback delay (30 s by default; short to keep the cell short).
const FAILBACK: Duration = Duration::from_secs(2);

pub async fn run(fault: Fault) -> Run {
    match fault {
        Fault::Demote => Run::NotApplicable(
            "DynamoDB has no read-only role or demotion: every region takes writes".into(),
        ),
        _ => cell(fault)
            .await
            .unwrap_or_else(|e| Run::Broken(e.to_string())),
    }
}

/// What a fault left: how to measure the gap, what the servers lost, which regions to read.
struct Marks {
    gap: Gap,
    loss: ServerLoss,
    read_from: Vec<&'static str>,
    note: String,
    problem: Option<String>,
}

impl Marks {
    fn new(gap: Gap) -> Self {
        Marks {
            gap,
            loss: ServerLoss::default(),
            read_from: vec![PREFERRED, SECONDARY],
            note: String::new(),
            problem: None,
        }
    }
}

async fn cell(fault: Fault) -> Result<Run, Error> {
    let name = format!("dynamodb/{}", fault.name());
    let t0 = Instant::now();
    // Partitioned: every region in its own network namespace, reached directly.
    let partition = fault == Fault::Partition;
    let mut regions = if partition {
        DynamoDbRegions::start_in_netns(&[PREFERRED, SECONDARY]).await?
    } else {
        DynamoDbRegions::start(&[PREFERRED, SECONDARY]).await?
    };
    regions.create_table(TABLE, "pk").await?;
    warm_up(&regions).await?;
    let proxy = FaultProxy::start(regions.region(PREFERRED)?.addr()).await?;
    let table = Table::builder(TABLE)
        .region(RegionConfig::endpoint(
            PREFERRED,
            if partition {
                regions.region(PREFERRED)?.endpoint_url()
            } else {
                format!("http://{}", proxy.addr())
            },
        ))
        .region(RegionConfig::endpoint(
            SECONDARY,
            regions.region(SECONDARY)?.endpoint_url(),
        ))
        .failback(Failback::After(FAILBACK))
        .build()?;
    let deadline = table
        .retry_policy()
        .deadline()
        .ok_or("the table's retry policy has no deadline")?;
    log(
        &name,
        t0,
        format!("regions up, table built (deadline {deadline:?})"),
    );
    let work = Workload::start(Arc::new(DynamoOps(table.clone())), deadline);
    tokio::time::sleep(WARM_UP).await;
    let injected = Instant::now();
    let marks = match inject(fault, &mut regions, &proxy, &table, &name, t0).await {
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
    let end = (anchor + AFTER).max(injected + deadline + Duration::from_secs(1));
    tokio::time::sleep_until(end.max(Instant::now())).await;
    let record = work.finish().await;
    log(
        &name,
        t0,
        format!(
            "workload stopped: {} calls; active region {}",
            record.ops.len(),
            table.active_region()
        ),
    );
    for e in &record.errors {
        log(&name, t0, format!("error seen: {e}"));
    }
    if fault == Fault::Freeze {
        // Requests the frozen region had read are applied now: a non-idempotent write that
        // was also retried elsewhere shows up twice.
        regions.region_mut(PREFERRED)?.resume()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if partition {
        // Dropped packets never reached it: nothing is applied late; heal to read it.
        regions.region(PREFERRED)?.heal().await?;
    }
    let mut stored = Stored::default();
    for region in &marks.read_from {
        read_region(regions.region(region)?, &mut stored).await?;
    }
    log_lost(&name, t0, injected, &record.lost_acks(&stored, marks.loss));
    Ok(Run::Measured {
        counts: record.counts(&stored, marks.loss, marks.gap),
        note: marks.note,
        problem: marks.problem,
    })
}

async fn inject(
    fault: Fault,
    regions: &mut DynamoDbRegions,
    proxy: &FaultProxy,
    table: &Table,
    name: &str,
    t0: Instant,
) -> Result<Marks, Error> {
    let at = Instant::now();
    // Until its process is gone, a region may still ack writes.
    let lost_region = |note: &str| Marks {
        loss: ServerLoss {
            exposed_until: Some(Instant::now()),
            safe_before: None,
        },
        read_from: vec![SECONDARY],
        note: note.to_owned(),
        ..Marks::new(Gap::FirstWriteAfter(at))
    };
    let marks = match fault {
        Fault::Kill => {
            regions.region_mut(PREFERRED)?.kill().await?;
            lost_region("writes acked by the killed region count as server_lost (in memory)")
        }
        Fault::Stop => {
            terminate(regions.region(PREFERRED)?).await?;
            lost_region("writes acked by the stopped region count as server_lost (in memory)")
        }
        Fault::Freeze => {
            regions.region_mut(PREFERRED)?.pause()?;
            Marks::new(Gap::FirstWriteAfter(at))
        }
        Fault::Partition => {
            regions.region(PREFERRED)?.partition().await?;
            Marks::new(Gap::FirstWriteAfter(at))
        }
        Fault::Reset => {
            proxy.reset_connections();
            Marks::new(Gap::FirstWriteAfter(at))
        }
        Fault::Latency => {
            let delay = Duration::from_millis(LATENCY_MS);
            let jitter = Duration::ZERO;
            proxy.set_mode(Mode::Latency { delay, jitter }).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set_mode(Mode::Pass).await?;
            let to = Instant::now() + Duration::from_secs(1);
            Marks::new(Gap::LongestBetween(at, to))
        }
        Fault::Flap => {
            for _ in 0..4 {
                proxy.set_mode(Mode::Reset).await?;
                tokio::time::sleep(Duration::from_millis(250)).await;
                proxy.set_mode(Mode::Pass).await?;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let to = Instant::now() + Duration::from_secs(1);
            Marks::new(Gap::LongestBetween(at, to))
        }
        Fault::AllDown => {
            regions.region_mut(PREFERRED)?.kill().await?;
            regions.region_mut(SECONDARY)?.kill().await?;
            let down_at = Instant::now();
            log(name, t0, "both regions killed");
            tokio::time::sleep(Duration::from_secs(1)).await;
            regions.region_mut(PREFERRED)?.restart().await?;
            regions.region_mut(SECONDARY)?.restart().await?;
            regions.create_table(TABLE, "pk").await?;
            let back = Instant::now();
            Marks {
                loss: ServerLoss {
                    exposed_until: Some(down_at),
                    safe_before: None,
                },
                note: "writes acked before the outage count as server_lost (restarted empty)"
                    .into(),
                ..Marks::new(Gap::FirstWriteAfter(back))
            }
        }
        _ => return failback(regions, table, name, t0).await,
    };
    log(name, t0, format!("{} injected", fault.name()));
    Ok(marks)
}

/// The preferred region frozen for 2 s, then thawed: the handle must come back to it after its
/// failback delay without a gap in the writes.
async fn failback(
    regions: &mut DynamoDbRegions,
    table: &Table,
    name: &str,
    t0: Instant,
) -> Result<Marks, Error> {
    regions.region_mut(PREFERRED)?.pause()?;
    log(name, t0, "preferred region frozen");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let away = table.active_region();
    regions.region_mut(PREFERRED)?.resume()?;
    let resumed = Instant::now();
    log(name, t0, format!("preferred region thawed; active {away}"));
    let limit = resumed + FAILBACK + Duration::from_secs(15);
    while table.active_region() != PREFERRED && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back = Instant::now();
    let mut marks = Marks::new(Gap::LongestBetween(resumed, back + Duration::from_secs(1)));
    if table.active_region() == PREFERRED {
        log(name, t0, format!("failed back to {PREFERRED}"));
    } else {
        marks.problem = Some(format!(
            "no failback to {PREFERRED} within {:?} of its return",
            limit - resumed
        ));
    }
    if away == PREFERRED {
        marks.note = format!("the handle never left {PREFERRED} while it was frozen");
    }
    Ok(marks)
}

/// SIGTERM to the region's JVM (a graceful stop: shutdown hooks run), then waits for it to go.
async fn terminate(region: &DynamoDbLocal) -> Result<(), Error> {
    let pid = region.pid().ok_or("the region has no process")?.to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await?;
    if !status.success() {
        return Err(format!("kill -TERM {pid} failed").into());
    }
    let limit = Instant::now() + Duration::from_secs(10);
    while Instant::now() < limit {
        let alive = tokio::process::Command::new("kill")
            .args(["-0", &pid])
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        // A zombie (exited, not reaped yet) still answers kill -0: look at its state.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !alive.success() || stat.split_whitespace().nth(2) == Some("Z") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("DynamoDB Local {pid} still running 10 s after SIGTERM").into())
}

/// A few writes to each fresh JVM first: its first requests are slow.
async fn warm_up(regions: &DynamoDbRegions) -> Result<(), Error> {
    for node in regions.regions() {
        let client = node.client();
        for i in 0..20 {
            client
                .put_item()
                .table_name(TABLE)
                .set_item(Some(item(format!("warm-{i}"))))
                .send()
                .await?;
        }
    }
    Ok(())
}

fn item(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("v".to_owned(), AttributeValue::N("1".into())),
    ])
}

fn key(pk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk))])
}

/// Adds what `region` holds of the workload's items to `stored` (counts add up over regions).
async fn read_region(region: &DynamoDbLocal, stored: &mut Stored) -> Result<(), Error> {
    let client = region.client();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(TABLE)
            .set_exclusive_start_key(start.take())
            .send()
            .await?;
        for it in page.items() {
            let Some(AttributeValue::S(pk)) = it.get("pk") else {
                continue;
            };
            if let Some(id) = pk.strip_prefix("i-") {
                stored.idempotent.insert(id.parse()?);
            } else if let Some(id) = pk.strip_prefix("n-") {
                let n: u64 = match it.get("n") {
                    Some(AttributeValue::N(n)) => n.parse()?,
                    _ => 0,
                };
                *stored.once.entry(id.parse()?).or_default() += n;
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(()),
        }
    }
}

/// The workload's calls: `GetItem i-N`, a whole-item `PutItem i-N` (idempotent), `UpdateItem
/// n-N ADD n 1` (not idempotent: not retried once it may have run).
struct DynamoOps(Table);

fn op_error(e: impl std::fmt::Display) -> OpError {
    OpError {
        message: e.to_string(),
        wrong_role: false,
    }
}

impl Ops for DynamoOps {
    fn read(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        Box::pin(async move {
            self.0
                .get_item(key(format!("i-{id}")))
                .send()
                .await
                .map(drop)
                .map_err(op_error)
        })
    }

    fn write_idempotent(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        Box::pin(async move {
            self.0
                .put_item(item(format!("i-{id}")))
                .send()
                .await
                .map(drop)
                .map_err(op_error)
        })
    }

    fn write_once(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>> {
        Box::pin(async move {
            self.0
                .update_item(key(format!("n-{id}")), "ADD #n :one")
                .name("#n", "n")
                .value(":one", AttributeValue::N("1".into()))
                .send()
                .await
                .map(drop)
                .map_err(op_error)
        })
    }
}

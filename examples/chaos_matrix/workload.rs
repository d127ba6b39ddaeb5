//! The workload every cell runs — concurrent reads, idempotent writes and non-idempotent writes,
//! each call timed against its deadline — and what it recorded.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cell::Counts;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long past its deadline a call may hang before the workload stops waiting for it (and
/// records it as hung).
const GUARD: Duration = Duration::from_secs(5);
/// Tasks per kind of call.
const TASKS_PER_KIND: usize = 2;
/// The pause between two calls of one task.
const PAUSE: Duration = Duration::from_millis(10);

/// A failed call as the caller saw it.
pub struct OpError {
    pub message: String,
    /// The error names the wrong role (`READONLY`, SQLSTATE 25006, ...).
    pub wrong_role: bool,
}

/// The three calls of the workload, through the adapter under test. Every id is used once per
/// kind, so the stored state shows what was applied and how often.
pub trait Ops: Send + Sync + 'static {
    /// Reads the value an idempotent write `id` wrote (present or not).
    fn read(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>>;
    /// Writes `id` so that a second run changes nothing (SET, upsert, whole-item put).
    fn write_idempotent(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>>;
    /// Applies `id` once; a second run is visible (INCR, INSERT without a key, ADD).
    fn write_once(&self, id: u64) -> BoxFuture<'_, Result<(), OpError>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Read,
    Idempotent,
    Once,
}

/// One call.
pub struct Op {
    pub kind: Kind,
    pub id: u64,
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
    pub wrong_role: bool,
}

/// The running workload.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<(Vec<Op>, Vec<String>)>>,
    deadline: Duration,
}

impl Workload {
    /// Starts the tasks; `deadline` is what the adapter was configured with, per call.
    pub fn start(ops: Arc<dyn Ops>, deadline: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let idempotent_ids = Arc::new(AtomicU64::new(0));
        let once_ids = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for kind in [Kind::Read, Kind::Idempotent, Kind::Once] {
            for _ in 0..TASKS_PER_KIND {
                let (ops, stop) = (ops.clone(), stop.clone());
                let (idem, once) = (idempotent_ids.clone(), once_ids.clone());
                tasks.push(tokio::spawn(async move {
                    let mut done = Vec::new();
                    let mut errors = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let id = match kind {
                            Kind::Read => idem.load(Ordering::Relaxed) / 2,
                            Kind::Idempotent => idem.fetch_add(1, Ordering::Relaxed) + 1,
                            Kind::Once => once.fetch_add(1, Ordering::Relaxed) + 1,
                        };
                        let call = match kind {
                            Kind::Read => ops.read(id),
                            Kind::Idempotent => ops.write_idempotent(id),
                            Kind::Once => ops.write_once(id),
                        };
                        let start = Instant::now();
                        let result = match tokio::time::timeout(deadline + GUARD, call).await {
                            Ok(r) => r,
                            Err(_) => Err(OpError {
                                message: format!("no answer {GUARD:?} after the deadline"),
                                wrong_role: false,
                            }),
                        };
                        let end = Instant::now();
                        let (ok, wrong_role) = match result {
                            Ok(()) => (true, false),
                            Err(e) => {
                                if errors.len() < 3 && !errors.contains(&e.message) {
                                    errors.push(e.message);
                                }
                                (false, e.wrong_role)
                            }
                        };
                        done.push(Op {
                            kind,
                            id,
                            start,
                            end,
                            ok,
                            wrong_role,
                        });
                        tokio::time::sleep(PAUSE).await;
                    }
                    (done, errors)
                }));
            }
        }
        Workload {
            stop,
            tasks,
            deadline,
        }
    }

    /// Stops the tasks and waits for their calls in flight.
    pub async fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops = Vec::new();
        let mut errors = Vec::new();
        for t in self.tasks {
            match t.await {
                Ok((done, errs)) => {
                    ops.extend(done);
                    for e in errs {
                        if !errors.contains(&e) {
                            errors.push(e);
                        }
                    }
                }
                Err(e) => errors.push(format!("workload task failed: {e}")),
            }
        }
        Record {
            ops,
            errors,
            deadline: self.deadline,
        }
    }
}

/// How a cell's client gap is measured.
#[derive(Clone, Copy, Debug)]
pub enum Gap {
    /// From this instant (the new primary accepts writes, the fault, the heal) to the end of
    /// the first successful write after it.
    FirstWriteAfter(Instant),
    /// The longest time without a successful write between these instants (faults that leave
    /// the primary in place: latency, failback).
    LongestBetween(Instant, Instant),
}

/// What the servers hold after the cell, read without the adapter.
#[derive(Default)]
pub struct Stored {
    /// Ids of idempotent writes present.
    pub idempotent: HashSet<u64>,
    /// How many times each non-idempotent write was applied.
    pub once: HashMap<u64, u64>,
}

/// Which acked writes the server itself may have lost.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerLoss {
    /// Writes acked up to this instant may have been lost by the server (`None`: none).
    pub exposed_until: Option<Instant>,
    /// ... except those acked before this one, which the new primary is known to hold (its
    /// replication offset / LSN had passed the old primary's, read at this instant).
    pub safe_before: Option<Instant>,
}

impl ServerLoss {
    fn exposed(&self, acked: Instant) -> bool {
        self.exposed_until.is_some_and(|u| acked <= u)
            && self.safe_before.is_none_or(|s| acked >= s)
    }
}

/// Every call the workload made, and the first distinct errors it saw.
pub struct Record {
    pub ops: Vec<Op>,
    pub errors: Vec<String>,
    pub deadline: Duration,
}

impl Record {
    /// Ids of the non-idempotent writes tried, acked or not (for the double-application check).
    pub fn once_ids(&self) -> Vec<u64> {
        self.ops
            .iter()
            .filter(|o| o.kind == Kind::Once)
            .map(|o| o.id)
            .collect()
    }

    /// Ids of the idempotent writes tried.
    pub fn idempotent_ids(&self) -> Vec<u64> {
        self.ops
            .iter()
            .filter(|o| o.kind == Kind::Idempotent)
            .map(|o| o.id)
            .collect()
    }

    fn gap(&self, rule: Gap) -> Option<Duration> {
        let mut writes: Vec<Instant> = self
            .ops
            .iter()
            .filter(|o| o.ok && o.kind != Kind::Read)
            .map(|o| o.end)
            .collect();
        writes.sort();
        match rule {
            Gap::FirstWriteAfter(at) => writes.iter().find(|&&t| t >= at).map(|&t| t - at),
            Gap::LongestBetween(from, to) => {
                let mut last = from;
                let mut longest = Duration::ZERO;
                for &t in writes.iter().filter(|&&t| t >= from && t <= to) {
                    longest = longest.max(t - last);
                    last = t;
                }
                Some(longest.max(to.saturating_duration_since(last)))
            }
        }
    }

    /// When the acked writes counted as lost were acked (for the log).
    pub fn lost_acks(&self, stored: &Stored, loss: ServerLoss) -> Vec<Instant> {
        self.ops
            .iter()
            .filter(|op| op.ok && !loss.exposed(op.end))
            .filter(|op| match op.kind {
                Kind::Read => false,
                Kind::Idempotent => !stored.idempotent.contains(&op.id),
                Kind::Once => !stored.once.contains_key(&op.id),
            })
            .map(|op| op.end)
            .collect()
    }

    /// The cell's counts from what was stored, which losses the server owns, and the gap rule.
    pub fn counts(&self, stored: &Stored, loss: ServerLoss, gap: Gap) -> Counts {
        let mut c = Counts {
            ops: self.ops.len() as u64,
            client_gap: self.gap(gap),
            ..Counts::default()
        };
        for op in &self.ops {
            c.max_over_deadline = c
                .max_over_deadline
                .max((op.end - op.start).saturating_sub(self.deadline));
            if !op.ok {
                c.failed += 1;
                c.wrong_role += u64::from(op.wrong_role);
            }
            let applied = match op.kind {
                Kind::Read => continue,
                Kind::Idempotent => u64::from(stored.idempotent.contains(&op.id)),
                Kind::Once => stored.once.get(&op.id).copied().unwrap_or(0),
            };
            if applied > 1 {
                c.doubled += 1;
            }
            if op.ok && applied == 0 {
                if loss.exposed(op.end) {
                    c.server_lost += 1;
                } else {
                    c.lost += 1;
                }
            }
        }
        c
    }
}

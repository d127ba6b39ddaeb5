//! The chaos matrix: every backend × every fault, each cell on fresh real servers, with a
//! workload of reads, idempotent writes and non-idempotent writes running through the adapter
//! while the fault happens.
//!
//! ```text
//! cargo run --release --all-features --example chaos_matrix               # every cell
//! cargo run --release --all-features --example chaos_matrix -- quick      # eight cells, for CI
//! cargo run --release --all-features --example chaos_matrix -- only redis/sigstop
//! ```
//!
//! Faults: `kill9` (SIGKILL), `stop` (graceful), `sigstop` (frozen process), `partition`
//! (packets dropped inside a network namespace: needs root, `ip` and `iptables`), `rst` (every
//! connection reset by the fault proxy), `latency` (the proxy delays every reply), `demote`
//! (read-only fence / demotion while another node takes over), `flap` (the proxy resets, passes,
//! resets, ...), `alldown` (every server down, then back), `failback` (the preferred node
//! returns and traffic goes back to it). A fault that means nothing for a backend prints a row
//! that says so; it is not counted as passed.
//!
//! Each cell checks: every call returns within its deadline + 100 ms; no acked write is missing
//! afterwards beyond what the server itself may have lost (counted apart as `server_lost`, from
//! replication offsets / WAL positions at the fault, or a server that came back empty); no
//! non-idempotent write is applied twice; no wrong-role error (`READONLY`, SQLSTATE 25006)
//! reaches a caller; the client gap is at most 1 s. The client gap is measured from the moment
//! the new primary accepts writes (seen by a side connection, not the adapter) for failovers,
//! from the fault for quick loud faults (`rst`, and the regions of DynamoDB, where the other
//! region always accepts writes), from the servers' return for `alldown`, and as the longest
//! time without a successful write for faults that leave the primary in place (`latency`,
//! `flap`, `failback`).
//!
//! Prints one row per cell and ends with
//! `chaos: cells=N passed=N failed=N max_client_gap_ms=N max_call_over_deadline_ms=N`;
//! exits with status 1 when a cell failed.

mod cell;
mod dynamo;
mod postgres;
mod redis;
mod workload;

use std::time::Duration;

use cell::{Backend, Cell, Counts, Outcome, Selection, Verdict};
use tokio::time::Instant;

/// What a backend's cell returns.
pub enum Run {
    /// The cell ran: its counts, a note added to a failing verdict, and a failure the counts
    /// do not show (e.g. no failback).
    Measured {
        counts: Counts,
        note: String,
        problem: Option<String>,
    },
    /// The fault means nothing for this backend.
    NotApplicable(String),
    /// The cell could not run (a fixture failed, a piece of the kit is missing).
    Broken(String),
}

/// The latency cell's delay of every reply chunk, for 2 s: below every timeout of the
/// adapters, so that slow must not be taken for dead.
pub const LATENCY_MS: u64 = 250;

/// Logs when the writes counted as lost were acked, relative to the fault.
pub fn log_lost(cell: &str, start: Instant, fault: Instant, acks: &[Instant]) {
    if let (Some(first), Some(last)) = (acks.iter().min(), acks.iter().max()) {
        let rel = |t: Instant| t.saturating_duration_since(fault).as_millis();
        log(
            cell,
            start,
            format!(
                "{} lost writes acked {}..{} ms after the fault",
                acks.len(),
                rel(*first),
                rel(*last)
            ),
        );
    }
}

/// How long the workload runs before the fault.
pub const WARM_UP: Duration = Duration::from_millis(1500);
/// How long it runs after the cell's anchor (the new primary, the heal).
pub const AFTER: Duration = Duration::from_secs(3);

/// Prints a progress line of a cell.
pub fn log(cell: &str, start: Instant, msg: impl std::fmt::Display) {
    println!("  [{cell} {:>6} ms] {msg}", start.elapsed().as_millis());
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selection = match Selection::from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let begun = Instant::now();
    let mut outcomes = Vec::new();
    for cell in selection.cells() {
        println!("cell {cell}");
        let start = Instant::now();
        let run = match cell.backend {
            Backend::Redis => redis::run(cell.fault).await,
            Backend::Postgres => postgres::run(cell.fault).await,
            Backend::Dynamo => dynamo::run(cell.fault).await,
        };
        let outcome = outcome(cell, run, start.elapsed());
        println!("{}", outcome.row());
        outcomes.push(outcome);
    }
    println!();
    println!("{}", cell::header());
    for o in &outcomes {
        println!("{}", o.row());
    }
    let counted: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o.verdict, Verdict::NotApplicable(_)))
        .collect();
    let passed = counted
        .iter()
        .filter(|o| o.verdict == Verdict::Pass)
        .count();
    let failed = counted.len() - passed;
    let max_gap = counted
        .iter()
        .filter_map(|o| o.counts.client_gap)
        .max()
        .unwrap_or_default();
    let max_over = counted
        .iter()
        .map(|o| o.counts.max_over_deadline)
        .max()
        .unwrap_or_default();
    println!(
        "(matrix took {:.0} s; {} cells not applicable)",
        begun.elapsed().as_secs_f64(),
        outcomes.len() - counted.len()
    );
    println!(
        "chaos: cells={} passed={passed} failed={failed} max_client_gap_ms={} max_call_over_deadline_ms={}",
        counted.len(),
        max_gap.as_millis(),
        max_over.as_millis()
    );
    if failed > 0 {
        std::process::exit(1);
    }
}

fn outcome(cell: Cell, run: Run, took: Duration) -> Outcome {
    let (counts, verdict) = match run {
        Run::Measured {
            counts,
            note,
            problem,
        } => {
            let verdict = match (counts.verdict(&note), problem) {
                (v, None) => v,
                (Verdict::Fail(why), Some(p)) => Verdict::Fail(format!("{p}; {why}")),
                (_, Some(p)) => Verdict::Fail(p),
            };
            (counts, verdict)
        }
        Run::NotApplicable(why) => (Counts::default(), Verdict::NotApplicable(why)),
        Run::Broken(why) => (Counts::default(), Verdict::Fail(format!("not run: {why}"))),
    };
    Outcome {
        cell,
        counts,
        verdict,
        took,
    }
}

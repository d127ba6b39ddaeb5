//! A tour of failover with no server: an in-process simulated service with a primary and two
//! secondaries, a workload of writes and reads, and a script of faults: an outage of the
//! primary, a black hole (calls that never answer), latency, a flapping node, and recovery.
//!
//! ```text
//! cargo run --example failover_tour
//! ```
//!
//! It prints a timeline (health transitions, switches with their generation, calls per second),
//! the router's own timeline of each failover (its phases), and a summary; the last two lines
//! are measured from the run:
//!
//! ```text
//! timeline: failovers=N phases_sum_ms=N gap_ms=N
//! summary: backend=simulated switches=N failed_calls=N max_gap_ms=N
//! ```
//!
//! `gap_ms` is the workload's own measure of the first failover (from the start of the first
//! request to the primary that failed, a call or a probe, to the first call that succeeded on
//! the new active endpoint); `phases_sum_ms` is the sum of that failover's phases in the
//! router's timeline; `failovers` counts the timeline's failovers (failbacks aside).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::health::{HealthEvent, HealthTracker, ProbeResult};
use switchover::retry::{ExponentialBackoff, Jitter, RetryPolicy};
use switchover::route::{LowestLatency, RouteEvent, Router};
use switchover::{Classification, Classify};
use tokio::time::{Instant, sleep};

const NODES: [&str; 3] = ["primary", "secondary-1", "secondary-2"];
const BASE_LATENCY: Duration = Duration::from_millis(2);

/// What a simulated node does with a call.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Healthy,
    /// Refuses connections at once.
    Outage,
    /// Accepts, never answers.
    BlackHole,
    /// Answers after this long.
    Slow(Duration),
    /// Down 300 ms, up 300 ms, … from this instant.
    Flapping(Instant),
}

#[derive(Debug)]
enum SimError {
    Refused,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection refused")
    }
}

impl Classify for SimError {
    fn classify(&self) -> Classification {
        match self {
            SimError::Refused => Classification::transient().not_executed(),
        }
    }
}

/// The simulated service: a mode per node and a count of calls served.
#[derive(Clone, Default)]
struct Sim {
    modes: Arc<Mutex<HashMap<&'static str, Mode>>>,
    served: Arc<Mutex<HashMap<&'static str, u64>>>,
}

impl Sim {
    fn set(&self, node: &'static str, mode: Mode) {
        self.modes.lock().unwrap().insert(node, mode);
    }

    fn mode(&self, node: &str) -> Mode {
        self.modes
            .lock()
            .unwrap()
            .get(node)
            .copied()
            .unwrap_or(Mode::Healthy)
    }

    async fn call(&self, node: &'static str) -> Result<(), SimError> {
        match self.mode(node) {
            Mode::Healthy => sleep(BASE_LATENCY).await,
            Mode::Outage => return Err(SimError::Refused),
            Mode::BlackHole => std::future::pending::<()>().await,
            Mode::Slow(d) => sleep(d).await,
            Mode::Flapping(since) => {
                if (since.elapsed().as_millis() / 300) % 2 == 0 {
                    return Err(SimError::Refused);
                }
                sleep(BASE_LATENCY).await
            }
        }
        *self.served.lock().unwrap().entry(node).or_default() += 1;
        Ok(())
    }
}

/// Workload counters and the longest time without any successful call.
struct Stats {
    start: Instant,
    ok: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    reads: AtomicU64,
    gap: Mutex<(Instant, Duration)>,
}

impl Stats {
    fn success(&self) {
        let now = Instant::now();
        let mut g = self.gap.lock().unwrap();
        g.1 = g.1.max(now - g.0);
        g.0 = now;
    }

    fn max_gap(&self) -> Duration {
        let g = self.gap.lock().unwrap();
        g.1.max(Instant::now() - g.0)
    }
}

/// The workload's own measure of the first failover: the start of the first request that
/// failed, and the first success on the new active endpoint after it.
#[derive(Default)]
struct FirstGap {
    failure: Option<Instant>,
    success: Option<Instant>,
}

impl FirstGap {
    fn failed(&mut self, started: Instant) {
        if self.success.is_none() {
            self.failure = Some(self.failure.map_or(started, |t| t.min(started)));
        }
    }

    fn gap(&self) -> Option<Duration> {
        Some(self.success? - self.failure?)
    }
}

fn stamp(start: Instant) -> String {
    format!("[{:>6.2}s]", start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::default();
    let start = Instant::now();

    // Health: probes ask the simulated node; a black hole times out after 150 ms.
    let first_gap = Arc::new(Mutex::new(FirstGap::default()));
    let probe_sim = sim.clone();
    let probe_gap = Arc::clone(&first_gap);
    let tracker = HealthTracker::builder()
        .endpoints(NODES)
        .failure_threshold(3)
        .recovery_successes(2)
        .ejection_base(Duration::from_millis(400))
        .ejection_growth(2.0)
        .ejection_cap(Duration::from_millis(3200))
        .stable_after(Duration::from_secs(3))
        .probe(move |id: &&'static str| {
            let sim = probe_sim.clone();
            let gap = Arc::clone(&probe_gap);
            let id = *id;
            async move {
                let t = Instant::now();
                match sim.call(id).await {
                    Ok(()) => ProbeResult::up().with_latency(t.elapsed()),
                    Err(_) => {
                        gap.lock().unwrap().failed(t);
                        ProbeResult::down()
                    }
                }
            }
        })
        .probe_interval(Duration::from_millis(150))
        .probe_timeout(Duration::from_millis(150))
        .heartbeat(Duration::from_millis(250))
        .build()?;
    let router = Router::builder(&tracker)
        .endpoints(NODES)
        .failback_after(Duration::from_millis(1500))
        .build()?;
    // Writes: up to 4 attempts, 150 ms each, within 1 s; the simulated writes are idempotent
    // upserts, so a timed-out attempt may be retried.
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .attempt_timeout(Duration::from_millis(150))
        .deadline(Duration::from_secs(1))
        .backoff(
            ExponentialBackoff::builder()
                .base(Duration::from_millis(10))
                .cap(Duration::from_millis(100))
                .jitter(Jitter::Equal)
                .build()?,
        )
        .build()?;

    println!("failover tour: 1 primary + 2 secondaries, simulated in process");
    println!("endpoints in order of preference: {}", NODES.join(", "));
    println!();

    // Timeline printers.
    let mut health_events = tracker.subscribe();
    let mut route_events = router.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            // Health first: a switch always follows the transition that caused it.
            tokio::select! {
                biased;
                Some(ev) = health_events.recv() => print_health(start, &ev),
                Some(ev) = route_events.recv() => print_route(start, &ev),
                else => break,
            }
        }
    });

    let stats = Arc::new(Stats {
        start,
        ok: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        gap: Mutex::new((start, Duration::ZERO)),
    });
    let running = Arc::new(AtomicBool::new(true));

    // Workload: three writers on the active endpoint, one reader on the fastest endpoint.
    let mut workers = Vec::new();
    for w in 0..4 {
        let (router, policy, sim, stats, running) = (
            router.clone(),
            policy.clone(),
            sim.clone(),
            Arc::clone(&stats),
            Arc::clone(&running),
        );
        let first_gap = Arc::clone(&first_gap);
        workers.push(tokio::spawn(async move {
            let fastest = LowestLatency;
            while running.load(Ordering::Relaxed) {
                let mut retried = false;
                let call = router
                    .call(&policy, |ep| {
                        let (sim, gap, router) = (sim.clone(), Arc::clone(&first_gap), &router);
                        let started = Instant::now();
                        async move {
                            let result = sim.call(ep.id()).await;
                            let mut gap = gap.lock().unwrap();
                            match result {
                                Err(_) => gap.failed(started),
                                Ok(())
                                    if ep.generation() >= 1
                                        && gap.failure.is_some()
                                        && gap.success.is_none()
                                        && router.active().endpoint().ptr_eq(ep.endpoint()) =>
                                {
                                    gap.success = Some(Instant::now());
                                }
                                Ok(()) => {}
                            }
                            result
                        }
                    })
                    .idempotent(true)
                    .on_retry(|_: &switchover::retry::RetryEvent<'_, SimError>| retried = true);
                let result = if w == 3 {
                    call.read(&fastest).run().await
                } else {
                    call.run().await
                };
                match result {
                    Ok(()) => {
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        if w == 3 {
                            stats.reads.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.success();
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        println!("{} call     FAILED: {e}", stamp(stats.start));
                    }
                }
                if retried {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                }
                sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Per-second call counts.
    let ticker = {
        let (stats, running, router) = (Arc::clone(&stats), Arc::clone(&running), router.clone());
        tokio::spawn(async move {
            let (mut ok0, mut re0, mut f0) = (0, 0, 0);
            while running.load(Ordering::Relaxed) {
                sleep(Duration::from_secs(1)).await;
                let (ok, re, f) = (
                    stats.ok.load(Ordering::Relaxed),
                    stats.retried.load(Ordering::Relaxed),
                    stats.failed.load(Ordering::Relaxed),
                );
                let active = router.active();
                println!(
                    "{} calls    ok={:<4} retried={:<3} failed={:<3} active={} gen={}",
                    stamp(stats.start),
                    ok - ok0,
                    re - re0,
                    f - f0,
                    active.id(),
                    active.generation()
                );
                (ok0, re0, f0) = (ok, re, f);
            }
        })
    };

    // The script.
    let at = |secs: f64| sleep_until_offset(start, secs);
    let phase = |what: &str| println!("{} ---- {what}", stamp(start));

    phase("steady state");
    at(1.0).await;
    phase("OUTAGE: primary refuses every connection");
    sim.set("primary", Mode::Outage);
    at(3.0).await;
    phase("primary is back (failback after it stays up 1.5 s)");
    sim.set("primary", Mode::Healthy);
    at(5.5).await;
    phase("BLACK HOLE: primary accepts and never answers");
    sim.set("primary", Mode::BlackHole);
    at(7.0).await;
    phase("primary answers again");
    sim.set("primary", Mode::Healthy);
    at(7.5).await;
    phase("LATENCY: secondary-2 answers in 80 ms (reads avoid it)");
    sim.set("secondary-2", Mode::Slow(Duration::from_millis(80)));
    at(9.5).await;
    phase("FLAPPING: primary down/up every 300 ms");
    sim.set("primary", Mode::Flapping(Instant::now()));
    at(12.0).await;
    phase("RECOVERY: every node healthy");
    sim.set("primary", Mode::Healthy);
    sim.set("secondary-2", Mode::Healthy);
    at(14.5).await;

    running.store(false, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    ticker.await?;
    let max_gap = stats.max_gap();
    let switches = router.generation();
    // Let the printer flush the last events.
    sleep(Duration::from_millis(20)).await;
    printer.abort();

    // Summary.
    println!();
    println!(
        "{:<12} {:>7} {:>9} {:>9} {:>10} {:>12}",
        "node", "served", "state", "failures", "ejections", "latency(avg)"
    );
    let served = sim.served.lock().unwrap().clone();
    for (ep, _) in router.endpoints() {
        let st = ep.stats();
        println!(
            "{:<12} {:>7} {:>9} {:>9} {:>10} {:>12}",
            ep.id(),
            served.get(ep.id()).copied().unwrap_or(0),
            st.state.to_string(),
            st.failures_total,
            st.ejections,
            st.latency
                .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "active: {} (generation {})",
        router.active().id(),
        router.active().generation()
    );
    println!();
    println!(
        "calls: ok={} (reads {}), retried={}, failed={}",
        stats.ok.load(Ordering::Relaxed),
        stats.reads.load(Ordering::Relaxed),
        stats.retried.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    // The router's own timeline of its failovers.
    println!();
    let failovers: Vec<_> = router
        .timeline()
        .failovers()
        .into_iter()
        .filter(|f| f.reason != switchover::route::SwitchReason::Failback)
        .collect();
    for f in &failovers {
        let p = f.phases;
        println!(
            "{} failover {} -> {} (gen {}): detection {:.1} ms, rediscovery {:.1} ms, switch {:.1} ms, first success {:.1} ms",
            stamp_at(start, f.started_at),
            f.from,
            f.to,
            f.generation,
            p.detection.as_secs_f64() * 1e3,
            p.rediscovery.as_secs_f64() * 1e3,
            p.switch.as_secs_f64() * 1e3,
            p.first_success.as_secs_f64() * 1e3,
        );
    }
    let gap = first_gap.lock().unwrap().gap().unwrap_or_default();
    let phases_sum = failovers
        .first()
        .map(|f| f.phases.total())
        .unwrap_or_default();
    println!(
        "timeline: failovers={} phases_sum_ms={} gap_ms={}",
        failovers.len(),
        phases_sum.as_millis(),
        gap.as_millis()
    );
    println!(
        "summary: backend=simulated switches={} failed_calls={} max_gap_ms={}",
        switches,
        stats.failed.load(Ordering::Relaxed),
        max_gap.as_millis()
    );
    Ok(())
}

fn stamp_at(start: Instant, at: Instant) -> String {
    format!(
        "[{:>6.2}s]",
        at.saturating_duration_since(start).as_secs_f64()
    )
}

async fn sleep_until_offset(start: Instant, secs: f64) {
    tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await
}

fn print_health(start: Instant, ev: &HealthEvent<&'static str>) {
    let ejected = ev
        .ejection
        .map(|d| format!("; ejected for {} ms", d.as_millis()))
        .unwrap_or_default();
    println!(
        "{} health   {:<11} {} -> {} ({}{ejected})",
        stamp(start),
        ev.endpoint,
        ev.from,
        ev.to,
        ev.reason
    );
}

fn print_route(start: Instant, ev: &RouteEvent<&'static str>) {
    match ev {
        RouteEvent::Switched {
            from,
            to,
            generation,
            reason,
            ..
        } => println!(
            "{} SWITCH   {from} -> {to} ({reason}), generation {generation}",
            stamp(start)
        ),
        RouteEvent::AllDownEntered { active, .. } => println!(
            "{} ALL DOWN no candidate available; trying {active}",
            stamp(start)
        ),
        RouteEvent::AllDownLeft { active, .. } => {
            println!("{} route    {active} available again", stamp(start))
        }
        other => println!("{} route    {other:?}", stamp(start)),
    }
}

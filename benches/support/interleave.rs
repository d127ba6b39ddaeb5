//! A drift-proof throughput comparison shared by the adapter benches.
//!
//! Criterion runs one benchmark ID after the other, so load from other processes, CPU
//! frequency and server-side drift can favour whichever runs first. This alternates blocks of
//! raw-client calls and calls through `switchover`, so both see the same conditions, and prints
//! the median per-call time of each and the throughput ratio. It also prints the median of the
//! per-round ratios (each round's raw block against the block right after it): a burst of
//! load that hits a few blocks moves that median far less than the ratio of the two medians.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `rounds` alternating blocks of `block` calls of `raw` and of `ours`; prints and returns
/// the median per-call times `(raw, ours)`.
pub async fn interleaved<R, RF, O, OF>(
    label: &str,
    rounds: usize,
    block: u32,
    mut raw: R,
    mut ours: O,
) -> (Duration, Duration)
where
    R: FnMut() -> RF,
    RF: Future<Output = ()>,
    O: FnMut() -> OF,
    OF: Future<Output = ()>,
{
    let (mut raw_times, mut our_times) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..block {
            raw().await;
        }
        raw_times.push(start.elapsed() / block);
        let start = Instant::now();
        for _ in 0..block {
            ours().await;
        }
        our_times.push(start.elapsed() / block);
        let (r, o) = (
            raw_times[raw_times.len() - 1],
            our_times[our_times.len() - 1],
        );
        ratios.push(r.as_secs_f64() / o.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    raw_times.sort();
    our_times.sort();
    let (r, o) = (raw_times[rounds / 2], our_times[rounds / 2]);
    println!(
        "interleaved {label} medians: raw {r:?}, switchover {o:?}, \
         switchover throughput = {:.1}% of raw (median of per-round ratios {:.1}%, \
         p25-p75 {:.1}-{:.1}%, {rounds} rounds)",
        100.0 * r.as_secs_f64() / o.as_secs_f64(),
        100.0 * ratios[rounds / 2],
        100.0 * ratios[rounds / 4],
        100.0 * ratios[rounds * 3 / 4],
    );
    (r, o)
}

/// The cost of a client's background work (a heartbeat): `pairs` pairs of phases of about
/// `phase` each, one with a client made by `make(false)` ("off"), one with a client made by
/// `make(true)` ("on"), in alternating order. Each client exists only during its own phase (made
/// before it, dropped after it, neither timed), so work it does in the background slows its own
/// phase and no other: two clients alive side by side would each slow both. A phase times all
/// its calls (the mean, not the median: a background task's cost lands on a few calls). Prints
/// and returns the mean per-call times `(off, on)` over all phases.
#[allow(dead_code)] // Not every bench that includes this file measures a background cost.
pub async fn phases<T, M, MF, C, CF>(
    label: &str,
    pairs: usize,
    phase: Duration,
    mut make: M,
    mut call: C,
) -> (Duration, Duration)
where
    T: Clone,
    M: FnMut(bool) -> MF,
    MF: Future<Output = T>,
    C: FnMut(T) -> CF,
    CF: Future<Output = ()>,
{
    let mut totals = [(Duration::ZERO, 0u32); 2];
    let mut ratios = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let mut mean = [Duration::ZERO; 2];
        for k in 0..2 {
            let on = (k + pair) % 2 == 1;
            let client = make(on).await;
            for _ in 0..10 {
                call(client.clone()).await;
            }
            let start = Instant::now();
            let mut calls = 0u32;
            while start.elapsed() < phase {
                call(client.clone()).await;
                calls += 1;
            }
            let took = start.elapsed();
            drop(client);
            let side = usize::from(on);
            mean[side] = took / calls;
            totals[side].0 += took;
            totals[side].1 += calls;
        }
        ratios.push(mean[0].as_secs_f64() / mean[1].as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let [off, on] = totals.map(|(t, n)| t / n.max(1));
    println!(
        "phases {label}: mean per call off {off:?}, on {on:?}, throughput on = {:.2}% of off \
         (median of per-pair ratios {:.2}%, p25-p75 {:.2}-{:.2}%, {pairs} pairs of {phase:?})",
        100.0 * off.as_secs_f64() / on.as_secs_f64(),
        100.0 * ratios[pairs / 2],
        100.0 * ratios[pairs / 4],
        100.0 * ratios[pairs * 3 / 4],
    );
    (off, on)
}

/// A bench mode: called with the arguments after its flag.
pub type Mode = fn(&[String]);

/// The bench's own modes: runs the first of `modes` whose flag (`--loop`, `--idle`) is among
/// the process's arguments, with the arguments after it. `true` when one ran, so the bench
/// skips criterion.
pub fn run_mode(modes: &[(&str, Mode)]) -> bool {
    let args: Vec<String> = std::env::args().collect();
    for (flag, mode) in modes {
        if let Some(i) = args.iter().position(|a| a == flag) {
            mode(&args[i + 1..]);
            return true;
        }
    }
    false
}

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

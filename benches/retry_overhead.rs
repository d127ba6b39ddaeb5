//! What a retry wrapper costs around an async operation, measured against the peers in the same
//! run.
//!
//! - `first_try_success`: the operation succeeds at once. Each future is polled exactly once
//!   with a no-op waker inside a Tokio runtime context, so the figure is the wrapper's own cost,
//!   not an executor's.
//! - `three_attempts`: two transient failures, then success, with zero-length waits, driven by a
//!   current-thread Tokio runtime.
//!
//! Every wrapper is configured with a comparable exponential policy (3 attempts, jitter where
//! the crate has it); `backoff` is a peer here only — it is unmaintained (RUSTSEC-2025-0012) and
//! never a dependency of the library.
//!
//! # One first-try call per wrapper, measured three ways
//!
//! Each first-try case is one `#[inline(never)]` function in [`first_try`] taking its
//! configuration through `black_box`, and every measure calls that same function:
//!
//! - criterion (`cargo bench --bench retry_overhead`);
//! - a plain timed loop: `retry_overhead --loop N [NAME…]` runs `N` calls of each named case
//!   (all when none is named) and prints the time per call;
//! - interleaved blocks: `retry_overhead --interleave ROUNDS BLOCK [NAME…]` runs a block of
//!   each case in turn, `ROUNDS` times, and prints each case's median time per call: the
//!   measure to trust on a loaded machine;
//! - instructions per call: run the loop under callgrind with `N` and `2N` calls and divide the
//!   difference by `N`, which cancels start-up and runtime construction:
//!
//! ```text
//! bin=$(ls -t target/release/deps/retry_overhead-* | grep -v '\.d$' | head -1)
//! for n in 1000000 2000000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $bin --loop $n switchover 2>&1 |
//!     grep 'refs:'
//! done
//! ```
//!
//! The old harness inlined each case's closure into criterion's timing loop and the plain
//! loop ran separately compiled code, so the two measured different machine code. Here the
//! three agree on the ranking; what they do not share is a scale: instructions are not time.
//! A wrapper that calls the operation at the first poll (switchover: nothing runs before the
//! future is polled) moves the operation's future into its already-placed state; when the
//! future is built out of line (`operation`), the move reloads as one wide load what the
//! callee has just stored piecewise, a store-forwarding stall that callgrind does not count.
//! tokio-retry calls the operation while it builds its own future, which is then built in
//! place. The `*_inline_op` cases build the operation's future inline, which removes the move.
//!
//! `switchover_deadline` runs a policy with a deadline and an attempt timeout: it reads the
//! clock, and builds no timer for an attempt that is ready at once.
//!
//! `*_may_fail` call an operation whose outcome the optimiser cannot know. [`operation`]
//! always returns `Ok`, and a wrapper whose first poll is inlined around it may lose its
//! failure path to dead-code elimination; these cases keep that path, as a real operation
//! does, so they are the fairer comparison between wrappers (each pays for what it keeps
//! ready for a failure: registers, stores, a larger frame).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use backon::Retryable;
use criterion::{Criterion, criterion_group};
use switchover::Classification;
use switchover::retry::{ConstantBackoff, RetryBudget, RetryPolicy};

#[derive(Debug)]
struct Transient;

impl switchover::Classify for Transient {
    fn classify(&self) -> Classification {
        Classification::transient().not_executed()
    }
}

/// Polls a future that is ready at once; panics if it is not (a benchmark setup error).
#[inline(always)]
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the benchmarked future was expected to be ready at once"),
    }
}

#[inline(never)]
async fn operation(x: u64) -> Result<u64, Transient> {
    Ok(black_box(x))
}

/// [`operation`] whose outcome the optimiser cannot know: `operation` always returns `Ok`,
/// and once the wrapper is inlined around it the optimiser may delete the failure path
/// altogether, which no real operation allows.
#[inline(never)]
async fn operation_may_fail(x: u64) -> Result<u64, Transient> {
    if black_box(false) {
        Err(Transient)
    } else {
        Ok(black_box(x))
    }
}

/// One first-try success through each wrapper. Not inlined into the caller, and configured
/// through `black_box`, so every measure runs the same machine code for each call.
mod first_try {
    use super::*;

    /// What each case needs, built once.
    pub(crate) struct Setup {
        pub(crate) policy: RetryPolicy,
        pub(crate) limited: RetryPolicy,
        pub(crate) budget: RetryBudget,
        pub(crate) backon: backon::ExponentialBuilder,
    }

    impl Setup {
        pub(crate) fn new() -> Self {
            Setup {
                policy: RetryPolicy::default(),
                limited: RetryPolicy::builder()
                    .deadline(Duration::from_secs(1))
                    .attempt_timeout(Duration::from_millis(300))
                    .build()
                    .unwrap(),
                budget: RetryBudget::new(),
                backon: backon::ExponentialBuilder::default()
                    .with_jitter()
                    .with_max_times(2),
            }
        }
    }

    /// A case: its name and its call.
    pub(crate) type Case = (&'static str, fn(&Setup) -> u64);

    /// The cases by name, in the order they are reported.
    pub(crate) const CASES: [Case; 14] = [
        ("direct", |_| direct()),
        ("switchover", |s| switchover(black_box(&s.policy))),
        ("switchover_budget", |s| {
            switchover_budget(black_box(&s.policy), black_box(&s.budget))
        }),
        ("switchover_deadline", |s| switchover(black_box(&s.limited))),
        ("backon", |s| backon(black_box(&s.backon))),
        ("tokio_retry", |_| tokio_retry()),
        ("backoff", |_| backoff()),
        ("direct_inline_op", |_| direct_inline_op()),
        ("switchover_inline_op", |s| {
            switchover_inline_op(black_box(&s.policy))
        }),
        ("tokio_retry_inline_op", |_| tokio_retry_inline_op()),
        ("direct_may_fail", |_| direct_may_fail()),
        ("switchover_may_fail", |s| {
            switchover_may_fail(black_box(&s.policy))
        }),
        ("switchover_budget_may_fail", |s| {
            switchover_budget_may_fail(black_box(&s.policy), black_box(&s.budget))
        }),
        ("tokio_retry_may_fail", |_| tokio_retry_may_fail()),
    ];

    #[inline(never)]
    pub(crate) fn direct() -> u64 {
        poll_once(operation(black_box(1))).unwrap()
    }

    #[inline(never)]
    pub(crate) fn switchover(policy: &RetryPolicy) -> u64 {
        poll_once(policy.retry(|| operation(black_box(1))).run()).unwrap()
    }

    #[inline(never)]
    pub(crate) fn switchover_budget(policy: &RetryPolicy, budget: &RetryBudget) -> u64 {
        poll_once(
            policy
                .retry(|| operation(black_box(1)))
                .budget(budget)
                .run(),
        )
        .unwrap()
    }

    #[inline(never)]
    pub(crate) fn backon(policy: &backon::ExponentialBuilder) -> u64 {
        poll_once((|| operation(black_box(1))).retry(*policy)).unwrap()
    }

    #[inline(never)]
    pub(crate) fn tokio_retry() -> u64 {
        let strategy = tokio_retry::strategy::ExponentialBackoff::from_millis(50)
            .map(tokio_retry::strategy::jitter)
            .take(2);
        poll_once(tokio_retry::Retry::start(strategy, || {
            operation(black_box(1))
        }))
        .unwrap()
    }

    #[inline(never)]
    pub(crate) fn backoff() -> u64 {
        poll_once(backoff::future::retry(
            backoff::ExponentialBackoff::default(),
            || async {
                operation(black_box(1))
                    .await
                    .map_err(backoff::Error::transient)
            },
        ))
        .unwrap()
    }

    /// The operation's future built inline (an `async` block in the closure) rather than by a
    /// function the optimiser cannot see into.
    #[inline(always)]
    async fn inline_op() -> Result<u64, Transient> {
        Ok(black_box(1))
    }

    #[inline(never)]
    pub(crate) fn direct_inline_op() -> u64 {
        poll_once(inline_op()).unwrap()
    }

    #[inline(never)]
    pub(crate) fn switchover_inline_op(policy: &RetryPolicy) -> u64 {
        poll_once(policy.retry(inline_op).run()).unwrap()
    }

    #[inline(never)]
    pub(crate) fn direct_may_fail() -> u64 {
        poll_once(operation_may_fail(black_box(1))).unwrap_or(0)
    }

    #[inline(never)]
    pub(crate) fn switchover_may_fail(policy: &RetryPolicy) -> u64 {
        poll_once(policy.retry(|| operation_may_fail(black_box(1))).run()).unwrap_or(0)
    }

    #[inline(never)]
    pub(crate) fn switchover_budget_may_fail(policy: &RetryPolicy, budget: &RetryBudget) -> u64 {
        poll_once(
            policy
                .retry(|| operation_may_fail(black_box(1)))
                .budget(budget)
                .run(),
        )
        .unwrap_or(0)
    }

    #[inline(never)]
    pub(crate) fn tokio_retry_may_fail() -> u64 {
        let strategy = tokio_retry::strategy::ExponentialBackoff::from_millis(50)
            .map(tokio_retry::strategy::jitter)
            .take(2);
        poll_once(tokio_retry::Retry::start(strategy, || {
            operation_may_fail(black_box(1))
        }))
        .unwrap_or(0)
    }

    #[inline(never)]
    pub(crate) fn tokio_retry_inline_op() -> u64 {
        let strategy = tokio_retry::strategy::ExponentialBackoff::from_millis(50)
            .map(tokio_retry::strategy::jitter)
            .take(2);
        poll_once(tokio_retry::Retry::start(strategy, inline_op)).unwrap()
    }
}

fn first_try_success(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let setup = first_try::Setup::new();
    let mut g = c.benchmark_group("first_try_success");
    for (name, call) in first_try::CASES {
        g.bench_function(name, |b| b.iter(|| call(&setup)));
    }
    g.finish();
}

/// `--loop N [NAME…]`: `N` first-try calls of each named case in a plain loop.
fn plain_loop(args: &[String]) {
    let n: u64 = args
        .first()
        .and_then(|s| s.parse().ok())
        .expect("usage: retry_overhead --loop N [NAME...]");
    let names = &args[1..];
    for name in names {
        assert!(
            first_try::CASES.iter().any(|(case, _)| case == name),
            "no first-try case named {name:?}"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let setup = first_try::Setup::new();
    for (name, call) in first_try::CASES {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        let start = Instant::now();
        for _ in 0..n {
            black_box(call(black_box(&setup)));
        }
        let per_call = start.elapsed().as_secs_f64() * 1e9 / n as f64;
        println!("{name}: {per_call:.2} ns per call ({n} calls)");
    }
}

/// `--interleave ROUNDS BLOCK [NAME…]`: `ROUNDS` rounds, each running a block of `BLOCK`
/// first-try calls of every named case in turn, then the median time per call of each case.
/// Under load (other processes, frequency changes) criterion's one-case-after-the-other order
/// favours whichever case ran in a quiet moment; alternating blocks gives every case the same
/// conditions.
fn interleaved(args: &[String]) {
    let usage = "usage: retry_overhead --interleave ROUNDS BLOCK [NAME...]";
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).expect(usage);
    let block: u32 = args.get(1).and_then(|s| s.parse().ok()).expect(usage);
    let names = &args[2..];
    let cases: Vec<_> = first_try::CASES
        .iter()
        .filter(|(name, _)| names.is_empty() || names.iter().any(|n| n == name))
        .collect();
    assert!(!cases.is_empty(), "no first-try case named {names:?}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let setup = first_try::Setup::new();
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for ((_, call), times) in cases.iter().zip(&mut times) {
            let start = Instant::now();
            for _ in 0..block {
                black_box(call(black_box(&setup)));
            }
            times.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(block));
        }
    }
    for ((name, _), times) in cases.iter().zip(&mut times) {
        times.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (
            times[rounds / 10],
            times[rounds / 2],
            times[rounds * 9 / 10],
        );
        println!(
            "{name}: median {mid:.2} ns per call (p10 {lo:.2}, p90 {hi:.2}; {rounds} rounds of {block})"
        );
    }
}

/// An operation failing twice (transient), then succeeding.
fn flaky() -> impl FnMut() -> std::future::Ready<Result<u64, Transient>> {
    let mut n = 0u32;
    move || {
        n += 1;
        std::future::ready(if n < 3 {
            Err(Transient)
        } else {
            Ok(black_box(u64::from(n)))
        })
    }
}

fn three_attempts(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("three_attempts");

    g.bench_function("direct", |b| {
        b.to_async(&rt).iter(|| async {
            let mut op = flaky();
            loop {
                if let Ok(v) = op().await {
                    break v;
                }
            }
        })
    });

    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(Duration::ZERO))
        .build()
        .unwrap();
    g.bench_function("switchover", |b| {
        b.to_async(&rt)
            .iter(|| async { policy.retry(flaky()).run().await.unwrap() })
    });

    // Each call spends two retries; a bucket this large never drains during the run, so
    // every iteration pays the same withdraw + refill.
    let budget = RetryBudget::builder().capacity(u32::MAX).build().unwrap();
    g.bench_function("switchover_budget", |b| {
        b.to_async(&rt)
            .iter(|| async { policy.retry(flaky()).budget(&budget).run().await.unwrap() })
    });

    let backon_policy = backon::ConstantBuilder::default()
        .with_delay(Duration::ZERO)
        .with_max_times(2);
    g.bench_function("backon", |b| {
        b.to_async(&rt)
            .iter(|| async { flaky().retry(backon_policy).await.unwrap() })
    });

    g.bench_function("tokio_retry", |b| {
        b.to_async(&rt).iter(|| async {
            let strategy = tokio_retry::strategy::FixedInterval::new(Duration::ZERO).take(2);
            tokio_retry::Retry::start(strategy, flaky()).await.unwrap()
        })
    });

    g.bench_function("backoff", |b| {
        b.to_async(&rt).iter(|| async {
            let mut op = flaky();
            backoff::future::retry(backoff::backoff::Constant::new(Duration::ZERO), || {
                let fut = op();
                async move { fut.await.map_err(backoff::Error::transient) }
            })
            .await
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, first_try_success, three_attempts);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--loop") {
        plain_loop(&args[i + 1..]);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--interleave") {
        interleaved(&args[i + 1..]);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

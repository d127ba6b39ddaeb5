//! What the `tower` layer costs on a first-try success over a no-op service, beside
//! `tower::retry` and `tower-resilience-retry` in the same run.
//!
//! Each case is one `#[inline(never)]` function doing `poll_ready` + `call` + one poll of the
//! response future with a no-op waker, over a service whose future is ready at once, so the
//! figure is the middleware's own cost. Every retrying case allows 3 attempts.
//!
//! - `direct`: the no-op service alone.
//! - `tower_retry`: `tower::retry::Retry` with a policy that clones the request and counts
//!   attempts; `tower_retry_budget` adds tower's own `TpsBudget` (deposit on success).
//! - `tower_resilience`: `tower_resilience_retry::RetryLayer` (3 attempts, exponential).
//! - `switchover`: [`RetryLayer`] with `RetryPolicy::default()`; `switchover_budget` adds a
//!   [`RetryBudget`]; `switchover_upstreams` is [`Upstreams`] over two no-op upstreams (router
//!   pick, latency recorded on the upstream's health).
//!
//! Criterion runs the cases one after the other; `cargo bench --bench tower -- --interleaved`
//! instead alternates blocks of every case and prints the median per-call time of each, so
//! drift on a loaded machine favours none. `-- --loop N [NAME…]` runs `N` calls of each case,
//! for instruction counts under callgrind:
//!
//! ```text
//! bin=$(ls -t target/release/deps/tower-* | grep -v '\.d$' | head -1)
//! for n in 100000 200000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $bin --loop $n switchover 2>&1 |
//!     grep 'refs:'
//! done
//! ```

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use switchover::retry::{RetryBudget, RetryPolicy};
use switchover::tower::{Retry, RetryLayer, Upstreams};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::ServiceFn;
use tower::{Layer, Service};

type Noop = ServiceFn<fn(u64) -> Ready<Result<u64, std::io::Error>>>;

fn noop() -> Noop {
    fn answer(x: u64) -> Ready<Result<u64, std::io::Error>> {
        ready(Ok(black_box(x)))
    }
    tower::service_fn(answer as fn(u64) -> Ready<Result<u64, std::io::Error>>)
}

/// Polls a future that is ready at once; panics if it is not (a setup error).
#[inline(always)]
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the benchmarked future was expected to be ready at once"),
    }
}

#[inline(always)]
fn one_call<S: Service<u64>>(svc: &mut S, x: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the benchmarked service was expected to be ready"),
    }
    poll_once(svc.call(x))
}

/// `tower::retry`'s minimal policy: clone the request, retry errors up to 2 more times, and
/// with a budget deposit on success and withdraw per retry (as tower's docs show).
#[derive(Clone)]
struct Attempts {
    left: usize,
    budget: Option<Arc<TpsBudget>>,
}

impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, E>) -> Option<Ready<()>> {
        match result {
            Ok(_) => {
                if let Some(b) = &self.budget {
                    b.deposit();
                }
                None
            }
            Err(_) if self.left > 0 && self.budget.as_ref().is_none_or(|b| b.withdraw()) => {
                self.left -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// Every case, built once.
struct Cases {
    direct: Noop,
    tower_retry: tower::retry::Retry<Attempts, Noop>,
    tower_retry_budget: tower::retry::Retry<Attempts, Noop>,
    tower_resilience: tower_resilience_retry::Retry<Noop, u64, u64, std::io::Error>,
    switchover: Retry<Noop>,
    switchover_budget: Retry<Noop>,
    switchover_upstreams: Upstreams<&'static str, Noop>,
}

impl Cases {
    fn new() -> Self {
        let attempts = |budget| Attempts { left: 2, budget };
        let tps = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
        let resilience = tower_resilience_retry::RetryLayer::<u64, u64, std::io::Error>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(50))
            .build();
        let policy = RetryPolicy::default();
        Cases {
            direct: noop(),
            tower_retry: tower::retry::Retry::new(attempts(None), noop()),
            tower_retry_budget: tower::retry::Retry::new(attempts(Some(tps)), noop()),
            tower_resilience: resilience.layer(noop()),
            switchover: RetryLayer::new(policy.clone()).layer(noop()),
            switchover_budget: RetryLayer::new(policy.clone())
                .budget(RetryBudget::new())
                .layer(noop()),
            switchover_upstreams: Upstreams::builder()
                .upstream("a", noop())
                .upstream("b", noop())
                .retry_policy(policy)
                .build()
                .unwrap(),
        }
    }
}

macro_rules! case {
    ($name:ident) => {
        #[inline(never)]
        fn $name(cases: &mut Cases, x: u64) -> u64 {
            one_call(&mut cases.$name, x).unwrap()
        }
    };
}

case!(direct);
case!(tower_retry);
case!(tower_retry_budget);
case!(tower_resilience);
case!(switchover);
case!(switchover_budget);
case!(switchover_upstreams);

type Case = (&'static str, fn(&mut Cases, u64) -> u64);

const CASES: [Case; 7] = [
    ("direct", direct),
    ("tower_retry", tower_retry),
    ("tower_retry_budget", tower_retry_budget),
    ("tower_resilience", tower_resilience),
    ("switchover", switchover),
    ("switchover_budget", switchover_budget),
    ("switchover_upstreams", switchover_upstreams),
];

fn first_try_success(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cases = Cases::new();
    let mut group = c.benchmark_group("tower_first_try_success");
    for (name, f) in CASES {
        group.bench_function(name, |b| {
            let mut x = 0u64;
            b.iter(|| {
                x += 1;
                black_box(f(&mut cases, black_box(x)))
            })
        });
    }
    group.finish();
}

/// Alternating blocks of every case; prints each case's median per-call time.
fn interleaved(rounds: usize, block: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cases = Cases::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); CASES.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in CASES.iter().enumerate() {
            let start = Instant::now();
            for x in 0..block {
                black_box(f(&mut cases, black_box(x)));
            }
            times[i].push(start.elapsed().as_nanos() as f64 / block as f64);
        }
    }
    for ((name, _), mut t) in CASES.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!(
            "interleaved {name:<22} median {:>7.2} ns/call",
            t[rounds / 2]
        );
    }
}

criterion_group!(benches, first_try_success);

/// `--loop N [NAME…]`: `N` calls of each named case (all when none is named), for
/// instruction counts under callgrind (run with `N` and `2N`, divide the difference by `N`).
fn plain_loop(args: &[String]) {
    let n: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cases = Cases::new();
    for (name, f) in CASES {
        if args.len() > 1 && !args[1..].iter().any(|a| a == name) {
            continue;
        }
        let start = Instant::now();
        for x in 0..n {
            black_box(f(&mut cases, black_box(x)));
        }
        println!(
            "loop {name:<22} {:>7.2} ns/call",
            start.elapsed().as_nanos() as f64 / n as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--interleaved") {
        interleaved(31, 200_000);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--loop") {
        plain_loop(&args[i + 1..]);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

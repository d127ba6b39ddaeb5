//! Cost of the `metrics` feature per call, built with and without it (`cargo bench --bench
//! observe` and `cargo bench --bench observe --features metrics`).
//!
//! - `first_try/off` (feature off), `first_try/noop_handles` (on, handles registered before any
//!   recorder: the facade's no-ops), `first_try/prometheus` (on, after installing
//!   `metrics-exporter-prometheus`: one counter increment per attempt): a first-try
//!   `router.run(&policy, |_| ready(Ok(())))` in a loop inside one Tokio current-thread runtime;
//! - `first_try/prometheus_increment_alone`: one increment of a Prometheus counter handle;
//! - `checkout/{off,noop_handles,prometheus}`: what a pool adds to each checkout
//!   ([`PoolMetrics::borrow`]: a clock read, the `wait_time` sample, the borrow's handle; on
//!   drop a clock read and the `use_time` sample), as the Postgres pool's `get`, `run` and
//!   `transaction` and the Redis dedicated pool do it.
//!
//! Instruction counts, repeatable on a loaded machine: `observe --calls CASE N` runs `N` calls
//! of `CASE` (`first_try`, `first_try_prometheus`, `checkout`, `checkout_prometheus`) and
//! exits; run it under `valgrind --tool=callgrind` for two values of `N` and divide the
//! difference by the difference of `N` (see `scripts/bench-metrics.sh`).

use std::future::ready;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
#[cfg(feature = "metrics")]
use metrics_exporter_prometheus::PrometheusBuilder;
use switchover::health::HealthTracker;
use switchover::observe::{Observe, PoolMetrics};
use switchover::retry::RetryPolicy;
use switchover::route::Router;
use switchover::{Classification, Classify};

#[derive(Debug)]
struct Never;

impl Classify for Never {
    fn classify(&self) -> Classification {
        Classification::transient()
    }
}

fn router(name: &'static str) -> Router<&'static str> {
    let tracker = HealthTracker::new(["a", "b", "c"]);
    Router::builder(&tracker)
        .endpoints(["a", "b", "c"])
        .observe(Observe::new(name))
        .build()
        .unwrap()
}

fn calls(
    rt: &tokio::runtime::Runtime,
    r: &Router<&'static str>,
    policy: &RetryPolicy,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let out = r.run(policy, |a| ready(Ok::<_, Never>(a.number()))).await;
            black_box(out.ok());
        }
        start.elapsed()
    })
}

fn checkouts(m: &PoolMetrics, iters: u64) -> Duration {
    // The pool read this instant already (the attempt's start): not part of the cost.
    let asked = tokio::time::Instant::now();
    let start = Instant::now();
    for _ in 0..iters {
        // Dropped at the end of each iteration: the use is recorded then.
        let borrow = black_box(m).borrow(asked);
        black_box(&borrow);
    }
    start.elapsed()
}

/// What the benches run: the same routers and pools in every mode. The `noop` ones are built
/// before the recorder is installed, the `prom` ones after.
struct Setup {
    rt: tokio::runtime::Runtime,
    policy: RetryPolicy,
    noop: (Router<&'static str>, PoolMetrics),
    #[cfg(feature = "metrics")]
    prom: (Router<&'static str>, PoolMetrics),
    #[cfg(feature = "metrics")]
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let noop = (router("noop"), PoolMetrics::new("noop:main"));
    #[cfg(feature = "metrics")]
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    Setup {
        rt,
        policy,
        noop,
        #[cfg(feature = "metrics")]
        prom: (router("prom"), PoolMetrics::new("prom:main")),
        #[cfg(feature = "metrics")]
        handle,
    }
}

/// The name of the no-recorder case: the feature off, or on with no-op handles.
const NOOP: &str = if cfg!(feature = "metrics") {
    "noop_handles"
} else {
    "off"
};

fn benches_all(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("first_try");
    g.bench_function(NOOP, |b| {
        b.iter_custom(|n| calls(&s.rt, &s.noop.0, &s.policy, n))
    });
    #[cfg(feature = "metrics")]
    {
        g.bench_function("prometheus", |b| {
            b.iter_custom(|n| calls(&s.rt, &s.prom.0, &s.policy, n))
        });
        // The exporter's own cost of the one increment a first-try call adds.
        let counter = metrics::counter!("bench.increment");
        g.bench_function("prometheus_increment_alone", |b| {
            b.iter(|| black_box(&counter).increment(1))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("checkout");
    g.bench_function(NOOP, |b| b.iter_custom(|n| checkouts(&s.noop.1, n)));
    #[cfg(feature = "metrics")]
    g.bench_function("prometheus", |b| b.iter_custom(|n| checkouts(&s.prom.1, n)));
    g.finish();
    #[cfg(feature = "metrics")]
    {
        let text = s.handle.render();
        assert!(text.contains("router=\"prom\""));
        assert!(text.contains("db_client_connection_use_time"));
    }
}

criterion_group!(benches, benches_all);

/// `--calls CASE N`: `N` calls of `CASE`, for instruction counts.
fn fixed_calls(args: &[String]) {
    let (case, n) = match args {
        [case, n, ..] => (case.as_str(), n.parse::<u64>().expect("a number of calls")),
        _ => panic!("--calls CASE N"),
    };
    let s = setup();
    match case {
        "first_try" => drop(calls(&s.rt, &s.noop.0, &s.policy, n)),
        "checkout" => drop(checkouts(&s.noop.1, n)),
        #[cfg(feature = "metrics")]
        "first_try_prometheus" => drop(calls(&s.rt, &s.prom.0, &s.policy, n)),
        #[cfg(feature = "metrics")]
        "checkout_prometheus" => drop(checkouts(&s.prom.1, n)),
        other => panic!("no case {other} in this build"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--calls") {
        fixed_calls(&args[i + 1..]);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

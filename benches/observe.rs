//! Cost of the `metrics` feature on a first-try routed call.
//!
//! - `first_try/noop_handles`: a router built before any recorder is installed; its handles are
//!   the facade's no-ops (what the feature costs when the application installs no recorder);
//! - `first_try/prometheus`: a router built after installing
//!   `metrics-exporter-prometheus` (one counter increment per attempt, an atomic add).
//!
//! - `first_try/prometheus_increment_alone`: one increment of a Prometheus counter handle, the
//!   exporter's own share of the difference.
//!
//! Both routers run `router.run(&policy, |_| ready(Ok(())))` in a loop inside one Tokio
//! current-thread runtime, so the figure is the cost of one call. The cost with the feature
//! off is the same loop built without it: `benches/retry_overhead.rs` and `benches/health.rs`
//! measure that hot path (the observability hooks there are a bit test on a word already
//! loaded, no atomic and no clock read).

use std::future::ready;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use switchover::health::HealthTracker;
use switchover::observe::Observe;
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

fn first_try(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let noop = router("noop");
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let prom = router("prom");
    let mut g = c.benchmark_group("first_try");
    g.bench_function("noop_handles", |b| {
        b.iter_custom(|n| calls(&rt, &noop, &policy, n))
    });
    g.bench_function("prometheus", |b| {
        b.iter_custom(|n| calls(&rt, &prom, &policy, n))
    });
    // The exporter's own cost of the one increment a first-try call adds.
    let counter = metrics::counter!("bench.increment");
    g.bench_function("prometheus_increment_alone", |b| {
        b.iter(|| black_box(&counter).increment(1))
    });
    g.finish();
    assert!(handle.render().contains("router=\"prom\""));
}

criterion_group!(benches, first_try);
criterion_main!(benches);

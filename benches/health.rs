//! Hot-path cost of the health tracker and the router.
//!
//! - `read`: `Endpoint::is_available`, `Endpoint::state` and `Router::active` (3 endpoints,
//!   steady state), uncontended, and `is_available` read by 2 and 8 threads at once.
//! - `record`: `record_success` and `record_failure` on one shared endpoint by 1, 2 and 8
//!   threads at once. The failure case runs on a forced-up endpoint, so every call takes the
//!   counting path without changing state (a state change is rare and takes a lock by
//!   design).
//!
//! Multi-threaded cases report the wall time of `iters` operations done by each thread
//! concurrently: the cost of one operation while the others run.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use switchover::Classification;
use switchover::health::{Endpoint, HealthTracker};
use switchover::route::Router;

fn on_threads(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..iters {
                    op();
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

fn setup() -> (
    HealthTracker<&'static str>,
    Router<&'static str>,
    Endpoint<&'static str>,
) {
    let tracker = HealthTracker::new(["a", "b", "c"]);
    let router = Router::builder(&tracker)
        .endpoints(["a", "b", "c"])
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    (tracker, router, a)
}

fn read(c: &mut Criterion) {
    let (_tracker, router, a) = setup();
    let mut g = c.benchmark_group("read");
    g.bench_function("is_available", |b| b.iter(|| black_box(&a).is_available()));
    g.bench_function("state", |b| b.iter(|| black_box(&a).state()));
    g.bench_function("active", |b| {
        b.iter(|| {
            let active = black_box(&router).active();
            (active.generation(), active.endpoint().is_available())
        })
    });
    for threads in [2, 8] {
        g.bench_with_input(
            BenchmarkId::new("is_available_threads", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    on_threads(n, iters, || {
                        black_box(black_box(&a).is_available());
                    })
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("active_threads", threads),
            &threads,
            |b, &n| {
                b.iter_custom(|iters| {
                    on_threads(n, iters, || {
                        black_box(black_box(&router).active().generation());
                    })
                })
            },
        );
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let (tracker, _router, a) = setup();
    let b_ep = tracker.endpoint(&"b").unwrap();
    b_ep.force_up();
    let failure = Classification::transient();
    let mut g = c.benchmark_group("record");
    for threads in [1usize, 2, 8] {
        g.bench_with_input(BenchmarkId::new("success", threads), &threads, |b, &n| {
            if n == 1 {
                b.iter(|| black_box(&a).record_success())
            } else {
                b.iter_custom(|iters| on_threads(n, iters, || black_box(&a).record_success()))
            }
        });
        g.bench_with_input(BenchmarkId::new("failure", threads), &threads, |b, &n| {
            if n == 1 {
                b.iter(|| black_box(&b_ep).record_failure(black_box(failure)))
            } else {
                b.iter_custom(|iters| {
                    on_threads(n, iters, || {
                        black_box(&b_ep).record_failure(black_box(failure))
                    })
                })
            }
        });
    }
    g.finish();
}

criterion_group!(benches, read, record);
criterion_main!(benches);

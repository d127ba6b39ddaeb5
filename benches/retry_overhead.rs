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

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use backon::Retryable;
use criterion::{Criterion, criterion_group, criterion_main};
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

fn first_try_success(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("first_try_success");

    g.bench_function("direct", |b| {
        b.iter(|| poll_once(operation(black_box(1))).unwrap())
    });

    let policy = RetryPolicy::default();
    g.bench_function("switchover", |b| {
        b.iter(|| poll_once(policy.retry(|| operation(black_box(1))).run()).unwrap())
    });

    let budget = RetryBudget::new();
    g.bench_function("switchover_budget", |b| {
        b.iter(|| {
            poll_once(
                policy
                    .retry(|| operation(black_box(1)))
                    .budget(&budget)
                    .run(),
            )
            .unwrap()
        })
    });

    let backon_policy = backon::ExponentialBuilder::default()
        .with_jitter()
        .with_max_times(2);
    g.bench_function("backon", |b| {
        b.iter(|| poll_once((|| operation(black_box(1))).retry(backon_policy)).unwrap())
    });

    g.bench_function("tokio_retry", |b| {
        b.iter(|| {
            let strategy = tokio_retry::strategy::ExponentialBackoff::from_millis(50)
                .map(tokio_retry::strategy::jitter)
                .take(2);
            poll_once(tokio_retry::Retry::start(strategy, || {
                operation(black_box(1))
            }))
            .unwrap()
        })
    });

    g.bench_function("backoff", |b| {
        b.iter(|| {
            poll_once(backoff::future::retry(
                backoff::ExponentialBackoff::default(),
                || async {
                    operation(black_box(1))
                        .await
                        .map_err(backoff::Error::transient)
                },
            ))
            .unwrap()
        })
    });
    g.finish();
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
criterion_main!(benches);

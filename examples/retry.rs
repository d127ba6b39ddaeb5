//! A flaky operation retried with a visible schedule. Runs without any server:
//!
//! ```text
//! cargo run --example retry
//! ```
//!
//! The "service" fails the first calls in different ways (refused, throttled with a
//! `Retry-After`, timed out), then answers. Every retry prints the attempt, its error, how it
//! was classified and how long the executor waits; then the same policy meets a permanent error
//! and a service that never answers.

use std::cell::Cell;
use std::time::Duration;

use switchover::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryEvent, RetryPolicy};
use switchover::{Classification, Classify};
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum ServiceError {
    ConnectionRefused,
    SlowDown { retry_after: Duration },
    Timeout,
    NotFound,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::ConnectionRefused => f.write_str("connection refused"),
            ServiceError::SlowDown { retry_after } => {
                write!(f, "slow down (retry after {retry_after:?})")
            }
            ServiceError::Timeout => f.write_str("timed out waiting for the reply"),
            ServiceError::NotFound => f.write_str("no such item"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl Classify for ServiceError {
    fn classify(&self) -> Classification {
        match self {
            ServiceError::ConnectionRefused => Classification::transient().not_executed(),
            ServiceError::SlowDown { retry_after } => Classification::throttled()
                .not_executed()
                .with_retry_after(*retry_after),
            ServiceError::Timeout => Classification::transient(),
            ServiceError::NotFound => Classification::permanent(),
        }
    }
}

/// A service whose answers follow a script, one entry per call, then `Ok`.
struct FlakyService {
    script: Vec<Option<ServiceError>>,
    calls: Cell<usize>,
    hang_forever: bool,
}

impl FlakyService {
    fn new(script: Vec<Option<ServiceError>>, hang_forever: bool) -> Self {
        FlakyService {
            script,
            calls: Cell::new(0),
            hang_forever,
        }
    }

    async fn call(&self) -> Result<&'static str, ServiceError> {
        let answer = self.script.get(self.calls.get()).cloned().flatten();
        self.calls.set(self.calls.get() + 1);
        if self.hang_forever {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        match answer {
            Some(e) => Err(e),
            None => Ok("the answer"),
        }
    }
}

fn print_retry(start: Instant) -> impl FnMut(&RetryEvent<'_, ServiceError>) {
    move |ev| {
        let what = match ev.error() {
            Some(e) => e.to_string(),
            None => "attempt timed out".to_owned(),
        };
        println!(
            "  {:>5} ms  attempt {} failed: {what:<40} [{}] → waiting {} ms",
            start.elapsed().as_millis(),
            ev.attempt(),
            ev.classification(),
            ev.delay().as_millis(),
        )
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy = RetryPolicy::builder()
        .max_attempts(6)
        .deadline(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(250))
        .max_delay(Duration::from_millis(800))
        .backoff(
            ExponentialBackoff::builder()
                .base(Duration::from_millis(50))
                .cap(Duration::from_secs(1))
                .jitter(Jitter::Equal)
                .build()?,
        )
        .build()?;
    let budget = RetryBudget::new();

    println!("1. a flaky idempotent read: refused, throttled, timed out, then ok");
    let service = FlakyService::new(
        vec![
            Some(ServiceError::ConnectionRefused),
            Some(ServiceError::SlowDown {
                retry_after: Duration::from_millis(300),
            }),
            Some(ServiceError::Timeout),
        ],
        false,
    );
    let start = Instant::now();
    let answer = policy
        .retry(|| service.call())
        .idempotent(true)
        .budget(&budget)
        .on_retry(print_retry(start))
        .run()
        .await?;
    println!(
        "  {:>5} ms  ok: {answer:?} after {} calls; budget left {} of {}",
        start.elapsed().as_millis(),
        service.calls.get(),
        budget.available(),
        budget.capacity()
    );

    println!("\n2. the same failures for a write that is not idempotent");
    let service = FlakyService::new(
        vec![
            Some(ServiceError::ConnectionRefused),
            Some(ServiceError::Timeout),
        ],
        false,
    );
    let start = Instant::now();
    let err = policy
        .retry(|| service.call())
        .budget(&budget)
        .on_retry(print_retry(start))
        .run()
        .await
        .unwrap_err();
    println!(
        "  {:>5} ms  gave up: {err} (last error: {})",
        start.elapsed().as_millis(),
        err.last_error().map_or("none".into(), |e| e.to_string())
    );

    println!("\n3. a permanent error is returned at once");
    let service = FlakyService::new(vec![Some(ServiceError::NotFound)], false);
    let start = Instant::now();
    let err = policy
        .retry(|| service.call())
        .idempotent(true)
        .run()
        .await
        .unwrap_err();
    println!("  {:>5} ms  gave up: {err}", start.elapsed().as_millis());

    println!("\n4. a black hole: every attempt hangs; the deadline bounds the call");
    let service = FlakyService::new(vec![], true);
    let start = Instant::now();
    let err = policy
        .retry(|| service.call())
        .idempotent(true)
        .on_retry(print_retry(start))
        .run()
        .await
        .unwrap_err();
    println!(
        "  {:>5} ms  gave up: {err} ({} calls)",
        start.elapsed().as_millis(),
        service.calls.get()
    );
    Ok(())
}

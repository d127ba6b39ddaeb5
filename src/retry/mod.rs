//! The retry executor: backoff schedules, deadlines, per-attempt timeouts, idempotency rules and
//! a shared retry budget.
//!
//! A [`RetryPolicy`] says how to retry; [`RetryPolicy::retry`] prepares one call of an async
//! operation and [`Retry::run`] runs it. Each failure is classified (see [`crate::error`]):
//!
//! - **permanent** errors are returned at once;
//! - **transient** and **throttled** errors are retried when it is safe: the request surely did
//!   not execute, or the operation was declared [`idempotent`](Retry::idempotent);
//! - a server's `Retry-After` replaces the scheduled wait, cut to
//!   [`max_delay`](RetryPolicyBuilder::max_delay); throttled errors otherwise wait
//!   [`throttle_factor`](RetryPolicyBuilder::throttle_factor) times longer;
//! - the executor never sleeps past the [`deadline`](RetryPolicyBuilder::deadline): when the
//!   next wait would end after it, it stops at once with [`StopReason::DeadlineExceeded`];
//! - a shared [`RetryBudget`] bounds the retries of a whole process.
//!
//! Schedules are plain iterators of [`Duration`](std::time::Duration)s: [`ExponentialBackoff`]
//! (the default, with [`Jitter`]), [`ConstantBackoff`], [`LinearBackoff`], or any iterator
//! through [`CustomBackoff`]. A policy hands each call the next of its schedules
//! ([`RetryPolicy::schedule`]): with a seeded backoff, the calls sharing one policy draw
//! different, reproducible jitter.
//!
//! Every retry is a `tracing` event (target `switchover::retry`, level `DEBUG`) with the
//! attempt, the wait and the class; so is giving up.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::retry::{ExponentialBackoff, Jitter, RetryPolicy, StopReason};
//! use switchover::{Classification, Classify};
//!
//! #[derive(Debug)]
//! struct Unavailable;
//! impl Classify for Unavailable {
//!     fn classify(&self) -> Classification {
//!         Classification::transient().not_executed()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .deadline(Duration::from_secs(1))
//!     .backoff(
//!         ExponentialBackoff::builder()
//!             .base(Duration::from_millis(10))
//!             .jitter(Jitter::Equal)
//!             .build()?,
//!     )
//!     .build()?;
//!
//! let err = policy
//!     .run(|| async { Err::<(), _>(Unavailable) })
//!     .await
//!     .unwrap_err();
//! assert_eq!(err.reason(), StopReason::AttemptsExhausted);
//! assert_eq!(err.attempts(), 3);
//! # Ok(()) }
//! ```

mod backoff;
mod budget;
mod error;
mod executor;
mod hook;
mod policy;
mod run;

pub use backoff::{
    Backoff, ConstantBackoff, CustomBackoff, ExponentialBackoff, ExponentialBackoffBuilder,
    ExponentialSchedule, Jitter, LinearBackoff, LinearSchedule,
};
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use error::{RetryError, StopReason};
pub use executor::Retry;
pub use hook::{OnRetry, RetryEvent};
pub use policy::{MAX_ATTEMPTS, MAX_DEADLINE, RetryPolicy, RetryPolicyBuilder};
#[cfg(feature = "tower")]
pub(crate) use run::FirstAttempt;
pub use run::{Handover, Run};

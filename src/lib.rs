//! # switchover
//!
//! Client-side resilience for services whose Redis primary, Postgres primary or DynamoDB region
//! goes away. One engine — a retry executor, a health tracker and a failover router — and
//! adapters that put it in front of the clients you already use, so your code keeps its
//! `redis::aio::ConnectionLike`, its `tokio_postgres::Client` and its `aws_sdk_dynamodb::Client`
//! builders while the library decides where each call goes, when to retry, and when to fail
//! over and back.
//!
//! It never hangs (every call has a deadline by default in the adapters), it never hands out a
//! connection to a node of the wrong role, it retries in one layer only, and it says what it did
//! through `tracing` (targets `switchover::retry`, `switchover::health`, `switchover::route` and
//! one per adapter).
//!
//! | part | module | feature |
//! |---|---|---|
//! | error vocabulary: permanent / transient / throttled, may have executed or not | [`error`] | — |
//! | retry executor: backoff with jitter, deadlines, attempt timeouts, idempotency, budget | [`retry`] | — |
//! | health tracker: per-endpoint state from live traffic and probes | [`health`] | — |
//! | router: active primary, read choice, generation, failover and failback | [`route`] | — |
//! | observability: health snapshot (JSON with `serde`), incident timeline, metrics | [`observe`] | `metrics` for metrics |
//! | region-aware DynamoDB table handles | `dynamo` | `dynamodb` |
//! | Redis read/write-splitting pool that follows the primary | `redis` | `redis` |
//! | Postgres pool that always hands out the right role | `postgres` | `postgres` |
//! | host names of the pools: resolver seam, re-resolution, maximum connection age | `resolve` | `redis` or `postgres` |
//! | fault-injecting TCP proxy and real-server fixtures | `testing` | `testing` |
//! | `tower` layer: any `Service` through the executor, or over several upstreams with failover | `tower` | `tower` |
//! | HTTP classification: statuses, `Retry-After`, idempotent methods, transport errors | `http` | `http` |
//! | config from files: serde structs for the executor, budget, health tracker, router and each adapter | `config` | `serde` |
//! | credential providers: static, closure, cached with refresh; AWS IAM tokens for RDS and ElastiCache | [`auth`] | — (`aws-auth` for IAM) |
//! | TLS for the Postgres and Redis pools (rustls, ring): roots, verification level, client certificates | `tls` | `tls` |
//!
//! `full` turns on every feature. With no feature the crate depends only on tokio, rand,
//! thiserror and tracing (and pin-project-lite, which tokio already builds).
//!
//! # Example: the retry executor
//!
//! ```
//! use std::time::Duration;
//! use switchover::retry::{RetryBudget, RetryPolicy};
//! use switchover::{Classification, Classify};
//!
//! #[derive(Debug)]
//! enum ApiError {
//!     Unavailable,
//!     BadRequest,
//! }
//!
//! impl std::fmt::Display for ApiError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str(match self {
//!             ApiError::Unavailable => "service unavailable",
//!             ApiError::BadRequest => "bad request",
//!         })
//!     }
//! }
//!
//! impl std::error::Error for ApiError {}
//!
//! impl Classify for ApiError {
//!     fn classify(&self) -> Classification {
//!         match self {
//!             // Refused before it ran: safe to retry even for writes.
//!             ApiError::Unavailable => Classification::transient().not_executed(),
//!             ApiError::BadRequest => Classification::permanent(),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(4)
//!     .deadline(Duration::from_secs(2))
//!     .attempt_timeout(Duration::from_millis(500))
//!     .build()?;
//! let budget = RetryBudget::new(); // share one per process
//!
//! let mut calls = 0;
//! let answer = policy
//!     .retry(|| {
//!         calls += 1;
//!         let fail = calls < 3;
//!         async move { if fail { Err(ApiError::Unavailable) } else { Ok("ok") } }
//!     })
//!     .idempotent(true)
//!     .budget(&budget)
//!     .run()
//!     .await?;
//! assert_eq!(answer, "ok");
//! assert_eq!(calls, 3);
//! # Ok(())
//! # }
//! ```
//!
//! Each adapter module opens with an example of its own; `examples/` holds runnable failover
//! drills against real servers started by the `testing` kit.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod auth;
pub mod error;
pub mod health;
pub mod observe;
pub mod retry;
pub mod route;
mod sync;

#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamo;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "postgres"))))]
pub mod resolve;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use error::{
    ByClassify, Classification, Classifier, Classify, ConfigError, ErrorClass, Execution,
};
pub use health::{Endpoint, HealthState, HealthTracker, Probe, ProbeResult, Role};
pub use route::{Failback, ReadPolicy, Router};

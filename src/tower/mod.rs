//! A `tower` layer: any [`Service`](tower_service::Service) — a hyper or reqwest client, a
//! tonic channel — called through the crate's retry executor, and optionally through the
//! router over several upstreams (a primary API and its fallback), with health per upstream.
//!
//! - [`RetryLayer`] / [`Retry`]: one service; attempts, deadline, attempt timeout and backoff
//!   from a [`RetryPolicy`](crate::retry::RetryPolicy), an optional shared
//!   [`RetryBudget`](crate::retry::RetryBudget).
//! - [`Upstreams`]: several services in order of preference; each call goes to the router's
//!   active upstream, a retry to the best upstream not yet failed in the call; failover on
//!   health, failback with hysteresis, an optional probe through each upstream's own service.
//! - A [`Policy`] says which requests are idempotent and which outcomes are failures:
//!   [`ErrorPolicy`] for services whose errors implement [`Classify`](crate::Classify),
//!   [`HttpPolicy`](crate::http::HttpPolicy) (feature `http`) for HTTP: methods and
//!   `Idempotency-Key`, `408` / `429` / `5xx`, `Retry-After`.
//! - A [`Replay`] copies requests for retries ([`ByClone`] by default); a request it cannot
//!   copy is sent once, and an error that would have been retried says so.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::retry::RetryPolicy;
//! use switchover::tower::RetryLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder().max_attempts(3).deadline(Duration::from_secs(1)).build()?;
//! let echo = tower::service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) });
//! let mut svc = ServiceBuilder::new().layer(RetryLayer::new(policy)).service(echo);
//! assert_eq!(svc.ready().await?.call(41).await?, 42);
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! `poll_ready` is the inner service's (for [`Upstreams`], the active upstream's), so
//! back-pressure reaches the caller as with `tower::retry`; a budget never makes the service
//! unready. `call` copies the request once for the retries and runs the call as one future:
//! the attempts are the executor's ([`RetryPolicy::retry`](crate::retry::RetryPolicy::retry)
//! for [`Retry`], the router's runner [`Router::call`](crate::route::Router::call) for
//! [`Upstreams`]), each retry on a fresh clone of the service made ready first. A response the
//! policy classifies as retryable counts as a failed attempt; when the executor stops, the
//! caller gets that last response, or an [`Error`] for an error or a timeout.

mod attempt;
mod builder;
mod call;
mod error;
mod future;
mod policy;
mod replay;
mod service;
mod upstreams;

#[cfg(test)]
mod tests;

pub use builder::UpstreamsBuilder;
pub use error::{Error, ErrorKind};
pub use future::{ResponseFuture, RetryFuture};
pub use policy::{ErrorPolicy, Policy};
pub use replay::{ByClone, Replay, SendOnce};
pub use service::{Retry, RetryLayer};
pub use upstreams::Upstreams;

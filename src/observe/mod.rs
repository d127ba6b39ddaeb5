//! Observability from the engine: a health snapshot, an incident timeline, and metrics.
//!
//! Three questions a service must answer during and after an incident:
//!
//! - **Am I healthy now?** [`Router::health`](crate::route::Router::health) returns a
//!   [`Health`] document in the shape of the IETF health-check draft
//!   (`draft-inadarei-api-health-check`): `status` pass / warn / fail and `checks` keyed
//!   `component:measurement` (`redis:primary`, `postgres:standby`, `dynamodb:region`). Failed
//!   over or a replica down is `warn`; `fail` only when writes (for a read-only user, reads)
//!   cannot be served. Reading it takes no lock on the steady path and does no I/O.
//!   [`Health::aggregate`] merges several. JSON with the `serde` feature.
//! - **What happened, and how long did each part take?**
//!   [`Router::timeline`](crate::route::Router::timeline) is a bounded ring of typed
//!   [`Event`]s (suspect, down, probe results, rediscovery started and finished, switch,
//!   drain, failback, all-down, budget exhausted, writable primaries) with Tokio and wall-clock times, the endpoint,
//!   and the last classified failures that led to it; and for each failover its [`Phases`]
//!   (detection, rediscovery, switch, first success), which add up to the client gap. JSON with
//!   `serde`, and `tracing` events (target `switchover::timeline`, stable field names).
//! - **What are my rates?** With the `metrics` feature, the engine reports through the
//!   [`metrics`](https://docs.rs/metrics) facade (plug in Prometheus or OpenTelemetry): every
//!   name, unit and label is in [`METRICS`]. Off, nothing is compiled in.
//!
//! Names in snapshots, timelines and labels are endpoint ids as `Debug` shows them without
//! quotes (`host:port`, region names), never credentials or query text; label sets are
//! bounded (no label per key or per statement).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::health::HealthTracker;
//! use switchover::observe::{Components, Observe, Status};
//! use switchover::route::Router;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), switchover::ConfigError> {
//! let tracker = HealthTracker::new(["pg-a:5432", "pg-b:5432"]);
//! let router = Router::builder(&tracker)
//!     .endpoints(["pg-a:5432", "pg-b:5432"])
//!     .observe(Observe::new("postgres").timeline_capacity(512))
//!     .build()?;
//! let names = Components::new("postgres").others("standby");
//! assert_eq!(router.health(&names).status, Status::Pass);
//!
//! tracker.force_down(&"pg-a:5432");
//! let health = router.health(&names);
//! assert_eq!(health.status, Status::Warn); // failed over: serving
//! assert_eq!(health.checks("postgres:primary")[0].component_id, "pg-b:5432");
//! let kinds: Vec<_> = router.timeline().events().iter().map(|e| e.kind.name()).collect();
//! assert_eq!(kinds, ["down", "switch"]);
//! # Ok(()) }
//! ```
//!
//! # For adapters
//!
//! An adapter names its checks with [`Components`] and adds what only it knows (a replica's
//! lag) with [`Health::check_mut`]; it reports its pool with [`PoolMetrics`]. Everything else
//! (states, switches, phases, attempts) comes from the router it already uses.

mod metrics;
mod observer;
mod pool_metrics;
mod recent;
mod snapshot;
mod timeline;
mod trace;
mod wall;

pub use metrics::{METRICS, names};
pub use observer::Observe;
pub use pool_metrics::{Borrow, PoolMetrics};
pub use recent::{FailureNote, RecentFailures};
pub use snapshot::{
    Check, Components, EndpointSnapshot, Health, Need, RouterSnapshot, Status, Value,
};
pub use timeline::{Event, EventKind, Failover, Phases, Timeline};
pub use wall::rfc3339;

pub(crate) use observer::Observer;
#[cfg_attr(
    not(any(feature = "redis", feature = "postgres")),
    allow(unused_imports)
)]
pub(crate) use pool_metrics::Stamp;

#[cfg(feature = "metrics")]
pub(crate) mod budget {
    //! The retry budget's token gauge.
    pub(crate) fn gauge(name: &'static str) -> ::metrics::Gauge {
        ::metrics::gauge!(super::names::BUDGET_TOKENS, "budget" => name)
    }
}

/// An endpoint id as a label: its `Debug` text without the quotes of a string.
pub(crate) fn label<K: std::fmt::Debug>(id: &K) -> String {
    let s = format!("{id:?}");
    match s.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.to_owned(),
        None => s,
    }
}

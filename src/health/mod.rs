//! The health tracker: which endpoints are up, from live traffic and probes.
//!
//! A [`HealthTracker`] keeps one state machine per endpoint, keyed by an id you choose (a
//! region name, a `host:port`):
//!
//! ```text
//!  Up ──(3 failures in a row, or a failure rate)──▶ Down
//!  Down ──(ejection time: 1 s, × 2 per consecutive ejection, ≤ 30 s)──▶ Probing
//!  Probing ──(2 successes in a row)──▶ Up
//!  Probing ──(any failure)──▶ Down, with a longer ejection
//! ```
//!
//! - **Passive signals**: the outcome of every real call, recorded on the endpoint's
//!   [`Endpoint`] handle. Outcomes are classified (see [`crate::error`]): permanent errors never
//!   count; throttling is counted apart ([`Endpoint::throttled_total`]) and does not eject
//!   unless [configured](HealthTrackerBuilder::throttling_marks_down).
//! - **Active probes**: a [`Probe`] (a DynamoDB canary read, a Redis `ROLE`, a Postgres role
//!   query) run by a background task for endpoints that are down or probing, and optionally as a
//!   heartbeat for endpoints that are up. Probes report up/down, and optionally a [`Role`] and a
//!   latency; each is bounded by a timeout. The task stops when the tracker is dropped.
//! - **Heartbeats** (liveness): with [`HealthTrackerBuilder::heartbeat`], endpoints that are up
//!   are probed too, at a [jittered](HealthTrackerBuilder::heartbeat_jitter) interval (never
//!   later than the interval; instances do not probe in step). A missed heartbeat of a
//!   router's active endpoint puts a [`Rediscovery`](crate::route::Rediscovery) in doubt at
//!   once.
//! - **Slow is not dead**: with a heartbeat, an attempt cut by its timeout
//!   ([`Endpoint::record_timeout`]) counts nothing and asks for a heartbeat now; that
//!   heartbeat's verdict counts. A heartbeat that runs out of time is missed only when the
//!   endpoint answered nothing at all meanwhile: a call that succeeded on it, or the late
//!   answer to an earlier heartbeat (left running for one more probe timeout), makes it slow,
//!   and a slow heartbeat counts nothing. A refused or cut connection, a wrong answer, or
//!   silence is missed at once (a frozen or cut-off node must be found within one beat).
//! - **Declared down**: [`Endpoint::downs`] counts the times the endpoint went
//!   [`Down`](HealthState::Down), and [`Endpoint::down_signal`] is a future that resolves at
//!   the next one, so an adapter can fail the calls in flight on a dead endpoint at once.
//! - **Growing ejections**: a failure while probing ejects again for longer (growth factor per
//!   consecutive ejection, capped), so a flapping endpoint is not re-admitted every few hundred
//!   milliseconds. The streak resets once the endpoint has stayed up for `stable_after`.
//! - **Re-admission**: an adapter whose re-discovery confirms that an ejected endpoint is the
//!   one serving (the writable primary) brings it up at once with [`Endpoint::readmit`],
//!   instead of waiting out the ejection; manual overrides are left alone.
//! - **Manual overrides** for drills and planned switchovers: [`Endpoint::force_down`],
//!   [`Endpoint::force_up`], [`Endpoint::drain`] (no new work, not down) and
//!   [`Endpoint::clear`].
//! - **Events**: every transition is sent to each [subscriber](HealthTracker::subscribe) as a
//!   [`HealthEvent`] (own unbounded channel each: none is lost) and logged as a `tracing` event
//!   with target `switchover::health`.
//!
//! The hot path is lock-free: [`Endpoint::is_available`] is one atomic load, and
//! [`Endpoint::record_success`] on an `Up` endpoint reads two atomics and writes only to reset a
//! failure streak. Locks are taken only to change state.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::Classification;
//! use switchover::health::{HealthState, HealthTracker, ProbeResult, Role, TransitionReason};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), switchover::ConfigError> {
//! // A probe that finds every endpoint healthy; real ones ask the server its role.
//! let probe = |_: &&str| async { ProbeResult::up().with_role(Role::Primary) };
//! let tracker = HealthTracker::builder()
//!     .endpoints(["pg-a:5432", "pg-b:5432"])
//!     .ejection_base(Duration::from_secs(1))
//!     .probe(probe)
//!     .probe_interval(Duration::from_millis(200))
//!     .build()?;
//! let mut events = tracker.subscribe();
//!
//! let a = tracker.endpoint(&"pg-a:5432").unwrap();
//! for _ in 0..3 {
//!     a.record_failure(Classification::transient().not_executed());
//! }
//! assert!(!a.is_available());
//! let ev = events.recv().await.unwrap();
//! assert_eq!((ev.from, ev.to), (HealthState::Up, HealthState::Down));
//! assert_eq!(ev.ejection, Some(Duration::from_secs(1)));
//!
//! // After the ejection, the probe task probes it back up (two successes in a row).
//! tokio::time::sleep(Duration::from_millis(1300)).await;
//! assert_eq!(a.state(), HealthState::Up);
//! assert_eq!(a.role(), Role::Primary);
//! let reasons: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.reason).collect();
//! assert_eq!(
//!     reasons,
//!     [TransitionReason::EjectionElapsed, TransitionReason::Recovered { successes: 2 }]
//! );
//! # Ok(()) }
//! ```

mod config;
mod core;
mod endpoint;
mod event;
mod probe;
mod role;
mod signal;
mod state;
mod tracker;

pub use config::FailureRate;
pub(crate) use core::HealthSink;
pub use endpoint::{Endpoint, EndpointId, EndpointStats};
pub use event::HealthEvent;
pub use probe::{Probe, ProbeResult};
pub use role::Role;
pub use signal::DownSignal;
pub(crate) use signal::{Signal, Wait};
pub use state::{HealthState, Override, TransitionReason};
pub use tracker::{HealthTracker, HealthTrackerBuilder};

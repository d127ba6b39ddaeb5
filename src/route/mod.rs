//! The failover router: which endpoint takes writes now, which serves a read, when to fail over
//! and when to fail back.
//!
//! A [`Router`] sits on a [`HealthTracker`](crate::health::HealthTracker) and orders endpoints
//! by priority (lower is preferred):
//!
//! - [`Router::active`] returns the best available primary candidate with the current
//!   **generation** and an all-down flag. It is lock-free (one packed atomic word plus the
//!   endpoints' state atomics) and re-checks the active endpoint on every call, so failover
//!   happens on the first call after the active endpoint goes down, drains, or turns out to be
//!   a replica.
//! - **Failback** to a more preferred endpoint waits until it has stayed up for
//!   [`Failback::After`] (default 30 s), or only happens by hand with [`Failback::Manual`].
//! - **Never all down**: with no candidate available the router still answers with the
//!   endpoint most likely to recover and says so ([`Active::is_all_down`],
//!   [`RouteEvent::AllDownEntered`]).
//! - The **generation** grows by exactly one per switch, so pools can drop connections made
//!   under an older one.
//! - **Reads** go where a [`ReadPolicy`] says: [`PrimaryOnly`], [`PreferReplica`],
//!   [`ReplicaOnly`], [`RoundRobin`], [`LowestLatency`] (moving average of recorded latency).
//! - **Manual control**: [`Router::switch_to`] (after discovering a new primary, or a planned
//!   switchover; pins the choice) and [`Router::evacuate`] (drain an endpoint, for drills).
//! - **The operation runner** ([`Router::call`], [`Router::run`], [`Router::run_read`]) is the
//!   crate's one attempt loop, which every adapter uses: it glues the [retry
//!   executor](crate::retry) to the router. Every attempt goes to the endpoint its [`Target`]
//!   picks at that moment (the active one, a read policy's choice, or endpoints not yet failed
//!   in this call), the operation gets an [`Attempt`] (endpoint, number, generation, endpoints
//!   already failed), the outcome is recorded on that endpoint with its latency (an attempt cut
//!   by a timeout is [`Endpoint::record_timeout`](crate::health::Endpoint::record_timeout): a
//!   transient failure, or with a heartbeat a heartbeat now), and a failed call is a [`RouteError`] that
//!   names the last endpoint and whether anything may have executed.
//!
//! Every switch is a [`RouteEvent`] to each [subscriber](Router::subscribe) and a `tracing`
//! event with target `switchover::route`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::health::HealthTracker;
//! use switchover::retry::{ConstantBackoff, RetryPolicy};
//! use switchover::route::{PreferReplica, RouteEvent, Router, SwitchReason};
//! use switchover::{Classification, Classify};
//!
//! #[derive(Debug)]
//! struct Refused;
//! impl Classify for Refused {
//!     fn classify(&self) -> Classification {
//!         Classification::transient().not_executed()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tracker = HealthTracker::new(["us-east-1", "us-west-2", "eu-west-1"]);
//! let router = Router::builder(&tracker)
//!     .endpoints(["us-east-1", "us-west-2", "eu-west-1"])
//!     .failback_after(Duration::from_secs(60))
//!     .build()?;
//! let mut events = router.subscribe();
//! assert_eq!(router.active().id(), &"us-east-1");
//!
//! let policy = RetryPolicy::builder()
//!     .max_attempts(5)
//!     .backoff(ConstantBackoff::new(Duration::from_millis(10)))
//!     .build()?;
//!
//! // us-east-1 refuses every call: after 3 failures it is ejected, the router fails over, and
//! // the same call succeeds on us-west-2.
//! let served_by = router
//!     .run(&policy, |ep| async move {
//!         if *ep.id() == "us-east-1" { Err(Refused) } else { Ok(*ep.id()) }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(served_by, "us-west-2");
//! assert_eq!(router.active().generation(), 1);
//! match events.try_recv()? {
//!     RouteEvent::Switched { from, to, generation, reason, .. } => {
//!         assert_eq!((from, to, generation), ("us-east-1", "us-west-2", 1));
//!         assert_eq!(reason, SwitchReason::Failover);
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//!
//! // Reads may go to another region.
//! let read_from = router.read_target(&PreferReplica::new()).unwrap();
//! assert_eq!(read_from.id(), &"eu-west-1");
//! # Ok(()) }
//! ```

mod attempt;
mod authority;
mod builder;
mod decide;
mod event;
mod moved;
mod named;
mod read;
mod rediscovery;
mod router;
mod run;
mod slots;

pub use attempt::{Attempt, RouteError, Target};
pub use authority::{
    Authority, AuthorityError, AuthorityEvent, Follower, FollowerBuilder, IntoFollower, Record,
    Rejection, WhenUnreachable,
};
pub use builder::RouterBuilder;
pub use event::{RouteEvent, SwitchReason};
pub use moved::GenerationMoved;
pub use read::{
    LowestLatency, PreferReplica, PrimaryOnly, ReadCandidates, ReadPolicy, ReplicaOnly, RoundRobin,
};
pub use rediscovery::{Discover, NoPrimary, Rediscovery, RediscoveryBuilder};
pub use router::{Active, Failback, Router, SwitchError};
pub use run::RoutedCall;

#[cfg(any(feature = "postgres", feature = "dynamodb"))]
pub(crate) use authority::Held;
#[cfg(feature = "postgres")]
pub(crate) use named::Gate;

//! Following Patroni: the pool writes to the member Patroni names as leader, and to no other.
//!
//! [Patroni](https://patroni.readthedocs.io) decides which Postgres member is the primary
//! (the holder of the leader key in its DCS: etcd, Consul, ZooKeeper, Kubernetes). A
//! [`Patroni`] authority reads that decision from the REST API of the members
//! (`GET /cluster`); given to the pool's knob
//! [`FailoverPoolBuilder::authority`](crate::postgres::FailoverPoolBuilder::authority), it
//! replaces the pool's own choice of primary: the pool switches as soon as Patroni names a new
//! leader, before any query fails on the old one; its role probe confirms that the leader runs
//! as a writable primary before a write goes there; writes wait while Patroni names no usable
//! leader and go at once when it does; a member Patroni does not name is never written to.
//! Local health still chooses which standby serves a read.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchover::postgres::FailoverPool;
//! use switchover::postgres::patroni::Patroni;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = FailoverPool::builder()
//!     .connection_string("host=pg-a,pg-b,pg-c port=5432 user=app dbname=shop")
//!     .authority(
//!         Patroni::builder()
//!             .members(["pg-a:8008", "pg-b:8008", "pg-c:8008"])
//!             .poll_interval(Duration::from_millis(200)),
//!     )
//!     .build()?;
//! let follower = pool.follower().expect("the pool follows Patroni");
//! let mut events = follower.subscribe(); // Followed, Rejected, Unreachable, ...
//! # drop(events);
//! # Ok(()) }
//! ```
//!
//! # What is followed
//!
//! Every poll ([`PatroniBuilder::poll_interval`], 200 ms by default, at most 1 s) asks every
//! configured member at once, each within [`PatroniBuilder::request_timeout`]. The leader is
//! the member whose `role` is `leader` (or `standby_leader`); its `host` and `port` (Patroni's
//! `postgresql.connect_address`) must be one of the pool's hosts, written the same way
//! (`10.0.0.5:5432` and `db-a:5432` are different hosts). A leader at any other address is
//! reported ([`Rejection::UnknownEndpoint`](crate::route::Rejection::UnknownEndpoint)) and
//! ignored.
//!
//! # Epochs
//!
//! `/cluster` has no revision of the leader key, so the epoch comes from the timelines the
//! members publish: every promotion starts a new timeline. Because Patroni names a new leader
//! about one HA loop before that member publishes its new timeline, the epoch is
//! `timeline × 65536 + n`, `n` counting the leaders named on that timeline before this one.
//! A leader other than the one followed is followed once its own REST API (`GET /patroni`,
//! from its `api_url`) says its Postgres runs as primary, with the timeline that server reports
//! (so the pool's role probes agree, and a former leader named again before `/cluster` shows
//! its new timeline gets a higher epoch); a leader whose API does not answer is followed as
//! `/cluster` names it. Given to the pool's knob, a new leader is followed as soon as
//! `/cluster` names it, with the epoch `/cluster` gives (the pool's role probe confirms the
//! promotion before a write goes there; `/patroni` is asked only for the timeline of a former
//! leader named again, whose `/cluster` epoch would look stale), and a read waits at most
//! 100 ms for the other members once one named a leader. An answer that names an earlier leader again has a lower epoch and is rejected
//! ([`Rejection::EpochWentBack`](crate::route::Rejection::EpochWentBack)).
//!
//! # Bad answers
//!
//! An unreachable member, an HTTP error, a body that does not parse, or two leaders in one
//! answer are logged and ignored while another member answers well. When no member names a
//! leader (Patroni's state for a moment during a switchover, or until the leader key of a dead
//! leader expires), the read fails as *unreachable*: the follower keeps the last leader (the
//! default), whose Postgres at that point is stopping or gone.
//!
//! # Limitations
//!
//! - Plain HTTP only (no TLS or authentication to the REST API).
//! - [`PatroniBuilder::follow`] (a follower beside a pool built without the knob) closes the
//!   router's gate on the leader, but writes that start while the leader is not yet a
//!   writable primary run through their attempts instead of waiting for it: use the knob.

mod authority;
mod builder;
mod cluster;
mod epoch;
mod http;
mod json;

#[cfg(test)]
mod tests;

pub use authority::Patroni;
pub use builder::PatroniBuilder;

impl Patroni {
    /// A builder with the documented defaults.
    pub fn builder() -> PatroniBuilder {
        PatroniBuilder::default()
    }
}

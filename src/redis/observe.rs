//! What a [`SplitPool`] reports about itself: its health document and its incident timeline,
//! both read from the pool's router and what discovery last learned (see
//! [`observe`](crate::observe)).
//!
//! With feature `metrics`, the router's `switchover.*` metrics (attempts, switches, states,
//! heartbeats) are reported under the pool's [`observe`](super::SplitPoolBuilder::observe)
//! name, and each node's connections as two `db.client.connection.*` pools (see
//! [`METRICS`](crate::observe::METRICS) for the whole mapping):
//!
//! - `{name}:shared:{host:port}`, the one multiplexed connection every command shares: count
//!   (used 1 while it is held), max 1, pending (callers waiting for it to be made), timeouts
//!   and create time. No wait or use time: commands take it without a checkout.
//! - `{name}:dedicated:{host:port}`, the node's [dedicated](SplitPool::dedicated) connections:
//!   every instrument, from the pool of at most
//!   [`dedicated_pool_size`](super::SplitPoolBuilder::dedicated_pool_size).

use std::sync::atomic::Ordering::Relaxed;

use super::node::NodeId;
use super::pool::SplitPool;
use crate::health::Role;
use crate::observe::{Components, Health, Status, Timeline};

/// The key of the primary's check in [`SplitPool::health`].
pub(crate) const PRIMARY_KEY: &str = "redis:primary";
/// The key of every other node's check.
pub(crate) const REPLICA_KEY: &str = "redis:replica";

impl SplitPool {
    /// The pool's health now: the active primary under `redis:primary`, every other node under
    /// `redis:replica` (component id: `host:port`), in the shape of the IETF health-check
    /// draft. No I/O and no lock: atomic reads of the router, the nodes and discovery.
    ///
    /// Besides the router's fields (`role`, `state`, `priority`, `latencyMs`, `failuresTotal`,
    /// `ejections`, `stateForMs`, and `generation` on the primary), the primary's check
    /// observes `inDoubt` (discovery has not confirmed it since a failure) and `discoveries`
    /// (runs so far); a replica's `linkUp` (its link to the primary is up), `lagBytes` (behind
    /// the primary at the last discovery) and `forgotten` (the sentinels no longer report it).
    ///
    /// | status | when |
    /// |---|---|
    /// | `pass` | the primary is confirmed and up, every replica up and linked |
    /// | `warn` | failed over, the primary in doubt while it still answers, or a replica down, unlinked or forgotten: writes are served |
    /// | `fail` | writes cannot be served: no primary candidate is available, or the primary is in doubt and not up (or no longer a primary) |
    ///
    /// ```no_run
    /// # fn demo(pool: &switchover::redis::SplitPool) {
    /// let health = pool.health();
    /// let code = health.status.http_code(); // 200 for pass and warn, 503 for fail
    /// for check in health.checks("redis:primary") {
    ///     println!("{} {} {:?}", check.component_id, check.status, check.observed);
    /// }
    /// # let _ = code; }
    /// ```
    pub fn health(&self) -> Health {
        let inner = self.inner();
        let mut health = inner.router.health(&Components::new("redis"));
        let in_doubt = inner.rediscovery.in_doubt();
        let active = inner.router.active();
        for node in inner.topology.nodes() {
            let is_active = node.endpoint.ptr_eq(active.endpoint());
            let key = if is_active { PRIMARY_KEY } else { REPLICA_KEY };
            let Some(check) = health.check_mut(key, &node.name) else {
                continue;
            };
            if is_active {
                check.observe("inDoubt", in_doubt);
                check.observe("discoveries", inner.rediscovery.runs());
                if in_doubt {
                    let serving =
                        node.endpoint.is_available() && node.endpoint.role() != Role::Replica;
                    if serving {
                        check.degrade(Status::Warn, "primary in doubt: rediscovery running");
                    } else {
                        check.degrade(
                            Status::Fail,
                            "no confirmed primary: writes wait for rediscovery",
                        );
                    }
                }
                continue;
            }
            let forgotten = node.forgotten.load(Relaxed);
            check.observe("forgotten", forgotten);
            if node.endpoint.role() != Role::Replica {
                continue;
            }
            let linked = node.link_up.load(Relaxed);
            check.observe("linkUp", linked);
            check.observe("lagBytes", node.lag.load(Relaxed));
            if forgotten {
                check.degrade(Status::Warn, "no longer reported by the sentinels");
            } else if !linked {
                check.degrade(Status::Warn, "replication link to the primary is down");
            }
        }
        health.refresh_status();
        health
    }

    /// The pool's incident timeline: the last events of its nodes (suspect, down, probes,
    /// rediscovery, switches) and each failover with its phases, which add up to the client
    /// gap. See [`Timeline`].
    pub fn timeline(&self) -> Timeline<NodeId> {
        self.inner().router.timeline()
    }
}

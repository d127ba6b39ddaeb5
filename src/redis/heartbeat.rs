//! The heartbeat of the nodes: `ROLE` on each node's control connection, run by the health
//! tracker's probe task (every [`heartbeat`](super::SplitPoolBuilder::heartbeat) for the nodes
//! that are up, bounded by the
//! [`heartbeat_timeout`](super::SplitPoolBuilder::heartbeat_timeout)).
//!
//! A node that does not answer in time misses its heartbeat (the core then puts the primary in
//! doubt when it is the active node, and declares a node down after the tracker's failure
//! threshold), unless it answered something else meanwhile: the core counts a heartbeat that
//! ran out of time on a node whose calls still succeed, or whose previous `ROLE` came late,
//! as slow, not missed. The `ROLE` itself may take twice the heartbeat timeout, so that its
//! late reply still arrives. A cut or refused control connection is missed at once. A primary that answers `slave` is alive but demoted: discovery runs at once. (A
//! replica that answers `master` is left to discovery, which already knows each claimant: a
//! restarted old primary would otherwise start a run at every beat.)

use std::future::Future;
use std::sync::{Arc, OnceLock, Weak};

use tokio::time::Instant;

use super::backend::Backend;
use super::node::NodeId;
use super::pool::Inner;
use super::reply::{RoleReply, parse_role};
use crate::health::{Probe, ProbeResult, Role};

/// Where the heartbeat finds the pool: set once the pool is assembled (the tracker, which runs
/// the probe, is built before it). Weak, so the probe task does not keep the pool alive.
pub(crate) type PoolSlot<B> = Arc<OnceLock<Weak<Inner<B>>>>;

/// The tracker's probe of a pool's nodes.
pub(crate) struct Heartbeat<B: Backend> {
    pool: PoolSlot<B>,
}

impl<B: Backend> Heartbeat<B> {
    /// A heartbeat, and the slot to fill with the pool once it exists.
    pub(crate) fn new() -> (Self, PoolSlot<B>) {
        let pool = PoolSlot::<B>::default();
        (
            Heartbeat {
                pool: Arc::clone(&pool),
            },
            pool,
        )
    }
}

impl<B: Backend> Probe<NodeId> for Heartbeat<B> {
    fn probe(&self, id: &NodeId) -> impl Future<Output = ProbeResult> + Send {
        let pool = self.pool.get().and_then(Weak::upgrade);
        let index = id.index;
        async move {
            // The slot is filled before the pool's first await, long before a first beat is
            // due; a pool that is gone has nothing left to judge.
            let Some(pool) = pool else {
                return ProbeResult::up();
            };
            pool.beat(index).await
        }
    }
}

impl<B: Backend> Inner<B> {
    /// One heartbeat of the node at `index`: up (with the latency) when it answers `ROLE`,
    /// down when it fails or answers something else. (The tracker judges it at the heartbeat
    /// timeout; the reply may take twice that, so that a late one is proof of life.)
    async fn beat(&self, index: u32) -> ProbeResult {
        let Some(node) = self.topology.node_at(index) else {
            return ProbeResult::down();
        };
        let s = &self.topology.settings;
        let bounds = (
            s.timeouts.connect_timeout(),
            s.heartbeat_timeout().saturating_mul(2),
        );
        let started = Instant::now();
        let reply = node
            .control(&self.topology.backend, bounds, &redis::cmd("ROLE"))
            .await;
        let latency = started.elapsed();
        let said = match reply {
            Ok(v) => parse_role(&v),
            Err(e) => {
                tracing::debug!(target: "switchover::redis", node = %node.name, error = %e, "heartbeat failed");
                return ProbeResult::down();
            }
        };
        match said {
            Some(RoleReply::Replica { .. }) if node.endpoint.role() == Role::Primary => {
                tracing::info!(target: "switchover::redis", node = %node.name, "heartbeat: the primary answers as a replica; rediscovering");
                self.rediscovery.suspect();
            }
            Some(RoleReply::Primary { .. } | RoleReply::Replica { .. }) => {}
            Some(RoleReply::Sentinel) | None => return ProbeResult::down(),
        }
        ProbeResult::up().with_latency(latency)
    }
}

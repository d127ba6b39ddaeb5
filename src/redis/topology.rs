//! The nodes the pool knows, how to reach them, and the router over their endpoints. Shared by
//! the pool and by discovery (which holds it without a back-reference to the pool).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::backend::Backend;
use super::config::{NodeAddr, Settings};
use super::error::Error;
use super::node::{Node, NodeId, NodeRef};
use super::table::Table;
use crate::health::{Endpoint, HealthState, Role};
use crate::resolve::{Name, Names};
use crate::route::{Failback, Router};
use crate::sync::lock;

pub(crate) struct Topology<B: Backend> {
    pub(crate) backend: B,
    pub(crate) settings: Settings,
    pub(crate) router: Router<NodeId>,
    /// Indexed by [`NodeId::index`], which is also the router's order of addition; read
    /// without a lock by every command.
    nodes: Table<NodeRef<B>>,
    /// Serializes additions (to the router and to `nodes`, in the same order).
    adding: Mutex<()>,
    /// The sentinels' latest word on the primary (`+switch-master`), for the next run.
    pub(crate) sentinel_hint: RwLock<Option<NodeAddr>>,
    /// Primary changes discovery made since the pool was built.
    pub(crate) switches: AtomicU64,
    /// The index of the node discovery last named primary (`u32::MAX`: none yet).
    last_primary: AtomicU32,
    /// Why the last run found no primary, when nodes refused this client (login, TLS).
    refusal: Mutex<Option<Refusal>>,
    /// The host names of the nodes, looked up again periodically and at each run.
    pub(crate) names: Arc<Names>,
}

/// A node that refused the pool's login or TLS handshake, as discovery last saw it.
#[derive(Clone)]
pub(crate) struct Refusal {
    pub(crate) node: String,
    pub(crate) tls: bool,
    pub(crate) err: redis::RedisError,
}

impl<B: Backend> Topology<B> {
    /// Registers `initial` in `tracker` through a new router: equal priorities and manual
    /// failback, since between Redis nodes the role decides, never a preference order.
    pub(crate) fn new(
        backend: B,
        settings: Settings,
        tracker: &crate::health::HealthTracker<NodeId>,
        initial: Vec<NodeAddr>,
    ) -> Result<Self, Error> {
        let ids: Vec<NodeId> = initial
            .iter()
            .enumerate()
            .map(|(i, a)| node_id(i, a))
            .collect();
        let mut b = Router::builder(tracker)
            .failback(Failback::Manual)
            .observe(settings.observe.clone());
        for id in &ids {
            b = b.endpoint(id.clone(), 0);
        }
        let router = b.build()?;
        let nodes = Table::new();
        let names = Names::new();
        for ((addr, id), (endpoint, _)) in initial.into_iter().zip(&ids).zip(router.endpoints()) {
            debug_assert_eq!(endpoint.id(), id);
            let dns = name_of(&addr, &settings, &names);
            let client = backend.client(&addr, dns.clone())?;
            let bound = settings.timeouts.exchange();
            let reach = (dns, settings.ages.clone());
            let node = Node::new(addr, client, endpoint.clone(), router.clone(), bound, reach);
            nodes
                .push(node)
                .ok_or_else(|| Error::from(crate::error::ConfigError::new("nodes", "too many")))?;
        }
        Ok(Topology {
            backend,
            settings,
            router,
            nodes,
            adding: Mutex::new(()),
            sentinel_hint: RwLock::new(None),
            switches: AtomicU64::new(0),
            last_primary: AtomicU32::new(u32::MAX),
            refusal: Mutex::new(None),
            names,
        })
    }

    pub(crate) fn nodes(&self) -> Vec<NodeRef<B>> {
        self.nodes.iter().cloned().collect()
    }

    /// The node of a routed endpoint: two plain loads, no lock, no reference count.
    #[inline]
    pub(crate) fn node_of(&self, endpoint: &Endpoint<NodeId>) -> Option<&NodeRef<B>> {
        self.nodes.get(endpoint.id().index as usize)
    }

    /// The node of the router's endpoint number `index`.
    pub(crate) fn node_at(&self, index: u32) -> Option<&NodeRef<B>> {
        self.nodes.get(index as usize)
    }

    /// The node discovery last named primary, if any did.
    pub(crate) fn last_primary(&self) -> Option<&NodeRef<B>> {
        match self.last_primary.load(Relaxed) {
            u32::MAX => None,
            i => self.node_at(i),
        }
    }

    /// The node at `addr`, added (to the router and the tracker too) if it is new.
    pub(crate) fn add_node(&self, addr: NodeAddr) -> Option<NodeRef<B>> {
        let _one_at_a_time = lock(&self.adding);
        if let Some(n) = self.remember(&addr) {
            return Some(n);
        }
        let id = node_id(self.nodes.iter().count(), &addr);
        let dns = name_of(&addr, &self.settings, &self.names);
        let client = self.backend.client(&addr, dns.clone()).ok()?;
        let endpoint = self.router.add_endpoint(id, 0).ok()?;
        let bound = self.settings.timeouts.exchange();
        let reach = (dns, self.settings.ages.clone());
        let node = Node::new(addr, client, endpoint, self.router.clone(), bound, reach);
        // The router holds fewer endpoints than the table slots: this push cannot fail.
        self.nodes.push(node.clone())?;
        tracing::info!(target: "switchover::redis", node = %node.name, "node discovered");
        Some(node)
    }

    /// The known node at `addr`, asked again by discovery if it had been forgotten.
    pub(crate) fn remember(&self, addr: &NodeAddr) -> Option<NodeRef<B>> {
        let n = self.nodes.iter().find(|n| n.addr == *addr)?;
        if n.forgotten.swap(false, Relaxed) {
            tracing::info!(target: "switchover::redis", node = %n.name, "node reported again");
            if n.drained_by_pool.swap(false, Relaxed) {
                n.endpoint.clear();
            }
        }
        Some(n.clone())
    }

    /// The nodes discovery asks: all but those the sentinels no longer report.
    pub(crate) fn known_nodes(&self) -> Vec<NodeRef<B>> {
        self.nodes
            .iter()
            .filter(|n| !n.forgotten.load(Relaxed))
            .cloned()
            .collect()
    }

    /// Forgets the failing nodes (other than the active one) that are not in `listed`: what a
    /// majority of the sentinels reports. They keep their slot in the router and the tracker
    /// (which cannot remove an endpoint), drained, and are no longer asked.
    pub(crate) fn forget_unlisted(&self, listed: &[NodeAddr]) {
        let active = self.router.active().id().index;
        for n in self.nodes.iter() {
            // A node that still answers is kept: a sentinel lists no replicas for a while
            // after `SENTINEL RESET`, and a live replica is worth asking.
            let failing = matches!(n.endpoint.state(), HealthState::Down | HealthState::Probing);
            if n.id().index == active || listed.contains(&n.addr) || !failing {
                continue;
            }
            if !n.forgotten.swap(true, Relaxed) {
                tracing::info!(target: "switchover::redis", node = %n.name, "node no longer reported by the sentinels: forgotten");
                n.link_up.store(false, Relaxed);
                if n.endpoint.state() != HealthState::Draining {
                    n.endpoint.drain();
                    n.drained_by_pool.store(true, Relaxed);
                }
            }
        }
    }

    /// The replicas serving reads now: up, link up, following the primary, within the lag
    /// bound.
    pub(crate) fn usable_replicas(&self) -> Vec<NodeRef<B>> {
        self.nodes()
            .into_iter()
            .filter(|n| {
                n.endpoint.role() == Role::Replica
                    && n.endpoint.is_available()
                    && n.link_up.load(Relaxed)
            })
            .collect()
    }

    /// Why the last discovery run found no primary, when nodes refused the pool's login or TLS.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        lock(&self.refusal).clone()
    }

    pub(crate) fn set_refusal(&self, refusal: Option<Refusal>) {
        *lock(&self.refusal) = refusal;
    }

    /// Counts a change of the primary discovery names.
    pub(crate) fn named_primary(&self, node: &Node<B>) {
        let index = node.id().index;
        let previous = self.last_primary.swap(index, Relaxed);
        if previous != index && previous != u32::MAX {
            self.switches.fetch_add(1, Relaxed);
        }
    }
}

/// The host name of `addr`, registered in `names` (`None` for an IP address or a Unix socket).
fn name_of(addr: &NodeAddr, settings: &Settings, names: &Names) -> Option<Arc<Name>> {
    if addr.is_unix() {
        return None;
    }
    let name = Name::new(addr.host(), addr.port(), &settings.resolver)?;
    names.add(&name);
    Some(name)
}

fn node_id(index: usize, addr: &NodeAddr) -> NodeId {
    NodeId {
        // The router holds at most 65 536 endpoints.
        index: u32::try_from(index).unwrap_or(u32::MAX),
        name: addr.to_string().into(),
    }
}

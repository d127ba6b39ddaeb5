//! The hosts as the pool sees them: what each last said it is, its health, the router over
//! them, and the core's re-discovery of the primary. Shared by the pool, its managers, the
//! discovery and the probe, none of which holds a reference back to the pool.
//!
//! A healthy primary is re-checked: re-discovery also runs every [`BACKSTOP`] while the
//! primary is confirmed, so a standby promoted beside it (two writable primaries) is found
//! without a failure; finding one asks for the run that switches to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::backend::Backend;
use super::discover::primaries::{Candidate, Writable, best};
use super::discover::{RoleDiscovery, RoleProbe};
use super::role::{ServerRole, TargetRole};
use crate::error::ConfigError;
use crate::health::{Endpoint, HealthTracker, HealthTrackerBuilder, Role};
use crate::observe::Observe;
use crate::route::{Failback, Gate, Rediscovery, Router};

/// What each host last said it is.
///
/// The replication role lives once, on the host's health [`Endpoint`] (`Primary`, `Replica`
/// or `Unknown`). The one thing an endpoint's role cannot say, whether a replica is a hot
/// standby or a primary fenced read-only (`default_transaction_read_only`), is the `read_only`
/// flag beside it; [`server_role`](Self::server_role) combines the two. A pooled connection
/// keeps the role its own server reports, which is what the recycle check reads.
#[derive(Debug)]
pub(crate) struct HostRoles {
    names: Vec<Arc<str>>,
    read_only: Vec<AtomicBool>,
    /// The first discovery run has finished.
    learned: AtomicBool,
    /// Woken when a host's role is recorded.
    recorded: Notify,
    /// Which hosts were last seen writable, and on which timeline.
    pub(crate) writable: Writable,
}

impl HostRoles {
    pub(crate) fn new(names: Vec<Arc<str>>) -> Arc<Self> {
        Arc::new(HostRoles {
            read_only: names.iter().map(|_| AtomicBool::new(false)).collect(),
            writable: Writable::new(names.len()),
            names,
            learned: AtomicBool::new(false),
            recorded: Notify::new(),
        })
    }

    pub(crate) fn names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// The index of the host `id` (endpoint ids are these very `Arc`s: a pointer compare on
    /// the hot path, the text as a fallback).
    pub(crate) fn index_of(&self, id: &Arc<str>) -> Option<usize> {
        self.names
            .iter()
            .position(|n| Arc::ptr_eq(n, id))
            .or_else(|| self.names.iter().position(|n| n == id))
    }

    /// The role host `i` last reported, from its endpoint and the read-only flag.
    pub(crate) fn server_role(
        &self,
        i: usize,
        endpoint: &Endpoint<Arc<str>>,
    ) -> Option<ServerRole> {
        match endpoint.role() {
            Role::Primary => Some(ServerRole::Primary),
            Role::Replica if self.read_only[i].load(Ordering::Acquire) => {
                Some(ServerRole::ReadOnly)
            }
            Role::Replica => Some(ServerRole::Standby),
            _ => None,
        }
    }

    /// Sets the read-only flag only (a probe's result carries the endpoint's role itself);
    /// a host that is not a writable primary is no longer remembered as one.
    pub(crate) fn note(&self, i: usize, role: ServerRole) {
        self.read_only[i].store(role == ServerRole::ReadOnly, Ordering::Release);
        if role != ServerRole::Primary {
            self.writable.forget(i);
        }
    }

    /// Records what host `i` said it is, on its endpoint and in the flag.
    pub(crate) fn record(&self, i: usize, endpoint: &Endpoint<Arc<str>>, role: ServerRole) {
        let before = self.server_role(i, endpoint);
        self.note(i, role);
        endpoint.set_role(health_role(role));
        self.recorded.notify_waiters();
        if before != Some(role) {
            tracing::info!(
                target: "switchover::postgres",
                host = %self.names[i],
                role = %role,
                previous = ?before.map(|r| r.to_string()),
                "host role observed"
            );
        }
    }

    pub(crate) fn learned(&self) -> bool {
        self.learned.load(Ordering::Acquire)
    }

    pub(crate) fn mark_learned(&self) {
        self.learned.store(true, Ordering::Release);
    }

    /// Resolves at the next [`record`](Self::record) after it was
    /// [enabled](tokio::sync::futures::Notified::enable) or first polled.
    pub(crate) fn recorded(&self) -> tokio::sync::futures::Notified<'_> {
        self.recorded.notified()
    }
}

/// When hosts are found writable together and, once no run is under way, one of them outranks
/// the active primary (its answer came after its run named one), asks for the run that
/// switches to it. Stops when
/// `stop`'s sender (the topology) is dropped.
async fn follow_writable(
    roles: Arc<HostRoles>,
    rediscovery: Rediscovery<Arc<str>>,
    endpoints: Vec<Endpoint<Arc<str>>>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            () = roles.writable.changed() => {}
            _ = &mut stop => return,
        }
        // A run still under way takes the answer into account itself.
        tokio::select! {
            () = roles.writable.settled() => {}
            _ = &mut stop => return,
        }
        if rediscovery.router().is_obeying() {
            // The authority names the primary; a writable host it does not name is not one.
            continue;
        }
        let active = rediscovery.router().active();
        let current = endpoints.iter().position(|e| e.ptr_eq(active.endpoint()));
        let candidates: Vec<Candidate> = roles
            .writable
            .writable()
            .into_iter()
            .map(|(host, lineage)| Candidate {
                host,
                lineage,
                current: Some(host) == current,
            })
            .collect();
        if let Some(best) = best(&candidates)
            && Some(best.host) != current
        {
            tracing::info!(
                target: "switchover::postgres",
                primary = %active.id(),
                outranked_by = %roles.names()[best.host],
                "the active primary is outranked by another writable host; rediscovering"
            );
            rediscovery.suspect();
        }
    }
}

/// The health tracker's view of a server role.
pub(crate) fn health_role(role: ServerRole) -> Role {
    match role {
        ServerRole::Primary => Role::Primary,
        ServerRole::Standby | ServerRole::ReadOnly => Role::Replica,
    }
}

/// While the primary is confirmed, a discovery run this often anyway: a standby promoted beside
/// a healthy primary causes no failure that would ask for one.
pub(crate) const BACKSTOP: Duration = Duration::from_secs(5);

/// How the core's re-discovery runs for this pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiscoveryConfig {
    /// While the primary is in doubt, a run this often; also the least gap between runs.
    pub(crate) interval: Duration,
    /// The deadline of one role probe.
    pub(crate) probe_timeout: Duration,
    /// How long a run waits for a host that does not answer before it decides without it
    /// (at most the probe timeout).
    pub(crate) silence: Duration,
}

/// The hosts, their health and roles, the router and the re-discovery.
#[derive(Debug)]
pub(crate) struct Topology {
    pub(crate) roles: Arc<HostRoles>,
    pub(crate) tracker: HealthTracker<Arc<str>>,
    pub(crate) router: Router<Arc<str>>,
    /// Endpoint handles by host index (also the router's order and priority).
    pub(crate) endpoints: Vec<Endpoint<Arc<str>>>,
    pub(crate) rediscovery: Rediscovery<Arc<str>>,
    /// When re-discovery started: its first run started at or after this.
    pub(crate) started_at: Instant,
    /// Dropped with the topology, which stops [`follow_writable`].
    _watch: oneshot::Sender<()>,
}

impl Topology {
    /// [`start_observed`](Self::start_observed) with the default name, `postgres`.
    #[cfg(test)]
    pub(crate) fn start<B: Backend>(
        backend: Arc<B>,
        names: Vec<Arc<str>>,
        health: HealthTrackerBuilder<Arc<str>>,
        config: DiscoveryConfig,
    ) -> Result<Topology, ConfigError> {
        Self::start_observed(
            backend,
            names,
            health,
            config,
            Observe::new("postgres"),
            false,
        )
    }

    /// Registers the hosts in a tracker built from `health` (with `backend`'s role probe), a
    /// router over them by priority (manual failback: the role decides, never a preference
    /// order) observed as `observe`, and starts re-discovery, whose first run starts at once.
    /// With `obey`, an authority will decide: the router's gate is closed (no host is
    /// confirmed as primary) until its follower names one.
    pub(crate) fn start_observed<B: Backend>(
        backend: Arc<B>,
        names: Vec<Arc<str>>,
        health: HealthTrackerBuilder<Arc<str>>,
        config: DiscoveryConfig,
        observe: Observe,
        obey: bool,
    ) -> Result<Topology, ConfigError> {
        let roles = HostRoles::new(names.clone());
        let tracker = health
            .endpoints(names.iter().cloned())
            .probe(RoleProbe::new(backend.clone(), roles.clone()))
            .build()?;
        let mut rb = Router::builder(&tracker)
            .failback(Failback::Manual)
            .observe(observe);
        for (i, n) in names.iter().enumerate() {
            rb = rb.endpoint(n.clone(), i as u32);
        }
        let router = rb.build()?;
        if obey {
            router
                .obey(Gate::Awaiting)
                .map_err(|e| ConfigError::new("authority", e.to_string()))?;
        }
        let endpoints: Vec<_> = names
            .iter()
            .map(|n| tracker.endpoint(n).expect("registered above"))
            .collect();
        let discover = RoleDiscovery::new(
            backend,
            roles.clone(),
            router.clone(),
            endpoints.clone(),
            config.probe_timeout,
            config.silence,
            config.interval,
        );
        // A run takes at most one probe timeout; a caller may arrive just after one started
        // and then needs the next: two runs and the gap between them.
        let started_at = Instant::now();
        let rediscovery = Rediscovery::builder(&router)
            .interval(config.interval)
            .backstop(Some(BACKSTOP))
            .wait_limit(config.probe_timeout * 2 + config.interval)
            .start(discover)?;
        let (watch, stop) = oneshot::channel();
        tokio::spawn(follow_writable(
            roles.clone(),
            rediscovery.clone(),
            endpoints.clone(),
            stop,
        ));
        Ok(Topology {
            roles,
            tracker,
            router,
            endpoints,
            rediscovery,
            started_at,
            _watch: watch,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn name(&self, i: usize) -> &Arc<str> {
        &self.roles.names()[i]
    }

    /// The index of `endpoint`, one of ours.
    pub(crate) fn index_of(&self, endpoint: &Endpoint<Arc<str>>) -> usize {
        self.endpoints
            .iter()
            .position(|e| e.ptr_eq(endpoint))
            .unwrap_or(0)
    }

    /// The index of the router's active endpoint (where primary connections go).
    pub(crate) fn active_index(&self) -> usize {
        self.index_of(self.router.active().endpoint())
    }

    /// `true` when a write may go to the router's active host: re-discovery has confirmed a
    /// primary, and the active host (under an authority, the one it names) is available and
    /// that primary. A few atomic loads.
    pub(crate) fn primary_confirmed(&self) -> bool {
        if self.rediscovery.in_doubt() {
            return false;
        }
        let active = self.router.active();
        !active.is_all_down() && active.endpoint().role() == Role::Primary
    }

    pub(crate) fn server_role(&self, i: usize) -> Option<ServerRole> {
        self.roles.server_role(i, &self.endpoints[i])
    }

    pub(crate) fn record_role(&self, i: usize, role: ServerRole) {
        self.roles.record(i, &self.endpoints[i], role);
    }

    /// `true` when an available host has a role `target` prefers.
    pub(crate) fn preferred_available(&self, target: TargetRole) -> bool {
        (0..self.len()).any(|i| {
            self.endpoints[i].is_available()
                && self.server_role(i).is_some_and(|r| target.prefers(r))
        })
    }

    /// Whether a connection to `host`, made in `generation`, whose server last reported
    /// `role`, may be handed out for `target` now: the generation is current, the host is
    /// available, the role is acceptable (and, for `Primary`, the host is the router's
    /// active one), and no preferred host is available while it serves as a fallback. The
    /// one check behind the recycle of an idle connection and every eviction; the error says
    /// why not.
    pub(crate) fn fits(
        &self,
        host: usize,
        generation: u64,
        role: Option<ServerRole>,
        target: TargetRole,
    ) -> Result<(), &'static str> {
        if generation != self.router.generation() {
            return Err("older generation");
        }
        if !self.endpoints[host].is_available() {
            return Err("host unavailable");
        }
        let Some(role) = role else {
            return Err("role unknown");
        };
        if !target.accepts(role) {
            return Err("server role changed");
        }
        if target == TargetRole::Primary && self.active_index() != host {
            return Err("not the active host");
        }
        if !target.prefers(role) && self.preferred_available(target) {
            return Err("a preferred host is available again");
        }
        Ok(())
    }
}

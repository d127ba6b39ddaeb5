//! [`FailoverPool`]: the handle, its two deadpool pools, and what it reports about the hosts.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use deadpool::Runtime;
use deadpool::managed::{Object, Pool, QueueMode};
use tokio::time::Instant;

use super::acquire::no_primary;
use super::authority::{AuthorityStarter, follow};
use super::backend::PgBackend;
use super::builder::FailoverPoolBuilder;
use super::conn::PgConnection;
use super::core::{Core, Side};
use super::error::Error;
use super::hosts::HostConfig;
use super::manager::ConnectionManager;
use super::role::{ServerRole, TargetRole};
use super::settings::Settings;
use super::topology::Topology;
use crate::error::{Classify, ConfigError, ErrorClass};
use crate::health::{HealthState, HealthTracker, HealthTrackerBuilder};
use crate::observe::Borrow;
use crate::route::{NoPrimary, Router};

/// A connection handed out by [`FailoverPool`]: deadpool's [`Object`], and the time it has
/// been borrowed (with feature `metrics`, `db.client.connection.use_time` when it is returned).
/// It derefs to [`PgConnection`], which derefs to [`tokio_postgres::Client`], so existing
/// query code works unchanged; dropping it returns it to the pool.
pub struct PooledConnection {
    // Dropped in this order: back to the pool, then the borrow's time recorded.
    conn: Object<ConnectionManager>,
    _borrow: Borrow,
}

impl PooledConnection {
    pub(super) fn new(conn: Object<ConnectionManager>, borrow: Borrow) -> Self {
        PooledConnection {
            conn,
            _borrow: borrow,
        }
    }

    /// Takes the connection out of the pool for good (deadpool's [`Object::take`]): the pool
    /// makes a new one in its place, and this one closes when dropped.
    pub fn take(this: Self) -> PgConnection {
        Object::take(this.conn)
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = PgConnection;

    #[inline]
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConnection {
    #[inline]
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PooledConnection")
            .field(&*self.conn)
            .finish()
    }
}

/// A boxed, `Send` future: what the closures given to [`FailoverPool::run`] and
/// [`FailoverPool::transaction`] return (write `Box::pin(async move { ... })`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reconnecting Postgres pool over several hosts that always hands out a connection of the
/// right role. See the [module documentation](super) for the whole story.
///
/// Cheap to clone (`Arc`s); clones share connections, health and routing.
#[derive(Clone)]
pub struct FailoverPool {
    pub(super) core: Arc<Core>,
    pub(super) main: Pool<ConnectionManager>,
    pub(super) read: Pool<ConnectionManager>,
    /// Whether [`run`](Self::run) and [`transaction`](Self::transaction) may run their closure
    /// again after it may have executed.
    pub(super) idempotent: bool,
}

impl fmt::Debug for FailoverPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverPool")
            .field("hosts", &self.hosts())
            .field("target_role", &self.core.settings.target_role)
            .field("read_role", &self.core.settings.read_role)
            .field("primary", &self.primary())
            .field("generation", &self.generation())
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

/// One host as the pool sees it: see [`FailoverPool::topology`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStatus {
    /// `host:port`.
    pub host: String,
    /// The role the server last reported (`None`: never reached).
    pub role: Option<ServerRole>,
    /// Its state in the health tracker.
    pub health: HealthState,
    /// `true` for the router's active endpoint (where primary connections go).
    pub active: bool,
}

impl FailoverPool {
    /// A builder with the documented defaults.
    pub fn builder() -> FailoverPoolBuilder {
        FailoverPoolBuilder::default()
    }

    pub(super) fn start(
        hosts: Vec<HostConfig>,
        settings: Settings,
        health: HealthTrackerBuilder<Arc<str>>,
        authority: Option<AuthorityStarter>,
    ) -> Result<Self, ConfigError> {
        let backend = PgBackend::new(
            hosts,
            settings.login.clone(),
            settings.timeouts.probe,
            settings.ages.clone(),
        );
        let topology = Topology::start_observed(
            backend.clone(),
            backend.names(),
            health,
            settings.discovery(),
            settings.observe.clone(),
            authority.is_some(),
        )?;
        let follower = authority.map(|a| follow(a, &topology)).transpose()?;
        let mut core = Core::new(settings, backend, topology)?;
        core.follower = follower;
        let core = Arc::new(core);
        let s = &core.settings;
        let build = |side: &Side| {
            Pool::builder(ConnectionManager::new(
                core.clone(),
                side.role,
                side.metrics.clone(),
            ))
            .max_size(s.max_size)
            .runtime(Runtime::Tokio1)
            .queue_mode(QueueMode::Fifo)
            .wait_timeout(Some(s.timeouts.acquire))
            .recycle_timeout(Some(s.timeouts.recycle))
            .build()
            .map_err(|e| ConfigError::new("max_size", e.to_string()))
        };
        let pool = FailoverPool {
            main: build(&core.main)?,
            read: build(&core.read)?,
            core: core.clone(),
            idempotent: false,
        };
        pool.start_metrics();
        pool.follow_names();
        Ok(pool)
    }

    /// Looks the hosts' names up again every resolve interval (and when a run asks); a name
    /// that moved starts a re-discovery, whose probe asks the new address.
    fn follow_names(&self) {
        let names = self.core.backend.names.clone();
        if names.is_empty() {
            return;
        }
        let core = Arc::downgrade(&self.core);
        let s = &self.core.settings;
        tokio::spawn(crate::resolve::refresh_loop(
            names,
            s.resolve_interval,
            s.timeouts.connect,
            move |moved| {
                let core = core.clone();
                async move {
                    let Some(core) = core.upgrade() else {
                        return false;
                    };
                    if core.backend.is_closed() {
                        return false;
                    }
                    if !moved.is_empty() {
                        let r = &core.topology.rediscovery;
                        let _ = r.rediscover_after(Instant::now()).await;
                    }
                    true
                }
            },
        ));
    }

    /// A handle whose [`run`](Self::run) and [`transaction`](Self::transaction) are declared
    /// idempotent (default: not): a closure that may have executed (a connection lost while a
    /// statement was in flight, an unknown outcome after `COMMIT`) is run again. Failures that
    /// prove nothing ran are retried on every handle. Shares everything with `self`.
    #[must_use]
    pub fn idempotent(&self) -> FailoverPool {
        FailoverPool {
            idempotent: true,
            ..self.clone()
        }
    }

    /// Tells the pool about an error you got on a connection from [`get`](Self::get) or
    /// [`get_read`](Self::get_read): it is recorded against the host, and a failover-class
    /// error (see [`is_failover_error`](super::is_failover_error)) on the primary starts a
    /// re-discovery, so the next `get` goes to the right host at once. The runner methods do
    /// this on their own. A connection that did not come from this pool (or its clones) is
    /// ignored.
    pub async fn report(&self, conn: &PgConnection, err: &tokio_postgres::Error) {
        let observed_at = Instant::now();
        let c = err.classify();
        if c.class() == ErrorClass::Permanent {
            return;
        }
        let t = &self.core.topology;
        // The host index is only meaningful in the pool that made the connection.
        let Some(endpoint) = t
            .endpoints
            .get(conn.host_index())
            .filter(|ep| **ep.id() == *conn.host())
        else {
            return;
        };
        let was_primary = endpoint.ptr_eq(t.router.active().endpoint());
        endpoint.record_failure(c);
        if was_primary && super::is_failover_error(err) {
            let _ = self.rediscover_after(observed_at).await;
        }
    }

    /// Re-discovers the primary now: every host probed for its role in parallel (each within
    /// the probe timeout), the router switched to the writable primary found, idle
    /// connections that no longer fit evicted. Returns once the primary answers; the other
    /// hosts' roles are recorded as their probes answer. Returns the generation afterwards.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::NoHost`](super::ErrorKind::NoHost) error when no writable primary
    /// answered (its message says what each host answered instead).
    pub async fn rediscover(&self) -> Result<u64, Error> {
        self.rediscover_after(Instant::now())
            .await
            .map_err(|e| no_primary(TargetRole::Primary, &e))
    }

    /// The core's re-discovery for an error observed at `observed_at`; evicts what no longer
    /// fits when the primary moved meanwhile.
    pub(super) async fn rediscover_after(&self, observed_at: Instant) -> Result<u64, NoPrimary> {
        let t = &self.core.topology;
        let before = t.router.generation();
        let result = t.rediscovery.rediscover_after(observed_at).await;
        if t.router.generation() != before {
            self.evict_stale();
        }
        result
    }

    /// Drops every idle connection that the recycle check would refuse: of an older
    /// generation, on an unavailable host, or whose server role no longer fits its pool.
    pub(super) fn evict_stale(&self) {
        let t = &self.core.topology;
        let generation = t.router.generation();
        for (pool, role) in [
            (&self.main, self.core.main.role),
            (&self.read, self.core.read.role),
        ] {
            let res = pool.retain(|conn, _| {
                !conn.is_closed()
                    && t.fits(conn.host_index(), conn.generation(), conn.role(), role)
                        .is_ok()
            });
            if !res.removed.is_empty() {
                tracing::info!(
                    target: "switchover::postgres",
                    evicted = res.removed.len(),
                    kept = res.retained,
                    pool = %role,
                    generation,
                    "evicted idle connections"
                );
            }
        }
    }

    /// The hosts, in priority order, as `host:port`.
    pub fn hosts(&self) -> Vec<&str> {
        self.core
            .topology
            .roles
            .names()
            .iter()
            .map(|n| &**n)
            .collect()
    }

    /// The host primary connections go to (the router's active endpoint), as `host:port`.
    pub fn primary(&self) -> &str {
        let t = &self.core.topology;
        t.name(t.active_index())
    }

    /// The router generation: grows by one on every switch of primary. Connections of older
    /// generations are never handed out again.
    pub fn generation(&self) -> u64 {
        self.core.topology.router.generation()
    }

    /// Every host with its last reported role, its health and whether it is the active one.
    pub fn topology(&self) -> Vec<HostStatus> {
        let t = &self.core.topology;
        let active = t.active_index();
        (0..t.len())
            .map(|i| HostStatus {
                host: t.name(i).to_string(),
                role: t.server_role(i),
                health: t.endpoints[i].state(),
                active: i == active,
            })
            .collect()
    }

    /// The health tracker over the hosts (ids are `host:port`): subscribe to its events, force
    /// a host down for a drill.
    pub fn tracker(&self) -> &HealthTracker<Arc<str>> {
        &self.core.topology.tracker
    }

    /// The router over the hosts: subscribe to switch events.
    pub fn router(&self) -> &Router<Arc<str>> {
        &self.core.topology.router
    }

    /// The role [`get`](Self::get), [`run`](Self::run) and [`transaction`](Self::transaction)
    /// use.
    pub fn target_role(&self) -> TargetRole {
        self.core.settings.target_role
    }

    /// The role [`get_read`](Self::get_read) hands out.
    pub fn read_role(&self) -> TargetRole {
        self.core.settings.read_role
    }

    /// Closes the pool, for every clone: pending and future `get`s fail with a
    /// [closed](Error::is_closed) error, idle connections are dropped, and re-discovery stops.
    pub fn close(&self) {
        self.main.close();
        self.read.close();
        self.core.close();
    }
}

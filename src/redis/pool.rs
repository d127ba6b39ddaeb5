//! The pool handle: [`SplitPool`], its shared state, its accessors, and redis-rs's
//! [`ConnectionLike`] on top of the runner.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::attempt::Pipelined;
use super::backend::{Backend, RedisIo};
use super::command::{Route, route_pipeline, route_single};
use super::dedicated::DedicatedConnection;
use super::discover::Discovery;
use super::error::Error;
use super::node::{NodeId, NodeRef};
use super::session::Session;
use super::topology::Topology;
use crate::health::{HealthTracker, Role};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::route::{ReadPolicy, Rediscovery, Router};

/// Which node a dedicated connection or a pub/sub connection goes to.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The current primary.
    Primary,
    /// A replica chosen by the read policy (the primary when the policy falls back to it).
    Replica,
}

/// The pool's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The router's generation (one more per primary switch).
    pub generation: u64,
    /// Primary switches the pool made since it was built.
    pub switches: u64,
    /// Discovery runs finished since it was built.
    pub discoveries: u64,
    /// Replicas currently serving reads (up, link up, within the lag bound).
    pub usable_replicas: usize,
}

/// What a pool's handles share.
pub(crate) struct Inner<B: Backend> {
    pub(crate) topology: Arc<Topology<B>>,
    /// The topology's router (one pointer less on the hot path).
    pub(crate) router: Router<NodeId>,
    pub(crate) rediscovery: Rediscovery<NodeId>,
    pub(crate) retry: RetryPolicy,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) read_policy: Box<dyn ReadPolicy<NodeId>>,
    pub(crate) tracker: HealthTracker<NodeId>,
    /// How long an attempt may wait for discovery, so that it ends before the policy's attempt
    /// timeout (`None`: the policy has none).
    pub(crate) attempt_wait: Option<Duration>,
    /// The longest one attempt of a write or a read can take (see [`Bounds`]).
    pub(crate) bounds: Bounds,
    /// The Sentinel listeners stop (discovery is closed through `rediscovery`).
    pub(crate) closed: AtomicBool,
}

/// The longest one attempt can take, from the pool's own time limits: what the runner is told
/// ([`RoutedCall::bounded_by`](crate::route::RoutedCall::bounded_by)), so the executor needs no
/// timer of its own for an attempt whose limit is longer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// A read: a connect (the connect plus the response timeout, as [`Node::connect`] bounds
    /// it), then the reply (redis-rs's response timeout).
    ///
    /// [`Node::connect`]: super::node::Node::connect
    pub(crate) read: Duration,
    /// A write: a read's, plus two waits for discovery (for a confirmed primary before sending,
    /// and for the new primary after a `READONLY`).
    pub(crate) write: Duration,
}

impl Bounds {
    fn new(s: &super::config::Settings, wait: Duration) -> Self {
        let read = s.timeouts.exchange() + s.timeouts.response_timeout();
        Bounds {
            read,
            write: read + wait + wait,
        }
    }
}

/// Everything a pool starts from, validated by the builder.
pub(crate) struct Parts<B: Backend> {
    pub(crate) backend: B,
    pub(crate) settings: super::config::Settings,
    pub(crate) retry: RetryPolicy,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) read_policy: Box<dyn ReadPolicy<NodeId>>,
    pub(crate) tracker: HealthTracker<NodeId>,
    pub(crate) initial: Vec<super::config::NodeAddr>,
    /// Where the tracker's heartbeat finds the pool (`None`: no heartbeat).
    pub(crate) heartbeat: Option<super::heartbeat::PoolSlot<B>>,
}

impl<B: Backend> Inner<B> {
    /// Registers the nodes, starts discovery and waits for its first run. A run that finds no
    /// primary (the primary stopped, a failover under way) still starts the pool, with the
    /// primary in doubt: writes wait for one within their deadlines, reads go to the replicas.
    /// Only a refusal (a rejected login, a failed TLS handshake) fails the start.
    pub(crate) async fn start(p: Parts<B>) -> Result<Arc<Self>, Error> {
        if p.initial.is_empty() {
            return Err(Error::no_primary(crate::route::NoPrimary::new(
                "no node to start from",
            )));
        }
        let s = &p.settings;
        // A caller in doubt waits for the gap after the last run and one full run.
        let wait_limit = s.discovery_run_bound() + s.rediscovery_interval;
        let (interval, backstop) = (s.rediscovery_interval, s.discovery_interval);
        let topology = Arc::new(Topology::new(p.backend, p.settings, &p.tracker, p.initial)?);
        let router = topology.router.clone();
        let started = tokio::time::Instant::now();
        let rediscovery = Rediscovery::builder(&router)
            .interval(interval)
            .backstop(Some(backstop))
            .wait_limit(wait_limit)
            .start(Discovery(Arc::clone(&topology)))?;
        let attempt_wait = p
            .retry
            .attempt_timeout()
            .map(|t| t.saturating_sub(Duration::from_millis(1)));
        let bounds = Bounds::new(&topology.settings, attempt_wait.unwrap_or(wait_limit));
        let inner = Arc::new(Inner {
            topology,
            router,
            rediscovery,
            retry: p.retry,
            budget: p.budget,
            read_policy: p.read_policy,
            tracker: p.tracker,
            attempt_wait,
            bounds,
            closed: AtomicBool::new(false),
        });
        if let Some(slot) = p.heartbeat {
            let _ = slot.set(Arc::downgrade(&inner));
        }
        inner.follow_names();
        match inner.rediscovery.rediscover_after(started).await {
            Ok(_) => {}
            Err(e) if e.is_permanent() => return Err(inner.no_primary(e)),
            Err(e) => {
                tracing::warn!(target: "switchover::redis", reason = %e.reason(), "started with the primary in doubt");
            }
        }
        Ok(inner)
    }

    /// Looks the nodes' host names up again every resolve interval (and when a run asks);
    /// a name that moved starts a discovery run, whose `ROLE` asks the new address.
    fn follow_names(self: &Arc<Self>) {
        let t = &self.topology;
        if t.names.is_empty() {
            return;
        }
        let me = Arc::downgrade(self);
        let limit = t.settings.timeouts.connect_timeout();
        tokio::spawn(crate::resolve::refresh_loop(
            t.names.clone(),
            t.settings.resolve_interval,
            limit,
            move |moved| {
                let me = me.clone();
                async move {
                    let Some(inner) = me.upgrade() else {
                        return false;
                    };
                    if inner.closed.load(Relaxed) {
                        return false;
                    }
                    if !moved.is_empty() {
                        let _ = inner.rediscovery.rediscover().await;
                    }
                    true
                }
            },
        ));
    }

    /// The caller's error for no primary: the node that refused the login or the TLS
    /// handshake when that is why (permanent), else what discovery found.
    pub(crate) fn no_primary(&self, e: crate::route::NoPrimary) -> Error {
        match self.topology.refusal() {
            Some(r) if e.is_permanent() => Error::refused("redis node", &r.node, r.tls, r.err),
            _ => Error::no_primary(e),
        }
    }

    /// The confirmed primary; waits for discovery when it is in doubt.
    pub(crate) async fn primary_node(&self) -> Result<NodeRef<B>, Error> {
        let ep = match self.rediscovery.primary().await {
            Ok(ep) => ep,
            Err(e) => return Err(self.no_primary(e)),
        };
        self.known(ep)
    }

    /// The node the read policy chooses (the confirmed primary when it chooses the primary).
    pub(crate) async fn read_node(&self) -> Result<NodeRef<B>, Error> {
        let ep = self
            .router
            .read_target(&*self.read_policy)
            .ok_or_else(Error::no_replica)?;
        if ep.role() == Role::Primary {
            return self.primary_node().await;
        }
        self.known(ep)
    }

    fn known(&self, ep: &crate::health::Endpoint<NodeId>) -> Result<NodeRef<B>, Error> {
        let node = self.topology.node_of(ep).cloned();
        node.ok_or_else(|| {
            let why = format!("{:?} is not a known node", ep.id());
            Error::no_primary(crate::route::NoPrimary::new(why))
        })
    }
}

/// A handle of a pool over backend `B`: the shared state, and this handle's idempotency and
/// read-your-writes session.
pub(crate) struct Pool<B: Backend> {
    pub(crate) inner: Arc<Inner<B>>,
    pub(crate) idempotent: bool,
    pub(crate) session: Option<Arc<Session>>,
}

impl<B: Backend> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Pool {
            inner: Arc::clone(&self.inner),
            idempotent: self.idempotent,
            session: self.session.clone(),
        }
    }
}

impl<B: Backend> Pool<B> {
    pub(crate) fn new(inner: Arc<Inner<B>>) -> Self {
        Pool {
            inner,
            idempotent: false,
            session: None,
        }
    }

    /// One command through the runner. (A plain function returning the runner's future, not an
    /// `async fn` around it: one layer less to move.)
    pub(crate) fn command<'a>(
        &'a self,
        route: Route,
        cmd: &'a Cmd,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'a {
        let session = self.session.as_deref();
        self.inner.run(route, self.idempotent, session, cmd)
    }

    /// One pipeline (or transaction) through the runner.
    pub(crate) async fn pipeline(
        &self,
        route: Route,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let request = Pipelined {
            pipeline,
            offset,
            count,
        };
        self.inner
            .run(route, self.idempotent, self.session.as_deref(), &request)
            .await
            .map(|r| r.values)
    }
}

/// A read/write-splitting handle over one Redis primary and its replicas. See the
/// [module documentation](super).
///
/// Cheap to clone (an `Arc`); clones share everything. Implements
/// [`redis::aio::ConnectionLike`], so `AsyncCommands`, `query_async`, pipelines and scripts run
/// on it unchanged. Background tasks (discovery, Sentinel subscriptions) stop when the last
/// clone is dropped or [`close`](Self::close) is called.
#[derive(Clone)]
pub struct SplitPool {
    pool: Pool<RedisIo>,
}

impl fmt::Debug for SplitPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.pool.inner;
        f.debug_struct("SplitPool")
            .field("nodes", &inner.topology.nodes())
            .field("primary", inner.router.active().id())
            .field("generation", &inner.router.generation())
            .field("settings", &inner.topology.settings)
            .finish_non_exhaustive()
    }
}

impl SplitPool {
    pub(crate) async fn start(parts: Parts<RedisIo>) -> Result<Self, Error> {
        let inner = Inner::start(parts).await?;
        if let super::config::Source::Sentinel { sentinels, master } =
            &inner.topology.settings.source
        {
            for s in sentinels {
                tokio::spawn(super::sentinel::listen(
                    Arc::downgrade(&inner),
                    s.clone(),
                    master.clone(),
                ));
            }
        }
        Ok(SplitPool {
            pool: Pool::new(inner),
        })
    }

    pub(super) fn inner(&self) -> &Inner<RedisIo> {
        &self.pool.inner
    }

    /// A handle whose writes are declared idempotent (default: not): a write that timed out or
    /// lost its connection after being sent is retried too. Reads are always treated as
    /// idempotent; writes refused before running (`READONLY`, connection refused) are always
    /// retried.
    #[must_use]
    pub fn idempotent(&self) -> SplitPool {
        let mut pool = self.pool.clone();
        pool.idempotent = true;
        SplitPool { pool }
    }

    /// A read-your-writes session: after a write through the returned handle, its reads go to
    /// the primary for `window`; then back to replicas. Other handles are not affected. The
    /// window should exceed the replication lag you tolerate (100 ms to 1 s is usual).
    #[must_use]
    pub fn read_your_writes(&self, window: Duration) -> SplitPool {
        let mut pool = self.pool.clone();
        pool.session = Some(Arc::new(Session::new(window)));
        SplitPool { pool }
    }

    /// The router (active primary, generation, events). Subscribe to its
    /// [`RouteEvent`](crate::route::RouteEvent)s to see switches.
    pub fn router(&self) -> &Router<NodeId> {
        &self.inner().router
    }

    /// The health tracker of the nodes.
    pub fn tracker(&self) -> &HealthTracker<NodeId> {
        &self.inner().tracker
    }

    /// `host:port` of the current primary; empty while no node is (the last discovery found
    /// the active node no longer claiming the `master` role, and no other node that does).
    pub fn primary_addr(&self) -> String {
        let active = self.inner().router.active();
        if active.endpoint().role() == Role::Replica {
            return String::new();
        }
        active.id().name().to_owned()
    }

    /// `host:port` of the replicas currently serving reads.
    pub fn replica_addrs(&self) -> Vec<String> {
        let replicas = self.inner().topology.usable_replicas();
        replicas.iter().map(|n| n.name.clone()).collect()
    }

    /// Counters: generation, switches, discoveries, usable replicas.
    pub fn status(&self) -> PoolStatus {
        let inner = self.inner();
        PoolStatus {
            generation: inner.router.generation(),
            switches: inner.topology.switches.load(Relaxed),
            discoveries: inner.rediscovery.runs(),
            usable_replicas: inner.topology.usable_replicas().len(),
        }
    }

    /// Runs discovery now (ask the sentinels and every node `ROLE`) and waits for it, up to the
    /// wait limit (see [`SplitPoolBuilder`](super::SplitPoolBuilder)). Concurrent requests share
    /// one run. Returns the router's generation afterwards.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoPrimary`](super::ErrorKind::NoPrimary) when the run found no primary or
    /// none finished in time (after [`close`](Self::close), none does).
    pub async fn rediscover(&self) -> Result<u64, Error> {
        self.inner()
            .rediscovery
            .rediscover()
            .await
            .map_err(Error::no_primary)
    }

    /// A connection of its own to the primary or a replica, for `MULTI`/`WATCH` transactions,
    /// blocking commands, or anything that needs a connection to itself. From the node's pool
    /// (at most [`dedicated_pool_size`](super::SplitPoolBuilder::dedicated_pool_size) handed
    /// out at once; idle ones are checked with `UNWATCH` + `PING` before reuse, new ones log in
    /// with the credentials of the moment); each command has the response timeout. It fails with a
    /// [stale](Error::is_stale) error once its node has changed role (drop it and get a new
    /// one), and is discarded rather than reused when that happens.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoPrimary`](super::ErrorKind::NoPrimary) when no primary is confirmed,
    /// [`ErrorKind::NoReplica`](super::ErrorKind::NoReplica) when the read policy finds no
    /// replica, [`ErrorKind::Dedicated`](super::ErrorKind::Dedicated) when the node's pool
    /// cannot hand out a connection.
    pub async fn dedicated(&self, target: Target) -> Result<DedicatedConnection, Error> {
        let node = self.node_for(target).await?;
        let timeout = self.inner().topology.settings.timeouts.response_timeout();
        DedicatedConnection::get(node, &self.inner().topology.backend, timeout).await
    }

    /// A pub/sub connection to the primary or a replica (messages published on the primary
    /// reach subscribers on replicas). It does not follow failovers: watch
    /// [`router`](Self::router) events and resubscribe.
    ///
    /// It ends when its node is declared down (a frozen or cut-off node, whose socket stays
    /// open, included): its message stream ends, and every later command on it
    /// (`subscribe`, `ping`, ...) fails with a broken-pipe I/O error, classified transient
    /// (the log says why, target `switchover::redis`). Resubscribe through the pool.
    ///
    /// # Errors
    ///
    /// As [`dedicated`](Self::dedicated), or the node's error when the connection fails.
    pub async fn pubsub(&self, target: Target) -> Result<redis::aio::PubSub, Error> {
        let node = self.node_for(target).await?;
        let limit = self.inner().topology.settings.timeouts.exchange();
        let backend = &self.inner().topology.backend;
        tokio::time::timeout(limit, backend.pubsub(&node.client, node.down_cut()))
            .await
            .map_err(|_| Error::timeout(limit))?
            .map_err(|e| Error::node(&node.name, e))
    }

    /// Stops the background tasks (discovery, Sentinel subscriptions). Commands still run on
    /// the nodes as last discovered, but discovery no longer runs at all, not even through
    /// [`rediscover`](Self::rediscover): after a failover, writes fail (no primary confirmed)
    /// instead of following it.
    pub fn close(&self) {
        self.inner().closed.store(true, Relaxed);
        self.inner().rediscovery.close();
    }

    async fn node_for(&self, target: Target) -> Result<NodeRef<RedisIo>, Error> {
        match target {
            Target::Primary => self.inner().primary_node().await,
            Target::Replica => self.inner().read_node().await,
        }
    }

    /// A blocking command (`BLPOP`, `XREAD BLOCK`, `WAIT`, ...) on a dedicated connection, with
    /// its block time added to the response timeout (`None`: it may block for ever).
    async fn blocking(&self, cmd: &Cmd, read: bool, block: Option<Duration>) -> RedisResult<Value> {
        let target = if read {
            Target::Replica
        } else {
            Target::Primary
        };
        let mut conn = self.dedicated(target).await?.blocking(block);
        let r = conn.req_packed_command(cmd).await;
        if r.is_ok()
            && !read
            && let Some(s) = &self.pool.session
        {
            s.mark_write();
        }
        r
    }

    /// A pipeline with a blocking command (`WAIT` after its writes, `BLPOP`, ...) on a
    /// dedicated connection of the primary, so it never stalls the shared connection and its
    /// `WAIT` counts the pipeline's own writes.
    async fn blocking_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
        block: Option<Duration>,
    ) -> RedisResult<Vec<Value>> {
        let mut conn = self.dedicated(Target::Primary).await?.blocking(block);
        let r = conn.req_packed_commands(pipeline, offset, count).await;
        if r.is_ok()
            && let Some(s) = &self.pool.session
        {
            s.mark_write();
        }
        r
    }
}

fn select_refused() -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        "SELECT is not supported on a split pool",
        "set the database with SplitPoolBuilder::db, or use a dedicated connection".to_owned(),
    ))
}

/// Why a command was refused on the shared pool, as the caller's error.
fn refused(route: Route) -> RedisError {
    match route {
        Route::Transaction => RedisError::from((
            ErrorKind::Client,
            "MULTI, EXEC, DISCARD, WATCH and UNWATCH are not supported as separate commands on a split pool (alone or in a non-atomic pipeline)",
            "on a shared connection other callers' commands would join the transaction: use an atomic pipeline (redis::pipe().atomic()), or SplitPool::dedicated(Target::Primary) for WATCH".to_owned(),
        )),
        Route::Wait => RedisError::from((
            ErrorKind::Client,
            "WAIT and WAITAOF are not supported as separate commands on a split pool",
            "they count the acknowledgements of their own connection's writes: send the writes and the WAIT in one pipeline (it runs on a dedicated connection), or use SplitPool::dedicated(Target::Primary)".to_owned(),
        )),
        _ => select_refused(),
    }
}

/// Boxes the future `make` builds, allocating first, so that the optimiser builds the future in
/// its box: `Box::pin(fut)` builds it on the stack and copies all of it (kilobytes of state, of
/// which only a few words are set before the first poll; callgrind: ~270 instructions per
/// command).
#[inline(always)]
fn boxed<'a, T, F>(make: impl FnOnce() -> F) -> RedisFuture<'a, T>
where
    F: Future<Output = RedisResult<T>> + Send + 'a,
{
    let fut: Box<F> = Box::write(Box::new_uninit(), make());
    Box::into_pin(fut)
}

impl ConnectionLike for SplitPool {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        // Routed before boxing, and each kind boxed on its own: a command's box holds only the
        // runner's future, not a dedicated connection's state (kilobytes) too.
        match route_single(cmd) {
            r @ (Route::Select | Route::Transaction | Route::Wait) => {
                Box::pin(std::future::ready(Err(refused(r))))
            }
            Route::Blocking { read, block } => boxed(|| self.blocking(cmd, read, block)),
            route => boxed(|| self.pool.command(route, cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match route_pipeline(pipeline) {
            r @ (Route::Select | Route::Transaction) => {
                Box::pin(std::future::ready(Err(refused(r))))
            }
            Route::Blocking { block, .. } => {
                boxed(|| self.blocking_pipeline(pipeline, offset, count, block))
            }
            route => boxed(|| self.pool.pipeline(route, pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        self.inner().topology.settings.db
    }
}

//! The pool: routing, retries, discovery and failover.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::classify::is_readonly;
use super::command::{Route, route_cmd, route_pipeline};
use super::config::{NodeAddr, Settings, Source};
use super::discovery::{
    RoleReply, choose_primary, parse_master_addr, parse_role, parse_sentinel_replicas,
    parse_switch_master,
};
use super::error::Error;
use super::node::{Node, NodeId, NodeRef, ROLE_PRIMARY, ROLE_REPLICA, ROLE_UNKNOWN, client_for};
use crate::error::{Classification, Classify};
use crate::health::{HealthTracker, ProbeResult, Role};
use crate::retry::RetryPolicy;
use crate::route::{ReadPolicy, Router};

/// Which node a dedicated connection or a pub/sub connection goes to.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The current primary.
    Primary,
    /// A replica chosen by the read policy (the primary when the policy falls back to it).
    Replica,
}

/// What discovery publishes after each run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DiscoveryState {
    /// Runs finished.
    done: u64,
    /// A node confirmed the `master` role in the last run.
    confirmed: bool,
}

pub(crate) struct Inner {
    pub(crate) settings: Settings,
    retry: RetryPolicy,
    /// The policy for the attempts after the first (which runs outside the executor): one
    /// attempt fewer than `retry`; `None` when `retry` allows a single attempt.
    retry_rest: Option<RetryPolicy>,
    read_policy: Box<dyn ReadPolicy<NodeId>>,
    tracker: HealthTracker<NodeId>,
    router: Router<NodeId>,
    nodes: RwLock<Vec<NodeRef>>,
    /// The primary is in doubt (an error from it, a `READONLY`): writes wait for discovery.
    suspect: AtomicBool,
    trigger: Notify,
    runs_started: AtomicU64,
    state: watch::Sender<DiscoveryState>,
    /// The sentinels' latest word on the primary.
    sentinel_hint: RwLock<Option<NodeAddr>>,
    switches: AtomicU64,
    /// The node discovery last confirmed as primary (`u64::MAX`: none yet).
    last_primary: AtomicU64,
    closed: AtomicBool,
    shutdown: Notify,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitPool")
            .field(
                "nodes",
                &*self.nodes.read().unwrap_or_else(|e| e.into_inner()),
            )
            .field("primary", self.router.active().id())
            .field("generation", &self.router.generation())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
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
    inner: Arc<Inner>,
    idempotent: bool,
    session: Option<Arc<Session>>,
}

impl fmt::Debug for SplitPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

/// Read-your-writes state of one session handle.
#[derive(Debug)]
struct Session {
    window: Duration,
    started: Instant,
    /// Nanoseconds after `started` of the last write, plus one (0: none yet).
    last_write: AtomicU64,
}

impl Session {
    fn mark_write(&self) {
        let n = Instant::now()
            .saturating_duration_since(self.started)
            .as_nanos() as u64;
        self.last_write.store(n.saturating_add(1), Relaxed);
    }

    fn in_window(&self) -> bool {
        let last = self.last_write.load(Relaxed);
        if last == 0 {
            return false;
        }
        let now = Instant::now()
            .saturating_duration_since(self.started)
            .as_nanos() as u64;
        // A window beyond u64 nanoseconds (585 years) is "forever", not truncated to a few.
        let window = u64::try_from(self.window.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_sub(last - 1) < window
    }
}

/// An attempt's failure, with whether the request reached the server.
struct AttemptError {
    err: RedisError,
    sent: bool,
    /// Part of the request ran although the error says it did not (a pipeline whose writes
    /// were refused with `READONLY` after other commands with effects had run).
    partly_ran: bool,
}

impl AttemptError {
    fn not_sent(err: impl Into<RedisError>) -> Self {
        AttemptError {
            err: err.into(),
            sent: false,
            partly_ran: false,
        }
    }
}

/// A reply that may carry a server error the pool should act on.
trait Reply {
    /// The first error reply that means "retry elsewhere or later" (`READONLY`, `LOADING`,
    /// `MASTERDOWN`, `BUSY`, ...), as an error.
    fn failover_error(&self) -> Option<RedisError>;

    /// `true` when a command that is not a read ran (answered without an error): repeating
    /// the request would run it again.
    fn ran_a_non_read(&self) -> bool {
        false
    }
}

impl Reply for Value {
    fn failover_error(&self) -> Option<RedisError> {
        match self {
            Value::ServerError(e) => {
                let err = RedisError::from(e.clone());
                let c = err.classify();
                (c.class().is_retryable() && c.execution() == crate::error::Execution::NotExecuted)
                    .then_some(err)
            }
            // Inside an array (a script's result, an `EXEC` reply) only `READONLY` counts.
            Value::Array(items) => items.iter().find_map(readonly_value),
            _ => None,
        }
    }
}

fn readonly_value(v: &Value) -> Option<RedisError> {
    match v {
        Value::ServerError(e) => {
            let err = RedisError::from(e.clone());
            is_readonly(&err).then_some(err)
        }
        _ => None,
    }
}

/// The replies to a pipeline, with the pipeline they answer.
struct PipelineReply<'a> {
    values: Vec<Value>,
    pipeline: &'a Pipeline,
    offset: usize,
}

impl Reply for PipelineReply<'_> {
    fn failover_error(&self) -> Option<RedisError> {
        // A pipeline sent to a demoted primary: its writes were refused (its reads ran, and
        // are harmless to repeat).
        self.values.iter().find_map(readonly_value)
    }

    fn ran_a_non_read(&self) -> bool {
        // Reply `i` answers command `offset + i` (a transaction's single `EXEC` reply answers
        // no command here: it ran all or nothing).
        self.values
            .iter()
            .zip(self.pipeline.cmd_iter().skip(self.offset))
            .any(|(v, cmd)| !matches!(v, Value::ServerError(_)) && route_cmd(cmd) != Route::Read)
    }
}

fn classify_attempt(e: &AttemptError) -> Classification {
    if e.partly_ran {
        // Retried only when the caller declared the request idempotent.
        return Classification::transient();
    }
    let c = e.err.classify();
    if e.sent { c } else { c.not_executed() }
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

impl SplitPool {
    pub(crate) async fn start(
        settings: Settings,
        retry: RetryPolicy,
        read_policy: Box<dyn ReadPolicy<NodeId>>,
        tracker: HealthTracker<NodeId>,
        initial: Vec<NodeAddr>,
    ) -> Result<Self, Error> {
        if initial.is_empty() {
            return Err(Error::NoPrimary("no node to start from".into()));
        }
        let ids: Vec<NodeId> = initial
            .iter()
            .enumerate()
            .map(|(i, a)| NodeId {
                index: i as u32,
                name: a.to_string().into(),
            })
            .collect();
        // Equal priorities and manual failback: between Redis nodes the role decides, never a
        // preference order.
        let mut b = Router::builder(&tracker).failback(crate::route::Failback::Manual);
        for id in &ids {
            b = b.endpoint(id.clone(), 0);
        }
        let router = b.build()?;
        let mut nodes = Vec::with_capacity(initial.len());
        for (addr, id) in initial.into_iter().zip(&ids) {
            let ep = tracker
                .endpoint(id)
                .ok_or_else(|| Error::NoPrimary("endpoint missing from the tracker".into()))?;
            nodes.push(Arc::new(Node::new(id.index as u64, addr, &settings, ep)?));
        }
        let (state, _) = watch::channel(DiscoveryState::default());
        let retry_rest = match retry.max_attempts() {
            0 | 1 => None,
            n => Some(retry.to_builder().max_attempts(n - 1).build()?),
        };
        let inner = Arc::new(Inner {
            settings,
            retry,
            retry_rest,
            read_policy,
            tracker,
            router,
            nodes: RwLock::new(nodes),
            suspect: AtomicBool::new(true),
            trigger: Notify::new(),
            runs_started: AtomicU64::new(0),
            state,
            sentinel_hint: RwLock::new(None),
            switches: AtomicU64::new(0),
            last_primary: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            shutdown: Notify::new(),
        });
        // First discovery before handing out the pool.
        inner.runs_started.fetch_add(1, Relaxed);
        inner.discover().await;
        let confirmed = inner.state.borrow().confirmed;
        if !confirmed {
            let nodes: Vec<String> = inner.nodes().iter().map(|n| n.name.clone()).collect();
            return Err(Error::NoPrimary(format!(
                "no node of {} reported the master role",
                nodes.join(", ")
            )));
        }
        tokio::spawn(discovery_loop(Arc::downgrade(&inner)));
        if let Source::Sentinel { sentinels, master } = &inner.settings.source {
            for s in sentinels {
                tokio::spawn(sentinel_listener(
                    Arc::downgrade(&inner),
                    s.clone(),
                    master.clone(),
                ));
            }
        }
        Ok(SplitPool {
            inner,
            idempotent: false,
            session: None,
        })
    }

    /// A handle whose writes are declared idempotent (default: not): a write that timed out or
    /// lost its connection after being sent is retried too. Reads are always treated as
    /// idempotent; writes refused before running (`READONLY`, connection refused) are always
    /// retried.
    #[must_use]
    pub fn idempotent(&self) -> SplitPool {
        SplitPool {
            idempotent: true,
            ..self.clone()
        }
    }

    /// A read-your-writes session: after a write through the returned handle, its reads go to
    /// the primary for `window`; then back to replicas. Other handles are not affected. The
    /// window should exceed the replication lag you tolerate (100 ms to 1 s is usual).
    #[must_use]
    pub fn read_your_writes(&self, window: Duration) -> SplitPool {
        SplitPool {
            session: Some(Arc::new(Session {
                window,
                started: Instant::now(),
                last_write: AtomicU64::new(0),
            })),
            ..self.clone()
        }
    }

    /// The router (active primary, generation, events). Subscribe to its
    /// [`RouteEvent`](crate::route::RouteEvent)s to see switches.
    pub fn router(&self) -> &Router<NodeId> {
        &self.inner.router
    }

    /// The health tracker of the nodes.
    pub fn tracker(&self) -> &HealthTracker<NodeId> {
        &self.inner.tracker
    }

    /// `host:port` of the current primary.
    pub fn primary_addr(&self) -> String {
        self.inner.router.active().id().name().to_owned()
    }

    /// `host:port` of the replicas currently serving reads.
    pub fn replica_addrs(&self) -> Vec<String> {
        self.inner
            .usable_replicas()
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Counters: generation, switches, discoveries, usable replicas.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            generation: self.inner.router.generation(),
            switches: self.inner.switches.load(Relaxed),
            discoveries: self.inner.state.borrow().done,
            usable_replicas: self.inner.usable_replicas().len(),
        }
    }

    /// Runs discovery now (ask every node `ROLE`, and the sentinels) and waits for it, up to
    /// the response timeout plus the connect timeout. Concurrent requests share one run.
    pub async fn rediscover(&self) {
        self.inner.rediscover_and_wait().await;
    }

    /// A connection of its own to the primary or a replica, for `MULTI`/`WATCH` transactions,
    /// blocking commands, or anything that needs a connection to itself. From the node's pool
    /// (deadpool-redis); each command has the response timeout. It fails with
    /// [`Error::Stale`] once its node has changed role (drop it and get a new one), and is
    /// discarded rather than reused when that happens.
    ///
    /// # Errors
    ///
    /// [`Error::NoPrimary`] when no primary is confirmed, [`Error::Dedicated`] when the node's
    /// pool cannot hand out a connection.
    pub async fn dedicated(&self, target: Target) -> Result<DedicatedConnection, Error> {
        let node = match target {
            Target::Primary => self.inner.primary_node().await?,
            Target::Replica => self.inner.read_node(None).await?,
        };
        node_dedicated(&node, self.inner.settings.response_timeout).await
    }

    /// A pub/sub connection to the primary or a replica (messages published on the primary
    /// reach subscribers on replicas). It does not follow failovers: watch
    /// [`router`](Self::router) events and resubscribe.
    ///
    /// # Errors
    ///
    /// As [`dedicated`](Self::dedicated), or the node's error when the connection fails.
    pub async fn pubsub(&self, target: Target) -> Result<redis::aio::PubSub, Error> {
        let node = match target {
            Target::Primary => self.inner.primary_node().await?,
            Target::Replica => self.inner.read_node(None).await?,
        };
        let limit = self.inner.settings.connect_timeout + self.inner.settings.response_timeout;
        tokio::time::timeout(limit, node.client().get_async_pubsub())
            .await
            .map_err(|_| Error::Timeout(limit))?
            .map_err(|e| Error::node(&node.name, e))
    }

    /// Stops the background tasks (discovery, Sentinel subscriptions). Commands still run on
    /// the nodes as last discovered, but discovery no longer runs at all, not even through
    /// [`rediscover`](Self::rediscover): after a failover, writes fail (no primary confirmed)
    /// instead of following it.
    pub fn close(&self) {
        self.inner.closed.store(true, Relaxed);
        self.inner.shutdown.notify_waiters();
    }

    fn route_of(&self, route: Route) -> Route {
        match (&self.session, route) {
            (Some(s), Route::Read) if s.in_window() => Route::Write,
            _ => route,
        }
    }

    async fn run<T: Reply, F, Fut>(&self, route: Route, send: F) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &*self.inner;
        // What the command is decides retry safety and whether it opens a read-your-writes
        // window; where it runs may differ (a session's read inside its window goes to the
        // primary, and stays a read).
        let is_read = route == Route::Read;
        let route = self.route_of(route);
        let idempotent = self.idempotent || is_read;
        let avoid = AtomicU64::new(u64::MAX);
        // The first attempt runs outside the executor, so that the success path arms no
        // deadline timer (the attempt is bounded by the response timeout); a failure that may
        // be retried hands over to `retry_rest`, which allows one attempt fewer, so a command
        // makes at most `max_attempts` attempts. The deadline counts from that hand-over.
        // Measured: running every command through the executor (deadline timer armed on the
        // first attempt) cost 4–5 % of throughput in `benches/redis.rs` (87 % of raw against
        // 91 % in the same session, criterion and interleaved alike).
        let result = match inner.attempt(route, &avoid, &send).await {
            Ok(v) => {
                if let Some(budget) = &inner.settings.budget {
                    budget.deposit_success();
                }
                Ok(v)
            }
            Err(first) if !classify_attempt(&first).is_retry_safe(idempotent) => Err(first.err),
            Err(first) => match &inner.retry_rest {
                None => Err(first.err),
                Some(rest) => {
                    tracing::debug!(target: "switchover::redis", error = %first.err, "retrying");
                    // Boxed: keeps the executor's state out of the success path's future.
                    Box::pin(
                        self.retry_after_first(rest, route, idempotent, &avoid, &send, first.err),
                    )
                    .await
                }
            },
        };
        if result.is_ok()
            && !is_read
            && let Some(s) = &self.session
        {
            s.mark_write();
        }
        result
    }

    async fn retry_after_first<T: Reply, F, Fut>(
        &self,
        rest: &RetryPolicy,
        route: Route,
        idempotent: bool,
        avoid: &AtomicU64,
        send: &F,
        first: RedisError,
    ) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = &*self.inner;
        // A retry after the first failure is paid from the budget like every later one.
        if let Some(budget) = &inner.settings.budget
            && !budget.withdraw_retry(false)
        {
            return Err(first);
        }
        let mut call = rest
            .retry(|| inner.attempt(route, avoid, send))
            .idempotent(idempotent)
            .classify_with(classify_attempt);
        if let Some(budget) = &inner.settings.budget {
            call = call.budget(budget);
        }
        let result = call.run().await;
        result.map_err(|e| {
            tracing::debug!(target: "switchover::redis", reason = %e, "command failed");
            let timed_out = e.timed_out();
            match e.into_last_error() {
                Some(a) => a.err,
                None if timed_out => {
                    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                }
                None => first,
            }
        })
    }

    async fn run_blocking<T, F, Fut>(
        &self,
        read: bool,
        block: Option<Duration>,
        send: F,
    ) -> RedisResult<T>
    where
        F: FnOnce(DedicatedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let target = if read {
            Target::Replica
        } else {
            Target::Primary
        };
        let mut conn = self.dedicated(target).await?;
        conn.extra = block;
        if block.is_none() {
            conn.unbounded = true;
        }
        let r = send(conn).await;
        if r.is_ok()
            && !read
            && let Some(s) = &self.session
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

impl ConnectionLike for SplitPool {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match route_cmd(cmd) {
                Route::Select => Err(select_refused()),
                Route::Blocking { read, block } => {
                    self.run_blocking(read, block, |mut c| async move {
                        c.req_packed_command(cmd).await
                    })
                    .await
                }
                route => {
                    self.run(
                        route,
                        |mut c| async move { c.send_packed_command(cmd).await },
                    )
                    .await
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match route_pipeline(pipeline) {
                Route::Select => Err(select_refused()),
                route => self
                    .run(route, |mut c| async move {
                        let values = c.send_packed_commands(pipeline, offset, count).await?;
                        Ok(PipelineReply {
                            values,
                            pipeline,
                            offset,
                        })
                    })
                    .await
                    .map(|r| r.values),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.settings.db
    }
}

impl Inner {
    fn nodes(&self) -> Vec<NodeRef> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    #[inline]
    fn node(&self, id: &NodeId) -> Option<NodeRef> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id.index as usize)
            .cloned()
    }

    fn usable_replicas(&self) -> Vec<NodeRef> {
        self.nodes()
            .into_iter()
            .filter(|n| {
                n.role.load(Relaxed) == ROLE_REPLICA
                    && n.endpoint.is_available()
                    && n.link_up.load(Relaxed)
            })
            .collect()
    }

    /// The confirmed primary; waits for discovery when it is in doubt.
    #[inline]
    async fn primary_node(&self) -> Result<NodeRef, Error> {
        if !self.suspect.load(Relaxed) {
            let active = self.router.active();
            if active.endpoint().role() == Role::Primary
                && let Some(n) = self.node(active.id())
                && n.role.load(Relaxed) == ROLE_PRIMARY
            {
                return Ok(n);
            }
        }
        self.wait_for_primary().await
    }

    async fn wait_for_primary(&self) -> Result<NodeRef, Error> {
        let limit = self.settings.response_timeout + self.settings.connect_timeout;
        let mut rx = self.state.subscribe();
        let want = self.runs_started.load(Relaxed) + 1;
        self.trigger.notify_one();
        let _ = tokio::time::timeout(
            limit,
            rx.wait_for(|s| s.done >= want && (s.confirmed || !self.suspect.load(Relaxed))),
        )
        .await;
        if self.suspect.load(Relaxed) {
            return Err(Error::NoPrimary(format!(
                "no node confirmed the master role within {limit:?}"
            )));
        }
        let active = self.router.active();
        let node = self
            .node(active.id())
            .ok_or_else(|| Error::NoPrimary("the active node is unknown".into()))?;
        // Only a node discovery confirmed as primary takes writes (the router may still point
        // at the old one if the switch could not be made).
        if node.role.load(Relaxed) != ROLE_PRIMARY || active.endpoint().role() != Role::Primary {
            return Err(Error::NoPrimary(format!(
                "the active node {} is not the confirmed primary",
                node.name
            )));
        }
        Ok(node)
    }

    async fn rediscover_and_wait(&self) {
        let limit = self.settings.response_timeout + self.settings.connect_timeout;
        let mut rx = self.state.subscribe();
        let want = self.runs_started.load(Relaxed) + 1;
        self.trigger.notify_one();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| s.done >= want)).await;
    }

    /// The node for a read, avoiding `avoid` when there is another choice.
    #[inline]
    async fn read_node(&self, avoid: Option<u64>) -> Result<NodeRef, Error> {
        let target = self.router.read_target(&*self.read_policy);
        let Some(ep) = target else {
            return Err(Error::NoPrimary("no replica available for a read".into()));
        };
        if ep.role() == Role::Primary {
            // No usable replica: the policy fell back to the primary.
            if !self.suspect.load(Relaxed)
                && let Some(n) = self.node(ep.id())
            {
                return Ok(n);
            }
            return self.primary_node().await;
        }
        let node = self
            .node(ep.id())
            .ok_or_else(|| Error::NoPrimary("the read target is unknown".into()))?;
        if avoid == Some(node.id) {
            // The last attempt failed there: take the next choice, or the primary.
            if let Some(other) = self.router.read_target(&*self.read_policy)
                && !other.ptr_eq(&node.endpoint)
                && other.role() != Role::Primary
                && let Some(n) = self.node(other.id())
            {
                return Ok(n);
            }
            return self.primary_node().await;
        }
        Ok(node)
    }

    async fn attempt<T: Reply, F, Fut>(
        &self,
        route: Route,
        avoid: &AtomicU64,
        send: &F,
    ) -> Result<T, AttemptError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let node = match route {
            Route::Read => {
                let a = avoid.load(Relaxed);
                self.read_node((a != u64::MAX).then_some(a)).await
            }
            _ => self.primary_node().await,
        }
        .map_err(AttemptError::not_sent)?;
        let (conn_id, conn) = match node.connection().await {
            Ok(c) => c,
            Err(e) => {
                node.endpoint.record_failure(e.classify().not_executed());
                self.after_failure(&node, None, &e);
                avoid.store(node.id, Relaxed);
                return Err(AttemptError::not_sent(e));
            }
        };
        // redis-rs hands error replies back as values (`Value::ServerError`): the ones that say
        // "not here, not now" become errors so that they are retried.
        let mut partly_ran = false;
        let outcome = match send(conn).await {
            Ok(v) => match v.failover_error() {
                Some(e) => {
                    partly_ran = v.ran_a_non_read();
                    Err(e)
                }
                None => Ok(v),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(v) => {
                node.endpoint.record_success();
                Ok(v)
            }
            Err(e) => {
                let readonly = is_readonly(&e);
                if !readonly {
                    node.endpoint.record_failure(e.classify());
                }
                self.after_failure(&node, Some(conn_id), &e);
                avoid.store(node.id, Relaxed);
                Err(AttemptError {
                    err: e,
                    sent: true,
                    partly_ran,
                })
            }
        }
    }

    /// Drops broken connections and calls for discovery when the primary is in doubt.
    fn after_failure(&self, node: &Node, conn_id: Option<u64>, e: &RedisError) {
        if (e.kind() == ErrorKind::Io || e.is_timeout() || e.is_connection_dropped())
            && let Some(id) = conn_id
        {
            node.drop_connection(id);
        }
        let readonly = is_readonly(e);
        let is_primary = node.role.load(Relaxed) == ROLE_PRIMARY;
        if readonly || (is_primary && e.classify().counts_against_endpoint()) {
            if !self.suspect.swap(true, Relaxed) {
                tracing::info!(
                    target: "switchover::redis",
                    node = %node.name,
                    readonly,
                    error = %e,
                    "primary in doubt; rediscovering"
                );
            }
            self.trigger.notify_one();
        }
    }

    async fn role_of(&self, node: &Node) -> Result<(RoleReply, Duration), Error> {
        let started = Instant::now();
        let limit = self.settings.connect_timeout + self.settings.response_timeout;
        let r = tokio::time::timeout(limit, async {
            let (id, mut c) = node
                .connection()
                .await
                .map_err(|e| Error::node(&node.name, e))?;
            match redis::cmd("ROLE").query_async::<Value>(&mut c).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    node.drop_connection(id);
                    Err(Error::node(&node.name, e))
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout(limit))??;
        let reply =
            parse_role(&r).ok_or_else(|| Error::protocol(&node.name, "not a ROLE reply"))?;
        Ok((reply, started.elapsed()))
    }

    async fn ask_sentinels(
        &self,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> Option<(NodeAddr, Vec<super::discovery::SentinelReplica>)> {
        let limit = self.settings.connect_timeout + self.settings.response_timeout;
        let s = &self.settings;
        let asks = sentinels.iter().map(|addr| async move {
            let client = client_for(addr, s.sentinel_username.as_ref(), s.sentinel_password.as_ref(), 0).ok()?;
            let r = tokio::time::timeout(limit, async {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(s.connect_timeout))
                    .set_response_timeout(Some(s.response_timeout));
                let mut c = client.get_multiplexed_async_connection_with_config(&config).await?;
                let m: Value = redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(master).query_async(&mut c).await?;
                let r: Value = redis::cmd("SENTINEL").arg("REPLICAS").arg(master).query_async(&mut c).await?;
                Ok::<_, RedisError>((m, r))
            })
            .await;
            match r {
                Ok(Ok((m, r))) => {
                    let primary = parse_master_addr(&m)??;
                    let replicas = parse_sentinel_replicas(&r).unwrap_or_default();
                    Some((primary, replicas))
                }
                Ok(Err(e)) => {
                    tracing::debug!(target: "switchover::redis", sentinel = %addr, error = %e, "sentinel query failed");
                    None
                }
                Err(_) => None,
            }
        });
        let answers: Vec<_> = join_all(asks).await.into_iter().flatten().collect();
        // The majority's answer (ties: the first sentinel's).
        let mut best: Option<(usize, &(NodeAddr, Vec<_>))> = None;
        for a in &answers {
            let votes = answers.iter().filter(|b| b.0 == a.0).count();
            if best.is_none_or(|(v, _)| votes > v) {
                best = Some((votes, a));
            }
        }
        best.map(|(_, a)| a.clone())
    }

    fn add_node(&self, addr: NodeAddr) -> Option<NodeRef> {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = nodes.iter().find(|n| n.addr == addr) {
            return Some(n.clone());
        }
        let id = NodeId {
            index: nodes.len() as u32,
            name: addr.to_string().into(),
        };
        let ep = self.router.add_endpoint(id.clone(), 0).ok()?;
        let node = Arc::new(Node::new(id.index as u64, addr, &self.settings, ep).ok()?);
        tracing::info!(target: "switchover::redis", node = %node.name, "node discovered");
        nodes.push(node.clone());
        Some(node)
    }

    /// One discovery run: Sentinel (if configured), then `ROLE` on every known node; applies the
    /// result and publishes it.
    async fn discover(&self) {
        let mut preferred = None;
        if let Source::Sentinel { sentinels, master } = &self.settings.source {
            if let Some((primary, replicas)) = self.ask_sentinels(sentinels, master).await {
                self.add_node(primary.clone());
                for r in replicas.iter().filter(|r| r.healthy) {
                    self.add_node(r.addr.clone());
                }
                preferred = Some(primary);
            }
            let hint = self
                .sentinel_hint
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(h) = hint {
                self.add_node(h.clone());
                preferred = Some(h);
            }
        }
        let nodes = self.nodes();
        let answers = join_all(nodes.iter().map(|n| self.role_of(n))).await;
        let mut claims = Vec::new();
        for (node, answer) in nodes.iter().zip(&answers) {
            match answer {
                Ok((RoleReply::Primary { offset, .. }, latency)) => {
                    let followers = answers
                        .iter()
                        .filter(|a| matches!(a, Ok((RoleReply::Replica { master: Some(m), link_up: true, .. }, _)) if same_node(m, &node.addr)))
                        .count();
                    claims.push((node.addr.clone(), *offset, followers));
                    node.endpoint.record_probe(
                        ProbeResult::up()
                            .with_role(Role::Primary)
                            .with_latency(*latency),
                    );
                }
                Ok((RoleReply::Replica { .. }, latency)) => {
                    node.endpoint.record_probe(
                        ProbeResult::up()
                            .with_role(Role::Replica)
                            .with_latency(*latency),
                    );
                }
                Ok((RoleReply::Sentinel, _)) => {
                    node.endpoint.record_probe(ProbeResult::down());
                }
                Err(e) => {
                    tracing::debug!(target: "switchover::redis", node = %node.name, error = %e, "ROLE failed");
                    node.endpoint.record_probe(ProbeResult::down());
                }
            }
        }
        let active = self.router.active();
        let current = self.node(active.id()).map(|n| n.addr.clone());
        let chosen = choose_primary(&claims, preferred.as_ref(), current.as_ref());
        let mut confirmed = chosen.is_some();
        if let Some(primary_addr) = chosen {
            let (primary_offset, _) = nodes
                .iter()
                .zip(&answers)
                .find_map(|(n, a)| match a {
                    Ok((RoleReply::Primary { offset, .. }, _)) if n.addr == primary_addr => {
                        Some((*offset, ()))
                    }
                    _ => None,
                })
                .unwrap_or((0, ()));
            // Roles and replica usability.
            for (node, answer) in nodes.iter().zip(&answers) {
                let (role, usable, lag) = match answer {
                    Ok((RoleReply::Primary { .. }, _)) if node.addr == primary_addr => {
                        (ROLE_PRIMARY, false, 0)
                    }
                    // Another self-declared primary (split brain, a restarted old primary):
                    // neither written to nor read from.
                    Ok((RoleReply::Primary { .. }, _)) => (ROLE_UNKNOWN, false, 0),
                    Ok((
                        RoleReply::Replica {
                            master,
                            link_up,
                            offset,
                        },
                        _,
                    )) => {
                        let follows = master.as_ref().is_some_and(|m| same_node(m, &primary_addr));
                        let lag = replica_lag(primary_offset, *offset);
                        let within = self.settings.max_replica_lag.is_none_or(|max| lag <= max);
                        (ROLE_REPLICA, follows && *link_up && within, lag)
                    }
                    _ => (node.role.load(Relaxed), false, 0),
                };
                node.lag.store(lag, Relaxed);
                let was_usable = node.link_up.swap(usable, Relaxed);
                if role == ROLE_REPLICA && was_usable && !usable {
                    tracing::info!(target: "switchover::redis", node = %node.name, lag, "replica not usable for reads (link down, lagging or following another primary)");
                }
                // A replica unfit for reads (link down, lagging, following another node) is
                // drained in the tracker, so the read policy skips it; it is cleared when it is
                // fit again. A drain the pool did not make is left alone.
                let unfit = role != ROLE_PRIMARY && !usable;
                if unfit && node.endpoint.state() == crate::health::HealthState::Up {
                    node.endpoint.drain();
                    node.drained_by_pool.store(true, Relaxed);
                } else if !unfit
                    && node.drained_by_pool.swap(false, Relaxed)
                    && node.endpoint.state() == crate::health::HealthState::Draining
                {
                    node.endpoint.clear();
                }
                if node.set_role(role) {
                    tracing::info!(target: "switchover::redis", node = %node.name, role = role_name(role), "node role changed");
                    node.drop_all_connections();
                }
                let ep_role = match role {
                    ROLE_PRIMARY => Role::Primary,
                    ROLE_REPLICA => Role::Replica,
                    // Never a primary candidate for the router unless discovery says so.
                    _ => Role::Replica,
                };
                node.endpoint.set_role(ep_role);
            }
            let switched = nodes
                .iter()
                .find(|n| n.addr == primary_addr)
                .is_some_and(|primary| self.switch_primary(primary));
            // A primary the router could not switch to is not confirmed: writes keep waiting
            // and discovery keeps running at the short interval.
            confirmed = switched;
            if switched && self.suspect.swap(false, Relaxed) {
                tracing::info!(target: "switchover::redis", primary = %primary_addr, "primary confirmed");
            }
        }
        self.state.send_modify(|s| {
            s.done += 1;
            s.confirmed = confirmed;
        });
    }

    /// Makes `primary` the router's active node; `false` when the router refused.
    fn switch_primary(&self, primary: &Node) -> bool {
        let previous = self.last_primary.load(Relaxed);
        let active = self.router.active();
        let from = active.id().clone();
        if !active.endpoint().ptr_eq(&primary.endpoint) || active.is_all_down() {
            if !primary.endpoint.is_available() && !primary.endpoint.readmit() {
                // It answered ROLE as master just now: let it take writes. `readmit` ends an
                // ejection; a manual override is lifted too, as discovery always did.
                primary.endpoint.clear();
            }
            if let Err(e) = self.router.switch_to(&self.node_id(primary)) {
                tracing::warn!(target: "switchover::redis", to = %primary.name, error = %e, "could not switch the router");
                return false;
            }
        }
        self.last_primary.store(primary.id, Relaxed);
        if previous != primary.id && previous != u64::MAX {
            self.switches.fetch_add(1, Relaxed);
            tracing::warn!(
                target: "switchover::redis",
                from = %from,
                to = %primary.name,
                generation = self.router.generation(),
                "switched primary"
            );
        }
        true
    }

    fn node_id(&self, node: &Node) -> NodeId {
        NodeId {
            index: node.id as u32,
            name: node.name.as_str().into(),
        }
    }
}

/// Bytes a replica at `offset` is behind a primary at `primary_offset` (0 when ahead). The
/// offsets come from the servers: any pair, however odd, gives a number, never an overflow.
fn replica_lag(primary_offset: i64, offset: i64) -> u64 {
    u64::try_from(primary_offset.saturating_sub(offset)).unwrap_or(0)
}

fn role_name(role: u8) -> &'static str {
    match role {
        ROLE_PRIMARY => "primary",
        ROLE_REPLICA => "replica",
        _ => "unknown",
    }
}

/// Two addresses of the same node (host names compared without case; `localhost` and the
/// loopback address count as one).
fn same_node(a: &NodeAddr, b: &NodeAddr) -> bool {
    fn canon(h: &str) -> String {
        let h = h.to_ascii_lowercase();
        if h == "localhost" || h == "::1" {
            "127.0.0.1".to_owned()
        } else {
            h
        }
    }
    a.port() == b.port() && canon(a.host()) == canon(b.host())
}

async fn discovery_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Relaxed) {
            return;
        }
        let period = if inner.suspect.load(Relaxed) {
            inner.settings.rediscovery_interval
        } else {
            inner.settings.discovery_interval
        };
        {
            let shutdown = inner.shutdown.notified();
            tokio::select! {
                _ = inner.trigger.notified() => {}
                _ = tokio::time::sleep(period) => {}
                _ = shutdown => return,
            }
        }
        inner.runs_started.fetch_add(1, Relaxed);
        inner.discover().await;
        // Coalesce bursts of triggers: at most one run per rediscovery interval (triggers
        // that arrive meanwhile are kept by the `Notify` and served by the next run).
        let gap = inner.settings.rediscovery_interval;
        drop(inner);
        tokio::time::sleep(gap).await;
    }
}

async fn sentinel_listener(weak: Weak<Inner>, sentinel: NodeAddr, master: String) {
    let mut failures = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Relaxed) {
            return;
        }
        let s = &inner.settings;
        let client = match client_for(
            &sentinel,
            s.sentinel_username.as_ref(),
            s.sentinel_password.as_ref(),
            0,
        ) {
            Ok(c) => c,
            Err(_) => return,
        };
        let limit = s.connect_timeout + s.response_timeout;
        let backoff = *inner.retry.backoff();
        drop(inner);
        let pubsub = tokio::time::timeout(limit, async {
            let mut p = client.get_async_pubsub().await?;
            p.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(p)
        })
        .await;
        match pubsub {
            Ok(Ok(mut p)) => {
                failures = 0;
                tracing::debug!(target: "switchover::redis", sentinel = %sentinel, "subscribed to +switch-master");
                let mut messages = p.on_message();
                loop {
                    if weak.upgrade().is_none_or(|i| i.closed.load(Relaxed)) {
                        return;
                    }
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        // Re-check the pool is alive now and then.
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    };
                    let Some(msg) = msg else { break };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(new) = parse_switch_master(&payload, &master) {
                        let Some(inner) = weak.upgrade() else { return };
                        tracing::warn!(target: "switchover::redis", sentinel = %sentinel, primary = %new, "sentinel announced +switch-master");
                        *inner
                            .sentinel_hint
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = Some(new);
                        inner.suspect.store(true, Relaxed);
                        inner.trigger.notify_one();
                    }
                }
            }
            _ => failures = failures.saturating_add(1),
        }
        // Reconnect with the executor's backoff (jittered).
        let delay = {
            use crate::retry::Backoff;
            backoff
                .schedule()
                .nth(failures.min(20) as usize)
                .unwrap_or(Duration::from_secs(1))
        };
        tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
    }
}

async fn node_dedicated(node: &NodeRef, timeout: Duration) -> Result<DedicatedConnection, Error> {
    let epoch = node.role_epoch.load(Relaxed);
    let conn = node.dedicated_pool().get().await.map_err(|e| {
        let (reason, source) = match e {
            deadpool_redis::PoolError::Backend(e) => ("connection failed".to_owned(), Some(e)),
            other => (other.to_string(), None),
        };
        Error::Dedicated {
            node: node.name.clone(),
            reason,
            source,
        }
    })?;
    Ok(DedicatedConnection {
        conn: Some(conn),
        node: node.clone(),
        epoch,
        timeout,
        extra: None,
        unbounded: false,
    })
}

/// A connection of its own to one node, from the node's pool: for transactions (`WATCH`,
/// `MULTI`/`EXEC`), blocking commands and anything that must not share a connection. Made by
/// [`SplitPool::dedicated`].
///
/// Each command has the pool's response timeout. Once the node has changed role since the
/// connection was handed out, every command fails with [`Error::Stale`] (surely not executed)
/// and the connection is discarded instead of going back to the pool.
pub struct DedicatedConnection {
    conn: Option<deadpool_redis::Connection>,
    node: NodeRef,
    epoch: u64,
    timeout: Duration,
    extra: Option<Duration>,
    unbounded: bool,
}

impl fmt::Debug for DedicatedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedicatedConnection")
            .field("node", &self.node.name)
            .field("stale", &self.is_stale())
            .finish_non_exhaustive()
    }
}

impl DedicatedConnection {
    /// `host:port` of the node.
    pub fn node(&self) -> &str {
        &self.node.name
    }

    /// `true` once the node has changed role since this connection was handed out.
    pub fn is_stale(&self) -> bool {
        self.node.role_epoch.load(Relaxed) != self.epoch
    }

    fn check(&mut self) -> RedisResult<&mut deadpool_redis::Connection> {
        if self.is_stale() {
            if let Some(c) = self.conn.take() {
                // Taken out of the pool for good: the stale connection is closed, not reused.
                drop(deadpool_redis::Connection::take(c));
            }
            return Err(Error::Stale.into());
        }
        self.conn.as_mut().ok_or_else(|| Error::Stale.into())
    }

    fn limit(&self) -> Option<Duration> {
        if self.unbounded {
            None
        } else {
            Some(self.timeout.saturating_add(self.extra.unwrap_or_default()))
        }
    }
}

async fn bounded<T>(
    limit: Option<Duration>,
    f: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match limit {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?,
    }
}

impl ConnectionLike for DedicatedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let limit = self.limit();
            let node = self.node.clone();
            let c = self.check()?;
            let r = bounded(limit, c.req_packed_command(cmd)).await;
            if let Err(e) = &r {
                node.endpoint.record_failure(e.classify());
                if e.is_timeout() {
                    // A timed-out connection may deliver the late answer to the next command.
                    if let Some(c) = self.conn.take() {
                        drop(deadpool_redis::Connection::take(c));
                    }
                }
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let limit = self.limit();
            let c = self.check()?;
            let r = bounded(limit, c.req_packed_commands(pipeline, offset, count)).await;
            if r.as_ref().is_err_and(|e| e.is_timeout())
                && let Some(c) = self.conn.take()
            {
                drop(deadpool_redis::Connection::take(c));
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.as_ref().map_or(0, |c| c.get_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_read_your_writes_window_is_not_truncated() {
        // 2^55 s is 2^64 * 5^9 ns: truncated to u64 it would be a window of 0.
        for window in [Duration::MAX, Duration::from_secs(1 << 55)] {
            let s = Session {
                window,
                started: Instant::now(),
                last_write: AtomicU64::new(0),
            };
            assert!(!s.in_window(), "no write yet");
            s.mark_write();
            assert!(
                s.in_window(),
                "{window:?}: reads after a write go to the primary"
            );
        }
    }

    #[test]
    fn replica_lag_never_overflows_on_server_offsets() {
        assert_eq!(replica_lag(1000, 400), 600);
        assert_eq!(replica_lag(400, 1000), 0);
        // A replica that has not synced yet reports -1.
        assert_eq!(replica_lag(10, -1), 11);
        assert_eq!(replica_lag(i64::MAX, -1), i64::MAX as u64);
        assert_eq!(replica_lag(i64::MAX, i64::MIN), i64::MAX as u64);
        assert_eq!(replica_lag(i64::MIN, i64::MAX), 0);
    }
}

//! One command or pipeline through the core's runner ([`Router::call`]): where each attempt
//! goes (writes to the confirmed primary, reads where the read policy says), what a reply means
//! (a failover-class error reply, a pipeline that partly ran), and how each failure is
//! classified for the retry decision and the node's health.
//!
//! [`Router::call`]: crate::route::Router::call

use std::future::Future;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use redis::{ErrorKind, Pipeline, RedisError, RedisResult, Value};
use tokio::time::Instant;

use super::backend::Backend;
use super::classify::is_readonly;
use super::command::{Route, route_cmd};
use super::error::Error;
use super::login::{LoginFailure, login_failure};
use super::node::{Node, NodeId};
use super::pool::Inner;
use super::session::Session;
use crate::error::{Classification, Classify, Execution};
use crate::health::{Endpoint, Role};
use crate::route::{NoPrimary, ReadCandidates, ReadPolicy, RouteError, Target};

/// A reply that may carry a server error the pool should act on.
pub(crate) trait Reply {
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
    #[inline]
    fn failover_error(&self) -> Option<RedisError> {
        match self {
            Value::ServerError(e) => {
                let err = RedisError::from(e.clone());
                let c = err.classify();
                (c.class().is_retryable() && c.execution() == Execution::NotExecuted).then_some(err)
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

/// What one call sends on a node's shared connection (a command, a pipeline), and the reply it
/// reads. The attempt owns the connection and awaits this future on it directly: no future of
/// its own around the backend's.
pub(crate) trait Request<B: Backend>: Sync {
    type Reply: Reply;

    fn send<'c>(
        &'c self,
        conn: &'c mut B::Conn,
    ) -> impl Future<Output = RedisResult<Self::Reply>> + Send + 'c;
}

impl<B: Backend> Request<B> for redis::Cmd {
    type Reply = Value;

    #[inline]
    fn send<'c>(
        &'c self,
        conn: &'c mut B::Conn,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'c {
        B::send(conn, self)
    }
}

/// `count` commands of `pipeline` from `offset`.
pub(crate) struct Pipelined<'a> {
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) offset: usize,
    pub(crate) count: usize,
}

impl<'a, B: Backend> Request<B> for Pipelined<'a> {
    type Reply = PipelineReply<'a>;

    fn send<'c>(
        &'c self,
        conn: &'c mut B::Conn,
    ) -> impl Future<Output = RedisResult<PipelineReply<'a>>> + Send + 'c {
        let Pipelined {
            pipeline,
            offset,
            count,
        } = *self;
        async move {
            let values = B::send_pipeline(conn, pipeline, offset, count).await?;
            Ok(PipelineReply {
                values,
                pipeline,
                offset,
            })
        }
    }
}

/// The replies to a pipeline, with the pipeline they answer.
pub(crate) struct PipelineReply<'a> {
    pub(crate) values: Vec<Value>,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) offset: usize,
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

/// A failed attempt: the error the caller gets if it is the last, and its classification,
/// decided where the pool knows whether the request was sent, partly ran, or never left.
pub(crate) struct AttemptError {
    pub(crate) err: RedisError,
    pub(crate) class: Classification,
    /// Why no primary was confirmed, when that is the failure (boxed: rare).
    primary: Option<Box<NoPrimary>>,
}

impl AttemptError {
    /// The request never reached the node (no connection).
    fn not_sent(err: RedisError) -> Self {
        let class = err.classify().not_executed();
        AttemptError {
            err,
            class,
            primary: None,
        }
    }

    /// The request was sent; the error says whether it may have run.
    fn sent(err: RedisError) -> Self {
        let class = err.classify();
        AttemptError {
            err,
            class,
            primary: None,
        }
    }

    /// Not sent: the primary moved to `to` since this attempt's endpoint was picked. Retried at
    /// once, on the new active endpoint.
    fn moved(to: &NodeId) -> Self {
        AttemptError {
            err: RedisError::from(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the primary moved to {to}"),
            )),
            // The node did its job by being what it is: not counted against its health.
            class: Classification::redirected(),
            primary: None,
        }
    }

    /// Not sent: no primary confirmed (the core's reason and the time waited).
    fn no_primary(e: NoPrimary) -> Self {
        let class = e.classify();
        AttemptError {
            err: Error::no_primary(e.clone()).into(),
            class,
            primary: Some(Box::new(e)),
        }
    }

    /// Not sent: the read policy refused (no replica). Not the endpoint's fault and nowhere
    /// else to go: the runner stops at once and records nothing against the node.
    fn no_replica() -> Self {
        AttemptError {
            err: Error::no_replica().into(),
            class: Classification::permanent(),
            primary: None,
        }
    }

    fn classification(&self) -> Classification {
        self.class
    }
}

/// The pool's read policy for one call: notes whether it refused, so the attempt the runner
/// then sends to the active endpoint fails instead of reading from the primary.
struct Reads<'p> {
    policy: &'p dyn ReadPolicy<NodeId>,
    refused: AtomicBool,
}

impl ReadPolicy<NodeId> for Reads<'_> {
    #[inline]
    fn choose<'r>(&self, c: &ReadCandidates<'r, NodeId>) -> Option<&'r Endpoint<NodeId>> {
        let chosen = self.policy.choose(c);
        if chosen.is_none() {
            self.refused.store(true, Relaxed);
        }
        chosen
    }
}

/// Where the attempts of one call go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A write (or a read-your-writes session's read in its window): the confirmed primary.
    Write,
    /// A read: where the read policy says.
    Read,
}

/// How one attempt goes: its kind, whether the read policy refused, and whether the call is
/// idempotent.
#[derive(Clone, Copy)]
struct How {
    kind: Kind,
    refused: bool,
    idempotent: bool,
}

impl<B: Backend> Inner<B> {
    /// Runs one command or pipeline (`request` on a node's shared connection): a write (or a
    /// read-your-writes session's read in its window) on the confirmed primary, a read where
    /// the read policy says; retried by the runner per the pool's policy.
    pub(crate) async fn run<R: Request<B>>(
        &self,
        route: Route,
        idempotent: bool,
        session: Option<&Session>,
        request: &R,
    ) -> RedisResult<R::Reply> {
        // What the command is decides retry safety and whether it opens a read-your-writes
        // window; where it runs may differ (a session's read inside its window goes to the
        // primary, and stays a read).
        let is_read = route == Route::Read;
        let idempotent = idempotent || is_read;
        let kind = if !is_read || session.is_some_and(Session::in_window) {
            Kind::Write
        } else {
            Kind::Read
        };
        let reads = Reads {
            policy: &*self.read_policy,
            refused: AtomicBool::new(false),
        };
        let target = match kind {
            Kind::Write => Target::Active,
            Kind::Read => Target::Read(&reads),
        };
        // When the call first waited for a primary: set on the cold path only.
        let waiting = OnceLock::new();
        let waiting = &waiting;
        let result = self
            .router
            .call(&self.retry, |a| {
                let refused = kind == Kind::Read && reads.refused.swap(false, Relaxed);
                let how = How {
                    kind,
                    refused,
                    idempotent,
                };
                self.attempt(a.endpoint(), how, request, waiting)
            })
            .target(target)
            .bounded_by(match kind {
                Kind::Write => self.bounds.write,
                Kind::Read => self.bounds.read,
            })
            .idempotent(idempotent)
            .maybe_budget(self.budget.as_ref())
            .classify_with(AttemptError::classification)
            .run()
            .await;
        match result {
            Ok(v) => {
                if !is_read && let Some(s) = session {
                    s.mark_write();
                }
                Ok(v)
            }
            Err(e) => Err(self.failed(e, waiting)),
        }
    }

    /// The caller's error for a call the runner gave up on: the last attempt's, or a timeout
    /// when the last attempt was cut; a call that found no primary says how long it waited in
    /// all, and which server refused the login when that is why.
    #[cold]
    fn failed(
        &self,
        e: RouteError<NodeId, AttemptError>,
        waiting: &OnceLock<Instant>,
    ) -> RedisError {
        tracing::debug!(target: "switchover::redis", reason = %e.reason(), attempts = e.attempts(), "command failed");
        let timed_out = e.timed_out();
        let attempts = e.attempts();
        match e.into_last_error() {
            Some(AttemptError {
                primary: Some(np), ..
            }) => {
                if np.is_permanent()
                    && let Some(r) = self.topology.refusal()
                {
                    return Error::refused("redis node", &r.node, r.tls, r.err).into();
                }
                let waited = waiting.get().map_or(Duration::ZERO, |t| t.elapsed());
                Error::no_primary_after(*np, waited, attempts).into()
            }
            Some(a) if !timed_out => a.err,
            Some(a) => RedisError::from(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out (the last error before: {})", a.err),
            )),
            None => RedisError::from(io::Error::from(io::ErrorKind::TimedOut)),
        }
    }

    /// One attempt on `ep`: a write only once `ep` is the confirmed primary; a read anywhere
    /// but on the primary when the read policy refused.
    ///
    /// Takes the endpoint rather than the runner's [`Attempt`](crate::route::Attempt), and
    /// keeps as little as it can across its awaits: the runner moves this future several times
    /// (and holds it twice), so every byte of it is copied a few times per command.
    #[inline]
    async fn attempt<R: Request<B>>(
        &self,
        ep: &Endpoint<NodeId>,
        how: How,
        request: &R,
        waiting: &OnceLock<Instant>,
    ) -> Result<R::Reply, AttemptError> {
        match how.kind {
            Kind::Write if self.rediscovery.in_doubt() || ep.role() != Role::Primary => {
                // Boxed: the wait's state stays out of every command's future.
                waiting.get_or_init(Instant::now);
                Box::pin(self.confirm_primary(ep)).await?;
            }
            Kind::Read if how.refused && ep.role() != Role::Replica => {
                return Err(AttemptError::no_replica());
            }
            // The read policy fell back to the active node, and discovery found it a replica
            // unfit for reads (demoted, following no confirmed primary): wait for a primary.
            Kind::Read if ep.role() == Role::Replica && !ep.is_available() => {
                waiting.get_or_init(Instant::now);
                Box::pin(self.confirm_primary(ep)).await?;
            }
            _ => {}
        }
        let node = self.node_of(ep)?;
        let (id, mut conn) = match node.cached_connection() {
            Some(c) => c,
            // Boxed: the connect's state stays out of every command's future.
            None => match Box::pin(node.connect(&self.topology.backend)).await {
                Ok(c) => c,
                Err(e) => {
                    self.after_failure(node, None, &e);
                    return Err(AttemptError::not_sent(named(node, e)));
                }
            },
        };
        // redis-rs hands error replies back as values (`Value::ServerError`): the ones that say
        // "not here, not now" become errors so that they are retried.
        match request.send(&mut conn).await {
            Ok(v) => match v.failover_error() {
                None => Ok(v),
                Some(e) => {
                    let partly_ran = v.ran_a_non_read();
                    drop(v);
                    // Boxed: the wait's state stays out of every command's future.
                    Err(Box::pin(self.refused(node, e, partly_ran, how)).await)
                }
            },
            Err(e) => {
                self.after_failure(node, Some(id), &e);
                Err(AttemptError::sent(e))
            }
        }
    }

    #[inline]
    fn node_of(&self, ep: &Endpoint<NodeId>) -> Result<&Node<B>, AttemptError> {
        match self.topology.node_of(ep) {
            Some(node) => Ok(node),
            None => Err(unknown_node(ep)),
        }
    }

    /// Waits, within this attempt, for discovery to confirm a primary: `Ok` when it is `ep`;
    /// else a not-executed failure (retried at once when the primary moved).
    #[cold]
    async fn confirm_primary(&self, ep: &Endpoint<NodeId>) -> Result<(), AttemptError> {
        match self.within_attempt(self.rediscovery.primary()).await {
            Ok(Ok(p)) if p.ptr_eq(ep) => Ok(()),
            Ok(Ok(p)) => Err(AttemptError::moved(p.id())),
            Ok(Err(e)) => Err(AttemptError::no_primary(e)),
            Err(waited) => Err(AttemptError::no_primary(NoPrimary::new(format!(
                "still in doubt when the attempt timeout came (waited {waited:?})"
            )))),
        }
    }

    /// Bounds a wait inside an attempt so that it ends before the policy's attempt timeout: an
    /// attempt cut by the runner counts as "may have executed", which would stop a write that
    /// surely did not run. `Err(waited)` when the bound ran out.
    async fn within_attempt<T>(&self, f: impl Future<Output = T>) -> Result<T, Duration> {
        match self.attempt_wait {
            None => Ok(f.await),
            Some(limit) => tokio::time::timeout(limit, f).await.map_err(|_| limit),
        }
    }

    /// A failover-class error reply (`READONLY`, `LOADING`, `BUSY`, ...). After `READONLY` the
    /// attempt waits for discovery to name the new primary, so the retry goes there at once.
    #[cold]
    async fn refused(
        &self,
        node: &Node<B>,
        e: RedisError,
        partly_ran: bool,
        how: How,
    ) -> AttemptError {
        self.after_failure(node, None, &e);
        // A pipeline whose writes were refused after other commands with effects ran: retried
        // only when the caller declared it idempotent.
        let readonly = is_readonly(&e);
        let class = if partly_ran {
            Classification::transient()
        } else if readonly {
            // A demoted primary, healthy as a replica: retried at once (on the new primary once
            // discovery names it), never counted against the node.
            Classification::redirected()
        } else {
            e.classify()
        };
        // Only a write waits (a read's bound has no room for it, and a read never meets `READONLY`).
        if how.kind == Kind::Write && readonly && class.is_retry_safe(how.idempotent) {
            let seen = Instant::now();
            // The retry then goes to the new primary (or, if none is named in time, waits for
            // one within its own attempt).
            let _ = self
                .within_attempt(self.rediscovery.rediscover_after(seen))
                .await;
        }
        AttemptError {
            err: e,
            class,
            primary: None,
        }
    }

    /// Drops a broken connection and puts the primary in doubt when the failure says it may
    /// no longer be one (`READONLY`, or a failure of the primary that counts against it).
    fn after_failure(&self, node: &Node<B>, conn_id: Option<u64>, e: &RedisError) {
        // A reply slower than the response timeout, from a node whose heartbeat is on: slow,
        // not dead. The shared connection stays (redis-rs drops the late reply) and the
        // heartbeat's verdict, not this call, decides whether the primary is in doubt.
        if e.is_timeout() && self.topology.settings.heartbeat.is_some() {
            return;
        }
        if (e.kind() == ErrorKind::Io || e.is_timeout() || e.is_connection_dropped())
            && let Some(id) = conn_id
        {
            node.drop_connection(id);
        }
        let readonly = is_readonly(e);
        if readonly
            || (node.endpoint.role() == Role::Primary && e.classify().counts_against_endpoint())
        {
            tracing::debug!(
                target: "switchover::redis",
                node = %node.name,
                readonly,
                error = %e,
                "primary in doubt"
            );
            self.rediscovery.suspect();
        }
    }
}

/// Not sent: `ep` is no node of the pool's topology.
#[cold]
#[inline(never)]
fn unknown_node(ep: &Endpoint<NodeId>) -> AttemptError {
    AttemptError::no_primary(NoPrimary::new(format!("{:?} is not a known node", ep.id())))
}

/// A failed connect's error, naming the node when it refused the login or the TLS handshake
/// (redis-rs's error does not say which server it was).
#[cold]
fn named<B: Backend>(node: &Node<B>, e: RedisError) -> RedisError {
    match login_failure(&e) {
        Some(f) => Error::refused("redis node", &node.name, f == LoginFailure::Tls, e).into(),
        None => e,
    }
}

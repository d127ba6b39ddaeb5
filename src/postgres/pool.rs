use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{Object, Pool, PoolError, QueueMode};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{FailoverPoolBuilder, HealthCustomizer, Settings};
use super::conn::PgConnection;
use super::core::Core;
use super::error::Error;
use super::manager::ConnectionManager;
use super::role::{ServerRole, TargetRole};
use crate::error::{Classification, Classify, ErrorClass, Execution};
use crate::health::{HealthState, HealthTracker};
use crate::retry::Backoff;
use crate::route::Router;

/// A connection handed out by [`FailoverPool`]: deadpool's [`Object`]. It derefs to
/// [`PgConnection`], which derefs to [`tokio_postgres::Client`], so existing query code works
/// unchanged; dropping it returns it to the pool.
pub type PooledConnection = Object<ConnectionManager>;

/// A boxed, `Send` future: what the closures given to [`FailoverPool::run`] and
/// [`FailoverPool::transaction`] return (write `Box::pin(async move { ... })`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reconnecting Postgres pool over several hosts that always hands out a connection of the
/// right role. See the [module documentation](super) for the whole story.
///
/// Cheap to clone (`Arc`s); clones share connections, health and routing.
#[derive(Clone)]
pub struct FailoverPool {
    core: Arc<Core>,
    main: Pool<ConnectionManager>,
    read: Pool<ConnectionManager>,
}

impl fmt::Debug for FailoverPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverPool")
            .field("hosts", &self.hosts())
            .field("target_role", &self.core.settings.target_role)
            .field("read_role", &self.core.settings.read_role)
            .field("primary", &self.primary())
            .field("generation", &self.generation())
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

/// What one attempt of the runner failed with, and how it counts.
struct AttemptError {
    error: Error,
    classification: Classification,
}

impl FailoverPool {
    /// A builder with the documented defaults.
    pub fn builder() -> FailoverPoolBuilder {
        FailoverPoolBuilder::default()
    }

    pub(crate) fn from_settings(
        settings: Settings,
        health: Option<HealthCustomizer>,
    ) -> Result<Self, crate::ConfigError> {
        let max_size = settings.max_size;
        let timeouts = settings.timeouts;
        let target = settings.target_role;
        let read_role = settings.read_role;
        let core = Core::new(settings, health)?;
        let build = |role| {
            Pool::builder(ConnectionManager::new(core.clone(), role))
                .max_size(max_size)
                .runtime(Runtime::Tokio1)
                .queue_mode(QueueMode::Fifo)
                .wait_timeout(Some(timeouts.acquire))
                .create_timeout(Some(timeouts.acquire))
                .recycle_timeout(Some(timeouts.recycle))
                .build()
                .map_err(|e| crate::ConfigError::new("max_size", e.to_string()))
        };
        let main = build(target)?;
        let read = build(read_role)?;
        let _ = core.pools.set([main.weak(), read.weak()]);
        Ok(FailoverPool { core, main, read })
    }

    /// A connection of the pool's target role (by default the writable primary), within the
    /// acquire timeout.
    ///
    /// Reuses an idle connection when one passes the recycle check (open, current
    /// generation, host available, role still right), else connects, trying hosts in order of
    /// preference. When the connect fails in a way that says the topology changed (refused,
    /// timed out, wrong role, shutting down) it re-discovers every host's role in parallel,
    /// switches the router to the primary it finds, and tries again with backoff and jitter —
    /// all within the acquire timeout, never past it, even when every host is down.
    ///
    /// # Errors
    ///
    /// [`Error::AcquireTimeout`] with the last failure as its source; [`Error::Closed`]; or,
    /// at once and without waiting for the timeout, an error that will not fix itself (for
    /// example [`Error::Connect`] for a rejected password or an unknown database).
    pub async fn get(&self) -> Result<PooledConnection, Error> {
        self.acquire(&self.main).await
    }

    /// A connection for reads, of the pool's read role (by default
    /// [`TargetRole::PreferStandby`]: a hot standby when one is up, else the primary). Same
    /// guarantees as [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn get_read(&self) -> Result<PooledConnection, Error> {
        self.acquire(&self.read).await
    }

    async fn acquire(&self, pool: &Pool<ConnectionManager>) -> Result<PooledConnection, Error> {
        let timeout = self.core.settings.timeouts.acquire;
        let role = pool.manager().target();
        let deadline = Instant::now() + timeout;
        let mut schedule = None;
        let mut last: Option<Error> = None;
        let give_up = |last: Option<Error>| Error::AcquireTimeout {
            role,
            timeout,
            last: last.map(Box::new),
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(give_up(last));
            }
            let timeouts = deadpool::managed::Timeouts {
                wait: Some(remaining),
                create: Some(remaining),
                recycle: Some(self.core.settings.timeouts.recycle.min(remaining)),
            };
            let observed_at = Instant::now();
            let error = match tokio::time::timeout(remaining, pool.timeout_get(&timeouts)).await {
                Err(_) => return Err(give_up(last)),
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(PoolError::Backend(e))) => e,
                Ok(Err(PoolError::Timeout(_))) => return Err(give_up(last)),
                Ok(Err(PoolError::Closed | PoolError::NoRuntimeSpecified)) => {
                    return Err(Error::Closed);
                }
                Ok(Err(PoolError::PostCreateHook(_))) => return Err(Error::Closed),
            };
            if error.classify().class() == ErrorClass::Permanent {
                // A wrong password or database will not fix itself: no point waiting.
                return Err(error);
            }
            if error.triggers_discovery() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, self.core.rediscover(observed_at))
                    .await
                    .is_err()
                {
                    return Err(give_up(Some(error)));
                }
            }
            last = Some(error);
            let delay = schedule
                .get_or_insert_with(|| self.core.settings.reconnect_backoff.schedule())
                .next()
                .unwrap_or(Duration::ZERO);
            if Instant::now() + delay >= deadline {
                return Err(give_up(last));
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Runs `f` on a primary connection (autocommit: each statement commits on its own) and
    /// retries it after a failover-class error, waiting for the new primary — but only when it
    /// is safe: when `idempotent` is `true`, or when the error proves nothing ran (a read-only
    /// rejection, a refused connection, a serialization failure).
    ///
    /// Each call of `f` is bounded by the query timeout ([`Timeouts::query`](super::Timeouts),
    /// default 10 s) and the whole run by the runner policy (default: 10 attempts within
    /// 15 s).
    ///
    /// ```no_run
    /// # async fn demo(pool: switchover::postgres::FailoverPool) -> Result<(), switchover::postgres::Error> {
    /// let n: i64 = pool
    ///     .run(true, |client| Box::pin(async move {
    ///         let row = client.query_one("SELECT count(*) FROM items", &[]).await?;
    ///         Ok(row.get(0))
    ///     }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Query`] with the reason the runner stopped and the last error.
    pub async fn run<T, F>(&self, idempotent: bool, f: F) -> Result<T, Error>
    where
        T: Send,
        F: for<'c> FnMut(&'c PgConnection) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send,
    {
        let f = Mutex::new(f);
        let commit_in_flight = StdMutex::new(None);
        self.retried(idempotent, &commit_in_flight, || self.attempt_run(&f))
            .await
    }

    /// Runs `f` inside a transaction on a primary connection (`BEGIN`, `f`, `COMMIT`) and
    /// retries after a failover-class error, waiting for the new primary.
    ///
    /// A failure before `COMMIT` was sent rolled the transaction back, so it is always retried
    /// when the error is transient (a lost connection, a read-only primary, a serialization
    /// failure): nothing was committed. When the connection is lost after `COMMIT` was sent and
    /// before its reply, nobody knows whether it committed: that is
    /// [`Error::OutcomeUnknown`], retried only when `idempotent` is `true`, and otherwise
    /// returned as such — never as a success or a plain failure.
    ///
    /// ```no_run
    /// # async fn demo(pool: switchover::postgres::FailoverPool) -> Result<(), switchover::postgres::Error> {
    /// match pool
    ///     .transaction(false, |tx| Box::pin(async move {
    ///         tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&42_i64]).await?;
    ///         Ok(())
    ///     }))
    ///     .await
    /// {
    ///     Ok(()) => println!("committed"),
    ///     Err(e) if e.is_outcome_unknown() => println!("check whether order 42 exists"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OutcomeUnknown`] as above; otherwise [`Error::Query`] with the reason the
    /// runner stopped and the last error.
    pub async fn transaction<T, F>(&self, idempotent: bool, f: F) -> Result<T, Error>
    where
        T: Send,
        F: for<'c> FnMut(
                &'c tokio_postgres::Transaction<'c>,
            ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send,
    {
        let f = Mutex::new(f);
        let commit_in_flight = StdMutex::new(None);
        self.retried(idempotent, &commit_in_flight, || {
            self.attempt_transaction(&f, &commit_in_flight)
        })
        .await
    }

    /// Runs `attempt` under the runner policy and turns its outcome into the pool's error.
    async fn retried<T, A, Fut>(
        &self,
        idempotent: bool,
        commit_in_flight: &StdMutex<Option<Arc<str>>>,
        attempt: A,
    ) -> Result<T, Error>
    where
        A: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let result = self
            .core
            .settings
            .runner_policy
            .retry(attempt)
            .idempotent(idempotent)
            .classify_with(|e: &AttemptError| e.classification)
            .run()
            .await;
        finish(result, commit_in_flight)
    }

    async fn attempt_run<T, F>(&self, f: &Mutex<F>) -> Result<T, AttemptError>
    where
        F: for<'c> FnMut(&'c PgConnection) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let observed_at = Instant::now();
        let conn = self.get().await.map_err(|e| AttemptError {
            classification: e.classify(),
            error: e,
        })?;
        let timeout = self.core.settings.timeouts.query;
        let outcome = {
            let mut f = f.lock().await;
            tokio::time::timeout(timeout, f(&conn)).await
        };
        let error = match outcome {
            Ok(Ok(v)) => {
                self.core.endpoints[conn.host_index()].record_success();
                return Ok(v);
            }
            Ok(Err(source)) => Error::Postgres {
                host: conn.host_arc().clone(),
                source,
            },
            Err(_) => Error::QueryTimeout {
                host: conn.host_arc().clone(),
                timeout,
            },
        };
        let classification = error.classify();
        Err(self
            .after_failure(conn, error, classification, observed_at)
            .await)
    }

    async fn attempt_transaction<T, F>(
        &self,
        f: &Mutex<F>,
        commit_in_flight: &StdMutex<Option<Arc<str>>>,
    ) -> Result<T, AttemptError>
    where
        F: for<'c> FnMut(
            &'c tokio_postgres::Transaction<'c>,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let observed_at = Instant::now();
        set(commit_in_flight, None);
        let mut conn = self.get().await.map_err(|e| AttemptError {
            classification: e.classify(),
            error: e,
        })?;
        let host = conn.host_arc().clone();
        let timeout = self.core.settings.timeouts.query;
        let pg_err = |source| Error::Postgres {
            host: host.clone(),
            source,
        };
        let query_timeout = || Error::QueryTimeout {
            host: host.clone(),
            timeout,
        };

        // Before COMMIT: any failure rolled the transaction back, nothing ran.
        let before: Result<Result<T, Error>, Error> = async {
            let client: &mut tokio_postgres::Client = &mut conn;
            let tx = match tokio::time::timeout(timeout, client.transaction()).await {
                Ok(Ok(tx)) => tx,
                Ok(Err(e)) => return Err(pg_err(e)),
                Err(_) => return Err(query_timeout()),
            };
            let value = {
                let mut f = f.lock().await;
                match tokio::time::timeout(timeout, f(&tx)).await {
                    Ok(Ok(v)) => v,
                    Ok(Err(e)) => return Err(pg_err(e)),
                    Err(_) => return Err(query_timeout()),
                }
            };
            if tx.client().is_closed() {
                // The connection died before COMMIT could be sent: nothing committed.
                return Err(Error::ConnectionLost { host: host.clone() });
            }
            set(commit_in_flight, Some(host.clone()));
            let committed = tokio::time::timeout(timeout, tx.commit()).await;
            set(commit_in_flight, None);
            Ok(match committed {
                Ok(Ok(())) => Ok(value),
                Ok(Err(source)) if commit_outcome_is_known(&source) => Err(pg_err(source)),
                Ok(Err(source)) => Err(Error::OutcomeUnknown {
                    host: host.clone(),
                    source: Some(source),
                }),
                Err(_) => Err(Error::OutcomeUnknown {
                    host: host.clone(),
                    source: None,
                }),
            })
        }
        .await;

        let (error, classification) = match before {
            Ok(Ok(v)) => {
                self.core.endpoints[conn.host_index()].record_success();
                return Ok(v);
            }
            Ok(Err(e)) => {
                let c = e.classify();
                (e, c)
            }
            Err(e) => {
                let c = e.classify();
                // Rolled back: safe to run again whatever the class said about execution.
                let c = if c.class() == ErrorClass::Permanent {
                    c
                } else {
                    c.with_execution(Execution::NotExecuted)
                };
                (e, c)
            }
        };
        Err(self
            .after_failure(conn, error, classification, observed_at)
            .await)
    }

    /// Records a failed attempt against its host, drops a broken connection, and re-discovers
    /// the topology when the error says it changed.
    async fn after_failure(
        &self,
        conn: PooledConnection,
        error: Error,
        classification: Classification,
        observed_at: Instant,
    ) -> AttemptError {
        let host = conn.host_index();
        let failover = error.triggers_discovery();
        if error.breaks_connection() || failover {
            self.core.endpoints[host].record_failure(classification);
            drop(Object::take(conn));
        } else {
            drop(conn);
        }
        if failover {
            tracing::info!(
                target: "switchover::postgres",
                host = %self.core.host_name(host),
                error = %error,
                cause = ?error.as_postgres().map(ToString::to_string),
                "failover-class error; re-discovering"
            );
            let _ = self.core.rediscover(observed_at).await;
        }
        AttemptError {
            error,
            classification,
        }
    }

    /// Tells the pool about an error you got on a connection from [`get`](Self::get) or
    /// [`get_read`](Self::get_read): it is recorded against the host, and a failover-class
    /// error (see [`is_failover_error`](super::is_failover_error)) starts a re-discovery, so
    /// the next `get` goes to the right host at once. The runner methods do this on their own.
    /// A connection that did not come from this pool (or its clones) is ignored.
    pub async fn report(&self, conn: &PgConnection, err: &tokio_postgres::Error) {
        let observed_at = Instant::now();
        let c = err.classify();
        if c.class() == ErrorClass::Permanent {
            return;
        }
        // The host index is only meaningful in the pool that made the connection.
        let Some(endpoint) = self
            .core
            .endpoints
            .get(conn.host_index())
            .filter(|ep| **ep.id() == *conn.host())
        else {
            return;
        };
        endpoint.record_failure(c);
        if super::is_failover_error(err) {
            let _ = self.core.rediscover(observed_at).await;
        }
    }

    /// Probes every host for its role now (in parallel, each within the probe timeout, waiting
    /// for all of them),
    /// switches to the primary found and evicts idle connections that no longer fit. Returns
    /// the generation afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::NoHost`] when no writable primary answered.
    pub async fn rediscover(&self) -> Result<u64, Error> {
        self.core.rediscover_with(Instant::now(), true).await
    }

    /// The hosts, in priority order, as `host:port`.
    pub fn hosts(&self) -> Vec<&str> {
        self.core.hosts.configs.iter().map(|h| &*h.name).collect()
    }

    /// The host primary connections go to (the router's active endpoint), as `host:port`.
    pub fn primary(&self) -> &str {
        self.core.host_name(self.core.active_index())
    }

    /// The router generation: grows by one on every switch of primary. Connections of older
    /// generations are never handed out again.
    pub fn generation(&self) -> u64 {
        self.core.router.generation()
    }

    /// Every host with its last reported role, its health and whether it is the active one.
    pub fn topology(&self) -> Vec<HostStatus> {
        let active = self.core.active_index();
        (0..self.core.host_count())
            .map(|i| HostStatus {
                host: self.core.host_name(i).to_string(),
                role: self.core.hosts.role(i),
                health: self.core.endpoints[i].state(),
                active: i == active,
            })
            .collect()
    }

    /// The health tracker over the hosts (ids are `host:port`): subscribe to its events, force
    /// a host down for a drill.
    pub fn tracker(&self) -> &HealthTracker<Arc<str>> {
        &self.core.tracker
    }

    /// The router over the hosts: subscribe to switch events.
    pub fn router(&self) -> &Router<Arc<str>> {
        &self.core.router
    }

    /// The role [`get`](Self::get) hands out.
    pub fn target_role(&self) -> TargetRole {
        self.core.settings.target_role
    }

    /// The role [`get_read`](Self::get_read) hands out.
    pub fn read_role(&self) -> TargetRole {
        self.core.settings.read_role
    }

    /// Closes both inner pools: pending and future `get`s fail with [`Error::Closed`]; idle
    /// connections are dropped.
    pub fn close(&self) {
        self.main.close();
        self.read.close();
    }
}

fn set(cell: &StdMutex<Option<Arc<str>>>, value: Option<Arc<str>>) {
    *cell.lock().unwrap_or_else(|e| e.into_inner()) = value;
}

/// `true` when a failed `COMMIT` reply says for sure that nothing committed: the server
/// answered with an error that is not about the connection or a shutdown (a serialization
/// failure, a deferred constraint).
fn commit_outcome_is_known(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        Some(code) => {
            let c = code.code();
            !(c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
        }
        None => false,
    }
}

fn finish<T>(
    result: Result<T, crate::retry::RetryError<AttemptError>>,
    commit_in_flight: &StdMutex<Option<Arc<str>>>,
) -> Result<T, Error> {
    let err = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let reason = err.reason();
    let attempts = err.attempts();
    let timed_out = err.timed_out();
    let in_flight = commit_in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if timed_out && let Some(host) = in_flight {
        // The runner's deadline cut the attempt while COMMIT was in flight.
        return Err(Error::OutcomeUnknown { host, source: None });
    }
    match err.into_last_error() {
        Some(AttemptError {
            error: e @ Error::OutcomeUnknown { .. },
            ..
        }) if !timed_out => Err(e),
        last => Err(Error::Query {
            reason,
            attempts,
            source: last.map(|a| Box::new(a.error)),
        }),
    }
}

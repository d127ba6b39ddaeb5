//! Closures run on the primary through the core's runner: [`FailoverPool::run`]
//! (autocommit) and [`FailoverPool::transaction`] (`BEGIN`, the closure, `COMMIT`), and the
//! rules that make retrying them safe.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::acquire::{AttemptError, Settled, no_primary};
use super::classify::lost_in_flight;
use super::conn::PgConnection;
use super::error::{Error, ErrorKind, Stop};
use super::pool::{BoxFuture, FailoverPool, PooledConnection};
use crate::error::{Classification, Classify, ErrorClass, Execution};
use crate::retry::RetryPolicy;
use crate::route::{Attempt, RouteError};
use crate::sync::lock;

/// Which host a transaction's `COMMIT` is in flight on, so a call cut by the retry policy's
/// time limit during it is reported as an unknown outcome.
#[derive(Default)]
pub(crate) struct CommitWatch(Mutex<Option<Arc<str>>>);

impl CommitWatch {
    pub(crate) fn set(&self, host: Option<Arc<str>>) {
        *lock(&self.0) = host;
    }

    fn take(&self) -> Option<Arc<str>> {
        lock(&self.0).take()
    }
}

/// How a transaction attempt failed: before `COMMIT` was sent (rolled back, nothing
/// committed) or at `COMMIT`.
#[derive(Debug)]
pub(crate) enum TxFailure {
    BeforeCommit(Error),
    AtCommit(Error),
}

impl TxFailure {
    /// The error and how the runner counts it. A failure before `COMMIT` rolled the
    /// transaction back, so it is safe to run again whatever its class says about execution
    /// (a permanent error stays permanent); at `COMMIT` the error's own class holds (an
    /// unknown outcome may have executed).
    pub(crate) fn classified(self) -> (Error, Classification) {
        match self {
            TxFailure::BeforeCommit(e) => {
                let c = e.classify();
                let c = if c.class() == ErrorClass::Permanent {
                    c
                } else {
                    c.with_execution(Execution::NotExecuted)
                };
                (e, c)
            }
            TxFailure::AtCommit(e) => {
                let c = e.classify();
                (e, c)
            }
        }
    }
}

impl FailoverPool {
    /// Runs `f` on a connection of the pool's target role (autocommit: each statement commits
    /// on its own) and retries it after a failover-class error, once the new primary is found
    /// — but only when it is safe: on an [`idempotent`](Self::idempotent) handle, or when `f`
    /// never started (no connection could be had). Once `f` has run, an error that proves its
    /// own statement did not run (a read-only rejection, a deadlock, a serialization failure)
    /// still says nothing of the statements before it, which committed on their own: the error
    /// is returned. A connection lost while a statement of `f` was in flight is
    /// [`ErrorKind::OutcomeUnknown`](super::ErrorKind::OutcomeUnknown) (that statement may or
    /// may not have run), retried only on an idempotent handle. Use
    /// [`transaction`](Self::transaction) for retries that are always safe.
    ///
    /// Each call of `f` is bounded by the query timeout and the whole run by the
    /// [retry policy](super::FailoverPoolBuilder::retry_policy).
    ///
    /// ```no_run
    /// # async fn demo(pool: switchover::postgres::FailoverPool) -> Result<(), switchover::postgres::Error> {
    /// let n: i64 = pool
    ///     .idempotent()
    ///     .run(|client| Box::pin(async move {
    ///         let row = client.query_one("SELECT count(*) FROM items", &[]).await?;
    ///         Ok(row.get(0))
    ///     }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// The last attempt's error, with the [attempts](Error::attempts) made and why the runner
    /// [stopped](Error::stop_reason).
    pub async fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send,
        F: for<'c> FnMut(&'c PgConnection) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send,
    {
        let f = Mutex::new(f);
        let commit = CommitWatch::default();
        let policy = self.runner_policy().await?;
        let f = &f;
        let result = self
            .call(&policy, |attempt| async move {
                self.run_once(&attempt, f).await
            })
            .await;
        finish(result, &commit)
    }

    /// Runs `f` inside a transaction (`BEGIN`, `f`, `COMMIT`) on a connection of the pool's
    /// target role and retries after a failover-class error, once the new primary is found.
    ///
    /// A failure before `COMMIT` was sent rolled the transaction back, so it is always retried
    /// when the error is transient (a lost connection, a read-only primary, a serialization
    /// failure): nothing was committed. When the connection is lost after `COMMIT` was sent and
    /// before its reply, nobody knows whether it committed: that is
    /// [`ErrorKind::OutcomeUnknown`](super::ErrorKind::OutcomeUnknown), retried only on an
    /// [`idempotent`](Self::idempotent) handle and otherwise returned as such — never as a
    /// success or a plain failure.
    ///
    /// ```no_run
    /// # async fn demo(pool: switchover::postgres::FailoverPool) -> Result<(), switchover::postgres::Error> {
    /// match pool
    ///     .transaction(|tx| Box::pin(async move {
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
    /// An unknown outcome as above; otherwise the last attempt's error, with the attempts made
    /// and why the runner stopped.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send,
        F: for<'c> FnMut(
                &'c tokio_postgres::Transaction<'c>,
            ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>
            + Send,
    {
        let f = Mutex::new(f);
        let commit = CommitWatch::default();
        let policy = self.runner_policy().await?;
        let (f, watch) = (&f, &commit);
        let result = self
            .call(&policy, |attempt| async move {
                self.transaction_once(&attempt, f, watch).await
            })
            .await;
        finish(result, &commit)
    }

    /// The retry policy `run` and `transaction` start with, once the primary is settled
    /// (what is left of its deadline after waiting); an error when the wait used it all.
    async fn runner_policy(&self) -> Result<Cow<'_, RetryPolicy>, Error> {
        match self
            .settle(&self.core.main, &self.core.settings.retry_policy)
            .await
        {
            Settled::Ready(p) => Ok(p),
            Settled::OutOfTime(why) => Err(out_of_time(self, why)),
        }
    }

    /// The runner call of `run` and `transaction`: the target role's host choice, the
    /// handle's idempotency, the pool's budget.
    async fn call<'a, T, Op, Fut>(
        &'a self,
        policy: &'a RetryPolicy,
        op: Op,
    ) -> Result<T, RouteError<Arc<str>, AttemptError>>
    where
        Op: FnMut(Attempt<'a, Arc<str>>) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.core
            .topology
            .router
            .call(policy, op)
            .target(self.core.main.target())
            .idempotent(self.idempotent)
            .maybe_budget(self.core.settings.budget.as_ref())
            .classify_with(|e: &AttemptError| e.classification)
            .run()
            .await
    }

    async fn run_once<T, F>(
        &self,
        attempt: &Attempt<'_, Arc<str>>,
        f: &Mutex<F>,
    ) -> Result<T, AttemptError>
    where
        F: for<'c> FnMut(&'c PgConnection) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let observed_at = Instant::now();
        let acquire = self.core.settings.timeouts.acquire;
        let conn = self
            .take(&self.main, &self.core.main, attempt, observed_at + acquire)
            .await?;
        let timeout = self.core.settings.timeouts.query;
        let fut = {
            let mut f = lock(f);
            f(&conn)
        };
        let error = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => return Ok(v),
            // A connection lost under a statement of the closure: that statement may or may not
            // have run (the earlier ones committed), as a `COMMIT` cut in flight.
            Ok(Err(source)) if lost_in_flight(&source) => {
                Error::outcome_unknown_in_run(conn.host_arc().clone(), source)
            }
            Ok(Err(source)) => Error::postgres(conn.host_arc().clone(), source),
            Err(_) => Error::query_timeout(conn.host_arc().clone(), timeout),
        };
        // In autocommit every statement commits on its own: an error that proves its own
        // statement did not run (25006, 40001, 40P01, 57P03) says nothing of the statements
        // before it, which may have committed. Once the closure ran, only an idempotent handle
        // may run it again.
        let classification = error.classify().may_have_executed();
        Err(self
            .after_failure(conn, error, classification, attempt, observed_at)
            .await)
    }

    async fn transaction_once<T, F>(
        &self,
        attempt: &Attempt<'_, Arc<str>>,
        f: &Mutex<F>,
        commit: &CommitWatch,
    ) -> Result<T, AttemptError>
    where
        F: for<'c> FnMut(
            &'c tokio_postgres::Transaction<'c>,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let observed_at = Instant::now();
        commit.set(None);
        let acquire = self.core.settings.timeouts.acquire;
        let mut conn = self
            .take(&self.main, &self.core.main, attempt, observed_at + acquire)
            .await?;
        match self.in_transaction(&mut conn, f, commit).await {
            Ok(v) => Ok(v),
            Err(failure) => {
                let (error, classification) = failure.classified();
                Err(self
                    .after_failure(conn, error, classification, attempt, observed_at)
                    .await)
            }
        }
    }

    /// `BEGIN`, `f`, `COMMIT` on `conn`, each step within the query timeout.
    async fn in_transaction<T, F>(
        &self,
        conn: &mut PooledConnection,
        f: &Mutex<F>,
        commit: &CommitWatch,
    ) -> Result<T, TxFailure>
    where
        F: for<'c> FnMut(
            &'c tokio_postgres::Transaction<'c>,
        ) -> BoxFuture<'c, Result<T, tokio_postgres::Error>>,
    {
        let host = conn.host_arc().clone();
        let timeout = self.core.settings.timeouts.query;
        let pg = |e| TxFailure::BeforeCommit(Error::postgres(host.clone(), e));
        let late = || TxFailure::BeforeCommit(Error::query_timeout(host.clone(), timeout));
        let client: &mut tokio_postgres::Client = conn;
        let tx = match tokio::time::timeout(timeout, client.transaction()).await {
            Ok(Ok(tx)) => tx,
            Ok(Err(e)) => return Err(pg(e)),
            Err(_) => return Err(late()),
        };
        let fut = {
            let mut f = lock(f);
            f(&tx)
        };
        let value = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(pg(e)),
            Err(_) => return Err(late()),
        };
        if tx.client().is_closed() {
            // The connection died before COMMIT could be sent: nothing committed.
            return Err(TxFailure::BeforeCommit(Error::connection_lost(host)));
        }
        commit.set(Some(host.clone()));
        let committed = tokio::time::timeout(timeout, tx.commit()).await;
        commit.set(None);
        match committed {
            Ok(Ok(())) => Ok(value),
            Ok(Err(e)) if commit_outcome_is_known(&e) => {
                Err(TxFailure::AtCommit(Error::postgres(host, e)))
            }
            Ok(Err(e)) => Err(TxFailure::AtCommit(Error::outcome_unknown(host, Some(e)))),
            Err(_) => Err(TxFailure::AtCommit(Error::outcome_unknown(host, None))),
        }
    }

    /// Drops a broken connection (or one to a host that is no longer what it was), then
    /// re-discovers when the error says the topology changed.
    async fn after_failure(
        &self,
        conn: PooledConnection,
        error: Error,
        classification: Classification,
        attempt: &Attempt<'_, Arc<str>>,
        observed_at: Instant,
    ) -> AttemptError {
        if error.breaks_connection() || error.triggers_discovery() {
            drop(PooledConnection::take(conn));
        } else {
            drop(conn);
        }
        if error.kind() == ErrorKind::QueryTimeout && self.core.settings.heartbeat.is_some() {
            return slow(error, classification);
        }
        Box::pin(self.after_attempt(&self.core.main, error, classification, attempt, observed_at))
            .await
    }
}

/// A step cut by the query timeout on a pool with the heartbeat on: slow is not dead. Marked
/// [`timed_out`](Classification::timed_out), so the runner records it on the host with
/// [`Endpoint::record_timeout`](crate::health::Endpoint::record_timeout), which asks for a
/// heartbeat now whose verdict counts, never as a failure of its own; and it starts no
/// re-discovery: the heartbeat tells a dead host from a slow query. Only the cut connection
/// (busy with the statement) was dropped. Retried as the error says (an idempotent handle, or
/// before COMMIT), after the usual backoff.
fn slow(error: Error, classification: Classification) -> AttemptError {
    AttemptError {
        error,
        classification: classification.timed_out(),
    }
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

/// The error of a call whose deadline ran out while it waited for a primary, before any
/// attempt.
fn out_of_time(pool: &FailoverPool, why: Option<crate::route::NoPrimary>) -> Error {
    let role = pool.core.main.role;
    match why {
        Some(e) => no_primary(role, &e),
        None => Error::no_host(role, None),
    }
}

/// The pool's error for a runner call that did not succeed: the last attempt's error, with
/// how the runner stopped; an unknown outcome when the retry policy's time limit cut the call
/// while `COMMIT` was in flight; an attempt timeout when it cut another step.
pub(crate) fn finish<T>(
    result: Result<T, RouteError<Arc<str>, AttemptError>>,
    commit: &CommitWatch,
) -> Result<T, Error> {
    let e = match result {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let stop = Stop {
        reason: e.reason(),
        attempts: e.attempts(),
        may_have_executed: e.may_have_executed(),
    };
    let timed_out = e.timed_out();
    let endpoint = e.endpoint().cloned();
    let in_flight = commit.take();
    let last = e.into_last_error().map(|a| a.error);
    let error = match (timed_out, in_flight) {
        (true, Some(host)) => Error::outcome_unknown(host, None),
        (true, None) => Error::attempt_timeout(endpoint, last),
        (false, _) => last.unwrap_or_else(|| Error::attempt_timeout(endpoint, None)),
    };
    Err(error.stopped(stop))
}

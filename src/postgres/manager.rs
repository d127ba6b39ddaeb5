//! The [`deadpool`] manager behind each role of a [`FailoverPool`](super::FailoverPool).

use std::fmt;
use std::sync::Arc;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};

use super::conn::PgConnection;
use super::core::Core;
use super::error::Error;
use super::role::TargetRole;
use crate::observe::{PoolMetrics, Stamp};

/// The host and generation of the runner's attempt that is taking a connection: deadpool's
/// `create` takes no argument, so the attempt hands them to the manager through the task it
/// runs in (see [`choose`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chosen {
    pub(crate) host: usize,
    pub(crate) generation: u64,
}

tokio::task_local! {
    static CHOSEN: Chosen;
}

/// Runs `fut` (a `timeout_get` of the pool) so that a connection it has to create goes to
/// `chosen.host`.
pub(crate) async fn choose<F: Future>(chosen: Chosen, fut: F) -> F::Output {
    CHOSEN.scope(chosen, fut).await
}

/// The [`deadpool`] manager behind [`FailoverPool`](super::FailoverPool): connects to the host
/// the runner's attempt chose and tags each connection with its host and the router
/// generation.
///
/// Recycling an idle connection (before it is handed out again) checks, without a round trip:
/// that it is open, that its generation is current (a failover bumps it), that its host is
/// available in the health tracker, that the role the server last reported still fits the
/// target (the server reports `in_hot_standby` and `default_transaction_read_only` whenever
/// they change) and, for the primary, that its host is still the active one. A connection to a
/// fallback role (a primary serving reads for `PreferStandby`) is dropped once a preferred
/// host is available again. Connections idle longer than `verify_idle_after` are also pinged
/// with an empty query, within the recycle timeout.
pub struct ConnectionManager {
    core: Arc<Core>,
    target: TargetRole,
    /// Its pool's instruments: `create_time` of each connection made.
    metrics: PoolMetrics,
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ConnectionManager {
    pub(crate) fn new(core: Arc<Core>, target: TargetRole, metrics: PoolMetrics) -> Self {
        ConnectionManager {
            core,
            target,
            metrics,
        }
    }

    /// The role this manager connects to.
    pub fn target(&self) -> TargetRole {
        self.target
    }
}

impl Manager for ConnectionManager {
    type Type = PgConnection;
    type Error = Error;

    async fn create(&self) -> Result<PgConnection, Error> {
        // Only the pool's own acquire takes connections, always inside `choose`.
        let Ok(chosen) = CHOSEN.try_with(|c| *c) else {
            return Err(Error::no_host(self.target, None));
        };
        // Boxed: deadpool keeps this future inside every `timeout_get`, whose state the
        // runner moves on each attempt; creating a connection is rare, taking one is not.
        let started = Stamp::now();
        let conn = Box::pin(
            self.core
                .connect(chosen.host, chosen.generation, self.target),
        )
        .await?;
        self.metrics.created(started);
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut PgConnection, metrics: &Metrics) -> RecycleResult<Error> {
        if conn.is_closed() {
            return Err(discard(conn, "connection closed"));
        }
        if conn.is_expired() {
            return Err(discard(conn, "older than the maximum connection age"));
        }
        if self
            .core
            .backend
            .name_moved(conn.host_index(), conn.addr_epoch())
        {
            return Err(discard(conn, "its host name moved to another address"));
        }
        // The round trips below are bounded here, not by deadpool, so that the usual check
        // (no round trip) builds no timer.
        let limit = self.core.settings.timeouts.recycle;
        let role = if conn.conn_state().reports_role() {
            conn.role()
        } else {
            // Servers before PostgreSQL 14 do not report their role: ask.
            let asked = tokio::time::timeout(limit, Box::pin(conn.query_role())).await;
            asked.ok().and_then(Result::ok)
        };
        let topology = &self.core.topology;
        let host = conn.host_index();
        topology
            .fits(host, conn.generation(), role, self.target)
            .map_err(|why| discard(conn, why))?;
        if let Some(after) = self.core.settings.verify_idle_after
            && metrics.last_used() > after
        {
            match tokio::time::timeout(limit, Box::pin(conn.simple_query(""))).await {
                Ok(Ok(_)) => {}
                Ok(Err(source)) => {
                    discard(conn, "idle check failed");
                    let host = conn.host_arc().clone();
                    return Err(RecycleError::Backend(Error::postgres(host, source)));
                }
                Err(_) => return Err(discard(conn, "idle check timed out")),
            }
        }
        Ok(())
    }
}

fn discard(conn: &PgConnection, why: &'static str) -> RecycleError<Error> {
    tracing::debug!(
        target: "switchover::postgres",
        host = %conn.host(),
        generation = conn.generation(),
        reason = why,
        "discarded a pooled connection"
    );
    RecycleError::message(why)
}

use std::fmt;
use std::sync::Arc;

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};

use super::conn::PgConnection;
use super::core::Core;
use super::error::Error;
use super::role::TargetRole;

/// The [`deadpool`] manager behind [`FailoverPool`](super::FailoverPool): connects to a host
/// of its target role (the router's primary, or a standby) and tags each connection with its
/// host and the router generation.
///
/// Recycling an idle connection (before it is handed out again) checks, without a round trip:
/// that it is open, that its generation is current (a failover bumps it), that its host is
/// available in the health tracker, and that the role the server last reported still fits the
/// target (the server reports `in_hot_standby` and `default_transaction_read_only` whenever they
/// change). A connection to a fallback role (a primary serving reads for `PreferStandby`) is
/// dropped once a preferred host is available again. Connections idle longer than
/// `verify_idle_after` are also pinged with an empty query, within the recycle timeout.
pub struct ConnectionManager {
    core: Arc<Core>,
    target: TargetRole,
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl ConnectionManager {
    pub(crate) fn new(core: Arc<Core>, target: TargetRole) -> Self {
        ConnectionManager { core, target }
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
        self.core.create(self.target).await
    }

    async fn recycle(&self, conn: &mut PgConnection, metrics: &Metrics) -> RecycleResult<Error> {
        let core = &self.core;
        let generation = core.router.generation();
        if conn.is_closed() {
            return Err(discard(conn, "connection closed"));
        }
        if conn.generation() != generation {
            return Err(discard(conn, "older generation"));
        }
        if !core.endpoints[conn.host_index()].is_available() {
            return Err(discard(conn, "host unavailable"));
        }
        let role = if conn.conn_state().reports_role() {
            conn.role()
        } else {
            // Servers before PostgreSQL 14 do not report their role: ask.
            conn.query_role().await.ok()
        };
        let Some(role) = role else {
            return Err(discard(conn, "role unknown"));
        };
        if !self.target.accepts(role) {
            return Err(discard(conn, "server role changed"));
        }
        if !self.target.prefers(role) && core.preferred_available(self.target) {
            return Err(discard(conn, "a preferred host is available again"));
        }
        if let Some(after) = core.settings.verify_idle_after
            && metrics.last_used() > after
        {
            conn.simple_query("").await.map_err(|source| {
                discard(conn, "idle check failed");
                RecycleError::Backend(Error::Postgres {
                    host: conn.host_arc().clone(),
                    source,
                })
            })?;
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

//! What a pool's clones and its two deadpool managers share: the settings, the backend, the
//! topology, the connect limiter, and the acquire policy and host choice of each role.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::backend::PgBackend;
use super::conn::{End, PgConnection};
use super::error::Error;
use super::read::RolePolicy;
use super::role::{ServerRole, TargetRole};
use super::settings::Settings;
use super::topology::{HostRoles, Topology};
use crate::health::HealthState;
use crate::observe::PoolMetrics;
use crate::retry::RetryPolicy;
use crate::route::{Follower, Target};

/// One of the pool's two roles (what `get` hands out, and what `get_read` does): the target,
/// where its connections go, and its deadpool pool's `db.client.connection.*` instruments.
#[derive(Debug)]
pub(crate) struct Side {
    pub(crate) role: TargetRole,
    policy: RolePolicy,
    pub(crate) metrics: PoolMetrics,
}

impl Side {
    /// `pool` names its instruments (`{observe name}:main` or `:read`).
    pub(crate) fn new(
        role: TargetRole,
        roles: Arc<HostRoles>,
        pool: impl FnOnce() -> String,
    ) -> Self {
        Side {
            role,
            policy: RolePolicy::new(role, roles),
            metrics: PoolMetrics::named(pool),
        }
    }

    /// The runner's target for this role: the router's active endpoint for the primary, the
    /// role preference for the others.
    pub(crate) fn target(&self) -> Target<'_, Arc<str>> {
        match self.role {
            TargetRole::Primary => Target::Active,
            _ => Target::Read(&self.policy),
        }
    }

    /// `true` when the runner's choice may take a connection for this role.
    pub(crate) fn admits(&self, endpoint: &crate::health::Endpoint<Arc<str>>) -> bool {
        self.role == TargetRole::Primary || self.policy.admits(endpoint)
    }
}

/// Shared state of one [`FailoverPool`](super::FailoverPool) and its clones.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) backend: Arc<PgBackend>,
    pub(crate) topology: Topology,
    /// Bounds the connects in flight across both roles.
    connects: Semaphore,
    /// The runner policy of one acquire, built once.
    pub(crate) acquire_policy: RetryPolicy,
    pub(crate) main: Side,
    pub(crate) read: Side,
    /// The follower of the pool's authority, if it has one (it names the primary).
    pub(crate) follower: Option<Follower<Arc<str>>>,
}

impl Core {
    pub(crate) fn new(
        settings: Settings,
        backend: Arc<PgBackend>,
        topology: Topology,
    ) -> Result<Core, crate::ConfigError> {
        let name = &settings.observe.name;
        let side =
            |role, which| Side::new(role, topology.roles.clone(), || format!("{name}:{which}"));
        Ok(Core {
            connects: Semaphore::new(settings.max_concurrent_connects),
            acquire_policy: settings.acquire_policy()?,
            main: side(settings.target_role, "main"),
            read: side(settings.read_role, "read"),
            settings,
            backend,
            topology,
            follower: None,
        })
    }

    /// Opens a connection for `target` to `host` (the host the runner's attempt chose),
    /// tagged with `generation`, and records the role the server reported.
    ///
    /// # Errors
    ///
    /// The connect's error; [`Error::no_host`] when the host was declared down (or, for the
    /// primary, the primary moved) during the connect; [`Error::wrong_role`] when the server is not of a role `target`
    /// accepts (the connection is closed); closed when the pool is.
    pub(crate) async fn connect(
        &self,
        host: usize,
        generation: u64,
        target: TargetRole,
    ) -> Result<PgConnection, Error> {
        let _permit = self.connects.acquire().await.map_err(|_| Error::closed())?;
        let login = self.settings.timeouts.login;
        // A connect to a host that is declared down, or to the primary that moved away, is
        // abandoned at once: on a frozen host it would wait out the login timeout.
        let mut end = self.end_of(host, generation);
        let mut conn = tokio::select! {
            conn = self.backend.connect(host, generation, login) => conn?,
            why = &mut end => {
                let why = format!("{}: {why} while connecting", self.topology.name(host));
                return Err(Error::no_host(target, Some(Arc::from(why))));
            }
        };
        // Also ended once its host's name is confirmed at another address.
        let end = match self.backend.retired(host, conn.addr_epoch()) {
            None => end,
            Some(retired) => Box::pin(async move {
                tokio::select! {
                    why = end => why,
                    () = retired => "its host name moved to another address",
                }
            }),
        };
        conn.end_when(end);
        let role = conn.role().unwrap_or(ServerRole::ReadOnly);
        self.topology.record_role(host, role);
        let name = self.topology.name(host);
        if !target.accepts(role) {
            return Err(Error::wrong_role(name.clone(), role, target));
        }
        tracing::debug!(
            target: "switchover::postgres",
            host = %name,
            role = %role,
            wanted = %target,
            generation,
            "connected"
        );
        Ok(conn)
    }

    /// What ends a connection to `host` made in `generation`: the host declared down (from
    /// now on: a connection made to a host that is down already, as a last resort, is not
    /// ended for it), or, for the host that was the router's primary then, the primary moving
    /// away.
    fn end_of(&self, host: usize, generation: u64) -> End {
        let t = &self.topology;
        let endpoint = &t.endpoints[host];
        let down = (endpoint.state() != HealthState::Down).then(|| endpoint.down_signal());
        let moved = (t.active_index() == host).then(|| t.router.generation_moved(generation));
        Box::pin(async move {
            let down = async move {
                match down {
                    Some(d) => d.await,
                    None => std::future::pending().await,
                }
            };
            let moved = async move {
                match moved {
                    Some(m) => drop(m.await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = down => "host declared down",
                () = moved => "the primary moved",
            }
        })
    }

    /// Stops handing out connections: no more connects, no more re-discovery.
    pub(crate) fn close(&self) {
        if let Some(f) = &self.follower {
            f.close();
        }
        self.connects.close();
        self.topology.rediscovery.close();
        self.backend.close();
    }
}

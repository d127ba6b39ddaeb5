//! What a [`FailoverPool`] reports about itself: its health document, its incident timeline
//! (both read from the pool's router, see [`observe`](crate::observe)), how many times it found
//! two writable primaries, and, with feature `metrics`, its deadpool pools as
//! `db.client.connection.*`.

use std::sync::Arc;

use super::pool::FailoverPool;
use super::role::TargetRole;
use crate::observe::{Components, Health, Need, Status, Timeline};

/// The key of the primary's check in [`FailoverPool::health`].
pub(crate) const PRIMARY_KEY: &str = "postgres:primary";
/// The key of the other hosts' checks in [`FailoverPool::health`].
pub(crate) const STANDBY_KEY: &str = "postgres:standby";

impl FailoverPool {
    /// The pool's health now: the router's active host (where primary connections go) under
    /// `postgres:primary`, every other host under `postgres:standby` (component id:
    /// `host:port`), in the shape of the IETF health-check draft. No I/O and no lock on the
    /// steady path: atomic reads of the router, the hosts' states and the re-discovery.
    ///
    /// Each check observes the router's `role`, `state`, `priority`, `latencyMs` (moving
    /// average, when known), `failuresTotal`, `ejections` and `stateForMs`, and `serverRole`
    /// (`primary`, `standby`, `read-only primary`: what the server last reported; absent when
    /// it was never reached); the primary's check also `generation`, `inDoubt` and
    /// `rediscoveryRuns`.
    ///
    /// | status | when |
    /// |---|---|
    /// | `pass` | the primary is confirmed and every host is up |
    /// | `warn` | failed over (the primary is not the first host and the first one is not known to be a standby), or a host is down, probing or draining; for a pool whose [`target_role`](Self::target_role) is not the primary, also while the primary is in doubt: served |
    /// | `fail` | writes cannot be served now: no primary candidate is available, or (target role primary) the primary is in doubt (an error from it or a re-discovery run that found none, and no run has confirmed one since): `get` waits for re-discovery |
    ///
    /// ```no_run
    /// # fn demo(pool: &switchover::postgres::FailoverPool) {
    /// let health = pool.health();
    /// let code = health.status.http_code(); // 200 for pass and warn, 503 for fail
    /// for check in health.checks("postgres:standby") {
    ///     println!("{} {} {:?}", check.component_id, check.status, check.observed);
    /// }
    /// # let _ = code; }
    /// ```
    pub fn health(&self) -> Health {
        let t = &self.core.topology;
        let writes = self.core.settings.target_role == TargetRole::Primary;
        let components = Components::new("postgres")
            .others("standby")
            .need(if writes { Need::Writes } else { Need::Reads });
        let mut health = t.router.health(&components);
        let active = t.active_index();
        let in_doubt = t.rediscovery.in_doubt();
        for i in 0..t.len() {
            let key = if i == active {
                PRIMARY_KEY
            } else {
                STANDBY_KEY
            };
            let Some(check) = health.check_mut(key, t.name(i)) else {
                continue;
            };
            if let Some(role) = t.server_role(i) {
                check.observe("serverRole", role.to_string());
            }
            if i == active {
                check.observe("inDoubt", in_doubt);
                check.observe("rediscoveryRuns", t.rediscovery.runs());
                if in_doubt {
                    let (status, what) = if writes {
                        (Status::Fail, "writes wait for re-discovery")
                    } else {
                        (Status::Warn, "re-discovery is running")
                    };
                    check.degrade(status, format!("primary in doubt: {what}"));
                }
            }
        }
        health.refresh_status();
        health
    }

    /// The pool's incident timeline: the last events of its hosts (down, probes, re-discovery
    /// runs, switches) and each failover with its phases, which add up to the client gap. See
    /// [`Timeline`].
    pub fn timeline(&self) -> Timeline<Arc<str>> {
        self.core.topology.router.timeline()
    }

    /// How many times discovery found more than one host writable at once (a split brain: a
    /// standby promoted while the old primary still takes writes) since the pool was built.
    /// Counted once per set of hosts found writable together, again only after one of them was
    /// seen as something else (a standby, read-only, unreachable) or another host joined the
    /// set; each is also a [`WritablePrimaries`](crate::observe::EventKind::WritablePrimaries)
    /// event in the [`timeline`](Self::timeline) (both hosts as `host:port`, their timelines,
    /// the one followed), a `tracing` warning "two writable primaries" (target
    /// `switchover::postgres`) and, with feature `metrics`, `switchover.writable_primaries`.
    /// The pool follows one of them, but the other still takes its other clients' writes: a
    /// non-zero count is worth an alert.
    pub fn writable_primaries_detected(&self) -> u64 {
        self.core.topology.roles.writable.detected()
    }

    /// With feature `metrics`: starts sampling the pool's two deadpool pools every
    /// [`METRICS_EVERY`] into `db.client.connection.count` (idle, used), `.max` and
    /// `.pending_requests`, named `{observe name}:main` and `{observe name}:read` (the
    /// instruments of each role, which also time its connects, checkouts and borrows). The task
    /// holds the pools weakly and stops when the last clone is dropped or the pool is closed.
    /// Without the feature, nothing.
    pub(super) fn start_metrics(&self) {
        #[cfg(feature = "metrics")]
        {
            let sides = [
                (self.main.weak(), self.core.main.metrics.clone()),
                (self.read.weak(), self.core.read.metrics.clone()),
            ];
            tokio::spawn(sample(sides));
        }
    }
}

#[cfg(feature = "metrics")]
use crate::observe::PoolMetrics;

/// How often [`FailoverPool::start_metrics`] samples deadpool's status.
#[cfg(feature = "metrics")]
pub(crate) const METRICS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(feature = "metrics")]
async fn sample(
    sides: [(
        deadpool::managed::WeakPool<super::manager::ConnectionManager>,
        PoolMetrics,
    ); 2],
) {
    let mut tick = tokio::time::interval(METRICS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (weak, metrics) in &sides {
            let Some(pool) = weak.upgrade() else {
                return;
            };
            if pool.is_closed() {
                return;
            }
            let s = pool.status();
            metrics.max(s.max_size);
            metrics.connections(s.available, s.size.saturating_sub(s.available));
            metrics.pending(s.waiting);
        }
    }
}

//! Taking a connection: [`FailoverPool::get`] and [`FailoverPool::get_read`] through the
//! core's runner, one attempt per host the runner's target picks, and what an attempt's
//! failure means for the runner and for re-discovery.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{Object, Pool, PoolError};
use tokio::time::Instant;

use super::core::Side;
use super::error::{Error, ErrorKind, Stop};
use super::manager::{Chosen, ConnectionManager, choose};
use super::pool::{FailoverPool, PooledConnection};
use super::role::TargetRole;
use crate::error::{Classification, Classify};
use crate::observe::Stamp;
use crate::retry::{MAX_DEADLINE, RetryPolicy, StopReason};
use crate::route::{Attempt, NoPrimary, RouteError};

/// What one attempt of the runner failed with, and how it counts.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub(crate) error: Error,
    pub(crate) classification: Classification,
}

/// The verdict on an attempt whose host cannot serve the role (a wrong role at connect, or
/// no host of the role): retried, but never counted against a host that is healthy, only of
/// another role. The runner records it on the attempt's endpoint as throttling, the one
/// retried outcome that does not eject.
pub(crate) const DECLINED: Classification = Classification::throttled().not_executed();

/// Whether the runner may start right away, and with which policy.
pub(crate) enum Settled<'p> {
    /// Start with this policy (the configured one, or one with what is left of its deadline).
    Ready(Cow<'p, RetryPolicy>),
    /// The deadline ran out while waiting; why, when re-discovery said.
    OutOfTime(Option<NoPrimary>),
}

impl FailoverPool {
    /// A connection of the pool's target role (by default the writable primary), within the
    /// acquire timeout.
    ///
    /// Reuses an idle connection when one passes the recycle check (open, current
    /// generation, host available, role still right), else connects to the host the runner
    /// picks. When the connect fails in a way that says the topology changed (refused, timed
    /// out, wrong role, shutting down), the primary is re-discovered (every host probed in
    /// parallel) and the next attempt goes to the primary found; attempts are spaced by the
    /// reconnect backoff — all within the acquire timeout, never past it, even when every host
    /// is down.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::AcquireTimeout`] error with the last failure as its source; a closed
    /// pool; or, at once and without waiting for the timeout, an error that will not fix
    /// itself (for example [`ErrorKind::Connect`] for a rejected password or an unknown
    /// database).
    pub async fn get(&self) -> Result<PooledConnection, Error> {
        self.acquire(&self.main, &self.core.main).await
    }

    /// A connection for reads, of the pool's read role (by default
    /// [`TargetRole::PreferStandby`]: a hot standby when one is up, else the primary). Same
    /// guarantees as [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn get_read(&self) -> Result<PooledConnection, Error> {
        self.acquire(&self.read, &self.core.read).await
    }

    async fn acquire(
        &self,
        pool: &Pool<ConnectionManager>,
        side: &Side,
    ) -> Result<PooledConnection, Error> {
        let timeout = self.core.settings.timeouts.acquire;
        let deadline = Instant::now() + timeout;
        let policy = match self.settle(side, &self.core.acquire_policy).await {
            Settled::Ready(p) => p,
            Settled::OutOfTime(why) => {
                let last = why.map(|e| no_primary(side.role, &e));
                return Err(Error::acquire_timeout(side.role, timeout, last));
            }
        };
        let result = self
            .core
            .topology
            .router
            .call(&*policy, |attempt| async move {
                self.take(pool, side, &attempt, deadline).await
            })
            .target(side.target())
            .idempotent(true)
            .classify_with(|e: &AttemptError| e.classification)
            .run()
            .await;
        result.map_err(|e| acquire_error(e, side.role, timeout))
    }

    /// Waits, before the first attempt, for what placing a connection needs: for the primary,
    /// a confirmed primary (two atomic loads when it is not in doubt); for the other roles,
    /// the first discovery run, which learns every host's role. Returns `policy`, or one with
    /// what is left of its deadline after waiting.
    pub(crate) async fn settle<'p>(&self, side: &Side, policy: &'p RetryPolicy) -> Settled<'p> {
        let t = &self.core.topology;
        let ready = match side.role {
            TargetRole::Primary => self.primary_confirmed(),
            _ => t.roles.learned(),
        };
        if ready {
            return Settled::Ready(Cow::Borrowed(policy));
        }
        if let (TargetRole::Primary, Some(f)) = (side.role, &self.core.follower) {
            return Box::pin(self.hold_to_place(f, policy)).await;
        }
        Box::pin(self.wait_to_place(side, policy)).await
    }

    /// The slow path of [`settle`](Self::settle) (boxed there: its futures are large).
    async fn wait_to_place<'p>(&self, side: &Side, policy: &'p RetryPolicy) -> Settled<'p> {
        if self.main.is_closed() {
            // Re-discovery is stopped too: the first attempt reports the closed pool.
            return Settled::Ready(Cow::Borrowed(policy));
        }
        let t = &self.core.topology;
        let started = Instant::now();
        let limit = policy.deadline();
        let until = started + limit.unwrap_or(MAX_DEADLINE);
        let why = match side.role {
            TargetRole::Primary => tokio::time::timeout_at(until, t.rediscovery.primary())
                .await
                .ok()
                .and_then(Result::err),
            _ => tokio::time::timeout_at(until, self.first_run_or_preferred(side.role))
                .await
                .ok()
                .flatten(),
        };
        let Some(limit) = limit else {
            return Settled::Ready(Cow::Borrowed(policy));
        };
        let left = limit.saturating_sub(started.elapsed());
        match policy.to_builder().deadline(left).build() {
            Ok(p) if !left.is_zero() => Settled::Ready(Cow::Owned(p)),
            _ => Settled::OutOfTime(why),
        }
    }

    /// Waits for the first discovery run to end, or for a host that `role` prefers to be
    /// found before it ends (a frozen host then holds no read up for its probe timeout).
    /// Returns why the run found no primary, if it did not.
    async fn first_run_or_preferred(&self, role: TargetRole) -> Option<NoPrimary> {
        let t = &self.core.topology;
        let mut run = std::pin::pin!(t.rediscovery.rediscover_after(t.started_at));
        loop {
            let mut recorded = std::pin::pin!(t.roles.recorded());
            recorded.as_mut().enable();
            if t.preferred_available(role) {
                return None;
            }
            tokio::select! {
                result = &mut run => return result.err(),
                () = recorded => {}
            }
        }
    }

    /// The fast path of the core's `Rediscovery::primary`: confirmed, and the router's
    /// active endpoint is that primary.
    pub(super) fn primary_confirmed(&self) -> bool {
        self.core.topology.primary_confirmed()
    }

    /// One attempt at a connection for `side` on the host the runner picked, waiting for a
    /// free slot until `wait_until`.
    pub(crate) async fn take(
        &self,
        pool: &Pool<ConnectionManager>,
        side: &Side,
        attempt: &Attempt<'_, Arc<str>>,
        wait_until: Instant,
    ) -> Result<PooledConnection, AttemptError> {
        if let (TargetRole::Primary, Some(f)) = (side.role, &self.core.follower)
            && !self.primary_confirmed()
        {
            Box::pin(self.hold_attempt(f, attempt, wait_until)).await?;
        }
        let observed_at = Instant::now();
        let endpoint = attempt.endpoint();
        if !side.admits(endpoint) {
            // The runner had nothing better: no available host can serve this role.
            return Err(AttemptError {
                error: Error::no_host(side.role, None),
                classification: DECLINED,
            });
        }
        let chosen = Chosen {
            host: self.core.topology.index_of(endpoint),
            generation: attempt.generation(),
        };
        let wait = wait_until.saturating_duration_since(observed_at);
        match self.checkout(pool, side, chosen, wait).await {
            Ok(conn) => {
                let borrow = side.metrics.checked_out(Stamp::at(observed_at));
                Ok(PooledConnection::new(conn, borrow))
            }
            Err(error) => {
                let classification = match error.kind() {
                    // The pool's own limit, or closed: trying again cannot help.
                    ErrorKind::AcquireTimeout | ErrorKind::Closed => Classification::permanent(),
                    ErrorKind::WrongRole | ErrorKind::NoHost => DECLINED,
                    _ => error.classify(),
                };
                // Boxed, like every failure path: the runner moves the attempt's future.
                Err(
                    Box::pin(self.after_attempt(side, error, classification, attempt, observed_at))
                        .await,
                )
            }
        }
    }

    /// Takes an idle connection that passes the recycle check, or has the manager create one
    /// on `chosen.host`. A connection made while the primary switched is kept only if it fits
    /// the new generation.
    async fn checkout(
        &self,
        pool: &Pool<ConnectionManager>,
        side: &Side,
        chosen: Chosen,
        wait: Duration,
    ) -> Result<Object<ConnectionManager>, Error> {
        let role = side.role;
        // First without a timer: an idle connection or a free slot is taken at once. Only a
        // full pool waits, up to `wait`. The recycle check bounds its own round trips.
        let timeouts = |wait| deadpool::managed::Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        let mut got = choose(chosen, pool.timeout_get(&timeouts(Duration::ZERO))).await;
        if matches!(got, Err(PoolError::Timeout(_))) && !wait.is_zero() {
            got = Box::pin(choose(chosen, pool.timeout_get(&timeouts(wait)))).await;
        }
        let mut conn = match got {
            Ok(conn) => conn,
            Err(PoolError::Backend(e)) => return Err(e),
            Err(PoolError::Timeout(_)) => {
                side.metrics.timeout();
                return Err(Error::acquire_timeout(
                    role,
                    self.core.settings.timeouts.acquire,
                    None,
                ));
            }
            Err(_) => return Err(Error::closed()),
        };
        let t = &self.core.topology;
        let generation = t.router.generation();
        if conn.generation() != generation {
            match t.fits(conn.host_index(), generation, conn.role(), role) {
                Ok(()) => conn.set_generation(generation),
                Err(why) => {
                    drop(Object::take(conn));
                    return Err(Error::no_host(role, Some(Arc::from(why))));
                }
            }
        }
        Ok(conn)
    }

    /// After a failed attempt: when the error says the primary may be gone (and the attempt
    /// was on the primary), asks the core's re-discovery about it and lets the runner retry at
    /// once if the primary moved since the attempt started; after a wrong role (recorded, so
    /// the next choice differs) also at once.
    pub(crate) async fn after_attempt(
        &self,
        side: &Side,
        error: Error,
        mut classification: Classification,
        attempt: &Attempt<'_, Arc<str>>,
        observed_at: Instant,
    ) -> AttemptError {
        let t = &self.core.topology;
        let on_primary = side.role == TargetRole::Primary
            || attempt.endpoint().ptr_eq(t.router.active().endpoint());
        if on_primary && error.triggers_discovery() {
            tracing::info!(
                target: "switchover::postgres",
                host = %attempt.endpoint().id(),
                error = %error,
                cause = ?error.as_postgres().map(ToString::to_string),
                "failover-class error; re-discovering"
            );
            if let Ok(generation) = self.rediscover_after(observed_at).await
                && generation != attempt.generation()
            {
                classification = classification.with_retry_after(Duration::ZERO);
            }
        } else if error.kind() == ErrorKind::WrongRole {
            classification = classification.with_retry_after(Duration::ZERO);
        }
        AttemptError {
            error,
            classification,
        }
    }
}

/// The error of a `get` the runner gave up on: what will not fix itself as it is, anything
/// else as an acquire timeout with the last failure as its source.
fn acquire_error(
    e: RouteError<Arc<str>, AttemptError>,
    role: TargetRole,
    timeout: Duration,
) -> Error {
    let stop = Stop {
        reason: e.reason(),
        attempts: e.attempts(),
        may_have_executed: false,
    };
    let permanent = e.reason() == StopReason::Permanent;
    match e.into_last_error().map(|a| a.error) {
        Some(last) if permanent || matches!(last.kind(), ErrorKind::AcquireTimeout) => {
            last.stopped(stop)
        }
        last => Error::acquire_timeout(role, timeout, last).stopped(stop),
    }
}

/// What re-discovery found instead of a primary, as the pool's error.
pub(crate) fn no_primary(role: TargetRole, e: &NoPrimary) -> Error {
    Error::no_host(role, Some(Arc::from(e.reason())))
}

//! The pool obeying an external authority ([`FailoverPoolBuilder::authority`]): the authority
//! names the primary, the pool's role probes confirm it, and writes wait for it meanwhile.
//!
//! With an authority the pool's own primary choice is gone: the router's gate is closed on the
//! host the authority names (see [`Follower`]), re-discovery only ever confirms that host (a
//! writable host it does not name is never a candidate, never the router's active host, so no
//! connection for a write is ever made to it or handed out on it), and a write that finds the
//! named host not confirmed as a writable primary is held ([`Follower::hold`]) until it is, or
//! until the authority names another host (then it looks again at once), or until its
//! deadline. Before the first record, no host is confirmed: writes wait for it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::acquire::{AttemptError, DECLINED, Settled};
use super::builder::FailoverPoolBuilder;
use super::error::Error;
use super::pool::FailoverPool;
use super::role::TargetRole;
use super::topology::Topology;
use crate::error::ConfigError;
use crate::retry::{MAX_DEADLINE, RetryPolicy};
use crate::route::{Attempt, Follower, FollowerBuilder, Held, IntoFollower, NoPrimary};

/// Starts the pool's follower over its router and re-discovery.
pub(crate) type AuthorityStarter =
    Box<dyn FnOnce(FollowerBuilder<Arc<str>>) -> Result<Follower<Arc<str>>, ConfigError> + Send>;

/// A held write gives up this long before its deadline, so the runner's deadline never cuts it
/// (a cut attempt may have executed; a held one surely did not).
const HOLD_MARGIN: Duration = Duration::from_millis(20);

impl FailoverPoolBuilder {
    /// Makes an external authority name the primary instead of the pool's own re-discovery:
    /// `.authority(Patroni::builder().members(["pg-a:8008", "pg-b:8008"]))`, or any
    /// [`Authority`](crate::route::Authority) over the pool's hosts (ids `host:port`, as the
    /// hosts are given). Default: none, the pool finds the writable primary itself.
    ///
    /// The pool keeps the follower (see [`FailoverPool::follower`]) and writes only to the host
    /// the authority names, once its role probe says it is a writable primary; while it is
    /// not (a switchover under way, a killed leader whose key has not expired, the authority
    /// unreachable with [`KeepLast`](crate::route::WhenUnreachable::KeepLast)), writes wait,
    /// and the ones waiting go as soon as the named host is confirmed. A writable host the
    /// authority does not name is never written to. Reads still go where the read role and
    /// the hosts' health say.
    pub fn authority(mut self, authority: impl IntoFollower<Arc<str>>) -> Self {
        self.authority = Some(Box::new(move |b| authority.into_follower(b)));
        self
    }
}

/// Starts `start`'s follower over `topology` (started with its gate closed).
pub(super) fn follow(
    start: AuthorityStarter,
    topology: &Topology,
) -> Result<Follower<Arc<str>>, ConfigError> {
    start(Follower::builder(&topology.router).confirmed_by(&topology.rediscovery))
}

impl FailoverPool {
    /// The follower of the pool's [`authority`](FailoverPoolBuilder::authority), if it has
    /// one: subscribe to its events, read the record it follows.
    pub fn follower(&self) -> Option<&Follower<Arc<str>>> {
        self.core.follower.as_ref()
    }

    /// Why the named host is not confirmed, for a write that waited for it in vain.
    fn unconfirmed(&self, waited: Duration) -> NoPrimary {
        let t = &self.core.topology;
        let why = match t.router.named() {
            Some(named) => format!(
                "the authority names {}, not confirmed as a writable primary within {waited:?}",
                named.id()
            ),
            None => format!("the authority named no primary within {waited:?}"),
        };
        NoPrimary::new(why)
    }

    /// `true` when a write may go to the router's active host now (see `primary_confirmed`),
    /// or the pool is closed (the attempt reports it).
    fn may_write(&self) -> bool {
        self.main.is_closed() || self.primary_confirmed()
    }

    /// Before the first attempt of a write while an authority decides: holds it until the
    /// named host is confirmed, within `policy`'s deadline (the policy returned has what is
    /// left of it).
    pub(super) async fn hold_to_place<'p>(
        &self,
        follower: &Follower<Arc<str>>,
        policy: &'p RetryPolicy,
    ) -> Settled<'p> {
        let started = Instant::now();
        let limit = policy.deadline();
        let end = started + limit.map_or(MAX_DEADLINE, |l| l.saturating_sub(HOLD_MARGIN));
        loop {
            match follower.hold(|| self.may_write(), end).await {
                Held::Ready => break,
                Held::Moved => {}
                Held::Expired => {
                    return Settled::OutOfTime(Some(self.unconfirmed(started.elapsed())));
                }
            }
        }
        let Some(limit) = limit else {
            return Settled::Ready(Cow::Borrowed(policy));
        };
        let left = limit.saturating_sub(started.elapsed());
        match policy.to_builder().deadline(left).build() {
            Ok(p) if !left.is_zero() => Settled::Ready(Cow::Owned(p)),
            _ => Settled::OutOfTime(None),
        }
    }

    /// At the start of an attempt for a write while an authority decides and the named host
    /// is not confirmed: holds it until it is (`Ok`: go on), at most until `until`. A new
    /// record meanwhile, or a confirmed host other than the attempt's, ends the attempt,
    /// never sent, and the runner picks the named host at once.
    pub(super) async fn hold_attempt(
        &self,
        follower: &Follower<Arc<str>>,
        attempt: &Attempt<'_, Arc<str>>,
        until: Instant,
    ) -> Result<(), AttemptError> {
        let started = Instant::now();
        let end = until.checked_sub(HOLD_MARGIN).unwrap_or(until);
        let held = follower.hold(|| self.may_write(), end).await;
        let t = &self.core.topology;
        let here = attempt.endpoint().ptr_eq(t.router.active().endpoint());
        let (why, classification) = match held {
            Held::Ready if here => return Ok(()),
            Held::Ready | Held::Moved => (
                "the authority named another primary while the write was held".to_owned(),
                DECLINED.with_retry_after(Duration::ZERO),
            ),
            Held::Expired => (
                self.unconfirmed(started.elapsed()).reason().to_owned(),
                DECLINED,
            ),
        };
        Err(AttemptError {
            error: Error::no_host(TargetRole::Primary, Some(Arc::from(why))),
            classification,
        })
    }
}

#[cfg(test)]
mod tests;

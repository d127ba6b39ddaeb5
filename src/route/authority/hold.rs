//! What adapters share when they obey an authority: [`IntoFollower`], the argument of their
//! builder knobs, and [`Follower::hold`], a write waiting for the endpoint the authority names.

use tokio::time::Instant;

use super::{Authority, Follower, FollowerBuilder};
use crate::error::ConfigError;
use crate::health::EndpointId;

/// How often a held write looks at its condition (besides waking at once on a new record).
#[cfg_attr(not(any(feature = "postgres", feature = "dynamodb")), allow(dead_code))]
pub(crate) const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// What an adapter's authority knob takes (such as `FailoverPoolBuilder::authority`, feature
/// `postgres`): something that starts a [`Follower`] from the builder the adapter prepares over
/// its router.
///
/// Every [`Authority`] is one (started with the [`FollowerBuilder`] defaults: a read every
/// 250 ms, each within 1 s, [`KeepLast`](super::WhenUnreachable::KeepLast)); so is a builder
/// of an authority that must know the router's endpoints first and sets its own polling (such
/// as `postgres::patroni::PatroniBuilder`).
pub trait IntoFollower<K>: Send + 'static {
    /// Starts the follower with `builder` (made by the adapter: keep its router).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the invalid setting.
    fn into_follower(self, builder: FollowerBuilder<K>) -> Result<Follower<K>, ConfigError>;
}

impl<K: EndpointId, A: Authority<K>> IntoFollower<K> for A {
    fn into_follower(self, builder: FollowerBuilder<K>) -> Result<Follower<K>, ConfigError> {
        builder.start(self)
    }
}

/// How a [`Follower::hold`] ended.
#[cfg_attr(not(any(feature = "postgres", feature = "dynamodb")), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// The condition holds: the write may go to the endpoint it was held for.
    Ready,
    /// A new record was followed: the write must look again where to go.
    Moved,
    /// `end` came first.
    Expired,
}

impl<K: EndpointId> Follower<K> {
    /// Holds a write for the endpoint the authority names while it cannot take it (`ready` is
    /// false: unreachable, or not confirmed as primary yet). The write must not go elsewhere,
    /// so it waits, instead of spinning through its attempts, until `ready` holds (looked at
    /// every 20 ms), a new record is followed (at once), or `end`.
    #[cfg_attr(not(any(feature = "postgres", feature = "dynamodb")), allow(dead_code))]
    pub(crate) async fn hold(&self, ready: impl Fn() -> bool, end: Instant) -> Held {
        let seen = self.epoch();
        loop {
            if ready() {
                return Held::Ready;
            }
            if self.epoch() != seen {
                return Held::Moved;
            }
            let now = Instant::now();
            if now >= end {
                return Held::Expired;
            }
            tokio::select! {
                () = self.epoch_changed(seen) => return Held::Moved,
                () = tokio::time::sleep(HOLD_POLL.min(end - now)) => {}
            }
        }
    }
}

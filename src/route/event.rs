use std::fmt;

use tokio::time::Instant;

/// Why the router changed its active endpoint.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SwitchReason {
    /// The active endpoint stopped being available (down or probing).
    Failover,
    /// The active endpoint was drained (a planned switchover or a drill).
    Evacuated,
    /// The active endpoint is now known to be a replica (demoted primary).
    Demoted,
    /// A preferred endpoint stayed up for the failback delay.
    Failback,
    /// [`Router::switch_to`](super::Router::switch_to).
    Manual,
    /// An [`Authority`](super::Authority) the router follows named another endpoint (see
    /// [`Follower`](super::Follower)).
    Authority,
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchReason::Failover => "failover",
            SwitchReason::Evacuated => "evacuated",
            SwitchReason::Demoted => "demoted to replica",
            SwitchReason::Failback => "failback",
            SwitchReason::Manual => "manual switch",
            SwitchReason::Authority => "named by the authority",
        })
    }
}

/// A change of the router's active endpoint or of its all-down state, sent to every subscriber
/// (see [`Router::subscribe`](super::Router::subscribe)) in the order it happened.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteEvent<K> {
    /// The active endpoint changed; `generation` is the new generation.
    Switched {
        /// The previous active endpoint.
        from: K,
        /// The new active endpoint.
        to: K,
        /// The generation after the switch (one more than before).
        generation: u64,
        /// Why.
        reason: SwitchReason,
        /// When.
        at: Instant,
    },
    /// No primary candidate is available; the router keeps returning `active`, its best guess.
    AllDownEntered {
        /// The endpoint the router returns meanwhile.
        active: K,
        /// The current generation.
        generation: u64,
        /// When.
        at: Instant,
    },
    /// A primary candidate is available again.
    AllDownLeft {
        /// The active endpoint.
        active: K,
        /// The current generation.
        generation: u64,
        /// When.
        at: Instant,
    },
}

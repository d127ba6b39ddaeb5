use std::fmt;

/// The health of one endpoint, as the tracker sees it.
///
/// ```text
///  Up ──(failures)──▶ Down ──(ejection time)──▶ Probing ──(successes)──▶ Up
///                      ▲                           │
///                      └───(failure, longer ejection)
/// ```
///
/// [`Draining`](HealthState::Draining) is set only by hand (see [`Endpoint::drain`]): the endpoint
/// works but takes no new work.
///
/// [`Endpoint::drain`]: super::Endpoint::drain
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Healthy: available for new work.
    Up,
    /// The ejection time is over; the endpoint must answer enough probes or trial calls in a
    /// row before it is [`Up`](HealthState::Up) again. Not available for new work.
    Probing,
    /// Ejected after failures (or forced down): not available until its ejection time is over.
    Down,
    /// Drained by hand: alive, but takes no new work. Not "down": the router moves work away
    /// without counting it as an outage.
    Draining,
}

impl HealthState {
    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            HealthState::Up => 0,
            HealthState::Probing => 1,
            HealthState::Down => 2,
            HealthState::Draining => 3,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Self {
        match v {
            0 => HealthState::Up,
            1 => HealthState::Probing,
            2 => HealthState::Down,
            _ => HealthState::Draining,
        }
    }

    /// `true` for [`Up`](HealthState::Up), the only state that takes new work.
    #[inline]
    pub const fn is_available(self) -> bool {
        matches!(self, HealthState::Up)
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Up => "up",
            HealthState::Probing => "probing",
            HealthState::Down => "down",
            HealthState::Draining => "draining",
        })
    }
}

/// The replication role of an endpoint, as last reported by a [`Probe`](super::Probe) or set by
/// an adapter with [`Endpoint::set_role`](super::Endpoint::set_role).
///
/// The router never picks a known [`Replica`](Role::Replica) as the primary; endpoints whose
/// role is [`Unknown`](Role::Unknown) (the default, and the normal case for DynamoDB regions)
/// are primary candidates by priority.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// Not known (never probed, or the backend has no roles).
    #[default]
    Unknown,
    /// Accepts writes.
    Primary,
    /// Read-only copy of a primary.
    Replica,
}

impl Role {
    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Primary => 1,
            Role::Replica => 2,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Self {
        match v {
            1 => Role::Primary,
            2 => Role::Replica,
            _ => Role::Unknown,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// A manual override in force on an endpoint. While one is in force the automatic state machine
/// is frozen (outcomes are still counted); [`Endpoint::clear`](super::Endpoint::clear) lifts it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Override {
    /// Held [`Up`](HealthState::Up) whatever happens.
    ForcedUp,
    /// Held [`Down`](HealthState::Down) whatever happens.
    ForcedDown,
    /// Held [`Draining`](HealthState::Draining): no new work.
    Drain,
}

impl Override {
    pub(crate) const fn to_u8(o: Option<Override>) -> u8 {
        match o {
            None => 0,
            Some(Override::ForcedUp) => 1,
            Some(Override::ForcedDown) => 2,
            Some(Override::Drain) => 3,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Override::ForcedUp),
            2 => Some(Override::ForcedDown),
            3 => Some(Override::Drain),
            _ => None,
        }
    }
}

/// Why an endpoint changed state.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransitionReason {
    /// This many transient failures in a row (calls or heartbeat probes) reached the threshold.
    ConsecutiveFailures {
        /// Failures in a row when the endpoint was ejected.
        failures: u32,
    },
    /// The failure rate over the last window reached the configured ratio.
    FailureRate {
        /// Failures counted in the window.
        failures: u32,
        /// Outcomes counted in the window.
        outcomes: u32,
    },
    /// A call or a probe failed while the endpoint was probing.
    ProbingFailed,
    /// The ejection time is over; the endpoint may be tried again.
    EjectionElapsed,
    /// This many successes in a row while probing.
    Recovered {
        /// Successes in a row.
        successes: u32,
    },
    /// [`Endpoint::force_down`](super::Endpoint::force_down).
    ForcedDown,
    /// [`Endpoint::force_up`](super::Endpoint::force_up).
    ForcedUp,
    /// [`Endpoint::drain`](super::Endpoint::drain).
    Drained,
    /// [`Endpoint::clear`](super::Endpoint::clear).
    Cleared,
    /// [`Endpoint::readmit`](super::Endpoint::readmit): an authoritative check (an adapter's
    /// re-discovery) found the endpoint serving, which ended its ejection or probing early.
    Readmitted,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { failures } => {
                write!(f, "{failures} consecutive failures")
            }
            TransitionReason::FailureRate { failures, outcomes } => {
                write!(f, "{failures} failures in {outcomes} outcomes")
            }
            TransitionReason::ProbingFailed => f.write_str("failed while probing"),
            TransitionReason::EjectionElapsed => f.write_str("ejection time elapsed"),
            TransitionReason::Recovered { successes } => {
                write!(f, "{successes} consecutive successes")
            }
            TransitionReason::ForcedDown => f.write_str("forced down"),
            TransitionReason::ForcedUp => f.write_str("forced up"),
            TransitionReason::Drained => f.write_str("drained"),
            TransitionReason::Cleared => f.write_str("override cleared"),
            TransitionReason::Readmitted => f.write_str("readmitted by an authoritative check"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        for s in [
            HealthState::Up,
            HealthState::Probing,
            HealthState::Down,
            HealthState::Draining,
        ] {
            assert_eq!(HealthState::from_u8(s.to_u8()), s);
        }
        for r in [Role::Unknown, Role::Primary, Role::Replica] {
            assert_eq!(Role::from_u8(r.to_u8()), r);
        }
        for o in [
            None,
            Some(Override::ForcedUp),
            Some(Override::ForcedDown),
            Some(Override::Drain),
        ] {
            assert_eq!(Override::from_u8(Override::to_u8(o)), o);
        }
        assert!(HealthState::Up.is_available());
        assert!(!HealthState::Probing.is_available());
        assert!(!HealthState::Draining.is_available());
    }
}

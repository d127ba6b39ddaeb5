use std::time::Duration;

use tokio::time::Instant;

use super::state::{HealthState, TransitionReason};

/// One state change of one endpoint, sent to every subscriber of the tracker (see
/// [`HealthTracker::subscribe`](super::HealthTracker::subscribe)).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent<K> {
    /// The endpoint's id.
    pub endpoint: K,
    /// The state it left.
    pub from: HealthState,
    /// The state it entered.
    pub to: HealthState,
    /// Why.
    pub reason: TransitionReason,
    /// When (Tokio's clock, so paused-clock tests see exact times).
    pub at: Instant,
    /// For transitions to [`Down`](HealthState::Down) by the state machine: how long the endpoint
    /// is ejected. `None` otherwise (a forced-down endpoint stays down until cleared).
    pub ejection: Option<Duration>,
    /// For an ejection of an `Up` endpoint by its failures: when the first failed call of the
    /// streak that ejected it started (its attempt's start, when the runner recorded it). The
    /// start of the incident as callers saw it. `None` otherwise.
    pub failing_since: Option<Instant>,
}

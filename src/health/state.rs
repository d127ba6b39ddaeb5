use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::core::Core;
use super::endpoint::{EndpointId, Padded};
use super::event::HealthEvent;
use super::role::Role;
use super::signal::Signal;
use crate::sync::lock;

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

/// The state machine of one endpoint, kept in atomics so that reading it never locks.
///
/// It applies the policy of the tracker's [`HealthConfig`](super::config::HealthConfig):
/// transient failures in a row (or a failure rate) eject an `Up` endpoint; the `n`-th ejection
/// of a streak lasts longer than the one before; a `Down` endpoint whose ejection is over is
/// `Probing`; enough successes in a row bring a probing endpoint `Up`, and any failure while
/// probing ejects it again. A manual [`Override`] freezes it. Every transition takes the
/// transition lock, so the checks before it and the event it publishes are consistent, and one
/// endpoint's events are published in order.
///
/// It also stores the endpoint's [`Role`], which no transition reads: only so that what a router
/// reads of an endpoint (state, role, since) shares one cache line.
pub(super) struct Machine<K> {
    // Read on every call.
    state: AtomicU8,
    manual: AtomicU8,
    role: AtomicU8,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    ejections: AtomicU32,
    since: AtomicU64,
    down_until: AtomicU64,
    /// When the first failure of the current (or last) failure streak of an `Up` endpoint
    /// started, in nanoseconds from the epoch. Written only by failures.
    streak_start: AtomicU64,
    /// The last classified failures, one byte each, newest in the low byte (see
    /// [`RecentFailures`](crate::observe::RecentFailures)). Written only by failures.
    recent: AtomicU64,
    /// How many times the state became `Down`, and the futures waiting for the next time.
    downs: Arc<Signal>,
    id: K,
    core: Arc<Core<K>>,
    // Written on (some) calls: kept away from the fields above.
    window: Padded<AtomicU64>,
    transition: Mutex<()>,
}

const UP: u8 = HealthState::Up.to_u8();
const PROBING: u8 = HealthState::Probing.to_u8();
const DOWN: u8 = HealthState::Down.to_u8();
const WINDOW_ONE: u64 = 1 << 32;

impl<K> Machine<K> {
    /// A machine for `id`, [`Up`](HealthState::Up) since now, with no override.
    pub(super) fn new(id: K, core: Arc<Core<K>>) -> Self {
        let since = core.nanos(Instant::now());
        Machine {
            state: AtomicU8::new(UP),
            manual: AtomicU8::new(0),
            role: AtomicU8::new(Role::Unknown.to_u8()),
            consecutive_failures: AtomicU32::new(0),
            consecutive_successes: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            since: AtomicU64::new(since),
            down_until: AtomicU64::new(0),
            streak_start: AtomicU64::new(0),
            recent: AtomicU64::new(0),
            downs: Arc::default(),
            id,
            core,
            window: Padded::default(),
            transition: Mutex::new(()),
        }
    }

    /// The endpoint's id, cloned into the events.
    #[inline]
    pub(super) fn id(&self) -> &K {
        &self.id
    }

    /// How many times the state became `Down`, and the futures waiting for the next time.
    #[inline]
    pub(super) fn downs(&self) -> &Arc<Signal> {
        &self.downs
    }

    /// The tracker's shared core (policy, clock origin, subscribers).
    #[inline]
    pub(super) fn core(&self) -> &Core<K> {
        &self.core
    }

    /// `true` when the stored state is [`Up`](HealthState::Up). One atomic load.
    #[inline]
    pub(super) fn is_up(&self) -> bool {
        self.state.load(Acquire) == UP
    }

    /// The state as stored, without ending an ejection that has run out.
    #[inline]
    pub(super) fn raw_state(&self) -> HealthState {
        HealthState::from_u8(self.state.load(Acquire))
    }

    /// The role, as last stored. One atomic load.
    #[inline]
    pub(super) fn role(&self) -> Role {
        Role::from_u8(self.role.load(Acquire))
    }

    /// Stores `role`; returns the role it replaced.
    pub(super) fn swap_role(&self, role: Role) -> Role {
        Role::from_u8(self.role.swap(role.to_u8(), AcqRel))
    }

    /// The manual override in force, if any.
    pub(super) fn manual_override(&self) -> Option<Override> {
        Override::from_u8(self.manual.load(Acquire))
    }

    /// When the endpoint entered its current state, in nanoseconds from the core's epoch.
    pub(super) fn since_nanos(&self) -> u64 {
        self.since.load(Acquire)
    }

    /// Transient failures in a row in the current state.
    pub(super) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Relaxed)
    }

    /// Successes in a row while probing.
    pub(super) fn consecutive_successes(&self) -> u32 {
        self.consecutive_successes.load(Relaxed)
    }

    /// Ejections in the current streak.
    pub(super) fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// When the last ejection by the machine ends (`None` if the endpoint was forced down).
    /// Meaningful only while the state is `Down`.
    pub(super) fn ejection_until(&self) -> Option<Instant> {
        match self.down_until.load(Acquire) {
            u64::MAX => None,
            n => Some(self.core.instant(n)),
        }
    }

    /// Adds one classified failure (its one-byte code) to the recent failures. A racy
    /// read-modify-write on purpose, as for the latency average: a failure lost under
    /// contention does not matter for "the last few".
    pub(super) fn push_recent(&self, code: u8) {
        let old = self.recent.load(Relaxed);
        self.recent.store((old << 8) | u64::from(code), Relaxed);
    }

    /// The last classified failures (one byte each, newest lowest).
    pub(super) fn recent(&self) -> u64 {
        self.recent.load(Relaxed)
    }

    /// While a failure streak is running (an `Up` endpoint with failures in a row) or after it
    /// ejected the endpoint (not `Up`): when its first failure started.
    pub(super) fn failing_since(&self) -> Option<Instant> {
        if self.state.load(Acquire) == UP && self.consecutive_failures.load(Relaxed) == 0 {
            return None;
        }
        match self.streak_start.load(Relaxed) {
            0 => None,
            n => Some(self.core.instant(n - 1)),
        }
    }

    /// When the current ejection ends, if the endpoint is ejected by the state machine.
    pub(super) fn ejection_end(&self) -> Option<Instant> {
        if self.state.load(Acquire) != DOWN {
            return None;
        }
        self.ejection_until()
    }
}

impl<K: EndpointId> Machine<K> {
    /// The state, after ending an ejection that has run out (the only case where it reads the
    /// clock).
    #[inline]
    pub(super) fn state(&self) -> HealthState {
        let s = self.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            return self.raw_state();
        }
        HealthState::from_u8(s)
    }

    /// A success (a call or a probe).
    ///
    /// On an `Up` endpoint this is the hot path: no lock, no clock, and a write only when a
    /// failure streak has to be reset (or a failure-rate window is configured). While probing,
    /// enough successes in a row bring the endpoint back up. While down (ejection not over),
    /// successes are ignored: the ejection time is a floor, so that calls started before the
    /// ejection cannot cut it short.
    #[inline]
    pub(super) fn on_success(&self) {
        if self.state.load(Acquire) == UP {
            if self.consecutive_failures.load(Relaxed) != 0 {
                self.consecutive_failures.store(0, Relaxed);
            }
            if self.core.config.failure_rate.is_some() {
                self.window_add(false);
            }
            return;
        }
        self.success_slow();
    }

    #[cold]
    fn success_slow(&self) {
        let mut s = self.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            s = self.state.load(Acquire);
        }
        if s != PROBING || self.manual.load(Acquire) != 0 {
            return;
        }
        let n = self.consecutive_successes.fetch_add(1, Relaxed) + 1;
        if n >= self.core.config.recovery_successes {
            let _g = lock(&self.transition);
            if self.state.load(Acquire) != PROBING || self.manual.load(Acquire) != 0 {
                return;
            }
            let now = Instant::now();
            self.set_state(HealthState::Up, self.core.nanos(now));
            self.publish(
                HealthState::Probing,
                HealthState::Up,
                TransitionReason::Recovered { successes: n },
                now,
                None,
            );
        }
    }

    /// A failure that counts toward ejection (a transient one, or throttling when the tracker
    /// counts it): trips an `Up` endpoint at the threshold or the failure rate, and ejects a
    /// probing one again at once. `started` is when the failed call started, if known (the
    /// start of a failure streak).
    pub(super) fn on_failure(&self, started: Option<Instant>) {
        let mut s = self.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            s = self.state.load(Acquire);
        }
        match s {
            UP => {
                let n = self.consecutive_failures.fetch_add(1, Relaxed) + 1;
                if n == 1 {
                    let at = started.unwrap_or_else(Instant::now);
                    // Stored + 1: 0 means none.
                    let n = self.core.nanos(at).saturating_add(1);
                    self.streak_start.store(n, Relaxed);
                }
                let rate = if self.core.config.failure_rate.is_some() {
                    self.window_add(true)
                } else {
                    None
                };
                if self.manual.load(Acquire) != 0 {
                    return;
                }
                if n >= self.core.config.failure_threshold {
                    self.eject(
                        HealthState::Up,
                        TransitionReason::ConsecutiveFailures { failures: n },
                    );
                } else if let Some(reason) = rate {
                    self.eject(HealthState::Up, reason);
                }
            }
            PROBING => {
                self.consecutive_successes.store(0, Relaxed);
                if self.manual.load(Acquire) == 0 {
                    self.eject(HealthState::Probing, TransitionReason::ProbingFailed);
                }
            }
            _ => {}
        }
    }

    /// Sets the manual override `o`, holding the endpoint in `to` until [`clear`](Self::clear).
    pub(super) fn hold(&self, o: Override, to: HealthState, reason: TransitionReason) {
        let _g = lock(&self.transition);
        self.manual.store(Override::to_u8(Some(o)), Release);
        let from = HealthState::from_u8(self.state.load(Acquire));
        if to == HealthState::Down {
            self.down_until.store(u64::MAX, Relaxed);
        }
        if from != to {
            let now = Instant::now();
            self.set_state(to, self.core.nanos(now));
            self.publish(from, to, reason, now, None);
            if to == HealthState::Down {
                self.downs.bump();
            }
        }
    }

    /// Lifts any manual override and resumes from [`Up`](HealthState::Up) with fresh counters
    /// (the ejection streak is kept).
    pub(super) fn clear(&self) {
        let _g = lock(&self.transition);
        self.manual.store(0, Release);
        let from = HealthState::from_u8(self.state.load(Acquire));
        let now = Instant::now();
        self.set_state(HealthState::Up, self.core.nanos(now));
        if from != HealthState::Up {
            self.publish(from, HealthState::Up, TransitionReason::Cleared, now, None);
        }
    }

    /// A `Down` or `Probing` endpoint with no override is `Up` at once
    /// ([`TransitionReason::Readmitted`]); returns whether it moved. The streak is kept.
    pub(super) fn readmit(&self) -> bool {
        let s = self.state.load(Acquire);
        if (s != DOWN && s != PROBING) || self.manual.load(Acquire) != 0 {
            return false;
        }
        let _g = lock(&self.transition);
        let s = self.state.load(Acquire);
        if (s != DOWN && s != PROBING) || self.manual.load(Acquire) != 0 {
            return false;
        }
        let now = Instant::now();
        self.set_state(HealthState::Up, self.core.nanos(now));
        self.publish(
            HealthState::from_u8(s),
            HealthState::Up,
            TransitionReason::Readmitted,
            now,
            None,
        );
        true
    }

    /// Adds one outcome to the failure-rate window; returns the reason to eject when the
    /// window's failures reach the trip count.
    fn window_add(&self, failed: bool) -> Option<TransitionReason> {
        let cfg = &self.core.config;
        let rate = cfg.failure_rate?;
        let cell = &self.window.0;
        let add = WINDOW_ONE | u64::from(failed);
        let now = cell.fetch_add(add, Relaxed).wrapping_add(add);
        let outcomes = (now >> 32) as u32;
        let failures = now as u32;
        if outcomes >= rate.window() {
            // Window complete: start a new one. Losing this race only means another caller
            // reset it first.
            let _ = cell.compare_exchange(now, 0, Relaxed, Relaxed);
        }
        (failed && failures >= cfg.rate_trip)
            .then_some(TransitionReason::FailureRate { failures, outcomes })
    }

    /// Ends an ejection whose time is over: `Down` → `Probing`.
    fn end_ejection_if_due(&self) {
        let until = self.down_until.load(Acquire);
        if until == u64::MAX || self.manual.load(Acquire) != 0 {
            return;
        }
        let now = Instant::now();
        let now_n = self.core.nanos(now);
        if now_n < until {
            return;
        }
        let _g = lock(&self.transition);
        if self.state.load(Acquire) != DOWN
            || self.manual.load(Acquire) != 0
            || now_n < self.down_until.load(Acquire)
        {
            return;
        }
        self.set_state(HealthState::Probing, now_n);
        self.publish(
            HealthState::Down,
            HealthState::Probing,
            TransitionReason::EjectionElapsed,
            now,
            None,
        );
    }

    /// `from` → `Down`, with the ejection time of the next ejection in the streak.
    fn eject(&self, from: HealthState, reason: TransitionReason) {
        let _g = lock(&self.transition);
        if self.state.load(Acquire) != from.to_u8() || self.manual.load(Acquire) != 0 {
            return;
        }
        let cfg = &self.core.config;
        let now = Instant::now();
        let now_n = self.core.nanos(now);
        let mut streak = self.ejections.load(Relaxed);
        if from == HealthState::Up
            && now_n.saturating_sub(self.since.load(Relaxed)) >= duration_nanos(cfg.stable_after)
        {
            streak = 0;
        }
        streak = streak.saturating_add(1);
        let ejection = cfg.ejection_for(streak);
        self.ejections.store(streak, Relaxed);
        self.down_until
            .store(now_n.saturating_add(duration_nanos(ejection)), Release);
        self.set_state(HealthState::Down, now_n);
        self.publish(from, HealthState::Down, reason, now, Some(ejection));
        self.downs.bump();
        self.core.wake.notify_one();
    }

    /// Stores a new state with fresh counters. Call with the transition lock held.
    fn set_state(&self, to: HealthState, now_n: u64) {
        self.consecutive_failures.store(0, Relaxed);
        self.consecutive_successes.store(0, Relaxed);
        self.window.0.store(0, Relaxed);
        self.since.store(now_n, Release);
        self.state.store(to.to_u8(), Release);
    }

    /// Publishes a transition to subscribers and `tracing`. Call with the transition lock held.
    fn publish(
        &self,
        from: HealthState,
        to: HealthState,
        reason: TransitionReason,
        at: Instant,
        ejection: Option<Duration>,
    ) {
        let id = &self.id;
        match (to, ejection) {
            (HealthState::Down, Some(e)) => tracing::warn!(
                target: "switchover::health",
                endpoint = ?id,
                from = %from,
                to = %to,
                reason = %reason,
                ejection_ms = e.as_millis() as u64,
                "endpoint state changed"
            ),
            (HealthState::Down, None) => tracing::warn!(
                target: "switchover::health",
                endpoint = ?id, from = %from, to = %to, reason = %reason,
                "endpoint state changed"
            ),
            _ => tracing::info!(
                target: "switchover::health",
                endpoint = ?id, from = %from, to = %to, reason = %reason,
                "endpoint state changed"
            ),
        }
        let failing_since = match (from, to, reason) {
            (
                HealthState::Up,
                HealthState::Down,
                TransitionReason::ConsecutiveFailures { .. } | TransitionReason::FailureRate { .. },
            ) => match self.streak_start.load(Relaxed) {
                0 => None,
                n => Some(self.core.instant(n - 1).min(at)),
            },
            _ => None,
        };
        self.core.publish(
            HealthEvent {
                endpoint: id.clone(),
                from,
                to,
                reason,
                at,
                ejection,
                failing_since,
            },
            self.recent.load(Relaxed),
        );
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

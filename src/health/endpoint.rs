use std::fmt;
use std::hash::Hash;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::event::{Core, HealthEvent, lock};
use super::probe::ProbeResult;
use super::state::{HealthState, Override, Role, TransitionReason};
use crate::error::{Classification, Classify, ErrorClass};

/// What an endpoint id must be: any small value the caller chooses (a region name, a
/// `host:port`, an index), cloned into events.
///
/// Implemented for every type with the listed bounds.
pub trait EndpointId: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static {}

impl<T: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static> EndpointId for T {}

/// Keeps a value on its own cache line, so writers of one field do not slow readers of another.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// A handle on one endpoint of a [`HealthTracker`](super::HealthTracker): cheap to clone (an
/// `Arc`), and what adapters keep next to their connections.
///
/// Reading ([`is_available`](Self::is_available), [`role`](Self::role)) is one atomic load;
/// recording a success on an `Up` endpoint reads two atomics and writes only when a failure
/// streak must be reset. No lock is taken and the clock is not read on those paths. Locks are
/// taken only to change state (rare) and the clock is read only on failures and on endpoints
/// that are not `Up`.
pub struct Endpoint<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    // Read on every call.
    state: AtomicU8,
    manual: AtomicU8,
    role: AtomicU8,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    ejections: AtomicU32,
    since: AtomicU64,
    down_until: AtomicU64,
    id: K,
    core: Arc<Core<K>>,
    // Written on (some) calls: kept away from the fields above.
    latency_ns: Padded<AtomicU64>,
    window: Padded<AtomicU64>,
    totals: Padded<Totals>,
    transition: Mutex<()>,
}

#[derive(Debug, Default)]
struct Totals {
    failures: AtomicU64,
    throttled: AtomicU64,
}

/// A snapshot of one endpoint's counters (see [`Endpoint::stats`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointStats {
    /// The state.
    pub state: HealthState,
    /// The role.
    pub role: Role,
    /// The manual override in force, if any.
    pub manual_override: Option<Override>,
    /// Transient failures in a row in the current state.
    pub consecutive_failures: u32,
    /// Successes in a row while probing.
    pub consecutive_successes: u32,
    /// Ejections in the current streak (reset after the endpoint stays up for the tracker's
    /// `stable_after`).
    pub ejections: u32,
    /// Transient failures counted since the endpoint was registered (throttling included when
    /// it marks endpoints down).
    pub failures_total: u64,
    /// Throttled outcomes since the endpoint was registered.
    pub throttled_total: u64,
    /// The moving average of the latencies recorded, if any.
    pub latency: Option<Duration>,
    /// When the endpoint entered its current state.
    pub since: Instant,
    /// While ejected: when the ejection ends.
    pub down_until: Option<Instant>,
}

const UP: u8 = HealthState::Up.to_u8();
const PROBING: u8 = HealthState::Probing.to_u8();
const DOWN: u8 = HealthState::Down.to_u8();
const WINDOW_ONE: u64 = 1 << 32;

impl<K> Clone for Endpoint<K> {
    fn clone(&self) -> Self {
        Endpoint {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Endpoint<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.inner.id)
            .field(
                "state",
                &HealthState::from_u8(self.inner.state.load(Relaxed)),
            )
            .field("role", &Role::from_u8(self.inner.role.load(Relaxed)))
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> Endpoint<K> {
    pub(crate) fn new(id: K, core: Arc<Core<K>>) -> Self {
        let since = core.nanos(Instant::now());
        Endpoint {
            inner: Arc::new(Inner {
                state: AtomicU8::new(UP),
                manual: AtomicU8::new(0),
                role: AtomicU8::new(Role::Unknown.to_u8()),
                consecutive_failures: AtomicU32::new(0),
                consecutive_successes: AtomicU32::new(0),
                ejections: AtomicU32::new(0),
                since: AtomicU64::new(since),
                down_until: AtomicU64::new(0),
                id,
                core,
                latency_ns: Padded::default(),
                window: Padded::default(),
                totals: Padded::default(),
                transition: Mutex::new(()),
            }),
        }
    }

    /// The id this endpoint was registered with.
    #[inline]
    pub fn id(&self) -> &K {
        &self.inner.id
    }

    /// `true` when the endpoint takes new work (it is [`Up`](HealthState::Up)). One atomic load.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.inner.state.load(Acquire) == UP
    }

    /// The current state. When an ejection has just run out this moves the endpoint to
    /// [`Probing`](HealthState::Probing) (and publishes the transition) before answering, so
    /// the answer does not depend on a probe task having run; that is the only case where it
    /// reads the clock.
    #[inline]
    pub fn state(&self) -> HealthState {
        let s = self.inner.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            return HealthState::from_u8(self.inner.state.load(Acquire));
        }
        HealthState::from_u8(s)
    }

    /// The state as stored, without ending an ejection that has run out.
    #[inline]
    pub(crate) fn raw_state(&self) -> HealthState {
        HealthState::from_u8(self.inner.state.load(Acquire))
    }

    /// The replication role, as last set by a probe or [`set_role`](Self::set_role). One atomic
    /// load.
    #[inline]
    pub fn role(&self) -> Role {
        Role::from_u8(self.inner.role.load(Acquire))
    }

    /// Sets the replication role (adapters call this after discovering the topology, e.g. from
    /// Redis `ROLE` or `pg_is_in_recovery()`). A change is a `tracing` event.
    pub fn set_role(&self, role: Role) {
        let old = Role::from_u8(self.inner.role.swap(role.to_u8(), AcqRel));
        if old != role {
            tracing::info!(
                target: "switchover::health",
                endpoint = ?self.inner.id,
                from = %old,
                to = %role,
                "endpoint role changed"
            );
        }
    }

    /// The manual override in force, if any.
    pub fn manual_override(&self) -> Option<Override> {
        Override::from_u8(self.inner.manual.load(Acquire))
    }

    /// When the endpoint entered its current state.
    pub fn since(&self) -> Instant {
        self.inner.core.instant(self.inner.since.load(Acquire))
    }

    pub(crate) fn since_nanos(&self) -> u64 {
        self.inner.since.load(Acquire)
    }

    /// The moving average (EWMA, weight 1/5 for each new sample) of the latencies recorded with
    /// [`record_success_with_latency`](Self::record_success_with_latency) or reported by
    /// probes. `None` before the first sample.
    #[inline]
    pub fn latency(&self) -> Option<Duration> {
        match self.inner.latency_ns.0.load(Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Throttled outcomes counted since the endpoint was registered. Throttling never counts
    /// as a failure unless the tracker was built with
    /// [`throttling_marks_down`](super::HealthTrackerBuilder::throttling_marks_down).
    pub fn throttled_total(&self) -> u64 {
        self.inner.totals.0.throttled.load(Relaxed)
    }

    /// A snapshot of the state and counters.
    pub fn stats(&self) -> EndpointStats {
        let i = &self.inner;
        let state = self.state();
        let down_until = i.down_until.load(Acquire);
        EndpointStats {
            state,
            role: self.role(),
            manual_override: self.manual_override(),
            consecutive_failures: i.consecutive_failures.load(Relaxed),
            consecutive_successes: i.consecutive_successes.load(Relaxed),
            ejections: i.ejections.load(Relaxed),
            failures_total: i.totals.0.failures.load(Relaxed),
            throttled_total: i.totals.0.throttled.load(Relaxed),
            latency: self.latency(),
            since: self.since(),
            down_until: (state == HealthState::Down && down_until != u64::MAX)
                .then(|| i.core.instant(down_until)),
        }
    }

    /// Records a successful call.
    ///
    /// On an `Up` endpoint this is the hot path: no lock, no clock, and a write only when a
    /// failure streak has to be reset (or a failure-rate window is configured). While probing,
    /// enough successes in a row bring the endpoint back up. While down (ejection not over),
    /// successes are ignored: the ejection time is a floor, so that calls started before the
    /// ejection cannot cut it short.
    #[inline]
    pub fn record_success(&self) {
        let i = &self.inner;
        if i.state.load(Acquire) == UP {
            if i.consecutive_failures.load(Relaxed) != 0 {
                i.consecutive_failures.store(0, Relaxed);
            }
            if i.core.config.failure_rate.is_some() {
                self.window_add(false);
            }
            return;
        }
        self.success_slow();
    }

    /// Records a successful call that took `latency`: updates the moving average used by
    /// [`LowestLatency`](crate::route::LowestLatency), then as
    /// [`record_success`](Self::record_success).
    #[inline]
    pub fn record_success_with_latency(&self, latency: Duration) {
        self.observe_latency(latency);
        self.record_success();
    }

    /// Records a failed call by its [`Classification`]:
    ///
    /// - [`Permanent`](ErrorClass::Permanent): ignored (the caller's fault);
    /// - [`Throttled`](ErrorClass::Throttled): counted in
    ///   [`throttled_total`](Self::throttled_total) only, unless the tracker counts throttling
    ///   as failure;
    /// - [`Transient`](ErrorClass::Transient): counts toward ejection (threshold in a row, or
    ///   the failure rate); while probing, ejects again at once with a longer ejection time.
    pub fn record_failure(&self, classification: Classification) {
        match classification.class() {
            ErrorClass::Permanent => return,
            ErrorClass::Throttled => {
                self.inner.totals.0.throttled.fetch_add(1, Relaxed);
                if !self.inner.core.config.throttling_marks_down {
                    return;
                }
            }
            _ => {}
        }
        self.failure();
    }

    /// Records the outcome of a call: `Ok` as a success, `Err` through its [`Classify`]
    /// implementation.
    pub fn record<T, E: Classify>(&self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) => self.record_success(),
            Err(e) => self.record_failure(e.classify()),
        }
    }

    /// Applies the result of a probe: sets the role and latency it reports, then counts it as
    /// a success or a transient failure. The tracker's probe task calls this; adapters that
    /// probe on their own may call it too.
    pub fn record_probe(&self, result: ProbeResult) {
        if let Some(role) = result.role() {
            self.set_role(role);
        }
        if let Some(latency) = result.latency() {
            self.observe_latency(latency);
        }
        if result.is_up() {
            self.record_success();
        } else {
            self.failure();
        }
    }

    /// Holds the endpoint [`Down`](HealthState::Down) until [`clear`](Self::clear)ed (drills,
    /// maintenance). Outcomes are still counted but change nothing.
    pub fn force_down(&self) {
        self.manual(
            Override::ForcedDown,
            HealthState::Down,
            TransitionReason::ForcedDown,
        );
    }

    /// Holds the endpoint [`Up`](HealthState::Up) until [`clear`](Self::clear)ed, whatever its
    /// outcomes.
    pub fn force_up(&self) {
        self.manual(
            Override::ForcedUp,
            HealthState::Up,
            TransitionReason::ForcedUp,
        );
    }

    /// Stops sending new work to the endpoint without calling it down: its state becomes
    /// [`Draining`](HealthState::Draining) until [`clear`](Self::clear)ed. The router moves
    /// the active role away from a draining endpoint (a planned switchover).
    pub fn drain(&self) {
        self.manual(
            Override::Drain,
            HealthState::Draining,
            TransitionReason::Drained,
        );
    }

    /// Lifts any manual override and resumes automatic tracking from [`Up`](HealthState::Up)
    /// with fresh counters (the ejection streak is kept).
    pub fn clear(&self) {
        let i = &self.inner;
        let _g = lock(&i.transition);
        i.manual.store(0, Release);
        let from = HealthState::from_u8(i.state.load(Acquire));
        let now = Instant::now();
        self.set_state(HealthState::Up, i.core.nanos(now));
        if from != HealthState::Up {
            self.publish(from, HealthState::Up, TransitionReason::Cleared, now, None);
        }
    }

    /// Tells the tracker that an authoritative check (an adapter's re-discovery: Postgres says
    /// the host is the writable primary, Redis `ROLE` says `master` and it is the chosen
    /// primary) found this endpoint serving: a [`Down`](HealthState::Down) or
    /// [`Probing`](HealthState::Probing) endpoint is [`Up`](HealthState::Up) at once, with
    /// [`TransitionReason::Readmitted`], even if its ejection time is not over.
    ///
    /// Returns `true` when it moved the endpoint up; `false` (and does nothing) when the
    /// endpoint was already up, draining, or under a manual override
    /// ([`force_down`](Self::force_down), [`drain`](Self::drain)): only
    /// [`clear`](Self::clear) lifts those. The ejection streak is kept, so if the endpoint
    /// fails again before the tracker's `stable_after`, its next ejection is longer, as after
    /// a recovery by probes.
    ///
    /// Calls and ordinary probes cannot do this: while ejected their successes are ignored,
    /// so that calls started before the ejection cannot cut it short. Call it only on evidence
    /// that the endpoint is the one to use now.
    pub fn readmit(&self) -> bool {
        let i = &self.inner;
        let s = i.state.load(Acquire);
        if (s != DOWN && s != PROBING) || i.manual.load(Acquire) != 0 {
            return false;
        }
        let _g = lock(&i.transition);
        let s = i.state.load(Acquire);
        if (s != DOWN && s != PROBING) || i.manual.load(Acquire) != 0 {
            return false;
        }
        let now = Instant::now();
        self.set_state(HealthState::Up, i.core.nanos(now));
        self.publish(
            HealthState::from_u8(s),
            HealthState::Up,
            TransitionReason::Readmitted,
            now,
            None,
        );
        true
    }

    fn manual(&self, o: Override, to: HealthState, reason: TransitionReason) {
        let i = &self.inner;
        let _g = lock(&i.transition);
        i.manual.store(Override::to_u8(Some(o)), Release);
        let from = HealthState::from_u8(i.state.load(Acquire));
        if to == HealthState::Down {
            i.down_until.store(u64::MAX, Relaxed);
        }
        if from != to {
            let now = Instant::now();
            self.set_state(to, i.core.nanos(now));
            self.publish(from, to, reason, now, None);
        }
    }

    fn observe_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX / 2)
            .max(1);
        let cell = &self.inner.latency_ns.0;
        let old = cell.load(Relaxed);
        // A racy read-modify-write on purpose: a lost sample under contention does not matter
        // for an average, and a CAS loop would.
        let new = if old == 0 {
            sample
        } else {
            old - old / 5 + sample / 5
        };
        cell.store(new.max(1), Relaxed);
    }

    #[cold]
    fn success_slow(&self) {
        let i = &self.inner;
        let mut s = i.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            s = i.state.load(Acquire);
        }
        if s != PROBING || i.manual.load(Acquire) != 0 {
            return;
        }
        let n = i.consecutive_successes.fetch_add(1, Relaxed) + 1;
        if n >= i.core.config.recovery_successes {
            let _g = lock(&i.transition);
            if i.state.load(Acquire) != PROBING || i.manual.load(Acquire) != 0 {
                return;
            }
            let now = Instant::now();
            self.set_state(HealthState::Up, i.core.nanos(now));
            self.publish(
                HealthState::Probing,
                HealthState::Up,
                TransitionReason::Recovered { successes: n },
                now,
                None,
            );
        }
    }

    fn failure(&self) {
        let i = &self.inner;
        i.totals.0.failures.fetch_add(1, Relaxed);
        let mut s = i.state.load(Acquire);
        if s == DOWN {
            self.end_ejection_if_due();
            s = i.state.load(Acquire);
        }
        match s {
            UP => {
                let n = i.consecutive_failures.fetch_add(1, Relaxed) + 1;
                let rate = if i.core.config.failure_rate.is_some() {
                    self.window_add(true)
                } else {
                    None
                };
                if i.manual.load(Acquire) != 0 {
                    return;
                }
                if n >= i.core.config.failure_threshold {
                    self.eject(
                        HealthState::Up,
                        TransitionReason::ConsecutiveFailures { failures: n },
                    );
                } else if let Some(reason) = rate {
                    self.eject(HealthState::Up, reason);
                }
            }
            PROBING => {
                i.consecutive_successes.store(0, Relaxed);
                if i.manual.load(Acquire) == 0 {
                    self.eject(HealthState::Probing, TransitionReason::ProbingFailed);
                }
            }
            _ => {}
        }
    }

    /// Adds one outcome to the failure-rate window; returns the reason to eject when the
    /// window's failures reach the trip count.
    fn window_add(&self, failed: bool) -> Option<TransitionReason> {
        let cfg = &self.inner.core.config;
        let rate = cfg.failure_rate?;
        let cell = &self.inner.window.0;
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
        let i = &self.inner;
        let until = i.down_until.load(Acquire);
        if until == u64::MAX || i.manual.load(Acquire) != 0 {
            return;
        }
        let now = Instant::now();
        let now_n = i.core.nanos(now);
        if now_n < until {
            return;
        }
        let _g = lock(&i.transition);
        if i.state.load(Acquire) != DOWN
            || i.manual.load(Acquire) != 0
            || now_n < i.down_until.load(Acquire)
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
        let i = &self.inner;
        let _g = lock(&i.transition);
        if i.state.load(Acquire) != from.to_u8() || i.manual.load(Acquire) != 0 {
            return;
        }
        let cfg = &i.core.config;
        let now = Instant::now();
        let now_n = i.core.nanos(now);
        let mut streak = i.ejections.load(Relaxed);
        if from == HealthState::Up
            && now_n.saturating_sub(i.since.load(Relaxed)) >= duration_nanos(cfg.stable_after)
        {
            streak = 0;
        }
        streak = streak.saturating_add(1);
        let ejection = cfg.ejection_for(streak);
        i.ejections.store(streak, Relaxed);
        i.down_until
            .store(now_n.saturating_add(duration_nanos(ejection)), Release);
        self.set_state(HealthState::Down, now_n);
        self.publish(from, HealthState::Down, reason, now, Some(ejection));
        i.core.wake.notify_one();
    }

    /// Stores a new state with fresh counters. Call with the transition lock held.
    fn set_state(&self, to: HealthState, now_n: u64) {
        let i = &self.inner;
        i.consecutive_failures.store(0, Relaxed);
        i.consecutive_successes.store(0, Relaxed);
        i.window.0.store(0, Relaxed);
        i.since.store(now_n, Release);
        i.state.store(to.to_u8(), Release);
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
        let id = &self.inner.id;
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
        self.inner.core.publish(HealthEvent {
            endpoint: id.clone(),
            from,
            to,
            reason,
            at,
            ejection,
        });
    }

    /// When the current ejection ends, if the endpoint is ejected by the state machine.
    pub(crate) fn ejection_end(&self) -> Option<Instant> {
        let i = &self.inner;
        if i.state.load(Acquire) != DOWN {
            return None;
        }
        match i.down_until.load(Acquire) {
            u64::MAX => None,
            n => Some(i.core.instant(n)),
        }
    }

    /// `true` when both handles refer to the same endpoint of the same tracker.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::core::Core;
use super::probe::ProbeResult;
use super::role::Role;
use super::signal::DownSignal;
use super::state::{HealthState, Machine, Override, TransitionReason};
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
pub(super) struct Padded<T>(pub(super) T);

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

// The state, the role and every transition are the endpoint's state machine (`state.rs`); the
// handle feeds it outcomes and keeps the latency average and the totals.
struct Inner<K> {
    // Read on every call.
    machine: Machine<K>,
    // Written on (some) calls: kept away from the fields above.
    latency_ns: Padded<Latency>,
    totals: Padded<Totals>,
    /// A heartbeat asked for by an attempt cut by a timeout: the start of the latest such
    /// attempt, in nanoseconds from the epoch + 1 (0: none). Taken by the probe task.
    beat_wanted: AtomicU64,
}

/// The latency average, and how many samples fed it: a heartbeat that runs out of time asks
/// whether the endpoint answered anything meanwhile (one more store on a line already written).
#[derive(Debug, Default)]
struct Latency {
    ns: AtomicU64,
    samples: AtomicU64,
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
    /// Times the state became [`Down`](HealthState::Down) since the endpoint was registered
    /// (see [`Endpoint::downs`]).
    pub downs: u64,
    /// The moving average of the latencies recorded, if any.
    pub latency: Option<Duration>,
    /// When the endpoint entered its current state.
    pub since: Instant,
    /// While ejected: when the ejection ends.
    pub down_until: Option<Instant>,
}

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
            .field("id", self.inner.machine.id())
            .field("state", &self.inner.machine.raw_state())
            .field("role", &self.inner.machine.role())
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> Endpoint<K> {
    pub(crate) fn new(id: K, core: Arc<Core<K>>) -> Self {
        Endpoint {
            inner: Arc::new(Inner {
                machine: Machine::new(id, core),
                latency_ns: Padded::default(),
                totals: Padded::default(),
                beat_wanted: AtomicU64::new(0),
            }),
        }
    }

    /// The id this endpoint was registered with.
    #[inline]
    pub fn id(&self) -> &K {
        self.inner.machine.id()
    }

    /// `true` when the endpoint takes new work (it is [`Up`](HealthState::Up)). One atomic load.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.inner.machine.is_up()
    }

    /// The current state. When an ejection has just run out this moves the endpoint to
    /// [`Probing`](HealthState::Probing) (and publishes the transition) before answering, so
    /// the answer does not depend on a probe task having run; that is the only case where it
    /// reads the clock.
    #[inline]
    pub fn state(&self) -> HealthState {
        self.inner.machine.state()
    }

    /// The state as stored, without ending an ejection that has run out.
    #[inline]
    pub(crate) fn raw_state(&self) -> HealthState {
        self.inner.machine.raw_state()
    }

    /// The replication role, as last set by a probe or [`set_role`](Self::set_role). One atomic
    /// load.
    #[inline]
    pub fn role(&self) -> Role {
        self.inner.machine.role()
    }

    /// Sets the replication role (adapters call this after discovering the topology, e.g. from
    /// Redis `ROLE` or `pg_is_in_recovery()`). A change is a `tracing` event.
    pub fn set_role(&self, role: Role) {
        let old = self.inner.machine.swap_role(role);
        if old != role {
            let id = self.id();
            self.inner
                .machine
                .core()
                .each_sink(|s| s.role_changed(id, old, role));
            tracing::info!(
                target: "switchover::health",
                endpoint = ?self.id(),
                from = %old,
                to = %role,
                "endpoint role changed"
            );
        }
    }

    /// The manual override in force, if any.
    pub fn manual_override(&self) -> Option<Override> {
        self.inner.machine.manual_override()
    }

    /// When the endpoint entered its current state.
    pub fn since(&self) -> Instant {
        let m = &self.inner.machine;
        m.core().instant(m.since_nanos())
    }

    pub(crate) fn since_nanos(&self) -> u64 {
        self.inner.machine.since_nanos()
    }

    /// The moving average (EWMA, weight 1/5 for each new sample) of the latencies recorded with
    /// [`record_success_with_latency`](Self::record_success_with_latency) or reported by
    /// probes. `None` before the first sample.
    #[inline]
    pub fn latency(&self) -> Option<Duration> {
        match self.inner.latency_ns.0.ns.load(Relaxed) {
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

    /// How many times the endpoint's state became [`Down`](HealthState::Down) (ejected by
    /// failures, by a failed probe while probing, or [forced down](Self::force_down)) since it
    /// was registered. One atomic load.
    #[inline]
    pub fn downs(&self) -> u64 {
        self.inner.machine.downs().get()
    }

    /// A future that resolves once the endpoint is declared [`Down`](HealthState::Down) after
    /// this call (the failure threshold or rate reached, a failed probe while probing,
    /// [`force_down`](Self::force_down)), or at once if it is down already: what an adapter
    /// `select!`s on to fail the calls in flight on a dead endpoint instead of waiting for the
    /// kernel.
    ///
    /// The future is `'static`, `Send` and `Unpin` (it holds an `Arc`, not the endpoint). It
    /// costs an `Arc` clone and two atomic loads to make; polled and not ready, one short lock
    /// to register its waker and one when it is dropped.
    ///
    /// ```
    /// use switchover::health::HealthTracker;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let tracker = HealthTracker::new(["a"]);
    /// let a = tracker.endpoint(&"a").unwrap();
    /// let down = a.down_signal();
    /// a.force_down();
    /// down.await;
    /// assert_eq!(a.downs(), 1);
    /// # }
    /// ```
    pub fn down_signal(&self) -> DownSignal {
        let m = &self.inner.machine;
        // The count first: a transition stores the state before it counts, so a count read
        // before the state is never newer than it.
        let seen = m.downs().get();
        let down = m.raw_state() == HealthState::Down;
        DownSignal::new(Arc::clone(m.downs()), seen, down)
    }

    /// A snapshot of the state and counters.
    pub fn stats(&self) -> EndpointStats {
        let i = &self.inner;
        let m = &i.machine;
        let state = self.state();
        let down_until = m.ejection_until();
        EndpointStats {
            state,
            role: self.role(),
            manual_override: self.manual_override(),
            consecutive_failures: m.consecutive_failures(),
            consecutive_successes: m.consecutive_successes(),
            ejections: m.ejections(),
            failures_total: i.totals.0.failures.load(Relaxed),
            throttled_total: i.totals.0.throttled.load(Relaxed),
            downs: self.downs(),
            latency: self.latency(),
            since: self.since(),
            down_until: down_until.filter(|_| state == HealthState::Down),
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
        self.inner.machine.on_success();
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
    ///   the failure rate); while probing, ejects again at once with a longer ejection time;
    /// - [`redirected`](Classification::redirected): ignored (the endpoint is healthy, only
    ///   not the one to use).
    pub fn record_failure(&self, classification: Classification) {
        self.record_failure_at(classification, None, false);
    }

    /// [`record_failure`](Self::record_failure) of a call that started at `started` (the start
    /// of a failure streak, for the timeline), `timed_out` when the call was cut by a timeout.
    pub(crate) fn record_failure_at(
        &self,
        classification: Classification,
        started: Option<Instant>,
        timed_out: bool,
    ) {
        if classification.is_timed_out() && classification.counts_against_endpoint() {
            // Out of time inside the operation: judged like an attempt the runner cut.
            self.record_timeout_at(started);
            return;
        }
        if classification.class() != ErrorClass::Permanent {
            self.inner
                .machine
                .push_recent(crate::observe::RecentFailures::code(
                    classification,
                    timed_out,
                ));
        }
        if classification.is_redirected() {
            return;
        }
        match classification.class() {
            ErrorClass::Permanent => return,
            ErrorClass::Throttled => {
                self.inner.totals.0.throttled.fetch_add(1, Relaxed);
                if !self.inner.machine.core().config.throttling_marks_down {
                    return;
                }
            }
            _ => {}
        }
        self.failure(started);
    }

    /// Records a call cut by its attempt timeout or its deadline: slow is not dead.
    ///
    /// - With a [heartbeat](super::HealthTrackerBuilder::heartbeat) (and a probe) on the
    ///   tracker, it does **not** count as a failure: it asks the probe task for a heartbeat of
    ///   this endpoint now, unless one is running, and that heartbeat's verdict counts (a
    ///   heartbeat that times out or answers down is one transient failure, and puts a
    ///   [`Rediscovery`](crate::route::Rediscovery) whose active endpoint this is in doubt). One
    ///   slow query on a healthy primary ejects nothing.
    /// - Without one, it is
    ///   [`record_failure`](Self::record_failure)`(`[`Classification::transient()`]`)`.
    ///
    /// The router's operation runner calls this for every attempt it cuts, so adapters need
    /// not.
    pub fn record_timeout(&self) {
        self.record_timeout_at(None);
    }

    /// [`record_timeout`](Self::record_timeout) of an attempt that started at `started`: with
    /// heartbeats, a probe that started at or after it (running or finished) already judges
    /// the time the attempt hung, so none is asked for; without, the start of a failure streak.
    pub(crate) fn record_timeout_at(&self, started: Option<Instant>) {
        let m = &self.inner.machine;
        let core = m.core();
        if !core.beats {
            self.record_failure_at(Classification::transient(), started, true);
            return;
        }
        m.push_recent(crate::observe::RecentFailures::code(
            Classification::transient(),
            true,
        ));
        let at = core.nanos(started.unwrap_or_else(Instant::now));
        self.inner
            .beat_wanted
            .fetch_max(at.saturating_add(1), Relaxed);
        core.wake.notify_one();
    }

    /// Takes the heartbeat asked for by [`record_timeout`](Self::record_timeout), if any: the
    /// start of the latest attempt that asked.
    pub(crate) fn take_beat_request(&self) -> Option<Instant> {
        match self.inner.beat_wanted.swap(0, Relaxed) {
            0 => None,
            n => Some(self.inner.machine.core().instant(n - 1)),
        }
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
        self.record_probe_at(result, None);
    }

    /// [`record_probe`](Self::record_probe) of a probe that started at `started` (the start of
    /// a failure streak, for the timeline).
    pub(crate) fn record_probe_at(&self, result: ProbeResult, started: Option<Instant>) {
        if let Some(role) = result.role() {
            self.set_role(role);
        }
        if let Some(latency) = result.latency() {
            self.observe_latency(latency);
        }
        let id = self.id();
        self.inner
            .machine
            .core()
            .each_sink(|s| s.probe(id, &result));
        if result.is_up() {
            self.record_success();
        } else {
            self.failure(started);
        }
    }

    /// A mark that moves whenever the endpoint answers: a success recorded with its latency
    /// (every call through the router), a probe that answered, or a late answer to a heartbeat
    /// that had already run out of time. Compare two marks with [`heard_since`](Self::heard_since).
    pub(crate) fn heard_mark(&self) -> u64 {
        self.inner.latency_ns.0.samples.load(Relaxed)
    }

    /// `true` when the endpoint answered something since `mark` was taken.
    pub(crate) fn heard_since(&self, mark: u64) -> bool {
        self.heard_mark() != mark
    }

    /// A late answer to a heartbeat that had already run out of time: proof of life (fed to
    /// the latency average; counts nothing).
    pub(crate) fn heard_late(&self, latency: Duration) {
        self.observe_latency(latency);
    }

    /// Tells the sinks that a heartbeat of this endpoint timed out or answered down (the probe
    /// task calls it before recording that probe).
    pub(crate) fn heartbeat_missed(&self) {
        let id = self.id();
        self.inner
            .machine
            .core()
            .each_sink(|s| s.heartbeat_missed(id));
    }

    /// Tells the sinks that a heartbeat of this endpoint ended after `took` with `outcome`
    /// (`up`, `down`, `timeout`, `slow`): the heartbeat duration metric.
    #[cfg(feature = "metrics")]
    pub(crate) fn heartbeat_done(&self, outcome: &'static str, took: std::time::Duration) {
        let id = self.id();
        self.inner
            .machine
            .core()
            .each_sink(|s| s.heartbeat(id, outcome, took));
    }

    /// Holds the endpoint [`Down`](HealthState::Down) until [`clear`](Self::clear)ed (drills,
    /// maintenance). Outcomes are still counted but change nothing.
    pub fn force_down(&self) {
        self.inner.machine.hold(
            Override::ForcedDown,
            HealthState::Down,
            TransitionReason::ForcedDown,
        );
    }

    /// Holds the endpoint [`Up`](HealthState::Up) until [`clear`](Self::clear)ed, whatever its
    /// outcomes.
    pub fn force_up(&self) {
        self.inner.machine.hold(
            Override::ForcedUp,
            HealthState::Up,
            TransitionReason::ForcedUp,
        );
    }

    /// Stops sending new work to the endpoint without calling it down: its state becomes
    /// [`Draining`](HealthState::Draining) until [`clear`](Self::clear)ed. The router moves
    /// the active role away from a draining endpoint (a planned switchover).
    pub fn drain(&self) {
        self.inner.machine.hold(
            Override::Drain,
            HealthState::Draining,
            TransitionReason::Drained,
        );
    }

    /// Lifts any manual override and resumes automatic tracking from [`Up`](HealthState::Up)
    /// with fresh counters (the ejection streak is kept).
    pub fn clear(&self) {
        self.inner.machine.clear();
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
        self.inner.machine.readmit()
    }

    fn observe_latency(&self, latency: Duration) {
        let sample = u64::try_from(latency.as_nanos())
            .unwrap_or(u64::MAX / 2)
            .max(1);
        let cell = &self.inner.latency_ns.0.ns;
        let samples = &self.inner.latency_ns.0.samples;
        samples.store(samples.load(Relaxed).wrapping_add(1), Relaxed);
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

    /// A failure that counts toward ejection: totalled here, judged by the state machine.
    fn failure(&self, started: Option<Instant>) {
        self.inner.totals.0.failures.fetch_add(1, Relaxed);
        self.inner.machine.on_failure(started);
    }

    /// While the endpoint is failing (failures in a row, or ejected by them): when the first
    /// failed call of that streak started.
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        self.inner.machine.failing_since()
    }

    /// The last classified failures recorded on the endpoint (see
    /// [`RecentFailures`](crate::observe::RecentFailures)).
    pub(crate) fn recent_failures(&self) -> u64 {
        self.inner.machine.recent()
    }

    /// When the current ejection ends, if the endpoint is ejected by the state machine.
    pub(crate) fn ejection_end(&self) -> Option<Instant> {
        self.inner.machine.ejection_end()
    }

    /// `true` when both handles refer to the same endpoint of the same tracker.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::builder::RouterBuilder;
use super::event::{RouteEvent, SwitchReason};
use super::read::{ReadCandidates, ReadPolicy};
use super::slots::{MAX_SLOTS, Slots};
use crate::error::ConfigError;
use crate::health::{Endpoint, EndpointId, HealthState, HealthTracker, Override, Role};
use crate::observe::{Observe, Observer, Timeline};
use crate::sync::lock;

/// When the router moves back to a preferred endpoint after a failover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failback {
    /// Once a more preferred endpoint has stayed up for this long (default: 30 s).
    After(Duration),
    /// Never by itself: only on a failover or [`Router::switch_to`].
    Manual,
}

impl Default for Failback {
    fn default() -> Self {
        Failback::After(Duration::from_secs(30))
    }
}

/// Why [`Router::switch_to`] or [`Router::evacuate`] refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// The endpoint is not one of the router's.
    #[error("the endpoint is not routed by this router")]
    UnknownEndpoint,
    /// The endpoint is not available (force it up first if you know better).
    #[error("the endpoint is not available (it is {0})")]
    Unavailable(HealthState),
    /// The endpoint is known to be a replica (set its role first if it was promoted).
    #[error("the endpoint is a replica, not a primary candidate")]
    NotPrimaryCandidate,
    /// An authority the router follows names another endpoint as primary.
    #[error("an authority names another endpoint as primary")]
    NotNamed,
}

/// The router's answer to "where do writes go now": the active endpoint, the generation, and
/// whether every primary candidate is down. Borrowed from the router; clone the endpoint to keep
/// it.
#[derive(Debug, Clone, Copy)]
pub struct Active<'r, K> {
    pub(super) endpoint: &'r Endpoint<K>,
    pub(super) generation: u64,
    pub(super) all_down: bool,
}

impl<'r, K: EndpointId> Active<'r, K> {
    /// The active endpoint.
    #[inline]
    pub fn endpoint(&self) -> &'r Endpoint<K> {
        self.endpoint
    }

    /// Its id.
    #[inline]
    pub fn id(&self) -> &'r K {
        self.endpoint.id()
    }

    /// The generation: starts at 0 and grows by exactly one on every switch of the active
    /// endpoint. Connections made under an older generation point at an old primary.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `true` when no primary candidate is available and [`endpoint`](Self::endpoint) is only
    /// the best guess (the one most likely to recover).
    #[inline]
    pub fn is_all_down(&self) -> bool {
        self.all_down
    }
}

/// Picks the endpoint that takes writes (the **active** one) among ordered endpoints, and the
/// endpoint that serves a read, over a [`HealthTracker`].
///
/// - **Priorities**: lower is preferred; equal priorities are equals (no failback between them).
/// - **Candidates**: an endpoint whose known [`Role`] is `Replica` is never a primary
///   candidate; endpoints with no known role (DynamoDB regions) are, by priority.
/// - **Failover** happens on the first [`active`](Self::active) call after the active endpoint
///   stops being available (down, probing, drained, or demoted to replica): the router
///   re-checks the active endpoint's state (an atomic load) on every call, so callers never
///   wait for a background task.
/// - **Failback** to a more preferred endpoint happens only once it has stayed up for
///   [`Failback::After`], or never by itself with [`Failback::Manual`].
/// - **Never all down**: when no candidate is available the router still answers, with the
///   endpoint most likely to recover (probing before drained before down before known
///   replicas before forced down; then by priority; then the one down the longest), and flags it ([`Active::is_all_down`],
///   [`RouteEvent::AllDownEntered`]). While all down it moves only to a better tier, not
///   between equally dead endpoints.
/// - The **generation** grows by exactly one per switch.
///
/// Every change is a [`RouteEvent`] to each [subscriber](Self::subscribe) and a `tracing` event
/// with target `switchover::route`. Cheap to clone (an `Arc`).
pub struct Router<K> {
    pub(super) inner: Arc<RouterInner<K>>,
}

pub(super) struct RouterInner<K> {
    pub(super) word: AtomicU64,
    /// The lowest priority of any slot: an active endpoint at this priority has nothing to
    /// fail back to, so the steady path skips the scan.
    pub(super) min_priority: AtomicU32,
    pub(super) slots: Slots<Slot<K>>,
    pub(super) failback: Failback,
    pub(super) tracker: HealthTracker<K>,
    /// Serializes changes (switches, pushes) and holds the subscribers.
    pub(super) control: Mutex<Vec<mpsc::UnboundedSender<RouteEvent<K>>>>,
    /// The timeline and metrics (see [`crate::observe`]).
    pub(super) observer: Arc<Observer<K>>,
    /// The generation again, for [`GenerationMoved`](super::GenerationMoved) futures: set
    /// after each switch, which wakes them.
    pub(super) moved: Arc<crate::health::Signal>,
    /// Who decides the active endpoint (see [`super::named`]): local health, or the slot an
    /// authority names.
    pub(super) named: AtomicU32,
}

pub(super) struct Slot<K> {
    pub(super) endpoint: Endpoint<K>,
    pub(super) priority: u32,
}

// The packed word: index (16 bits) | all-down (1) | pinned (1) | open (1) | generation (45).
// `open`: a switch happened and no call has succeeded on the new active endpoint yet (the
// runner tells the timeline about that first success; the bit costs it no extra load).
pub(super) const INDEX_MASK: u64 = 0xFFFF;
pub(super) const ALL_DOWN: u64 = 1 << 16;
pub(super) const PINNED: u64 = 1 << 17;
pub(super) const OPEN: u64 = 1 << 18;
pub(super) const GEN_SHIFT: u32 = 19;

#[inline]
pub(super) fn index(w: u64) -> usize {
    (w & INDEX_MASK) as usize
}

#[inline]
pub(super) fn generation(w: u64) -> u64 {
    w >> GEN_SHIFT
}

pub(super) fn pack(index: usize, all_down: bool, pinned: bool, generation: u64) -> u64 {
    (index as u64 & INDEX_MASK)
        | if all_down { ALL_DOWN } else { 0 }
        | if pinned { PINNED } else { 0 }
        | (generation << GEN_SHIFT)
}

#[inline]
pub(super) fn is_candidate_up<K: EndpointId>(ep: &Endpoint<K>) -> bool {
    ep.is_available() && ep.role() != Role::Replica
}

/// How likely an unavailable endpoint is to serve soon; lower is better. Forced down is the
/// very last resort: someone said not to use it.
pub(super) fn tier<K: EndpointId>(ep: &Endpoint<K>) -> u8 {
    if ep.manual_override() == Some(Override::ForcedDown) {
        return 5;
    }
    if ep.role() == Role::Replica {
        return 4;
    }
    match ep.state() {
        HealthState::Up => 0,
        HealthState::Probing => 1,
        HealthState::Draining => 2,
        _ => 3,
    }
}

pub(super) struct Decision {
    pub(super) to: usize,
    pub(super) all_down: bool,
    pub(super) pinned: bool,
    pub(super) reason: SwitchReason,
}

impl<K> Clone for Router<K> {
    fn clone(&self) -> Self {
        Router {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: EndpointId> fmt::Debug for Router<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.inner.word.load(Ordering::Acquire);
        let endpoints: Vec<_> = self
            .inner
            .slots
            .iter()
            .map(|(_, s)| (s.endpoint.id(), s.priority))
            .collect();
        f.debug_struct("Router")
            .field("endpoints", &endpoints)
            .field("active", &self.inner.slot(index(w)).endpoint.id())
            .field("generation", &generation(w))
            .field("all_down", &(w & ALL_DOWN != 0))
            .field("failback", &self.inner.failback)
            .finish()
    }
}

impl<K: EndpointId> Router<K> {
    /// A builder of a router over `tracker`.
    pub fn builder(tracker: &HealthTracker<K>) -> RouterBuilder<K> {
        RouterBuilder {
            tracker: tracker.clone(),
            endpoints: Vec::new(),
            failback: Failback::default(),
            observe: Observe::default(),
        }
    }

    /// The active endpoint (where writes go), the generation, and the all-down flag.
    ///
    /// Lock-free: on the steady path a few atomic loads (the packed word, the active endpoint's
    /// state and role, the state of each more preferred endpoint). When something changed it
    /// decides the switch (taking a lock only to apply it), so failover happens on the first
    /// call after the active endpoint goes down.
    #[inline]
    pub fn active(&self) -> Active<'_, K> {
        let inner = &*self.inner;
        let w = inner.word.load(Ordering::Acquire);
        let cur = inner.slot(index(w));
        if inner.settled(w, cur) {
            return Active {
                endpoint: &cur.endpoint,
                generation: generation(w),
                all_down: false,
            };
        }
        inner.view(inner.refresh(w))
    }

    /// The current generation (one atomic load; does not re-evaluate).
    #[inline]
    pub fn generation(&self) -> u64 {
        generation(self.inner.word.load(Ordering::Acquire))
    }

    /// The generation, and whether a switch still waits for its first success (one atomic
    /// load, like [`generation`](Self::generation)).
    #[inline]
    pub(crate) fn generation_and_open(&self) -> (u64, bool) {
        let w = self.inner.word.load(Ordering::Acquire);
        (generation(w), w & OPEN != 0)
    }

    /// A call succeeded on `endpoint` at `generation` while a switch waited for its first
    /// success: if `endpoint` is the active one of that generation, the switch's failover
    /// ends (the first caller to clear the bit tells the timeline).
    #[cold]
    pub(crate) fn first_success(&self, endpoint: &Endpoint<K>, generation_seen: u64, at: Instant) {
        let inner = &*self.inner;
        let mut w = inner.word.load(Ordering::Acquire);
        loop {
            if w & OPEN == 0
                || generation(w) != generation_seen
                || !inner.slot(index(w)).endpoint.ptr_eq(endpoint)
            {
                return;
            }
            match inner.word.compare_exchange_weak(
                w,
                w & !OPEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        inner.observer.first_success(endpoint, generation_seen, at);
    }

    /// What [`GenerationMoved`](super::GenerationMoved) futures wait on.
    #[inline]
    pub(super) fn moved_signal(&self) -> &Arc<crate::health::Signal> {
        &self.inner.moved
    }

    /// The active endpoint as last decided, without re-evaluating (one atomic load): safe to
    /// call from a health sink, with an endpoint's transition lock held.
    #[inline]
    pub(crate) fn active_as_decided(&self) -> &Endpoint<K> {
        let w = self.inner.word.load(Ordering::Acquire);
        &self.inner.slot(index(w)).endpoint
    }

    /// The router's observer (timeline, metrics).
    #[inline]
    pub(crate) fn observer(&self) -> &Observer<K> {
        &self.inner.observer
    }

    /// The incident timeline: the last events around this router (health transitions of its
    /// tracker's endpoints, probes, switches, rediscovery, exhausted budgets) and the phases of
    /// each failover. See [`crate::observe`].
    pub fn timeline(&self) -> Timeline<K> {
        Timeline::new(Arc::clone(&self.inner.observer))
    }

    /// `true` when no primary candidate is available (re-evaluates, like
    /// [`active`](Self::active)).
    pub fn is_all_down(&self) -> bool {
        self.active().is_all_down()
    }

    /// The endpoint to read from under `policy` (see [`ReadPolicy`]); `None` when the policy
    /// finds none (for example [`ReplicaOnly`](super::ReplicaOnly) with no replica up).
    pub fn read_target<P: ReadPolicy<K> + ?Sized>(&self, policy: &P) -> Option<&Endpoint<K>> {
        let active = self.active();
        policy.choose(&self.read_candidates(&active))
    }

    /// What a read policy chooses from, given the active endpoint.
    pub(crate) fn read_candidates<'r>(&'r self, active: &Active<'r, K>) -> ReadCandidates<'r, K> {
        ReadCandidates::of_router(self, active.endpoint, active.all_down)
    }

    /// The most preferred available primary candidate that passes `keep` (lowest priority,
    /// then order of addition).
    pub(crate) fn best_candidate(
        &self,
        keep: impl Fn(&Endpoint<K>) -> bool,
    ) -> Option<&Endpoint<K>> {
        let mut best: Option<(u32, &Endpoint<K>)> = None;
        for (_, s) in self.inner.slots.iter() {
            if !is_candidate_up(&s.endpoint) || !keep(&s.endpoint) {
                continue;
            }
            if best.is_none_or(|(p, _)| s.priority < p) {
                best = Some((s.priority, &s.endpoint));
            }
        }
        best.map(|(_, ep)| ep)
    }

    /// Makes `id` the active endpoint now (after discovering a new primary, or for a planned
    /// switchover) and pins it: no automatic failback while it stays available (a failover
    /// still happens if it goes down, and unpins). Returns the generation (unchanged if `id`
    /// was already active).
    ///
    /// # Errors
    ///
    /// [`SwitchError`] if `id` is not routed here, is not available, is a known replica, or
    /// is not the endpoint an authority the router follows names.
    pub fn switch_to(&self, id: &K) -> Result<u64, SwitchError> {
        let inner = &*self.inner;
        let mut subs = lock(&inner.control);
        let i = inner.find(id).ok_or(SwitchError::UnknownEndpoint)?;
        inner.gate_admits(inner.gate_word(), i)?;
        let ep = &inner.slot(i).endpoint;
        if ep.role() == Role::Replica {
            return Err(SwitchError::NotPrimaryCandidate);
        }
        let state = ep.state();
        if !state.is_available() {
            return Err(SwitchError::Unavailable(state));
        }
        let w = inner.word.load(Ordering::Acquire);
        let d = Decision {
            to: i,
            all_down: false,
            pinned: true,
            reason: SwitchReason::Manual,
        };
        Ok(generation(inner.apply(&mut subs, w, d)))
    }

    /// Lets automatic failback work again after [`switch_to`](Self::switch_to).
    pub fn unpin(&self) {
        let inner = &*self.inner;
        let _subs = lock(&inner.control);
        inner.word.fetch_and(!PINNED, Ordering::AcqRel);
    }

    /// `true` while a [`switch_to`](Self::switch_to) pin holds.
    pub fn is_pinned(&self) -> bool {
        self.inner.word.load(Ordering::Acquire) & PINNED != 0
    }

    /// Drains `id` in the tracker (see [`Endpoint::drain`]) and moves the active role away from
    /// it if it had it: a switchover drill. Undo with [`HealthTracker::clear`]. Returns the
    /// generation afterwards.
    ///
    /// # Errors
    ///
    /// [`SwitchError::UnknownEndpoint`] if `id` is not routed here.
    pub fn evacuate(&self, id: &K) -> Result<u64, SwitchError> {
        let i = self.inner.find(id).ok_or(SwitchError::UnknownEndpoint)?;
        self.inner.slot(i).endpoint.drain();
        Ok(self.active().generation())
    }

    /// Adds an endpoint at run time (a discovered replica or node); registers it in the tracker
    /// if needed. Returns its handle.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if it is already routed here or the router is full (65 536 endpoints).
    pub fn add_endpoint(&self, id: K, priority: u32) -> Result<Endpoint<K>, ConfigError> {
        let inner = &*self.inner;
        let _subs = lock(&inner.control);
        if inner.find(&id).is_some() {
            return Err(ConfigError::new(
                "endpoints",
                format!("{id:?} is already routed"),
            ));
        }
        let endpoint = inner.tracker.add_endpoint(id);
        inner
            .slots
            .push(Slot {
                endpoint: endpoint.clone(),
                priority,
            })
            .ok_or_else(|| {
                ConfigError::new("endpoints", format!("at most {MAX_SLOTS} endpoints"))
            })?;
        inner.min_priority.fetch_min(priority, Ordering::AcqRel);
        Ok(endpoint)
    }

    /// The routed endpoints with their priorities, in the order they were added.
    pub fn endpoints(&self) -> impl Iterator<Item = (&Endpoint<K>, u32)> + '_ {
        self.inner
            .slots
            .iter()
            .map(|(_, s)| (&s.endpoint, s.priority))
    }

    /// How many endpoints are routed.
    #[inline]
    pub(crate) fn slot_count(&self) -> usize {
        self.inner.slots.len()
    }

    /// The endpoint of slot `i` (in the order of addition).
    #[inline]
    pub(crate) fn slot_endpoint(&self, i: usize) -> Option<&Endpoint<K>> {
        self.inner.slots.get(i).map(|s| &s.endpoint)
    }

    /// The tracker this router reads.
    pub fn tracker(&self) -> &HealthTracker<K> {
        &self.inner.tracker
    }

    /// A new subscription to every [`RouteEvent`], from now on: one unbounded channel per
    /// subscriber, so none is dropped. Events are only produced when the router re-evaluates
    /// (on [`active`](Self::active), [`read_target`](Self::read_target) and the operation
    /// runner), which every caller does before each call.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RouteEvent<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.control).push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_packing_round_trips() {
        let w = pack(513, true, false, 77);
        assert_eq!(index(w), 513);
        assert_eq!(generation(w), 77);
        assert!(w & ALL_DOWN != 0);
        assert!(w & PINNED == 0);
        let w = pack(0, false, true, (1 << 45) - 1);
        assert_eq!(generation(w), (1 << 45) - 1);
        assert!(w & OPEN == 0);
        assert_eq!(index(w), 0);
        assert!(w & PINNED != 0);
    }

    #[tokio::test(start_paused = true)]
    async fn build_rejects_empty_and_duplicates() {
        let t = HealthTracker::<&str>::new([]);
        assert_eq!(
            Router::builder(&t).build().unwrap_err().field(),
            "endpoints"
        );
        assert_eq!(
            Router::builder(&t)
                .endpoints(["a", "a"])
                .build()
                .unwrap_err()
                .field(),
            "endpoints"
        );
        let r = Router::builder(&t).endpoints(["a", "b"]).build().unwrap();
        assert_eq!(t.len(), 2, "endpoints are registered in the tracker");
        assert_eq!(r.active().id(), &"a");
        assert_eq!(r.active().generation(), 0);
    }
}

//! What the router, the tracker, the runner and the rediscovery report to: one per router,
//! holding its timeline ring, the failover in progress and its metric instruments.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::metrics::Instruments;
use super::recent::RecentFailures;
use super::timeline::{Event, EventKind, Failover, Phases};
use super::wall;
use crate::health::{
    Endpoint, EndpointId, HealthEvent, HealthSink, HealthState, ProbeResult, Role, TransitionReason,
};
use crate::route::SwitchReason;
use crate::sync::lock;

/// How a router is observed: its name (the `router` label of its metrics, the `name` of its
/// timeline) and the size of its timeline. Set with
/// [`RouterBuilder::observe`](crate::route::RouterBuilder::observe).
///
/// | setting | default |
/// |---|---|
/// | [`new`](Self::new) (name) | `router` |
/// | [`timeline_capacity`](Self::timeline_capacity) | 256 events |
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observe {
    pub(crate) name: Cow<'static, str>,
    pub(crate) capacity: usize,
}

impl Default for Observe {
    fn default() -> Self {
        Observe::new("router")
    }
}

impl Observe {
    /// A router observed as `name` (`redis`, `postgres`, `orders-table`): bounded text, never a
    /// credential.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Observe {
            name: name.into(),
            capacity: 256,
        }
    }

    /// The most events the timeline keeps (default 256; 0 keeps none, failovers are still
    /// measured). The oldest are evicted first.
    #[must_use]
    pub fn timeline_capacity(mut self, events: usize) -> Self {
        self.capacity = events;
        self
    }
}

/// The most failovers kept with their phases.
const FAILOVERS_KEPT: usize = 16;
/// How far back a probe result looks for an identical one of the same endpoint to merge with.
const PROBE_MERGE_WINDOW: usize = 16;

pub(crate) struct Observer<K> {
    pub(crate) name: Arc<str>,
    pub(crate) origin: Instant,
    pub(crate) ring: Mutex<Ring<K>>,
    pub(crate) metrics: Instruments,
}

pub(crate) struct Ring<K> {
    pub(crate) capacity: usize,
    pub(crate) events: VecDeque<Event<K>>,
    pub(crate) dropped: u64,
    pub(crate) failovers: VecDeque<Failover<K>>,
    pub(crate) failover_count: u64,
    seq: u64,
    /// The router's active endpoint, as last switched to.
    active: Endpoint<K>,
    incident: Option<Incident<K>>,
}

/// A failover in progress: from the first sign of trouble on the active endpoint to the first
/// success on the new one.
struct Incident<K> {
    from: Endpoint<K>,
    start: Instant,
    detected: Instant,
    rediscovered: Option<Instant>,
    switched: Option<Switched<K>>,
}

struct Switched<K> {
    to: K,
    generation: u64,
    reason: SwitchReason,
    at: Instant,
    count: u32,
}

impl<K: EndpointId> Observer<K> {
    pub(crate) fn new(config: &Observe, active: Endpoint<K>) -> Self {
        let name: Arc<str> = Arc::from(&*config.name);
        Observer {
            metrics: Instruments::new(&name),
            name,
            origin: Instant::now(),
            ring: Mutex::new(Ring {
                capacity: config.capacity,
                events: VecDeque::with_capacity(config.capacity.min(64)),
                dropped: 0,
                failovers: VecDeque::new(),
                failover_count: 0,
                seq: 0,
                active,
                incident: None,
            }),
        }
    }

    /// The router's first active endpoint (set once, when it is built).
    pub(crate) fn set_active(&self, active: Endpoint<K>) {
        lock(&self.ring).active = active;
    }

    /// The active endpoint was put in doubt (rediscovery's `suspect`).
    pub(crate) fn suspect(&self, active: &Endpoint<K>) {
        let now = Instant::now();
        let recent = recent_streak(active);
        let mut ring = lock(&self.ring);
        if ring.active.ptr_eq(active) {
            let start = active.failing_since().map_or(now, |t| t.min(now));
            ring.open(active, start, now);
        }
        self.push(
            &mut ring,
            now,
            Some(active.id().clone()),
            EventKind::Suspect,
            recent,
        );
    }

    pub(crate) fn rediscovery_started(&self) {
        let mut ring = lock(&self.ring);
        self.push(
            &mut ring,
            Instant::now(),
            None,
            EventKind::RediscoveryStarted,
            RecentFailures::default(),
        );
    }

    /// A run ended: the primary and generation it confirmed, or why not.
    /// `found_at`: when the backend answered (the switch, if any, came right after).
    pub(crate) fn rediscovery_finished(
        &self,
        outcome: Result<(K, u64), Arc<str>>,
        found_at: Instant,
        took: Duration,
    ) {
        self.metrics.rediscovery(outcome.is_ok(), took);
        let mut ring = lock(&self.ring);
        let (primary, error) = match outcome {
            Ok(p) => {
                if let Some(inc) = ring.incident.as_mut()
                    && inc.switched.as_ref().is_none_or(|s| s.at >= found_at)
                {
                    inc.rediscovered = Some(found_at);
                }
                (Some(p), None)
            }
            Err(e) => (None, Some(e)),
        };
        let endpoint = primary.as_ref().map(|(k, _)| k.clone());
        let kind = EventKind::RediscoveryFinished {
            primary,
            error,
            took,
        };
        self.push(
            &mut ring,
            Instant::now(),
            endpoint,
            kind,
            RecentFailures::default(),
        );
    }

    /// The router switched (called with its control lock held).
    pub(crate) fn switched(
        &self,
        from: &Endpoint<K>,
        to: &Endpoint<K>,
        generation: u64,
        reason: SwitchReason,
        all_down: bool,
        at: Instant,
    ) {
        self.metrics.switched(
            &super::label(from.id()),
            &super::label(to.id()),
            reason,
            generation,
        );
        let mut ring = lock(&self.ring);
        ring.active = to.clone();
        // A switch with no sign of trouble before (a failback, a manual switch) starts here.
        ring.open(from, at, at);
        if let Some(inc) = ring.incident.as_mut() {
            let count = inc.switched.as_ref().map_or(0, |s| s.count) + 1;
            inc.switched = Some(Switched {
                to: to.id().clone(),
                generation,
                reason,
                at,
                count,
            });
        }
        let kind = EventKind::Switch {
            from: from.id().clone(),
            to: to.id().clone(),
            generation,
            reason,
            all_down,
        };
        self.push(
            &mut ring,
            at,
            Some(from.id().clone()),
            kind,
            RecentFailures::default(),
        );
    }

    /// All-down entered (`true`) or left.
    pub(crate) fn all_down(&self, entered: bool, active: &K, at: Instant) {
        let mut ring = lock(&self.ring);
        let kind = if entered {
            EventKind::AllDown {
                active: active.clone(),
            }
        } else {
            EventKind::AllDownLeft {
                active: active.clone(),
            }
        };
        self.push(
            &mut ring,
            at,
            Some(active.clone()),
            kind,
            RecentFailures::default(),
        );
    }

    /// The first success on `endpoint` at `generation` since a switch (the runner saw the
    /// router's open-failover bit): ends the failover in progress if `endpoint` is the one
    /// switched to.
    pub(crate) fn first_success(&self, endpoint: &Endpoint<K>, generation: u64, at: Instant) {
        let mut ring = lock(&self.ring);
        let done = match &ring.incident {
            Some(Incident {
                switched: Some(s), ..
            }) => s.generation <= generation && s.to == *endpoint.id(),
            _ => false,
        };
        if !done {
            return;
        }
        let Some(inc) = ring.incident.take() else {
            return;
        };
        let Some(sw) = inc.switched else { return };
        // A streak still running on the old endpoint (it stayed up: a suspicion) may have
        // started before the incident was opened.
        let start = match inc.from.failing_since() {
            Some(t) if inc.from.raw_state() == HealthState::Up => t.min(inc.start),
            _ => inc.start,
        }
        .min(sw.at);
        let detected = inc.detected.clamp(start, sw.at);
        let rediscovered = inc
            .rediscovered
            .map_or(detected, |t| t.clamp(detected, sw.at));
        let at = at.max(sw.at);
        let phases = Phases {
            detection: detected - start,
            rediscovery: rediscovered - detected,
            switch: sw.at - rediscovered,
            first_success: at - sw.at,
        };
        let failover = Failover {
            from: inc.from.id().clone(),
            to: sw.to,
            generation: sw.generation,
            reason: sw.reason,
            switches: sw.count,
            started_at: start,
            ended_at: at,
            wall: wall::wall_of(start),
            phases,
        };
        self.metrics.failover(sw.reason, phases.total());
        ring.failover_count += 1;
        if ring.failovers.len() == FAILOVERS_KEPT {
            ring.failovers.pop_front();
        }
        ring.failovers.push_back(failover.clone());
        let endpoint = Some(endpoint.id().clone());
        self.push(
            &mut ring,
            at,
            endpoint,
            EventKind::Failover(failover),
            RecentFailures::default(),
        );
    }

    /// More than one endpoint was found writable at once (see
    /// [`EventKind::WritablePrimaries`]); the event is about the one `following`.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn writable_primaries(
        &self,
        primaries: Vec<(K, Option<u32>)>,
        following: Option<K>,
        same_cluster: bool,
    ) {
        self.metrics.writable_primaries();
        let mut ring = lock(&self.ring);
        let kind = EventKind::WritablePrimaries {
            primaries,
            following: following.clone(),
            same_cluster,
        };
        self.push(
            &mut ring,
            Instant::now(),
            following,
            kind,
            RecentFailures::default(),
        );
    }

    /// A call stopped because the budget could not pay for a retry.
    pub(crate) fn budget_exhausted(
        &self,
        endpoint: Option<K>,
        attempts: u32,
        last: RecentFailures,
    ) {
        self.metrics.budget_exhausted();
        let mut ring = lock(&self.ring);
        let kind = EventKind::BudgetExhausted { attempts };
        self.push(&mut ring, Instant::now(), endpoint, kind, last);
    }

    /// Appends an event (evicting the oldest past the capacity) and traces it.
    fn push(
        &self,
        ring: &mut Ring<K>,
        at: Instant,
        endpoint: Option<K>,
        kind: EventKind<K>,
        errors: RecentFailures,
    ) {
        ring.seq += 1;
        let event = Event {
            seq: ring.seq,
            at,
            wall: SystemTime::now(),
            endpoint,
            kind,
            errors,
        };
        super::trace::emit(&self.name, self.origin, &event);
        if ring.capacity == 0 {
            ring.dropped += 1;
            return;
        }
        if ring.events.len() >= ring.capacity {
            ring.events.pop_front();
            ring.dropped += 1;
        }
        ring.events.push_back(event);
    }
}

impl<K: EndpointId> Ring<K> {
    /// Opens an incident on `from` unless one is open.
    fn open(&mut self, from: &Endpoint<K>, start: Instant, detected: Instant) {
        if self.incident.is_none() {
            self.incident = Some(Incident {
                from: from.clone(),
                start: start.min(detected),
                detected,
                rediscovered: None,
                switched: None,
            });
        }
    }

    /// Merges a probe result into the last event of the same endpoint if that is an identical
    /// probe result (within the last few events); `false` when there is none to merge with.
    fn merge_probe(&mut self, id: &K, r: &ProbeResult, now: Instant) -> bool {
        for e in self.events.iter_mut().rev().take(PROBE_MERGE_WINDOW) {
            if e.endpoint.as_ref() != Some(id) {
                continue;
            }
            let EventKind::Probe {
                up,
                role,
                latency,
                count,
                last_at,
            } = &mut e.kind
            else {
                return false;
            };
            {
                if *up != r.is_up() || *role != r.role() {
                    return false;
                }
                *count = count.saturating_add(1);
                *last_at = now;
                if r.latency().is_some() {
                    *latency = r.latency();
                }
                return true;
            }
        }
        false
    }
}

/// The failures of the endpoint's current streak (at most 8).
fn recent_streak<K: EndpointId>(ep: &Endpoint<K>) -> RecentFailures {
    let n = ep.stats().consecutive_failures.min(8) as usize;
    RecentFailures::from_bits(ep.recent_failures()).newest(n)
}

impl<K: EndpointId> HealthSink<K> for Observer<K> {
    fn transition(&self, ev: &HealthEvent<K>, recent: u64) {
        self.metrics
            .state(&super::label(&ev.endpoint), ev.from, ev.to);
        let errors = match ev.reason {
            TransitionReason::ConsecutiveFailures { failures }
            | TransitionReason::FailureRate { failures, .. } => {
                RecentFailures::from_bits(recent).newest(failures.min(8) as usize)
            }
            TransitionReason::ProbingFailed => RecentFailures::from_bits(recent).newest(1),
            _ => RecentFailures::default(),
        };
        let mut ring = lock(&self.ring);
        if *ring.active.id() == ev.endpoint {
            if ev.to.is_available() {
                // Back without a switch: nothing failed over.
                if ring.incident.as_ref().is_some_and(|i| i.switched.is_none()) {
                    ring.incident = None;
                }
            } else {
                let active = ring.active.clone();
                let start = ev.failing_since.unwrap_or(ev.at);
                ring.open(&active, start, ev.at);
            }
        }
        let kind = EventKind::State {
            from: ev.from,
            to: ev.to,
            reason: ev.reason,
            ejection: ev.ejection,
        };
        self.push(&mut ring, ev.at, Some(ev.endpoint.clone()), kind, errors);
    }

    fn role_changed(&self, id: &K, from: Role, to: Role) {
        let now = Instant::now();
        let mut ring = lock(&self.ring);
        if *ring.active.id() == *id && to == Role::Replica {
            let active = ring.active.clone();
            let start = active.failing_since().map_or(now, |t| t.min(now));
            ring.open(&active, start, now);
        }
        let kind = EventKind::Role { from, to };
        self.push(
            &mut ring,
            now,
            Some(id.clone()),
            kind,
            RecentFailures::default(),
        );
    }

    #[cfg(feature = "metrics")]
    fn heartbeat(&self, id: &K, outcome: &'static str, took: Duration) {
        self.metrics.heartbeat(&super::label(id), outcome, took);
    }

    fn probe(&self, id: &K, result: &ProbeResult) {
        if let Some(l) = result.latency() {
            self.metrics.probe_latency(&super::label(id), l);
        }
        let now = Instant::now();
        let mut ring = lock(&self.ring);
        if ring.capacity > 0 && ring.merge_probe(id, result, now) {
            return;
        }
        let kind = EventKind::Probe {
            up: result.is_up(),
            role: result.role(),
            latency: result.latency(),
            count: 1,
            last_at: now,
        };
        self.push(
            &mut ring,
            now,
            Some(id.clone()),
            kind,
            RecentFailures::default(),
        );
    }
}

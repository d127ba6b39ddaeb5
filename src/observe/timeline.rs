//! The incident timeline: a bounded ring of typed events and the phases of each failover.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::observer::Observer;
use super::recent::RecentFailures;
use crate::health::{EndpointId, HealthState, Role, TransitionReason};
use crate::route::SwitchReason;
use crate::sync::lock;

/// One entry of a [`Timeline`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Event<K> {
    /// Its number: 1 for the router's first event, +1 per event (evicted ones included).
    pub seq: u64,
    /// When (Tokio's clock: exact under a paused clock).
    pub at: Instant,
    /// When, by the wall clock.
    pub wall: SystemTime,
    /// The endpoint it is about, if any.
    pub endpoint: Option<K>,
    /// What happened.
    pub kind: EventKind<K>,
    /// The last classified failures on the endpoint that led to it (an ejection by failures, a
    /// suspicion, an exhausted budget); empty otherwise.
    pub errors: RecentFailures,
}

/// What happened, in a [`Timeline`] [`Event`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind<K> {
    /// The primary was put in doubt (an error from it, a `READONLY`): rediscovery asked for.
    Suspect,
    /// A health transition: down (ejected or forced), probing, up again, drained.
    State {
        /// The state left.
        from: HealthState,
        /// The state entered.
        to: HealthState,
        /// Why.
        reason: TransitionReason,
        /// For an ejection: how long.
        ejection: Option<Duration>,
    },
    /// The endpoint's replication role changed (a promotion, a demotion).
    Role {
        /// The old role.
        from: Role,
        /// The new role.
        to: Role,
    },
    /// Probe results; consecutive identical results of one endpoint are one event.
    Probe {
        /// The endpoint answered correctly.
        up: bool,
        /// The role it reported.
        role: Option<Role>,
        /// The latency of the last probe, if reported.
        latency: Option<Duration>,
        /// How many identical results this event stands for (1 or more).
        count: u32,
        /// When the last of them came.
        last_at: Instant,
    },
    /// A rediscovery run started.
    RediscoveryStarted,
    /// A rediscovery run ended.
    RediscoveryFinished {
        /// The primary it confirmed, with the generation afterwards.
        primary: Option<(K, u64)>,
        /// Why it found none.
        error: Option<Arc<str>>,
        /// How long the run took.
        took: Duration,
    },
    /// The active endpoint changed (a failover, an evacuation, a demotion, a failback, a
    /// manual or rediscovered switch).
    Switch {
        /// The previous active endpoint.
        from: K,
        /// The new one.
        to: K,
        /// The generation after the switch.
        generation: u64,
        /// Why.
        reason: SwitchReason,
        /// `true` when no candidate was available (the new one is a best guess).
        all_down: bool,
    },
    /// No primary candidate is available.
    AllDown {
        /// The best guess the router returns meanwhile.
        active: K,
    },
    /// A primary candidate is available again.
    AllDownLeft {
        /// The active endpoint.
        active: K,
    },
    /// A call stopped because the retry budget could not pay for a retry.
    BudgetExhausted {
        /// The attempts the call made.
        attempts: u32,
    },
    /// A failover ended with the first success on the new active endpoint.
    Failover(Failover<K>),
    /// More than one endpoint accepts writes at once (a split brain: for Postgres, a standby
    /// promoted while the old primary still takes writes), found by one discovery run. Reported
    /// once per set of endpoints found writable together, again only after one of them was
    /// seen as something else (read-only, a standby, unreachable) or a new one joined the set;
    /// the event's endpoint is the one followed.
    WritablePrimaries {
        /// Every endpoint found writable, in endpoint order, with its timeline (Postgres: the
        /// timeline of its current WAL position) when it could be read.
        primaries: Vec<(K, Option<u32>)>,
        /// The one the router follows: the higher timeline of one cluster, else the current
        /// primary, else the endpoint listed first (never the first to answer); under an
        /// authority, the one it names (`None` when it names none of them).
        following: Option<K>,
        /// `true` when every known lineage is of one cluster (the same system identifier):
        /// timelines are compared only then.
        same_cluster: bool,
    },
}

impl<K> EventKind<K> {
    /// The stable name of the kind: `suspect`, `down`, `probing`, `up`, `drain`, `role`,
    /// `probe`, `rediscovery_started`, `rediscovery_finished`, `switch`, `failback`,
    /// `all_down`, `all_down_left`, `budget_exhausted`, `failover`, `writable_primaries`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Suspect => "suspect",
            EventKind::State { to, .. } => match to {
                HealthState::Down => "down",
                HealthState::Probing => "probing",
                HealthState::Up => "up",
                _ => "drain",
            },
            EventKind::Role { .. } => "role",
            EventKind::Probe { .. } => "probe",
            EventKind::RediscoveryStarted => "rediscovery_started",
            EventKind::RediscoveryFinished { .. } => "rediscovery_finished",
            EventKind::Switch {
                reason: SwitchReason::Failback,
                ..
            } => "failback",
            EventKind::Switch { .. } => "switch",
            EventKind::AllDown { .. } => "all_down",
            EventKind::AllDownLeft { .. } => "all_down_left",
            EventKind::BudgetExhausted { .. } => "budget_exhausted",
            EventKind::Failover(_) => "failover",
            EventKind::WritablePrimaries { .. } => "writable_primaries",
        }
    }
}

/// How long each part of a failover took. The parts follow each other, so they add up to the
/// client gap: from the start of the first failed call on the old active endpoint to the first
/// success on the new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Phases {
    /// From the start of the first failed call of the failing streak to the moment the endpoint
    /// was declared down, drained, demoted, or the primary put in doubt.
    pub detection: Duration,
    /// From then to the end of the rediscovery run that confirmed the new primary (zero when
    /// the router failed over by itself).
    pub rediscovery: Duration,
    /// From then to the router's switch.
    pub switch: Duration,
    /// From the switch to the first successful call on the new active endpoint (backoff and
    /// the new endpoint's first answer).
    pub first_success: Duration,
}

impl Phases {
    /// The sum of the phases: the client gap.
    pub fn total(&self) -> Duration {
        self.detection + self.rediscovery + self.switch + self.first_success
    }
}

/// One failover, start to end (see [`Phases`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Failover<K> {
    /// The endpoint that was active before.
    pub from: K,
    /// The endpoint that served first afterwards.
    pub to: K,
    /// The generation it served in.
    pub generation: u64,
    /// The reason of the switch (of the last one, when the router switched more than once).
    pub reason: SwitchReason,
    /// How many switches it took (more than one through an all-down period).
    pub switches: u32,
    /// When the first failed call started (Tokio's clock).
    pub started_at: Instant,
    /// When the first success came.
    pub ended_at: Instant,
    /// When it started, by the wall clock.
    pub wall: SystemTime,
    /// How long each part took.
    pub phases: Phases,
}

/// A router's incident timeline (see [`Router::timeline`](crate::route::Router::timeline)): the
/// last events, oldest first, bounded by the capacity set with
/// [`Observe::timeline_capacity`](super::Observe::timeline_capacity), and the last failovers
/// with their phases.
///
/// Fed synchronously by the tracker (transitions, roles, probes), the router (switches,
/// all-down), the runner (first success after a switch, exhausted budgets) and the
/// rediscovery (suspicions, runs). Each event is also a `tracing` event with target
/// `switchover::timeline` and stable field names (see the [module docs](super)). Cheap to clone.
pub struct Timeline<K> {
    pub(super) observer: Arc<Observer<K>>,
}

impl<K> Clone for Timeline<K> {
    fn clone(&self) -> Self {
        Timeline {
            observer: Arc::clone(&self.observer),
        }
    }
}

impl<K: EndpointId> fmt::Debug for Timeline<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = lock(&self.observer.ring);
        f.debug_struct("Timeline")
            .field("capacity", &ring.capacity)
            .field("len", &ring.events.len())
            .field("dropped", &ring.dropped)
            .field("failovers", &ring.failovers.len())
            .finish()
    }
}

impl<K: EndpointId> Timeline<K> {
    pub(crate) fn new(observer: Arc<Observer<K>>) -> Self {
        Timeline { observer }
    }

    /// The events kept, oldest first (a copy).
    pub fn events(&self) -> Vec<Event<K>> {
        lock(&self.observer.ring).events.iter().cloned().collect()
    }

    /// The last failovers (up to 16), oldest first.
    pub fn failovers(&self) -> Vec<Failover<K>> {
        lock(&self.observer.ring)
            .failovers
            .iter()
            .cloned()
            .collect()
    }

    /// The last failover, if any.
    pub fn last_failover(&self) -> Option<Failover<K>> {
        lock(&self.observer.ring).failovers.back().cloned()
    }

    /// How many failovers ended since the router was built.
    pub fn failover_count(&self) -> u64 {
        lock(&self.observer.ring).failover_count
    }

    /// The most events kept.
    pub fn capacity(&self) -> usize {
        lock(&self.observer.ring).capacity
    }

    /// Events evicted to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        lock(&self.observer.ring).dropped
    }

    /// The router's name (see [`Observe::new`](super::Observe::new)).
    pub fn name(&self) -> &str {
        &self.observer.name
    }

    /// When the router was built: the origin of the `atMs` fields of the JSON.
    pub fn origin(&self) -> Instant {
        self.observer.origin
    }
}

#[cfg(feature = "serde")]
mod ser {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    use super::*;
    use crate::observe::{label, wall};

    fn ms(d: Duration) -> f64 {
        wall::millis(d)
    }

    impl Serialize for Phases {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(5))?;
            m.serialize_entry("detectionMs", &ms(self.detection))?;
            m.serialize_entry("rediscoveryMs", &ms(self.rediscovery))?;
            m.serialize_entry("switchMs", &ms(self.switch))?;
            m.serialize_entry("firstSuccessMs", &ms(self.first_success))?;
            m.serialize_entry("totalMs", &ms(self.total()))?;
            m.end()
        }
    }

    /// A failover with the origin its `atMs` is measured from.
    pub(super) struct FailoverAt<'a, K>(pub(super) &'a Failover<K>, pub(super) Instant);

    impl<K: EndpointId> FailoverAt<'_, K> {
        fn entries<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
            let f = self.0;
            m.serialize_entry("from", &label(&f.from))?;
            m.serialize_entry("to", &label(&f.to))?;
            m.serialize_entry("generation", &f.generation)?;
            m.serialize_entry("reason", &f.reason.to_string())?;
            m.serialize_entry("switches", &f.switches)?;
            m.serialize_entry(
                "startedAtMs",
                &ms(f.started_at.saturating_duration_since(self.1)),
            )?;
            m.serialize_entry("startedTime", &wall::rfc3339(f.wall))?;
            m.serialize_entry("phases", &f.phases)
        }
    }

    impl<K: EndpointId> Serialize for FailoverAt<'_, K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            self.entries(&mut m)?;
            m.end()
        }
    }

    struct EventAt<'a, K>(&'a Event<K>, Instant);

    /// One of the writable primaries: `{"endpoint", "timeline"}` (no `timeline` when unknown).
    struct Primary<'a, K>(&'a K, Option<u32>);

    impl<K: EndpointId> Serialize for Primary<'_, K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("endpoint", &label(self.0))?;
            if let Some(tl) = self.1 {
                m.serialize_entry("timeline", &tl)?;
            }
            m.end()
        }
    }

    impl<K: EndpointId> Serialize for EventAt<'_, K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let (e, origin) = (self.0, self.1);
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("seq", &e.seq)?;
            m.serialize_entry("event", e.kind.name())?;
            m.serialize_entry("atMs", &ms(e.at.saturating_duration_since(origin)))?;
            m.serialize_entry("time", &wall::rfc3339(e.wall))?;
            if let Some(ep) = &e.endpoint {
                m.serialize_entry("endpoint", &label(ep))?;
            }
            kind_entries(&mut m, &e.kind, origin)?;
            if !e.errors.is_empty() {
                m.serialize_entry("errors", &e.errors)?;
            }
            m.end()
        }
    }

    fn kind_entries<K: EndpointId, M: SerializeMap>(
        m: &mut M,
        kind: &EventKind<K>,
        origin: Instant,
    ) -> Result<(), M::Error> {
        match kind {
            EventKind::State {
                from,
                to,
                reason,
                ejection,
            } => {
                m.serialize_entry("from", &from.to_string())?;
                m.serialize_entry("to", &to.to_string())?;
                m.serialize_entry("reason", &reason.to_string())?;
                if let Some(e) = ejection {
                    m.serialize_entry("ejectionMs", &ms(*e))?;
                }
            }
            EventKind::Role { from, to } => {
                m.serialize_entry("from", &from.to_string())?;
                m.serialize_entry("to", &to.to_string())?;
            }
            EventKind::Probe {
                up,
                role,
                latency,
                count,
                last_at,
            } => {
                m.serialize_entry("up", up)?;
                if let Some(r) = role {
                    m.serialize_entry("role", &r.to_string())?;
                }
                if let Some(l) = latency {
                    m.serialize_entry("latencyMs", &ms(*l))?;
                }
                m.serialize_entry("count", count)?;
                m.serialize_entry("lastAtMs", &ms(last_at.saturating_duration_since(origin)))?;
            }
            EventKind::RediscoveryFinished {
                primary,
                error,
                took,
            } => {
                if let Some((p, g)) = primary {
                    m.serialize_entry("primary", &label(p))?;
                    m.serialize_entry("generation", g)?;
                }
                if let Some(e) = error {
                    m.serialize_entry("error", &**e)?;
                }
                m.serialize_entry("tookMs", &ms(*took))?;
            }
            EventKind::Switch {
                from,
                to,
                generation,
                reason,
                all_down,
            } => {
                m.serialize_entry("from", &label(from))?;
                m.serialize_entry("to", &label(to))?;
                m.serialize_entry("generation", generation)?;
                m.serialize_entry("reason", &reason.to_string())?;
                m.serialize_entry("allDown", all_down)?;
            }
            EventKind::AllDown { active } | EventKind::AllDownLeft { active } => {
                m.serialize_entry("active", &label(active))?;
            }
            EventKind::BudgetExhausted { attempts } => {
                m.serialize_entry("attempts", attempts)?;
            }
            EventKind::Failover(f) => FailoverAt(f, origin).entries(m)?,
            EventKind::WritablePrimaries {
                primaries,
                following,
                same_cluster,
            } => {
                let list: Vec<Primary<'_, K>> =
                    primaries.iter().map(|(k, tl)| Primary(k, *tl)).collect();
                m.serialize_entry("primaries", &list)?;
                if let Some(f) = following {
                    m.serialize_entry("following", &label(f))?;
                }
                m.serialize_entry("sameCluster", same_cluster)?;
            }
            EventKind::Suspect | EventKind::RediscoveryStarted => {}
        }
        Ok(())
    }

    /// `{"name", "capacity", "dropped", "failoverCount", "events": [...], "failovers": [...]}`.
    impl<K: EndpointId> Serialize for Timeline<K> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let origin = self.observer.origin;
            let ring = lock(&self.observer.ring);
            let mut m = s.serialize_map(Some(6))?;
            m.serialize_entry("name", &*self.observer.name)?;
            m.serialize_entry("capacity", &ring.capacity)?;
            m.serialize_entry("dropped", &ring.dropped)?;
            m.serialize_entry("failoverCount", &ring.failover_count)?;
            let events: Vec<_> = ring.events.iter().map(|e| EventAt(e, origin)).collect();
            m.serialize_entry("events", &events)?;
            let failovers: Vec<_> = ring
                .failovers
                .iter()
                .map(|f| FailoverAt(f, origin))
                .collect();
            m.serialize_entry("failovers", &failovers)?;
            m.end()
        }
    }
}

//! The health snapshot: a value in the shape of the IETF health-check draft
//! (`draft-inadarei-api-health-check`), for `/health` endpoints of load balancers and Kubernetes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::wall;
use crate::health::{EndpointId, EndpointStats, HealthState, Role};
use crate::route::Router;

/// `pass`, `warn` or `fail`, ordered from best to worst.
///
/// A service that has failed over, or lost a replica, is `warn`: it serves. `fail` means the
/// calls it exists for (writes; reads for a read-only user) cannot be served now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Status {
    /// Healthy.
    #[default]
    Pass,
    /// Serving, degraded (failed over, a replica down, a discovery in doubt).
    Warn,
    /// Not serving.
    Fail,
}

impl Status {
    /// The worse of the two.
    #[must_use]
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }

    /// The HTTP status code the draft suggests: 200 for `pass` and `warn`, 503 for `fail`.
    pub fn http_code(self) -> u16 {
        match self {
            Status::Fail => 503,
            _ => 200,
        }
    }

    /// `pass`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field of a check's `observedValue` object.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
#[non_exhaustive]
pub enum Value {
    /// Text (a role, a state).
    Text(Cow<'static, str>),
    /// A count.
    Count(u64),
    /// A measurement (milliseconds, a ratio).
    Number(f64),
    /// A flag.
    Flag(bool),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::Text(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(Cow::Owned(s))
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Count(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Count(u64::from(n))
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Flag(b)
    }
}

impl From<Duration> for Value {
    /// In milliseconds.
    fn from(d: Duration) -> Self {
        Value::Number(wall::millis(d))
    }
}

/// One check of one component: an entry of a `checks` array of the draft.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
#[non_exhaustive]
pub struct Check {
    /// The component's id: an endpoint's `host:port` or region name.
    pub component_id: String,
    /// `datastore`, `component` or `system` in the draft's vocabulary.
    pub component_type: Cow<'static, str>,
    /// What was observed (role, state, latency in ms, lag, …), as one JSON object.
    #[cfg_attr(feature = "serde", serde(rename = "observedValue"))]
    pub observed: BTreeMap<Cow<'static, str>, Value>,
    /// The check's status.
    pub status: Status,
    /// When it was observed (RFC 3339 in JSON).
    #[cfg_attr(feature = "serde", serde(serialize_with = "wall::serialize"))]
    pub time: SystemTime,
    /// Why it is not `pass` (empty when it is).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub output: String,
}

impl Check {
    /// A `pass` check of `component_id`, observed now, with nothing observed yet.
    pub fn new(
        component_id: impl Into<String>,
        component_type: impl Into<Cow<'static, str>>,
    ) -> Self {
        Check {
            component_id: component_id.into(),
            component_type: component_type.into(),
            observed: BTreeMap::new(),
            status: Status::Pass,
            time: SystemTime::now(),
            output: String::new(),
        }
    }

    /// Adds (or replaces) an observed field, e.g. `lagBytes`.
    #[must_use]
    pub fn with(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.observe(key, value);
        self
    }

    /// Adds (or replaces) an observed field in place.
    pub fn observe(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        self.observed.insert(key.into(), value.into());
    }

    /// Lowers the status to `status` (never raises it) and says why.
    pub fn degrade(&mut self, status: Status, output: impl Into<String>) {
        if status > self.status {
            self.status = status;
            self.output = output.into();
        }
    }
}

/// A health document: the top-level `status` (the worst of the checks) and the `checks` map,
/// keyed `component:measurement` (`redis:primary`, `postgres:standby`, `dynamodb:region`).
///
/// Built from a router with [`Router::health`], extended by adapters with their own fields
/// ([`check_mut`](Self::check_mut)), merged over several pools with
/// [`aggregate`](Self::aggregate). Serializable with the `serde` feature.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Health {
    /// The worst status of any check.
    pub status: Status,
    /// The checks, by `component:measurement`.
    pub checks: BTreeMap<String, Vec<Check>>,
}

impl Health {
    /// An empty `pass` document.
    pub fn new() -> Self {
        Health::default()
    }

    /// Adds `check` under `key`; the top-level status becomes the worse of the two.
    pub fn add(&mut self, key: impl Into<String>, check: Check) {
        self.status = self.status.worst(check.status);
        self.checks.entry(key.into()).or_default().push(check);
    }

    /// The checks under `key`.
    pub fn checks(&self, key: &str) -> &[Check] {
        self.checks.get(key).map_or(&[], Vec::as_slice)
    }

    /// The check of `component_id` under `key`, to add fields or degrade it. Call
    /// [`refresh_status`](Self::refresh_status) after degrading.
    pub fn check_mut(&mut self, key: &str, component_id: &str) -> Option<&mut Check> {
        self.checks
            .get_mut(key)?
            .iter_mut()
            .find(|c| c.component_id == component_id)
    }

    /// Recomputes the top-level status from the checks.
    pub fn refresh_status(&mut self) {
        self.status = self
            .checks
            .values()
            .flatten()
            .fold(Status::Pass, |s, c| s.worst(c.status));
    }

    /// One document over several (a service with a Redis pool and a Postgres pool): every check
    /// of each, and the worst status.
    pub fn aggregate(parts: impl IntoIterator<Item = Health>) -> Health {
        let mut all = Health::new();
        for part in parts {
            all.status = all.status.worst(part.status);
            for (key, checks) in part.checks {
                all.checks.entry(key).or_default().extend(checks);
            }
        }
        all
    }
}

/// What a router's snapshot is needed for: `fail` means that cannot be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Need {
    /// Writes (the default): `fail` when no primary candidate is available.
    #[default]
    Writes,
    /// Reads only: `fail` only when no endpoint at all is available.
    Reads,
}

/// How a router's snapshot is named in a [`Health`] document: the system (`redis`), the
/// measurement of the active endpoint (`primary`), of the others (`replica`, `standby`,
/// `region`), the component type, and what the user needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Components {
    system: Cow<'static, str>,
    active: Cow<'static, str>,
    others: Cow<'static, str>,
    component_type: Cow<'static, str>,
    need: Need,
}

impl Components {
    /// Checks `{system}:primary` for the active endpoint and `{system}:replica` for the others,
    /// component type `datastore`, for writes.
    pub fn new(system: impl Into<Cow<'static, str>>) -> Self {
        Components {
            system: system.into(),
            active: Cow::Borrowed("primary"),
            others: Cow::Borrowed("replica"),
            component_type: Cow::Borrowed("datastore"),
            need: Need::Writes,
        }
    }

    /// The measurement name of the active endpoint (default `primary`).
    #[must_use]
    pub fn active(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.active = name.into();
        self
    }

    /// The measurement name of the other endpoints (default `replica`).
    #[must_use]
    pub fn others(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.others = name.into();
        self
    }

    /// One measurement name for every endpoint, the active one included (DynamoDB's `region`).
    #[must_use]
    pub fn all(self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        self.active(name.clone()).others(name)
    }

    /// The component type (default `datastore`).
    #[must_use]
    pub fn component_type(mut self, t: impl Into<Cow<'static, str>>) -> Self {
        self.component_type = t.into();
        self
    }

    /// What the snapshot is needed for (default [`Need::Writes`]).
    #[must_use]
    pub fn need(mut self, need: Need) -> Self {
        self.need = need;
        self
    }

    /// The key of the active endpoint's check (`redis:primary`).
    pub fn active_key(&self) -> String {
        format!("{}:{}", self.system, self.active)
    }

    /// The key of the other endpoints' checks (`redis:replica`).
    pub fn others_key(&self) -> String {
        format!("{}:{}", self.system, self.others)
    }
}

/// One endpoint in a [`RouterSnapshot`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EndpointSnapshot<K> {
    /// Its id.
    pub id: K,
    /// Its priority in the router (lower is preferred).
    pub priority: u32,
    /// `true` for the active endpoint.
    pub active: bool,
    /// Its state and counters.
    pub stats: EndpointStats,
}

/// What a router knows now, read from atomics (no I/O; the lock-free reads of
/// [`Router::active`] and [`Endpoint::stats`](crate::health::Endpoint::stats)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RouterSnapshot<K> {
    /// The active endpoint.
    pub active: K,
    /// The generation.
    pub generation: u64,
    /// `true` when no primary candidate is available.
    pub all_down: bool,
    /// `true` when a more preferred endpoint than the active one is routed: the router has
    /// failed over (and not back).
    pub failed_over: bool,
    /// `true` while a manual switch pins the active endpoint.
    pub pinned: bool,
    /// Every routed endpoint, in the order of addition.
    pub endpoints: Vec<EndpointSnapshot<K>>,
    /// When it was taken.
    pub at: Instant,
}

impl<K: EndpointId> Router<K> {
    /// The router's state now: active endpoint, generation, all-down, failed over, and every
    /// endpoint's state and counters. Atomic reads only on the steady path; no I/O.
    pub fn snapshot(&self) -> RouterSnapshot<K> {
        let active = self.active();
        let (active_ep, generation, all_down) =
            (active.endpoint(), active.generation(), active.is_all_down());
        let mut best = u32::MAX;
        let mut active_priority = 0;
        let endpoints: Vec<_> = self
            .endpoints()
            .map(|(ep, priority)| {
                let is_active = ep.ptr_eq(active_ep);
                if is_active {
                    active_priority = priority;
                }
                if ep.role() != Role::Replica {
                    best = best.min(priority);
                }
                EndpointSnapshot {
                    id: ep.id().clone(),
                    priority,
                    active: is_active,
                    stats: ep.stats(),
                }
            })
            .collect();
        RouterSnapshot {
            active: active_ep.id().clone(),
            generation,
            all_down,
            failed_over: !all_down && active_priority > best,
            pinned: self.is_pinned(),
            endpoints,
            at: Instant::now(),
        }
    }

    /// The router's [`Health`] document, named by `components`: the active endpoint under
    /// [`Components::active_key`], the others under [`Components::others_key`]. See
    /// [`RouterSnapshot::health`] for the status rules.
    pub fn health(&self, components: &Components) -> Health {
        self.snapshot().health(components)
    }
}

impl<K: EndpointId> RouterSnapshot<K> {
    /// The snapshot as a [`Health`] document.
    ///
    /// - the active endpoint: `fail` when no primary candidate is available (for
    ///   [`Need::Reads`]: when no endpoint at all is, else `warn`); `warn` when the router has
    ///   failed over, or the active endpoint is not up; `pass` otherwise;
    /// - every other endpoint: `pass` when up, `warn` otherwise; never `fail`.
    ///
    /// Each check observes `role`, `state`, `priority`, `latencyMs` (moving average, when
    /// known), `failuresTotal`, `ejections`, `stateForMs`; the active one also `generation`.
    /// Component ids are the endpoint ids as shown by `Debug` without quotes (`host:port`,
    /// region names).
    pub fn health(&self, components: &Components) -> Health {
        let wall_now = SystemTime::now();
        let any_up = self.endpoints.iter().any(|e| e.stats.state.is_available());
        let mut health = Health::new();
        for ep in &self.endpoints {
            let s = &ep.stats;
            let mut check = Check::new(super::label(&ep.id), components.component_type.clone())
                .with("role", role_str(s.role))
                .with("state", state_str(s.state))
                .with("priority", ep.priority)
                .with("failuresTotal", s.failures_total)
                .with("ejections", s.ejections)
                .with("stateForMs", self.at.saturating_duration_since(s.since));
            check.time = wall_now;
            if let Some(l) = s.latency {
                check.observe("latencyMs", l);
            }
            let key = if ep.active {
                check.observe("generation", self.generation);
                self.grade_active(&mut check, components.need, any_up);
                components.active_key()
            } else {
                if !s.state.is_available() {
                    check.degrade(Status::Warn, format!("endpoint is {}", s.state));
                }
                components.others_key()
            };
            health.add(key, check);
        }
        health
    }

    fn grade_active(&self, check: &mut Check, need: Need, any_up: bool) {
        if self.all_down {
            match (need, any_up) {
                (Need::Reads, true) => check.degrade(
                    Status::Warn,
                    "no primary candidate is available; reads are served by replicas",
                ),
                _ => check.degrade(Status::Fail, "no primary candidate is available"),
            }
        } else if self.failed_over {
            check.degrade(
                Status::Warn,
                format!("failed over (generation {})", self.generation),
            );
        }
    }
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::Primary => "primary",
        Role::Replica => "replica",
        _ => "unknown",
    }
}

pub(crate) fn state_str(s: HealthState) -> &'static str {
    match s {
        HealthState::Up => "up",
        HealthState::Probing => "probing",
        HealthState::Down => "down",
        _ => "draining",
    }
}

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::config::{FailureRate, HealthConfig};
use super::core::Core;
use super::endpoint::{Endpoint, EndpointId};
use super::event::HealthEvent;
use super::probe::{Probe, run_prober};
use super::state::HealthState;
use crate::error::ConfigError;
use crate::sync::{read, write};

/// Tracks the health of a set of endpoints: one state machine per endpoint, fed by the outcomes
/// of real calls and by an optional [`Probe`].
///
/// Cheap to clone (an `Arc`); all clones share the endpoints. The probe task, if any, stops when
/// the last clone is dropped. Look endpoints up by id (a short read lock) once and keep the
/// [`Endpoint`] handle: its methods are lock-free.
///
/// ```
/// use switchover::health::{HealthState, HealthTracker};
/// use switchover::Classification;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let tracker = HealthTracker::new(["eu-west-1", "eu-central-1"]);
/// let eu = tracker.endpoint(&"eu-west-1").unwrap();
/// for _ in 0..3 {
///     eu.record_failure(Classification::transient());
/// }
/// assert_eq!(eu.state(), HealthState::Down);
/// assert!(tracker.is_available(&"eu-central-1"));
/// # }
/// ```
pub struct HealthTracker<K> {
    inner: Arc<TrackerInner<K>>,
}

pub(crate) struct TrackerInner<K> {
    core: Arc<Core<K>>,
    registry: RwLock<Registry<K>>,
    prober: OnceLock<AbortHandle>,
}

struct Registry<K> {
    by_id: HashMap<K, Endpoint<K>>,
    order: Vec<Endpoint<K>>,
}

impl<K> Drop for TrackerInner<K> {
    fn drop(&mut self) {
        if let Some(h) = self.prober.get() {
            h.abort();
        }
    }
}

impl<K: EndpointId> TrackerInner<K> {
    pub(crate) fn core(&self) -> &Arc<Core<K>> {
        &self.core
    }

    /// The endpoints in registration order (a snapshot).
    pub(crate) fn endpoints(&self) -> Vec<Endpoint<K>> {
        read(&self.registry).order.clone()
    }
}

impl<K> Clone for HealthTracker<K> {
    fn clone(&self) -> Self {
        HealthTracker {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: EndpointId> fmt::Debug for HealthTracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = read(&self.inner.registry);
        f.debug_struct("HealthTracker")
            .field("endpoints", &reg.order)
            .field("config", &self.inner.core.config)
            .field("probing", &self.inner.prober.get().is_some())
            .finish()
    }
}

impl<K: EndpointId> HealthTracker<K> {
    /// A tracker of `ids` with the default policy and no probe (see
    /// [`HealthTrackerBuilder`] for the defaults).
    pub fn new(ids: impl IntoIterator<Item = K>) -> Self {
        Self::from_parts(HealthConfig::default(), false, ids)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> HealthTrackerBuilder<K> {
        HealthTrackerBuilder {
            config: HealthConfig::default(),
            ids: Vec::new(),
            probe: None,
        }
    }

    fn from_parts(config: HealthConfig, beats: bool, ids: impl IntoIterator<Item = K>) -> Self {
        let tracker = HealthTracker {
            inner: Arc::new(TrackerInner {
                core: Arc::new(Core::new(config, beats)),
                registry: RwLock::new(Registry {
                    by_id: HashMap::new(),
                    order: Vec::new(),
                }),
                prober: OnceLock::new(),
            }),
        };
        for id in ids {
            tracker.add_endpoint(id);
        }
        tracker
    }

    /// Registers `id` (starting [`Up`](HealthState::Up), role unknown) and returns its handle;
    /// returns the existing handle if `id` is already registered. For endpoints discovered at
    /// run time (a new Redis replica).
    pub fn add_endpoint(&self, id: K) -> Endpoint<K> {
        if let Some(ep) = self.endpoint(&id) {
            return ep;
        }
        let mut reg = write(&self.inner.registry);
        if let Some(ep) = reg.by_id.get(&id) {
            return ep.clone();
        }
        let ep = Endpoint::new(id.clone(), Arc::clone(&self.inner.core));
        reg.by_id.insert(id, ep.clone());
        reg.order.push(ep.clone());
        drop(reg);
        self.inner.core.wake.notify_one();
        ep
    }

    /// The handle of `id`, if registered (a short read lock; keep the handle).
    pub fn endpoint(&self, id: &K) -> Option<Endpoint<K>> {
        read(&self.inner.registry).by_id.get(id).cloned()
    }

    /// Every endpoint, in registration order.
    pub fn endpoints(&self) -> Vec<Endpoint<K>> {
        self.inner.endpoints()
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        read(&self.inner.registry).order.len()
    }

    /// `true` when no endpoint is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of `id`, `None` if it is not registered.
    pub fn state(&self, id: &K) -> Option<HealthState> {
        self.endpoint(id).map(|ep| ep.state())
    }

    /// `true` when `id` is registered and [`Up`](HealthState::Up).
    pub fn is_available(&self, id: &K) -> bool {
        self.endpoint(id).is_some_and(|ep| ep.is_available())
    }

    /// [`Endpoint::force_down`] on `id`; `false` if it is not registered.
    pub fn force_down(&self, id: &K) -> bool {
        self.endpoint(id).map(|ep| ep.force_down()).is_some()
    }

    /// [`Endpoint::force_up`] on `id`; `false` if it is not registered.
    pub fn force_up(&self, id: &K) -> bool {
        self.endpoint(id).map(|ep| ep.force_up()).is_some()
    }

    /// [`Endpoint::drain`] on `id`; `false` if it is not registered.
    pub fn drain(&self, id: &K) -> bool {
        self.endpoint(id).map(|ep| ep.drain()).is_some()
    }

    /// [`Endpoint::clear`] on `id`; `false` if it is not registered.
    pub fn clear(&self, id: &K) -> bool {
        self.endpoint(id).map(|ep| ep.clear()).is_some()
    }

    /// A new subscription to every state change of every endpoint, from now on.
    ///
    /// Each subscriber has its own unbounded channel, so no event is ever dropped or lagged
    /// past, and one endpoint's events arrive in the order they happened. Drop the receiver to
    /// unsubscribe. A subscriber that never reads grows its queue: read it or drop it.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<HealthEvent<K>> {
        self.inner.core.subscribe()
    }

    /// The state shared with the endpoints (for a router's sink).
    pub(crate) fn core(&self) -> &Arc<Core<K>> {
        self.inner.core()
    }

    /// `true` when a probe task runs for this tracker.
    pub fn is_probing(&self) -> bool {
        self.inner.prober.get().is_some()
    }
}

/// Builder of [`HealthTracker`]. Every value is checked in [`build`](Self::build).
///
/// | setting | default |
/// |---|---|
/// | [`failure_threshold`](Self::failure_threshold) | 3 transient failures in a row |
/// | [`failure_rate`](Self::failure_rate) | off |
/// | [`recovery_successes`](Self::recovery_successes) | 2 successes in a row while probing |
/// | [`ejection_base`](Self::ejection_base) | 1 s |
/// | [`ejection_growth`](Self::ejection_growth) | × 2 per consecutive ejection |
/// | [`ejection_cap`](Self::ejection_cap) | 30 s |
/// | [`stable_after`](Self::stable_after) | 30 s up resets the ejection streak |
/// | [`throttling_marks_down`](Self::throttling_marks_down) | `false` |
/// | [`probe`](Self::probe) | none |
/// | [`probe_interval`](Self::probe_interval) | 1 s |
/// | [`probe_timeout`](Self::probe_timeout) | 500 ms |
/// | [`heartbeat`](Self::heartbeat) | off (up endpoints are not probed) |
/// | [`heartbeat_jitter`](Self::heartbeat_jitter) | 0.2: each beat 80–100 % of the interval after the last probe |
/// | [`heartbeat_seed`](Self::heartbeat_seed) | from entropy |
///
/// **What the probes cost**: each endpoint that is up is probed once per beat, on average every
/// `heartbeat × (1 − jitter / 2)` and never less than `heartbeat × (1 − jitter)` apart:
/// `1 / (heartbeat × (1 − jitter / 2))` probes per endpoint per second per tracker (200 ms with
/// the default jitter: 5.6 a second, at most 6.25). An attempt cut by a timeout may move one
/// forward (at most one probe running per endpoint, and none when one started since the cut
/// attempt did, see [`Endpoint::record_timeout`]). Endpoints that are down or probing are
/// probed once per [`probe_interval`](Self::probe_interval). Each probe is one request of the
/// adapter's probe (a `ROLE`, a role query, a canary read).
#[must_use]
pub struct HealthTrackerBuilder<K> {
    config: HealthConfig,
    ids: Vec<K>,
    probe: Option<Spawner<K>>,
}

type Spawner<K> =
    Box<dyn FnOnce(Weak<TrackerInner<K>>, &tokio::runtime::Handle) -> AbortHandle + Send>;

impl<K: fmt::Debug> fmt::Debug for HealthTrackerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthTrackerBuilder")
            .field("config", &self.config)
            .field("ids", &self.ids)
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

impl<K: EndpointId> HealthTrackerBuilder<K> {
    /// Registers an endpoint (more can be added later with
    /// [`HealthTracker::add_endpoint`]).
    pub fn endpoint(mut self, id: K) -> Self {
        self.ids.push(id);
        self
    }

    /// Registers endpoints.
    pub fn endpoints(mut self, ids: impl IntoIterator<Item = K>) -> Self {
        self.ids.extend(ids);
        self
    }

    /// Transient failures in a row that eject an `Up` endpoint (default 3; at least 1). A
    /// success resets the count.
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.config.failure_threshold = n;
        self
    }

    /// Also eject on a failure rate (default: off). See [`FailureRate`].
    pub fn failure_rate(mut self, rate: FailureRate) -> Self {
        self.config.failure_rate = Some(rate);
        self
    }

    /// Successes in a row (calls or probes) that bring a probing endpoint back up (default 2;
    /// at least 1).
    pub fn recovery_successes(mut self, n: u32) -> Self {
        self.config.recovery_successes = n;
        self
    }

    /// The ejection time of a first ejection (default 1 s; above zero).
    pub fn ejection_base(mut self, base: Duration) -> Self {
        self.config.ejection_base = base;
        self
    }

    /// The factor the ejection time grows by with each consecutive ejection (default 2; at
    /// least 1). The `n`-th ejection in a streak lasts `min(base × growth^(n-1), cap)`.
    pub fn ejection_growth(mut self, factor: f64) -> Self {
        self.config.ejection_growth = factor;
        self
    }

    /// The longest ejection (default 30 s; at least the base, at most a day).
    pub fn ejection_cap(mut self, cap: Duration) -> Self {
        self.config.ejection_cap = cap;
        self
    }

    /// How long an endpoint must stay `Up` before its next ejection starts a new streak at the
    /// base time (default 30 s). A failure while probing always continues the streak.
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.config.stable_after = d;
        self
    }

    /// Whether throttled outcomes count as failures toward ejection (default `false`: they are
    /// only counted in [`Endpoint::throttled_total`]).
    pub fn throttling_marks_down(mut self, yes: bool) -> Self {
        self.config.throttling_marks_down = yes;
        self
    }

    /// Runs `probe` in a background task: endpoints that are down or probing are probed every
    /// [`probe_interval`](Self::probe_interval) (and as soon as an ejection ends), endpoints
    /// that are up every [`heartbeat`](Self::heartbeat) if set. The task stops when the last
    /// clone of the tracker is dropped. Without a probe, an ejected endpoint recovers only
    /// through the calls recorded on it.
    pub fn probe<P: Probe<K>>(mut self, probe: P) -> Self {
        self.probe = Some(Box::new(move |weak, handle: &tokio::runtime::Handle| {
            handle
                .spawn(run_prober(weak, Arc::new(probe)))
                .abort_handle()
        }));
        self
    }

    /// How often the probe task probes endpoints that are down or probing (default 1 s).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = interval;
        self
    }

    /// How long one probe may take before it counts as down (default 500 ms).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.config.probe_timeout = timeout;
        self
    }

    /// Also probe endpoints that are up, this often (default: never). A failed heartbeat counts
    /// as one transient failure; one that runs out of time while the endpoint answered
    /// something else (a call, a late answer to the previous heartbeat) counts nothing. With a heartbeat (and a [`probe`](Self::probe)), an attempt
    /// cut by a timeout is not a failure: it asks for a heartbeat at once, whose verdict counts
    /// (see [`Endpoint::record_timeout`]).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.config.heartbeat = Some(interval);
        self
    }

    /// Spreads the heartbeats: each is due `heartbeat × (1 − fraction × u)` after the previous
    /// probe of the endpoint started, `u` uniform in `[0, 1]` drawn per beat and per endpoint
    /// (default 0.2; at least 0, below 1). A beat is never later than the
    /// [`heartbeat`](Self::heartbeat) interval, so the time to detect a silent endpoint keeps
    /// its bound, and many instances (or endpoints) started together do not probe in step.
    /// With 0, beats are exactly `heartbeat` apart.
    pub fn heartbeat_jitter(mut self, fraction: f64) -> Self {
        self.config.heartbeat_jitter = fraction;
        self
    }

    /// Counts a heartbeat that runs out of time as missed even when the endpoint answered
    /// something meanwhile (default `false`: such a heartbeat is slow and counts nothing, see
    /// [`Probe`]). For peers that all take writes (DynamoDB regions), where moving off a slow
    /// endpoint costs nothing and beats waiting on it; not for a single primary, where a slow
    /// link must not look like a dead node.
    pub fn late_heartbeats_missed(mut self, missed: bool) -> Self {
        self.config.late_beats_missed = missed;
        self
    }

    /// Seeds the tracker's jitter RNG (default: from entropy), so that its heartbeat schedule
    /// is reproducible (tests, benches). Give each tracker its own seed.
    pub fn heartbeat_seed(mut self, seed: u64) -> Self {
        self.config.heartbeat_seed = Some(seed);
        self
    }

    /// Validates the policy, registers the endpoints and starts the probe task (if any).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field for a zero threshold or count, a zero ejection base,
    /// a growth below 1, a cap below the base, a zero interval or timeout, durations over a
    /// day, an invalid failure rate, a heartbeat jitter outside `[0, 1)` (or NaN), or a probe
    /// when no Tokio runtime is running.
    pub fn build(self) -> Result<HealthTracker<K>, ConfigError> {
        let config = self.config.validate()?;
        let handle = match &self.probe {
            Some(_) => Some(tokio::runtime::Handle::try_current().map_err(|_| {
                ConfigError::new(
                    "probe",
                    "the probe task needs a Tokio runtime: build the tracker inside one",
                )
            })?),
            None => None,
        };
        let beats = config.heartbeat.is_some() && handle.is_some();
        let tracker = HealthTracker::from_parts(config, beats, self.ids);
        if let (Some(spawn), Some(handle)) = (self.probe, handle) {
            let abort = spawn(Arc::downgrade(&tracker.inner), &handle);
            let _ = tracker.inner.prober.set(abort);
        }
        Ok(tracker)
    }
}

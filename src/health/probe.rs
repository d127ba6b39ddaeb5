use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::task::{self, JoinSet};
use tokio::time::Instant;

use super::endpoint::{Endpoint, EndpointId};
use super::role::Role;
use super::state::HealthState;
use super::tracker::TrackerInner;

/// An active health check of one endpoint: a DynamoDB canary read, a Redis `ROLE`, a Postgres
/// `SELECT pg_is_in_recovery()`.
///
/// Check the role, not just liveness: a demoted primary still answers `PING` and `SELECT 1`.
///
/// The tracker's probe task calls [`probe`](Self::probe) for endpoints that are down or probing
/// (and, with a heartbeat, for endpoints that are up), each call bounded by the tracker's
/// probe timeout; a probe that does not answer in time counts as down, except a heartbeat of
/// an endpoint that answered something else meanwhile (a call, or the late answer to an
/// earlier heartbeat): slow is not dead, and that heartbeat counts nothing (unless the tracker
/// was built with [`late_heartbeats_missed`](super::HealthTrackerBuilder::late_heartbeats_missed)). A heartbeat is
/// left running for one more probe timeout after its verdict, so that its late answer arrives.
/// Endpoints are probed independently: at most one probe of an endpoint is awaited at a time,
/// and a probe that hangs delays no other endpoint's probes.
///
/// Any `Fn(&K) -> impl Future<Output = ProbeResult>` is a probe:
///
/// ```
/// use switchover::health::{Probe, ProbeResult, Role};
///
/// let probe = |id: &&'static str| {
///     let primary = *id == "a";
///     async move {
///         ProbeResult::up().with_role(if primary { Role::Primary } else { Role::Replica })
///     }
/// };
/// # fn is_probe<P: Probe<&'static str>>(_: &P) {}
/// is_probe(&probe);
/// ```
pub trait Probe<K>: Send + Sync + 'static {
    /// Checks endpoint `id`.
    fn probe(&self, id: &K) -> impl Future<Output = ProbeResult> + Send;
}

impl<K, F, Fut> Probe<K> for F
where
    F: Fn(&K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ProbeResult> + Send,
{
    fn probe(&self, id: &K) -> impl Future<Output = ProbeResult> + Send {
        self(id)
    }
}

/// What a [`Probe`] found: up or down, and optionally the endpoint's role and the probe's
/// latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    up: bool,
    role: Option<Role>,
    latency: Option<Duration>,
}

impl ProbeResult {
    /// The endpoint answered correctly.
    pub const fn up() -> Self {
        ProbeResult {
            up: true,
            role: None,
            latency: None,
        }
    }

    /// The endpoint did not answer, or answered wrongly.
    pub const fn down() -> Self {
        ProbeResult {
            up: false,
            role: None,
            latency: None,
        }
    }

    /// Reports the endpoint's role (stored on the endpoint, up or down).
    #[must_use]
    pub const fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Reports how long the probe took (fed to the endpoint's latency average).
    #[must_use]
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// `true` when the endpoint answered correctly.
    pub const fn is_up(&self) -> bool {
        self.up
    }

    /// The role reported, if any.
    pub const fn role(&self) -> Option<Role> {
        self.role
    }

    /// The latency reported, if any.
    pub const fn latency(&self) -> Option<Duration> {
        self.latency
    }
}

/// What the probe task knows of one endpoint.
struct Slot {
    /// When its next heartbeat is due (while it is up): a jittered interval after its last
    /// probe started, or after the task first saw it.
    next_beat: Instant,
    /// When its last probe started.
    last_start: Option<Instant>,
    /// A probe of it is running.
    busy: bool,
}

/// The probe task. Holds only a `Weak` on the tracker, and is aborted when the tracker drops.
///
/// Every endpoint has its own schedule, so a probe that hangs until the timeout delays no other
/// endpoint's probes: an endpoint has at most one probe running; while down or probing it is
/// probed at most once per `probe_interval` from the start of its previous probe, and at once
/// when its ejection has ended; while up, every `heartbeat` if set. The running probes are
/// aborted when the task ends (they hold endpoint handles, never the tracker).
pub(crate) async fn run_prober<K: EndpointId, P: Probe<K>>(
    tracker: Weak<TrackerInner<K>>,
    probe: Arc<P>,
) {
    let seed = tracker
        .upgrade()
        .and_then(|t| t.core().config.heartbeat_seed);
    let mut task = ProbeTask {
        probe,
        rng: match seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand::make_rng(),
        },
        slots: HashMap::new(),
        probes: JoinSet::new(),
        running: HashMap::new(),
    };
    loop {
        let now = Instant::now();
        let (wake_at, core) = {
            let Some(inner) = tracker.upgrade() else {
                return;
            };
            (task.start_due(&inner, now), Arc::clone(inner.core()))
        };
        tokio::select! {
            biased;
            Some(done) = task.probes.join_next_with_id(), if !task.probes.is_empty() => {
                task.finished(done);
            }
            _ = core.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// The probe task's state between wake-ups.
struct ProbeTask<K, P> {
    probe: Arc<P>,
    /// Draws the heartbeats' jitter: one stream per tracker, seeded or from entropy.
    rng: SmallRng,
    slots: HashMap<K, Slot>,
    probes: JoinSet<()>,
    /// The endpoint of each running probe, by task id: a probe that panics still frees its slot.
    running: HashMap<task::Id, K>,
}

impl<K: EndpointId, P: Probe<K>> ProbeTask<K, P> {
    /// Starts a probe of every endpoint that is due at `now`; returns when the task must wake
    /// up next (at the latest one `probe_interval` from now).
    fn start_due(&mut self, inner: &TrackerInner<K>, now: Instant) -> Instant {
        let cfg = inner.core().config;
        let mut wake_at = now + cfg.probe_interval;
        for ep in inner.endpoints() {
            if ep.manual_override().is_some() {
                // Held by hand: no probe, and none owed once the override is lifted.
                let _ = ep.take_beat_request();
                continue;
            }
            if !self.slots.contains_key(ep.id()) {
                let slot = Slot {
                    next_beat: self.beat_after(&cfg, now),
                    last_start: None,
                    busy: false,
                };
                self.slots.insert(ep.id().clone(), slot);
            }
            let Some(slot) = self.slots.get_mut(ep.id()) else {
                continue;
            };
            // A heartbeat asked for by a cut attempt: not while a probe runs (its verdict
            // counts), nor when a probe started since the attempt did.
            let wanted = ep
                .take_beat_request()
                .is_some_and(|since| slot.last_start.is_none_or(|t| t < since));
            if slot.busy {
                // Considered again when its probe ends.
                continue;
            }
            // `state()` ends ejections that have run out.
            let due = match ep.state() {
                HealthState::Down => {
                    if let Some(end) = ep.ejection_end() {
                        wake_at = wake_at.min(end);
                    }
                    slot.last_start.map_or(now, |t| t + cfg.probe_interval)
                }
                // An ejection that ended since the last probe started is probed at once.
                HealthState::Probing => match slot.last_start {
                    Some(t) if t >= ep.since() && !wanted => t + cfg.probe_interval,
                    _ => now,
                },
                HealthState::Up => match cfg.heartbeat {
                    _ if wanted => now,
                    Some(_) => slot.next_beat,
                    None => continue,
                },
                _ => continue,
            };
            if due > now {
                wake_at = wake_at.min(due);
                continue;
            }
            slot.busy = true;
            slot.last_start = Some(now);
            if let Some(h) = cfg.heartbeat {
                slot.next_beat = now + cfg.next_beat(h, &mut self.rng);
            }
            let id = ep.id().clone();
            let probe = Arc::clone(&self.probe);
            let heartbeat = ep.raw_state() == HealthState::Up;
            let heartbeat = match heartbeat {
                false => Beat::No,
                true if cfg.late_beats_missed => Beat::Strict,
                true => Beat::Patient,
            };
            let handle = self
                .probes
                .spawn(probe_once(probe, ep, cfg.probe_timeout, heartbeat));
            self.running.insert(handle.id(), id);
        }
        wake_at
    }

    /// When the first heartbeat of an endpoint first seen at `now` is due (`now` without a
    /// heartbeat: unused).
    fn beat_after(&mut self, cfg: &super::config::HealthConfig, now: Instant) -> Instant {
        match cfg.heartbeat {
            Some(h) => now + cfg.next_beat(h, &mut self.rng),
            None => now,
        }
    }

    /// Frees the slot of the probe that ended (`done`) and of every other probe that has ended
    /// since.
    fn finished(&mut self, done: Result<(task::Id, ()), task::JoinError>) {
        let mut done = Some(done);
        while let Some(d) = done {
            let id = match d {
                Ok((id, ())) => id,
                Err(e) => {
                    tracing::warn!(
                        target: "switchover::health",
                        error = %e,
                        "probe task failed"
                    );
                    e.id()
                }
            };
            if let Some(slot) = self
                .running
                .remove(&id)
                .and_then(|k| self.slots.get_mut(&k))
            {
                slot.busy = false;
            }
            done = self.probes.try_join_next_with_id();
        }
    }
}

/// One probe of `ep`, bounded by `timeout`, recorded on the endpoint; a `heartbeat` (the
/// endpoint was up) that fails is reported as missed first.
///
/// Slow is not dead: a heartbeat runs on a task of its own and keeps running for one more
/// `timeout` after its verdict, so that a late answer still arrives (and is proof of life).
/// A heartbeat that runs out of time counts nothing when the endpoint answered anything
/// meanwhile (a call, or the late answer to the previous heartbeat); only one that heard
/// nothing at all from the endpoint, or that failed outright (a refused or cut connection, a
/// wrong answer), is missed.
/// (With [`late_heartbeats_missed`](super::HealthTrackerBuilder::late_heartbeats_missed), a
/// heartbeat is judged like any probe.)
async fn probe_once<K: EndpointId, P: Probe<K>>(
    probe: Arc<P>,
    ep: Endpoint<K>,
    timeout: Duration,
    heartbeat: Beat,
) {
    let started = Instant::now();
    let verdict = if heartbeat == Beat::Patient {
        beat(probe, &ep, timeout).await
    } else {
        match tokio::time::timeout(timeout, probe.probe(ep.id())).await {
            Ok(result) => Verdict::Answered(result),
            Err(_) => Verdict::TimedOut,
        }
    };
    #[cfg(feature = "metrics")]
    if heartbeat != Beat::No {
        let outcome = match &verdict {
            Verdict::Answered(r) if r.is_up() => "up",
            Verdict::Answered(_) => "down",
            Verdict::TimedOut => "timeout",
            Verdict::Slow => "slow",
        };
        ep.heartbeat_done(outcome, started.elapsed());
    }
    let result = match verdict {
        Verdict::Answered(result) => result,
        Verdict::TimedOut => timed_out(&ep, timeout),
        // Slow, not dead: nothing to record.
        Verdict::Slow => return,
    };
    if heartbeat != Beat::No && !result.is_up() {
        ep.heartbeat_missed();
    }
    ep.record_probe_at(result, Some(started));
}

/// What kind of probe [`probe_once`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Beat {
    /// Of an endpoint that is down or probing.
    No,
    /// A heartbeat, judged like any probe.
    Strict,
    /// A heartbeat, slow when the endpoint answered meanwhile.
    Patient,
}

/// How one probe ended.
enum Verdict {
    /// The probe answered in time (a panicked probe answers down).
    Answered(ProbeResult),
    /// No answer in time, and nothing heard from the endpoint meanwhile.
    TimedOut,
    /// A heartbeat with no answer in time while the endpoint answered something else meanwhile.
    Slow,
}

/// A heartbeat of `ep`: [`Verdict::Slow`] when it ran out of time but the endpoint answered
/// something meanwhile (slow, not dead).
async fn beat<K: EndpointId, P: Probe<K>>(
    probe: Arc<P>,
    ep: &Endpoint<K>,
    timeout: Duration,
) -> Verdict {
    let mark = ep.heard_mark();
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let late = timeout.saturating_mul(2);
            let result = tokio::time::timeout(late, probe.probe(ep.id())).await;
            if let Err(Ok(result)) = tx.send(result)
                && result.is_up()
            {
                ep.heard_late(started.elapsed());
            }
        })
    };
    // Aborted with this task (the tracker dropped) unless it ran out of time.
    let run = AbortOnDrop(Some(run));
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(result))) => Verdict::Answered(result),
        // The probe panicked (its task logged nothing: say so here).
        Ok(Err(_)) => {
            tracing::warn!(target: "switchover::health", endpoint = ?ep.id(), "heartbeat probe failed");
            Verdict::Answered(ProbeResult::down())
        }
        Ok(Ok(Err(_))) | Err(_) => {
            run.disarm();
            if ep.heard_since(mark) {
                tracing::debug!(
                    target: "switchover::health",
                    endpoint = ?ep.id(),
                    timeout_ms = timeout.as_millis() as u64,
                    "heartbeat slow: no answer in time, but the endpoint answered meanwhile"
                );
                Verdict::Slow
            } else {
                Verdict::TimedOut
            }
        }
    }
}

/// Logs a probe that ran out of time; its verdict.
fn timed_out<K: EndpointId>(ep: &Endpoint<K>, timeout: Duration) -> ProbeResult {
    tracing::debug!(
        target: "switchover::health",
        endpoint = ?ep.id(),
        timeout_ms = timeout.as_millis() as u64,
        "probe timed out"
    );
    ProbeResult::down()
}

/// Aborts its task when dropped, unless disarmed.
struct AbortOnDrop(Option<task::JoinHandle<()>>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

#[allow(dead_code)]
fn _assert_send<K: EndpointId, P: Probe<K>>(t: Weak<TrackerInner<K>>, p: Arc<P>) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&run_prober(t, p));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_result_builders() {
        let r = ProbeResult::up()
            .with_role(Role::Primary)
            .with_latency(Duration::from_millis(3));
        assert!(r.is_up());
        assert_eq!(r.role(), Some(Role::Primary));
        assert_eq!(r.latency(), Some(Duration::from_millis(3)));
        assert!(!ProbeResult::down().is_up());
        assert_eq!(ProbeResult::down().role(), None);
    }
}

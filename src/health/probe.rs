use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::endpoint::EndpointId;
use super::state::{HealthState, Role};
use super::tracker::TrackerInner;

/// An active health check of one endpoint: a DynamoDB canary read, a Redis `ROLE`, a Postgres
/// `SELECT pg_is_in_recovery()`.
///
/// Check the role, not just liveness: a demoted primary still answers `PING` and `SELECT 1`.
///
/// The tracker's probe task calls [`probe`](Self::probe) for endpoints that are down or probing
/// (and, with a heartbeat, for endpoints that are up), each call bounded by the tracker's
/// probe timeout; a probe that does not answer in time counts as down.
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

/// The probe task. Holds only a `Weak` on the tracker, and is aborted when the tracker drops.
pub(crate) async fn run_prober<K: EndpointId, P: Probe<K>>(
    tracker: Weak<TrackerInner<K>>,
    probe: Arc<P>,
) {
    let mut next_heartbeat: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let (targets, wake_at, core) = {
            let Some(inner) = tracker.upgrade() else {
                return;
            };
            let core = Arc::clone(inner.core());
            let cfg = core.config;
            let heartbeat_due = match (cfg.heartbeat, next_heartbeat) {
                (Some(h), None) => {
                    next_heartbeat = Some(now + h);
                    false
                }
                (Some(h), Some(at)) if now >= at => {
                    next_heartbeat = Some(now + h);
                    true
                }
                _ => false,
            };
            let mut wake_at = now + cfg.probe_interval;
            if let Some(at) = next_heartbeat {
                wake_at = wake_at.min(at);
            }
            let mut targets = Vec::new();
            for ep in inner.endpoints() {
                if ep.manual_override().is_some() {
                    continue;
                }
                // `state()` ends ejections that have run out.
                match ep.state() {
                    HealthState::Down => {
                        if let Some(end) = ep.ejection_end() {
                            wake_at = wake_at.min(end);
                        }
                        targets.push(ep);
                    }
                    HealthState::Probing => targets.push(ep),
                    HealthState::Up if heartbeat_due => targets.push(ep),
                    _ => {}
                }
            }
            (targets, wake_at, core)
        };
        if !targets.is_empty() {
            let timeout = core.config.probe_timeout;
            let mut set = JoinSet::new();
            for ep in targets {
                let probe = Arc::clone(&probe);
                set.spawn(async move {
                    let result = tokio::time::timeout(timeout, probe.probe(ep.id()))
                        .await
                        .unwrap_or_else(|_| {
                            tracing::debug!(
                                target: "switchover::health",
                                endpoint = ?ep.id(),
                                timeout_ms = timeout.as_millis() as u64,
                                "probe timed out"
                            );
                            ProbeResult::down()
                        });
                    ep.record_probe(result);
                });
            }
            while set.join_next().await.is_some() {}
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = core.wake.notified() => {}
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

use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::config::HealthConfig;
use super::event::HealthEvent;
use super::probe::ProbeResult;
use super::role::Role;
use crate::sync::lock;

/// Something that sees every transition, role change and probe result of a tracker's
/// endpoints synchronously, as it happens (a router's timeline and metrics). Called with the
/// endpoint's transition lock held for transitions: it must not call back into the tracker
/// beyond atomic reads.
pub(crate) trait HealthSink<K>: Send + Sync {
    /// A state change; `recent` holds the endpoint's last classified failures (see
    /// [`RecentFailures`](crate::observe::RecentFailures)).
    fn transition(&self, event: &HealthEvent<K>, recent: u64);
    /// A role change.
    fn role_changed(&self, id: &K, from: Role, to: Role);
    /// A probe result (after its role and latency are stored, before it counts as a success
    /// or a failure).
    fn probe(&self, id: &K, result: &ProbeResult);
    /// A heartbeat (a probe by the tracker's probe task of an endpoint that was up when it
    /// started) timed out or answered down; called before it counts as a failure.
    fn heartbeat_missed(&self, _id: &K) {}
    /// A heartbeat ended after `took` (start to verdict) with `outcome`: `up`, `down` (it
    /// answered down or wrongly) `timeout` (cut by the probe timeout) or `slow` (cut, but the endpoint answered meanwhile).
    #[cfg(feature = "metrics")]
    fn heartbeat(&self, _id: &K, _outcome: &'static str, _took: Duration) {}
}

/// State shared by a tracker and every endpoint handle: the policy, the time origin of the
/// atomically stored instants, the subscribers and the probe task's wake-up.
pub(crate) struct Core<K> {
    pub(crate) config: HealthConfig,
    /// Heartbeats run: a heartbeat is configured and a probe task probes. Then an attempt cut
    /// by a timeout asks for a heartbeat instead of counting as a failure.
    pub(crate) beats: bool,
    pub(crate) epoch: Instant,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<HealthEvent<K>>>>,
    sinks: Mutex<Vec<Weak<dyn HealthSink<K>>>>,
    pub(crate) wake: Notify,
}

impl<K> Core<K> {
    pub(crate) fn new(config: HealthConfig, beats: bool) -> Self {
        Core {
            config,
            beats,
            epoch: Instant::now(),
            subscribers: Mutex::new(Vec::new()),
            sinks: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }

    /// Nanoseconds from the epoch to `t` (0 before it, saturating far in the future).
    #[inline]
    pub(crate) fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    pub(crate) fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    pub(crate) fn subscribe(&self) -> mpsc::UnboundedReceiver<HealthEvent<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.subscribers).push(tx);
        rx
    }

    /// Adds a synchronous observer; it is forgotten once dropped.
    pub(crate) fn add_sink(&self, sink: Weak<dyn HealthSink<K>>) {
        lock(&self.sinks).push(sink);
    }

    /// Calls `f` on every live sink and forgets the dropped ones.
    pub(crate) fn each_sink(&self, f: impl Fn(&dyn HealthSink<K>)) {
        let mut sinks = lock(&self.sinks);
        if sinks.is_empty() {
            return;
        }
        sinks.retain(|w| match w.upgrade() {
            Some(s) => {
                f(&*s);
                true
            }
            None => false,
        });
    }

    /// Sends `event` to every sink and every live subscriber, and forgets the closed ones.
    /// Called with the endpoint's transition lock held, so one endpoint's events arrive in
    /// order.
    pub(crate) fn publish(&self, event: HealthEvent<K>, recent: u64)
    where
        K: Clone,
    {
        self.each_sink(|s| s.transition(&event, recent));
        let mut subs = lock(&self.subscribers);
        match subs.len() {
            0 => {}
            1 => {
                if subs[0].send(event).is_err() {
                    subs.clear();
                }
            }
            _ => subs.retain(|tx| tx.send(event.clone()).is_ok()),
        }
    }
}

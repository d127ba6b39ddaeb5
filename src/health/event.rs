use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::config::HealthConfig;
use super::state::{HealthState, TransitionReason};

/// One state change of one endpoint, sent to every subscriber of the tracker (see
/// [`HealthTracker::subscribe`](super::HealthTracker::subscribe)).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent<K> {
    /// The endpoint's id.
    pub endpoint: K,
    /// The state it left.
    pub from: HealthState,
    /// The state it entered.
    pub to: HealthState,
    /// Why.
    pub reason: TransitionReason,
    /// When (Tokio's clock, so paused-clock tests see exact times).
    pub at: Instant,
    /// For transitions to [`Down`](HealthState::Down) by the state machine: how long the endpoint
    /// is ejected. `None` otherwise (a forced-down endpoint stays down until cleared).
    pub ejection: Option<Duration>,
}

/// State shared by a tracker and every endpoint handle: the policy, the time origin of the
/// atomically stored instants, the subscribers and the probe task's wake-up.
pub(crate) struct Core<K> {
    pub(crate) config: HealthConfig,
    pub(crate) epoch: Instant,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<HealthEvent<K>>>>,
    pub(crate) wake: Notify,
}

impl<K> Core<K> {
    pub(crate) fn new(config: HealthConfig) -> Self {
        Core {
            config,
            epoch: Instant::now(),
            subscribers: Mutex::new(Vec::new()),
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

    /// Sends `event` to every live subscriber and forgets the closed ones. Called with the
    /// endpoint's transition lock held, so one endpoint's events arrive in order.
    pub(crate) fn publish(&self, event: HealthEvent<K>)
    where
        K: Clone,
    {
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

/// Locks `m`, ignoring poisoning: the data behind our mutexes stays consistent even if a
/// subscriber's code panicked elsewhere.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

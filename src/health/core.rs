use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::config::HealthConfig;
use super::event::HealthEvent;
use crate::sync::lock;

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

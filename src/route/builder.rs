//! Building a [`Router`]: its endpoints with their priorities, the failback rule, observation.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::router::{Failback, Router, RouterInner, Slot, index, pack};
use super::slots::{MAX_SLOTS, Slots};
use crate::error::ConfigError;
use crate::health::{EndpointId, HealthTracker};
use crate::observe::{Observe, Observer};

/// Builder of [`Router`].
#[must_use]
pub struct RouterBuilder<K> {
    pub(super) tracker: HealthTracker<K>,
    pub(super) endpoints: Vec<(K, u32)>,
    pub(super) failback: Failback,
    pub(super) observe: Observe,
}

impl<K: EndpointId> fmt::Debug for RouterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("endpoints", &self.endpoints)
            .field("failback", &self.failback)
            .field("observe", &self.observe)
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> RouterBuilder<K> {
    /// Routes to `id` with `priority` (lower is preferred). Endpoints not yet registered in the
    /// tracker are registered.
    pub fn endpoint(mut self, id: K, priority: u32) -> Self {
        self.endpoints.push((id, priority));
        self
    }

    /// Routes to `ids` in order of preference: priorities 0, 1, 2, … after any endpoint already
    /// added.
    pub fn endpoints(mut self, ids: impl IntoIterator<Item = K>) -> Self {
        let start = self.endpoints.len() as u32;
        self.endpoints.extend(ids.into_iter().zip(start..));
        self
    }

    /// When to move back to a preferred endpoint (default [`Failback::After`] 30 s).
    pub fn failback(mut self, failback: Failback) -> Self {
        self.failback = failback;
        self
    }

    /// Shorthand for [`failback`](Self::failback)`(Failback::After(delay))`.
    pub fn failback_after(self, delay: Duration) -> Self {
        self.failback(Failback::After(delay))
    }

    /// How the router is observed: its name in metrics and timelines, and the timeline's size
    /// (default [`Observe::default`]: `router`, 256 events).
    pub fn observe(mut self, observe: Observe) -> Self {
        self.observe = observe;
        self
    }

    /// Builds the router; the first active endpoint is the best available candidate (or the
    /// best guess, flagged all-down, if none is available). Generation 0.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when no endpoint was given, an endpoint was given twice, or there are
    /// more than 65 536.
    pub fn build(self) -> Result<Router<K>, ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::new(
                "endpoints",
                "at least one endpoint is needed",
            ));
        }
        if self.endpoints.len() > MAX_SLOTS {
            return Err(ConfigError::new(
                "endpoints",
                format!("at most {MAX_SLOTS} endpoints"),
            ));
        }
        let slots = Slots::new();
        let min_priority = self.endpoints.iter().map(|(_, p)| *p).min().unwrap_or(0);
        let mut seen = std::collections::HashSet::new();
        for (id, priority) in self.endpoints {
            if !seen.insert(id.clone()) {
                return Err(ConfigError::new(
                    "endpoints",
                    format!("{id:?} is listed twice"),
                ));
            }
            let endpoint = self.tracker.add_endpoint(id);
            slots.push(Slot { endpoint, priority });
        }
        let first = match slots.get(0) {
            Some(s) => s.endpoint.clone(),
            None => unreachable!("at least one endpoint was pushed"),
        };
        let observer = Arc::new(Observer::new(&self.observe, first));
        let inner = RouterInner {
            word: AtomicU64::new(0),
            min_priority: AtomicU32::new(min_priority),
            slots,
            failback: self.failback,
            tracker: self.tracker,
            control: Mutex::new(Vec::new()),
            observer,
            moved: Arc::default(),
            named: AtomicU32::new(super::named::LOCAL),
        };
        // Start on the best available candidate, without events (nobody has subscribed yet).
        let w = match inner.best_up(usize::MAX, None) {
            Some(i) => pack(i, false, false, 0),
            None => pack(inner.best_down(), true, false, 0),
        };
        inner.word.store(w, Ordering::Release);
        inner
            .observer
            .set_active(inner.slot(index(w)).endpoint.clone());
        for (_, s) in inner.slots.iter() {
            inner.observer.metrics.initial_state(
                &crate::observe::label(s.endpoint.id()),
                s.endpoint.raw_state(),
            );
        }
        let sink: std::sync::Weak<dyn crate::health::HealthSink<K>> =
            Arc::downgrade(&inner.observer) as _;
        inner.tracker.core().add_sink(sink);
        Ok(Router {
            inner: Arc::new(inner),
        })
    }
}

//! How the router decides: the fast "settled" check, the failover / failback decision, the best
//! guess when nothing is available, and applying a switch with its events.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::event::{RouteEvent, SwitchReason};
use super::named::LOCAL;
use super::router::{
    ALL_DOWN, Active, Decision, OPEN, PINNED, RouterInner, Slot, generation, index,
    is_candidate_up, pack, tier,
};
use crate::health::{EndpointId, HealthState, Role};
use crate::route::Failback;
use crate::sync::lock;

impl<K: EndpointId> RouterInner<K> {
    #[inline]
    pub(super) fn slot(&self, i: usize) -> &Slot<K> {
        // Indices in the word always come from a completed push.
        match self.slots.get_pushed(i) {
            Some(s) => s,
            None => unreachable!("router index {i} out of range"),
        }
    }

    pub(super) fn find(&self, id: &K) -> Option<usize> {
        self.slots
            .iter()
            .find(|(_, s)| s.endpoint.id() == id)
            .map(|(i, _)| i)
    }

    #[inline]
    pub(super) fn view(&self, w: u64) -> Active<'_, K> {
        Active {
            endpoint: &self.slot(index(w)).endpoint,
            generation: generation(w),
            all_down: w & ALL_DOWN != 0,
        }
    }

    /// The fast check: the active endpoint is available and no more preferred candidate is up
    /// (or failback is off). Atomic loads only.
    #[inline]
    pub(super) fn settled(&self, w: u64, cur: &Slot<K>) -> bool {
        if w & ALL_DOWN != 0 {
            return false;
        }
        let g = self.gate_word();
        if g != LOCAL {
            return g as usize == index(w) && is_candidate_up(&cur.endpoint);
        }
        if !is_candidate_up(&cur.endpoint) {
            return false;
        }
        if w & PINNED != 0
            || self.failback == Failback::Manual
            || cur.priority <= self.min_priority.load(Ordering::Acquire)
        {
            return true;
        }
        !self
            .slots
            .iter()
            .any(|(_, s)| s.priority < cur.priority && is_candidate_up(&s.endpoint))
    }

    /// Re-evaluates and applies a change if there is one; returns the current word.
    #[cold]
    pub(super) fn refresh(&self, w: u64) -> u64 {
        if self.decide(w).is_none() {
            return w;
        }
        let mut subs = lock(&self.control);
        let w = self.word.load(Ordering::Acquire);
        match self.decide(w) {
            Some(d) => self.apply(&mut subs, w, d),
            None => w,
        }
    }

    /// The best available candidate by (priority, index), skipping `except`; with
    /// `up_for`, only endpoints up for at least that long.
    pub(super) fn best_up(
        &self,
        except: usize,
        up_for: Option<(Duration, Instant)>,
    ) -> Option<usize> {
        self.best_up_below(except, u32::MAX, up_for)
    }

    pub(super) fn best_up_below(
        &self,
        except: usize,
        below: u32,
        up_for: Option<(Duration, Instant)>,
    ) -> Option<usize> {
        let mut best: Option<(u32, usize)> = None;
        for (i, s) in self.slots.iter() {
            if i == except || s.priority >= below || !is_candidate_up(&s.endpoint) {
                continue;
            }
            if let Some((d, now)) = up_for
                && now.saturating_duration_since(s.endpoint.since()) < d
            {
                continue;
            }
            if best.is_none_or(|(p, _)| s.priority < p) {
                best = Some((s.priority, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The best guess when nothing is available: by tier, then priority, then down longest.
    pub(super) fn best_down(&self) -> usize {
        let mut best: Option<((u8, u32, u64), usize)> = None;
        for (i, s) in self.slots.iter() {
            let key = (tier(&s.endpoint), s.priority, s.endpoint.since_nanos());
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, i));
            }
        }
        best.map_or(0, |(_, i)| i)
    }

    pub(super) fn decide(&self, w: u64) -> Option<Decision> {
        let g = self.gate_word();
        if g != LOCAL {
            return self.decide_named(w, g);
        }
        let cur_i = index(w);
        let cur = self.slot(cur_i);
        let all_down = w & ALL_DOWN != 0;
        if is_candidate_up(&cur.endpoint) {
            if w & PINNED == 0
                && let Failback::After(delay) = self.failback
                && let Some(to) =
                    self.best_up_below(cur_i, cur.priority, Some((delay, Instant::now())))
            {
                return Some(Decision {
                    to,
                    all_down: false,
                    pinned: false,
                    reason: SwitchReason::Failback,
                });
            }
            return all_down.then_some(Decision {
                to: cur_i,
                all_down: false,
                pinned: w & PINNED != 0,
                reason: SwitchReason::Failover,
            });
        }
        let reason = if cur.endpoint.role() == Role::Replica {
            SwitchReason::Demoted
        } else if cur.endpoint.raw_state() == HealthState::Draining {
            SwitchReason::Evacuated
        } else {
            SwitchReason::Failover
        };
        if let Some(to) = self.best_up(cur_i, None) {
            return Some(Decision {
                to,
                all_down: false,
                pinned: false,
                reason,
            });
        }
        // Nothing is available.
        let best = self.best_down();
        let to = if !all_down || tier(&self.slot(best).endpoint) < tier(&cur.endpoint) {
            best
        } else {
            cur_i
        };
        (to != cur_i || !all_down).then_some(Decision {
            to,
            all_down: true,
            pinned: false,
            reason,
        })
    }

    /// Stores the decision and publishes its events. Call with the control lock held.
    pub(super) fn apply(
        &self,
        subs: &mut Vec<mpsc::UnboundedSender<RouteEvent<K>>>,
        w: u64,
        d: Decision,
    ) -> u64 {
        let from = index(w);
        let switched = d.to != from;
        let next_gen = generation(w) + u64::from(switched);
        let open = if switched { OPEN } else { w & OPEN };
        let new = pack(d.to, d.all_down, d.pinned, next_gen) | open;
        self.word.store(new, Ordering::Release);
        if switched {
            self.moved.set(next_gen);
        }
        let at = Instant::now();
        let to_id = self.slot(d.to).endpoint.id();
        let mut events = Vec::new();
        if switched {
            let from_id = self.slot(from).endpoint.id();
            tracing::warn!(
                target: "switchover::route",
                from = ?from_id,
                to = ?to_id,
                generation = next_gen,
                reason = %d.reason,
                all_down = d.all_down,
                "active endpoint switched"
            );
            self.observer.switched(
                &self.slot(from).endpoint,
                &self.slot(d.to).endpoint,
                next_gen,
                d.reason,
                d.all_down,
                at,
            );
            events.push(RouteEvent::Switched {
                from: from_id.clone(),
                to: to_id.clone(),
                generation: next_gen,
                reason: d.reason,
                at,
            });
        }
        let was_all_down = w & ALL_DOWN != 0;
        if d.all_down && !was_all_down {
            tracing::error!(
                target: "switchover::route",
                active = ?to_id,
                generation = next_gen,
                "no primary candidate is available; routing to the best guess"
            );
            self.observer.all_down(true, to_id, at);
            events.push(RouteEvent::AllDownEntered {
                active: to_id.clone(),
                generation: next_gen,
                at,
            });
        } else if !d.all_down && was_all_down {
            tracing::info!(
                target: "switchover::route",
                active = ?to_id,
                generation = next_gen,
                "a primary candidate is available again"
            );
            self.observer.all_down(false, to_id, at);
            events.push(RouteEvent::AllDownLeft {
                active: to_id.clone(),
                generation: next_gen,
                at,
            });
        }
        for ev in events {
            subs.retain(|tx| tx.send(ev.clone()).is_ok());
        }
        new
    }
}

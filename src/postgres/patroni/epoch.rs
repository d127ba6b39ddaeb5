//! The epoch of a Patroni leader: a number that grows with every change of leader, from what
//! `/cluster` shows.
//!
//! Patroni's `/cluster` carries no revision of the leader key, but each member publishes its
//! Postgres timeline, and every promotion starts a new one: a new leader is on a higher
//! timeline than every leader before it. The timeline alone is not enough, because Patroni
//! names a new leader (it took the key) about one HA loop before the member publishes its new
//! timeline: for that loop the new leader shows the timeline it replicated on, the same as the
//! old leader's. So the epoch is `timeline × 65536 + n`, where `n` counts the other leaders
//! named on that timeline before this one. Following `(old, T)` then `(new, T)` then
//! `(new, T + 1)` gives growing epochs, and a stale answer that names `old` again on `T` gets
//! its earlier, lower epoch, which the [`Follower`](crate::route::Follower) rejects as going
//! back.

use std::sync::Arc;

/// How many leaders one timeline can count (more saturates; a real cluster names one or two).
const PER_TIMELINE: u64 = 1 << 16;

/// The leaders named so far on the highest timeline seen.
#[derive(Debug, Default)]
pub(super) struct Epochs {
    timeline: Option<u64>,
    /// In the order they were followed; the last is the current leader.
    leaders: Vec<Arc<str>>,
}

impl Epochs {
    /// The epoch of `leader` on `timeline` (`None`: not published yet, so the current
    /// timeline), without remembering it; `None` when no timeline is known at all.
    pub(super) fn epoch(&self, leader: &Arc<str>, timeline: Option<u64>) -> Option<u64> {
        let current = self.timeline;
        let timeline = timeline.or(current)?;
        let n = match current {
            Some(t) if t == timeline => self
                .leaders
                .iter()
                .position(|l| l == leader)
                .unwrap_or(self.leaders.len()),
            _ => 0,
        };
        Some(
            timeline
                .saturating_mul(PER_TIMELINE)
                .saturating_add((n as u64).min(PER_TIMELINE - 1)),
        )
    }

    /// Remembers that `leader` is followed on `timeline` (as [`epoch`](Self::epoch) resolved
    /// it); an answer below what is remembered changes nothing.
    pub(super) fn follow(&mut self, leader: &Arc<str>, timeline: Option<u64>) {
        let Some(timeline) = timeline.or(self.timeline) else {
            return;
        };
        match self.timeline {
            Some(t) if t > timeline => {}
            Some(t) if t == timeline => {
                if !self.leaders.contains(leader) {
                    self.leaders.push(leader.clone());
                }
            }
            _ => {
                self.timeline = Some(timeline);
                self.leaders = vec![leader.clone()];
            }
        }
    }

    /// The leader followed last.
    pub(super) fn current(&self) -> Option<&Arc<str>> {
        self.leaders.last()
    }
}

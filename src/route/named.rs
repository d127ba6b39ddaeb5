//! The authority's gate on the router: while an [`Authority`](super::Authority) decides, the
//! router's active endpoint is the one it names and no other.
//!
//! A [`Follower`](super::Follower) sets the gate; the router then never fails over or fails back
//! by itself: the named endpoint is active (a switch with reason
//! [`SwitchReason::Authority`](super::SwitchReason::Authority)), flagged all-down while it is not
//! an available primary candidate, and [`Router::switch_to`] refuses any other endpoint. Until the
//! authority names one (a follower that must obey before its first record), the active endpoint
//! stays and is flagged all-down: nothing is confirmed as primary.

use std::sync::atomic::Ordering;

use super::event::SwitchReason;
use super::router::{
    ALL_DOWN, Decision, Router, RouterInner, SwitchError, generation, index, is_candidate_up,
};
use crate::health::{Endpoint, EndpointId};
use crate::sync::lock;

/// The gate is open: local health decides.
pub(super) const LOCAL: u32 = u32::MAX;
/// An authority decides and has named no endpoint yet.
pub(super) const AWAITING: u32 = u32::MAX - 1;

/// Who decides the router's active endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate<'a, K> {
    /// Local health (the default).
    Local,
    /// An authority that has named none yet: no endpoint is a primary candidate.
    Awaiting,
    /// An authority names this endpoint.
    Named(&'a K),
}

impl<K: EndpointId> Router<K> {
    /// Sets who decides, and applies the decision at once. Returns the generation afterwards.
    ///
    /// # Errors
    ///
    /// [`SwitchError::UnknownEndpoint`] when the named endpoint is not routed here (the gate is
    /// unchanged).
    pub(crate) fn obey(&self, gate: Gate<'_, K>) -> Result<u64, SwitchError> {
        let inner = &*self.inner;
        let mut subs = lock(&inner.control);
        let g = match gate {
            Gate::Local => LOCAL,
            Gate::Awaiting => AWAITING,
            Gate::Named(id) => {
                let i = inner.find(id).ok_or(SwitchError::UnknownEndpoint)?;
                u32::try_from(i).map_err(|_| SwitchError::UnknownEndpoint)?
            }
        };
        inner.named.store(g, Ordering::Release);
        let w = inner.word.load(Ordering::Acquire);
        let w = match inner.decide(w) {
            Some(d) => inner.apply(&mut subs, w, d),
            None => w,
        };
        Ok(generation(w))
    }

    /// Who decides now.
    pub(crate) fn gate(&self) -> Gate<'_, K> {
        match self.inner.named.load(Ordering::Acquire) {
            LOCAL => Gate::Local,
            AWAITING => Gate::Awaiting,
            i => Gate::Named(self.inner.slot(i as usize).endpoint.id()),
        }
    }

    /// The endpoint an authority names, if one does.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn named(&self) -> Option<&Endpoint<K>> {
        match self.inner.named.load(Ordering::Acquire) {
            LOCAL | AWAITING => None,
            i => Some(&self.inner.slot(i as usize).endpoint),
        }
    }

    /// `true` while an authority decides (named or awaiting).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn is_obeying(&self) -> bool {
        self.inner.named.load(Ordering::Acquire) != LOCAL
    }
}

impl<K: EndpointId> RouterInner<K> {
    /// The gate: [`LOCAL`], [`AWAITING`] or the named slot's index.
    #[inline]
    pub(super) fn gate_word(&self) -> u32 {
        self.named.load(Ordering::Acquire)
    }

    /// `switch_to(i)` under gate `g`: refused for any endpoint but the named one.
    pub(super) fn gate_admits(&self, g: u32, i: usize) -> Result<(), SwitchError> {
        if g == LOCAL || g as usize == i {
            Ok(())
        } else {
            Err(SwitchError::NotNamed)
        }
    }

    /// The decision under a closed gate `g`: the named endpoint, all-down unless it is an
    /// available primary candidate; awaiting, the current one, all-down.
    pub(super) fn decide_named(&self, w: u64, g: u32) -> Option<Decision> {
        let cur = index(w);
        let was_down = w & ALL_DOWN != 0;
        let (to, all_down) = if g == AWAITING {
            (cur, true)
        } else {
            let to = g as usize;
            (to, !is_candidate_up(&self.slot(to).endpoint))
        };
        (to != cur || all_down != was_down).then_some(Decision {
            to,
            all_down,
            pinned: false,
            reason: SwitchReason::Authority,
        })
    }
}

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::router::Router;
use crate::health::{Endpoint, EndpointId, Role};

/// What a [`ReadPolicy`] chooses from: the router's active endpoint and the available
/// replicas.
///
/// The router builds one for each read; build your own with [`new`](Self::new) to test a
/// policy without a router.
pub struct ReadCandidates<'r, K> {
    endpoints: Endpoints<'r, K>,
    active: &'r Endpoint<K>,
    all_down: bool,
}

/// The endpoints a [`ReadCandidates`] iterates: the router's slots, or a slice.
enum Endpoints<'r, K> {
    Router(&'r Router<K>),
    Slice(&'r [Endpoint<K>]),
}

impl<K> Clone for Endpoints<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Endpoints<'_, K> {}

impl<'r, K: EndpointId> Endpoints<'r, K> {
    fn len(self) -> usize {
        match self {
            Endpoints::Router(r) => r.slot_count(),
            Endpoints::Slice(s) => s.len(),
        }
    }

    fn get(self, i: usize) -> Option<&'r Endpoint<K>> {
        match self {
            Endpoints::Router(r) => r.slot_endpoint(i),
            Endpoints::Slice(s) => s.get(i),
        }
    }

    /// Every endpoint, in order; no allocation.
    fn iter(self) -> impl Iterator<Item = &'r Endpoint<K>> + 'r {
        (0..self.len()).filter_map(move |i| self.get(i))
    }
}

impl<K: EndpointId> fmt::Debug for ReadCandidates<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCandidates")
            .field("active", self.active.id())
            .field("all_down", &self.all_down)
            .finish_non_exhaustive()
    }
}

impl<'r, K: EndpointId> ReadCandidates<'r, K> {
    /// Candidates over `endpoints` (in the order a policy should see them), with `active` the
    /// router's active endpoint and `all_down` whether it is only a best guess.
    pub fn new(endpoints: &'r [Endpoint<K>], active: &'r Endpoint<K>, all_down: bool) -> Self {
        ReadCandidates {
            endpoints: Endpoints::Slice(endpoints),
            active,
            all_down,
        }
    }

    pub(super) fn of_router(
        router: &'r Router<K>,
        active: &'r Endpoint<K>,
        all_down: bool,
    ) -> Self {
        ReadCandidates {
            endpoints: Endpoints::Router(router),
            active,
            all_down,
        }
    }

    /// The router's active endpoint, available or not (the router never answers "none").
    pub fn active(&self) -> &'r Endpoint<K> {
        self.active
    }

    /// The active endpoint if it is available.
    pub fn primary(&self) -> Option<&'r Endpoint<K>> {
        (!self.all_down && self.active.is_available()).then_some(self.active)
    }

    /// The available endpoints other than the active one that are not known primaries (known
    /// replicas, and endpoints with no known role such as other DynamoDB regions), in the order
    /// they were added to the router. Down, probing and draining endpoints are skipped.
    pub fn replicas(&self) -> impl Iterator<Item = &'r Endpoint<K>> + 'r {
        let active = self.active;
        self.endpoints
            .iter()
            .filter(move |ep| !ep.ptr_eq(active) && ep.is_available() && ep.role() != Role::Primary)
    }

    /// The available primary (if any) followed by the available replicas.
    pub fn all(&self) -> impl Iterator<Item = &'r Endpoint<K>> + 'r {
        self.primary().into_iter().chain(self.replicas())
    }
}

/// Chooses the endpoint that serves a read.
///
/// Built-ins: [`PrimaryOnly`], [`PreferReplica`], [`ReplicaOnly`], [`RoundRobin`],
/// [`LowestLatency`]. Implement it for your own choice (by zone, by weight):
///
/// ```
/// use switchover::health::{Endpoint, EndpointId};
/// use switchover::route::{ReadCandidates, ReadPolicy};
///
/// /// Reads from the last replica added, else the primary.
/// #[derive(Debug)]
/// struct Newest;
///
/// impl<K: EndpointId> ReadPolicy<K> for Newest {
///     fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
///         c.replicas().last().or(Some(c.active()))
///     }
/// }
/// ```
pub trait ReadPolicy<K>: Send + Sync {
    /// Picks an endpoint among `candidates`; `None` refuses the read.
    fn choose<'r>(&self, candidates: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>>;
}

impl<K, P: ReadPolicy<K> + ?Sized> ReadPolicy<K> for &P {
    fn choose<'r>(&self, candidates: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        (**self).choose(candidates)
    }
}

fn round_robin<'r, K: 'r, I>(
    cursor: &AtomicUsize,
    candidates: impl Fn() -> I,
) -> Option<&'r Endpoint<K>>
where
    I: Iterator<Item = &'r Endpoint<K>>,
{
    let n = candidates().count();
    if n == 0 {
        return None;
    }
    let k = cursor.fetch_add(1, Ordering::Relaxed) % n;
    // Availability may change between the count and this pass: when the k-th is gone, take
    // the first one still available rather than refusing the read.
    candidates().nth(k).or_else(|| candidates().next())
}

/// Reads from the active endpoint, like writes. Always answers (the router's best guess when
/// all are down).
#[derive(Clone, Copy, Debug, Default)]
pub struct PrimaryOnly;

impl<K: EndpointId> ReadPolicy<K> for PrimaryOnly {
    fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        Some(c.active())
    }
}

/// Reads from the available replicas in turn; from the active endpoint when none is available.
#[derive(Debug, Default)]
pub struct PreferReplica {
    cursor: AtomicUsize,
}

impl PreferReplica {
    /// A new policy (its own round-robin cursor).
    pub const fn new() -> Self {
        PreferReplica {
            cursor: AtomicUsize::new(0),
        }
    }
}

impl<K: EndpointId> ReadPolicy<K> for PreferReplica {
    fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        round_robin(&self.cursor, || c.replicas()).or(Some(c.active()))
    }
}

/// Reads from the available replicas in turn; refuses (`None`) when none is available.
#[derive(Debug, Default)]
pub struct ReplicaOnly {
    cursor: AtomicUsize,
}

impl ReplicaOnly {
    /// A new policy (its own round-robin cursor).
    pub const fn new() -> Self {
        ReplicaOnly {
            cursor: AtomicUsize::new(0),
        }
    }
}

impl<K: EndpointId> ReadPolicy<K> for ReplicaOnly {
    fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        round_robin(&self.cursor, || c.replicas())
    }
}

/// Reads from the available primary and replicas in turn; from the active endpoint when none
/// is available.
#[derive(Debug, Default)]
pub struct RoundRobin {
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// A new policy (its own cursor).
    pub const fn new() -> Self {
        RoundRobin {
            cursor: AtomicUsize::new(0),
        }
    }
}

impl<K: EndpointId> ReadPolicy<K> for RoundRobin {
    fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        round_robin(&self.cursor, || c.all()).or(Some(c.active()))
    }
}

/// Reads from the available endpoint (primary or replica) with the lowest moving average of
/// recorded latency ([`Endpoint::latency`]). An endpoint with no sample yet counts as fastest,
/// so it gets one; ties go to the primary, then to the order of addition. From the active
/// endpoint when none is available.
#[derive(Clone, Copy, Debug, Default)]
pub struct LowestLatency;

impl<K: EndpointId> ReadPolicy<K> for LowestLatency {
    fn choose<'r>(&self, c: &ReadCandidates<'r, K>) -> Option<&'r Endpoint<K>> {
        c.all()
            .min_by_key(|ep| ep.latency().unwrap_or_default())
            .or(Some(c.active()))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::health::HealthTracker;

    /// A candidate that disappears between the count and the pick does not make the choice
    /// fail while another candidate is still available.
    #[tokio::test(start_paused = true)]
    async fn round_robin_survives_a_candidate_going_away_mid_choice() {
        let t = HealthTracker::new(["a", "b", "c"]);
        let eps = t.endpoints();
        let calls = Cell::new(0);
        let cursor = AtomicUsize::new(2);
        // First pass (the count) sees three, later passes only the first.
        let chosen = round_robin(&cursor, || {
            calls.set(calls.get() + 1);
            let n = if calls.get() == 1 { 3 } else { 1 };
            eps.iter().take(n)
        });
        assert!(chosen.is_some_and(|ep| ep.ptr_eq(&eps[0])));
    }
}

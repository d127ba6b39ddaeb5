//! Silent regions: a region whose attempt or heartbeat went unanswered is *suspect* until it
//! answers again. Reads leave a suspect region at once, writes wait for its verdict (a
//! confirming canary, bounded) instead of each waiting out the attempt timeout, and an attempt
//! still in flight when its region is declared down ends then.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::config::RegionName;
use super::table::{Inner, Slot};
use crate::error::Classification;
use crate::health::{Endpoint, HealthState, HealthTracker, Probe, ProbeResult};
use crate::route::{ReadCandidates, ReadPolicy};

/// How many times its average latency a region may take before it is suspect, and before
/// its confirming canary counts as missed.
const LATENCY_FACTOR: u32 = 4;

/// One region's suspicion and the news its waiting attempts wake up for.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    suspect: AtomicBool,
    /// The region answered after being suspect.
    answered: Notify,
    /// The region was declared down.
    down: Notify,
}

impl Signals {
    /// `true` while suspect (one relaxed load).
    #[inline]
    pub(crate) fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    /// Marks the region suspect; `true` if it was not already.
    pub(crate) fn mark(&self) -> bool {
        !self.suspect.swap(true, Ordering::AcqRel)
    }

    /// The region answered: no longer suspect (one relaxed load when it was not).
    #[inline]
    pub(crate) fn answered(&self) {
        if self.is_suspect() {
            self.clear();
        }
    }

    #[cold]
    fn clear(&self) {
        if self.suspect.swap(false, Ordering::AcqRel) {
            self.answered.notify_waiters();
        }
    }

    pub(crate) fn down(&self) -> &Notify {
        &self.down
    }

    pub(crate) fn answered_notify(&self) -> &Notify {
        &self.answered
    }
}

/// The region probe, shared by the tracker's probe task and the table's confirming canaries.
///
/// As the tracker's probe it also keeps the regions' suspicion (`signals`, empty with
/// suspicion off): a probe that answers up clears it, and one the tracker cuts at its probe
/// timeout (dropped unanswered: a missed heartbeat) marks the region suspect.
pub(crate) struct Shared<P> {
    pub(crate) probe: Arc<P>,
    pub(crate) signals: Vec<(RegionName, Arc<Signals>)>,
}

/// Marks the region suspect if the probe is dropped before its answer.
struct Unanswered(Option<Arc<Signals>>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.mark();
        }
    }
}

impl<P: Probe<RegionName>> Probe<RegionName> for Shared<P> {
    fn probe(&self, id: &RegionName) -> impl Future<Output = ProbeResult> + Send {
        let signals = self.signals.iter().find(|(r, _)| r == id);
        let mut unanswered = Unanswered(signals.map(|(_, s)| Arc::clone(s)));
        let probe = self.probe.probe(id);
        async move {
            let result = probe.await;
            if let Some(s) = unanswered.0.take()
                && result.is_up()
            {
                s.answered();
            }
            result
        }
    }
}

/// A confirming canary of a region: the region probe, boxed so the table can hold it.
pub(crate) trait Confirm: Send + Sync + 'static {
    fn confirm(&self, id: &RegionName) -> Pin<Box<dyn Future<Output = ProbeResult> + Send>>;
}

/// The probe as a [`Confirm`].
pub(crate) struct Confirming<P>(pub(crate) Arc<P>);

impl<P: Probe<RegionName>> Confirm for Confirming<P> {
    fn confirm(&self, id: &RegionName) -> Pin<Box<dyn Future<Output = ProbeResult> + Send>> {
        let (probe, id) = (Arc::clone(&self.0), id.clone());
        Box::pin(async move { probe.probe(&id).await })
    }
}

/// Wakes the attempts waiting on a region when the tracker declares it down. Ends when the
/// tracker (and so the table) is dropped.
pub(crate) fn watch_downs(
    tracker: &HealthTracker<RegionName>,
    regions: Vec<(RegionName, Arc<Signals>)>,
) {
    let mut events = tracker.subscribe();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if ev.to != HealthState::Down {
                continue;
            }
            if let Some((_, s)) = regions.iter().find(|(id, _)| *id == ev.endpoint) {
                s.down.notify_waiters();
            }
        }
    });
}

impl Inner {
    /// An attempt in `slot` went unanswered: for the suspect delay (`silence`: the start of
    /// the attempt, still in flight, nothing counted yet), or until a timeout ended it
    /// (`None`: counted by the runner). The first such attempt of an episode marks the region suspect, counts the
    /// silence as one transient failure, and sends one confirming canary, bounded by the
    /// confirm timeout (or, for a region with no latency sample yet, the heartbeat's bound),
    /// whose verdict counts too: with the default failure threshold of 2, a
    /// region that stays silent is down one confirm timeout later. Nothing with suspicion off.
    pub(crate) fn suspect(&self, slot: &Slot, silence: Option<tokio::time::Instant>) {
        if self.suspect_after.is_none() || !slot.signals.mark() {
            return;
        }
        tracing::info!(
            target: "switchover::dynamo",
            table = %self.name,
            region = %slot.id,
            after_ms = self.suspect_after.map_or(0, |d| d.as_millis() as u64),
            "region suspect: an attempt went unanswered"
        );
        if let Some(started) = silence {
            // Counted from the attempt's start: the timeline's failover starts there too.
            slot.endpoint
                .record_failure_at(Classification::transient(), Some(started), true);
        }
        let (confirm, id, endpoint) = (
            Arc::clone(&self.confirm),
            slot.id.clone(),
            slot.endpoint.clone(),
        );
        // A region with no latency sample yet (nothing answered so far) gets the heartbeat's
        // bound: it may be far.
        let bound = match slot.endpoint.latency() {
            Some(l) => self.confirm_timeout.max(l * LATENCY_FACTOR),
            None => self.confirm_timeout.max(self.probe_timeout),
        };
        let signals = Arc::clone(&slot.signals);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(confirm_once(confirm, id, endpoint, signals, bound));
        }
    }

    /// How long an attempt in `slot` may go unanswered before the region is suspect: the
    /// suspect delay, or 4 × the region's average latency if that is longer (a far region is
    /// not suspect for being far).
    #[inline]
    pub(crate) fn suspect_delay(&self, slot: &Slot) -> Option<Duration> {
        let floor = self.suspect_after?;
        Some(match slot.endpoint.latency() {
            Some(l) => floor.max(l * LATENCY_FACTOR),
            None => floor,
        })
    }

    /// `true` when a read in `slot` has somewhere else to go: another available region that is
    /// not suspect.
    pub(crate) fn has_alternative(&self, slot: &Slot) -> bool {
        self.regions
            .iter()
            .any(|s| !std::ptr::eq(s, slot) && !s.signals.is_suspect() && s.endpoint.is_available())
    }
}

async fn confirm_once(
    confirm: Arc<dyn Confirm>,
    id: RegionName,
    endpoint: Endpoint<RegionName>,
    signals: Arc<Signals>,
    bound: Duration,
) {
    let result = tokio::time::timeout(bound, confirm.confirm(&id))
        .await
        .unwrap_or_else(|_| ProbeResult::down());
    tracing::debug!(
        target: "switchover::dynamo",
        region = %id,
        up = result.is_up(),
        "confirming canary"
    );
    endpoint.record_probe(result);
    if result.is_up() {
        signals.answered();
    }
}

/// The table's read policy with suspicion: the user's choice, unless that region is suspect
/// and another available region is not.
pub(crate) struct AvoidSuspects<'a>(pub(crate) &'a Inner);

impl ReadPolicy<RegionName> for AvoidSuspects<'_> {
    fn choose<'r>(&self, c: &ReadCandidates<'r, RegionName>) -> Option<&'r Endpoint<RegionName>> {
        let inner = self.0;
        let chosen = inner.read_policy.choose(c);
        match chosen {
            Some(ep) if inner.slot(ep).signals.is_suspect() => c
                .all()
                .find(|e| !inner.slot(e).signals.is_suspect())
                .or(chosen),
            other => other,
        }
    }
}

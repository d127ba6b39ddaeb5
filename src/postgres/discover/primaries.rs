//! More than one writable primary at once (a standby promoted while the old primary still
//! takes writes): which one the pool follows, and what each host was last seen as.
//!
//! The choice is deterministic, never the first host to answer: within one cluster (same
//! system identifier) the higher timeline wins, since a promotion starts a new timeline; with
//! equal timelines, or primaries of different clusters, the router's current primary stays;
//! then the host listed first. [`Writable`] remembers every host's last writable report, so a
//! discovery run knows which slow host could still outrank the first answer, and warns once
//! per set of hosts seen writable together: a `tracing` warning and the timeline's
//! [`WritablePrimaries`](crate::observe::EventKind::WritablePrimaries) event, counted by
//! [`FailoverPool::writable_primaries_detected`](crate::postgres::FailoverPool::writable_primaries_detected)
//! and the `switchover.writable_primaries` metric. The same set is reported again only after
//! one of its hosts was seen as something else (a standby, read-only, unreachable) or another
//! host joined it, so a split brain that lasts is one event, not one per discovery run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Which cluster and timeline a writable primary is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lineage {
    /// `system_identifier` of `pg_control_system()`: the same for every node of one cluster.
    pub(crate) system: u64,
    /// The timeline of the server's current WAL position.
    pub(crate) timeline: u32,
}

/// A writable host as a discovery run ranks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) host: usize,
    /// `None` when the backend could not read it.
    pub(crate) lineage: Option<Lineage>,
    /// The router's active host.
    pub(crate) current: bool,
}

impl Candidate {
    /// `true` when the pool should follow `self` rather than `other`: the higher timeline of
    /// one cluster, else the current primary, else the host listed first.
    pub(crate) fn beats(&self, other: &Candidate) -> bool {
        match (self.lineage, other.lineage) {
            (Some(a), Some(b)) if a.system == b.system && a.timeline != b.timeline => {
                a.timeline > b.timeline
            }
            _ if self.current != other.current => self.current,
            _ => self.host < other.host,
        }
    }
}

/// The candidate to follow among `candidates`: folded in host order, so the answer depends
/// on the set only, never on the order of arrival.
pub(crate) fn best(candidates: &[Candidate]) -> Option<Candidate> {
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|c| c.host);
    sorted
        .into_iter()
        .reduce(|best, c| if c.beats(&best) { c } else { best })
}

/// Hosts found writable together, as [`Writable::saw_writable`] reports them once per set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// Host index and timeline (when known), in host order.
    pub(crate) primaries: Vec<(usize, Option<u32>)>,
    /// The host the pool follows among them (`None`: an authority names none of them).
    pub(crate) following: Option<usize>,
    /// Every known lineage is of one cluster.
    pub(crate) same_cluster: bool,
}

/// What one host was last seen as by a discovery probe.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    writable: bool,
    lineage: Option<Lineage>,
    /// The discovery run that saw it.
    run: u64,
}

/// Every host's last writable report, the warning about several writable primaries, and how
/// many times that was detected.
#[derive(Debug)]
pub(crate) struct Writable {
    seen: Mutex<Vec<Seen>>,
    /// The hosts last warned about together (empty: none).
    warned: Mutex<Vec<usize>>,
    detected: AtomicU64,
    /// Woken when a new set of hosts is seen writable together.
    changed: Notify,
    /// The last run started, and the last one that named its primary (or found none).
    run: AtomicU64,
    finished: AtomicU64,
    /// Woken when a run finishes.
    done: Notify,
}

impl Writable {
    pub(crate) fn new(hosts: usize) -> Self {
        Writable {
            seen: Mutex::new(vec![Seen::default(); hosts]),
            warned: Mutex::new(Vec::new()),
            detected: AtomicU64::new(0),
            changed: Notify::new(),
            run: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            done: Notify::new(),
        }
    }

    /// Starts a discovery run; its probes report with the number returned.
    pub(crate) fn next_run(&self) -> u64 {
        self.run.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Run `run` has named its primary (or found none).
    pub(crate) fn finish(&self, run: u64) {
        self.finished.fetch_max(run, Ordering::AcqRel);
        self.done.notify_waiters();
    }

    /// Completes when no discovery run is under way: one that is may still take a late answer
    /// into account.
    pub(crate) async fn settled(&self) {
        loop {
            let done = self.done.notified();
            let mut done = std::pin::pin!(done);
            done.as_mut().enable();
            if self.finished.load(Ordering::Acquire) >= self.run.load(Ordering::Acquire) {
                return;
            }
            done.await;
        }
    }

    /// The lineage host `i` had when last seen writable, if it was and it is known.
    pub(crate) fn remembered(&self, i: usize) -> Option<Lineage> {
        let seen = crate::sync::lock(&self.seen)[i];
        seen.writable.then_some(seen.lineage).flatten()
    }

    /// Forgets that host `i` was writable (it answered as something else, or not at all).
    pub(crate) fn forget(&self, i: usize) {
        crate::sync::lock(&self.seen)[i].writable = false;
        let mut warned = crate::sync::lock(&self.warned);
        if warned.contains(&i) {
            warned.clear();
        }
    }

    /// Records that a probe of discovery run `run` found host `i` writable. When another host
    /// was found writable in the same run, once per set of such hosts (again only after one of
    /// them was seen as something else, or another joined): warns (target
    /// `switchover::postgres`) and returns the set, with the host the pool follows among them
    /// (`current`: the router's active host, for the tie-break; `obeyed`: while an authority
    /// decides, the host it names, which is the only one followed).
    pub(crate) fn saw_writable(
        &self,
        names: &[Arc<str>],
        i: usize,
        lineage: Option<Lineage>,
        run: u64,
        current: Option<usize>,
        obeyed: Option<Option<usize>>,
    ) -> Option<Split> {
        let together: Vec<(usize, Option<Lineage>)> = {
            let mut seen = crate::sync::lock(&self.seen);
            seen[i] = Seen {
                writable: true,
                lineage,
                run,
            };
            seen.iter()
                .enumerate()
                .filter(|(_, s)| s.writable && s.run == run)
                .map(|(h, s)| (h, s.lineage))
                .collect()
        };
        if together.len() < 2 {
            return None;
        }
        let hosts: Vec<usize> = together.iter().map(|&(h, _)| h).collect();
        {
            let mut warned = crate::sync::lock(&self.warned);
            if *warned == hosts {
                return None;
            }
            *warned = hosts;
        }
        let times = self.detected.fetch_add(1, Ordering::Relaxed) + 1;
        let following = match obeyed {
            Some(named) => named.filter(|n| together.iter().any(|&(h, _)| h == *n)),
            None => {
                let candidates: Vec<Candidate> = together
                    .iter()
                    .map(|&(host, lineage)| Candidate {
                        host,
                        lineage,
                        current: Some(host) == current,
                    })
                    .collect();
                best(&candidates).map(|b| b.host)
            }
        };
        let (list, timelines, same_cluster) = describe(names, &together);
        let followed = following.map(|h| &*names[h]).unwrap_or_default();
        tracing::warn!(
            target: "switchover::postgres",
            hosts = %list,
            timelines = %timelines,
            following = %followed,
            same_cluster,
            times,
            "two writable primaries: more than one host accepts writes; following the higher \
             timeline (else the current primary), never the first to answer"
        );
        self.changed.notify_one();
        Some(Split {
            primaries: together
                .iter()
                .map(|&(h, l)| (h, l.map(|l| l.timeline)))
                .collect(),
            following,
            same_cluster,
        })
    }

    /// How many times a new set of hosts was found writable together (the warning's `times`
    /// field, [`FailoverPool::writable_primaries_detected`](crate::postgres::FailoverPool::writable_primaries_detected)).
    pub(crate) fn detected(&self) -> u64 {
        self.detected.load(Ordering::Relaxed)
    }

    /// Completes when a new set of hosts is found writable together.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The hosts last seen writable, with what is known of their lineage.
    pub(crate) fn writable(&self) -> Vec<(usize, Option<Lineage>)> {
        crate::sync::lock(&self.seen)
            .iter()
            .enumerate()
            .filter(|(_, s)| s.writable)
            .map(|(h, s)| (h, s.lineage))
            .collect()
    }
}

/// `"a, b"`, `"1, 2"` (`?` for an unknown timeline), and whether all known lineages are of one
/// cluster.
fn describe(names: &[Arc<str>], hosts: &[(usize, Option<Lineage>)]) -> (String, String, bool) {
    let (mut list, mut timelines) = (String::new(), String::new());
    for (n, &(h, lineage)) in hosts.iter().enumerate() {
        let sep = if n == 0 { "" } else { ", " };
        let _ = write!(list, "{sep}{}", names[h]);
        let _ = match lineage {
            Some(l) => write!(timelines, "{sep}{}", l.timeline),
            None => write!(timelines, "{sep}?"),
        };
    }
    let mut systems = hosts.iter().filter_map(|(_, l)| l.map(|l| l.system));
    let first = systems.next();
    let same_cluster = systems.all(|s| Some(s) == first);
    (list, timelines, same_cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(host: usize, timeline: Option<u32>, current: bool) -> Candidate {
        Candidate {
            host,
            lineage: timeline.map(|timeline| Lineage {
                system: 7,
                timeline,
            }),
            current,
        }
    }

    #[test]
    fn the_higher_timeline_wins_then_the_current_primary_then_the_first_host() {
        assert_eq!(
            best(&[c(0, Some(1), true), c(1, Some(2), false)])
                .unwrap()
                .host,
            1
        );
        assert_eq!(
            best(&[c(1, Some(2), false), c(0, Some(1), true)])
                .unwrap()
                .host,
            1
        );
        assert_eq!(
            best(&[c(0, Some(2), false), c(1, Some(2), true)])
                .unwrap()
                .host,
            1
        );
        assert_eq!(
            best(&[c(0, None, false), c(1, None, false)]).unwrap().host,
            0
        );
        assert_eq!(
            best(&[c(2, None, false), c(1, Some(3), true)])
                .unwrap()
                .host,
            1
        );
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn timelines_of_different_clusters_are_not_compared() {
        let other = Candidate {
            lineage: Some(Lineage {
                system: 8,
                timeline: 9,
            }),
            ..c(1, None, false)
        };
        assert_eq!(best(&[c(0, Some(1), true), other]).unwrap().host, 0);
    }

    #[test]
    fn hosts_writable_in_one_run_are_warned_about_once_per_set() {
        let names: Vec<Arc<str>> = vec!["a:1".into(), "b:1".into()];
        let w = Writable::new(2);
        let l = |timeline| {
            Some(Lineage {
                system: 7,
                timeline,
            })
        };
        let run = w.next_run();
        w.saw_writable(&names, 0, l(1), run, None, None);
        assert_eq!(w.detected(), 0);
        // A stale report from an earlier run is no evidence.
        let run = w.next_run();
        w.saw_writable(&names, 1, l(2), run, None, None);
        assert_eq!(w.detected(), 0);
        assert_eq!(
            w.saw_writable(&names, 0, l(1), run, Some(0), None),
            Some(Split {
                primaries: vec![(0, Some(1)), (1, Some(2))],
                following: Some(1),
                same_cluster: true,
            }),
            "the higher timeline is followed, whichever is current"
        );
        assert_eq!(w.detected(), 1);
        let run = w.next_run();
        w.saw_writable(&names, 0, l(1), run, None, None);
        assert_eq!(w.saw_writable(&names, 1, l(2), run, Some(1), None), None);
        assert_eq!(w.detected(), 1, "the same pair again");
        assert_eq!(w.remembered(1), l(2));
        w.forget(0);
        assert_eq!(w.remembered(0), None);
        let run = w.next_run();
        w.saw_writable(&names, 0, l(1), run, None, None);
        let again = w.saw_writable(&names, 1, l(2), run, Some(1), Some(Some(0)));
        assert_eq!(
            again.map(|s| s.following),
            Some(Some(0)),
            "the authority's pick"
        );
        assert_eq!(w.detected(), 2, "after one was seen read-only, again");
    }
}

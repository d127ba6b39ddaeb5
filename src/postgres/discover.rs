//! The protocol part of finding the primary: probe every host's role in parallel and name the
//! one writable primary to follow ([`RoleDiscovery`], the core's [`Discover`]), and the health
//! tracker's probe that brings an ejected host back with its role ([`RoleProbe`]).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{Backend, HostReport, ProbeError};
use super::role::ServerRole;
use super::topology::{HostRoles, health_role};
use crate::health::{Endpoint, Probe, ProbeResult};
use crate::route::{Discover, Gate, NoPrimary, Router};
use primaries::{Candidate, best};

pub(crate) mod primaries;

/// One discovery run: every host probed at once, each probe bounded by the probe timeout and
/// recording what it found (role and health, for a writable primary its timeline) on its
/// endpoint when it finishes.
///
/// The run names the best writable host (see [`primaries`]) as soon as no host still being
/// probed could outrank it: one that was last seen writable on a higher timeline of the same
/// cluster, or the current primary, last seen writable on an equal one. So a black-holed host
/// holds the switch up only when it could be the better primary, and then for one probe
/// timeout at most; the decision never depends on which host answers first. When the best is
/// the current primary, the run also waits up to `grace` (the re-discovery interval) for the
/// other available hosts, so a standby promoted beside it is found in that run. The other
/// probes keep running in the background and record what they find; two hosts found writable
/// in one run are warned about (and, when the later one outranks the primary, a run switches
/// to it).
/// The first run of a pool gives every host the same `grace` once a primary answered, so the
/// roles of the hosts that answer at once are known before the first connection is placed; a
/// frozen host costs that run `grace`, never a probe timeout (a pool built while its first
/// host is stopped and its second promoted is placed within about 50 ms).
pub(crate) struct RoleDiscovery<B> {
    backend: Arc<B>,
    roles: Arc<HostRoles>,
    router: Router<Arc<str>>,
    endpoints: Vec<Endpoint<Arc<str>>>,
    probe_timeout: Duration,
    /// How long the run waits for a host that has not answered before it decides without it.
    silence: Duration,
    /// How long the current primary's answer waits for the other hosts.
    grace: Duration,
}

impl<B: Backend> RoleDiscovery<B> {
    pub(crate) fn new(
        backend: Arc<B>,
        roles: Arc<HostRoles>,
        router: Router<Arc<str>>,
        endpoints: Vec<Endpoint<Arc<str>>>,
        probe_timeout: Duration,
        silence: Duration,
        grace: Duration,
    ) -> Self {
        RoleDiscovery {
            backend,
            roles,
            router,
            endpoints,
            probe_timeout,
            silence,
            grace,
        }
    }
}

type Found = Option<Result<HostReport, ProbeError>>;

impl<B: Backend> Discover<Arc<str>> for RoleDiscovery<B> {
    fn discover(&self) -> impl Future<Output = Result<Arc<str>, NoPrimary>> + Send {
        // The hosts' names are looked up again beside the run (it does not wait); a name that
        // moved asks for another run.
        self.backend.kick_names();
        let backend = self.backend.clone();
        let roles = self.roles.clone();
        let endpoints = self.endpoints.clone();
        let timeout = self.probe_timeout;
        let grace = self.grace;
        let silence = self.silence;
        let active = self.router.active();
        let current = endpoints.iter().position(|e| e.ptr_eq(active.endpoint()));
        let only = obeyed(&self.router, &roles);
        let router = self.router.clone();
        async move {
            let first = !roles.learned();
            let run = roles.writable.next_run();
            let started = Instant::now();
            // A host without an open connection needs a login (and maybe a credential
            // provider) before it can answer: the silence bound does not cut it.
            let connected: Vec<bool> = (0..endpoints.len())
                .map(|i| backend.is_connected(i))
                .collect();
            let (tx, rx) = mpsc::unbounded_channel();
            let all = endpoints.clone();
            for (i, endpoint) in endpoints.into_iter().enumerate() {
                let (backend, roles, tx) = (backend.clone(), roles.clone(), tx.clone());
                let router = router.clone();
                let probing = Probing {
                    timeout,
                    run,
                    current,
                    only,
                };
                tokio::spawn(async move {
                    let found = probe_host(&*backend, &roles, &router, &endpoint, i, probing).await;
                    let _ = tx.send((i, found));
                });
            }
            drop(tx);
            let decide = Decide {
                roles: &roles,
                endpoints: &all,
                current,
                first,
                grace,
                silent_at: started + silence,
                connected: &connected,
                only,
            };
            let (found, writable) = collect(rx, &decide).await;
            if first {
                roles.mark_learned();
            }
            roles.writable.finish(run);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match best(&writable) {
                Some(b) => {
                    let primary = roles.names()[b.host].clone();
                    tracing::debug!(
                        target: "switchover::postgres",
                        primary = %primary,
                        timeline = ?b.lineage.map(|l| l.timeline),
                        writable = writable.len(),
                        elapsed_ms,
                        "re-discovery found the writable primary"
                    );
                    Ok(primary)
                }
                None => Err(named_no_primary(
                    roles.names(),
                    only,
                    no_primary(roles.names(), &found),
                )),
            }
        }
    }
}

/// What a run needs to decide, beside the answers.
struct Decide<'a> {
    roles: &'a HostRoles,
    endpoints: &'a [Endpoint<Arc<str>>],
    current: Option<usize>,
    /// The pool's first run: any primary's answer waits `grace` for the other hosts.
    first: bool,
    grace: Duration,
    /// When the run stops waiting for hosts that have not answered.
    silent_at: Instant,
    /// Which hosts had an open connection when the run started.
    connected: &'a [bool],
    /// While an authority decides: the one host it names (`Some(None)`: none yet). No other
    /// host is a candidate, however writable.
    only: Option<Option<usize>>,
}

/// The host an authority the router obeys names: `None` while local health decides,
/// `Some(None)` while it has named none (or one the pool does not have).
fn obeyed(router: &Router<Arc<str>>, roles: &HostRoles) -> Option<Option<usize>> {
    match router.gate() {
        Gate::Local => None,
        Gate::Awaiting => Some(None),
        Gate::Named(id) => Some(roles.index_of(id)),
    }
}

/// A run's [`NoPrimary`], saying which host the authority names when one decides.
fn named_no_primary(names: &[Arc<str>], only: Option<Option<usize>>, e: NoPrimary) -> NoPrimary {
    let why = match only {
        None => return e,
        Some(Some(i)) => format!("the authority names {}; {}", names[i], e.reason()),
        Some(None) => format!("the authority has named no primary yet; {}", e.reason()),
    };
    if e.is_permanent() {
        NoPrimary::permanent(why)
    } else {
        NoPrimary::new(why)
    }
}

/// Takes the probes' answers as they come until the best writable host is decided: what each
/// host answered so far, and the writable ones. The current primary's own answer (in the first
/// run, any primary's) waits up to `grace` for the other available hosts, so a standby
/// promoted beside it is seen in the same run; otherwise a new primary is named at once.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<(usize, Result<HostReport, ProbeError>)>,
    d: &Decide<'_>,
) -> (Vec<Found>, Vec<Candidate>) {
    let mut found: Vec<Found> = vec![None; d.roles.names().len()];
    let mut writable = Vec::new();
    let mut until: Option<Instant> = None;
    let mut silent_at = Some(d.silent_at);
    loop {
        let wait_until = match (until, silent_at) {
            (Some(u), Some(s)) => Some(u.min(s)),
            (u, s) => u.or(s),
        };
        let next = match wait_until {
            Some(t) => match tokio::time::timeout_at(t, rx.recv()).await {
                Ok(next) => next,
                Err(_) if until.is_some_and(|u| u <= t) => break,
                // Silent past the bound: decide without the hosts that hold a connection
                // and do not answer on it, unless one that is still logging in is pending.
                Err(_) if (0..found.len()).any(|j| found[j].is_none() && !d.connected[j]) => {
                    silent_at = None;
                    continue;
                }
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some((i, outcome)) = next else { break };
        if let Ok(r) = &outcome
            && r.role == ServerRole::Primary
            && d.only.is_none_or(|only| only == Some(i))
        {
            writable.push(Candidate {
                host: i,
                lineage: r.lineage,
                current: Some(i) == d.current,
            });
        }
        found[i] = Some(outcome);
        let Some(b) = best(&writable) else {
            continue;
        };
        if outranked(&b, &found, d) {
            continue;
        }
        let others = (0..found.len()).any(|j| found[j].is_none() && d.endpoints[j].is_available());
        if !((b.current || d.first) && others) {
            break;
        }
        until.get_or_insert_with(|| Instant::now() + d.grace);
    }
    (found, writable)
}

/// `true` when a host still being probed (one the authority names, while one decides) was last
/// seen writable and would beat `best`.
fn outranked(best: &Candidate, found: &[Found], d: &Decide<'_>) -> bool {
    let (roles, current) = (d.roles, d.current);
    (0..found.len()).any(|j| {
        found[j].is_none()
            && d.only.is_none_or(|only| only == Some(j))
            && roles.writable.remembered(j).is_some_and(|lineage| {
                let pending = Candidate {
                    host: j,
                    lineage: Some(lineage),
                    current: Some(j) == current,
                };
                pending.beats(best)
            })
    })
}

/// What every probe of one discovery run shares, read once at the run's start.
#[derive(Clone, Copy)]
struct Probing {
    /// The bound of one host's answer.
    timeout: Duration,
    /// The run's number (see [`primaries::Writable::next_run`]).
    run: u64,
    /// The router's active host and, while an authority decides, the host it names: what
    /// decides which of several writable hosts is followed, as in the run's [`Decide`].
    current: Option<usize>,
    only: Option<Option<usize>>,
}

/// Probes host `i` within the run's timeout and records the outcome on its endpoint; a
/// writable host found beside another one in the same run is reported to the router's
/// timeline (once per set, see [`primaries::Writable::saw_writable`]).
async fn probe_host<B: Backend>(
    backend: &B,
    roles: &HostRoles,
    router: &Router<Arc<str>>,
    endpoint: &Endpoint<Arc<str>>,
    i: usize,
    probing: Probing,
) -> Result<HostReport, ProbeError> {
    let Probing {
        timeout,
        run,
        current,
        only,
    } = probing;
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, backend.inspect(i)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ProbeError::transient(format!(
            "no answer within the probe timeout of {timeout:?}"
        ))),
    };
    match &outcome {
        Ok(report) => {
            roles.record(i, endpoint, report.role);
            let names = roles.names();
            if report.role == ServerRole::Primary
                && let Some(split) =
                    roles
                        .writable
                        .saw_writable(names, i, report.lineage, run, current, only)
            {
                router.observer().writable_primaries(
                    split
                        .primaries
                        .iter()
                        .map(|&(h, tl)| (names[h].clone(), tl))
                        .collect(),
                    split.following.map(|h| names[h].clone()),
                    split.same_cluster,
                );
            }
            endpoint.record_probe(
                ProbeResult::up()
                    .with_role(health_role(report.role))
                    .with_latency(started.elapsed()),
            );
        }
        Err(e) => {
            tracing::debug!(
                target: "switchover::postgres",
                host = %roles.names()[i],
                error = %e.detail,
                "probe failed"
            );
            roles.writable.forget(i);
            endpoint.record_probe(ProbeResult::down());
        }
    }
    outcome
}

/// Why a run that heard from every host found no primary: each host's answer; permanent
/// when no host reported a role and one rejected the login.
fn no_primary(names: &[Arc<str>], found: &[Found]) -> NoPrimary {
    let mut reason = String::from("no writable primary:");
    let mut answered = false;
    let mut rejected = false;
    for (name, f) in names.iter().zip(found) {
        let _ = match f {
            Some(Ok(report)) => {
                answered = true;
                write!(reason, " {name}={}", report.role)
            }
            Some(Err(e)) => {
                rejected |= e.permanent;
                write!(reason, " {name}=unreachable ({})", e.detail)
            }
            None => write!(reason, " {name}=no answer"),
        };
    }
    if rejected && !answered {
        NoPrimary::permanent(reason)
    } else {
        NoPrimary::new(reason)
    }
}

/// The health tracker's background probe: brings an ejected host back, with its role.
pub(crate) struct RoleProbe<B> {
    backend: Arc<B>,
    roles: Arc<HostRoles>,
}

impl<B> RoleProbe<B> {
    pub(crate) fn new(backend: Arc<B>, roles: Arc<HostRoles>) -> Self {
        RoleProbe { backend, roles }
    }
}

impl<B: Backend> Probe<Arc<str>> for RoleProbe<B> {
    fn probe(&self, id: &Arc<str>) -> impl Future<Output = ProbeResult> + Send {
        let backend = self.backend.clone();
        let roles = self.roles.clone();
        let index = roles.index_of(id);
        async move {
            let Some(i) = index else {
                return ProbeResult::down();
            };
            let started = Instant::now();
            match backend.probe(i).await {
                Ok(role) => {
                    roles.note(i, role);
                    ProbeResult::up()
                        .with_role(health_role(role))
                        .with_latency(started.elapsed())
                }
                Err(_) => ProbeResult::down(),
            }
        }
    }
}

#[cfg(test)]
mod tests_primaries;

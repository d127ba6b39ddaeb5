//! The pool's failover logic over a scripted [`Backend`], under Tokio's paused clock: role
//! discovery (hosts that answer, refuse, reject the login, hang, turn read-only), the switch
//! and its generation, the host choice per role, the recycle and eviction verdict, declined
//! attempts, and the retry safety of transactions through the core's runner. No server.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::acquire::{AttemptError, DECLINED};
use super::backend::{Backend, ProbeError};
use super::core::Side;
use super::error::{Error, ErrorKind};
use super::role::{ServerRole, TargetRole};
use super::runner::{CommitWatch, TxFailure, finish};
use super::topology::{DiscoveryConfig, Topology};
use crate::error::{Classify, Execution};
use crate::health::{HealthState, HealthTracker, Role};
use crate::retry::{ConstantBackoff, RetryPolicy, StopReason};
use crate::route::Target;

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const INTERVAL: Duration = Duration::from_millis(50);

/// What a scripted host answers a probe with, after its delay.
#[derive(Clone, Copy, Debug)]
pub(super) enum Answer {
    Role(ServerRole),
    /// Connection refused.
    Refuse,
    /// The login is rejected (a wrong password): permanent.
    Reject,
    /// A black hole: never answers.
    Hang,
}

use Answer::{Hang, Refuse, Reject};
use ServerRole::{Primary, ReadOnly, Standby};

/// A backend whose hosts answer from a script that the test changes as it goes; counts the
/// probes per host.
pub(super) struct Fake {
    answers: Mutex<Vec<(Answer, Duration)>>,
    probes: Vec<AtomicUsize>,
}

impl Fake {
    pub(super) fn new(answers: &[(Answer, u64)]) -> Arc<Self> {
        Arc::new(Fake {
            answers: Mutex::new(answers.iter().map(|&(a, d)| (a, ms(d))).collect()),
            probes: answers.iter().map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    pub(super) fn set(&self, host: usize, answer: Answer, delay: u64) {
        crate::sync::lock(&self.answers)[host] = (answer, ms(delay));
    }

    fn probes(&self, host: usize) -> usize {
        self.probes[host].load(Ordering::SeqCst)
    }
}

impl Backend for Fake {
    fn probe(&self, host: usize) -> impl Future<Output = Result<ServerRole, ProbeError>> + Send {
        self.probes[host].fetch_add(1, Ordering::SeqCst);
        let (answer, delay) = crate::sync::lock(&self.answers)[host];
        async move {
            sleep(delay).await;
            match answer {
                Answer::Role(role) => Ok(role),
                Refuse => Err(ProbeError::transient("connection refused")),
                Reject => Err(ProbeError {
                    detail: "password authentication failed".into(),
                    permanent: true,
                }),
                Hang => std::future::pending().await,
            }
        }
    }
}

pub(super) fn role(r: ServerRole) -> Answer {
    Answer::Role(r)
}

/// The topology a pool builds, over the fake: hosts `h0:5432`, `h1:5432`, ... in priority
/// order, the pool's health defaults, re-discovery every 50 ms while in doubt.
fn topology(fake: &Arc<Fake>) -> Topology {
    topology_with_silence(fake, PROBE_TIMEOUT)
}

/// [`topology`] whose runs stop waiting for a host that has not answered after `silence` (the
/// heartbeat timeout of a pool with the heartbeat on).
fn topology_with_silence(fake: &Arc<Fake>, silence: Duration) -> Topology {
    start_topology(fake, silence, false)
}

/// [`topology`] whose router's gate is closed: an authority's follower will name the primary.
pub(super) fn topology_obeying(fake: &Arc<Fake>) -> Topology {
    start_topology(fake, PROBE_TIMEOUT, true)
}

fn start_topology(fake: &Arc<Fake>, silence: Duration, obey: bool) -> Topology {
    let names = (0..fake.probes.len())
        .map(|i| Arc::from(format!("h{i}:5432")))
        .collect();
    let health = HealthTracker::builder()
        .failure_threshold(2)
        .ejection_base(ms(500))
        .ejection_cap(Duration::from_secs(10))
        .probe_interval(ms(250))
        .probe_timeout(PROBE_TIMEOUT);
    let config = DiscoveryConfig {
        interval: INTERVAL,
        probe_timeout: PROBE_TIMEOUT,
        silence,
    };
    let observe = crate::observe::Observe::new("postgres");
    Topology::start_observed(fake.clone(), names, health, config, observe, obey).unwrap()
}

fn active(t: &Topology) -> String {
    t.router.active().id().to_string()
}

#[tokio::test(start_paused = true)]
async fn the_first_run_learns_the_roles_that_answer_within_its_grace_then_confirms_the_primary() {
    let fake = Fake::new(&[
        (role(Standby), 30),
        (role(Primary), 10),
        (role(ReadOnly), 200),
    ]);
    let t = topology(&fake);
    let started = Instant::now();
    assert!(t.rediscovery.in_doubt());
    assert!(!t.roles.learned());

    let primary = t.rediscovery.primary().await.unwrap();
    assert_eq!(&**primary.id(), "h1:5432");
    assert_eq!(
        started.elapsed(),
        ms(10) + INTERVAL,
        "the primary's answer waits the grace (the interval) for the others, not the slowest"
    );
    assert!(t.roles.learned());
    assert_eq!(active(&t), "h1:5432");
    assert_eq!(t.router.generation(), 1);
    assert_eq!(t.server_role(0), Some(Standby));
    assert_eq!(t.server_role(1), Some(Primary));
    assert_eq!(t.server_role(2), None, "still being probed");
    assert_eq!(
        t.endpoints[2].role(),
        Role::Unknown,
        "not answered within the grace"
    );

    // The slow host's probe goes on in the background and records its role.
    sleep(ms(201) - started.elapsed()).await;
    assert_eq!(t.server_role(2), Some(ReadOnly));
    assert_eq!(
        t.endpoints[2].role(),
        Role::Replica,
        "read-only is a replica"
    );
    assert_eq!([fake.probes(0), fake.probes(1), fake.probes(2)], [1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_frozen_first_host_costs_the_first_run_its_grace_not_a_probe_timeout() {
    // Issue 11: with the first host stopped and the second promoted, the first `get()` took
    // 2 004 ms (the first run waited for the stopped host's probe timeout).
    let fake = Fake::new(&[(Hang, 0), (role(Primary), 5)]);
    let t = topology(&fake);
    let started = Instant::now();
    let primary = t.rediscovery.primary().await.unwrap();
    assert_eq!(&**primary.id(), "h1:5432");
    assert_eq!(started.elapsed(), ms(5) + INTERVAL);
    assert_eq!((active(&t), t.router.generation()), ("h1:5432".into(), 1));
    assert!(!t.rediscovery.in_doubt());
    assert_eq!(t.server_role(0), None);
}

#[tokio::test(start_paused = true)]
async fn a_first_run_with_every_host_silent_finds_no_primary_within_one_probe_timeout() {
    let fake = Fake::new(&[(Hang, 0), (Hang, 0)]);
    let t = topology(&fake);
    let started = Instant::now();
    let err = t.rediscovery.primary().await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    assert!(t.rediscovery.in_doubt());
    assert!(
        started.elapsed() >= PROBE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    // Host 1 comes back as the primary: a later run of the same pool finds it.
    fake.set(1, role(Primary), 5);
    let primary = t.rediscovery.primary().await.unwrap();
    assert_eq!(&**primary.id(), "h1:5432");
}

#[tokio::test(start_paused = true)]
async fn with_a_heartbeat_a_run_decides_without_a_silent_host_after_the_heartbeat_timeout() {
    let silence = ms(300);
    let fake = Fake::new(&[(role(Primary), 5), (role(Standby), 5)]);
    let t = topology_with_silence(&fake, silence);
    t.rediscovery.primary().await.unwrap();
    assert_eq!((active(&t), t.router.generation()), ("h0:5432".into(), 0));

    // h0 freezes before h1 is promoted: the run hears h1 say "standby" and h0 nothing; it
    // ends at the silence bound, not at the probe timeout, naming what it heard.
    fake.set(0, Hang, 0);
    sleep(ms(100)).await;
    let observed = Instant::now();
    let err = t.rediscovery.rediscover_after(observed).await.unwrap_err();
    assert_eq!(observed.elapsed(), silence);
    assert!(
        err.reason().contains("h0:5432=no answer") && err.reason().contains("h1:5432=standby"),
        "{err}"
    );
    assert!(t.rediscovery.in_doubt());

    // h1 is promoted: the next run names it as soon as it answers, h0 still silent.
    fake.set(1, role(Primary), 5);
    let observed = Instant::now();
    let generation = t.rediscovery.rediscover_after(observed).await.unwrap();
    assert_eq!((active(&t), generation), ("h1:5432".into(), 1));
    assert!(
        observed.elapsed() <= INTERVAL + ms(5),
        "{:?}",
        observed.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn later_runs_decide_at_the_first_primary_while_a_black_hole_keeps_probing() {
    let fake = Fake::new(&[(role(Primary), 10), (role(Standby), 10)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    assert_eq!((active(&t), t.router.generation()), ("h0:5432".into(), 0));

    // h0 goes silent; h1 is promoted.
    fake.set(0, Hang, 0);
    fake.set(1, role(Primary), 10);
    sleep(ms(100)).await;
    let observed = Instant::now();
    let generation = t.rediscovery.rediscover_after(observed).await.unwrap();
    assert_eq!(observed.elapsed(), ms(10), "decided when h1 answered");
    assert_eq!((active(&t), generation), ("h1:5432".into(), 1));

    // The probe of h0 goes on in the background and is cut at the probe timeout.
    let failures = || t.endpoints[0].stats().failures_total;
    sleep(ms(989)).await;
    assert_eq!(failures(), 0, "1 ms before the probe timeout");
    sleep(ms(2)).await;
    assert_eq!(failures(), 1, "1 ms after it");
}

#[tokio::test(start_paused = true)]
async fn a_fenced_primary_hands_over_to_the_promoted_standby_and_old_connections_no_longer_fit() {
    let fake = Fake::new(&[(role(Primary), 5), (role(Standby), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let before = t.router.generation();
    assert_eq!(
        t.fits(0, before, Some(Primary), TargetRole::Primary),
        Ok(())
    );
    assert_eq!(
        t.fits(1, before, Some(Standby), TargetRole::PreferStandby),
        Ok(())
    );

    // h0 is fenced read-only and h1 promoted; a 25006 on h0 puts the primary in doubt.
    fake.set(0, role(ReadOnly), 5);
    fake.set(1, role(Primary), 5);
    sleep(ms(100)).await;
    let generation = t
        .rediscovery
        .rediscover_after(Instant::now())
        .await
        .unwrap();
    assert_eq!(generation, before + 1);
    assert_eq!(active(&t), "h1:5432");
    assert_eq!(t.server_role(0), Some(ReadOnly));

    // Every connection of the old generation is refused, for writes and reads.
    assert_eq!(
        t.fits(0, before, Some(Primary), TargetRole::Primary),
        Err("older generation")
    );
    assert_eq!(
        t.fits(1, before, Some(Standby), TargetRole::PreferStandby),
        Err("older generation")
    );
    // In the new generation: the fenced host is no primary, the new primary is.
    assert_eq!(
        t.fits(0, generation, Some(ReadOnly), TargetRole::Primary),
        Err("server role changed")
    );
    assert_eq!(
        t.fits(1, generation, Some(Primary), TargetRole::Primary),
        Ok(())
    );
    // A connection that says it is a primary on a host that is not the active one.
    assert_eq!(
        t.fits(0, generation, Some(Primary), TargetRole::Primary),
        Err("not the active host")
    );
    // No standby left: the primary serves `PreferStandby` reads, a read-only host too.
    assert_eq!(
        t.fits(1, generation, Some(Primary), TargetRole::PreferStandby),
        Ok(())
    );
    // Once a standby is back, fallback connections give way to it.
    fake.set(0, role(Standby), 5);
    t.rediscovery
        .rediscover_after(Instant::now())
        .await
        .unwrap();
    assert_eq!(
        t.router.generation(),
        generation,
        "same primary, same generation"
    );
    assert_eq!(
        t.fits(1, generation, Some(Primary), TargetRole::PreferStandby),
        Err("a preferred host is available again")
    );
    t.endpoints[0].force_down();
    assert_eq!(
        t.fits(0, generation, Some(Standby), TargetRole::Standby),
        Err("host unavailable")
    );
}

#[tokio::test(start_paused = true)]
async fn refusing_hosts_keep_the_primary_in_doubt_and_a_rejected_login_stops_the_wait() {
    let fake = Fake::new(&[(Refuse, 0), (role(Standby), 0)]);
    let t = topology(&fake);
    let started = Instant::now();
    let err = t.rediscovery.primary().await.unwrap_err();
    // The wait limit: two probe timeouts and the interval.
    assert_eq!(started.elapsed(), PROBE_TIMEOUT * 2 + INTERVAL);
    assert!(!err.is_permanent());
    assert!(
        err.reason()
            .contains("h0:5432=unreachable (connection refused)"),
        "{err}"
    );
    assert!(err.reason().contains("h1:5432=standby"), "{err}");
    assert!(t.rediscovery.in_doubt());
    assert!(fake.probes(1) > 2, "probed again and again while in doubt");

    // Every host rejects the login: callers stop waiting at the next run.
    fake.set(0, Reject, 0);
    fake.set(1, Reject, 0);
    // A run that starts in this very instant may have read the script before it changed.
    sleep(ms(1)).await;
    let started = Instant::now();
    let err = t.rediscovery.rediscover_after(started).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(started.elapsed() <= INTERVAL);
    let started = Instant::now();
    let err = t.rediscovery.primary().await.unwrap_err();
    assert!(err.is_permanent());
    assert!(started.elapsed() <= INTERVAL, "no wait for the full limit");

    // One host answering with a role is enough to keep it transient.
    fake.set(1, role(Standby), 0);
    sleep(ms(1)).await;
    let err = t
        .rediscovery
        .rediscover_after(Instant::now())
        .await
        .unwrap_err();
    assert!(!err.is_permanent());
}

#[tokio::test(start_paused = true)]
async fn each_role_goes_to_the_hosts_it_prefers() {
    let fake = Fake::new(&[
        (role(Primary), 0),
        (role(Standby), 0),
        (role(Standby), 0),
        (role(ReadOnly), 0),
    ]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let side = |r| Side::new(r, t.roles.clone(), String::new);
    let pick = |s: &Side| match s.target() {
        Target::Read(p) => t.router.read_target(p).map(|e| e.id().to_string()),
        _ => Some(active(&t)),
    };
    let name = |i: usize| Some(t.name(i).to_string());

    assert!(matches!(side(TargetRole::Primary).target(), Target::Active));
    // Standbys in turn.
    let prefer_standby = side(TargetRole::PreferStandby);
    let picks: Vec<_> = (0..4).map(|_| pick(&prefer_standby)).collect();
    assert!(
        picks.contains(&name(1)) && picks.contains(&name(2)),
        "{picks:?}"
    );
    assert!(
        picks.iter().all(|p| *p == name(1) || *p == name(2)),
        "{picks:?}"
    );
    assert_eq!(pick(&side(TargetRole::PreferPrimary)), name(0));
    assert_eq!(pick(&side(TargetRole::Any)), name(0));

    // No standby up: `Standby` has nowhere to go, `PreferStandby` falls back.
    t.endpoints[1].force_down();
    t.endpoints[2].force_down();
    let standby = side(TargetRole::Standby);
    assert_eq!(pick(&standby), None);
    assert!(!standby.admits(&t.endpoints[0]), "never the primary");
    assert!(
        !standby.admits(&t.endpoints[3]),
        "never a read-only primary"
    );
    let fallback = pick(&prefer_standby);
    assert!(fallback == name(0) || fallback == name(3), "{fallback:?}");

    // A host whose role is not known yet is tried when nothing better is up.
    t.endpoints[3].force_down();
    t.endpoints[1].clear();
    t.endpoints[1].set_role(Role::Unknown);
    assert_eq!(pick(&standby), name(1));
    assert_eq!(
        pick(&prefer_standby),
        name(0),
        "the known primary ranks first"
    );
}

/// A runner policy with exact timing: constant 20 ms between attempts.
fn exact(deadline: u64) -> RetryPolicy<ConstantBackoff> {
    RetryPolicy::builder()
        .max_attempts(100)
        .deadline(ms(deadline))
        .throttle_factor(1.0)
        .backoff(ConstantBackoff::new(ms(20)))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_declined_attempt_is_retried_and_never_counts_against_a_healthy_host() {
    let fake = Fake::new(&[(role(Primary), 0), (role(Standby), 0)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let standby = Side::new(TargetRole::Standby, t.roles.clone(), String::new);
    t.endpoints[1].force_down();

    // What an acquire does with a host its role cannot use.
    let attempts = AtomicUsize::new(0);
    let policy = exact(100);
    let call = |policy| {
        t.router
            .call(policy, |attempt| {
                attempts.fetch_add(1, Ordering::SeqCst);
                let admitted = standby.admits(attempt.endpoint());
                let id = attempt.endpoint().id().clone();
                async move {
                    match admitted {
                        true => Ok(id),
                        false => Err(AttemptError {
                            error: Error::no_host(TargetRole::Standby, None),
                            classification: DECLINED,
                        }),
                    }
                }
            })
            .target(standby.target())
            .idempotent(true)
            .classify_with(|e: &AttemptError| e.classification)
            .run()
    };
    let started = Instant::now();
    let err = call(&policy).await.unwrap_err();
    // Attempts at 0, 20, 40, 60 and 80 ms; waking at 100 would reach the deadline.
    assert_eq!(attempts.load(Ordering::SeqCst), 5);
    assert_eq!(started.elapsed(), ms(80));
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    assert_eq!(
        err.into_last_error().map(|e| e.error.kind()),
        Some(ErrorKind::NoHost)
    );
    let primary = t.endpoints[0].stats();
    assert_eq!(primary.failures_total, 0, "the primary was never blamed");
    assert_eq!(primary.state, HealthState::Up);
    assert_eq!(primary.throttled_total, 5);

    // The standby is back: the next call takes it at once.
    t.endpoints[1].clear();
    attempts.store(0, Ordering::SeqCst);
    assert_eq!(&*call(&policy).await.unwrap(), "h1:5432");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

/// Runs a scripted transaction through the runner as `FailoverPool::transaction` does: each
/// attempt's outcome from `script`, classified by [`TxFailure::classified`], the call's
/// error made by [`finish`]. Returns the result and how many attempts ran.
async fn scripted(
    t: &Topology,
    policy: &RetryPolicy<ConstantBackoff>,
    idempotent: bool,
    script: Vec<Step>,
) -> (Result<u32, Error>, usize) {
    let calls = AtomicUsize::new(0);
    let watch = CommitWatch::default();
    let script = Mutex::new(std::collections::VecDeque::from(script));
    let result = t
        .router
        .call(policy, |attempt| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u32;
            let host = attempt.endpoint().id().clone();
            let step = crate::sync::lock(&script)
                .pop_front()
                .unwrap_or(Step::Commit);
            let watch = &watch;
            async move {
                watch.set(None);
                let failure = match step {
                    Step::Commit => return Ok(n),
                    Step::Lost => TxFailure::BeforeCommit(Error::connection_lost(host)),
                    Step::Unknown => TxFailure::AtCommit(Error::outcome_unknown(host, None)),
                    Step::Closed => TxFailure::BeforeCommit(Error::closed()),
                    Step::HangInCommit => {
                        watch.set(Some(host));
                        std::future::pending().await
                    }
                    Step::HangBefore => std::future::pending().await,
                };
                let (error, classification) = failure.classified();
                Err(AttemptError {
                    error,
                    classification,
                })
            }
        })
        .idempotent(idempotent)
        .classify_with(|e: &AttemptError| e.classification)
        .run()
        .await;
    (finish(result, &watch), calls.load(Ordering::SeqCst))
}

/// One scripted transaction attempt.
#[derive(Clone, Copy, Debug)]
enum Step {
    Commit,
    /// The connection was lost before `COMMIT` was sent.
    Lost,
    /// The connection was lost after `COMMIT` was sent.
    Unknown,
    /// The pool is closed (permanent).
    Closed,
    /// No reply to `COMMIT`.
    HangInCommit,
    /// No reply before `COMMIT`.
    HangBefore,
}

#[tokio::test(start_paused = true)]
async fn a_transaction_is_retried_only_when_nothing_can_have_committed() {
    let fake = Fake::new(&[(role(Primary), 0)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let policy = exact(10_000);

    // Lost before COMMIT: rolled back, so retried even though not idempotent.
    let (r, calls) = scripted(&t, &policy, false, vec![Step::Lost, Step::Lost]).await;
    assert_eq!((r.unwrap(), calls), (2, 3));

    // Lost after COMMIT was sent: an unknown outcome, never run twice...
    let (r, calls) = scripted(&t, &policy, false, vec![Step::Lost, Step::Unknown]).await;
    let err = r.unwrap_err();
    assert_eq!(calls, 2);
    assert!(err.is_outcome_unknown());
    assert_eq!(err.stop_reason(), Some(StopReason::NotIdempotent));
    assert_eq!(err.attempts(), Some(2));
    assert_eq!(err.classify().execution(), Execution::MayHaveExecuted);
    assert!(err.to_string().contains("after COMMIT was sent"), "{err}");

    // ...unless the work is idempotent.
    let (r, calls) = scripted(&t, &policy, true, vec![Step::Unknown]).await;
    assert_eq!((r.unwrap(), calls), (1, 2));

    // A permanent error is returned at once.
    let started = Instant::now();
    let (r, calls) = scripted(&t, &policy, false, vec![Step::Closed]).await;
    let err = r.unwrap_err();
    assert_eq!((err.kind(), calls), (ErrorKind::Closed, 1));
    assert_eq!(err.stop_reason(), Some(StopReason::Permanent));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_retry_deadline_cutting_commit_is_an_unknown_outcome_and_blames_the_host() {
    let fake = Fake::new(&[(role(Primary), 0)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let policy = exact(1_000);
    let failures = || t.endpoints[0].stats().failures_total;

    let started = Instant::now();
    let (r, calls) = scripted(&t, &policy, false, vec![Step::Lost, Step::HangInCommit]).await;
    let err = r.unwrap_err();
    assert_eq!(started.elapsed(), ms(1_000));
    assert_eq!(calls, 2);
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(err.host(), Some("h0:5432"));
    assert_eq!(failures(), 2, "the lost connection, then the cut attempt");

    // Cut before COMMIT: an attempt timeout, with the earlier failure as its source.
    let (r, _) = scripted(&t, &policy, false, vec![Step::Lost, Step::HangBefore]).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AttemptTimeout);
    assert!(err.is_timeout());
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        source.as_deref(),
        Some("the connection to h0:5432 was lost before COMMIT")
    );
}

//! Two writable primaries under Tokio's paused clock, over a scripted backend that reports
//! each host's role and timeline: which host the pool follows, that it never flips with the
//! order of the answers, how long a run waits for a host that could outrank the first answer,
//! and the warning. No server.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::primaries::Lineage;
use crate::health::HealthTracker;
use crate::observe::EventKind;
use crate::postgres::backend::{Backend, HostReport, ProbeError};
use crate::postgres::role::ServerRole::{self, Primary, Standby};
use crate::postgres::topology::{BACKSTOP, DiscoveryConfig, Topology};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const SYSTEM: u64 = 7_000_000_000_000_000_001;

/// What a scripted host answers, after its delay: a role and, for a primary, a timeline; or
/// nothing at all (a black hole).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Is(ServerRole, u32),
    Hang,
}

use Answer::{Hang, Is};

struct Fake {
    answers: Mutex<Vec<(Answer, Duration)>>,
}

impl Fake {
    fn new(answers: &[(Answer, u64)]) -> Arc<Self> {
        Arc::new(Fake {
            answers: Mutex::new(answers.iter().map(|&(a, d)| (a, ms(d))).collect()),
        })
    }

    fn set(&self, host: usize, answer: Answer, delay: u64) {
        crate::sync::lock(&self.answers)[host] = (answer, ms(delay));
    }

    fn delay(&self, host: usize, delay: u64) {
        crate::sync::lock(&self.answers)[host].1 = ms(delay);
    }
}

impl Backend for Fake {
    fn probe(&self, host: usize) -> impl Future<Output = Result<ServerRole, ProbeError>> + Send {
        let report = self.inspect(host);
        async move { report.await.map(|r| r.role) }
    }

    fn inspect(&self, host: usize) -> impl Future<Output = Result<HostReport, ProbeError>> + Send {
        let (answer, delay) = crate::sync::lock(&self.answers)[host];
        async move {
            sleep(delay).await;
            match answer {
                Is(role, timeline) => Ok(HostReport {
                    role,
                    lineage: (role == Primary).then_some(Lineage {
                        system: SYSTEM,
                        timeline,
                    }),
                }),
                Hang => std::future::pending().await,
            }
        }
    }
}

fn topology(fake: &Arc<Fake>) -> Topology {
    let names = (0..crate::sync::lock(&fake.answers).len())
        .map(|i| Arc::from(format!("h{i}:5432")))
        .collect();
    let health = HealthTracker::builder()
        .failure_threshold(2)
        .ejection_base(ms(500))
        .ejection_cap(Duration::from_secs(10))
        .probe_interval(ms(250))
        .probe_timeout(PROBE_TIMEOUT);
    let config = DiscoveryConfig {
        interval: ms(50),
        probe_timeout: PROBE_TIMEOUT,
        silence: PROBE_TIMEOUT,
    };
    Topology::start(fake.clone(), names, health, config).unwrap()
}

fn active(t: &Topology) -> String {
    t.router.active().id().to_string()
}

/// A `writable_primaries` event: the hosts with their timelines, the one followed, and whether
/// they are of one cluster.
type Split = (Vec<(String, Option<u32>)>, Option<String>, bool);

/// The timeline's `writable_primaries` events.
fn splits(t: &Topology) -> Vec<Split> {
    t.router
        .timeline()
        .events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::WritablePrimaries {
                primaries,
                following,
                same_cluster,
            } => {
                assert_eq!(e.endpoint, following, "the event is about the one followed");
                Some((
                    primaries
                        .into_iter()
                        .map(|(h, tl)| (h.to_string(), tl))
                        .collect(),
                    following.map(|f| f.to_string()),
                    same_cluster,
                ))
            }
            _ => None,
        })
        .collect()
}

/// 20 re-discoveries with the hosts answering first in turn; the generation after each.
async fn twenty_runs(fake: &Fake, t: &Topology) -> Vec<u64> {
    let mut generations = Vec::new();
    for n in 0..20 {
        let (fast, slow) = if n % 2 == 0 { (0, 1) } else { (1, 0) };
        fake.delay(fast, 5);
        fake.delay(slow, 20);
        generations.push(t.rediscovery.rediscover().await.unwrap());
        // Let the slower probe finish (and any run it asks for) before the next.
        sleep(ms(200)).await;
    }
    generations
}

#[tokio::test(start_paused = true)]
async fn the_higher_timeline_wins_and_the_primary_never_flips_with_the_order_of_answers() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Standby, 0), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    assert_eq!((active(&t), t.router.generation()), ("h0:5432".into(), 0));

    // h1 is promoted (timeline 2) while h0 keeps taking writes on timeline 1.
    fake.set(1, Is(Primary, 2), 20);
    let generations = twenty_runs(&fake, &t).await;
    assert_eq!(active(&t), "h1:5432");
    assert_eq!(t.router.generation(), 1, "{generations:?}");
    // Even when h0 answered first, h1 answered within the interval h0's answer waits.
    assert!(generations.iter().all(|&g| g == 1), "{generations:?}");
    assert_eq!(t.roles.writable.detected(), 1, "warned once");
    assert_eq!(
        splits(&t),
        [(
            vec![("h0:5432".into(), Some(1)), ("h1:5432".into(), Some(2))],
            Some("h1:5432".into()),
            true
        )],
        "one event in 20 runs, the higher timeline followed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_later_answer_that_outranks_the_primary_asks_for_the_run_that_switches() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Standby, 0), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    // h1 is promoted but answers after h0's answer and the interval it waits.
    fake.set(1, Is(Primary, 2), 300);
    sleep(ms(100)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 0);
    assert_eq!(started.elapsed(), ms(55));
    let runs = t.rediscovery.runs();
    // h1's answer (at 300 ms) puts the primary in doubt; the next run waits for h1, last seen
    // on timeline 2, and switches.
    sleep(ms(244)).await;
    assert!(!t.rediscovery.in_doubt(), "1 ms before h1's answer");
    sleep(ms(2)).await;
    assert!(t.rediscovery.in_doubt(), "1 ms after it");
    let primary = t.rediscovery.primary().await.unwrap();
    assert_eq!(&**primary.id(), "h1:5432");
    assert_eq!((t.rediscovery.runs(), t.router.generation()), (runs + 1, 1));
    assert_eq!(t.roles.writable.detected(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_run_waits_for_a_slower_host_only_when_it_could_outrank_the_first_answer() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Primary, 2), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    assert_eq!(active(&t), "h1:5432", "the first run sees both: timeline 2");
    assert_eq!(t.router.generation(), 1);

    // h0 (timeline 1) answers first: h1, last seen on timeline 2, is waited for.
    fake.delay(0, 5);
    fake.delay(1, 30);
    sleep(ms(100)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 1);
    assert_eq!(started.elapsed(), ms(30));
    // h1, the current primary, answers first: nothing still probed could beat it, but the
    // other available host gets one interval (50 ms) to show a higher timeline.
    fake.delay(0, 30);
    fake.delay(1, 5);
    sleep(ms(100)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 1);
    assert_eq!(started.elapsed(), ms(30), "h0 answered within the interval");
    fake.delay(0, 500);
    sleep(ms(600)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 1);
    assert_eq!(started.elapsed(), ms(55), "h1's answer and one interval");

    // h1 goes silent: the run waits one probe timeout for it, then follows h0, the only
    // writable host left.
    fake.set(1, Hang, 0);
    sleep(ms(100)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 2);
    assert_eq!(started.elapsed(), PROBE_TIMEOUT);
    assert_eq!(active(&t), "h0:5432");
}

#[tokio::test(start_paused = true)]
async fn a_black_holed_old_primary_does_not_hold_up_the_promoted_one() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Standby, 0), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    fake.set(0, Hang, 0);
    fake.set(1, Is(Primary, 2), 10);
    sleep(ms(100)).await;
    let started = Instant::now();
    assert_eq!(t.rediscovery.rediscover().await.unwrap(), 1);
    assert_eq!(started.elapsed(), ms(10), "decided when h1 answered");
    assert_eq!(active(&t), "h1:5432");
    assert_eq!(
        t.roles.writable.detected(),
        0,
        "one writable host is no conflict"
    );
    assert!(splits(&t).is_empty());
}

#[tokio::test(start_paused = true)]
async fn equal_timelines_keep_the_current_primary() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Standby, 0), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    // Another writable host on the same timeline (e.g. two standbys promoted alike).
    fake.set(1, Is(Primary, 1), 20);
    let generations = twenty_runs(&fake, &t).await;
    assert!(generations.iter().all(|&g| g == 0), "{generations:?}");
    assert_eq!((active(&t), t.router.generation()), ("h0:5432".into(), 0));
    assert_eq!(t.roles.writable.detected(), 1, "warned once");
    assert_eq!(
        splits(&t),
        [(
            vec![("h0:5432".into(), Some(1)), ("h1:5432".into(), Some(1))],
            Some("h0:5432".into()),
            true
        )],
        "equal timelines: the current primary followed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_primary_is_rechecked_at_the_backstop() {
    let fake = Fake::new(&[(Is(Primary, 1), 5), (Is(Standby, 0), 5)]);
    let t = topology(&fake);
    t.rediscovery.primary().await.unwrap();
    let runs = t.rediscovery.runs();
    // h1 is promoted beside the healthy h0; nothing fails, nobody asks.
    fake.set(1, Is(Primary, 2), 20);
    sleep(BACKSTOP - ms(1)).await;
    assert_eq!(t.rediscovery.runs(), runs, "no run before the backstop");
    assert_eq!(active(&t), "h0:5432");
    // The backstop run finds both (h0 first, h1 within the interval h0's answer waits).
    sleep(ms(200)).await;
    assert_eq!(t.rediscovery.runs(), runs + 1);
    assert_eq!((active(&t), t.router.generation()), ("h1:5432".into(), 1));
}

//! Slow is not dead, for heartbeats, under the paused clock: a heartbeat that runs out of time
//! is missed only when the endpoint answered nothing at all meanwhile. A call that succeeded
//! on it, or the late answer to the previous heartbeat, makes it slow (it counts nothing);
//! a probe that fails outright (a cut or refused connection) is missed at once.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::health::{Endpoint, HealthState, HealthTracker, Probe, ProbeResult, Role};
use switchover::route::{Discover, NoPrimary, Rediscovery, Router};
use tokio::time::{Instant, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How the probe of "a" answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Up, after this long.
    After(Duration),
    /// Down at once (a refused or cut connection).
    Refused,
}

/// A probe that answers "a" as told and "b" at once; records when each probe of "a" started
/// and ended.
#[derive(Clone)]
struct Slow {
    a: Answer,
    t0: Instant,
    starts: Arc<Mutex<Vec<Duration>>>,
    ends: Arc<Mutex<Vec<Duration>>>,
}

impl Slow {
    fn new(a: Answer) -> Self {
        Slow {
            a,
            t0: Instant::now(),
            starts: Arc::default(),
            ends: Arc::default(),
        }
    }

    fn starts(&self) -> Vec<Duration> {
        self.starts.lock().unwrap().clone()
    }

    fn ends(&self) -> Vec<Duration> {
        self.ends.lock().unwrap().clone()
    }
}

impl Probe<&'static str> for Slow {
    fn probe(&self, id: &&'static str) -> impl Future<Output = ProbeResult> + Send {
        let this = self.clone();
        let answer = match *id {
            "a" => Some(self.a),
            _ => None,
        };
        async move {
            let Some(answer) = answer else {
                return ProbeResult::up().with_role(Role::Replica);
            };
            this.starts.lock().unwrap().push(this.t0.elapsed());
            let result = match answer {
                Answer::After(d) => {
                    sleep(d).await;
                    ProbeResult::up().with_role(Role::Primary)
                }
                Answer::Refused => ProbeResult::down(),
            };
            this.ends.lock().unwrap().push(this.t0.elapsed());
            result
        }
    }
}

/// Discovery that always names "a", and counts its runs.
struct AlwaysA(Arc<AtomicU32>);

impl Discover<&'static str> for AlwaysA {
    fn discover(&self) -> impl Future<Output = Result<&'static str, NoPrimary>> + Send {
        self.0.fetch_add(1, Ordering::Relaxed);
        async { Ok("a") }
    }
}

struct Setup {
    tracker: HealthTracker<&'static str>,
    rediscovery: Rediscovery<&'static str>,
    runs: Arc<AtomicU32>,
    a: Endpoint<&'static str>,
}

/// Heartbeat 200 ms without jitter, bound 300 ms; "a" is the confirmed primary at 0.
async fn setup(probe: Slow) -> Setup {
    setup_with(probe, false).await
}

/// As [`setup`], with `late_heartbeats_missed(missed)`.
async fn setup_with(probe: Slow, missed: bool) -> Setup {
    let tracker = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(probe)
        .heartbeat(ms(200))
        .heartbeat_jitter(0.0)
        .probe_timeout(ms(300))
        .late_heartbeats_missed(missed)
        .build()
        .unwrap();
    let router = Router::builder(&tracker)
        .endpoints(["a", "b"])
        .failback(switchover::route::Failback::Manual)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicU32::new(0));
    let rediscovery = Rediscovery::builder(&router)
        .start(AlwaysA(runs.clone()))
        .unwrap();
    assert_eq!(rediscovery.primary().await.unwrap().id(), &"a");
    let a = tracker.endpoint(&"a").unwrap();
    Setup {
        tracker,
        rediscovery,
        runs,
        a,
    }
}

/// Records a successful call on `ep` every `every`, for ever.
fn calls_succeed(ep: Endpoint<&'static str>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            sleep(every).await;
            ep.record_success_with_latency(ms(2));
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_late_while_calls_succeed_is_slow_never_missed() {
    // Every ROLE takes 450 ms (a link that delays each reply), calls answer every 100 ms.
    let probe = Slow::new(Answer::After(ms(450)));
    let s = setup(probe.clone()).await;
    let calls = calls_succeed(s.a.clone(), ms(100));
    sleep(ms(3000)).await;
    calls.abort();
    // Each beat is judged at its 300 ms bound and the next starts at once (its 200 ms were
    // due): 200, 500, ..., 2900 ms.
    let expected: Vec<Duration> = (0..10).map(|i| ms(200 + 300 * i)).collect();
    assert_eq!(probe.starts(), expected);
    // Each one still ran to its late answer, 450 ms after it started (by 3 s: those that
    // started by 2 550 ms).
    let late: Vec<Duration> = expected[..8].iter().map(|t| *t + ms(450)).collect();
    assert_eq!(probe.ends(), late);
    let stats = s.a.stats();
    assert_eq!(stats.state, HealthState::Up);
    assert_eq!((stats.consecutive_failures, stats.failures_total), (0, 0));
    assert_eq!(s.a.downs(), 0);
    assert!(!s.rediscovery.in_doubt());
    assert_eq!(
        s.runs.load(Ordering::Relaxed),
        1,
        "only the first run: never in doubt"
    );
    assert_eq!(s.tracker.endpoint(&"b").unwrap().state(), HealthState::Up);
}

#[tokio::test(start_paused = true)]
async fn on_an_idle_endpoint_the_late_answer_to_one_heartbeat_keeps_the_next_from_missing() {
    // No calls: the first late beat heard nothing (missed: one failure, a run); every later
    // one hears the late answer of the one before (at 650, 950, ... ms), so the endpoint is
    // never declared down.
    let probe = Slow::new(Answer::After(ms(450)));
    let s = setup(probe.clone()).await;
    sleep(ms(501)).await;
    assert_eq!(
        s.a.stats().failures_total,
        1,
        "the beat of 200 ms, missed at 500 ms"
    );
    sleep(ms(2500)).await;
    let stats = s.a.stats();
    assert_eq!((stats.failures_total, s.a.downs()), (1, 0));
    assert_eq!(stats.state, HealthState::Up);
    assert_eq!(probe.starts()[..4], [ms(200), ms(500), ms(800), ms(1100)]);
    // The latency average holds the late answers (450 ms each).
    assert_eq!(s.a.latency(), Some(ms(450)));
    // The miss put "a" in doubt: the run at once found it again, and no other run followed.
    assert_eq!(s.runs.load(Ordering::Relaxed), 2);
    assert!(!s.rediscovery.in_doubt());
}

#[tokio::test(start_paused = true)]
async fn a_refused_heartbeat_is_missed_at_once_even_while_calls_succeed() {
    let probe = Slow::new(Answer::Refused);
    let s = setup(probe.clone()).await;
    let calls = calls_succeed(s.a.clone(), ms(50));
    sleep(ms(201)).await;
    // The beat at 200 ms failed at once: one failure, a run (calls answered meanwhile do not
    // excuse a connection that is refused).
    assert_eq!(s.a.stats().failures_total, 1);
    assert_eq!(s.runs.load(Ordering::Relaxed), 2);
    calls.abort();
}

#[tokio::test(start_paused = true)]
async fn with_late_heartbeats_missed_a_late_heartbeat_is_missed_even_while_calls_succeed() {
    // Peers that all take writes (DynamoDB regions) leave a slow endpoint: the old rule.
    let probe = Slow::new(Answer::After(ms(450)));
    let s = setup_with(probe.clone(), true).await;
    let calls = calls_succeed(s.a.clone(), ms(100));
    sleep(ms(501)).await;
    assert_eq!(
        s.a.stats().failures_total,
        1,
        "the beat of 200 ms, missed at 500 ms"
    );
    assert_eq!(s.runs.load(Ordering::Relaxed), 2, "in doubt at the miss");
    // Missed at 500, 800 and 1 100 ms (each next beat starts at once): three failures (calls
    // succeeding meanwhile reset the streak, so count the total).
    sleep(ms(600)).await;
    assert_eq!(s.a.stats().failures_total, 3);
    assert_eq!(probe.starts(), [ms(200), ms(500), ms(800), ms(1100)]);
    // Judged at the bound, not left running: no late answer was recorded.
    assert_eq!(probe.ends(), Vec::<Duration>::new());
    calls.abort();
}

//! The core's single-flight re-discovery, driven by a scripted backend under the paused clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::health::{HealthState, HealthTracker, ProbeResult, Role, TransitionReason};
use switchover::route::{Discover, Failback, NoPrimary, Rediscovery, Router};
use tokio::time::{Instant, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One scripted run: how long it takes and what it finds.
type Step = (Duration, Result<&'static str, NoPrimary>);

/// A backend that answers each run from a script: how long the run takes and what it finds.
/// When the script runs out, the last answer repeats. Counts the runs.
#[derive(Clone, Default)]
struct Scripted {
    script: Arc<Mutex<VecDeque<Step>>>,
    last: Arc<Mutex<Option<Step>>>,
    runs: Arc<AtomicUsize>,
    started: Arc<Mutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = (u64, Result<&'static str, NoPrimary>)>) -> Self {
        let s = Scripted::default();
        s.script
            .lock()
            .unwrap()
            .extend(steps.into_iter().map(|(d, r)| (ms(d), r)));
        s
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Discover<&'static str> for Scripted {
    fn discover(&self) -> impl Future<Output = Result<&'static str, NoPrimary>> + Send {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.started.lock().unwrap().push(Instant::now());
        let step = self.script.lock().unwrap().pop_front();
        let step = match step {
            Some(s) => {
                *self.last.lock().unwrap() = Some(s.clone());
                s
            }
            None => self
                .last
                .lock()
                .unwrap()
                .clone()
                .unwrap_or((Duration::ZERO, Err(NoPrimary::new("empty script")))),
        };
        async move {
            sleep(step.0).await;
            step.1
        }
    }
}

fn setup(ids: &[&'static str]) -> (HealthTracker<&'static str>, Router<&'static str>) {
    let t = HealthTracker::new(ids.iter().copied());
    let r = Router::builder(&t)
        .endpoints(ids.iter().copied())
        .failback(Failback::Manual)
        .build()
        .unwrap();
    (t, r)
}

#[tokio::test(start_paused = true)]
async fn starts_in_doubt_and_the_first_run_confirms_and_switches() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([(30, Ok("b"))]);
    let d = Rediscovery::builder(&r).start(backend.clone()).unwrap();
    assert!(d.in_doubt());
    let start = Instant::now();
    let p = d.primary().await.unwrap();
    assert_eq!(p.id(), &"b");
    assert_eq!(start.elapsed(), ms(30), "waited exactly for the first run");
    assert_eq!(p.role(), Role::Primary);
    assert!(!d.in_doubt());
    assert_eq!(r.generation(), 1);
    assert_eq!(backend.runs(), 1);
    // Confirmed: the next call takes the fast path, no run.
    let before = Instant::now();
    assert_eq!(d.primary().await.unwrap().id(), &"b");
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(backend.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_doubts_costs_one_run() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([(10, Ok("a")), (100, Ok("b"))]);
    let d = Rediscovery::builder(&r)
        .interval(ms(50))
        .start(backend.clone())
        .unwrap();
    d.primary().await.unwrap();
    assert_eq!(backend.runs(), 1);
    // The first run ended at 10 ms; the 50 ms gap after it is over.
    sleep(ms(100)).await;
    let observed = Instant::now();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.rediscover_after(observed).await })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap(), Ok(1), "every caller sees the switch to b");
    }
    assert_eq!(backend.runs(), 2, "twenty doubts, one run");
    assert_eq!(Instant::now() - observed, ms(100));
    assert_eq!(r.active().id(), &"b");
}

#[tokio::test(start_paused = true)]
async fn a_run_that_started_after_the_error_answers_for_it() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([(10, Ok("a"))]);
    let d = Rediscovery::builder(&r).start(backend.clone()).unwrap();
    let observed = Instant::now();
    // The first run starts at once (after `observed`) and answers.
    assert_eq!(d.rediscover_after(observed).await, Ok(0));
    assert_eq!(backend.runs(), 1);
    // An error observed before that run started is answered by it, with no new run.
    assert_eq!(d.rediscover_after(observed).await, Ok(0));
    assert_eq!(backend.runs(), 1);
    // One observed later needs a run of its own.
    sleep(ms(100)).await;
    assert_eq!(d.rediscover_after(Instant::now()).await, Ok(0));
    assert_eq!(backend.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_primary_is_bounded_and_says_why() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([(20, Err(NoPrimary::new("a=replica, b=unreachable")))]);
    let d = Rediscovery::builder(&r)
        .interval(ms(100))
        .wait_limit(ms(1000))
        .start(backend.clone())
        .unwrap();
    let start = Instant::now();
    let err = d.primary().await.unwrap_err();
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(err.waited(), Some(ms(1000)));
    assert_eq!(err.reason(), "a=replica, b=unreachable");
    assert_eq!(
        err.to_string(),
        "no primary confirmed: a=replica, b=unreachable (waited 1s)"
    );
    assert!(d.in_doubt());
    // In doubt, a run every interval: at 0, then 20 + 100, 240, ... (each run takes 20 ms).
    let started = backend.started.lock().unwrap().clone();
    let offsets: Vec<u64> = started
        .iter()
        .map(|t| (*t - start).as_millis() as u64)
        .collect();
    assert_eq!(offsets, [0, 120, 240, 360, 480, 600, 720, 840, 960]);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_ends_the_wait_at_once() {
    let (_t, r) = setup(&["a"]);
    let backend = Scripted::new([(5, Err(NoPrimary::permanent("authentication failed on a")))]);
    let d = Rediscovery::builder(&r).start(backend).unwrap();
    let start = Instant::now();
    let err = d.primary().await.unwrap_err();
    assert!(err.is_permanent());
    assert_eq!(start.elapsed(), ms(5), "no waiting out the limit");
    assert_eq!(err.waited(), Some(ms(5)));
}

#[tokio::test(start_paused = true)]
async fn the_primary_found_is_readmitted_before_the_switch() {
    let (t, r) = setup(&["a", "b"]);
    let mut health = t.subscribe();
    let b = t.endpoint(&"b").unwrap();
    for _ in 0..3 {
        b.record_failure(switchover::Classification::transient().not_executed());
    }
    assert_eq!(
        b.state(),
        HealthState::Down,
        "ejected while it was promoted"
    );
    let backend = Scripted::new([(10, Ok("b"))]);
    let d = Rediscovery::builder(&r).start(backend).unwrap();
    assert_eq!(d.primary().await.unwrap().id(), &"b");
    assert_eq!(b.state(), HealthState::Up);
    let reasons: Vec<_> = std::iter::from_fn(|| health.try_recv().ok())
        .filter(|e| e.endpoint == "b")
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons.last(), Some(&TransitionReason::Readmitted));
    assert_eq!(r.active().id(), &"b");
}

#[tokio::test(start_paused = true)]
async fn backstop_runs_while_confirmed_and_a_failed_run_puts_the_primary_in_doubt() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([
        (0, Ok("a")),
        (0, Ok("a")),
        (0, Err(NoPrimary::new("a says replica"))),
        (0, Ok("b")),
    ]);
    let d = Rediscovery::builder(&r)
        .interval(ms(50))
        .backstop(Some(ms(1000)))
        .start(backend.clone())
        .unwrap();
    let start = Instant::now();
    d.primary().await.unwrap();
    sleep(ms(1060)).await;
    assert_eq!(backend.runs(), 2, "the backstop ran once");
    assert!(!d.in_doubt());
    sleep(ms(1050)).await;
    assert_eq!(backend.runs(), 3);
    assert!(d.in_doubt(), "a run without a primary puts it in doubt");
    // In doubt: the next run comes after the interval, not the backstop.
    sleep(ms(50)).await;
    assert_eq!(backend.runs(), 4);
    assert!(!d.in_doubt());
    assert_eq!(r.active().id(), &"b");
    let offsets: Vec<u64> = backend
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|t| (*t - start).as_millis() as u64)
        .collect();
    // 0; then 50 ms gap + 1000 ms backstop; again; then 50 ms in doubt.
    assert_eq!(offsets, [0, 1050, 2100, 2150]);
}

#[tokio::test(start_paused = true)]
async fn suspect_triggers_a_run_and_the_task_stops_with_the_last_handle() {
    let (_t, r) = setup(&["a"]);
    let backend = Scripted::new([(0, Ok("a"))]);
    let d = Rediscovery::builder(&r).start(backend.clone()).unwrap();
    d.primary().await.unwrap();
    sleep(ms(100)).await;
    d.suspect();
    assert!(d.in_doubt());
    assert_eq!(d.primary().await.unwrap().id(), &"a");
    assert_eq!(backend.runs(), 2);
    drop(d);
    sleep(ms(10_000)).await;
    assert_eq!(backend.runs(), 2, "no run after the last handle is gone");
    assert_eq!(
        Arc::strong_count(&backend.runs),
        1,
        "the task dropped the backend"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_config_is_refused_naming_the_field() {
    let (_t, r) = setup(&["a"]);
    let e = Rediscovery::builder(&r)
        .interval(Duration::ZERO)
        .start(Scripted::default())
        .unwrap_err();
    assert_eq!(e.field(), "interval");
    let e = Rediscovery::builder(&r)
        .backstop(Some(Duration::ZERO))
        .start(Scripted::default())
        .unwrap_err();
    assert_eq!(e.field(), "backstop");
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let t = HealthTracker::new(["a"]);
    let r = Router::builder(&t).endpoints(["a"]).build().unwrap();
    let e = Rediscovery::builder(&r)
        .start(Scripted::default())
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
}

/// Callers that find the primary in doubt while a run is under way wait for that run; they do
/// not queue another one behind it.
#[tokio::test(start_paused = true)]
async fn waiting_callers_do_not_ask_for_another_run() {
    let (_t, r) = setup(&["a", "b"]);
    let backend = Scripted::new([(40, Ok("a"))]);
    let d = Rediscovery::builder(&r)
        .interval(ms(50))
        .start(backend.clone())
        .unwrap();
    let callers: Vec<_> = (0..5)
        .map(|_| {
            let d = d.clone();
            tokio::spawn(async move { d.primary().await.map(|e| *e.id()) })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap(), Ok("a"));
    }
    sleep(ms(1000)).await;
    assert_eq!(backend.runs(), 1, "one run answered every waiting caller");
}

/// A probe whose answer for "a" hangs (a frozen server); every other endpoint answers up.
/// Records when each probe of "a" started.
#[derive(Clone)]
struct FrozenA {
    t0: Instant,
    starts: Arc<Mutex<Vec<Duration>>>,
}

impl FrozenA {
    fn new() -> Self {
        FrozenA {
            t0: Instant::now(),
            starts: Arc::default(),
        }
    }
}

impl switchover::health::Probe<&'static str> for FrozenA {
    fn probe(&self, id: &&'static str) -> impl Future<Output = ProbeResult> + Send {
        let frozen = *id == "a";
        if frozen {
            self.starts.lock().unwrap().push(self.t0.elapsed());
        }
        async move {
            if frozen {
                std::future::pending::<()>().await;
            }
            ProbeResult::up()
        }
    }
}

fn heartbeat_tracker(ids: &[&'static str], probe: FrozenA) -> HealthTracker<&'static str> {
    HealthTracker::builder()
        .endpoints(ids.iter().copied())
        .probe(probe)
        .heartbeat(ms(200))
        .heartbeat_jitter(0.0)
        .probe_timeout(ms(300))
        .build()
        .unwrap()
}

fn starts(backend: &Scripted, t0: Instant) -> Vec<Duration> {
    let s = backend.started.lock().unwrap();
    s.iter().map(|t| *t - t0).collect()
}

#[tokio::test(start_paused = true)]
async fn a_missed_heartbeat_of_the_active_endpoint_puts_the_primary_in_doubt_at_once() {
    let t0 = Instant::now();
    let probe = FrozenA::new();
    let t = heartbeat_tracker(&["a", "b"], probe.clone());
    let r = Router::builder(&t)
        .endpoints(["a", "b"])
        .failback(Failback::Manual)
        .build()
        .unwrap();
    // The first run confirms "a"; the next ones find "b".
    let backend = Scripted::new([(0, Ok("a")), (0, Ok("b"))]);
    let d = Rediscovery::builder(&r).start(backend.clone()).unwrap();
    d.primary().await.unwrap();
    assert_eq!(backend.runs(), 1);
    // The heartbeat of "a" is due at 200 ms and times out at 200 + 300 = 500 ms: the primary
    // is in doubt and a run starts then, not a millisecond later.
    sleep(ms(499)).await;
    assert_eq!((d.runs(), d.in_doubt()), (1, false));
    sleep(ms(1)).await;
    tokio::task::yield_now().await;
    // The next heartbeat (due at 400 ms) starts as the missed one ends.
    assert_eq!(probe.starts.lock().unwrap().clone(), [ms(200), ms(500)]);
    assert_eq!(starts(&backend, t0), [ms(0), ms(500)]);
    assert_eq!(d.runs(), 2);
    assert!(!d.in_doubt());
    assert_eq!(
        r.active().id(),
        &"b",
        "the run switched to the primary it found"
    );
    assert_eq!(r.generation(), 1);
    // "a" counted one failed heartbeat: still up, not ejected for it.
    let a = t.endpoint(&"a").unwrap();
    assert_eq!(
        (a.state(), a.stats().consecutive_failures),
        (HealthState::Up, 1)
    );
    // Its next missed heartbeat (500 → 800 ms) is no longer the active endpoint's: no run.
    sleep(ms(400)).await;
    assert_eq!(
        probe.starts.lock().unwrap().clone(),
        [ms(200), ms(500), ms(800)]
    );
    assert_eq!(d.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_active_endpoint_declared_down_puts_the_primary_in_doubt_others_do_not() {
    let t0 = Instant::now();
    let (t, r) = setup(&["a", "b", "c"]);
    let backend = Scripted::new([(0, Ok("a")), (10, Ok("b"))]);
    let d = Rediscovery::builder(&r).start(backend.clone()).unwrap();
    d.primary().await.unwrap();
    sleep(ms(100)).await;
    // A replica going down is not the primary's business.
    for _ in 0..3 {
        t.endpoint(&"c")
            .unwrap()
            .record_failure(switchover::Classification::transient());
    }
    sleep(ms(100)).await;
    assert_eq!((d.runs(), d.in_doubt()), (1, false));
    // The active one, ejected by failed calls at 200 ms: in doubt at once, one run then.
    let a = t.endpoint(&"a").unwrap();
    for _ in 0..3 {
        a.record_failure(switchover::Classification::transient());
    }
    assert!(d.in_doubt(), "in doubt in the same instant");
    let p = d.primary().await.unwrap();
    assert_eq!(p.id(), &"b");
    assert_eq!(starts(&backend, t0), [ms(0), ms(200)]);
    assert_eq!(t0.elapsed(), ms(210));
    // Forced down (a drill) counts as declared down too.
    sleep(ms(100)).await;
    t.endpoint(&"b").unwrap().force_down();
    assert!(d.in_doubt());
    sleep(ms(1)).await;
    assert_eq!(starts(&backend, t0), [ms(0), ms(200), ms(310)]);
}

//! The core's liveness primitives under the paused clock: an endpoint declared down
//! (`Endpoint::downs`, `Endpoint::down_signal`) and a router's generation moving
//! (`Router::generation_moved`).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use switchover::Classification;
use switchover::health::{
    HealthState, HealthTracker, HealthTrackerBuilder, Probe, ProbeResult, Role,
};
use switchover::retry::{ConstantBackoff, RetryPolicy};
use switchover::route::Router;
use tokio::time::{Instant, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `fut` once: `true` when it is ready.
fn ready_now<F: Future + Unpin>(fut: &mut F) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    matches!(pin!(fut).poll(&mut cx), Poll::Ready(_))
}

fn fail(n: usize, ep: &switchover::health::Endpoint<&'static str>) {
    for _ in 0..n {
        ep.record_failure(Classification::transient());
    }
}

#[tokio::test(start_paused = true)]
async fn downs_counts_each_time_the_state_became_down() {
    let tracker = HealthTracker::builder()
        .endpoints(["a"])
        .ejection_base(ms(100))
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    assert_eq!(a.downs(), 0);
    fail(2, &a);
    assert_eq!(a.downs(), 0, "below the threshold");
    fail(1, &a);
    assert_eq!((a.state(), a.downs()), (HealthState::Down, 1));
    assert_eq!(a.stats().downs, 1);
    // More failures while down change nothing.
    fail(3, &a);
    assert_eq!(a.downs(), 1);
    // Forced down while already down: the state did not become down again.
    a.force_down();
    assert_eq!(a.downs(), 1);
    a.clear();
    fail(3, &a);
    assert_eq!(a.downs(), 2);
    // The ejection ends: probing; a failure while probing ejects again.
    sleep(ms(1000)).await;
    assert_eq!(a.state(), HealthState::Probing);
    fail(1, &a);
    assert_eq!((a.state(), a.downs()), (HealthState::Down, 3));
    a.clear();
    a.force_down();
    assert_eq!(a.downs(), 4);
    a.drain();
    assert_eq!(a.downs(), 4, "draining is not down");
}

#[tokio::test(start_paused = true)]
async fn down_signal_waits_for_the_next_down_and_wakes_its_task() {
    let tracker = HealthTracker::new(["a", "b"]);
    let a = tracker.endpoint(&"a").unwrap();
    let b = tracker.endpoint(&"b").unwrap();
    let t0 = Instant::now();
    let signal = a.down_signal();
    // 'static: moved into a spawned task that records when it woke.
    let waiter = tokio::spawn(async move {
        signal.await;
        t0.elapsed()
    });
    let feeder = {
        let a = a.clone();
        let b = b.clone();
        tokio::spawn(async move {
            sleep(ms(40)).await;
            fail(3, &b); // another endpoint going down wakes nothing
            sleep(ms(30)).await;
            fail(2, &a);
            sleep(ms(30)).await;
            fail(1, &a); // the threshold: down at 100 ms
        })
    };
    feeder.await.unwrap();
    assert_eq!(waiter.await.unwrap(), ms(100));
    assert_eq!((a.downs(), b.downs()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn down_signal_is_ready_at_once_on_a_down_endpoint_and_not_before_a_down() {
    let tracker = HealthTracker::builder()
        .endpoints(["a"])
        .ejection_base(ms(100))
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    let mut before = a.down_signal();
    assert!(!ready_now(&mut before));
    fail(1, &a);
    assert!(!ready_now(&mut before), "one failure is not down");
    fail(2, &a);
    // Down already: a new signal is ready at once, and the earlier one too.
    let mut on_down = a.down_signal();
    assert!(ready_now(&mut on_down));
    assert!(ready_now(&mut before));
    // Probing is not down: a signal made now waits for the next ejection.
    sleep(ms(100)).await;
    assert_eq!(a.state(), HealthState::Probing);
    let mut probing = a.down_signal();
    assert!(!ready_now(&mut probing));
    a.record_success();
    assert!(!ready_now(&mut probing));
    fail(1, &a);
    assert!(ready_now(&mut probing), "probing failed: down again");
}

#[tokio::test(start_paused = true)]
async fn down_signal_fires_on_force_down_and_on_a_failed_probe() {
    // "b" answers its probes down after 30 ms.
    let tracker = HealthTracker::builder()
        .endpoints(["a", "b"])
        .ejection_base(ms(100))
        .probe(|id: &&str| {
            let up = *id == "a";
            async move {
                if up {
                    ProbeResult::up()
                } else {
                    sleep(ms(30)).await;
                    ProbeResult::down()
                }
            }
        })
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    let b = tracker.endpoint(&"b").unwrap();
    let forced = a.down_signal();
    a.force_down();
    forced.await;
    assert_eq!(a.downs(), 1);

    let t0 = Instant::now();
    fail(3, &b); // down at 0, probing at 100, its probe starts at once and fails at 130
    sleep(ms(110)).await;
    assert_eq!(b.state(), HealthState::Probing);
    b.down_signal().await;
    assert_eq!(t0.elapsed(), ms(130));
    assert_eq!((b.state(), b.downs()), (HealthState::Down, 2));
}

#[tokio::test(start_paused = true)]
async fn generation_moved_resolves_with_the_new_generation() {
    let tracker = HealthTracker::new(["a", "b", "c"]);
    let router = Router::builder(&tracker)
        .endpoints(["a", "b", "c"])
        .build()
        .unwrap();
    assert_eq!(router.generation(), 0);
    let mut stale = router.generation_moved(0);
    assert!(!ready_now(&mut stale));
    let t0 = Instant::now();
    let waiter = tokio::spawn(router.generation_moved(0));
    let r = router.clone();
    tokio::spawn(async move {
        sleep(ms(70)).await;
        r.switch_to(&"b").unwrap();
    });
    assert_eq!(waiter.await.unwrap(), 1);
    assert_eq!(t0.elapsed(), ms(70));
    assert!(ready_now(&mut stale));
    // Already moved: at once, with the current generation.
    assert_eq!(router.generation_moved(0).await, 1);
    // A switch to the active endpoint moves nothing.
    let mut same = router.generation_moved(1);
    router.switch_to(&"b").unwrap();
    assert!(!ready_now(&mut same));
    // A failover decided by `active()` wakes it too.
    let b = tracker.endpoint(&"b").unwrap();
    fail(3, &b);
    assert!(
        !ready_now(&mut same),
        "the router switches when it re-evaluates"
    );
    assert_eq!(router.active().id(), &"a");
    assert!(ready_now(&mut same));
    assert_eq!(same.await, 2);
}

/// A probe that records when each probe of each endpoint started, and answers after `delay`
/// (up), or never for the endpoints in `hang`.
#[derive(Clone, Default)]
struct Recorder {
    starts: Arc<Mutex<Vec<(&'static str, Duration)>>>,
    delay: Duration,
    hang: &'static [&'static str],
    t0: Option<Instant>,
}

impl Recorder {
    fn new(delay: Duration, hang: &'static [&'static str]) -> Self {
        Recorder {
            delay,
            hang,
            t0: Some(Instant::now()),
            ..Recorder::default()
        }
    }

    fn starts(&self, id: &str) -> Vec<Duration> {
        let s = self.starts.lock().unwrap();
        s.iter()
            .filter(|(k, _)| *k == id)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Probe<&'static str> for Recorder {
    fn probe(&self, id: &&'static str) -> impl Future<Output = ProbeResult> + Send {
        let t0 = self.t0.unwrap_or_else(Instant::now);
        self.starts.lock().unwrap().push((*id, t0.elapsed()));
        let hang = self.hang.contains(id);
        let delay = self.delay;
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            sleep(delay).await;
            ProbeResult::up().with_role(Role::Primary)
        }
    }
}

/// Three attempts of one call, each cut by its 50 ms attempt timeout, no backoff.
fn cut_three_times() -> RetryPolicy<ConstantBackoff> {
    RetryPolicy::builder()
        .max_attempts(3)
        .attempt_timeout(ms(50))
        .backoff(ConstantBackoff::new(Duration::ZERO))
        .build()
        .unwrap()
}

#[derive(Debug)]
struct Never;
impl switchover::Classify for Never {
    fn classify(&self) -> Classification {
        Classification::transient()
    }
}

async fn hang_call(
    router: &Router<&'static str>,
) -> switchover::route::RouteError<&'static str, Never> {
    router
        .run_idempotent(&cut_three_times(), |_| async {
            std::future::pending::<Result<(), Never>>().await
        })
        .await
        .unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn with_a_heartbeat_cut_attempts_ask_for_one_heartbeat_and_count_nothing() {
    // The heartbeat answers up after 250 ms (within its 300 ms timeout); the regular one is
    // due only at 1 s.
    let probe = Recorder::new(ms(250), &[]);
    let tracker = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(probe.clone())
        .heartbeat(ms(1000))
        .heartbeat_jitter(0.0)
        .probe_timeout(ms(300))
        .build()
        .unwrap();
    let router = Router::builder(&tracker)
        .endpoints(["a", "b"])
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = hang_call(&router).await;
    assert_eq!(t0.elapsed(), ms(150));
    assert!(err.timed_out());
    assert_eq!(err.attempts(), 3);
    let a = tracker.endpoint(&"a").unwrap();
    // Cut at 50, 100 and 150 ms: one heartbeat, at once after the first cut; the other two
    // came while it ran.
    assert_eq!(probe.starts("a"), [ms(50)]);
    assert!(probe.starts("b").is_empty());
    let stats = a.stats();
    assert_eq!(stats.state, HealthState::Up);
    assert_eq!((stats.consecutive_failures, stats.failures_total), (0, 0));
    assert_eq!(router.generation(), 0, "no failover");
    // Its verdict (up, at 300 ms) counts; the next heartbeat is due 1 s after it started.
    sleep(ms(1000)).await;
    assert_eq!(probe.starts("a"), [ms(50), ms(1050)]);
    assert_eq!(
        (a.state(), a.stats().failures_total, a.downs()),
        (HealthState::Up, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_that_hangs_after_a_cut_is_the_failure_that_counts() {
    let probe = Recorder::new(Duration::ZERO, &["a"]);
    let tracker = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(probe.clone())
        .heartbeat(ms(1000))
        .heartbeat_jitter(0.0)
        .probe_timeout(ms(300))
        .build()
        .unwrap();
    let router = Router::builder(&tracker)
        .endpoints(["a", "b"])
        .build()
        .unwrap();
    hang_call(&router).await;
    let a = tracker.endpoint(&"a").unwrap();
    assert_eq!(a.stats().failures_total, 0);
    // The heartbeat started at 50 ms times out at 350 ms: one transient failure.
    sleep(ms(199)).await;
    assert_eq!(a.stats().failures_total, 0);
    sleep(ms(2)).await;
    assert_eq!(a.stats().consecutive_failures, 1);
    assert_eq!(probe.starts("a"), [ms(50)]);
}

#[tokio::test(start_paused = true)]
async fn without_a_heartbeat_a_cut_attempt_is_a_transient_failure() {
    // A probe but no heartbeat, and no probe at all: the cut counts as before.
    let probed = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(Recorder::new(Duration::ZERO, &[]))
        .build()
        .unwrap();
    for tracker in [probed, HealthTracker::new(["a", "b"])] {
        let router = Router::builder(&tracker)
            .endpoints(["a", "b"])
            .build()
            .unwrap();
        hang_call(&router).await;
        let a = tracker.endpoint(&"a").unwrap();
        assert_eq!((a.state(), a.downs()), (HealthState::Down, 1));
        assert_eq!(a.stats().failures_total, 3);
    }
    // And by hand.
    let tracker = HealthTracker::new(["a"]);
    let a = tracker.endpoint(&"a").unwrap();
    a.record_timeout();
    assert_eq!(a.stats().consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn record_timeout_by_hand_asks_for_a_heartbeat_unless_one_runs() {
    let probe = Recorder::new(ms(100), &[]);
    let tracker = HealthTracker::builder()
        .endpoints(["a"])
        .probe(probe.clone())
        .heartbeat(ms(1000))
        .heartbeat_jitter(0.0)
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    sleep(ms(10)).await;
    a.record_timeout();
    sleep(ms(20)).await;
    a.record_timeout(); // one runs (10..110): none more
    sleep(ms(100)).await;
    a.record_timeout(); // at 130: the last one is over, a new one
    sleep(ms(1)).await;
    assert_eq!(probe.starts("a"), [ms(10), ms(130)]);
    assert_eq!(a.stats().failures_total, 0);
    // Held by hand: nothing asked for, nothing owed after.
    a.drain();
    a.record_timeout();
    sleep(ms(200)).await;
    a.clear();
    sleep(ms(1)).await;
    assert_eq!(probe.starts("a"), [ms(10), ms(130)]);
}

#[tokio::test(start_paused = true)]
async fn an_error_classified_timed_out_is_judged_like_a_cut() {
    // A client's own response timeout (inside the operation) is an error, not a cut: marked
    // `timed_out`, it counts nothing with a heartbeat and asks for one heartbeat now.
    let probe = Recorder::new(ms(100), &[]);
    let tracker = HealthTracker::builder()
        .endpoints(["a"])
        .probe(probe.clone())
        .heartbeat(ms(1000))
        .heartbeat_jitter(0.0)
        .build()
        .unwrap();
    let a = tracker.endpoint(&"a").unwrap();
    sleep(ms(10)).await;
    let slow = Classification::transient().timed_out();
    assert!(slow.is_timed_out() && !Classification::transient().is_timed_out());
    for _ in 0..3 {
        a.record_failure(slow);
    }
    sleep(ms(1)).await;
    assert_eq!(probe.starts("a"), [ms(10)]);
    assert_eq!((a.state(), a.stats().failures_total), (HealthState::Up, 0));

    // Without a heartbeat it is the transient failure it always was: three in a row eject.
    let bare = HealthTracker::new(["a"]);
    let a = bare.endpoint(&"a").unwrap();
    for _ in 0..3 {
        a.record_failure(slow);
    }
    assert_eq!(
        (a.state(), a.stats().failures_total),
        (HealthState::Down, 3)
    );
    // A permanent error marked timed out is still the caller's fault: nothing counted.
    let b = HealthTracker::new(["b"]);
    let b = b.endpoint(&"b").unwrap();
    b.record_failure(Classification::permanent().timed_out());
    assert_eq!(b.stats().failures_total, 0);
}

/// The heartbeat starts of "a" over `span`, from a tracker built now with `tune` over a 200 ms
/// heartbeat whose probe answers at once.
async fn beats(
    span: Duration,
    tune: impl FnOnce(HealthTrackerBuilder<&'static str>) -> HealthTrackerBuilder<&'static str>,
) -> (Vec<Duration>, Vec<Duration>) {
    let probe = Recorder::new(Duration::ZERO, &[]);
    let builder = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(probe.clone())
        .heartbeat(ms(200));
    let tracker = tune(builder).build().unwrap();
    sleep(span).await;
    drop(tracker);
    (probe.starts("a"), probe.starts("b"))
}

fn gaps(starts: &[Duration]) -> Vec<Duration> {
    let mut prev = Duration::ZERO;
    starts
        .iter()
        .map(|t| {
            let g = *t - prev;
            prev = *t;
            g
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn every_beat_lies_within_the_jitter_and_never_after_the_interval() {
    // The default jitter (0.2) and an explicit one (0.5).
    for (tune, lowest) in [(None, ms(160)), (Some(0.5), ms(100))] {
        let (a, b) = beats(ms(20_000), |h| {
            let h = h.heartbeat_seed(11);
            match tune {
                Some(f) => h.heartbeat_jitter(f),
                None => h,
            }
        })
        .await;
        for starts in [&a, &b] {
            let g = gaps(starts);
            assert!(g.len() >= 100, "{} beats in 20 s", g.len());
            assert!(
                g.iter().all(|d| (lowest..=ms(200)).contains(d)),
                "every gap in [{lowest:?}, 200ms]: {g:?}"
            );
            // Spread out, not one value: the lowest and highest fifth of the range are both hit.
            let fifth = (ms(200) - lowest) / 5;
            assert!(g.iter().any(|d| *d < lowest + fifth));
            assert!(g.iter().any(|d| *d > ms(200) - fifth));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_jitter_beats_are_exactly_the_interval_apart() {
    let (a, b) = beats(ms(2001), |h| h.heartbeat_jitter(0.0)).await;
    let exact: Vec<_> = (1..=10).map(|n| ms(200 * n)).collect();
    assert_eq!(a, exact);
    assert_eq!(b, exact);
}

#[tokio::test(start_paused = true)]
async fn trackers_and_endpoints_do_not_beat_in_step_and_a_seed_repeats_its_schedule() {
    let span = ms(5000);
    let (a1, b1) = beats(span, |h| h.heartbeat_seed(1)).await;
    let (a2, _) = beats(span, |h| h.heartbeat_seed(2)).await;
    let (a1_again, b1_again) = beats(span, |h| h.heartbeat_seed(1)).await;
    assert_eq!(
        (&a1_again, &b1_again),
        (&a1, &b1),
        "same seed, same schedule"
    );
    // Tokio's timers fire on whole milliseconds, so two schedules may meet now and then; in
    // step they would meet on every beat.
    let together = |x: &[Duration], y: &[Duration]| x.iter().filter(|t| y.contains(t)).count();
    assert!(a1.len() >= 25);
    assert!(
        together(&a1, &a2) <= a1.len() / 5,
        "two trackers: {a1:?} / {a2:?}"
    );
    assert!(
        together(&a1, &b1) <= a1.len() / 5,
        "two endpoints: {a1:?} / {b1:?}"
    );
    // Unseeded trackers draw from entropy.
    let (e1, _) = beats(span, |h| h).await;
    let (e2, _) = beats(span, |h| h).await;
    assert_ne!(e1, e2);
}

#[tokio::test]
async fn a_jitter_outside_zero_to_one_is_refused_naming_the_field() {
    for bad in [f64::NAN, -0.1, 1.0, 1.5, f64::INFINITY] {
        let err = HealthTracker::<&str>::builder()
            .heartbeat(ms(200))
            .heartbeat_jitter(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "heartbeat_jitter", "{bad}");
    }
    for good in [0.0, 0.2, 0.999] {
        assert!(
            HealthTracker::<&str>::builder()
                .heartbeat_jitter(good)
                .build()
                .is_ok()
        );
    }
}

/// Discovery that finds "a" on its first run and "b" on every later one.
struct AThenB(Arc<Mutex<u32>>);

impl switchover::route::Discover<&'static str> for AThenB {
    fn discover(
        &self,
    ) -> impl Future<Output = Result<&'static str, switchover::route::NoPrimary>> + Send {
        let mut n = self.0.lock().unwrap();
        *n += 1;
        let found = if *n == 1 { "a" } else { "b" };
        async move { Ok(found) }
    }
}

#[tokio::test(start_paused = true)]
async fn a_frozen_primary_moves_the_generation_at_the_missed_heartbeat_and_is_down_after_three() {
    // "a" freezes at once: its probes never answer. Heartbeat 200 ms, bound 300 ms.
    let probe = Recorder::new(Duration::ZERO, &["a"]);
    let tracker = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(probe.clone())
        .heartbeat(ms(200))
        .heartbeat_jitter(0.0)
        .probe_timeout(ms(300))
        .build()
        .unwrap();
    let router = Router::builder(&tracker)
        .endpoints(["a", "b"])
        .failback(switchover::route::Failback::Manual)
        .build()
        .unwrap();
    let rediscovery = switchover::route::Rediscovery::builder(&router)
        .start(AThenB(Arc::default()))
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(rediscovery.primary().await.unwrap().id(), &"a");
    // A call in flight on "a" since 10 ms, under generation 0, that never gets an answer: it
    // waits on the generation and on "a" being declared down, whichever comes first.
    sleep(ms(10)).await;
    let seen = router.generation();
    let a = tracker.endpoint(&"a").unwrap();
    let (moved, down) = (router.generation_moved(seen), a.down_signal());
    let in_flight = tokio::spawn(async move {
        tokio::select! {
            g = moved => ("generation moved", g, t0.elapsed()),
            () = down => ("declared down", 0, t0.elapsed()),
        }
    });
    let down_at = tokio::spawn({
        let signal = a.down_signal();
        async move {
            signal.await;
            t0.elapsed()
        }
    });
    // The heartbeat at 200 ms times out at 500 ms: a run at once switches to "b".
    assert_eq!(in_flight.await.unwrap(), ("generation moved", 1, ms(500)));
    assert_eq!(router.active().id(), &"b");
    // "a" itself is down after its third missed heartbeat: 500, 800, 1100 ms.
    assert_eq!(down_at.await.unwrap(), ms(1100));
    assert_eq!(probe.starts("a"), [ms(200), ms(500), ms(800)]);
    assert_eq!((a.downs(), rediscovery.runs()), (1, 2));
}

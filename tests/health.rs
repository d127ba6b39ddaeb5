//! Health tracker: thresholds, ejection growth, probing, recovery, overrides, probes, events.
//! Paused clock: every time below is exact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::Classification;
use switchover::health::{
    FailureRate, HealthEvent, HealthState, HealthTracker, Override, ProbeResult, Role,
    TransitionReason,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, advance, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn transient() -> Classification {
    Classification::transient().not_executed()
}

fn drain<K>(rx: &mut UnboundedReceiver<HealthEvent<K>>) -> Vec<HealthEvent<K>> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn moves<K>(events: &[HealthEvent<K>]) -> Vec<(HealthState, HealthState)> {
    events.iter().map(|e| (e.from, e.to)).collect()
}

/// A scripted world for probes: which endpoints answer, with which role, and how many probes ran.
#[derive(Clone, Default)]
struct World {
    up: Arc<Mutex<HashMap<&'static str, (bool, Role)>>>,
    probes: Arc<AtomicUsize>,
}

impl World {
    fn set(&self, id: &'static str, up: bool, role: Role) {
        self.up.lock().unwrap().insert(id, (up, role));
    }

    fn probe(
        &self,
    ) -> impl Fn(&&'static str) -> std::future::Ready<ProbeResult> + Send + Sync + 'static {
        let world = self.clone();
        move |id: &&'static str| {
            world.probes.fetch_add(1, Ordering::SeqCst);
            let (up, role) = world
                .up
                .lock()
                .unwrap()
                .get(id)
                .copied()
                .unwrap_or((true, Role::Unknown));
            let r = if up {
                ProbeResult::up()
            } else {
                ProbeResult::down()
            };
            std::future::ready(r.with_role(role))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_reach_the_threshold() {
    let t = HealthTracker::builder()
        .endpoint("a")
        .failure_threshold(3)
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    let start = Instant::now();

    a.record_failure(transient());
    a.record_failure(transient());
    a.record_success(); // resets the streak
    a.record_failure(transient());
    a.record_failure(transient());
    assert_eq!(a.state(), HealthState::Up);
    assert_eq!(a.stats().consecutive_failures, 2);
    a.record_failure(transient());
    assert_eq!(a.state(), HealthState::Down);
    assert!(!a.is_available());

    let ev = drain(&mut rx);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].endpoint, "a");
    assert_eq!((ev[0].from, ev[0].to), (HealthState::Up, HealthState::Down));
    assert_eq!(
        ev[0].reason,
        TransitionReason::ConsecutiveFailures { failures: 3 }
    );
    assert_eq!(ev[0].ejection, Some(ms(1000)));
    assert_eq!(ev[0].at, start);
    assert_eq!(a.stats().down_until, Some(start + ms(1000)));
    assert_eq!(a.stats().failures_total, 5);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_never_count_and_throttling_is_counted_apart() {
    let t = HealthTracker::new(["a"]);
    let a = t.endpoint(&"a").unwrap();
    for _ in 0..10 {
        a.record_failure(Classification::permanent());
        a.record_failure(Classification::throttled());
    }
    assert_eq!(a.state(), HealthState::Up);
    assert_eq!(a.throttled_total(), 10);
    assert_eq!(a.stats().failures_total, 0);
    assert_eq!(a.stats().consecutive_failures, 0);

    // `record` classifies through `Classify`.
    a.record::<(), _>(&Err(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    assert_eq!(a.stats().failures_total, 0);
    a.record::<(), _>(&Err(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    )));
    assert_eq!(a.stats().failures_total, 1);

    // Configurable: throttling as failure.
    let t = HealthTracker::builder()
        .endpoint("b")
        .throttling_marks_down(true)
        .build()
        .unwrap();
    let b = t.endpoint(&"b").unwrap();
    for _ in 0..3 {
        b.record_failure(Classification::throttled());
    }
    assert_eq!(b.state(), HealthState::Down);
    assert_eq!(b.throttled_total(), 3);
}

#[tokio::test(start_paused = true)]
async fn ejection_grows_per_consecutive_ejection_up_to_the_cap() {
    let t = HealthTracker::builder()
        .endpoint("a")
        .ejection_base(ms(1000))
        .ejection_growth(2.0)
        .ejection_cap(ms(5000))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    let mut expected = vec![];
    for want in [1000, 2000, 4000, 5000, 5000] {
        let down_at = Instant::now();
        // One millisecond before the end it is still down; successes do not cut it short.
        advance(ms(want - 1)).await;
        a.record_success();
        assert_eq!(a.state(), HealthState::Down, "ejection {want} ms");
        advance(ms(1)).await;
        assert_eq!(a.state(), HealthState::Probing);
        assert_eq!(a.since(), down_at + ms(want));
        // A failure while probing ejects again, for longer.
        a.record_failure(transient());
        expected.push(want);
    }
    let ev = drain(&mut rx);
    let ejections: Vec<u64> = ev
        .iter()
        .filter_map(|e| e.ejection.map(|d| d.as_millis() as u64))
        .collect();
    // The first ejection (failures while up) then one per failed probing period.
    assert_eq!(ejections, [1000, 2000, 4000, 5000, 5000, 5000]);
    assert_eq!(ev[2].reason, TransitionReason::ProbingFailed);
    assert_eq!(a.stats().ejections, 6);
    let _ = expected;
}

#[tokio::test(start_paused = true)]
async fn probing_recovers_after_consecutive_successes_and_streak_resets_when_stable() {
    let t = HealthTracker::builder()
        .endpoint("a")
        .recovery_successes(2)
        .stable_after(ms(10_000))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    advance(ms(1000)).await;
    assert_eq!(a.state(), HealthState::Probing);
    a.record_success();
    assert_eq!(a.state(), HealthState::Probing);
    a.record_success();
    assert_eq!(a.state(), HealthState::Up);
    assert_eq!(
        moves(&drain(&mut rx)),
        [
            (HealthState::Up, HealthState::Down),
            (HealthState::Down, HealthState::Probing),
            (HealthState::Probing, HealthState::Up),
        ]
    );

    // Up for less than `stable_after`: the next ejection continues the streak (2 s).
    advance(ms(9_999)).await;
    for _ in 0..3 {
        a.record_failure(transient());
    }
    assert_eq!(drain(&mut rx)[0].ejection, Some(ms(2000)));
    advance(ms(2000)).await;
    a.record_success();
    a.record_success();
    assert_eq!(a.state(), HealthState::Up);
    // Up for `stable_after`: the streak starts over at the base.
    advance(ms(10_000)).await;
    for _ in 0..3 {
        a.record_failure(transient());
    }
    let ev = drain(&mut rx);
    assert_eq!(ev.last().unwrap().ejection, Some(ms(1000)));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_over_a_window_ejects() {
    let t = HealthTracker::builder()
        .endpoint("a")
        .failure_threshold(100)
        .failure_rate(FailureRate::new(0.5, 10))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    // Alternating outcomes never make 3 in a row, but half of them fail.
    for i in 0..9 {
        if i % 2 == 0 {
            a.record_success();
        } else {
            a.record_failure(transient());
        }
    }
    assert_eq!(a.state(), HealthState::Up, "4 failures in 9 outcomes");
    a.record_failure(transient());
    assert_eq!(a.state(), HealthState::Down);
    assert_eq!(
        drain(&mut rx)[0].reason,
        TransitionReason::FailureRate {
            failures: 5,
            outcomes: 10
        }
    );

    // A window that ends below the ratio starts a fresh one.
    let t = HealthTracker::builder()
        .endpoint("b")
        .failure_threshold(100)
        .failure_rate(FailureRate::new(0.5, 10))
        .build()
        .unwrap();
    let b = t.endpoint(&"b").unwrap();
    for _ in 0..3 {
        for i in 0..10 {
            if i < 4 {
                b.record_failure(transient());
            } else {
                b.record_success();
            }
        }
    }
    assert_eq!(
        b.state(),
        HealthState::Up,
        "4 in 10, three windows in a row"
    );
}

#[tokio::test(start_paused = true)]
async fn manual_overrides_freeze_the_state_machine() {
    let t = HealthTracker::new(["a", "b", "c"]);
    let mut rx = t.subscribe();
    let (a, b, c) = (
        t.endpoint(&"a").unwrap(),
        t.endpoint(&"b").unwrap(),
        t.endpoint(&"c").unwrap(),
    );

    assert!(t.force_down(&"a"));
    assert!(!t.force_down(&"nope"));
    for _ in 0..5 {
        a.record_success();
    }
    advance(Duration::from_secs(3600)).await;
    assert_eq!(a.state(), HealthState::Down, "forced down stays down");
    assert_eq!(a.manual_override(), Some(Override::ForcedDown));
    assert_eq!(a.stats().down_until, None);

    b.force_up();
    for _ in 0..50 {
        b.record_failure(transient());
    }
    assert!(b.is_available(), "forced up stays up");
    assert_eq!(b.stats().failures_total, 50, "outcomes are still counted");

    c.drain();
    assert_eq!(c.state(), HealthState::Draining);
    assert!(!c.is_available());
    c.record_success();
    c.record_success();
    assert_eq!(c.state(), HealthState::Draining);

    for ep in [&a, &b, &c] {
        ep.clear();
        assert_eq!(ep.state(), HealthState::Up);
        assert_eq!(ep.manual_override(), None);
        assert_eq!(ep.stats().consecutive_failures, 0);
    }
    let ev = drain(&mut rx);
    let reasons: Vec<_> = ev.iter().map(|e| (e.endpoint, e.reason)).collect();
    assert_eq!(
        reasons,
        [
            ("a", TransitionReason::ForcedDown),
            ("c", TransitionReason::Drained),
            ("a", TransitionReason::Cleared),
            ("c", TransitionReason::Cleared),
        ],
        "force_up on an up endpoint and clear on an up endpoint change no state"
    );
    // Automatic tracking is back.
    for _ in 0..3 {
        b.record_failure(transient());
    }
    assert_eq!(b.state(), HealthState::Down);
}

#[tokio::test(start_paused = true)]
async fn probe_task_recovers_ejected_endpoints_at_exact_times() {
    let world = World::default();
    world.set("a", false, Role::Primary);
    let t = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(world.probe())
        .probe_interval(ms(200))
        .build()
        .unwrap();
    assert!(t.is_probing());
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    // Probes while the ejection runs only refresh the role.
    sleep(ms(999)).await;
    assert_eq!(a.role(), Role::Primary);
    assert_eq!(a.state(), HealthState::Down);
    // At 1 s the ejection ends; the probe fails: back down for 2 s.
    sleep(ms(2)).await;
    let ev = drain(&mut rx);
    assert_eq!(
        moves(&ev),
        [
            (HealthState::Up, HealthState::Down),
            (HealthState::Down, HealthState::Probing),
            (HealthState::Probing, HealthState::Down),
        ]
    );
    assert_eq!(ev[1].at, start + ms(1000));
    assert_eq!(ev[2].at, start + ms(1000));
    assert_eq!(ev[2].ejection, Some(ms(2000)));

    // It comes back; the next ejection ends at 3 s, and two probes 200 ms apart bring it up.
    world.set("a", true, Role::Primary);
    sleep(ms(2500)).await;
    let ev = drain(&mut rx);
    assert_eq!(
        moves(&ev),
        [
            (HealthState::Down, HealthState::Probing),
            (HealthState::Probing, HealthState::Up),
        ]
    );
    assert_eq!(ev[0].at, start + ms(3000));
    assert_eq!(ev[1].at, start + ms(3200));
    assert_eq!(ev[1].reason, TransitionReason::Recovered { successes: 2 });
    // `b` was never probed: it was up and there is no heartbeat.
    assert_eq!(t.endpoint(&"b").unwrap().role(), Role::Unknown);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_probes_up_endpoints_and_reports_roles() {
    let world = World::default();
    world.set("a", true, Role::Primary);
    world.set("b", true, Role::Replica);
    let t = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(world.probe())
        .heartbeat(ms(100))
        .heartbeat_jitter(0.0)
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let start = Instant::now();
    sleep(ms(150)).await;
    assert_eq!(t.endpoint(&"a").unwrap().role(), Role::Primary);
    assert_eq!(t.endpoint(&"b").unwrap().role(), Role::Replica);
    // Three failed heartbeats in a row eject.
    world.set("a", false, Role::Primary);
    sleep(ms(300)).await;
    let ev = drain(&mut rx);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].endpoint, "a");
    assert_eq!(
        ev[0].at,
        start + ms(400),
        "heartbeats at 200, 300, 400 ms failed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_answers_times_out_as_down() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let t = HealthTracker::builder()
        .endpoint("a")
        .probe(move |_: &&str| {
            c.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<ProbeResult>()
        })
        .probe_interval(ms(1000))
        .probe_timeout(ms(300))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    sleep(ms(1500)).await;
    let ev = drain(&mut rx);
    assert_eq!(
        moves(&ev)[1..],
        [
            (HealthState::Down, HealthState::Probing),
            (HealthState::Probing, HealthState::Down),
        ]
    );
    assert_eq!(
        ev[2].at,
        start + ms(1300),
        "probe at 1000 ms timed out 300 ms later"
    );
    assert!(calls.load(Ordering::SeqCst) >= 2);
}

#[tokio::test(start_paused = true)]
async fn probe_task_stops_when_the_tracker_is_dropped() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let flag = Flag(Arc::clone(&dropped));
    let c = Arc::clone(&calls);
    let t = HealthTracker::builder()
        .endpoint("a")
        .probe(move |_: &&str| {
            let _keep = &flag;
            c.fetch_add(1, Ordering::SeqCst);
            std::future::ready(ProbeResult::up())
        })
        .heartbeat(ms(100))
        .heartbeat_jitter(0.0)
        .build()
        .unwrap();
    let handle = t.endpoint(&"a").unwrap(); // endpoint handles do not keep the task alive
    let clone = t.clone();
    sleep(ms(350)).await;
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(before, 3);
    drop(t);
    sleep(ms(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 5, "a clone keeps it running");
    drop(clone);
    tokio::task::yield_now().await;
    sleep(ms(1000)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the probe itself was dropped"
    );
    assert!(handle.is_available());
}

#[test]
fn a_probe_needs_a_runtime_and_bad_values_are_refused() {
    let err = HealthTracker::builder()
        .endpoint("a")
        .probe(|_: &&str| std::future::ready(ProbeResult::up()))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "probe");
    let err = HealthTracker::<&str>::builder()
        .ejection_cap(ms(10))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "ejection_cap");
    // No probe: no runtime needed.
    assert!(HealthTracker::<&str>::builder().build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn endpoints_added_at_run_time_are_tracked_and_probed() {
    let world = World::default();
    let t = HealthTracker::builder()
        .endpoint("primary")
        .probe(world.probe())
        .probe_interval(ms(100))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    world.set("replica-2", true, Role::Replica);
    let r = t.add_endpoint("replica-2");
    assert!(
        r.ptr_eq(&t.add_endpoint("replica-2")),
        "adding twice returns the same handle"
    );
    assert_eq!(t.len(), 2);
    for _ in 0..3 {
        r.record_failure(transient());
    }
    sleep(ms(1150)).await;
    assert_eq!(r.state(), HealthState::Up);
    assert_eq!(r.role(), Role::Replica);
    assert_eq!(drain(&mut rx).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn every_subscriber_gets_every_event_and_closed_ones_are_forgotten() {
    let t = HealthTracker::new(["a"]);
    let a = t.endpoint(&"a").unwrap();
    let mut one = t.subscribe();
    let two = t.subscribe();
    drop(two);
    let mut three = t.subscribe();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    a.clear();
    assert_eq!(drain(&mut one), drain(&mut three));
    assert_eq!(drain(&mut one).len(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_is_a_moving_average() {
    let t = HealthTracker::new(["a"]);
    let a = t.endpoint(&"a").unwrap();
    assert_eq!(a.latency(), None);
    a.record_success_with_latency(ms(100));
    assert_eq!(a.latency(), Some(ms(100)));
    a.record_success_with_latency(ms(200));
    assert_eq!(a.latency(), Some(ms(120)));
    a.record_probe(ProbeResult::up().with_latency(ms(20)));
    assert_eq!(a.latency(), Some(ms(100)));
}

/// Many threads record outcomes on the same endpoints while another flips overrides: every
/// transition reaches the subscriber, in a consistent chain per endpoint, without deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recording_loses_no_transition() {
    let t = HealthTracker::builder()
        .endpoints(0..4u32)
        .ejection_base(Duration::from_micros(50))
        .ejection_cap(Duration::from_micros(400))
        .recovery_successes(2)
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let work = async {
        let mut tasks = Vec::new();
        for w in 0..8u32 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let eps = t.endpoints();
                for i in 0..20_000u32 {
                    let ep = &eps[((i + w) % 4) as usize];
                    if (i.wrapping_mul(2_654_435_761) >> 7) % 3 == 0 {
                        ep.record_failure(Classification::transient());
                    } else {
                        ep.record_success();
                    }
                    let _ = ep.state();
                    if i % 512 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let flipper = {
            let t = t.clone();
            tokio::spawn(async move {
                for i in 0..500u32 {
                    let id = i % 4;
                    match i % 3 {
                        0 => t.drain(&id),
                        1 => t.force_down(&id),
                        _ => t.clear(&id),
                    };
                    tokio::task::yield_now().await;
                }
                for id in 0..4 {
                    t.clear(&id);
                }
            })
        };
        for task in tasks {
            task.await.unwrap();
        }
        flipper.await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("no deadlock");

    // End every ejection that ran out, so that no state changes while we compare.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for ep in t.endpoints() {
        let _ = ep.state();
    }
    let mut last: HashMap<u32, HealthState> = (0..4).map(|i| (i, HealthState::Up)).collect();
    let mut count = 0;
    while let Ok(ev) = rx.try_recv() {
        let prev = last.insert(ev.endpoint, ev.to).unwrap();
        assert_eq!(
            prev, ev.from,
            "event chain broken for {}: {ev:?}",
            ev.endpoint
        );
        assert_ne!(ev.from, ev.to);
        count += 1;
    }
    assert!(count > 100, "only {count} transitions");
    for ep in t.endpoints() {
        assert_eq!(ep.state(), last[ep.id()], "final state of {}", ep.id());
    }
}

/// Runs two ejected endpoints, "a" and "b", with probes every 200 ms timing out after 500 ms:
/// "b" answers up at once, "a" (only `with_a`) never answers. Returns the events of "b" and of
/// "a" as (from, to, milliseconds since the ejection), and the probes of "a".
async fn hanging_neighbour(
    with_a: bool,
) -> (
    Vec<(HealthState, HealthState, u64)>,
    Vec<(HealthState, HealthState, u64)>,
    usize,
) {
    let a_calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&a_calls);
    let ids: &[&'static str] = if with_a { &["a", "b"] } else { &["b"] };
    let t = HealthTracker::builder()
        .endpoints(ids.iter().copied())
        .probe(move |id: &&'static str| {
            let hang = *id == "a";
            if hang {
                c.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                ProbeResult::up()
            }
        })
        .probe_interval(ms(200))
        .probe_timeout(ms(500))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let start = Instant::now();
    for ep in t.endpoints() {
        for _ in 0..3 {
            ep.record_failure(transient());
        }
    }
    sleep(ms(1300)).await;
    let of = |id: &str, ev: &[HealthEvent<&'static str>]| {
        ev.iter()
            .filter(|e| e.endpoint == id)
            .map(|e| (e.from, e.to, (e.at - start).as_millis() as u64))
            .collect::<Vec<_>>()
    };
    let ev = drain(&mut rx);
    (of("b", &ev), of("a", &ev), a_calls.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_does_not_delay_the_other_endpoints() {
    use HealthState::{Down, Probing, Up};
    let (alone, _, _) = hanging_neighbour(false).await;
    // Probes of "b" at 0, 200, …: the one at 1 s (end of the ejection) and the one at 1.2 s
    // bring it back.
    assert_eq!(
        alone,
        [(Up, Down, 0), (Down, Probing, 1000), (Probing, Up, 1200)]
    );

    let (b, a, a_calls) = hanging_neighbour(true).await;
    assert_eq!(
        b, alone,
        "the hanging probes of \"a\" delay \"b\" by nothing"
    );
    // "a" is probed at 0, 500 and 1000 ms, each probe as soon as the previous one timed out;
    // the one started at 500 ms times out after its ejection ended: ejected again.
    assert_eq!(
        a,
        [(Up, Down, 0), (Down, Probing, 1000), (Probing, Down, 1000)]
    );
    assert_eq!(a_calls, 3);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_never_has_two_probes_at_once_nor_probes_more_often_than_the_interval() {
    // "slow" answers after 350 ms, longer than the 100 ms interval; "fast" answers at once.
    // Both answer down and stay ejected for 10 s.
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let starts = Arc::new(Mutex::new(Vec::new()));
    struct Running(Arc<AtomicUsize>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let (r, m, s) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&starts));
    let origin = Instant::now();
    let t = HealthTracker::builder()
        .endpoints(["slow", "fast"])
        .ejection_base(Duration::from_secs(10))
        .ejection_cap(Duration::from_secs(10))
        .probe(move |id: &&'static str| {
            let id = *id;
            s.lock()
                .unwrap()
                .push((id, (Instant::now() - origin).as_millis() as u64));
            let guard = (id == "slow").then(|| {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                Running(Arc::clone(&r))
            });
            async move {
                if let Some(_running) = guard {
                    sleep(ms(350)).await;
                }
                ProbeResult::down()
            }
        })
        .probe_interval(ms(100))
        .probe_timeout(ms(1000))
        .build()
        .unwrap();
    let slow = t.endpoint(&"slow").unwrap();
    for _ in 0..3 {
        slow.record_failure(transient());
    }
    // Wake the probe task while the slow probe runs: another ejection, a new endpoint.
    sleep(ms(50)).await;
    let fast = t.endpoint(&"fast").unwrap();
    for _ in 0..3 {
        fast.record_failure(transient());
    }
    sleep(ms(70)).await;
    t.add_endpoint("new");
    sleep(ms(1080)).await;

    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two probes of one endpoint ran at once"
    );
    let starts = starts.lock().unwrap();
    let of = |id: &str| -> Vec<u64> {
        starts
            .iter()
            .filter(|(e, _)| *e == id)
            .map(|(_, at)| *at)
            .collect()
    };
    // Each slow probe starts as soon as the previous one ended (it was due 100 ms after it
    // started).
    assert_eq!(of("slow"), [0, 350, 700, 1050]);
    // An instant probe runs once per interval from its ejection, whatever wakes the task.
    assert_eq!(
        of("fast"),
        [50, 150, 250, 350, 450, 550, 650, 750, 850, 950, 1050, 1150]
    );
    assert!(of("new").is_empty(), "up, and no heartbeat");
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_panics_does_not_stop_the_probing_of_its_endpoint() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let t = HealthTracker::builder()
        .endpoint("a")
        .probe(move |_: &&str| {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                assert!(!first, "the first probe panics (expected in this test)");
                ProbeResult::up()
            }
        })
        .probe_interval(ms(200))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let a = t.endpoint(&"a").unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        a.record_failure(transient());
    }
    sleep(ms(1300)).await;
    let ev = drain(&mut rx);
    let at: Vec<_> = ev.iter().map(|e| e.at - start).collect();
    assert_eq!(at, [ms(0), ms(1000), ms(1200)]);
    assert_eq!(a.state(), HealthState::Up);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        7,
        "probes at 0, 200, …, 1200 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn readmit_ends_an_ejection_at_once_and_keeps_the_streak() {
    let t = HealthTracker::builder()
        .endpoints(["a", "b", "c"])
        .ejection_base(ms(10_000))
        .ejection_growth(2.0)
        .ejection_cap(ms(60_000))
        .build()
        .unwrap();
    let mut rx = t.subscribe();
    let (a, b, c) = (
        t.endpoint(&"a").unwrap(),
        t.endpoint(&"b").unwrap(),
        t.endpoint(&"c").unwrap(),
    );

    // Up: nothing to do, no event.
    assert!(!a.readmit());
    for _ in 0..3 {
        a.record_failure(transient());
    }
    assert_eq!(drain(&mut rx)[0].ejection, Some(ms(10_000)));
    // Two seconds into a ten-second ejection, successes are still ignored...
    advance(ms(2000)).await;
    a.record_success();
    assert_eq!(a.state(), HealthState::Down);
    // ...but an authoritative check ends it at once.
    let at = Instant::now();
    assert!(a.readmit());
    assert!(a.is_available());
    assert_eq!(a.state(), HealthState::Up);
    assert_eq!(a.since(), at);
    assert_eq!(a.stats().down_until, None);
    assert!(!a.readmit(), "a second readmit changes nothing");
    let ev = drain(&mut rx);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].endpoint, ev[0].from, ev[0].to, ev[0].reason),
        (
            "a",
            HealthState::Down,
            HealthState::Up,
            TransitionReason::Readmitted
        )
    );
    assert_eq!((ev[0].at, ev[0].ejection), (at, None));

    // The streak is kept: failing again soon after ejects for the grown time.
    advance(ms(1000)).await;
    for _ in 0..3 {
        a.record_failure(transient());
    }
    let ev = drain(&mut rx);
    assert_eq!(moves(&ev), [(HealthState::Up, HealthState::Down)]);
    assert_eq!(ev[0].ejection, Some(ms(20_000)));
    assert_eq!(a.stats().ejections, 2);
    assert_eq!(a.stats().down_until, Some(Instant::now() + ms(20_000)));

    // Probing → Up too.
    advance(ms(20_000)).await;
    assert_eq!(a.state(), HealthState::Probing);
    drain(&mut rx);
    assert!(a.readmit());
    let ev = drain(&mut rx);
    assert_eq!(
        ev.iter()
            .map(|e| (e.from, e.to, e.reason))
            .collect::<Vec<_>>(),
        [(
            HealthState::Probing,
            HealthState::Up,
            TransitionReason::Readmitted
        )]
    );

    // Manual overrides are left alone: only `clear` lifts them.
    b.force_down();
    c.drain();
    drain(&mut rx);
    assert!(!b.readmit());
    assert!(!c.readmit());
    assert_eq!(b.state(), HealthState::Down);
    assert_eq!(b.manual_override(), Some(Override::ForcedDown));
    assert_eq!(c.state(), HealthState::Draining);
    assert_eq!(c.manual_override(), Some(Override::Drain));
    assert!(drain(&mut rx).is_empty());
}

//! Router: failover, failback delay, roles, all-down, generation, manual control, read policies,
//! the operation runner, a flapping endpoint, and concurrency. Paused clock where timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::health::{Endpoint, HealthState, HealthTracker, ProbeResult, Role};
use switchover::retry::{ConstantBackoff, RetryPolicy, StopReason};
use switchover::route::{
    Failback, LowestLatency, PreferReplica, PrimaryOnly, ReadCandidates, ReadPolicy, ReplicaOnly,
    RoundRobin, RouteEvent, Router, SwitchError, SwitchReason, Target,
};
use switchover::{Classification, Classify};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{Instant, advance, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn eject<K: switchover::health::EndpointId>(ep: &Endpoint<K>) {
    for _ in 0..3 {
        ep.record_failure(Classification::transient().not_executed());
    }
}

fn events<K>(rx: &mut UnboundedReceiver<RouteEvent<K>>) -> Vec<RouteEvent<K>> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn switches<K: Clone>(ev: &[RouteEvent<K>]) -> Vec<(K, K, u64, SwitchReason)> {
    ev.iter()
        .filter_map(|e| match e {
            RouteEvent::Switched {
                from,
                to,
                generation,
                reason,
                ..
            } => Some((from.clone(), to.clone(), *generation, *reason)),
            _ => None,
        })
        .collect()
}

fn setup(
    ids: &[&'static str],
    failback: Failback,
) -> (HealthTracker<&'static str>, Router<&'static str>) {
    let t = HealthTracker::new(ids.iter().copied());
    let r = Router::builder(&t)
        .endpoints(ids.iter().copied())
        .failback(failback)
        .build()
        .unwrap();
    (t, r)
}

#[derive(Debug)]
struct Fail(Classification);
impl Classify for Fail {
    fn classify(&self) -> Classification {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn fails_over_on_the_first_call_after_the_active_goes_down() {
    let (t, r) = setup(&["a", "b", "c"], Failback::default());
    let mut rx = r.subscribe();
    assert_eq!(r.active().id(), &"a");
    assert_eq!(r.generation(), 0);
    eject(&t.endpoint(&"a").unwrap());
    let active = r.active();
    assert_eq!(active.id(), &"b");
    assert_eq!(active.generation(), 1);
    assert!(!active.is_all_down());
    // Repeated calls do not switch again.
    for _ in 0..10 {
        assert_eq!(r.active().generation(), 1);
    }
    assert_eq!(
        switches(&events(&mut rx)),
        [("a", "b", 1, SwitchReason::Failover)]
    );
}

#[tokio::test(start_paused = true)]
async fn fails_back_only_after_the_preferred_endpoint_stayed_up() {
    let (t, r) = setup(&["a", "b"], Failback::After(ms(5000)));
    let mut rx = r.subscribe();
    let a = t.endpoint(&"a").unwrap();
    eject(&a);
    assert_eq!(r.active().id(), &"b");
    advance(ms(1000)).await;
    a.record_success();
    a.record_success();
    assert_eq!(a.state(), HealthState::Up);
    let up_at = Instant::now();
    advance(ms(4999)).await;
    assert_eq!(r.active().id(), &"b", "4999 ms up is not enough");
    // Flapping during the wait restarts it.
    advance(ms(1)).await;
    assert_eq!(up_at.elapsed(), ms(5000));
    let active = r.active();
    assert_eq!(active.id(), &"a");
    assert_eq!(active.generation(), 2);
    assert_eq!(
        switches(&events(&mut rx)),
        [
            ("a", "b", 1, SwitchReason::Failover),
            ("b", "a", 2, SwitchReason::Failback)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn failback_waits_again_if_the_preferred_endpoint_fails_meanwhile() {
    let (t, r) = setup(&["a", "b"], Failback::After(ms(3000)));
    let a = t.endpoint(&"a").unwrap();
    eject(&a);
    assert_eq!(r.active().id(), &"b");
    advance(ms(1000)).await;
    a.record_success();
    a.record_success(); // up at 1 s
    advance(ms(2000)).await;
    a.record_failure(Classification::transient()); // probing failed? no: it is up, one failure
    eject(&a); // down again at 3 s, ejection 2 s
    advance(ms(2000)).await;
    a.record_success();
    a.record_success(); // up at 5 s
    advance(ms(2999)).await;
    assert_eq!(r.active().id(), &"b");
    advance(ms(1)).await;
    assert_eq!(r.active().id(), &"a");
    assert_eq!(r.generation(), 2);
}

#[tokio::test(start_paused = true)]
async fn manual_failback_never_moves_back_by_itself() {
    let (t, r) = setup(&["a", "b"], Failback::Manual);
    let a = t.endpoint(&"a").unwrap();
    eject(&a);
    assert_eq!(r.active().id(), &"b");
    advance(ms(1000)).await;
    a.record_success();
    a.record_success();
    advance(Duration::from_secs(3600)).await;
    assert_eq!(r.active().id(), &"b");
    assert_eq!(r.switch_to(&"a"), Ok(2));
    assert_eq!(r.active().id(), &"a");
}

#[tokio::test(start_paused = true)]
async fn replicas_are_not_primary_candidates_and_a_demoted_primary_is_left() {
    let (t, r) = setup(&["n1", "n2", "n3"], Failback::After(ms(100)));
    let mut rx = r.subscribe();
    let (n1, n2, n3) = (
        t.endpoint(&"n1").unwrap(),
        t.endpoint(&"n2").unwrap(),
        t.endpoint(&"n3").unwrap(),
    );
    n2.set_role(Role::Replica);
    n3.set_role(Role::Replica);
    n1.set_role(Role::Primary);
    assert_eq!(r.active().id(), &"n1");
    // Sentinel promotes n3 and demotes n1: the adapter reports roles.
    n3.set_role(Role::Primary);
    n1.set_role(Role::Replica);
    assert_eq!(r.active().id(), &"n3");
    // An up replica of better priority is no failback target.
    advance(ms(1000)).await;
    assert_eq!(r.active().id(), &"n3");
    assert_eq!(
        switches(&events(&mut rx)),
        [("n1", "n3", 1, SwitchReason::Demoted)]
    );
}

#[tokio::test(start_paused = true)]
async fn never_all_down_returns_the_best_guess_and_flags_it() {
    let (t, r) = setup(&["a", "b", "c"], Failback::After(ms(10_000)));
    let mut rx = r.subscribe();
    let (a, b, c) = (
        t.endpoint(&"a").unwrap(),
        t.endpoint(&"b").unwrap(),
        t.endpoint(&"c").unwrap(),
    );
    eject(&a);
    assert_eq!(r.active().id(), &"b");
    advance(ms(100)).await;
    eject(&b);
    assert_eq!(r.active().id(), &"c");
    advance(ms(100)).await;
    eject(&c);
    // All down: the preferred endpoint, which is also the one down the longest.
    let active = r.active();
    assert!(active.is_all_down());
    assert_eq!(active.id(), &"a");
    assert_eq!(active.generation(), 3);
    assert!(r.is_all_down());
    // No churn between equally dead endpoints.
    for _ in 0..5 {
        advance(ms(100)).await;
        assert_eq!(r.active().id(), &"a");
    }
    // At 1.1 s `b`'s ejection ends: probing beats down, so traffic goes where recovery is
    // possible... but `a` (down at 0 s) reached probing first, at 1 s.
    advance(ms(500)).await; // t = 1.2 s
    assert_eq!(a.state(), HealthState::Probing);
    assert_eq!(r.active().id(), &"a");
    // Calls on the best guess recover it; the router leaves all-down without a switch.
    a.record_success();
    a.record_success();
    let active = r.active();
    assert!(!active.is_all_down());
    assert_eq!((active.id(), active.generation()), (&"a", 3));

    let ev = events(&mut rx);
    assert!(matches!(
        ev[3],
        RouteEvent::AllDownEntered {
            active: "a",
            generation: 3,
            ..
        }
    ));
    assert!(matches!(
        ev[4],
        RouteEvent::AllDownLeft {
            active: "a",
            generation: 3,
            ..
        }
    ));
    assert_eq!(ev.len(), 5);
}

#[tokio::test(start_paused = true)]
async fn all_down_moves_to_a_probing_endpoint_and_avoids_forced_down_ones() {
    let (t, r) = setup(&["a", "b", "c"], Failback::default());
    let mut rx = r.subscribe();
    let (a, b, c) = (
        t.endpoint(&"a").unwrap(),
        t.endpoint(&"b").unwrap(),
        t.endpoint(&"c").unwrap(),
    );
    // `a` is ejected twice in a row: down until 3 s.
    eject(&a);
    advance(ms(1000)).await;
    assert_eq!(a.state(), HealthState::Probing);
    a.record_failure(Classification::transient());
    eject(&b); // down until 2 s
    eject(&c); // down until 2 s
    let active = r.active();
    assert!(active.is_all_down());
    assert_eq!(active.id(), &"a", "all equally down: the preferred one");
    // At 2 s `b` is probing: a better bet than a down `a`.
    advance(ms(1000)).await;
    let active = r.active();
    assert_eq!((active.id(), active.is_all_down()), (&"b", true));
    b.record_success();
    b.record_success();
    let active = r.active();
    assert_eq!((active.id(), active.is_all_down()), (&"b", false));
    let ev = events(&mut rx);
    // The router was asked nothing until everything was down: it stayed on `a` (no switch
    // between equally dead endpoints), then moved once, to the probing `b`.
    assert_eq!(switches(&ev), [("a", "b", 1, SwitchReason::Failover)]);
    assert!(matches!(
        ev[0],
        RouteEvent::AllDownEntered {
            active: "a",
            generation: 0,
            ..
        }
    ));
    assert!(matches!(
        ev[2],
        RouteEvent::AllDownLeft {
            active: "b",
            generation: 1,
            ..
        }
    ));

    // A forced-down endpoint is the very last resort, even when preferred.
    let (t, r) = setup(&["x", "y"], Failback::default());
    t.force_down(&"x");
    eject(&t.endpoint(&"y").unwrap());
    let active = r.active();
    assert_eq!((active.id(), active.is_all_down()), (&"y", true));
}

#[tokio::test(start_paused = true)]
async fn generation_grows_exactly_once_per_switch() {
    let t = HealthTracker::builder()
        .endpoints(["a", "b", "c"])
        .ejection_growth(1.0)
        .build()
        .unwrap();
    let r = Router::builder(&t)
        .endpoints(["a", "b", "c"])
        .failback_after(ms(500))
        .build()
        .unwrap();
    let mut rx = r.subscribe();
    let eps: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| t.endpoint(id).unwrap())
        .collect();
    let mut seen = vec![];
    for _ in 0..20 {
        let victim = r.active().endpoint().clone();
        eject(&victim);
        for _ in 0..3 {
            seen.push(r.active().generation());
        }
        advance(ms(1100)).await;
        for ep in &eps {
            ep.record_success();
            ep.record_success();
        }
        advance(ms(600)).await;
        seen.push(r.active().generation());
    }
    let sw = switches(&events(&mut rx));
    let gens: Vec<u64> = sw.iter().map(|s| s.2).collect();
    assert_eq!(gens, (1..=sw.len() as u64).collect::<Vec<_>>());
    assert_eq!(r.generation(), sw.len() as u64);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(sw.len(), 40, "a failover and a failback per round");
}

#[tokio::test(start_paused = true)]
async fn switch_to_pins_and_checks_the_target() {
    let (t, r) = setup(&["a", "b", "c"], Failback::After(ms(100)));
    let mut rx = r.subscribe();
    assert_eq!(r.switch_to(&"zz"), Err(SwitchError::UnknownEndpoint));
    t.endpoint(&"c").unwrap().set_role(Role::Replica);
    assert_eq!(r.switch_to(&"c"), Err(SwitchError::NotPrimaryCandidate));
    eject(&t.endpoint(&"b").unwrap());
    assert_eq!(
        r.switch_to(&"b"),
        Err(SwitchError::Unavailable(HealthState::Down))
    );
    t.clear(&"b");
    assert_eq!(r.switch_to(&"b"), Ok(1));
    assert!(r.is_pinned());
    assert_eq!(
        r.switch_to(&"b"),
        Ok(1),
        "already active: no new generation"
    );
    advance(ms(1000)).await;
    assert_eq!(r.active().id(), &"b", "pinned: no failback to a");
    r.unpin();
    assert_eq!(r.active().id(), &"a");
    assert_eq!(r.generation(), 2);
    assert_eq!(
        switches(&events(&mut rx)),
        [
            ("a", "b", 1, SwitchReason::Manual),
            ("b", "a", 2, SwitchReason::Failback)
        ]
    );
    // A pinned endpoint that goes down is still failed over (and unpinned).
    r.switch_to(&"b").unwrap();
    eject(&t.endpoint(&"b").unwrap());
    assert_eq!(r.active().id(), &"a");
    assert!(!r.is_pinned());
}

#[tokio::test(start_paused = true)]
async fn evacuate_drains_and_moves_away() {
    let (t, r) = setup(&["a", "b"], Failback::After(ms(100)));
    let mut rx = r.subscribe();
    assert_eq!(r.evacuate(&"a"), Ok(1));
    assert_eq!(r.active().id(), &"b");
    assert_eq!(t.state(&"a"), Some(HealthState::Draining));
    t.clear(&"a");
    advance(ms(100)).await;
    assert_eq!(r.active().id(), &"a");
    assert_eq!(
        switches(&events(&mut rx)),
        [
            ("a", "b", 1, SwitchReason::Evacuated),
            ("b", "a", 2, SwitchReason::Failback)
        ]
    );
    assert_eq!(r.evacuate(&"nope"), Err(SwitchError::UnknownEndpoint));
}

#[tokio::test(start_paused = true)]
async fn read_policies_choose_among_available_replicas() {
    let (t, r) = setup(&["p", "r1", "r2", "r3"], Failback::default());
    t.endpoint(&"p").unwrap().set_role(Role::Primary);
    for id in ["r1", "r2", "r3"] {
        t.endpoint(&id).unwrap().set_role(Role::Replica);
    }
    eject(&t.endpoint(&"r2").unwrap());
    t.drain(&"r3");
    let id = |ep: Option<&Endpoint<&'static str>>| ep.map(|e| *e.id());

    assert_eq!(id(r.read_target(&PrimaryOnly)), Some("p"));
    let prefer = PreferReplica::new();
    assert_eq!(id(r.read_target(&prefer)), Some("r1"));
    assert_eq!(
        id(r.read_target(&prefer)),
        Some("r1"),
        "down and draining are skipped"
    );
    let rr = RoundRobin::new();
    let picks: Vec<_> = (0..4).map(|_| id(r.read_target(&rr)).unwrap()).collect();
    assert_eq!(picks, ["p", "r1", "p", "r1"]);
    t.clear(&"r3");
    let only = ReplicaOnly::new();
    let picks: Vec<_> = (0..4).map(|_| id(r.read_target(&only)).unwrap()).collect();
    assert_eq!(picks, ["r1", "r3", "r1", "r3"]);

    // Lowest latency: samples decide; an unsampled endpoint is tried first.
    t.endpoint(&"p").unwrap().record_success_with_latency(ms(5));
    t.endpoint(&"r1")
        .unwrap()
        .record_success_with_latency(ms(2));
    assert_eq!(id(r.read_target(&LowestLatency)), Some("r3"));
    t.endpoint(&"r3")
        .unwrap()
        .record_success_with_latency(ms(9));
    assert_eq!(id(r.read_target(&LowestLatency)), Some("r1"));

    // No replica left: prefer-replica falls back to the primary, replica-only refuses.
    t.force_down(&"r1");
    t.force_down(&"r3");
    assert_eq!(id(r.read_target(&prefer)), Some("p"));
    assert_eq!(id(r.read_target(&only)), None);
}

#[tokio::test(start_paused = true)]
async fn runner_retries_on_the_next_endpoint_and_records_outcomes() {
    let (t, r) = setup(&["a", "b"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(6)
        .backoff(ConstantBackoff::new(ms(10)))
        .build()
        .unwrap();
    let calls: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let log = Arc::clone(&calls);
    let got = r
        .run(&policy, |ep| {
            let log = Arc::clone(&log);
            async move {
                log.lock().unwrap().push(*ep.id());
                if *ep.id() == "a" {
                    Err(Fail(Classification::transient().not_executed()))
                } else {
                    sleep(ms(7)).await;
                    Ok(*ep.id())
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(got, "b");
    assert_eq!(*calls.lock().unwrap(), ["a", "a", "a", "b"]);
    assert_eq!(t.state(&"a"), Some(HealthState::Down));
    assert_eq!(t.endpoint(&"b").unwrap().latency(), Some(ms(7)));

    // Permanent errors are returned at once and do not count against the endpoint.
    let err = r
        .run_idempotent(&policy, |_| async {
            Err::<(), _>(Fail(Classification::permanent()))
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::Permanent);
    assert_eq!(t.endpoint(&"b").unwrap().stats().consecutive_failures, 0);

    // A write that may have executed is not retried unless idempotent.
    let err = r
        .run(&policy, |_| async {
            Err::<(), _>(Fail(Classification::transient()))
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::NotIdempotent);
    assert_eq!(err.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn runner_counts_a_black_hole_as_failures_and_fails_over() {
    let (t, r) = setup(&["a", "b"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .attempt_timeout(ms(200))
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    let start = Instant::now();
    let got = r
        .call(&policy, |ep| async move {
            if *ep.id() == "a" {
                std::future::pending::<Result<&str, Fail>>().await
            } else {
                Ok("b")
            }
        })
        .idempotent(true)
        .run()
        .await
        .unwrap();
    assert_eq!(got, "b");
    // Three timeouts of 200 ms, each followed by a 1 ms wait, then the fourth attempt on b.
    assert_eq!(start.elapsed(), ms(603));
    assert_eq!(t.state(&"a"), Some(HealthState::Down));

    // A caller that gives up early does not mark the endpoint down.
    t.clear(&"a");
    let call = r.run_idempotent(&policy, |_| std::future::pending::<Result<(), Fail>>());
    assert!(tokio::time::timeout(ms(50), call).await.is_err());
    assert_eq!(t.endpoint(&"a").unwrap().stats().failures_total, 3);
}

#[tokio::test(start_paused = true)]
async fn runner_reads_follow_the_read_policy() {
    let (t, r) = setup(&["p", "r1"], Failback::default());
    t.endpoint(&"r1").unwrap().set_role(Role::Replica);
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    let prefer = PreferReplica::new();
    let served = r
        .run_read(&policy, &prefer, |ep| async move {
            if *ep.id() == "r1" {
                Err(Fail(Classification::transient()))
            } else {
                Ok(*ep.id())
            }
        })
        .await
        .unwrap();
    // Reads are idempotent and retried elsewhere: the replica fails once, the retry goes to
    // the primary (which has not failed in this call) at once instead of waiting for the
    // replica's ejection. (Until the one-engine change the retry went back to the replica
    // until it was ejected after three failures.)
    assert_eq!(served, "p");
    let r1 = t.endpoint(&"r1").unwrap();
    assert_eq!(r1.stats().failures_total, 1);
    assert_eq!(t.state(&"r1"), Some(HealthState::Up));
}

#[tokio::test(start_paused = true)]
async fn runner_hands_each_attempt_its_number_generation_and_failed_endpoints() {
    let (_t, r) = setup(&["a", "b", "c"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    // (attempt number, endpoint, endpoints failed before it)
    type Seen = Vec<(u32, &'static str, Vec<&'static str>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = Arc::clone(&seen);
    let got = r
        .call(&policy, |a| {
            let log = Arc::clone(&log);
            let failed: Vec<&'static str> = a.failed().iter().map(|e| *e.id()).collect();
            log.lock().unwrap().push((a.number(), *a.id(), failed));
            let id = *a.id();
            async move {
                if id == "c" {
                    Ok(id)
                } else {
                    Err(Fail(Classification::transient().not_executed()))
                }
            }
        })
        .target(Target::ActiveThenUntried)
        .run()
        .await
        .unwrap();
    assert_eq!(got, "c");
    // The active one first, then each candidate that has not failed yet, by priority.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, "a", vec![]),
            (2, "b", vec!["a"]),
            (3, "c", vec!["a", "b"]),
        ]
    );
    // The router itself has not failed over: one failure each is below the threshold.
    assert_eq!(r.active().id(), &"a");
}

#[tokio::test(start_paused = true)]
async fn active_then_untried_goes_back_to_the_active_one_when_all_failed() {
    let (_t, r) = setup(&["a", "b"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let log = Arc::clone(&seen);
    let err = r
        .call(&policy, |a| {
            log.lock().unwrap().push(*a.id());
            async { Err::<(), _>(Fail(Classification::transient().not_executed())) }
        })
        .target(Target::ActiveThenUntried)
        .run()
        .await
        .unwrap_err();
    assert_eq!(*seen.lock().unwrap(), ["a", "b", "a"]);
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.endpoint(), Some(&"a"));
    assert!(!err.may_have_executed(), "every failure said not executed");
}

#[tokio::test(start_paused = true)]
async fn route_error_names_the_last_endpoint_and_whether_anything_may_have_run() {
    let (_t, r) = setup(&["a", "b"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .attempt_timeout(ms(100))
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    // First attempt: refused (not executed); second: cut by the attempt timeout in flight.
    let err = r
        .call(&policy, |a| {
            let first = a.is_first();
            async move {
                if first {
                    Err(Fail(Classification::transient().not_executed()))
                } else {
                    std::future::pending::<Result<(), Fail>>().await
                }
            }
        })
        .target(Target::ActiveThenUntried)
        .idempotent(true)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 2);
    assert!(err.timed_out());
    assert_eq!(err.endpoint(), Some(&"b"), "the cut attempt went to b");
    assert!(err.may_have_executed(), "a cut attempt may have run");
    assert!(
        err.to_string()
            .ends_with("after 2 attempts (last on \"b\")"),
        "{err}"
    );
}

/// Runs a router over a flapping preferred endpoint ("flappy": down 300 ms, up 300 ms, …) and a
/// steady one for 10 s of virtual time, with a workload calling every 10 ms, probes every
/// 100 ms, a 1 s failback delay and no heartbeat (the worst case: the router learns of a down
/// phase only by sending work). Returns the switches and the failed and successful calls.
async fn flap(
    growth: f64,
) -> (
    Vec<(&'static str, &'static str, u64, SwitchReason)>,
    u32,
    u32,
) {
    let start = Instant::now();
    let flapper_up = move || (start.elapsed().as_millis() / 300) % 2 == 1;
    let t = HealthTracker::builder()
        .endpoints(["flappy", "steady"])
        .ejection_base(ms(1000))
        .ejection_growth(growth)
        .ejection_cap(Duration::from_secs(30))
        .probe(move |id: &&'static str| {
            let up = *id != "flappy" || flapper_up();
            std::future::ready(if up {
                ProbeResult::up()
            } else {
                ProbeResult::down()
            })
        })
        .probe_interval(ms(100))
        .build()
        .unwrap();
    let r = Router::builder(&t)
        .endpoints(["flappy", "steady"])
        .failback_after(ms(1000))
        .build()
        .unwrap();
    let mut rx = r.subscribe();
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(ConstantBackoff::new(ms(5)))
        .build()
        .unwrap();
    let (mut failed, mut ok) = (0, 0);
    while start.elapsed() < Duration::from_secs(10) {
        let res = r
            .run(&policy, |ep| async move {
                if *ep.id() == "flappy" && !flapper_up() {
                    Err(Fail(Classification::transient().not_executed()))
                } else {
                    Ok(())
                }
            })
            .await;
        match res {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
        sleep(ms(10)).await;
    }
    let sw = switches(&events(&mut rx));
    assert_eq!(r.generation(), sw.len() as u64);
    (sw, failed, ok)
}

/// The flapping endpoint of [`flap`] with ejections growing × 2 from 1 s.
///
/// Bound: every failback needs a new ejection of the flapper to have run out first, and the
/// ejections of one streak last base × growth^(k-1): 1 s, 2 s, 4 s, 8 s… (the streak never
/// resets: the flapper never stays up `stable_after` = 30 s). Within 10 s at most k ejections
/// with 1 + 2 + … + 2^(k-1) ≤ 10 s can run out, so k ≤ 3: at most 3 failbacks, and at most
/// 2k + 1 = 7 switches (the first failover, then a failback and a failover per ejection).
#[tokio::test(start_paused = true)]
async fn a_flapping_endpoint_causes_a_bounded_number_of_switches() {
    let (mut k, mut total) = (0u32, Duration::ZERO);
    loop {
        let next = ms(1000) * 2u32.pow(k);
        if total + next > Duration::from_secs(10) {
            break;
        }
        total += next;
        k += 1;
    }
    let bound = 2 * k as usize + 1;
    assert_eq!(bound, 7);

    let (sw, failed, ok) = flap(2.0).await;
    println!("growth 2: {} switches: {sw:?}", sw.len());
    assert!(sw.len() <= bound, "{} switches > bound {bound}", sw.len());
    assert!(sw.len() >= 3, "the flapper was re-admitted at least once");
    assert_eq!(failed, 0, "every call was retried onto the steady endpoint");
    assert!(ok > 900);

    // Without growth the same flapper is re-admitted more often.
    let (flat, failed, _) = flap(1.0).await;
    println!("growth 1: {} switches", flat.len());
    assert!(flat.len() > sw.len());
    assert_eq!(failed, 0);
}

/// Many tasks record outcomes and call the router while a controller flips endpoints down and
/// up: no deadlock, every health transition arrives, generations are consecutive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recording_and_switching() {
    let t = HealthTracker::builder()
        .endpoints(0..3u32)
        .ejection_base(Duration::from_micros(100))
        .ejection_cap(Duration::from_millis(1))
        .recovery_successes(1)
        .build()
        .unwrap();
    let r = Router::builder(&t)
        .endpoints(0..3u32)
        .failback_after(Duration::from_micros(200))
        .build()
        .unwrap();
    let mut health = t.subscribe();
    let mut route = r.subscribe();
    let observed = Arc::new(AtomicUsize::new(0));
    let work = async {
        let mut tasks = Vec::new();
        for w in 0..8u32 {
            let r = r.clone();
            let observed = Arc::clone(&observed);
            tasks.push(tokio::spawn(async move {
                let mut last_gen = 0;
                for i in 0..20_000u32 {
                    let active = r.active();
                    assert!(active.generation() >= last_gen, "generation went back");
                    last_gen = active.generation();
                    let ep = active.endpoint();
                    if (i.wrapping_mul(2_654_435_761) ^ w) % 5 == 0 {
                        ep.record_failure(Classification::transient());
                    } else {
                        ep.record_success();
                    }
                    if i % 256 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                observed.fetch_add(1, Ordering::Relaxed);
            }));
        }
        let flipper = {
            let t = t.clone();
            tokio::spawn(async move {
                for i in 0..300u32 {
                    if i % 2 == 0 {
                        t.force_down(&(i % 3));
                    } else {
                        t.clear(&(i % 3));
                    }
                    tokio::time::sleep(Duration::from_micros(50)).await;
                }
                for id in 0..3 {
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
    assert_eq!(observed.load(Ordering::Relaxed), 8);

    let mut last = [HealthState::Up; 3];
    let mut n = 0;
    while let Ok(ev) = health.try_recv() {
        assert_eq!(last[ev.endpoint as usize], ev.from, "{ev:?}");
        last[ev.endpoint as usize] = ev.to;
        n += 1;
    }
    assert!(n >= 300, "at least the flips: {n}");
    let sw = switches(&events(&mut route));
    let gens: Vec<u64> = sw.iter().map(|s| s.2).collect();
    assert_eq!(gens, (1..=sw.len() as u64).collect::<Vec<_>>());
    assert!(!sw.is_empty());
    assert_eq!(r.generation(), sw.len() as u64);
    // Consecutive switches chain: each starts where the previous ended.
    assert!(sw.windows(2).all(|w| w[0].1 == w[1].0));
}

#[tokio::test(start_paused = true)]
async fn switch_to_succeeds_right_after_readmit_of_an_ejected_endpoint() {
    let t = HealthTracker::builder()
        .endpoints(["a", "b"])
        .ejection_base(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = Router::builder(&t)
        .endpoints(["a", "b"])
        .failback(Failback::Manual)
        .build()
        .unwrap();
    let mut rx = r.subscribe();
    let b = t.endpoint(&"b").unwrap();
    // The standby is ejected (refused connects while it was being promoted)...
    eject(&b);
    advance(ms(2000)).await;
    assert_eq!(
        r.switch_to(&"b"),
        Err(SwitchError::Unavailable(HealthState::Down)),
        "18 s of ejection left"
    );
    // ...then re-discovery finds it is the primary now.
    assert!(b.readmit());
    assert_eq!(r.switch_to(&"b"), Ok(1));
    assert_eq!(r.active().id(), &"b");
    assert!(!r.active().is_all_down());
    assert_eq!(
        switches(&events(&mut rx)),
        [("a", "b", 1, SwitchReason::Manual)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_policy_can_be_tested_without_a_router() {
    let t = HealthTracker::new(["p", "r1", "r2"]);
    let eps = t.endpoints();
    eps[1].set_role(Role::Replica);
    eps[2].set_role(Role::Replica);
    let c = ReadCandidates::new(&eps, &eps[0], false);
    let prefer = PreferReplica::new();
    let picks: Vec<_> = (0..3).map(|_| *prefer.choose(&c).unwrap().id()).collect();
    assert_eq!(picks, ["r1", "r2", "r1"]);
    eps[1].force_down();
    eps[2].force_down();
    assert_eq!(prefer.choose(&c).map(|e| *e.id()), Some("p"));
    assert_eq!(ReplicaOnly::new().choose(&c).map(|e| *e.id()), None);
    // All down: the active one is only a best guess, not an available primary.
    let c = ReadCandidates::new(&eps, &eps[0], true);
    assert!(c.primary().is_none());
    assert_eq!(PrimaryOnly.choose(&c).map(|e| *e.id()), Some("p"));
}

#[tokio::test(start_paused = true)]
async fn a_redirected_refusal_is_retried_at_once_and_never_held_against_the_endpoint() {
    let (t, r) = setup(&["a", "b"], Failback::default());
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(ConstantBackoff::new(ms(100)))
        .build()
        .unwrap();
    let start = Instant::now();
    let got = r
        .run(&policy, |a| {
            let n = a.number();
            async move {
                if n < 4 {
                    // "Not me, ask the new primary": a demoted primary's READONLY.
                    Err(Fail(Classification::redirected()))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(
        got, 4,
        "retried although not idempotent: it surely did not run"
    );
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no backoff: retried at once"
    );
    let a = t.endpoint(&"a").unwrap();
    assert_eq!(
        a.stats().failures_total,
        0,
        "not counted against the endpoint"
    );
    assert_eq!(a.state(), HealthState::Up);
    assert!(!Classification::redirected().counts_against_endpoint());
    assert_eq!(
        Classification::redirected().to_string(),
        "transient, not executed, redirected, retry after 0ns"
    );
}

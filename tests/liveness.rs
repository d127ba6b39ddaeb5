//! The core's liveness primitives under the paused clock: an endpoint declared down
//! (`Endpoint::downs`, `Endpoint::down_signal`) and a router's generation moving
//! (`Router::generation_moved`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use switchover::Classification;
use switchover::health::{HealthState, HealthTracker, ProbeResult};
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

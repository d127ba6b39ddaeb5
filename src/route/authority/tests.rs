//! Paused-clock tests of the follower, over a scripted authority.

use std::collections::VecDeque;

use super::*;
use crate::health::HealthTracker;

/// A scripted authority: answers from a queue, repeating the last answer.
struct Script(Mutex<VecDeque<Result<Record<&'static str>, AuthorityError>>>);

impl Script {
    fn new(
        answers: impl IntoIterator<Item = Result<Record<&'static str>, AuthorityError>>,
    ) -> Self {
        Script(Mutex::new(answers.into_iter().collect()))
    }
}

impl Authority<&'static str> for Script {
    async fn read(&self) -> Result<Record<&'static str>, AuthorityError> {
        let mut q = lock(&self.0);
        if q.len() > 1 {
            q.pop_front().unwrap_or_else(|| unreachable!())
        } else {
            q.front().cloned().unwrap_or_else(|| unreachable!())
        }
    }
}

fn rec(p: &'static str, epoch: u64) -> Result<Record<&'static str>, AuthorityError> {
    Ok(Record::new(p, epoch))
}

fn router() -> Router<&'static str> {
    let t = HealthTracker::new(["a", "b", "c"]);
    Router::builder(&t)
        .endpoints(["a", "b", "c"])
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn follows_good_records_and_ignores_bad_ones() {
    let r = router();
    let script = Script::new([
        rec("b", 2),
        rec("zz", 3),
        rec("a", 1),
        Err(AuthorityError::unparsable("epoch is not a number")),
        rec("c", 2),
        rec("b", 2),
        rec("c", 3),
    ]);
    let start = Instant::now();
    let f = Follower::builder(&r)
        .poll_interval(Duration::from_millis(100))
        .start(script)
        .unwrap();
    let mut ev = f.subscribe();
    let mut next = async || ev.recv().await.unwrap();
    let ms = |at: Instant| (at - start).as_millis();
    match next().await {
        AuthorityEvent::Followed {
            primary,
            epoch,
            generation,
            reachable,
            at,
            ..
        } => {
            assert_eq!((primary, epoch, generation, reachable), ("b", 2, 1, true));
            assert_eq!(ms(at), 0);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(r.active().id(), &"b");
    assert_eq!(r.active().generation(), 1);
    let expected = [
        (
            100,
            Rejection::UnknownEndpoint {
                primary: "zz",
                epoch: 3,
            },
        ),
        (200, Rejection::EpochWentBack { epoch: 1, last: 2 }),
        (
            300,
            Rejection::Unparsable {
                reason: "epoch is not a number".into(),
            },
        ),
        (
            400,
            Rejection::Conflicting {
                primary: "c",
                epoch: 2,
            },
        ),
    ];
    for (when, want) in expected {
        match next().await {
            AuthorityEvent::Rejected { rejection, at } => {
                assert_eq!((ms(at), rejection), (when, want));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(r.active().id(), &"b", "the last good record stands");
        assert_eq!(f.epoch(), 2);
    }
    // Epoch 2 again (at 500 ms) is nothing new; epoch 3 (600 ms) is followed.
    match next().await {
        AuthorityEvent::Followed {
            primary,
            epoch,
            generation,
            at,
            ..
        } => {
            assert_eq!((primary, epoch, generation, ms(at)), ("c", 3, 2, 600));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(r.active().id(), &"c");
    assert_eq!(f.record().unwrap().epoch(), 3);
    assert!(!f.is_local());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_named_primary_is_kept_not_failed_over() {
    let r = router();
    let f = Follower::builder(&r)
        .start(Script::new([rec("b", 7)]))
        .unwrap();
    let mut ev = f.subscribe();
    assert!(matches!(
        ev.recv().await,
        Some(AuthorityEvent::Followed {
            reachable: true,
            ..
        })
    ));
    let b = r.tracker().endpoint(&"b").unwrap();
    while b.is_available() {
        b.record_failure(crate::Classification::transient());
    }
    let active = r.active();
    assert_eq!((active.id(), active.is_all_down()), (&"b", true));
    // Local health would pick a; the authority's b stays until a new record.
    assert!(r.tracker().is_available(&"a"));
    assert!(b.readmit());
    let active = r.active();
    assert_eq!(
        (active.id(), active.is_all_down(), active.generation()),
        (&"b", false, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn unreachable_authority_keeps_the_last_record_or_falls_back() {
    for fallback in [false, true] {
        let r = router();
        let down = || Err(AuthorityError::unreachable("connection refused"));
        let mut answers = vec![rec("b", 4)];
        answers.extend((0..6).map(|_| down()));
        answers.push(rec("b", 4));
        let when = if fallback {
            WhenUnreachable::FallBackAfter(Duration::from_secs(1))
        } else {
            WhenUnreachable::KeepLast
        };
        let start = Instant::now();
        let f = Follower::builder(&r)
            .when_unreachable(when)
            .start(Script::new(answers))
            .unwrap();
        let mut ev = f.subscribe();
        let ms = |at: Instant| (at - start).as_millis();
        assert!(matches!(
            ev.recv().await,
            Some(AuthorityEvent::Followed { epoch: 4, .. })
        ));
        match ev.recv().await.unwrap() {
            AuthorityEvent::Unreachable { keeping, at, .. } => {
                assert_eq!((keeping, ms(at)), (4, 250));
            }
            e => panic!("{e:?}"),
        }
        if fallback {
            // Unreachable since 250 ms; the poll at 1250 ms is 1 s later.
            match ev.recv().await.unwrap() {
                AuthorityEvent::FellBack { at } => assert_eq!(ms(at), 1250),
                e => panic!("{e:?}"),
            }
            assert!(f.is_local());
            let roles: Vec<_> = r.endpoints().map(|(e, _)| e.role()).collect();
            assert_eq!(roles, [Role::Unknown; 3], "local health decides again");
            // b is up: local health keeps it (failback to a waits its 30 s).
            assert_eq!(r.active().id(), &"b");
        } else {
            assert_eq!(r.active().id(), &"b");
        }
        match ev.recv().await.unwrap() {
            AuthorityEvent::Reachable { at } => assert_eq!(ms(at), 1750),
            e => panic!("{e:?}"),
        }
        if fallback {
            match ev.recv().await.unwrap() {
                AuthorityEvent::Followed {
                    primary, epoch, at, ..
                } => {
                    assert_eq!((primary, epoch, ms(at)), ("b", 4, 1750));
                }
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(r.active().id(), &"b");
        assert!(!f.is_local() && !f.is_unreachable());
    }
}

#[tokio::test(start_paused = true)]
async fn epoch_changed_wakes_on_the_next_followed_record() {
    let r = router();
    let start = Instant::now();
    let script = Script::new([rec("a", 1), rec("a", 1), rec("a", 1), rec("b", 2)]);
    let f = Follower::builder(&r)
        .poll_interval(Duration::from_millis(100))
        .start(script)
        .unwrap();
    f.epoch_changed(0).await;
    assert_eq!((f.epoch(), (Instant::now() - start).as_millis()), (1, 0));
    f.epoch_changed(1).await;
    // Polls at 100 and 200 ms repeat epoch 1; the one at 300 ms brings epoch 2.
    assert_eq!((f.epoch(), (Instant::now() - start).as_millis()), (2, 300));
    assert_eq!(r.active().id(), &"b");
}

#[tokio::test(start_paused = true)]
async fn zero_durations_are_rejected() {
    let r = router();
    let e = Follower::builder(&r)
        .poll_interval(Duration::ZERO)
        .start(Script::new([rec("a", 1)]))
        .unwrap_err();
    assert_eq!(e.field(), "poll_interval");
    let e = Follower::builder(&r)
        .when_unreachable(WhenUnreachable::FallBackAfter(Duration::ZERO))
        .start(Script::new([rec("a", 1)]))
        .unwrap_err();
    assert_eq!(e.field(), "when_unreachable");
}

#[tokio::test(start_paused = true)]
async fn the_named_endpoint_is_the_only_active_one_and_its_switch_says_authority() {
    use crate::route::{RouteEvent, SwitchError, SwitchReason};
    let r = router();
    let mut route = r.subscribe();
    let f = Follower::builder(&r)
        .poll_interval(Duration::from_millis(100))
        .start(Script::new([rec("b", 1)]))
        .unwrap();
    let mut ev = f.subscribe();
    assert!(matches!(
        ev.recv().await,
        Some(AuthorityEvent::Followed { primary: "b", .. })
    ));
    match route.try_recv() {
        Ok(RouteEvent::Switched {
            from, to, reason, ..
        }) => assert_eq!((from, to, reason), ("a", "b", SwitchReason::Authority)),
        e => panic!("{e:?}"),
    }
    // Nothing else may take writes: a manual switch is refused, and the named endpoint going
    // down leaves it active (all down), even with `a` and `c` up and of no known role.
    assert_eq!(r.switch_to(&"c"), Err(SwitchError::NotNamed));
    let b = r.tracker().endpoint(&"b").unwrap();
    b.force_down();
    let active = r.active();
    assert_eq!((active.id(), active.is_all_down()), (&"b", true));
    b.clear();
    assert!(!r.active().is_all_down());
    assert!(
        route
            .try_recv()
            .is_ok_and(|e| matches!(e, RouteEvent::AllDownEntered { .. }))
    );
    assert!(
        route
            .try_recv()
            .is_ok_and(|e| matches!(e, RouteEvent::AllDownLeft { .. }))
    );
    assert!(route.try_recv().is_err(), "no other switch");
}

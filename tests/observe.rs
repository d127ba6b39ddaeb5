//! The core's observability under the paused clock: the health snapshot's status rules, the
//! timeline's events and the exact phases of a failover (router-driven and rediscovery-driven),
//! the ring's bound, probe coalescing, and (feature `metrics`) the metrics, read back from a
//! debugging recorder; (feature `serde`) the JSON shapes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::health::{HealthState, HealthTracker, ProbeResult, Role};
use switchover::observe::{Components, EventKind, Health, Need, Observe, Phases, Status};
use switchover::retry::{ConstantBackoff, RetryPolicy};
use switchover::route::{Discover, Failback, NoPrimary, Rediscovery, Router, SwitchReason};
use switchover::{Classification, Classify, ErrorClass};
use tokio::time::{Instant, sleep, sleep_until};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug)]
struct Refused;

impl Classify for Refused {
    fn classify(&self) -> Classification {
        Classification::transient().not_executed()
    }
}

fn setup(ids: &[&'static str]) -> (HealthTracker<&'static str>, Router<&'static str>) {
    let t = HealthTracker::new(ids.iter().copied());
    let r = Router::builder(&t)
        .endpoints(ids.iter().copied())
        .failback(Failback::Manual)
        .observe(Observe::new("test"))
        .build()
        .unwrap();
    (t, r)
}

fn kinds(r: &Router<&'static str>) -> Vec<&'static str> {
    r.timeline()
        .events()
        .iter()
        .map(|e| e.kind.name())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn snapshot_is_pass_then_warn_when_failed_over_or_a_replica_is_down_and_fail_when_all_down() {
    let (t, r) = setup(&["a:1", "b:2", "c:3"]);
    let names = Components::new("redis");
    let h = r.health(&names);
    assert_eq!(h.status, Status::Pass);
    assert_eq!(h.checks("redis:primary").len(), 1);
    assert_eq!(h.checks("redis:replica").len(), 2);
    let primary = &h.checks("redis:primary")[0];
    assert_eq!(primary.component_id, "a:1");
    assert_eq!(primary.component_type, "datastore");
    for field in [
        "role",
        "state",
        "priority",
        "generation",
        "failuresTotal",
        "ejections",
    ] {
        assert!(primary.observed.contains_key(field), "{field}");
    }

    // A replica down: warn, and the primary's check still passes.
    t.force_down(&"c:3");
    let h = r.health(&names);
    assert_eq!(h.status, Status::Warn);
    assert_eq!(h.checks("redis:primary")[0].status, Status::Pass);
    let c = h
        .checks("redis:replica")
        .iter()
        .find(|c| c.component_id == "c:3")
        .unwrap();
    assert_eq!(
        (c.status, c.output.as_str()),
        (Status::Warn, "endpoint is down")
    );

    // Failed over: warn, never fail.
    t.clear(&"c:3");
    t.force_down(&"a:1");
    let h = r.health(&names);
    assert_eq!(h.status, Status::Warn);
    assert_eq!(h.checks("redis:primary")[0].component_id, "b:2");
    assert_eq!(
        h.checks("redis:primary")[0].output,
        "failed over (generation 1)"
    );

    // Nothing can take writes: fail. A read-only user is still served by a replica: warn.
    t.endpoint(&"c:3").unwrap().set_role(Role::Replica);
    t.force_down(&"b:2");
    assert_eq!(r.health(&names).status, Status::Fail);
    assert_eq!(r.health(&names).status.http_code(), 503);
    assert_eq!(
        r.health(&names.clone().need(Need::Reads)).status,
        Status::Warn
    );
    t.force_down(&"c:3");
    assert_eq!(
        r.health(&names.clone().need(Need::Reads)).status,
        Status::Fail
    );

    // Several pools: the worst status, every check.
    let (_t2, r2) = setup(&["x:1"]);
    let all = Health::aggregate([r.health(&names), r2.health(&Components::new("postgres"))]);
    assert_eq!(all.status, Status::Fail);
    assert_eq!(all.checks("postgres:primary")[0].status, Status::Pass);
    assert_eq!(all.checks.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn dynamodb_style_names_put_every_region_under_one_key() {
    let (_t, r) = setup(&["us-east-1", "eu-west-1"]);
    let h = r.health(&Components::new("dynamodb").all("region"));
    let ids: Vec<_> = h
        .checks("dynamodb:region")
        .iter()
        .map(|c| c.component_id.as_str())
        .collect();
    assert_eq!(ids, ["us-east-1", "eu-west-1"]);
}

#[tokio::test(start_paused = true)]
async fn a_router_failover_has_exact_phases_that_add_up_to_the_call_gap() {
    let (t, r) = setup(&["a", "b"]);
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(ConstantBackoff::new(ms(10)))
        .build()
        .unwrap();
    let start = Instant::now();
    // a refuses after 5 ms; b answers in 2 ms. Attempts at 0, 15, 30 fail at 5, 20, 35 (the
    // third ejects a), the fourth starts at 45 on b (the switch) and succeeds at 47.
    let got = r
        .run(&policy, |ep| async move {
            if *ep.id() == "a" {
                sleep(ms(5)).await;
                Err(Refused)
            } else {
                sleep(ms(2)).await;
                Ok(*ep.id())
            }
        })
        .await
        .unwrap();
    assert_eq!(got, "b");
    let gap = start.elapsed();
    assert_eq!(gap, ms(47));

    let timeline = r.timeline();
    assert_eq!(kinds(&r), ["down", "switch", "failover"]);
    let events = timeline.events();
    assert_eq!(events[0].endpoint, Some("a"));
    assert_eq!(events[0].at - start, ms(35));
    let errors: Vec<_> = events[0].errors.iter().collect();
    assert_eq!(errors.len(), 3, "the three failures that ejected it");
    assert!(
        errors
            .iter()
            .all(|e| e.class == ErrorClass::Transient && !e.may_have_executed)
    );
    match &events[1].kind {
        EventKind::Switch {
            from,
            to,
            generation,
            reason,
            all_down,
        } => {
            assert_eq!(
                (*from, *to, *generation, *reason, *all_down),
                ("a", "b", 1, SwitchReason::Failover, false)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events[1].at - start, ms(45));

    let f = timeline.last_failover().unwrap();
    assert_eq!((f.from, f.to, f.generation, f.switches), ("a", "b", 1, 1));
    assert_eq!(f.started_at, start);
    assert_eq!(
        f.phases,
        phases(35, 0, 10, 2),
        "detection to the ejection, the backoff before the switch, b's answer"
    );
    assert_eq!(f.phases.total(), gap);
    assert_eq!(timeline.failover_count(), 1);

    // Later successes do not end another failover.
    r.run(&policy, |_| async { Ok::<_, Refused>(()) })
        .await
        .unwrap();
    assert_eq!(timeline.failover_count(), 1);
    assert_eq!(t.state(&"a"), Some(HealthState::Down));
}

fn phases(detection: u64, rediscovery: u64, switch: u64, first_success: u64) -> Phases {
    let mut p = Phases::default();
    p.detection = ms(detection);
    p.rediscovery = ms(rediscovery);
    p.switch = ms(switch);
    p.first_success = ms(first_success);
    p
}

/// Each run takes the scripted time and finds the scripted primary (the last one repeats).
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<VecDeque<(u64, &'static str)>>>);

impl Discover<&'static str> for Scripted {
    fn discover(&self) -> impl Future<Output = Result<&'static str, NoPrimary>> + Send {
        let mut q = self.0.lock().unwrap();
        let step = if q.len() > 1 {
            q.pop_front()
        } else {
            q.front().copied()
        };
        async move {
            let (d, p) = step.unwrap_or((0, "a"));
            sleep(ms(d)).await;
            Ok(p)
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_rediscovered_failover_reports_detection_rediscovery_switch_and_first_success() {
    let (_t, r) = setup(&["a", "b"]);
    let script = Scripted::default();
    script.0.lock().unwrap().extend([(0, "a"), (30, "b")]);
    let rd = Rediscovery::builder(&r).start(script).unwrap();
    assert_eq!(rd.primary().await.unwrap().id(), &"a");
    sleep(ms(100)).await;
    let t0 = Instant::now();
    let once = RetryPolicy::builder().max_attempts(1).build().unwrap();

    // A write starts at t0 on a, which answers "not the primary" at t0+5; the adapter puts
    // the primary in doubt. The run finds b after 30 ms (t0+35) and switches.
    let err = r
        .run(&once, |_| {
            let rd = rd.clone();
            async move {
                sleep(ms(5)).await;
                rd.suspect();
                Err::<(), _>(Refused)
            }
        })
        .await
        .unwrap_err();
    assert_eq!(err.endpoint(), Some(&"a"));
    sleep_until(t0 + ms(50)).await;
    assert_eq!(r.active().id(), &"b");
    // The next write reaches b at t0+50 and succeeds at t0+52.
    r.run(&once, |_| async {
        sleep(ms(2)).await;
        Ok::<_, Refused>(())
    })
    .await
    .unwrap();

    let f = r.timeline().last_failover().unwrap();
    assert_eq!((f.from, f.to, f.reason), ("a", "b", SwitchReason::Manual));
    assert_eq!(f.started_at, t0, "the failed write's start");
    assert_eq!(f.phases, phases(5, 30, 0, 17));
    assert_eq!(f.phases.total(), ms(52));

    let after: Vec<_> = r
        .timeline()
        .events()
        .into_iter()
        .filter(|e| e.at >= t0)
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(
        after,
        [
            "suspect",
            "rediscovery_started",
            "role",
            "switch",
            "rediscovery_finished",
            "failover"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_ring_is_bounded_and_identical_probe_results_are_one_event() {
    let t = HealthTracker::builder()
        .endpoints(["a", "b"])
        .probe(|_: &&str| async {
            ProbeResult::up()
                .with_role(Role::Primary)
                .with_latency(ms(1))
        })
        .heartbeat(ms(100))
        // Exact beats: the count below is exact.
        .heartbeat_jitter(0.0)
        .build()
        .unwrap();
    let r = Router::builder(&t)
        .endpoints(["a", "b"])
        .observe(Observe::new("ring").timeline_capacity(4))
        .build()
        .unwrap();
    sleep(ms(1050)).await;
    let events = r.timeline().events();
    // One role change each, then one merged probe event each.
    let probes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Probe { count, up, .. } => Some((e.endpoint.unwrap(), *count, *up)),
            _ => None,
        })
        .collect();
    assert_eq!(probes, [("a", 10, true), ("b", 10, true)]);
    assert_eq!(r.timeline().dropped(), 0);

    for _ in 0..5 {
        t.force_down(&"b");
        t.clear(&"b");
    }
    let tl = r.timeline();
    assert_eq!(tl.events().len(), 4);
    assert_eq!(tl.capacity(), 4);
    assert_eq!(tl.dropped(), 10);
    assert_eq!(tl.events().last().unwrap().seq, 14);
}

#[cfg(feature = "metrics")]
mod metrics_on {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use switchover::observe::names;
    use switchover::retry::RetryBudget;

    use super::recorder::{Samples, matching, take};
    use super::*;

    /// The first sample of `name` whose labels include every `(key, value)`: a counter's or a
    /// gauge's value, or the sum of a histogram's samples.
    fn value(snap: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        matching(snap, name, labels).next().map(|v| match v {
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.0,
            DebugValue::Histogram(h) => h.iter().map(|x| x.0).sum(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_switches_states_failovers_and_budget_tokens_are_reported() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let (_t, r) = setup(&["a", "b"]);
        let budget = RetryBudget::builder().name("test").build().unwrap();
        let policy = RetryPolicy::builder()
            .max_attempts(5)
            .backoff(ConstantBackoff::new(ms(10)))
            .build()
            .unwrap();
        r.call(&policy, |ep| async move {
            if *ep.id() == "a" {
                Err(Refused)
            } else {
                Ok(())
            }
        })
        .budget(&budget)
        .run()
        .await
        .unwrap();
        r.run(&policy, |_| async { Ok::<_, Refused>(()) })
            .await
            .unwrap();

        let snap = take(&snapshotter);
        let router = ("router", "test");
        assert_eq!(
            value(&snap, names::ATTEMPTS, &[router, ("outcome", "success")]),
            Some(2.0)
        );
        assert_eq!(
            value(&snap, names::ATTEMPTS, &[router, ("outcome", "transient")]),
            Some(3.0)
        );
        assert_eq!(
            value(
                &snap,
                names::SWITCHES,
                &[router, ("from", "a"), ("to", "b"), ("reason", "failover")]
            ),
            Some(1.0)
        );
        assert_eq!(value(&snap, names::GENERATION, &[router]), Some(1.0));
        let state = |ep, s| {
            value(
                &snap,
                names::ENDPOINT_STATE,
                &[router, ("endpoint", ep), ("state", s)],
            )
        };
        assert_eq!(
            (state("a", "down"), state("a", "up"), state("b", "up")),
            (Some(1.0), Some(0.0), Some(1.0))
        );
        let took = value(
            &snap,
            names::FAILOVER_DURATION,
            &[router, ("reason", "failover")],
        )
        .unwrap();
        assert!((took - 0.030).abs() < 1e-9, "{took}");
        // Three retries of 5 tokens, then the call's success puts 1 back (the second call has
        // no budget).
        assert_eq!(
            value(&snap, names::BUDGET_TOKENS, &[("budget", "test")]),
            Some(486.0)
        );
    }
}

#[cfg(feature = "metrics")]
#[path = "support/recorder.rs"]
mod recorder;

#[cfg(feature = "metrics")]
mod heartbeat_metrics {
    use metrics_util::debugging::DebuggingRecorder;
    use switchover::observe::names;

    use super::recorder::{Samples, hist, take};

    use super::*;

    /// Every heartbeat of the tracker's probe task is one `switchover.heartbeat.duration`
    /// sample, start to verdict, under its outcome; probes of a down endpoint are not
    /// heartbeats; `switchover.probe.latency` keeps what probe results report.
    #[tokio::test(start_paused = true)]
    async fn each_heartbeat_is_one_sample_of_its_duration_by_outcome() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let t = HealthTracker::builder()
            .endpoints(["up:1", "slow:2", "wrong:3"])
            .probe(|id: &&'static str| {
                let id = *id;
                async move {
                    match id {
                        "up:1" => {
                            sleep(ms(2)).await;
                            ProbeResult::up().with_latency(ms(2))
                        }
                        "slow:2" => {
                            sleep(Duration::from_secs(3600)).await;
                            ProbeResult::up()
                        }
                        _ => ProbeResult::down(),
                    }
                }
            })
            .heartbeat(ms(100))
            .heartbeat_jitter(0.0)
            .probe_timeout(ms(50))
            .build()
            .unwrap();
        let _r = Router::builder(&t)
            .endpoints(["up:1", "slow:2", "wrong:3"])
            .observe(Observe::new("beats"))
            .build()
            .unwrap();
        // Beats at 100, 200, ..., 1300 ms. The slow and the wrong endpoint miss three (the
        // failure threshold) and are down from 350 and 300 ms; their probes from 1300 ms on
        // are probes of a down (then probing) endpoint, not heartbeats.
        sleep(ms(1350)).await;
        let beats = |snap: &Samples, ep, outcome| {
            hist(
                snap,
                names::HEARTBEAT_DURATION,
                &[("router", "beats"), ("endpoint", ep), ("outcome", outcome)],
            )
        };
        let first = take(&snap);
        assert_eq!(beats(&first, "up:1", "up"), vec![0.002; 13]);
        assert_eq!(beats(&first, "slow:2", "timeout"), vec![0.05; 3]);
        assert_eq!(beats(&first, "wrong:3", "down"), vec![0.0; 3]);
        assert!(beats(&first, "slow:2", "up").is_empty());
        assert!(beats(&first, "wrong:3", "timeout").is_empty());
        assert_eq!(
            hist(&first, names::PROBE_LATENCY, &[("endpoint", "up:1")]),
            vec![0.002; 13]
        );
        assert_ne!(t.endpoint(&"slow:2").unwrap().state(), HealthState::Up);
        // Then one more beat each 100 ms, and still none of the endpoints that are not up.
        sleep(ms(300)).await;
        let next = take(&snap);
        assert_eq!(beats(&next, "up:1", "up"), vec![0.002; 3]);
        assert_eq!(
            hist(&next, names::HEARTBEAT_DURATION, &[("endpoint", "slow:2")]),
            Vec::<f64>::new()
        );
    }
}

#[cfg(feature = "serde")]
mod json {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn health_and_timeline_serialize_in_the_documented_shape() {
        let (t, r) = setup(&["a:1", "b:2"]);
        t.force_down(&"a:1");
        let h =
            serde_json::to_value(r.health(&Components::new("postgres").others("standby"))).unwrap();
        assert_eq!(h["status"], "warn");
        let primary = &h["checks"]["postgres:primary"][0];
        assert_eq!(primary["componentId"], "b:2");
        assert_eq!(primary["componentType"], "datastore");
        assert_eq!(primary["status"], "warn");
        assert_eq!(primary["observedValue"]["role"], "unknown");
        assert_eq!(primary["observedValue"]["generation"], 1);
        let time = primary["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
            "{time}"
        );
        assert_eq!(
            h["checks"]["postgres:standby"][0]["output"],
            "endpoint is down"
        );

        let tl = serde_json::to_value(r.timeline()).unwrap();
        assert_eq!(tl["name"], "test");
        assert_eq!(tl["capacity"], 256);
        let ev = &tl["events"];
        assert_eq!(ev[0]["event"], "down");
        assert_eq!(ev[0]["endpoint"], "a:1");
        assert_eq!(ev[0]["reason"], "forced down");
        assert_eq!(ev[1]["event"], "switch");
        assert_eq!(ev[1]["from"], "a:1");
        assert_eq!(ev[1]["to"], "b:2");
        assert_eq!(ev[1]["generation"], 1);
        assert_eq!(ev[1]["reason"], "failover");
    }
}

//! What a Postgres failover pool reports about itself, against real Postgres 15 servers: its
//! health document (JSON) through a kill of the primary and the promotion of its standby, and
//! through a standby's crash and restart; the timeline's switch and failover phases; and the
//! `switchover.*` and `db.client.connection.*` metrics a recorder sees under the pool's names.
//! Real time (real servers): outcomes are asserted, figures are printed.

use std::time::Duration;

use serde_json::Value;
use switchover::observe::{EventKind, Observe, Status};
use switchover::postgres::{Error, FailoverPool, FailoverPoolBuilder};
use switchover::retry::RetryPolicy;
use switchover::testing::{PgCluster, PgNode};
use tokio::time::{Instant, sleep, timeout};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{Samples, assert_heartbeat_rate, counter, gauge, hist, recorder, take, value};

/// Bounds every step that could hang if the pool were wrong.
const BOUND: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

fn addr(node: &PgNode) -> String {
    format!("{}:{}", node.host(), node.port())
}

/// A pool over the cluster's nodes, observed as `name`, with short deadlines.
fn builder(cluster: &PgCluster, name: &'static str) -> FailoverPoolBuilder {
    FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .hosts(
            cluster
                .nodes()
                .iter()
                .map(|n| (n.host().to_owned(), n.port())),
        )
        .max_size(4)
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(200)
                .deadline(Duration::from_secs(20))
                .build()
                .unwrap(),
        )
        .observe(Observe::new(name))
}

async fn insert(pool: &FailoverPool) -> Result<u64, Error> {
    pool.run(|conn| {
        Box::pin(async move { conn.execute("INSERT INTO items DEFAULT VALUES", &[]).await })
    })
    .await
}

fn json(pool: &FailoverPool) -> Value {
    serde_json::to_value(pool.health()).unwrap()
}

/// Polls the pool's health until `done` holds; returns the document that satisfied it.
async fn health_until(pool: &FailoverPool, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let h = json(pool);
        if done(&h) {
            return h;
        }
        assert!(start.elapsed() < BOUND, "health never became {what}: {h:#}");
        sleep(POLL).await;
    }
}

fn check<'a>(health: &'a Value, key: &str, id: &str) -> &'a Value {
    health["checks"][key]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["componentId"] == id))
        .unwrap_or_else(|| panic!("no {key} check for {id}: {health:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_timeline_and_metrics_through_a_kill_and_a_promotion() {
    let snapshotter = recorder();
    let mut cluster = PgCluster::start(1).await.unwrap();
    cluster
        .primary()
        .sql("CREATE TABLE items (id bigserial PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_for_replay(1, Duration::from_secs(30))
        .await
        .unwrap();
    let (old, new) = (addr(&cluster.nodes()[0]), addr(&cluster.nodes()[1]));
    let pool = builder(&cluster, "pg-orders").build().unwrap();
    timeout(BOUND, insert(&pool)).await.unwrap().unwrap();

    // Before: the first host is the confirmed primary, the standby is up.
    let before = health_until(&pool, "pass", |h| h["status"] == "pass").await;
    println!("before:\n{before:#}");
    let primary = check(&before, "postgres:primary", &old);
    assert_eq!(primary["observedValue"]["serverRole"], "primary");
    assert_eq!(primary["observedValue"]["inDoubt"], false);
    let standby = check(&before, "postgres:standby", &new);
    assert_eq!(standby["observedValue"]["serverRole"], "standby");
    assert_eq!(standby["status"], "pass");

    // During: writes keep coming while the primary dies; with no primary confirmed, the
    // health fails (writes cannot be served).
    let workload = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(8) {
                let _ = insert(&pool).await;
                sleep(Duration::from_millis(50)).await;
            }
        })
    };
    cluster.kill_primary().await.unwrap();
    let during = health_until(&pool, "fail", |h| h["status"] == "fail").await;
    println!("during:\n{during:#}");
    let primary = check(&during, "postgres:primary", &old);
    assert_eq!(primary["status"], "fail");
    assert_eq!(Status::Fail.http_code(), 503);

    // After: the promoted standby is the confirmed primary; the old one is down, so the
    // document warns (failed over, a host down) and serves (HTTP 200).
    cluster.promote(1).await.unwrap();
    timeout(BOUND, insert(&pool)).await.unwrap().unwrap();
    let after = health_until(&pool, "served by the new primary", |h| {
        h["status"] != "fail"
            && h["checks"]["postgres:primary"][0]["componentId"] == new.as_str()
            && h["checks"]["postgres:primary"][0]["observedValue"]["inDoubt"] == false
    })
    .await;
    println!("after:\n{after:#}");
    assert_eq!(after["status"], "warn");
    let primary = check(&after, "postgres:primary", &new);
    assert_eq!(primary["observedValue"]["serverRole"], "primary");
    assert!(primary["observedValue"]["generation"].as_u64().unwrap() >= 1);
    assert_eq!(check(&after, "postgres:standby", &old)["status"], "warn");
    workload.await.unwrap();

    // The timeline has the switch to the new primary and the failover with its phases.
    let timeline = pool.timeline();
    assert_eq!(timeline.name(), "pg-orders");
    let events = timeline.events();
    let switch = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Switch { from, to, .. } => Some((from.to_string(), to.to_string())),
            _ => None,
        })
        .expect("a switch event");
    assert_eq!(switch, (old.clone(), new.clone()));
    let kinds: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
    // Suspected, then switched, then the failover closed by the first success.
    let at = |kind| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} in {kinds:?}"))
    };
    assert!(
        at("suspect") < at("switch") && at("switch") < at("failover"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"rediscovery_finished"), "{kinds:?}");
    let failover = timeline.last_failover().expect("a measured failover");
    assert_eq!(
        (&*failover.from, &*failover.to),
        (old.as_str(), new.as_str())
    );
    let p = failover.phases;
    assert!(p.total() > Duration::ZERO);
    assert_eq!(
        p.total(),
        failover.ended_at.duration_since(failover.started_at)
    );
    println!(
        "failover: detection {:?} rediscovery {:?} switch {:?} first success {:?}; total {:?}",
        p.detection,
        p.rediscovery,
        p.switch,
        p.first_success,
        p.total()
    );
    println!("timeline:\n{:#}", serde_json::to_value(&timeline).unwrap());

    // The recorder saw the switch under the pool's router label, and the deadpool pools'
    // sizes under their pool names (sampled every second).
    sleep(Duration::from_millis(1_100)).await;
    let metrics = snapshotter.snapshot().into_vec();
    let switches = counter(
        &metrics,
        "switchover.switches",
        &[("router", "pg-orders"), ("to", new.as_str())],
    );
    assert!(switches >= 1, "no switch to {new} recorded");
    for side in ["pg-orders:main", "pg-orders:read"] {
        let pool_label = [("db.client.connection.pool.name", side)];
        assert_eq!(
            gauge(&metrics, "db.client.connection.max", &pool_label),
            Some(4.0),
            "{side}"
        );
        assert_eq!(
            gauge(
                &metrics,
                "db.client.connection.pending_requests",
                &pool_label
            ),
            Some(0.0),
            "{side}"
        );
    }
    let main = |state| {
        gauge(
            &metrics,
            "db.client.connection.count",
            &[
                ("db.client.connection.pool.name", "pg-orders:main"),
                ("db.client.connection.state", state),
            ],
        )
    };
    let (idle, used) = (main("idle").unwrap(), main("used").unwrap());
    assert!(idle >= 1.0 && used == 0.0, "idle {idle} used {used}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_down_warns_and_its_restart_passes_again() {
    recorder();
    let mut cluster = PgCluster::start(1).await.unwrap();
    let (primary, standby) = (addr(&cluster.nodes()[0]), addr(&cluster.nodes()[1]));
    let pool = builder(&cluster, "pg-standby").build().unwrap();
    drop(timeout(BOUND, pool.get_read()).await.unwrap().unwrap());
    health_until(&pool, "pass", |h| h["status"] == "pass").await;

    // The standby crashes; reads notice it and it is marked down: served, so warn.
    cluster.node_mut(1).unwrap().kill().await.unwrap();
    let start = Instant::now();
    let down = loop {
        // Reads prefer the standby: their failed connects record it down.
        let _ = timeout(BOUND, pool.get_read()).await.unwrap();
        let h = json(&pool);
        if check(&h, "postgres:standby", &standby)["status"] == "warn" {
            break h;
        }
        assert!(start.elapsed() < BOUND, "standby never marked down: {h:#}");
        sleep(POLL).await;
    };
    println!("standby down:\n{down:#}");
    assert_eq!(down["status"], "warn");
    assert_eq!(check(&down, "postgres:primary", &primary)["status"], "pass");
    assert_eq!(
        check(&down, "postgres:standby", &standby)["observedValue"]["state"],
        "down"
    );

    // Restarted, its probes bring it back up: pass.
    cluster.node_mut(1).unwrap().restart().await.unwrap();
    let back = health_until(&pool, "pass", |h| h["status"] == "pass").await;
    assert_eq!(
        check(&back, "postgres:standby", &standby)["observedValue"]["state"],
        "up"
    );
    let kinds: Vec<_> = pool
        .timeline()
        .events()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert!(
        kinds.contains(&"down") && kinds.contains(&"up"),
        "{kinds:?}"
    );
}

/// The pool's `db.client.connection.*` times and the hosts' heartbeats after real traffic, on
/// a recorder of this test only (current-thread runtime: every task of the pool records to it):
/// `create_time` counts the connections made, `wait_time` the checkouts, `use_time` the
/// checkouts returned, `timeouts` a full pool's wait; the heartbeat beats at its rate.
#[tokio::test]
async fn connection_times_timeouts_and_heartbeats_after_real_traffic() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cluster = PgCluster::start(0).await.unwrap();
    let primary = addr(cluster.primary());
    let pool = builder(&cluster, "pg-times").max_size(2).build().unwrap();
    let main = [("db.client.connection.pool.name", "pg-times:main")];
    let times = |s: &Samples, n: &str| hist(s, &format!("db.client.connection.{n}"), &main);

    // Ten runs one after the other: one connection made, ten checkouts, ten returned.
    for _ in 0..10 {
        let run = pool.run(|c| Box::pin(async move { c.simple_query("SELECT 1").await.map(drop) }));
        timeout(BOUND, run).await.unwrap().unwrap();
    }
    // Two held at once: a second connection.
    let a = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    let b = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    sleep(Duration::from_millis(1_100)).await; // deadpool's sizes are sampled every second
    let held = take(&snap);
    let (create, wait, used) = (
        times(&held, "create_time"),
        times(&held, "wait_time"),
        times(&held, "use_time"),
    );
    println!("create_time {create:?}\nwait_time {wait:?}\nuse_time {used:?}");
    assert_eq!((create.len(), wait.len(), used.len()), (2, 12, 10));
    assert!(create.iter().all(|t| *t > 0.0 && *t < 1.5), "{create:?}");
    assert!(wait.iter().all(|t| *t >= 0.0 && *t < 3.0), "{wait:?}");
    assert!(used.iter().all(|t| *t > 0.0 && *t < 2.0), "{used:?}");
    let count = |s: &Samples, state| {
        let labels = [main[0], ("db.client.connection.state", state)];
        value(s, "db.client.connection.count", &labels)
    };
    assert_eq!(
        (count(&held, "idle"), count(&held, "used")),
        (Some(0.0), Some(2.0))
    );
    assert_eq!(value(&held, "db.client.connection.max", &main), Some(2.0));
    assert_eq!(
        value(&held, "db.client.connection.timeouts", &main),
        Some(0.0)
    );

    // A third waits for a free slot until its acquire timeout (3 s): one timeout, no wait
    // recorded.
    let full = timeout(BOUND, pool.get()).await.unwrap();
    assert!(full.is_err(), "a full pool gives no third connection");
    drop((a, b));
    let after = take(&snap);
    assert_eq!(
        value(&after, "db.client.connection.timeouts", &main),
        Some(1.0)
    );
    let (create, wait, used) = (
        times(&after, "create_time"),
        times(&after, "wait_time"),
        times(&after, "use_time"),
    );
    assert_eq!((create.len(), wait.len(), used.len()), (0, 0, 2));
    assert!(used.iter().all(|t| *t >= 4.0 && *t < 10.0), "{used:?}");

    // The primary's heartbeat (200 ms, jittered to 160-200 ms) over a measured window.
    let started = Instant::now();
    sleep(Duration::from_secs(2)).await;
    let beats = take(&snap);
    let window = started.elapsed().as_secs_f64();
    assert_heartbeat_rate(&beats, "pg-times", &[primary.as_str()], window);
    pool.close();
}

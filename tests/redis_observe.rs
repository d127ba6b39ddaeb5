//! What a Redis `SplitPool` reports about itself, against real redis-server and redis-sentinel
//! processes: its health document (JSON) through a Sentinel failover, the timeline's switch
//! and phases, and the `switchover.*` metrics a recorder sees under the pool's router label.
//! Real time (real servers): outcomes and generous bounds are asserted, figures are printed.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use switchover::observe::{EventKind, Observe, Status};
use switchover::redis::{SplitPool, Target};
use switchover::testing::{RedisReplicaSet, RedisSentinel, RedisServer};
use tokio::time::{Instant, sleep, timeout};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::{Samples, assert_heartbeat_rate, counter, hist, recorder, take, value};

const BOUND: Duration = Duration::from_secs(30);
const ROUTER: &str = "redis-obs";

fn json(pool: &SplitPool) -> Value {
    serde_json::to_value(pool.health()).expect("health serializes")
}

fn checks<'a>(health: &'a Value, key: &str) -> &'a [Value] {
    health["checks"][key].as_array().map_or(&[], Vec::as_slice)
}

/// Polls the health until `pass`, within the bound.
async fn until_pass(pool: &SplitPool, what: &str) -> Value {
    timeout(BOUND, async {
        loop {
            let health = json(pool);
            if health["status"] == "pass" {
                return health;
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: health never passed: {}", json(pool)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_timeline_and_metrics_through_a_sentinel_failover() {
    recorder();
    let mut sentinel = RedisSentinel::start(2, 1).await.expect("sentinel fixture");
    let pool = SplitPool::builder()
        .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(sentinel.master_name())
        .observe(Observe::new(ROUTER).timeline_capacity(512))
        .build()
        .await
        .expect("pool through sentinel");
    assert_eq!(pool.timeline().name(), ROUTER);
    let old = sentinel.replica_set().primary().addr();
    let mut con = pool.idempotent();
    for i in 0..10 {
        let _: () = con.set(format!("k{i}"), i).await.expect("steady SET");
    }

    // Steady: pass, the primary confirmed, both replicas linked.
    let health = until_pass(&pool, "steady").await;
    println!("health steady: {health}");
    let primary = &checks(&health, "redis:primary")[0];
    assert_eq!(primary["componentId"], old.to_string());
    assert_eq!(primary["observedValue"]["role"], "primary");
    assert_eq!(primary["observedValue"]["inDoubt"], false);
    assert_eq!(primary["observedValue"]["generation"], 0);
    let replicas = checks(&health, "redis:replica");
    assert_eq!(replicas.len(), 2, "{health}");
    for r in replicas {
        assert_eq!(r["observedValue"]["role"], "replica", "{r}");
        assert_eq!(r["observedValue"]["linkUp"], true, "{r}");
        assert!(r["observedValue"]["lagBytes"].is_u64(), "{r}");
    }

    // Kill the primary; a watcher samples the health while the writes ride out the failover.
    let done = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let watcher = tokio::spawn({
        let (pool, done, seen) = (pool.clone(), Arc::clone(&done), Arc::clone(&seen));
        async move {
            while !done.load(Relaxed) {
                let health = json(&pool);
                {
                    let mut seen = seen.lock().unwrap();
                    if seen.last().map(|h| &h["status"]) != Some(&health["status"]) {
                        seen.push(health);
                    }
                }
                sleep(Duration::from_millis(10)).await;
            }
        }
    });
    sentinel.kill_primary().await.expect("kill primary");
    let started = Instant::now();
    let mut written = false;
    while started.elapsed() < BOUND {
        if con.set::<_, _, ()>("after", 2).await.is_ok() {
            written = true;
            break;
        }
    }
    assert!(written, "a write succeeded after the failover");
    let gap = started.elapsed();
    let new = sentinel
        .wait_for_failover(old, BOUND)
        .await
        .expect("sentinel failover");
    assert_eq!(pool.primary_addr(), new.to_string());
    done.store(true, Relaxed);
    watcher.await.expect("watcher");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let statuses: Vec<&str> = seen.iter().map(|h| h["status"].as_str().unwrap()).collect();
    println!("health statuses during the failover: {statuses:?}");
    let degraded = seen
        .iter()
        .find(|h| h["status"] != "pass")
        .unwrap_or_else(|| panic!("never degraded: {statuses:?}"));
    println!("health during the failover: {degraded}");
    // Sentinel takes seconds to elect a new primary: meanwhile no node takes writes.
    let failed = seen
        .iter()
        .find(|h| h["status"] == "fail")
        .unwrap_or_else(|| panic!("never failed while no node took writes: {statuses:?}"));
    println!("health failing during the failover: {failed}");
    let primary = &checks(failed, "redis:primary")[0];
    assert_eq!(primary["status"], "fail", "{failed}");
    assert_eq!(primary["observedValue"]["inDoubt"], true, "{failed}");

    // Right after: warn (the old primary is down, a replica of its own slot), writes served.
    let health = json(&pool);
    println!("health after the switch: {health}");
    assert_ne!(health["status"], "fail", "{health}");
    let primary = &checks(&health, "redis:primary")[0];
    assert_eq!(primary["componentId"], new.to_string(), "{health}");
    assert_eq!(primary["observedValue"]["inDoubt"], false, "{health}");
    assert!(primary["observedValue"]["generation"].as_u64().unwrap() >= 1);
    let old_check = checks(&health, "redis:replica")
        .iter()
        .find(|c| c["componentId"] == old.to_string())
        .unwrap_or_else(|| panic!("a check of the old primary in {health}"));
    assert_eq!(old_check["status"], "warn", "{old_check}");
    assert_eq!(pool.health().status, Status::Warn);

    // The timeline has the switch, and the failover with its phases.
    let events = pool.timeline().events();
    assert!(
        events.iter().any(|e| matches!(&e.kind,
            EventKind::Switch { from, to, .. } if from.name() == old.to_string() && to.name() == new.to_string())),
        "{events:?}"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    println!("timeline: {kinds:?}");
    let failover = pool.timeline().last_failover().expect("a failover");
    assert_eq!(failover.from.name(), old.to_string());
    assert_eq!(failover.to.name(), new.to_string());
    let p = failover.phases;
    assert_eq!(
        p.detection + p.rediscovery + p.switch + p.first_success,
        p.total()
    );
    println!(
        "failover: detection {:?} rediscovery {:?} switch {:?} first success {:?} \
         (total {:?}; the workload's write took {gap:?} after the kill)",
        p.detection,
        p.rediscovery,
        p.switch,
        p.first_success,
        p.total()
    );
    assert!(
        p.total() <= gap + Duration::from_millis(50),
        "{p:?} vs {gap:?}"
    );
    let timeline = serde_json::to_value(pool.timeline()).expect("timeline serializes");
    assert_eq!(
        timeline["failovers"][0]["from"],
        old.to_string(),
        "{timeline}"
    );

    // The old primary comes back as a replica of the new one: pass again.
    let index = sentinel
        .replica_set()
        .nodes()
        .iter()
        .position(|n: &RedisServer| n.addr() == old)
        .expect("old primary in the set");
    sentinel
        .replica_set_mut()
        .node_mut(index)
        .expect("old primary")
        .restart_as_replica_of(new)
        .await
        .expect("restart as a replica");
    let health = until_pass(&pool, "after the restart").await;
    println!("health after the old primary rejoined: {health}");
    assert_eq!(
        checks(&health, "redis:primary")[0]["componentId"],
        new.to_string()
    );
    assert_eq!(checks(&health, "redis:replica").len(), 2, "{health}");

    // The recorder saw the switch under the pool's router label.
    let metrics = recorder().snapshot().into_vec();
    let switches = counter(&metrics, "switchover.switches", &[("router", ROUTER)]);
    let switch_events = pool
        .timeline()
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Switch { .. }))
        .count() as u64;
    assert!(switch_events >= 1);
    assert_eq!(
        switches, switch_events,
        "one switchover.switches per switch in the timeline, under router={ROUTER}"
    );
    assert!(
        counter(
            &metrics,
            "switchover.attempts",
            &[("router", ROUTER), ("outcome", "success")]
        ) >= 10
    );
    pool.close();
}

/// Polls the health until its status is `status`, within the bound.
async fn until_status(pool: &SplitPool, status: &str, what: &str) -> Value {
    timeout(BOUND, async {
        loop {
            let health = json(pool);
            if health["status"] == status {
                return health;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: health never {status}: {}", json(pool)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_replica_warns_and_a_lost_primary_fails() {
    recorder();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    set.wait_for_sync(BOUND).await.expect("replica in sync");
    // The default name, and a short backstop so that discovery sees the replica go.
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .discovery_interval(Duration::from_millis(100))
        .build()
        .await
        .expect("static pool");
    assert_eq!(pool.timeline().name(), "redis");
    let mut con = pool.clone();
    let _: () = con.set("k", 1).await.expect("SET");
    until_status(&pool, "pass", "steady").await;
    let replica = set.nodes()[1].addr().to_string();

    // The replica goes: warn, writes still served by the primary.
    set.node_mut(1)
        .expect("replica")
        .kill()
        .await
        .expect("kill replica");
    let health = until_status(&pool, "warn", "replica killed").await;
    println!("health with the replica down: {health}");
    let r = checks(&health, "redis:replica")
        .iter()
        .find(|c| c["componentId"] == replica)
        .unwrap_or_else(|| panic!("a check of {replica} in {health}"));
    assert_eq!(r["status"], "warn", "{r}");
    assert_eq!(
        checks(&health, "redis:primary")[0]["status"],
        "pass",
        "{health}"
    );
    let _: () = con.set("k", 2).await.expect("SET with the replica down");

    // The primary goes too: nothing takes writes, fail (503).
    set.node_mut(0)
        .expect("primary")
        .kill()
        .await
        .expect("kill primary");
    let _ = con.set::<_, _, ()>("k", 3).await;
    let health = until_status(&pool, "fail", "primary killed").await;
    println!("health with every node down: {health}");
    let primary = &checks(&health, "redis:primary")[0];
    assert_eq!(primary["status"], "fail", "{health}");
    assert_eq!(primary["observedValue"]["inDoubt"], true, "{health}");
    assert_eq!(pool.health().status.http_code(), 503);
    pool.close();
}

/// Each node's shared connection and dedicated pool as `db.client.connection.*`, and the
/// nodes' heartbeats, after real traffic, on a recorder of this test only (current-thread
/// runtime: every task of the pool records to it).
#[tokio::test]
async fn shared_and_dedicated_connections_and_heartbeats_are_measured() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    set.wait_for_sync(BOUND).await.expect("replica in sync");
    let (primary, replica) = (
        set.nodes()[0].addr().to_string(),
        set.nodes()[1].addr().to_string(),
    );
    let pool = SplitPool::builder()
        .nodes([primary.clone(), replica.clone()])
        .dedicated_pool_size(2)
        .observe(Observe::new("redis-pool"))
        .build()
        .await
        .expect("static pool");
    let name = |kind: &str, node: &str| format!("redis-pool:{kind}:{node}");
    let (shared_p, shared_r) = (name("shared", &primary), name("shared", &replica));
    let dedicated = name("dedicated", &primary);
    let pool_of = |p: &str| [("db.client.connection.pool.name", p.to_owned())];
    let times = |s: &Samples, p: &str, n: &str| {
        let l = pool_of(p);
        hist(
            s,
            &format!("db.client.connection.{n}"),
            &[(l[0].0, l[0].1.as_str())],
        )
    };
    let gauge = |s: &Samples, p: &str, n: &str, state: Option<&str>| {
        let mut l = vec![("db.client.connection.pool.name", p)];
        l.extend(state.map(|st| ("db.client.connection.state", st)));
        value(s, &format!("db.client.connection.{n}"), &l)
    };

    // Writes to the primary and reads from the replica, on their shared connections.
    let mut con = pool.clone();
    for i in 0..50 {
        let _: () = con.set("k", i).await.expect("SET");
        let _: Option<i64> = con.get("k").await.expect("GET");
    }
    // Three dedicated connections one after the other (one made, reused after its check),
    // then two at once (a second made).
    for _ in 0..3 {
        let mut d = pool.dedicated(Target::Primary).await.expect("dedicated");
        let _: String = redis::cmd("PING").query_async(&mut d).await.expect("PING");
    }
    let a = pool.dedicated(Target::Primary).await.expect("first of two");
    let b = pool
        .dedicated(Target::Primary)
        .await
        .expect("second of two");
    let held = take(&snap);
    for shared in [&shared_p, &shared_r] {
        assert_eq!(times(&held, shared, "create_time").len(), 1, "{shared}");
        assert_eq!(
            gauge(&held, shared, "count", Some("used")),
            Some(1.0),
            "{shared}"
        );
        assert_eq!(gauge(&held, shared, "max", None), Some(1.0), "{shared}");
        assert!(
            times(&held, shared, "wait_time").is_empty(),
            "{shared}: no checkout"
        );
    }
    let (create, wait, used) = (
        times(&held, &dedicated, "create_time"),
        times(&held, &dedicated, "wait_time"),
        times(&held, &dedicated, "use_time"),
    );
    println!("dedicated: create_time {create:?}\nwait_time {wait:?}\nuse_time {used:?}");
    assert_eq!((create.len(), wait.len(), used.len()), (2, 5, 3));
    assert!(
        create
            .iter()
            .chain(&wait)
            .chain(&used)
            .all(|t| *t > 0.0 && *t < 2.0)
    );
    assert_eq!(gauge(&held, &dedicated, "count", Some("used")), Some(2.0));
    assert_eq!(gauge(&held, &dedicated, "count", Some("idle")), Some(0.0));
    assert_eq!(gauge(&held, &dedicated, "max", None), Some(2.0));

    // A third waits for a slot (pending) and times out after its wait (4 x connect, 1 s).
    let third = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.dedicated(Target::Primary).await.map(drop) })
    };
    sleep(Duration::from_millis(300)).await;
    let waiting = take(&snap);
    assert_eq!(
        gauge(&waiting, &dedicated, "pending_requests", None),
        Some(1.0)
    );
    assert!(third.await.expect("task").is_err(), "no third slot");
    drop((a, b));
    let after = take(&snap);
    assert_eq!(gauge(&after, &dedicated, "timeouts", None), Some(1.0));
    assert_eq!(
        gauge(&after, &dedicated, "pending_requests", None),
        Some(0.0)
    );
    assert_eq!(gauge(&after, &dedicated, "count", Some("idle")), Some(2.0));
    assert_eq!(gauge(&after, &dedicated, "count", Some("used")), Some(0.0));
    assert_eq!(times(&after, &dedicated, "use_time").len(), 2);
    assert!(times(&after, &dedicated, "wait_time").is_empty());

    // Every node's heartbeat over a measured window.
    let started = Instant::now();
    sleep(Duration::from_secs(2)).await;
    let beats = take(&snap);
    let window = started.elapsed().as_secs_f64();
    assert_heartbeat_rate(&beats, "redis-pool", &[&primary, &replica], window);
    pool.close();
}

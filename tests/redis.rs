//! The Redis split pool against real `redis-server` replica sets and Sentinel.
//!
//! Placement is checked on the servers (`INFO commandstats`), not by trusting the pool's routing.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use switchover::redis::{SplitPool, Target};
use switchover::testing::{FaultProxy, Mode, RedisReplicaSet, RedisSentinel, RedisServer};
use tokio::time::{Instant, timeout};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Generous bound for anything that should finish "within the deadline".
const DEADLINE: Duration = Duration::from_secs(30);

/// `calls` and `rejected_calls` of one command from `INFO commandstats`.
async fn cmdstat(node: &RedisServer, command: &str) -> (u64, u64) {
    let reply = node
        .cmd(&["INFO", "commandstats"])
        .await
        .expect("INFO commandstats");
    let text = reply.as_str().expect("INFO is text").to_owned();
    let prefix = format!("cmdstat_{command}:");
    let Some(line) = text.lines().find(|l| l.starts_with(&prefix)) else {
        return (0, 0);
    };
    let fields: HashMap<&str, u64> = line[prefix.len()..]
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect();
    (
        fields.get("calls").copied().unwrap_or(0),
        fields.get("rejected_calls").copied().unwrap_or(0),
    )
}

async fn reset_stats(nodes: &[RedisServer]) {
    for n in nodes {
        n.cmd(&["CONFIG", "RESETSTAT"])
            .await
            .expect("CONFIG RESETSTAT");
    }
}

async fn static_pool(set: &RedisReplicaSet) -> SplitPool {
    SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .build()
        .await
        .expect("pool over the replica set")
}

/// Writes `key` until a write succeeds (each call rides out a failover within its retry
/// deadline, or is repeated); fails the test after [`DEADLINE`].
async fn write_until_it_lands(con: &mut SplitPool, key: &str, value: i64) {
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if con.set::<_, _, ()>(key, value).await.is_ok() {
            return;
        }
    }
    panic!("no write of {key} succeeded after the failover within {DEADLINE:?}");
}

async fn get_on(node: &RedisServer, key: &str) -> Option<String> {
    node.cmd(&["GET", key])
        .await
        .ok()?
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_land_on_replicas_and_writes_on_the_primary() {
    let set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    assert_eq!(pool.primary_addr(), set.primary().addr().to_string());
    reset_stats(set.nodes()).await;

    let mut con = pool.clone();
    for i in 0..20 {
        let _: () = con.set(format!("k{i}"), i).await.expect("SET");
    }
    for i in 0..40 {
        let _: Option<i64> = con.get(format!("k{}", i % 20)).await.expect("GET");
    }
    let mut reads = redis::pipe();
    reads.get("k1").get("k2");
    let _: (Option<i64>, Option<i64>) = reads.query_async(&mut con).await.expect("read pipeline");
    let mut tx = redis::pipe();
    tx.atomic().get("k1").set("k1", 100);
    let _: (Option<i64>, ()) = tx.query_async(&mut con).await.expect("write transaction");

    let primary = set.primary();
    let (primary_sets, _) = cmdstat(primary, "set").await;
    let (primary_gets, _) = cmdstat(primary, "get").await;
    assert_eq!(primary_sets, 21, "every SET ran on the primary");
    assert_eq!(
        primary_gets, 1,
        "only the GET inside the write transaction ran on the primary"
    );
    let mut replica_gets = Vec::new();
    for r in set.replicas() {
        let (gets, _) = cmdstat(r, "get").await;
        let (_, rejected) = cmdstat(r, "set").await;
        assert_eq!(rejected, 0, "no SET was ever sent to replica {}", r.addr());
        replica_gets.push(gets);
    }
    assert_eq!(
        replica_gets.iter().sum::<u64>(),
        42,
        "plain reads and the read pipeline ran on replicas"
    );
    assert!(
        replica_gets.iter().all(|g| *g > 0),
        "reads spread over both replicas: {replica_gets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_on_a_promoted_replica_and_none_is_lost_after_the_kill() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    let writer = pool.idempotent();

    let workload = tokio::spawn({
        let mut con = writer.clone();
        async move {
            let mut acked: Vec<(u64, Instant)> = Vec::new();
            let mut failed = 0u64;
            for i in 0..600u64 {
                match con.set::<_, _, ()>(format!("w{i}"), i).await {
                    Ok(()) => acked.push((i, Instant::now())),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    set.kill_primary().await.expect("kill primary");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    set.promote(1).await.expect("promote node 1");
    let (acked, failed) = timeout(Duration::from_secs(60), workload)
        .await
        .expect("workload ends")
        .expect("workload task");

    assert_eq!(
        pool.primary_addr(),
        set.nodes()[1].addr().to_string(),
        "the pool follows the promotion"
    );
    assert!(pool.status().switches >= 1);
    assert_eq!(
        failed, 0,
        "idempotent writes are retried through the failover"
    );
    let new_primary = &set.nodes()[1];
    let mut lost_before_kill = 0;
    for (i, at) in &acked {
        let have = get_on(new_primary, &format!("w{i}")).await;
        if have.as_deref() != Some(i.to_string().as_str()) {
            assert!(
                *at < killed_at,
                "write w{i} was acknowledged after the kill but the new primary lacks it"
            );
            lost_before_kill += 1;
        }
    }
    println!(
        "acknowledged {} writes; lost to asynchronous replication before the kill: {lost_before_kill}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_write_is_retried_on_the_new_primary_even_if_not_idempotent() {
    init_tracing();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    // No periodic discovery during the test: the pool learns of the demotion from READONLY.
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .discovery_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("pool over the replica set");
    let mut con = pool.clone(); // not idempotent
    let _: () = con.set("counter", 0).await.expect("SET");
    // Demote the primary without killing it: it now answers writes with READONLY.
    set.promote(1).await.expect("swap roles");
    let old = &set.nodes()[0];
    assert_eq!(old.role().await.expect("ROLE"), "slave");
    reset_stats(set.nodes()).await;

    let n: i64 = timeout(DEADLINE, con.incr("counter", 1))
        .await
        .expect("in time")
        .expect("INCR");
    assert_eq!(n, 1, "the INCR ran exactly once");
    // redis-rs sends INCR as INCRBY.
    assert_eq!(
        cmdstat(old, "incrby").await.1,
        1,
        "the INCR first reached the demoted primary, which refused it with READONLY"
    );
    assert_eq!(
        cmdstat(&set.nodes()[1], "incrby").await,
        (1, 0),
        "then ran once on the new primary"
    );
    assert_eq!(pool.primary_addr(), set.nodes()[1].addr().to_string());
    assert_eq!(
        get_on(&set.nodes()[1], "counter").await.as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_partly_ran_on_a_demoted_primary_is_not_repeated() {
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .discovery_interval(Duration::from_secs(3600))
        .build()
        .await
        .expect("pool over the replica set");
    let mut con = pool.clone(); // not idempotent
    let _: () = con.set("warm", 1).await.expect("SET");
    set.promote(1).await.expect("swap roles");
    reset_stats(set.nodes()).await;

    // PUBLISH runs on a replica; the SET is refused with READONLY: the pipeline partly ran.
    let mut p = redis::pipe();
    p.cmd("PUBLISH").arg("news").arg("once").set("k", 1);
    let r: redis::RedisResult<(i64, ())> = timeout(DEADLINE, p.query_async(&mut con))
        .await
        .expect("in time");
    assert!(r.is_err(), "a partly run pipeline is not retried: {r:?}");
    assert_eq!(cmdstat(&set.nodes()[0], "publish").await.0, 1);
    assert_eq!(
        cmdstat(&set.nodes()[1], "publish").await.0,
        0,
        "the PUBLISH was not repeated on the new primary"
    );

    // The same pipeline through an idempotent handle is retried on the new primary.
    let mut idem = pool.idempotent();
    let (_, ()): (i64, ()) = timeout(DEADLINE, p.query_async(&mut idem))
        .await
        .expect("in time")
        .expect("retried on the new primary");
    assert_eq!(get_on(&set.nodes()[1], "k").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_sentinel_failover_without_restart() {
    let mut sentinel = RedisSentinel::start(2, 1).await.expect("sentinel fixture");
    let pool = SplitPool::builder()
        .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(sentinel.master_name())
        .build()
        .await
        .expect("pool through sentinel");
    let old = sentinel.replica_set().primary().addr();
    assert_eq!(pool.primary_addr(), old.to_string());
    let mut con = pool.idempotent();
    let _: () = con.set("before", 1).await.expect("SET before");

    sentinel.kill_primary().await.expect("kill primary");
    // Keep writing: each call rides out the failover within its retry deadline, or is repeated.
    write_until_it_lands(&mut con, "after", 2).await;
    let new = sentinel
        .wait_for_failover(old, DEADLINE)
        .await
        .expect("sentinel failover");
    assert_ne!(new, old);
    assert_eq!(
        pool.primary_addr(),
        new.to_string(),
        "the pool follows Sentinel's choice"
    );
    let new_node = sentinel
        .replica_set()
        .nodes()
        .iter()
        .find(|n| n.addr() == new)
        .expect("new primary is in the set");
    assert_eq!(get_on(new_node, "after").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_away_from_a_paused_replica() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    let mut con = pool.clone();
    let _: () = con.set("k", "v").await.expect("SET");
    set.wait_for_sync(DEADLINE).await.expect("replicas in sync");
    let paused = set.nodes()[1].addr().to_string();
    set.node_mut(1).expect("node 1").pause().expect("SIGSTOP");

    let started = Instant::now();
    for _ in 0..30 {
        let v: Option<String> = timeout(DEADLINE, con.get("k"))
            .await
            .expect("read in time")
            .expect("GET");
        assert_eq!(v.as_deref(), Some("v"));
    }
    // The health tracker has taken it out of rotation.
    let mut excluded = false;
    while started.elapsed() < DEADLINE {
        if !pool.replica_addrs().contains(&paused) {
            excluded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(excluded, "the paused replica left the read rotation");
    reset_stats(&set.nodes()[2..]).await;
    for _ in 0..10 {
        let _: Option<String> = timeout(DEADLINE, con.get("k"))
            .await
            .expect("in time")
            .expect("GET");
    }
    assert_eq!(
        cmdstat(&set.nodes()[2], "get").await.0,
        10,
        "reads go to the live replica"
    );
    set.node_mut(1).expect("node 1").resume().expect("SIGCONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_move_away_from_a_black_holed_replica() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    let proxy = FaultProxy::start(set.nodes()[1].addr())
        .await
        .expect("proxy");
    let pool = SplitPool::builder()
        .nodes([
            set.nodes()[0].addr().to_string(),
            proxy.addr().to_string(),
            set.nodes()[2].addr().to_string(),
        ])
        .build()
        .await
        .expect("pool");
    let mut con = pool.clone();
    let _: () = con.set("k", "v").await.expect("SET");
    set.wait_for_sync(DEADLINE).await.expect("replicas in sync");
    proxy.set_mode(Mode::BlackHole).await.expect("black hole");
    let started = Instant::now();
    for _ in 0..20 {
        let v: Option<String> = timeout(DEADLINE, con.get("k"))
            .await
            .expect("no hang")
            .expect("GET");
        assert_eq!(v.as_deref(), Some("v"));
    }
    let hole = proxy.addr().to_string();
    let mut excluded = false;
    while started.elapsed() < DEADLINE {
        if !pool.replica_addrs().contains(&hole) {
            excluded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(excluded, "the black-holed replica left the read rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_avoid_a_replica_whose_link_is_down() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    let mut con = pool.clone();
    let _: () = con.set("k", "v").await.expect("SET");
    set.wait_for_sync(DEADLINE).await.expect("replicas in sync");
    // Node 2 loses its primary: it now follows a port where nothing listens (link down).
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    set.node_mut(2)
        .expect("node 2")
        .replicate_from(nowhere)
        .await
        .expect("REPLICAOF");
    pool.rediscover()
        .await
        .expect("discovery confirms the primary");
    let broken = set.nodes()[2].addr().to_string();
    assert!(
        !pool.replica_addrs().contains(&broken),
        "{:?}",
        pool.replica_addrs()
    );
    reset_stats(set.nodes()).await;
    for _ in 0..20 {
        let v: Option<String> = con.get("k").await.expect("GET");
        assert_eq!(v.as_deref(), Some("v"));
    }
    assert_eq!(
        cmdstat(&set.nodes()[2], "get").await.0,
        0,
        "no read on the link-down replica"
    );
    assert_eq!(
        cmdstat(&set.nodes()[1], "get").await.0,
        20,
        "reads on the healthy replica"
    );
    // Back on its primary: it serves reads again.
    let primary = set.primary().addr();
    set.node_mut(2)
        .expect("node 2")
        .replicate_from(primary)
        .await
        .expect("REPLICAOF");
    set.nodes()[2]
        .wait_link_up(DEADLINE)
        .await
        .expect("link up");
    pool.rediscover()
        .await
        .expect("discovery confirms the primary");
    assert!(
        pool.replica_addrs().contains(&broken),
        "{:?}",
        pool.replica_addrs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_restarted_as_replica_is_never_written_to() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    let mut con = pool.idempotent();
    let old_addr = set.kill_primary().await.expect("kill");
    set.promote(1).await.expect("promote");
    let new_addr = set.nodes()[1].addr();
    let _: () = timeout(DEADLINE, con.set("x", 1))
        .await
        .expect("in time")
        .expect("SET after promotion");
    set.node_mut(0)
        .expect("node 0")
        .restart_as_replica_of(new_addr)
        .await
        .expect("restart old primary");
    set.nodes()[0]
        .wait_link_up(DEADLINE)
        .await
        .expect("link up");
    pool.rediscover()
        .await
        .expect("discovery confirms the primary");

    for i in 0..50 {
        let _: () = con.set(format!("y{i}"), i).await.expect("SET");
    }
    let old = &set.nodes()[0];
    assert_eq!(old.addr(), old_addr);
    let (_, rejected) = cmdstat(old, "set").await;
    assert_eq!(rejected, 0, "no write was sent to the old primary");
    assert_eq!(pool.primary_addr(), new_addr.to_string());
    assert_eq!(
        cmdstat(&set.nodes()[1], "set").await.0,
        51,
        "all writes ran on the new primary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_your_writes_session_reads_its_own_write() {
    let set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    reset_stats(set.nodes()).await;
    let mut session = pool.read_your_writes(Duration::from_secs(5));
    for i in 0..20 {
        let _: () = session.set("mine", i).await.expect("SET");
        let v: i64 = session.get("mine").await.expect("GET");
        assert_eq!(v, i, "the session sees its own write at once");
    }
    assert_eq!(
        cmdstat(set.primary(), "get").await.0,
        20,
        "session reads after a write go to the primary"
    );
    // Other handles still read from replicas.
    let mut other = pool.clone();
    let _: Option<i64> = other.get("mine").await.expect("GET");
    assert_eq!(cmdstat(set.primary(), "get").await.0, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_returns_to_replicas_when_the_window_after_its_write_ends() {
    let set = RedisReplicaSet::start(2).await.expect("replica set");
    let pool = static_pool(&set).await;
    let mut session = pool.read_your_writes(Duration::from_millis(300));
    let _: () = session.set("mine", 1).await.expect("SET");
    reset_stats(set.nodes()).await;
    // Reads only, more often than the window: they must not extend it (a read is not a write).
    let started = Instant::now();
    let mut reads = 0u64;
    while started.elapsed() < Duration::from_millis(1500) {
        let _: Option<i64> = session.get("mine").await.expect("GET");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on_primary = cmdstat(set.primary(), "get").await.0;
    let on_replicas: u64 = {
        let mut n = 0;
        for r in set.replicas() {
            n += cmdstat(r, "get").await.0;
        }
        n
    };
    assert_eq!(on_primary + on_replicas, reads);
    assert!(
        on_replicas >= reads / 2,
        "reads went back to replicas after the window: {on_primary} on the primary, \
         {on_replicas} on replicas"
    );
}

/// Code written against redis-rs types only.
async fn redis_rs_workload<C: ConnectionLike + Send + Sync>(
    con: &mut C,
) -> redis::RedisResult<(i64, Vec<String>, i64)> {
    let _: () = con.del("list").await?;
    let _: () = con.rpush("list", &["a", "b", "c"]).await?;
    let n: i64 = con.incr("n", 5).await?;
    let (list, len): (Vec<String>, i64) = redis::pipe()
        .atomic()
        .lrange("list", 0, -1)
        .llen("list")
        .query_async(con)
        .await?;
    let script = redis::Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let m: i64 = script.key("n").arg(2).invoke_async(con).await?;
    assert_eq!(len, 3);
    Ok((n, list, m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_as_a_drop_in_connection_like() {
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    let pool = static_pool(&set).await;
    // Reads right after writes: a read-your-writes session (replicas replicate asynchronously).
    let mut through_pool = pool.read_your_writes(Duration::from_secs(5));
    let got = redis_rs_workload(&mut through_pool)
        .await
        .expect("through the pool");
    assert_eq!(got, (5, vec!["a".into(), "b".into(), "c".into()], 7));

    let raw = redis::Client::open(set.primary().url()).expect("client");
    let mut raw = raw
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let _: () = raw.del("n").await.expect("DEL");
    let got_raw = redis_rs_workload(&mut raw).await.expect("raw");
    assert_eq!(got, got_raw, "same results as a raw redis-rs connection");

    // A blocking command runs on a dedicated connection and ends with its own timeout.
    let popped: Option<(String, String)> = timeout(DEADLINE, through_pool.blpop("empty-list", 0.3))
        .await
        .expect("no hang")
        .expect("BLPOP");
    assert_eq!(popped, None);
    // SELECT is refused with a clear error, not silently applied to one shared connection.
    let err = redis::cmd("SELECT")
        .arg(1)
        .query_async::<()>(&mut through_pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SELECT"), "{err}");
    // A dedicated connection for WATCH/MULTI.
    let mut d = pool.dedicated(Target::Primary).await.expect("dedicated");
    let _: () = redis::cmd("WATCH")
        .arg("n")
        .query_async(&mut d)
        .await
        .expect("WATCH");
    let (v,): (i64,) = redis::pipe()
        .atomic()
        .incr("n", 1)
        .query_async(&mut d)
        .await
        .expect("EXEC");
    assert_eq!(v, 8, "7 after the raw workload, plus one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_output_never_shows_the_password() {
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    for n in set.nodes() {
        n.cmd(&["CONFIG", "SET", "masterauth", "pw-not-in-logs"])
            .await
            .expect("masterauth");
        n.cmd(&["CONFIG", "SET", "requirepass", "pw-not-in-logs"])
            .await
            .expect("requirepass");
    }
    let wrong = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .password("wrong-secret-value")
        .build()
        .await
        .expect_err("a wrong password finds no primary");
    assert!(!format!("{wrong} {wrong:?}").contains("wrong-secret-value"));

    let pool = SplitPool::builder()
        .nodes(
            set.nodes()
                .iter()
                .map(|n| format!("redis://:pw-not-in-logs@{}", n.addr())),
        )
        .build()
        .await
        .expect("pool with the password");
    let mut con = pool.clone();
    let _: () = con.set("a", 1).await.expect("SET with auth");
    assert!(!format!("{pool:?}").contains("pw-not-in-logs"), "{pool:?}");
}

/// Connection-state commands sent on their own are refused on the shared pool (they would pull
/// other callers' commands into a transaction); atomic pipelines work. `WAIT` alone is refused
/// (on a connection of its own it reported acknowledgements that never happened: with both
/// replicas stopped it answered 2 at once); in a pipeline after the writes it counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_wait_mean_what_they_say_or_are_refused() {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    set.wait_for_sync(Duration::from_secs(10)).await.unwrap();
    let mut pool = static_pool(&set).await;
    for cmd in ["MULTI", "EXEC", "DISCARD", "UNWATCH"] {
        let err = redis::cmd(cmd)
            .query_async::<redis::Value>(&mut pool)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("redis::pipe().atomic()"),
            "{cmd}: {err}"
        );
    }
    let err = redis::cmd("WATCH")
        .arg("k")
        .query_async::<redis::Value>(&mut pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SplitPool::dedicated"), "{err}");
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("tx", 1)
        .incr("tx", 1)
        .query_async(&mut pool)
        .await
        .unwrap();
    assert_eq!((a, b), (1, 2));

    let err = redis::cmd("WAIT")
        .arg(1)
        .arg(100)
        .query_async::<i64>(&mut pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in one pipeline"), "{err}");
    // WAITAOF alone likewise (refused before it is sent, so any server version will do).
    let err = redis::cmd("WAITAOF")
        .arg(1)
        .arg(0)
        .arg(100)
        .query_async::<redis::Value>(&mut pool)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("in one pipeline"),
        "WAITAOF: {err}"
    );
    // Both replicas up: the pipeline's own write is acknowledged by both.
    let (_, acked): ((), i64) = redis::pipe()
        .set("durable", "1")
        .cmd("WAIT")
        .arg(2)
        .arg(2000)
        .query_async(&mut pool)
        .await
        .unwrap();
    assert_eq!(acked, 2);
    // Both replicas stopped: nobody acknowledges, and WAIT says so after its timeout.
    for i in 0..set.nodes().len() {
        if i != set.primary_index() {
            set.node_mut(i).unwrap().pause().unwrap();
        }
    }
    let (_, acked): ((), i64) = redis::pipe()
        .set("durable", "2")
        .cmd("WAIT")
        .arg(1)
        .arg(300)
        .query_async(&mut pool)
        .await
        .unwrap();
    assert_eq!(acked, 0);
    for i in 0..set.nodes().len() {
        if i != set.primary_index() {
            set.node_mut(i).unwrap().resume().unwrap();
        }
    }
}

/// A pipeline with a blocking command runs on a dedicated connection: it does not stall the
/// shared connection the other callers' writes use, and (issue 12 item 2) a block longer than
/// the response timeout (2 s against the default 1 s) neither fails nor puts the primary in
/// doubt: no switch, no suspicion, never declared down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_command_in_a_pipeline_does_not_stall_other_callers() {
    use switchover::observe::EventKind;
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    let pool = static_pool(&set).await;
    let primary = set.primary().addr().to_string();
    let endpoint = pool
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id().name() == primary)
        .expect("the primary's endpoint");
    let suspects = |pool: &SplitPool| {
        pool.timeline()
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Suspect))
            .count()
    };
    let (generation, downs, suspected) =
        (pool.status().generation, endpoint.downs(), suspects(&pool));
    let mut blocked = pool.clone();
    let blpop = tokio::spawn(async move {
        redis::pipe()
            .cmd("BLPOP")
            .arg("empty-queue")
            .arg(2)
            .query_async::<(Option<(String, String)>,)>(&mut blocked)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut writer = pool.clone();
    let started = Instant::now();
    let _: () = writer.set("during", "blpop").await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "a SET waited {took:?} behind a pipeline's BLPOP"
    );
    let (popped,) = blpop.await.unwrap().unwrap();
    assert_eq!(popped, None, "BLPOP timed out on its own after 2 s");
    assert_eq!(pool.status().generation, generation, "no switch");
    assert_eq!(endpoint.downs(), downs, "never declared down");
    assert_eq!(
        suspects(&pool),
        suspected,
        "the primary was never put in doubt"
    );
    assert_eq!(pool.primary_addr(), primary);
}

/// Issue 12 item 2, inside a pipeline: a plain (non-atomic) pipeline is sent on the shared
/// connection, so a `MULTI` in it without its `EXEC` would leave that connection inside a
/// transaction (every other caller's command after it answered `QUEUED`), and a `WATCH` would
/// stay on it and abort another caller's atomic pipeline. Refused like the commands sent alone,
/// naming the atomic pipeline; the other callers' commands run as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_command_in_a_plain_pipeline_does_not_poison_the_shared_connection() {
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    let pool = static_pool(&set).await;
    let mut con = pool.clone();
    let _: () = con.set("watched", 0).await.unwrap();

    let multi: redis::RedisResult<redis::Value> = redis::pipe()
        .cmd("MULTI")
        .set("queued", 1)
        .query_async(&mut con)
        .await;
    let mut other = pool.clone();
    let n: redis::RedisResult<i64> = timeout(DEADLINE, other.incr("counter", 1)).await.unwrap();
    assert_eq!(
        n.as_ref().ok(),
        Some(&1),
        "another caller's INCR ran, not queued: {n:?} (the pipeline said {multi:?})"
    );
    let err = multi.expect_err("MULTI in a plain pipeline is refused");
    assert!(err.to_string().contains("redis::pipe().atomic()"), "{err}");

    let watch: redis::RedisResult<redis::Value> = redis::pipe()
        .cmd("WATCH")
        .arg("watched")
        .query_async(&mut con)
        .await;
    let _: () = other.set("watched", 1).await.unwrap();
    let tx: redis::RedisResult<(i64,)> = timeout(
        DEADLINE,
        redis::pipe()
            .atomic()
            .incr("tx-counter", 1)
            .query_async(&mut other),
    )
    .await
    .unwrap();
    assert_eq!(
        tx.as_ref().ok(),
        Some(&(1,)),
        "another caller's atomic pipeline ran: {tx:?} (the WATCH pipeline said {watch:?})"
    );
    assert!(
        watch.is_err(),
        "WATCH in a plain pipeline is refused: {watch:?}"
    );
}

/// A raw redis-rs connection to `node` logged in with `password` (the fixture's own client
/// has none once `requirepass` is set).
async fn admin(node: &RedisServer, password: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://:{password}@{}/", node.addr()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

/// A wrong password is an authentication error naming the node, at once (it was "no primary
/// confirmed: no node reported the master role (...)" after the whole wait).
#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_naming_the_node() {
    init_tracing();
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    for n in set.nodes() {
        n.cmd(&["CONFIG", "SET", "requirepass", "right-pw"])
            .await
            .expect("requirepass");
    }
    let started = Instant::now();
    let err = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .password("wrong-pw")
        .build()
        .await
        .expect_err("a wrong password cannot build a pool");
    assert!(err.is_auth(), "an authentication error: {err:?}");
    let node = err.node_addr().expect("names the node").to_owned();
    assert!(
        set.nodes().iter().any(|n| n.addr().to_string() == node),
        "{node} is one of the nodes"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("authentication") && shown.contains(&node),
        "{shown}"
    );
    assert!(!shown.contains("master role"), "{shown}");
    let source = std::error::Error::source(&err)
        .expect("the server's answer")
        .to_string();
    // redis-rs words a rejected AUTH as "Password authentication failed".
    assert!(
        source.to_lowercase().contains("authentication failed"),
        "{source}"
    );
    assert!(
        !format!("{err:?}{source}").contains("wrong-pw"),
        "no password shown"
    );
    // Permanent: the caller did not wait for discovery to give up.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // No password at all against a node that needs one: NOAUTH, the same kind of error.
    let err = SplitPool::builder()
        .nodes([set.primary().addr().to_string()])
        .build()
        .await
        .expect_err("no password");
    assert!(err.is_auth(), "{err:?}");
}

/// A Unix socket node: commands go through the socket.
#[tokio::test]
async fn a_node_on_a_unix_socket_serves_the_pool() {
    init_tracing();
    let server = RedisServer::start_with_unix_socket().await.expect("server");
    let path = server.unix_socket_path().expect("a socket");
    let pool = SplitPool::builder()
        .nodes([format!("unix://{}", path.display())])
        .build()
        .await
        .expect("pool over the socket");
    assert_eq!(pool.primary_addr(), format!("unix:{}", path.display()));
    let mut con = pool.clone();
    let _: () = con.set("over-the-socket", "yes").await.expect("SET");
    let v: String = con.get("over-the-socket").await.expect("GET");
    assert_eq!(v, "yes");
    let mut dedicated = pool.dedicated(Target::Primary).await.expect("dedicated");
    let v: String = dedicated.get("over-the-socket").await.expect("GET");
    assert_eq!(v, "yes");
    // The commands came over the socket, not TCP: the server counts unix clients as `addr`
    // `/path:0`.
    let clients = server.cmd(&["CLIENT", "LIST"]).await.expect("CLIENT LIST");
    let clients = clients.as_str().unwrap_or_default().to_owned();
    assert!(
        clients
            .lines()
            .filter(|l| l.contains("cmd=get"))
            .all(|l| !l.contains("addr=127.0.0.1")),
        "{clients}"
    );
}

/// A password rotated mid-workload (the provider's answer changes, then the server's
/// `requirepass`, then every connection is cut) costs no failed operation: the rejected login
/// is reported to the cache and retried once with the fresh secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_costs_no_failed_operation() {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, RwLock};
    use switchover::auth::{CachedCredentials, Credentials, credentials_fn};

    init_tracing();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    for n in set.nodes() {
        n.cmd(&["CONFIG", "SET", "masterauth", "pw-1"])
            .await
            .expect("masterauth");
        n.cmd(&["CONFIG", "SET", "requirepass", "pw-1"])
            .await
            .expect("requirepass");
    }
    let current = Arc::new(RwLock::new("pw-1".to_owned()));
    let fetches = Arc::new(AtomicU64::new(0));
    let provider = CachedCredentials::new(credentials_fn({
        let (current, fetches) = (current.clone(), fetches.clone());
        move |_req| {
            fetches.fetch_add(1, Relaxed);
            let pw = current.read().unwrap().clone();
            async move { Ok(Credentials::password_only(pw)) }
        }
    }));
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .credentials(provider)
        .build()
        .await
        .expect("pool");
    let before = fetches.load(Relaxed);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workload = tokio::spawn({
        let (pool, stop) = (pool.idempotent(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut con = pool.clone();
            let mut i = 0u64;
            while !stop.load(Relaxed) {
                i += 1;
                let w: redis::RedisResult<()> = con.set("rot", i).await;
                let r: redis::RedisResult<Option<u64>> = con.get("rot").await;
                match (w, r) {
                    (Ok(()), Ok(_)) => ok += 1,
                    (w, r) => failed.push(format!("{:?} {:?}", w.err(), r.err())),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The rotation: the secret store first, then the servers, then every connection cut.
    *current.write().unwrap() = "pw-2".to_owned();
    for n in set.nodes() {
        let mut a = admin(n, "pw-1").await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("masterauth")
            .arg("pw-2")
            .query_async(&mut a)
            .await
            .expect("masterauth");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("pw-2")
            .query_async(&mut a)
            .await
            .expect("requirepass");
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut a)
            .await
            .unwrap_or(redis::Value::Nil);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Relaxed);
    let (ok, failed) = workload.await.expect("workload");
    assert!(
        failed.is_empty(),
        "{} failed operations: {failed:?}",
        failed.len()
    );
    assert!(ok > 50, "the workload ran ({ok} rounds)");
    assert!(
        fetches.load(Relaxed) > before,
        "the rejected secret was fetched again"
    );
    // New connections (shared, dedicated) log in with the new password.
    let mut d = pool
        .dedicated(Target::Primary)
        .await
        .expect("dedicated after rotation");
    let _: () = d
        .set("after", 1)
        .await
        .expect("SET on a dedicated connection");
    set.wait_for_sync(DEADLINE).await.ok();
}

/// Sentinels with a password of their own: `sentinel_password` / `sentinel_credentials` log in
/// to them, `password` to the nodes; a wrong sentinel password is an authentication error
/// naming the sentinel.
#[tokio::test]
async fn sentinels_have_their_own_credentials() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use switchover::auth::{Credentials, credentials_fn};

    init_tracing();
    let sentinel = RedisSentinel::start(1, 1).await.expect("sentinel");
    let s_addr = sentinel.sentinel_addrs()[0];
    let master = sentinel.master_name();
    // Nodes: replication and Sentinel learn the password before the nodes require it.
    for n in sentinel.replica_set().nodes() {
        n.cmd(&["CONFIG", "SET", "masterauth", "node-pw"])
            .await
            .expect("masterauth");
    }
    let s_cmd = |args: &'static [&'static str]| async move {
        switchover::testing::RespClient::connect(s_addr)
            .await
            .expect("sentinel client")
            .command(args)
            .await
    };
    s_cmd(&["SENTINEL", "SET", "switchover", "auth-pass", "node-pw"])
        .await
        .expect("auth-pass");
    for n in sentinel.replica_set().nodes() {
        n.cmd(&["CONFIG", "SET", "requirepass", "node-pw"])
            .await
            .expect("requirepass");
    }
    s_cmd(&["ACL", "SETUSER", "default", "on", ">sentinel-pw"])
        .await
        .expect("sentinel password");

    let asked = Arc::new(AtomicU64::new(0));
    let pool = SplitPool::builder()
        .sentinels([s_addr.to_string()])
        .master_name(master)
        .password("node-pw")
        .sentinel_credentials(credentials_fn({
            let asked = asked.clone();
            move |req| {
                assert_eq!(req.port(), s_addr.port(), "asked for the sentinel");
                asked.fetch_add(1, Relaxed);
                async move { Ok(Credentials::password_only("sentinel-pw")) }
            }
        }))
        .build()
        .await
        .expect("pool with sentinel credentials");
    let mut con = pool.clone();
    let _: () = con.set("s-auth", 1).await.expect("SET");
    assert!(asked.load(Relaxed) >= 1, "the sentinel provider was asked");

    let err = SplitPool::builder()
        .sentinels([s_addr.to_string()])
        .master_name(master)
        .password("node-pw")
        .sentinel_password("wrong")
        .build()
        .await
        .expect_err("a wrong sentinel password");
    assert!(err.is_auth(), "{err:?}");
    assert_eq!(err.node_addr(), Some(s_addr.to_string().as_str()));
    assert!(err.to_string().contains("sentinel"), "{err}");
}

/// A write that finds no primary for seconds says the whole time it waited, not the last
/// attempt's wait limit (it said "(waited 1.3s)" whatever the policy's deadline).
#[tokio::test]
async fn a_write_without_a_primary_says_the_whole_time_it_waited() {
    use switchover::retry::RetryPolicy;

    init_tracing();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    let policy = RetryPolicy::builder()
        .max_attempts(100)
        .deadline(Duration::from_secs(4))
        .build()
        .expect("policy");
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .retry_policy(policy)
        .build()
        .await
        .expect("pool");
    set.kill_primary().await.expect("kill");
    // Nobody promotes the replica: no primary for the rest of the test.
    let started = Instant::now();
    let mut con = pool.clone();
    let err = con.set::<_, _, ()>("k", 1).await.expect_err("no primary");
    let took = started.elapsed();
    let shown = err.to_string();
    assert!(shown.contains("no primary confirmed"), "{shown}");
    let waited = shown
        .split("(waited ")
        .nth(1)
        .and_then(|rest| rest.split(" in all").next())
        .unwrap_or_else(|| panic!("says the whole wait: {shown}"));
    let waited_s: f64 = waited.trim_end_matches('s').parse().unwrap_or_else(|_| {
        // Debug form of a Duration: "3.9s", or in ms below a second.
        panic!("a duration in seconds: {waited} ({shown})")
    });
    assert!(
        waited_s >= 3.0 && waited_s <= took.as_secs_f64() + 0.01,
        "waited {waited_s}s of a {took:?} call: {shown}"
    );
}

/// The ACL rules `README.md` gives for the pool's own commands: a data-node user allowed only
/// the application's commands plus `ROLE`, `PING` and `UNWATCH`, and a Sentinel
/// user allowed only the three `SENTINEL` queries and `SUBSCRIBE` on `+switch-master`, serve
/// reads, writes, a dedicated connection and a Sentinel failover. Without `ROLE` the build fails
/// with the node's `NOPERM` error naming the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_least_privilege_acl_user_is_enough_for_the_pool() {
    init_tracing();
    let mut sentinel = RedisSentinel::start(2, 1).await.expect("sentinel");
    let s_addr = sentinel.sentinel_addrs()[0];
    // The default users stay open: replication and Sentinel's own monitoring use them.
    let app_rules = [
        "on",
        ">app-pw",
        "resetkeys",
        "~*",
        "resetchannels",
        "-@all",
        "+get",
        "+set",
        "+role",
        "+ping",
        "+unwatch",
    ];
    for n in sentinel.replica_set().nodes() {
        let mut args = vec!["ACL", "SETUSER", "app"];
        args.extend(app_rules);
        n.cmd(&args).await.expect("ACL SETUSER app");
        let mut args = vec!["ACL", "SETUSER", "no-role"];
        args.extend(app_rules);
        args.push("-role");
        n.cmd(&args).await.expect("ACL SETUSER no-role");
    }
    switchover::testing::RespClient::connect(s_addr)
        .await
        .expect("sentinel client")
        .command(&[
            "ACL",
            "SETUSER",
            "watcher",
            "on",
            ">watch-pw",
            "-@all",
            "+sentinel|get-master-addr-by-name",
            "+sentinel|master",
            "+sentinel|replicas",
            "+subscribe",
            "+ping",
            "resetchannels",
            "&+switch-master",
        ])
        .await
        .expect("ACL SETUSER watcher");

    let master = sentinel.master_name().to_owned();
    let builder = |user: &str| {
        SplitPool::builder()
            .sentinels([s_addr.to_string()])
            .master_name(master.clone())
            .username(user)
            .password("app-pw")
            .sentinel_username("watcher")
            .sentinel_password("watch-pw")
            .heartbeat(Duration::from_millis(200))
    };
    let pool = builder("app").build().await.expect("pool as `app`");
    let mut con = pool.idempotent();
    let _: () = con.set("acl", 1).await.expect("SET");
    let mut read = pool.clone();
    let _: Option<i64> = read.get("acl").await.expect("GET");
    {
        let mut dedicated = pool.dedicated(Target::Primary).await.expect("dedicated");
        let _: () = dedicated.set("acl", 2).await.expect("SET on dedicated");
    }
    // Returned and checked out again: the check-out sends `UNWATCH` and `PING`.
    let mut dedicated = pool
        .dedicated(Target::Primary)
        .await
        .expect("dedicated again");
    let v: i64 = dedicated.get("acl").await.expect("GET on dedicated");
    assert_eq!(v, 2);
    drop(dedicated);
    // An application command the user may not run: NOPERM at once, sent once (not retried,
    // even through the idempotent handle).
    reset_stats(sentinel.replica_set().nodes()).await;
    let err = con
        .incr::<_, _, i64>("acl", 1)
        .await
        .expect_err("INCRBY is not allowed");
    assert_eq!(err.code(), Some("NOPERM"), "{err:?}");
    // (redis-rs's `incr` sends `INCRBY`.)
    assert_eq!(
        cmdstat(sentinel.replica_set().primary(), "incrby").await,
        (0, 1)
    );

    let old = sentinel.kill_primary().await.expect("kill primary");
    write_until_it_lands(&mut con, "acl-after", 3).await;
    let new = sentinel
        .wait_for_failover(old, DEADLINE)
        .await
        .expect("sentinel failover");
    assert_eq!(pool.primary_addr(), new.to_string());

    let err = builder("no-role")
        .build()
        .await
        .expect_err("a user without ROLE cannot discover roles");
    let text = format!("{err}");
    assert!(err.is_auth(), "{err:?}");
    assert!(
        text.contains("refused a command to this user (NOPERM: "),
        "{text}"
    );
    assert!(text.contains("'role' command"), "{text}");
}

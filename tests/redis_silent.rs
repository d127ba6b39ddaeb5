//! Redis against silent failures, with real servers: a pool that starts while its primary is
//! frozen or dead, a heartbeat that finds a frozen primary, in-flight commands cut when their
//! node is declared down, and a slow command that is not mistaken for a dead node.

use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::SplitPool;
use switchover::testing::{RedisReplicaSet, RedisSentinel};
use tokio::time::{Instant, timeout};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Generous bound for anything that should finish "within the deadline".
const DEADLINE: Duration = Duration::from_secs(30);

/// How the primary goes away.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// `SIGSTOP`: connections stay open, nothing is answered.
    Frozen,
    /// `SIGKILL`: connections are refused.
    Killed,
}

/// A replica set whose primary holds `k = before the outage` (replicated), then goes away.
async fn set_with_primary(outage: Outage) -> RedisReplicaSet {
    let mut set = RedisReplicaSet::start(2).await.expect("replica set");
    set.primary()
        .cmd(&["SET", "k", "before the outage"])
        .await
        .expect("SET on the primary");
    set.wait_for_sync(DEADLINE).await.expect("replicas in sync");
    match outage {
        Outage::Frozen => set.primary_mut().pause().expect("SIGSTOP"),
        Outage::Killed => set.primary_mut().kill().await.expect("SIGKILL"),
    }
    set
}

/// Issue 11 (start during an outage), static nodes: `build()` succeeds while the primary is
/// frozen or dead (it failed after 2–254 ms with "no primary found"), reads are served by the
/// replicas at once, and a write waits within its deadline for a primary: here a replica
/// promoted by hand 500 ms later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_pool_builds_with_its_primary_frozen_or_dead() {
    init_tracing();
    for outage in [Outage::Frozen, Outage::Killed] {
        let mut set = set_with_primary(outage).await;
        let nodes: Vec<String> = set.nodes().iter().map(|n| n.url()).collect();
        let started = Instant::now();
        let pool = timeout(DEADLINE, SplitPool::builder().nodes(nodes).build())
            .await
            .expect("build ends in time")
            .unwrap_or_else(|e| panic!("{outage:?}: builds during the outage: {e}"));
        let built_in = started.elapsed();
        assert_eq!(pool.status().generation, 0, "{outage:?}: no switch yet");
        assert_eq!(
            pool.status().usable_replicas,
            2,
            "{outage:?}: both replicas serve reads"
        );
        let mut con = pool.clone();
        let v: Option<String> = timeout(DEADLINE, con.get("k"))
            .await
            .expect("the read ends in time")
            .unwrap_or_else(|e| panic!("{outage:?}: a replica serves the read: {e}"));
        assert_eq!(v.as_deref(), Some("before the outage"));

        let write = tokio::spawn({
            let mut con = pool.clone();
            async move {
                let started = Instant::now();
                let r: redis::RedisResult<()> = con.set("k", "after").await;
                (r, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let promoted = set.nodes()[1].addr();
        set.node_mut(1)
            .unwrap()
            .promote()
            .await
            .expect("REPLICAOF NO ONE");
        let (r, waited) = timeout(DEADLINE, write).await.expect("in time").unwrap();
        r.unwrap_or_else(|e| panic!("{outage:?}: the write waits for the new primary: {e}"));
        assert_eq!(pool.primary_addr(), promoted.to_string());
        let on_new = set.nodes()[1].cmd(&["GET", "k"]).await.expect("GET");
        assert_eq!(on_new.as_str(), Some("after"));
        println!(
            "{outage:?}: build {built_in:?}, the write waited {waited:?} (promotion at 500 ms)"
        );
    }
}

/// Issue 11 (start during an outage), Sentinel: `build()` succeeds while the primary is frozen,
/// before the sentinels notice; a read is served by a replica; a write waits for the
/// sentinels' promotion (down-after 1 s) and lands on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_pool_builds_with_its_primary_frozen_and_follows_the_promotion() {
    init_tracing();
    let mut sentinel = RedisSentinel::start(2, 3).await.expect("sentinel fixture");
    let old = sentinel.replica_set().primary().addr();
    sentinel
        .replica_set()
        .primary()
        .cmd(&["SET", "k", "before the outage"])
        .await
        .expect("SET");
    sentinel
        .replica_set_mut()
        .wait_for_sync(DEADLINE)
        .await
        .expect("in sync");
    sentinel
        .replica_set_mut()
        .primary_mut()
        .pause()
        .expect("SIGSTOP");
    let started = Instant::now();
    let pool = timeout(
        DEADLINE,
        SplitPool::builder()
            .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
            .master_name(sentinel.master_name())
            .build(),
    )
    .await
    .expect("build ends in time")
    .expect("builds while the primary is frozen");
    let built_in = started.elapsed();
    let mut con = pool.clone();
    let v: Option<String> = timeout(DEADLINE, con.get("k"))
        .await
        .expect("in time")
        .expect("a replica serves the read");
    assert_eq!(v.as_deref(), Some("before the outage"));
    let r: redis::RedisResult<()> = timeout(DEADLINE, con.set("k", "after"))
        .await
        .expect("in time");
    r.expect("the write waits for the sentinels' promotion");
    let waited = started.elapsed();
    let new = sentinel
        .wait_for_failover(old, DEADLINE)
        .await
        .expect("sentinel promoted");
    assert_eq!(pool.primary_addr(), new.to_string());
    println!("sentinel: build {built_in:?}, first write {waited:?} after the build started");
}

/// Issue 11 (in-flight cancellation): with the primary frozen (`SIGSTOP`), commands pending on
/// its shared connection fail as soon as the heartbeat has it declared down, not at the
/// response timeout (5 s here; before, they waited all of it): a write that may have run
/// there fails (not idempotent), an idempotent one is retried in the same call and lands on
/// the replica promoted meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pending_on_a_frozen_primary_fail_when_it_is_declared_down() {
    init_tracing();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    let old = set.primary().addr().to_string();
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.url()))
        .timeouts(switchover::redis::Timeouts::new().response(Duration::from_secs(5)))
        .build()
        .await
        .expect("pool");
    let mut con = pool.clone();
    let _: () = con
        .set("k", "0")
        .await
        .expect("the shared connection is made");
    let endpoint = pool
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id().name() == old)
        .expect("the primary's endpoint");
    let downs = endpoint.downs();

    set.primary_mut().pause().expect("SIGSTOP");
    let frozen_at = Instant::now();
    let plain = tokio::spawn({
        let mut con = pool.clone();
        async move {
            let r: redis::RedisResult<()> = con.set("plain", 1).await;
            (r, frozen_at.elapsed())
        }
    });
    let idempotent = tokio::spawn({
        let mut con = pool.idempotent();
        async move {
            let r: redis::RedisResult<()> = con.set("idem", 1).await;
            (r, frozen_at.elapsed())
        }
    });
    let (r, failed_after) = timeout(DEADLINE, plain).await.expect("in time").unwrap();
    let err = r.expect_err("sent to the frozen primary: may have run, not retried");
    assert!(
        err.is_connection_dropped() || err.to_string().contains("broken pipe"),
        "{err:?} after {failed_after:?}"
    );
    assert!(
        failed_after < Duration::from_secs(3),
        "failed at the verdict ({failed_after:?}), not at the 5 s response timeout"
    );
    assert!(
        endpoint.downs() > downs,
        "the frozen primary was declared down"
    );

    set.node_mut(1)
        .unwrap()
        .promote()
        .await
        .expect("REPLICAOF NO ONE");
    let (r, done_after) = timeout(DEADLINE, idempotent)
        .await
        .expect("in time")
        .unwrap();
    r.expect("the idempotent write is retried on the promoted replica");
    let on_new = set.nodes()[1].cmd(&["GET", "idem"]).await.expect("GET");
    assert_eq!(on_new.as_str(), Some("1"));
    println!(
        "frozen primary: pending write failed after {failed_after:?}, idempotent one done after {done_after:?}"
    );
}

/// Issue 12 item 12 (slow is not dead): a command slower than the response timeout (150 ms)
/// on a healthy primary, held 250 ms by a busy script (under the heartbeat's 300 ms), fails
/// alone: no switch, the primary never declared down nor put in doubt, and the pool keeps its
/// shared connection (the server accepts no new connection from it). Before, the timeout
/// dropped the shared connection and put the primary in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_command_on_a_healthy_primary_is_no_failover() {
    use switchover::observe::EventKind;
    init_tracing();
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    let primary = set.primary().addr().to_string();
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.url()))
        .timeouts(
            switchover::redis::Timeouts::new()
                .connect(Duration::from_millis(100))
                .response(Duration::from_millis(150)),
        )
        .build()
        .await
        .expect("pool");
    let mut con = pool.clone();
    let _: () = con
        .set("k", "0")
        .await
        .expect("the shared connection is made");
    let endpoint = pool
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id().name() == primary)
        .expect("the primary's endpoint");
    let (generation, downs) = (pool.status().generation, endpoint.downs());
    let suspects = |pool: &SplitPool| {
        let events = pool.timeline().events();
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Suspect))
            .count()
    };
    let suspected = suspects(&pool);
    let mut stats = set.primary().client().await.expect("side connection");
    let mut busy = set.primary().client().await.expect("side connection");
    let accepted = |info: &switchover::testing::Reply| {
        let text = info.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("total_connections_received:"))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("total_connections_received")
    };
    let before = accepted(&stats.command(&["INFO", "stats"]).await.expect("INFO"));

    const SPIN: &str = "local s = redis.call('TIME') while true do local n = redis.call('TIME') \
        if (n[1] - s[1]) * 1000000 + (n[2] - s[2]) > 200000 then break end end return 1";
    // Three slow replies in a row, 100 ms apart: each was one transient failure, so three
    // ejected the primary (before `Classification::timed_out`); now none counts.
    for _ in 0..3 {
        let script = tokio::spawn(async move {
            let r = busy.command(&["EVAL", SPIN, "0"]).await;
            (busy, r)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let slow: redis::RedisResult<()> = con.set("k", "1").await;
        let err = slow.expect_err("slower than the response timeout");
        assert!(err.is_timeout(), "{err}");
        let (back, ran) = script.await.unwrap();
        ran.expect("the script ran");
        busy = back;
        // The server answers between the slow calls (back to back, the scripts would freeze
        // it for 750 ms: a heartbeat would rightly miss).
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Heartbeats (200 ms) see the primary answer again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _: () = con.set("k", "2").await.expect("the primary serves again");

    let after = accepted(&stats.command(&["INFO", "stats"]).await.expect("INFO"));
    assert_eq!(pool.status().generation, generation, "no switch");
    assert_eq!(endpoint.downs(), downs, "never declared down");
    assert_eq!(endpoint.state(), switchover::health::HealthState::Up);
    assert_eq!(
        suspects(&pool),
        suspected,
        "the primary was never put in doubt"
    );
    assert_eq!(
        after, before,
        "the pool made no new connection to the primary"
    );
}

/// Silent failures, item 3: a subscription had no deadline at all after opening; on a frozen
/// node it waited for ever. Now it ends when the node is declared down (three missed
/// heartbeats): the message stream ends and the next command fails, classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_a_frozen_node_ends_when_the_node_is_declared_down() {
    use futures_util::StreamExt as _;
    use switchover::{Classify as _, ErrorClass};
    init_tracing();
    let mut set = RedisReplicaSet::start(1).await.expect("replica set");
    let primary = set.primary().addr().to_string();
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.url()))
        .build()
        .await
        .expect("pool");
    let mut sub = pool
        .pubsub(switchover::redis::Target::Primary)
        .await
        .expect("pub/sub connection");
    sub.subscribe("news").await.expect("SUBSCRIBE");
    set.primary()
        .cmd(&["PUBLISH", "news", "before"])
        .await
        .expect("PUBLISH");
    let first = timeout(DEADLINE, sub.on_message().next())
        .await
        .expect("a message in time")
        .expect("the stream is open");
    assert_eq!(first.get_payload::<String>().unwrap(), "before");
    let endpoint = pool
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id().name() == primary)
        .expect("the primary's endpoint");
    let downs = endpoint.downs();

    set.primary_mut().pause().expect("SIGSTOP");
    let frozen_at = Instant::now();
    let end = timeout(DEADLINE, sub.on_message().next())
        .await
        .expect("the subscription ends: it used to wait for ever");
    let ended_after = frozen_at.elapsed();
    assert!(end.is_none(), "no message from a frozen node");
    assert!(endpoint.downs() > downs, "declared down first");
    let err = sub
        .subscribe("more")
        .await
        .expect_err("a command on the ended subscription");
    assert!(err.is_io_error(), "{err:?}");
    assert_eq!(err.classify().class(), ErrorClass::Transient, "{err}");
    println!("subscription on a frozen node ended after {ended_after:?}");
    // Three missed 200 ms heartbeats, 300 ms each: about 1.1 s; far below the old "never".
    assert!(ended_after < Duration::from_secs(5), "{ended_after:?}");
    set.primary_mut().resume().expect("SIGCONT");
}

/// Silent failures (the chaos matrix's Redis `latency` cell): a link that delays every reply
/// chunk by 250 ms makes a `ROLE` late for the 300 ms heartbeat; the node kept answering
/// writes, so those heartbeats are slow, not missed. Before, each late heartbeat put the
/// primary in doubt and writes waited for discovery (the cell's longest write gap: 1121 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_delays_every_reply_is_slow_not_dead() {
    use switchover::observe::EventKind;
    use switchover::testing::{FaultProxy, Mode, RedisServer};
    init_tracing();
    let server = RedisServer::start().await.expect("server");
    let proxy = FaultProxy::start(server.addr()).await.expect("proxy");
    let pool = SplitPool::builder()
        .nodes([proxy.addr().to_string()])
        .build()
        .await
        .expect("pool");
    let mut con = pool.clone();
    let _: () = con
        .set("k", 0)
        .await
        .expect("the shared connection is made");
    let endpoint = pool.tracker().endpoints().remove(0);
    let suspects = |pool: &SplitPool| {
        let events = pool.timeline().events();
        events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Suspect))
            .count()
    };
    let (generation, downs, suspected) =
        (pool.status().generation, endpoint.downs(), suspects(&pool));

    proxy
        .set_mode(Mode::Latency {
            delay: Duration::from_millis(250),
            jitter: Duration::ZERO,
        })
        .await
        .expect("latency");
    let started = Instant::now();
    let (mut writes, mut longest) = (0u32, Duration::ZERO);
    let mut last = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let r: redis::RedisResult<()> = con.set("k", writes).await;
        r.expect("a slow write still succeeds");
        writes += 1;
        longest = longest.max(last.elapsed());
        last = Instant::now();
    }
    proxy.set_mode(Mode::Pass).await.expect("pass");
    println!("slow link: {writes} writes in 2 s, longest wait {longest:?}");
    assert_eq!(
        suspects(&pool),
        suspected,
        "the primary was never put in doubt"
    );
    assert_eq!(endpoint.downs(), downs, "never declared down");
    assert_eq!(pool.status().generation, generation, "no switch");
    assert!(writes >= 2, "{writes}");
}

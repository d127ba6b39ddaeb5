//! Redis discovery in real deployments: what the pool believes about the topology, checked
//! against real `redis-server` nodes and sentinels.

use std::time::Duration;

use redis::AsyncCommands;
use switchover::health::HealthState;
use switchover::redis::SplitPool;
use switchover::testing::{RedisReplicaSet, RedisSentinel, RedisServer, Reply, RespClient};
use tokio::time::timeout;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Generous bound for anything that should finish "within the deadline".
const DEADLINE: Duration = Duration::from_secs(30);

/// A port on 127.0.0.1 nothing listens on (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Item 7: in Sentinel mode the replicas are known (and serve reads) when `build` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_known_when_build_returns_in_sentinel_mode() {
    init_tracing();
    let sentinel = RedisSentinel::start(2, 1).await.expect("sentinel fixture");
    let pool = SplitPool::builder()
        .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(sentinel.master_name())
        .build()
        .await
        .expect("pool through sentinel");
    let mut replicas = pool.replica_addrs();
    replicas.sort();
    let mut expected: Vec<String> = sentinel
        .replica_set()
        .replicas()
        .map(|r| r.addr().to_string())
        .collect();
    expected.sort();
    assert_eq!(
        replicas, expected,
        "both replicas serve reads right after build"
    );
    assert_eq!(pool.status().usable_replicas, 2);
}

/// Item 8: a lone node demoted to a replica of an unreachable master is no longer named
/// primary, serves no reads, and shows as a replica with its link down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_lone_node_is_neither_primary_nor_read_from() {
    init_tracing();
    let node = RedisServer::start().await.expect("redis-server");
    let pool = SplitPool::builder()
        .nodes([node.url()])
        .build()
        .await
        .expect("pool");
    assert_eq!(pool.primary_addr(), node.addr().to_string());
    let mut con = pool.clone();
    let _: () = con.set("k", "v").await.expect("SET");

    let port = dead_port().to_string();
    node.cmd(&["REPLICAOF", "127.0.0.1", &port])
        .await
        .expect("REPLICAOF a dead port");
    let err = timeout(DEADLINE, pool.rediscover())
        .await
        .expect("rediscover in time")
        .expect_err("no node claims the master role");
    assert!(
        err.to_string().contains("link down"),
        "the error says why: {err}"
    );
    assert_ne!(
        pool.primary_addr(),
        node.addr().to_string(),
        "the demoted node is not named primary"
    );
    assert!(pool.replica_addrs().is_empty());
    assert_eq!(pool.status().usable_replicas, 0);
    let (calls_before, _) = get_calls(&node).await;
    let read: Result<Option<String>, _> = timeout(DEADLINE, con.get("k"))
        .await
        .expect("the read ends in time");
    let err = read.expect_err("no node may serve the read");
    assert!(
        err.to_string().contains("no primary confirmed") && err.to_string().contains("link down"),
        "the read's error says why: {err}"
    );
    let (calls_after, _) = get_calls(&node).await;
    assert_eq!(
        calls_after, calls_before,
        "the demoted node served no GET ({err})"
    );
    let role = node.role().await.expect("ROLE");
    assert_eq!(role, "slave");
}

/// `calls` and `rejected_calls` of `GET` from `INFO commandstats`.
async fn get_calls(node: &RedisServer) -> (u64, u64) {
    let reply = node
        .cmd(&["INFO", "commandstats"])
        .await
        .expect("INFO commandstats");
    let text = reply.as_str().expect("INFO is text").to_owned();
    let Some(line) = text.lines().find(|l| l.starts_with("cmdstat_get:")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("calls"), field("rejected_calls"))
}

/// The machine's host name when it resolves to a loopback address (as `/etc/hosts` usually
/// makes it), besides `localhost`.
async fn loopback_names() -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty()
        && let Ok(mut found) = tokio::net::lookup_host((host, 1)).await
        && found.any(|a| a.ip().is_loopback())
    {
        names.push(host.to_owned());
    }
    names
}

/// Item 5: nodes configured by host names while the replicas report their primary by IP are
/// still one topology: the replicas serve reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_configured_by_name_are_matched_to_the_addresses_they_report() {
    init_tracing();
    let set = RedisReplicaSet::start(2).await.expect("replica set");
    for name in loopback_names().await {
        let pool = SplitPool::builder()
            .nodes(set.nodes().iter().map(|n| format!("{name}:{}", n.port())))
            .build()
            .await
            .expect("pool by name");
        let mut replicas = pool.replica_addrs();
        replicas.sort();
        let mut expected: Vec<String> = set
            .replicas()
            .map(|r| format!("{name}:{}", r.port()))
            .collect();
        expected.sort();
        assert_eq!(
            replicas, expected,
            "configured as {name}: both replicas serve reads"
        );
        let mut before = 0;
        for r in set.replicas() {
            before += get_calls(r).await.0;
        }
        let mut con = pool.clone();
        for _ in 0..200 {
            let _: Option<String> = con.get("k").await.expect("GET");
        }
        let mut after = 0;
        for r in set.replicas() {
            after += get_calls(r).await.0;
        }
        assert_eq!(
            after - before,
            200,
            "configured as {name}: every GET on a replica"
        );
    }
}

/// Item 4: one sentinel of three configured names a master, the other two are unreachable:
/// not a majority, so the pool does not believe it and says why, naming the quorum. (The pool
/// still builds, with the primary in doubt: a start during an outage is no error.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_of_three_is_no_quorum() {
    init_tracing();
    let sentinel = RedisSentinel::start(1, 1).await.expect("sentinel fixture");
    let mut addrs: Vec<String> = sentinel
        .sentinel_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    addrs.push(format!("127.0.0.1:{}", dead_port()));
    addrs.push(format!("127.0.0.1:{}", dead_port()));
    let pool = timeout(
        DEADLINE,
        SplitPool::builder()
            .sentinels(addrs)
            .master_name(sentinel.master_name())
            .build(),
    )
    .await
    .expect("build ends in time")
    .expect("builds in doubt");
    let err = timeout(DEADLINE, pool.rediscover())
        .await
        .expect("rediscover ends in time")
        .expect_err("one sentinel of three is no majority");
    assert_eq!(pool.primary_addr(), "", "no primary is believed");
    let why = err.to_string();
    assert!(
        why.contains(
            "no quorum of sentinels: 1 of the 3 configured name the same master (2 needed"
        ),
        "the error names the quorum: {why}"
    );
}

/// Item 4: two sentinels of three agree (the third is unreachable): the master they name is
/// believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sentinels_of_three_are_a_quorum() {
    init_tracing();
    let sentinel = RedisSentinel::start(1, 2).await.expect("sentinel fixture");
    let mut addrs: Vec<String> = sentinel
        .sentinel_addrs()
        .iter()
        .map(|a| a.to_string())
        .collect();
    addrs.push(format!("127.0.0.1:{}", dead_port()));
    let pool = timeout(
        DEADLINE,
        SplitPool::builder()
            .sentinels(addrs)
            .master_name(sentinel.master_name())
            .build(),
    )
    .await
    .expect("build ends in time")
    .expect("two of three are a majority");
    assert_eq!(
        pool.primary_addr(),
        sentinel.replica_set().primary().addr().to_string()
    );
    let mut con = pool.clone();
    let _: () = con.set("k", 1).await.expect("SET on the believed primary");
}

/// Item 6: a replica the sentinels stop reporting (stopped, then `SENTINEL RESET`) is pruned:
/// gone from the replicas, no longer asked (its endpoint drained, not failing every run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_sentinels_forget_is_pruned() {
    init_tracing();
    let mut sentinel = RedisSentinel::start(2, 1).await.expect("sentinel fixture");
    let pool = SplitPool::builder()
        .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(sentinel.master_name())
        .build()
        .await
        .expect("pool through sentinel");
    assert_eq!(pool.replica_addrs().len(), 2);
    let set = sentinel.replica_set_mut();
    let gone_index = (0..set.nodes().len())
        .find(|i| *i != set.primary_index())
        .expect("a replica");
    let gone = set.nodes()[gone_index].addr().to_string();
    set.node_mut(gone_index)
        .expect("node")
        .kill()
        .await
        .expect("kill the replica");
    let mut s = RespClient::connect(sentinel.sentinel_addrs()[0])
        .await
        .expect("sentinel client");
    s.command(&["SENTINEL", "RESET", sentinel.master_name()])
        .await
        .expect("SENTINEL RESET");
    // The sentinel re-learns the replicas from the primary: the stopped one is not among them.
    let listed = |r: &Reply| match r {
        Reply::Array(a) => a.len(),
        _ => usize::MAX,
    };
    let started = tokio::time::Instant::now();
    loop {
        let r = s
            .command(&["SENTINEL", "REPLICAS", sentinel.master_name()])
            .await
            .expect("SENTINEL REPLICAS");
        if listed(&r) == 1 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the sentinel still lists {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    timeout(DEADLINE, pool.rediscover())
        .await
        .expect("in time")
        .expect("rediscover");
    assert_eq!(pool.replica_addrs().len(), 1);
    assert!(!pool.replica_addrs().contains(&gone));
    let state = pool
        .tracker()
        .endpoints()
        .into_iter()
        .find(|e| e.id().name() == gone)
        .map(|e| e.state());
    assert_eq!(
        state,
        Some(HealthState::Draining),
        "the forgotten node is set aside, not probed down every run"
    );
}

/// `field` of a `SENTINEL MASTER` reply.
fn master_field(reply: &Reply, field: &str) -> Option<String> {
    let Reply::Array(items) = reply else {
        return None;
    };
    items.chunks(2).find_map(|kv| match kv {
        [k, v] if k.as_str() == Some(field) => v.as_str().map(str::to_owned),
        _ => None,
    })
}

/// Item 3: with the sentinels' `down-after-milliseconds` above the old fixed 10 s deadline
/// (12 s here; 30 s when stock), one idempotent write through an all-default pool rides out
/// the failover: the default deadline follows what `SENTINEL MASTER` reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_rides_out_a_failover_with_the_sentinels_own_down_after() {
    init_tracing();
    let mut sentinel = RedisSentinel::start(1, 1).await.expect("sentinel fixture");
    let name = sentinel.master_name();
    let mut s = RespClient::connect(sentinel.sentinel_addrs()[0])
        .await
        .expect("sentinel client");
    s.command(&["SENTINEL", "SET", name, "down-after-milliseconds", "12000"])
        .await
        .expect("SENTINEL SET");
    let master = s
        .command(&["SENTINEL", "MASTER", name])
        .await
        .expect("SENTINEL MASTER");
    assert_eq!(
        master_field(&master, "down-after-milliseconds").as_deref(),
        Some("12000")
    );
    let pool = SplitPool::builder()
        .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
        .master_name(name)
        .build()
        .await
        .expect("pool through sentinel");
    let mut con = pool.idempotent();
    let _: () = con.set("before", 1).await.expect("SET before");

    let old = sentinel.kill_primary().await.expect("kill the primary");
    let started = tokio::time::Instant::now();
    let written: redis::RedisResult<()> = con.set("after", 2).await;
    let took = started.elapsed();
    written.expect("one write rides out the failover");
    assert!(
        took >= Duration::from_secs(10),
        "the write waited for the sentinels (took {took:?})"
    );
    assert!(
        took < Duration::from_secs(22),
        "within the derived deadline ({took:?})"
    );
    let new = sentinel
        .wait_for_failover(old, DEADLINE)
        .await
        .expect("sentinel failover");
    assert_eq!(pool.primary_addr(), new.to_string());
    let node = sentinel
        .replica_set()
        .nodes()
        .iter()
        .find(|n| n.addr() == new)
        .expect("the new primary");
    let after = node.cmd(&["GET", "after"]).await.expect("GET");
    assert_eq!(after.as_str(), Some("2"));
    eprintln!("write across the failover took {took:?}");
}

/// Item 6: a black-holed address in the static list (accepts, never answers) does not hold
/// every discovery run for a whole exchange (connect 250 ms + response 1 s by default): the
/// nodes are asked in parallel and its handshake is cut at the connect timeout (then one probe
/// in the other protocol, as it never answered): about 0.55 s a run here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_node_does_not_lengthen_every_run() {
    init_tracing();
    let set = RedisReplicaSet::start(1).await.expect("replica set");
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hole_addr = hole.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            held.push(s);
        }
    });
    let mut nodes: Vec<String> = set.nodes().iter().map(|n| n.url()).collect();
    nodes.push(format!("redis://{hole_addr}"));
    let pool = SplitPool::builder()
        .nodes(nodes)
        .build()
        .await
        .expect("pool");
    // The first runs learn that the hole fails.
    for _ in 0..2 {
        let _ = timeout(DEADLINE, pool.rediscover()).await.expect("in time");
    }
    let mut longest = Duration::ZERO;
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        timeout(DEADLINE, pool.rediscover())
            .await
            .expect("in time")
            .expect("rediscover");
        longest = longest.max(started.elapsed());
    }
    eprintln!("longest run with a black-holed node: {longest:?}");
    assert!(
        longest < Duration::from_millis(1000),
        "a run took {longest:?}, a whole exchange (1.25 s) or more"
    );
    assert_eq!(pool.replica_addrs().len(), 1);
}

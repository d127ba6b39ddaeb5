//! Redis discovery in real deployments: what the pool believes about the topology, checked
//! against real `redis-server` nodes and sentinels.

use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::SplitPool;
use switchover::testing::{RedisSentinel, RedisServer};
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

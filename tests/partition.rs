//! Real partitions: servers in Linux network namespaces, cut off by packet drops.
//!
//! Runs as root with `ip` (iproute2) and `iptables` installed (`scripts/install-deps.sh`); a
//! missing capability fails the test with what is missing, never skips it. The adapter parts
//! need their features (`redis`, `postgres`, `dynamodb`).

use std::io::ErrorKind;
use std::time::Duration;

use switchover::testing::{
    Cut, DynamoDbRegions, Error, NetNs, PgCluster, RedisReplicaSet, RedisServer, Reply,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Longer than any loopback round trip by far, short enough to keep the tests quick.
const SILENCE: Duration = Duration::from_millis(700);
const SYNC: Duration = Duration::from_secs(15);

/// Sends an inline `PING` and reads one line.
async fn ping(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"PING\r\n").await?;
    read_line(stream).await
}

async fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await?;
    if n == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

/// A connect that neither succeeds nor fails within [`SILENCE`]: no RST, no ICMP.
async fn assert_connect_is_silent(addr: std::net::SocketAddr) {
    match timeout(SILENCE, TcpStream::connect(addr)).await {
        Err(_) => {}
        Ok(Ok(_)) => panic!("connected to {addr} through a partition"),
        Ok(Err(e)) => panic!("a partition answered a connect to {addr}: {e}"),
    }
}

fn text(reply: Reply) -> String {
    reply
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("not a string reply: {reply:?}"))
}

#[tokio::test]
async fn a_partitioned_server_is_silent_and_heal_restores_it() {
    let ns = NetNs::create().await.unwrap();
    let server = RedisServer::start_in(&ns).await.unwrap();
    assert_eq!(server.addr().ip(), ns.addr());
    assert_ne!(ns.addr(), ns.host_addr());
    assert_eq!(server.netns().map(NetNs::name), Some(ns.name()));
    assert!(
        ns.name()
            .starts_with(&format!("swo-{}-", std::process::id()))
    );

    let mut established = TcpStream::connect(server.addr()).await.unwrap();
    assert_eq!(ping(&mut established).await.unwrap(), "+PONG");

    ns.partition().await.unwrap();
    assert_eq!(ns.cut(), Cut::Both);
    assert!(ns.is_partitioned());
    assert_connect_is_silent(server.addr()).await;
    // The request leaves, nothing comes back, and the connection is neither reset nor closed.
    established.write_all(b"PING\r\n").await.unwrap();
    let read = timeout(SILENCE, read_line(&mut established)).await;
    assert!(
        read.is_err(),
        "a read through a partition returned {read:?}"
    );

    ns.heal().await.unwrap();
    assert_eq!(ns.cut(), Cut::None);
    // The retransmitted PING gets its answer on the connection that lived through the cut.
    let late = timeout(SYNC, read_line(&mut established)).await;
    assert_eq!(late.unwrap().unwrap(), "+PONG");
    let mut fresh = timeout(SYNC, TcpStream::connect(server.addr()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ping(&mut fresh).await.unwrap(), "+PONG");
    // Healing twice is harmless.
    ns.heal().await.unwrap();
}

#[tokio::test]
async fn a_one_way_cut_is_silent_too_and_only_in_its_direction() {
    let ns = NetNs::create().await.unwrap();
    let server = RedisServer::start_in(&ns).await.unwrap();
    for cut in [Cut::Inbound, Cut::Outbound] {
        match cut {
            Cut::Inbound => ns.partition_inbound().await.unwrap(),
            _ => ns.partition_outbound().await.unwrap(),
        }
        assert_eq!(ns.cut(), cut);
        // Inbound: the SYN is dropped; outbound: the SYN-ACK is. Neither answers.
        assert_connect_is_silent(server.addr()).await;
        ns.heal().await.unwrap();
        let mut client = timeout(SYNC, TcpStream::connect(server.addr()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ping(&mut client).await.unwrap(), "+PONG");
    }

    // Outbound only: what the test sends arrives (the server executes it), the reply does not.
    let mut client = TcpStream::connect(server.addr()).await.unwrap();
    ns.partition_outbound().await.unwrap();
    client.write_all(b"SET landed yes\r\n").await.unwrap();
    let read = timeout(SILENCE, read_line(&mut client)).await;
    assert!(read.is_err(), "a reply crossed an outbound cut: {read:?}");
    ns.heal().await.unwrap();
    assert_eq!(text(server.cmd(&["GET", "landed"]).await.unwrap()), "yes");
}

#[tokio::test]
async fn namespaces_get_distinct_subnets_and_clean_up_on_drop() {
    let started = Instant::now();
    let a = NetNs::create().await.unwrap();
    let created = started.elapsed();
    let b = NetNs::create().await.unwrap();
    let started = Instant::now();
    b.partition().await.unwrap();
    let partitioned = started.elapsed();
    let started = Instant::now();
    b.heal().await.unwrap();
    println!(
        "NetNs::create {created:?}, partition {partitioned:?}, heal {:?}",
        started.elapsed()
    );
    assert_ne!(a.name(), b.name());
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.host_addr(), b.host_addr());
    let name = a.name().to_owned();
    let clone = a.clone();
    drop(a);
    assert!(
        netns_exists(&name).await,
        "a live handle keeps the namespace"
    );
    drop(clone);
    assert!(
        !netns_exists(&name).await,
        "{name} outlived its last handle"
    );
}

async fn netns_exists(name: &str) -> bool {
    let out = tokio::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[tokio::test]
async fn a_server_on_loopback_cannot_be_partitioned() {
    let server = RedisServer::start().await.unwrap();
    assert!(server.netns().is_none());
    let err = server.partition().await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("network namespace"), "{err}");
}

#[tokio::test]
async fn a_replica_in_another_namespace_syncs_and_catches_up_after_a_partition() {
    let mut set = RedisReplicaSet::start_in_netns(1).await.unwrap();
    let (primary, replica) = (&set.nodes()[0], &set.nodes()[1]);
    let (p_ns, r_ns) = (primary.netns().unwrap(), replica.netns().unwrap());
    assert_ne!(p_ns.name(), r_ns.name());
    assert_eq!(replica.replica_of(), Some(primary.addr()));

    primary.cmd(&["SET", "k", "before"]).await.unwrap();
    set.wait_for_sync(SYNC).await.unwrap();
    assert_eq!(
        text(set.nodes()[1].cmd(&["GET", "k"]).await.unwrap()),
        "before"
    );

    // Cut the replica off: the primary takes a write the replica cannot see.
    set.nodes()[1].partition().await.unwrap();
    set.nodes()[0].cmd(&["SET", "k", "during"]).await.unwrap();
    let started = Instant::now();
    assert!(
        timeout(SILENCE, set.nodes()[1].cmd(&["GET", "k"]))
            .await
            .is_err_and(|_| started.elapsed() >= SILENCE),
        "the partitioned replica answered"
    );
    set.nodes()[1].heal().await.unwrap();
    set.wait_for_sync(SYNC).await.unwrap();
    assert_eq!(
        text(set.nodes()[1].cmd(&["GET", "k"]).await.unwrap()),
        "during"
    );
}

#[tokio::test]
async fn a_replica_started_in_a_given_namespace_replicates_from_another() {
    let (a, b) = (
        NetNs::create().await.unwrap(),
        NetNs::create().await.unwrap(),
    );
    let primary = RedisServer::start_in(&a).await.unwrap();
    let replica = RedisServer::start_replica_of_in(primary.addr(), &b)
        .await
        .unwrap();
    assert_eq!(replica.addr().ip(), b.addr());
    replica.wait_link_up(SYNC).await.unwrap();
    primary.cmd(&["SET", "k", "across"]).await.unwrap();
    let deadline = Instant::now() + SYNC;
    while replica.cmd(&["GET", "k"]).await.unwrap().as_str() != Some("across") {
        assert!(Instant::now() < deadline, "the write did not replicate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The primary sees its replica at the replica's namespace address.
    let info = primary.info_replication().await.unwrap();
    assert!(info.contains(&format!("ip={}", b.addr())), "{info}");
}

#[tokio::test]
async fn a_dynamodb_region_in_a_namespace_answers_and_goes_silent_alone() {
    let regions = DynamoDbRegions::start_in_netns(&["us-east-1", "eu-west-1"])
        .await
        .unwrap();
    let (east, west) = (
        regions.region("us-east-1").unwrap(),
        regions.region("eu-west-1").unwrap(),
    );
    assert_eq!(east.addr().ip(), east.netns().unwrap().addr());
    assert_eq!(east.endpoint_url(), format!("http://{}", east.addr()));
    assert_ne!(east.addr().ip(), west.addr().ip());
    assert!(
        east.list_tables_raw(SYNC)
            .await
            .unwrap()
            .contains("TableNames")
    );

    east.partition().await.unwrap();
    let err = east.list_tables_raw(SILENCE).await.unwrap_err();
    assert!(err.is_timeout(), "a partitioned region answered: {err}");
    assert!(
        west.list_tables_raw(SYNC)
            .await
            .unwrap()
            .contains("TableNames")
    );

    east.heal().await.unwrap();
    assert!(
        east.list_tables_raw(SYNC)
            .await
            .unwrap()
            .contains("TableNames")
    );
}

#[tokio::test]
async fn a_postgres_standby_in_another_namespace_replays_and_catches_up_after_a_partition() {
    let cluster = PgCluster::start_in_netns(1).await.unwrap();
    let (primary, standby) = (&cluster.nodes()[0], &cluster.nodes()[1]);
    assert_eq!(primary.host(), primary.netns().unwrap().addr().to_string());
    assert_ne!(primary.host(), standby.host());
    assert!(standby.is_in_recovery().await.unwrap());
    primary
        .sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('before')")
        .await
        .unwrap();
    cluster.wait_for_replay(1, SYNC).await.unwrap();
    assert_eq!(standby.sql("SELECT v FROM t").await.unwrap(), "before");

    // The standby is cut off: TCP to it is silent, the fixture still reaches it through its
    // Unix socket, and it does not see what the primary writes meanwhile.
    standby.partition().await.unwrap();
    assert_connect_is_silent(standby.addr()).await;
    primary
        .sql("INSERT INTO t VALUES ('during')")
        .await
        .unwrap();
    let lsn = primary.wal_lsn().await.unwrap();
    let behind = standby.wait_for_replay(&lsn, SILENCE).await.unwrap_err();
    assert!(behind.is_timeout(), "{behind}");
    assert_eq!(standby.sql("SELECT count(*) FROM t").await.unwrap(), "1");

    standby.heal().await.unwrap();
    standby.wait_for_replay(&lsn, SYNC).await.unwrap();
    assert_eq!(standby.sql("SELECT count(*) FROM t").await.unwrap(), "2");
}

// ---------------------------------------------------------------------------------------------
// Adapters: a pool through a real partition of its primary
// ---------------------------------------------------------------------------------------------

/// One write of a workload: its number, when it started and ended, and whether it was acked.
#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Debug, Clone)]
struct Write {
    i: i64,
    started: Instant,
    ended: Instant,
    acked: bool,
}

/// Writes `1, 2, 3, ...` one after another (10 ms apart, each bounded by 30 s) until `stop`.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn spawn_writer<F, Fut>(
    mut write: F,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    log: std::sync::Arc<std::sync::Mutex<Vec<Write>>>,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(i64) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    tokio::spawn(async move {
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let started = Instant::now();
            let acked = timeout(Duration::from_secs(30), write(i))
                .await
                .unwrap_or(false);
            let ended = Instant::now();
            log.lock().unwrap().push(Write {
                i,
                started,
                ended,
                acked,
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Waits until the log holds an acked write that started at or after `since`; returns it.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn first_ack_since(log: &std::sync::Mutex<Vec<Write>>, since: Instant) -> Write {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(w) = log
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.acked && w.started >= since)
        {
            return w.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no write acked within 30 s of the switch"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(feature = "redis")]
mod redis_pool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use redis::AsyncCommands;
    use redis::io::tcp::socket2::Socket;
    use switchover::redis::SplitPool;
    use switchover::testing::RedisSentinel;

    use super::*;

    /// `TCP_USER_TIMEOUT` is what ends a connection whose peer went silent: with it set to
    /// 500 ms, a request through a partition fails with `ETIMEDOUT` instead of hanging.
    #[tokio::test]
    async fn tcp_user_timeout_fails_a_request_through_a_partition() {
        let ns = NetNs::create().await.unwrap();
        let server = RedisServer::start_in(&ns).await.unwrap();
        let std = std::net::TcpStream::connect(server.addr()).unwrap();
        let socket = Socket::from(std);
        socket
            .set_tcp_user_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let std: std::net::TcpStream = socket.into();
        std.set_nonblocking(true).unwrap();
        let mut stream = TcpStream::from_std(std).unwrap();
        assert_eq!(ping(&mut stream).await.unwrap(), "+PONG");

        ns.partition().await.unwrap();
        let started = Instant::now();
        let err = timeout(Duration::from_secs(15), ping(&mut stream))
            .await
            .expect("TCP_USER_TIMEOUT ends the request")
            .unwrap_err();
        let took = started.elapsed();
        println!("TCP_USER_TIMEOUT 500 ms: the request failed after {took:?}: {err}");
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(took >= Duration::from_millis(450), "{took:?}");
    }

    /// The primary is partitioned (silent, no RST); the sentinels (down-after 1 s) promote a
    /// replica, and the pool's writes follow it. Asserted: the pool names the new primary,
    /// every write acked after the cut is on it, and none of the writes started after the
    /// switch reached the old primary. Printed: the client gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_split_pool_follows_sentinel_when_its_primary_is_partitioned() {
        let mut sentinel = RedisSentinel::start_in_netns(2, 3).await.unwrap();
        let old = sentinel.replica_set().primary().addr();
        let pool = SplitPool::builder()
            .sentinels(sentinel.sentinel_addrs().iter().map(|a| a.to_string()))
            .master_name(sentinel.master_name())
            .build()
            .await
            .unwrap();
        assert_eq!(pool.primary_addr(), old.to_string());

        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = spawn_writer(
            {
                let pool = pool.clone();
                move |i| {
                    let mut con = pool.clone();
                    async move {
                        let r: redis::RedisResult<()> = con.set(format!("w:{i}"), i).await;
                        r.is_ok()
                    }
                }
            },
            stop.clone(),
            log.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old_ns = sentinel.replica_set().primary().netns().unwrap().clone();
        // The cut counts from when the drop rules are in (a write just before may still land).
        old_ns.partition().await.unwrap();
        let cut = Instant::now();
        let new = sentinel
            .wait_for_failover(old, Duration::from_secs(30))
            .await
            .unwrap();
        let promoted = Instant::now();
        let first = first_ack_since(&log, promoted).await;
        let first_after_cut = first_ack_since(&log, cut).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();

        println!(
            "redis partition: promotion seen {:?} after the cut; first write acked after the \
             cut ended {:?} after it; first write started after the promotion was seen acked \
             {:?} after it (client gap)",
            promoted - cut,
            first_after_cut.ended - cut,
            first.ended - promoted,
        );
        assert_eq!(pool.primary_addr(), new.to_string(), "the pool switched");
        let node = |addr| {
            sentinel
                .replica_set()
                .nodes()
                .iter()
                .find(|n| n.addr() == addr)
                .unwrap()
        };
        let log = log.lock().unwrap().clone();
        let acked_after_cut: Vec<&Write> =
            log.iter().filter(|w| w.acked && w.ended >= cut).collect();
        assert!(!acked_after_cut.is_empty());
        for w in &acked_after_cut {
            let got = node(new)
                .cmd(&["GET", &format!("w:{}", w.i)])
                .await
                .unwrap();
            assert_eq!(got.as_str(), Some(w.i.to_string().as_str()), "write {w:?}");
        }
        // Still partitioned: read the old primary from inside its namespace.
        let keys = old_ns
            .command("redis-cli")
            .args(["-h", &old.ip().to_string(), "-p", &old.port().to_string()])
            .args(["--raw", "KEYS", "w:*"])
            .output()
            .await
            .unwrap();
        assert!(keys.status.success());
        let on_old: Vec<i64> = String::from_utf8_lossy(&keys.stdout)
            .lines()
            .filter_map(|k| k.strip_prefix("w:")?.parse().ok())
            .collect();
        let after_switch: Vec<i64> = log
            .iter()
            .filter(|w| w.started >= promoted)
            .map(|w| w.i)
            .filter(|i| on_old.contains(i))
            .collect();
        assert!(
            after_switch.is_empty(),
            "writes started after the switch landed on the old primary: {after_switch:?}"
        );
        // A generous bound; the target (issue 11) is 1 s.
        assert!(
            first.ended - promoted < Duration::from_secs(10),
            "client gap {:?}",
            first.ended - promoted
        );
        assert!(first_after_cut.ended - cut < Duration::from_secs(20));
    }
}

#[cfg(feature = "postgres")]
mod postgres_pool {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use switchover::postgres::FailoverPool;

    use super::*;

    /// The primary is partitioned (silent); the standby, in its own namespace, is promoted as
    /// an operator or Patroni would. Asserted: the pool names the promoted node, every write
    /// acked after the cut is on it, and none started after the promotion reached the old
    /// primary (read through its Unix socket while still cut off). Printed: the client gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failover_pool_follows_the_promoted_standby_when_its_primary_is_partitioned() {
        let mut cluster = PgCluster::start_in_netns(1).await.unwrap();
        cluster
            .primary()
            .sql("CREATE TABLE items (id bigint PRIMARY KEY)")
            .await
            .unwrap();
        cluster.wait_for_replay(1, SYNC).await.unwrap();
        let hosts: Vec<(String, u16)> = cluster
            .nodes()
            .iter()
            .map(|n| (n.host().to_owned(), n.port()))
            .collect();
        let pool = FailoverPool::builder()
            .connection_string("user=postgres dbname=postgres")
            .hosts(hosts)
            .build()
            .unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = spawn_writer(
            {
                let pool = pool.clone();
                move |i| {
                    let pool = pool.clone();
                    async move {
                        pool.run(move |c| {
                            Box::pin(async move {
                                c.execute("INSERT INTO items VALUES ($1)", &[&i])
                                    .await
                                    .map(drop)
                            })
                        })
                        .await
                        .is_ok()
                    }
                }
            },
            stop.clone(),
            log.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            log.lock().unwrap().iter().any(|w| w.acked),
            "writes before the cut"
        );
        cluster.nodes()[0].partition().await.unwrap();
        let cut = Instant::now();
        cluster.promote(1).await.unwrap();
        let promoted = Instant::now();
        let first = first_ack_since(&log, promoted).await;
        let first_after_cut = first_ack_since(&log, cut).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();

        println!(
            "postgres partition: promoted {:?} after the cut; first write acked after the cut \
             ended {:?} after it; first write started after the promotion acked {:?} after it \
             (client gap)",
            promoted - cut,
            first_after_cut.ended - cut,
            first.ended - promoted,
        );
        let new = &cluster.nodes()[1];
        assert_eq!(
            pool.primary(),
            format!("{}:{}", new.host(), new.port()),
            "the pool switched"
        );
        let log = log.lock().unwrap().clone();
        let ids = |text: String| -> Vec<i64> {
            text.lines().filter_map(|l| l.trim().parse().ok()).collect()
        };
        let on_new = ids(new.sql("SELECT id FROM items").await.unwrap());
        for w in log.iter().filter(|w| w.acked && w.ended >= cut) {
            assert!(
                on_new.contains(&w.i),
                "acked write {w:?} missing on the new primary"
            );
        }
        let on_old = ids(cluster.nodes()[0]
            .sql("SELECT id FROM items")
            .await
            .unwrap());
        let after_switch: Vec<i64> = log
            .iter()
            .filter(|w| w.started >= promoted && on_old.contains(&w.i))
            .map(|w| w.i)
            .collect();
        assert!(
            after_switch.is_empty(),
            "writes started after the promotion landed on the old primary: {after_switch:?}"
        );
        // A generous bound; the target (issue 11) is 1 s.
        assert!(
            first.ended - promoted < Duration::from_secs(10),
            "client gap {:?}",
            first.ended - promoted
        );
    }
}

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
    let a = NetNs::create().await.unwrap();
    let b = NetNs::create().await.unwrap();
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

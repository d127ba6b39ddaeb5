//! The Postgres failover pool against real Postgres 15 primaries and streaming standbys.
//!
//! Every test starts its own servers with the testing kit; failovers are real (kill, promote,
//! read-only fence, black hole and cut-after-request through the fault proxy). Outcomes are
//! asserted, never timings; anything that could hang is bounded by a generous timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::Classification;
use switchover::health::HealthState;
use switchover::postgres::{
    Error, ErrorKind, FailoverPool, FailoverPoolBuilder, ServerRole, TargetRole,
};
use switchover::retry::RetryPolicy;
use switchover::testing::{FaultProxy, Mode, PgCluster, PgNode};
use tokio::time::timeout;

/// Bounds every step that could hang if the pool were wrong.
const BOUND: Duration = Duration::from_secs(60);

fn addr(node: &PgNode) -> String {
    format!("{}:{}", node.host(), node.port())
}

/// A pool over `hosts` (`(host, port)`) with the fixture's user, short deadlines for fast
/// tests, and a runner that may retry for 20 s.
fn builder(hosts: &[(String, u16)]) -> FailoverPoolBuilder {
    FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .hosts(hosts.iter().cloned())
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(200)
                .deadline(Duration::from_secs(20))
                .build()
                .unwrap(),
        )
}

fn node_host(node: &PgNode) -> (String, u16) {
    (node.host().to_owned(), node.port())
}

async fn create_table(cluster: &PgCluster) {
    cluster
        .primary()
        .sql("CREATE TABLE items (id bigserial PRIMARY KEY, v text NOT NULL)")
        .await
        .unwrap();
    for i in 1..cluster.nodes().len() {
        cluster
            .wait_for_replay(i, Duration::from_secs(30))
            .await
            .unwrap();
    }
}

async fn count(node: &PgNode, v: &str) -> usize {
    node.sql(&format!("SELECT count(*) FROM items WHERE v = '{v}'"))
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// A primary with the items table, behind a fault proxy, and a pool through the proxy that
/// has made one write.
async fn behind_a_proxy() -> (PgCluster, Arc<FaultProxy>, FailoverPool) {
    let cluster = PgCluster::start(0).await.unwrap();
    create_table(&cluster).await;
    let proxy = Arc::new(FaultProxy::start(cluster.primary().addr()).await.unwrap());
    let pool = builder(&[("127.0.0.1".to_owned(), proxy.port())])
        .build()
        .unwrap();
    assert!(insert(&pool, "warmup").await.is_ok());
    (cluster, proxy, pool)
}

async fn insert(pool: &FailoverPool, v: &str) -> Result<String, Error> {
    let v = v.to_owned();
    pool.transaction(move |tx| {
        let v = v.clone();
        Box::pin(async move {
            tx.execute("INSERT INTO items (v) VALUES ($1)", &[&v])
                .await?;
            let row = tx
                .query_one(
                    "SELECT inet_server_port()::text || ' ' || pg_is_in_recovery()::text",
                    &[],
                )
                .await?;
            Ok(row.get::<_, String>(0))
        })
    })
    .await
}

/// Checks out `n` primary connections at once and returns them to the pool, so it holds `n`
/// idle connections to the current primary.
async fn fill_pool(pool: &FailoverPool, n: usize) -> Vec<String> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(timeout(BOUND, pool.get()).await.unwrap().unwrap());
    }
    held.iter().map(|c| c.host().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_primary_and_promote_standby_writes_resume_on_the_new_primary() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    create_table(&cluster).await;
    let old = addr(&cluster.nodes()[0]);
    let new = addr(&cluster.nodes()[1]);
    let pool = builder(&[
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ])
    .build()
    .unwrap();

    // Writes go to the primary; the pool now holds idle connections to it.
    assert!(insert(&pool, "before").await.unwrap().ends_with("false"));
    assert_eq!(fill_pool(&pool, 4).await, vec![old.clone(); 4]);
    let generation_before = pool.generation();
    // One connection stays checked out across the failover.
    let held = pool.get().await.unwrap();
    assert_eq!(held.host(), old);

    // A workload of non-idempotent inserts runs while the primary dies.
    let workload = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut ok = 0usize;
            let mut failed = 0usize;
            let mut hosts = Vec::new();
            for i in 0..40 {
                match insert(&pool, &format!("w{i}")).await {
                    Ok(where_) => {
                        ok += 1;
                        hosts.push(where_);
                    }
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed, hosts)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill_primary().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.promote(1).await.unwrap();

    // Writes resume on the new primary.
    let where_ = timeout(BOUND, insert(&pool, "after"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(where_, format!("{} false", cluster.nodes()[1].port()));
    assert_eq!(count(&cluster.nodes()[1], "after").await, 1);
    assert_eq!(pool.primary(), new);
    assert!(pool.generation() > generation_before);

    // The connection that was checked out is returned; no connection to the old primary is
    // ever handed out again, for writes or reads.
    drop(held);
    for _ in 0..20 {
        let c = timeout(BOUND, pool.get()).await.unwrap().unwrap();
        assert_eq!(c.host(), new);
        assert_eq!(c.role(), Some(ServerRole::Primary));
        let r = timeout(BOUND, pool.get_read()).await.unwrap().unwrap();
        assert_eq!(r.host(), new);
    }
    let (ok, _failed, hosts) = timeout(BOUND, workload).await.unwrap().unwrap();
    assert!(ok > 0);
    // The workload's last writes landed on the new primary.
    assert_eq!(
        hosts.last().unwrap(),
        &format!("{} false", cluster.nodes()[1].port())
    );
    let topology = pool.topology();
    assert!(topology.iter().any(|h| h.host == new && h.active));
}

/// The standby was ejected a moment before the failover (say its connects were refused while
/// it restarted for promotion). Once re-discovery confirms it is the writable primary it takes
/// writes at once, not after its 20 s ejection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_standby_still_ejected_takes_writes_once_confirmed_primary() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    create_table(&cluster).await;
    let new = addr(&cluster.nodes()[1]);
    let pool = builder(&[
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ])
    .health(|h| {
        h.ejection_base(Duration::from_secs(20))
            .ejection_cap(Duration::from_secs(60))
    })
    .build()
    .unwrap();
    assert!(insert(&pool, "before").await.unwrap().ends_with("false"));

    let standby = pool.tracker().endpoint(&Arc::from(new.as_str())).unwrap();
    for _ in 0..3 {
        standby.record_failure(Classification::transient().not_executed());
    }
    assert_eq!(standby.state(), HealthState::Down);
    assert!(standby.stats().down_until.is_some());

    cluster.kill_primary().await.unwrap();
    cluster.promote(1).await.unwrap();

    // Well inside the ejection, a write succeeds on the new primary.
    let where_ = timeout(Duration::from_secs(8), insert(&pool, "after"))
        .await
        .expect("writes resume before the standby's ejection would have ended")
        .unwrap();
    assert_eq!(where_, format!("{} false", cluster.nodes()[1].port()));
    assert_eq!(pool.primary(), new);
    assert!(standby.is_available());
    assert_eq!(standby.stats().ejections, 1, "the ejection streak is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_fence_evicts_after_the_first_25006_and_finds_the_promoted_primary() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    create_table(&cluster).await;
    let old = addr(&cluster.nodes()[0]);
    let new = addr(&cluster.nodes()[1]);
    let pool = builder(&[
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ])
    .verify_idle_after(None)
    // The heartbeat records the fenced role (and the backstop run would then switch before
    // any write); this test is about what the first 25006 does.
    .heartbeat(None)
    .build()
    .unwrap();
    assert!(insert(&pool, "before").await.is_ok());
    assert_eq!(fill_pool(&pool, 4).await, vec![old.clone(); 4]);

    // The primary is demoted server-side (read-only fence) and the standby promoted.
    cluster.nodes()[0].fence_read_only().await.unwrap();
    cluster.promote(1).await.unwrap();

    // The pooled connections still look healthy to a `SELECT 1`...
    {
        let c = pool.get().await.unwrap();
        assert_eq!(c.host(), old);
        c.simple_query("SELECT 1").await.unwrap();
    }

    // ...but the first write gets 25006; the pool re-discovers and retries on the real primary.
    let calls = Arc::new(AtomicUsize::new(0));
    let codes = Arc::new(Mutex::new(Vec::new()));
    let result = {
        let calls = calls.clone();
        let codes = codes.clone();
        timeout(
            BOUND,
            pool.transaction(move |tx| {
                let calls = calls.clone();
                let codes = codes.clone();
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let r = tx
                        .execute("INSERT INTO items (v) VALUES ('fenced')", &[])
                        .await;
                    if let Err(e) = &r {
                        codes
                            .lock()
                            .unwrap()
                            .push(e.code().map(|c| c.code().to_owned()));
                    }
                    r?;
                    let port: i32 = tx.query_one("SELECT inet_server_port()", &[]).await?.get(0);
                    Ok(port)
                })
            }),
        )
        .await
        .unwrap()
    };
    assert_eq!(result.unwrap(), i32::from(cluster.nodes()[1].port()));
    assert_eq!(*codes.lock().unwrap(), vec![Some("25006".to_owned())]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(count(&cluster.nodes()[1], "fenced").await, 1);
    assert_eq!(pool.primary(), new);

    // Every idle connection to the fenced node was evicted: none is handed out again.
    for _ in 0..10 {
        let c = timeout(BOUND, pool.get()).await.unwrap().unwrap();
        assert_eq!(c.host(), new);
    }
    let fenced = pool.topology().into_iter().find(|h| h.host == old).unwrap();
    assert_eq!(fenced.role, Some(ServerRole::ReadOnly));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_primary_is_detected_within_the_deadlines_and_no_call_hangs() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    create_table(&cluster).await;
    let proxy = FaultProxy::start(cluster.nodes()[0].addr()).await.unwrap();
    let proxied = format!("127.0.0.1:{}", proxy.port());
    let pool = builder(&[
        ("127.0.0.1".to_owned(), proxy.port()),
        node_host(&cluster.nodes()[1]),
    ])
    .retry_policy(
        RetryPolicy::builder()
            .max_attempts(100)
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap(),
    )
    .build()
    .unwrap();
    assert!(insert(&pool, "before").await.is_ok());
    assert_eq!(pool.primary(), proxied);

    proxy.set_mode(Mode::BlackHole).await.unwrap();

    // A write through the black hole: the query deadline fires, the pool re-discovers (the
    // hole never answers a login), finds no primary and gives up at the runner's deadline.
    let err = timeout(BOUND, insert(&pool, "lost"))
        .await
        .unwrap()
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        chain.contains("query timeout") || chain.contains("timed out"),
        "{chain}"
    );
    // `get` gives up at the acquire deadline instead of hanging.
    let err = timeout(BOUND, pool.get()).await.unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let hole = pool
        .topology()
        .into_iter()
        .find(|h| h.host == proxied)
        .unwrap();
    assert!(!matches!(hole.health, switchover::health::HealthState::Up));

    // Promote the standby: writes resume there, never through the hole.
    cluster.promote(1).await.unwrap();
    let where_ = timeout(BOUND, insert(&pool, "after"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(where_, format!("{} false", cluster.nodes()[1].port()));
    assert_eq!(count(&cluster.nodes()[1], "after").await, 1);
    proxy.set_mode(Mode::Pass).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_standby_reads_go_to_the_standby_then_to_the_primary_when_it_dies() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    create_table(&cluster).await;
    let primary = addr(&cluster.nodes()[0]);
    let standby = addr(&cluster.nodes()[1]);
    let pool = builder(&[
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ])
    .read_role(TargetRole::PreferStandby)
    .build()
    .unwrap();
    assert_eq!(pool.read_role(), TargetRole::PreferStandby);

    for _ in 0..5 {
        let r = timeout(BOUND, pool.get_read()).await.unwrap().unwrap();
        assert_eq!(r.host(), standby);
        assert_eq!(r.role(), Some(ServerRole::Standby));
        let in_recovery: bool = r
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(in_recovery);
    }
    // Writes still go to the primary.
    assert_eq!(pool.get().await.unwrap().host(), primary);

    cluster.node_mut(1).unwrap().kill().await.unwrap();

    for _ in 0..5 {
        let r = timeout(BOUND, pool.get_read()).await.unwrap().unwrap();
        assert_eq!(r.host(), primary);
        let in_recovery: bool = r
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!in_recovery);
    }

    // A standby-only pool has nowhere to go: it says so within the acquire timeout.
    let standby_only = builder(&[
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ])
    .target_role(TargetRole::Standby)
    .acquire_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let err = timeout(BOUND, standby_only.get())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_after_commit_was_sent_is_reported_as_unknown_outcome() {
    let (cluster, proxy, pool) = behind_a_proxy().await;

    // The proxy cuts the connection as soon as the server answers the next request: COMMIT.
    let calls = Arc::new(AtomicUsize::new(0));
    let result = {
        let (proxy, calls) = (proxy.clone(), calls.clone());
        timeout(
            BOUND,
            pool.transaction(move |tx| {
                let (proxy, calls) = (proxy.clone(), calls.clone());
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tx.execute("INSERT INTO items (v) VALUES ('unknown')", &[])
                        .await?;
                    proxy.set_mode(Mode::CutOnReply).await.unwrap();
                    Ok(())
                })
            }),
        )
        .await
        .unwrap()
    };
    let err = result.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::OutcomeUnknown), "{err:?}");
    assert!(err.is_outcome_unknown());
    assert!(err.to_string().contains("after COMMIT was sent"), "{err}");
    // Not idempotent: never run twice.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    proxy.set_mode(Mode::Pass).await.unwrap();
    // The server commits: the proxy arms the cut only once COMMIT was forwarded, and closes
    // the server's side gracefully, so COMMIT is read and run. But the cut can come on the
    // late tail of the INSERT's reply, before the server has run COMMIT: the client then
    // returns at once, and the row shows a moment later. (Counting at once made this test
    // see 0 rows in about one run of three.)
    let mut committed = count(cluster.primary(), "unknown").await;
    let waiting = std::time::Instant::now();
    while committed == 0 && waiting.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        committed = count(cluster.primary(), "unknown").await;
    }
    assert_eq!(committed, 1, "the server ran COMMIT once");

    // A cut before COMMIT rolled the transaction back: retried even though not idempotent,
    // and the row exists exactly once. The proxy cuts for a moment only, like a network blip.
    let calls = Arc::new(AtomicUsize::new(0));
    let result = {
        let (proxy, calls) = (proxy.clone(), calls.clone());
        timeout(
            BOUND,
            pool.transaction(move |tx| {
                let (proxy, calls) = (proxy.clone(), calls.clone());
                Box::pin(async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        cut_briefly(&proxy).await;
                    }
                    tx.execute("INSERT INTO items (v) VALUES ('rolled-back')", &[])
                        .await?;
                    Ok(())
                })
            }),
        )
        .await
        .unwrap()
    };
    result.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(count(cluster.primary(), "rolled-back").await, 1);

    // Idempotent work is retried after an unknown outcome, and then known.
    let calls = Arc::new(AtomicUsize::new(0));
    let result = {
        let (proxy, calls) = (proxy.clone(), calls.clone());
        timeout(
            BOUND,
            pool.idempotent().transaction(move |tx| {
                let (proxy, calls) = (proxy.clone(), calls.clone());
                Box::pin(async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    tx.execute(
                        "INSERT INTO items (id, v) VALUES (1000000, 'idem') ON CONFLICT DO NOTHING",
                        &[],
                    )
                    .await?;
                    if n == 0 {
                        cut_briefly(&proxy).await;
                    }
                    Ok(())
                })
            }),
        )
        .await
        .unwrap()
    };
    result.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(count(cluster.primary(), "idem").await, 1);
}

/// Puts the proxy in cut-on-reply mode for 300 ms: the next reply of every connection is cut.
async fn cut_briefly(proxy: &Arc<FaultProxy>) {
    proxy.set_mode(Mode::CutOnReply).await.unwrap();
    let proxy = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.set_mode(Mode::Pass).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_never_waits_past_the_acquire_timeout_even_when_every_host_is_down() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    let hole = FaultProxy::start(cluster.nodes()[0].addr()).await.unwrap();
    hole.set_mode(Mode::BlackHole).await.unwrap();
    let hosts = [
        ("127.0.0.1".to_owned(), hole.port()),
        node_host(&cluster.nodes()[0]),
        node_host(&cluster.nodes()[1]),
    ];
    cluster.node_mut(1).unwrap().kill().await.unwrap();
    cluster.node_mut(0).unwrap().kill().await.unwrap();

    let pool = builder(&hosts)
        .acquire_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // The acquire timeout is 2 s; the slack covers scheduling on a loaded machine, far below
    // what one more connect, probe or backoff round past the deadline would add.
    let limit = Duration::from_secs(2) + Duration::from_millis(500);
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let err = timeout(BOUND, pool.get()).await.unwrap().unwrap_err();
        let took = started.elapsed();
        println!("get failed after {took:?}: {err}");
        assert!(matches!(err.kind(), ErrorKind::AcquireTimeout), "{err:?}");
        assert!(
            took <= limit,
            "get waited {took:?}, past the acquire timeout"
        );
        let started = tokio::time::Instant::now();
        let err = timeout(BOUND, pool.get_read()).await.unwrap().unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err.kind(), ErrorKind::AcquireTimeout), "{err:?}");
        assert!(
            took <= limit,
            "get_read waited {took:?}, past the acquire timeout"
        );
    }

    // The pool's slots exhausted by a checked-out connection: `get` also stops at the timeout.
    let mut live = PgCluster::start(0).await.unwrap();
    let pool = builder(&[node_host(live.primary())])
        .max_size(1)
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let started = tokio::time::Instant::now();
    let err = timeout(BOUND, pool.get()).await.unwrap().unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err.kind(), ErrorKind::AcquireTimeout), "{err:?}");
    assert!(
        took <= Duration::from_millis(1500),
        "get waited {took:?}, past the acquire timeout"
    );
    drop(held);
    assert!(pool.get().await.is_ok());
    live.kill_primary().await.unwrap();
}

/// `report` with a connection made by another pool (another host list) is ignored: it neither
/// panics on the foreign host index nor counts against an unrelated host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_ignores_connections_of_another_pool() {
    let mut cluster = PgCluster::start(0).await.unwrap();
    let live = node_host(cluster.primary());
    // A closed port: connects are refused at once.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        ("127.0.0.1".to_owned(), l.local_addr().unwrap().port())
    };
    let two = builder(&[dead.clone(), live.clone()]).build().unwrap();
    let one = builder(std::slice::from_ref(&live)).build().unwrap();
    let conn = timeout(BOUND, two.get()).await.unwrap().unwrap();
    assert_eq!(conn.host(), addr(cluster.primary()));
    // A transient, non-failover error (serialization failure) from the server.
    let err = conn
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'retry me' USING ERRCODE = '40001'; END $$")
        .await
        .unwrap_err();
    let failures = |pool: &FailoverPool, host: &(String, u16)| {
        let id: Arc<str> = format!("{}:{}", host.0, host.1).into();
        pool.tracker().endpoint(&id).unwrap().stats().failures_total
    };

    // The connection's host index (1) is out of range in `one`.
    timeout(BOUND, one.report(&conn, &err)).await.unwrap();
    assert_eq!(failures(&one, &live), 0);

    // A connection of `one` (index 0) names another host in `two`.
    let other = timeout(BOUND, one.get()).await.unwrap().unwrap();
    let dead_before = failures(&two, &dead);
    timeout(BOUND, two.report(&other, &err)).await.unwrap();
    assert_eq!(failures(&two, &dead), dead_before);

    // Its own connection counts.
    timeout(BOUND, two.report(&conn, &err)).await.unwrap();
    assert_eq!(failures(&two, &live), 1);
    drop((conn, other));
    cluster.kill_primary().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn passwords_never_appear_in_debug_output_errors_or_logs() {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let secret = "hunter2-do-not-print";
    let cluster = PgCluster::start(0).await.unwrap();
    let hole = FaultProxy::start(cluster.primary().addr()).await.unwrap();
    hole.set_mode(Mode::BlackHole).await.unwrap();
    let conn_str = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres password={secret} dbname=postgres",
        hole.port(),
        cluster.primary().port()
    );
    let builder = FailoverPool::builder()
        .connection_string(conn_str.clone())
        .login_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(500))
        .probe_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(5));
    let mut seen = format!("{builder:?}");
    let pool = builder.build().unwrap();
    seen += &format!("{pool:?}");

    // Trust authentication: the password is sent only if asked, but it is in every config.
    let conn = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    seen += &format!("{conn:?}{:?}", &*conn);
    insert_plain(&conn).await;
    drop(conn);
    let _ = pool.rediscover().await;
    for e in [
        FailoverPool::builder()
            .connection_string(format!("{conn_str} port=x"))
            .build()
            .unwrap_err()
            .to_string(),
        FailoverPool::builder()
            .connection_string(format!("postgresql://u:{secret}@h:notaport/db"))
            .build()
            .unwrap_err()
            .to_string(),
    ] {
        seen += &e;
    }

    // Errors: every host down.
    let down = FailoverPool::builder()
        .connection_string(format!(
            "host=127.0.0.1 port={} user=postgres password={secret}",
            hole.port()
        ))
        .login_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = timeout(BOUND, down.get()).await.unwrap().unwrap_err();
    seen += &format!("{err}{err:?}{}", error_chain(&err));
    seen += &format!("{down:?}");

    let logged = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(!logged.is_empty(), "the subscriber captured nothing");
    assert!(logged.contains("switchover::postgres"), "{logged}");
    assert!(!seen.contains("hunter2"), "{seen}");
    assert!(!logged.contains("hunter2"), "{logged}");
}

async fn insert_plain(client: &tokio_postgres::Client) {
    client.simple_query("SELECT 1").await.unwrap();
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out += ": ";
        out += &e.to_string();
        cur = e.source();
    }
    out
}

/// In autocommit, every statement commits on its own: a closure that inserted an audit row and
/// then met an error that says "that statement did not run" (here 25006, read-only, after the
/// closure turned its own session read-only) must not be run again — its first statement
/// already committed. Before the fix `run` retried it and left one audit row per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_never_repeats_a_closure_whose_earlier_statements_committed() {
    let cluster = PgCluster::start(0).await.unwrap();
    create_table(&cluster).await;
    let primary = &cluster.nodes()[0];
    let pool = builder(&[node_host(primary)]).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let err = {
        let calls = calls.clone();
        timeout(
            BOUND,
            pool.run(move |c| {
                let calls = calls.clone();
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    c.execute("INSERT INTO items (v) VALUES ('audit')", &[])
                        .await?;
                    c.batch_execute("SET default_transaction_read_only = on")
                        .await?;
                    c.execute("UPDATE items SET v = 'updated' WHERE v = 'none'", &[])
                        .await?;
                    Ok(())
                })
            }),
        )
        .await
        .unwrap()
        .unwrap_err()
    };
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not run again");
    assert_eq!(count(primary, "audit").await, 1, "one audit row");
    // An idempotent handle may run it again (the caller said repeating is harmless).
    let err = timeout(
        BOUND,
        pool.idempotent().run(|c| {
            Box::pin(async move {
                c.batch_execute("SET default_transaction_read_only = on")
                    .await?;
                c.execute("UPDATE items SET v = 'x' WHERE v = 'none'", &[])
                    .await?;
                Ok(())
            })
        }),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.attempts().is_some_and(|n| n > 1), "{err}");
}

/// Issue 12 item 9, second half: in autocommit, a connection lost while a statement of the
/// closure was in flight (sent, its reply cut) leaves that statement's outcome unknown, and the
/// statements before it committed. `run` must say so with `ErrorKind::OutcomeUnknown`, as
/// `transaction` does for a `COMMIT` cut in flight, and must not run the closure again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_a_connection_lost_mid_write_as_an_unknown_outcome() {
    let (cluster, proxy, pool) = behind_a_proxy().await;

    let calls = Arc::new(AtomicUsize::new(0));
    let result = {
        let (proxy, calls) = (proxy.clone(), calls.clone());
        timeout(
            BOUND,
            pool.run(move |c| {
                let (proxy, calls) = (proxy.clone(), calls.clone());
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    c.execute("INSERT INTO items (v) VALUES ('run-audit')", &[])
                        .await?;
                    // The next statement reaches the server; its reply is cut.
                    proxy.set_mode(Mode::CutOnReply).await.unwrap();
                    c.execute("INSERT INTO items (v) VALUES ('run-second')", &[])
                        .await?;
                    Ok(())
                })
            }),
        )
        .await
        .unwrap()
    };
    proxy.set_mode(Mode::Pass).await.unwrap();
    let err = result.expect_err("the second statement's reply was cut");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not run again: {err}");
    assert_eq!(count(cluster.primary(), "run-audit").await, 1, "{err}");
    assert!(
        err.is_outcome_unknown(),
        "a write cut in flight in run is an unknown outcome, got {:?}: {err}",
        err.kind()
    );
}

#[tokio::test]
async fn a_unix_socket_host_is_a_host_of_its_own() {
    let cluster = PgCluster::start(0).await.unwrap();
    let node = cluster.primary();
    let dir = node.socket_dir().display().to_string();
    let pool = builder(&[])
        .connection_string(format!(
            "host={dir} port={} user=postgres dbname=postgres",
            node.port()
        ))
        .build()
        .unwrap();
    let name = format!("{dir}/.s.PGSQL.{}", node.port());
    assert_eq!(pool.hosts(), [name.as_str()]);
    let c = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    assert_eq!(c.host(), name);
    // Over a Unix socket the server has no client address.
    let row = c
        .query_one("SELECT inet_client_addr() IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(pool.primary(), name);
}

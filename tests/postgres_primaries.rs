//! Two writable primaries at once, against real Postgres 15: a standby promoted while the old
//! primary keeps taking writes. The pool must pick the promoted node (the higher timeline),
//! stay on it across re-discoveries whatever answers first, and say so in a warning and in one
//! `writable_primaries` timeline event.
//!
//! Outcomes are asserted, never timings; anything that could hang is bounded.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::observe::{EventKind, Observe};
use switchover::postgres::FailoverPool;
use switchover::testing::{FaultProxy, Mode, PgCluster, PgNode};
use tokio::time::timeout;

/// Bounds every step that could hang if the pool were wrong.
const BOUND: Duration = Duration::from_secs(60);

/// Re-discoveries after the promotion.
const RUNS: usize = 20;

fn addr(node: &PgNode) -> String {
    format!("{}:{}", node.host(), node.port())
}

/// The port and timeline of the server a connection is on, asked of the server itself.
async fn where_am_i(client: &tokio_postgres::Client) -> (u16, u32, bool) {
    let row = client
        .query_one(
            "SELECT inet_server_port(), pg_is_in_recovery(), \
             CASE WHEN pg_is_in_recovery() THEN '' \
                  ELSE pg_walfile_name(pg_current_wal_lsn()) END",
            &[],
        )
        .await
        .unwrap();
    let port: i32 = row.get(0);
    let in_recovery: bool = row.get(1);
    let walfile: String = row.get(2);
    let timeline = u32::from_str_radix(walfile.get(..8).unwrap_or("0"), 16).unwrap();
    (port as u16, timeline, in_recovery)
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// Current-thread: the subscriber set for this thread also sees the pool's background tasks.
#[tokio::test(flavor = "current_thread")]
async fn a_promoted_standby_beside_a_writable_primary_wins_by_timeline_and_never_flips() {
    let logs = Logs::default();
    let writer = {
        let logs = logs.clone();
        move || logs.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut cluster = PgCluster::start(1).await.unwrap();
    let (old, new) = (addr(&cluster.nodes()[0]), addr(&cluster.nodes()[1]));
    let new_port = cluster.nodes()[1].port();
    let pool = FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .hosts(
            cluster
                .nodes()
                .iter()
                .map(|n| (n.host().to_owned(), n.port())),
        )
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .acquire_timeout(Duration::from_secs(5))
        // Room for every event of the 20 runs: the split brain's must not be evicted.
        .observe(Observe::new("postgres").timeline_capacity(4096))
        .build()
        .unwrap();
    let conn = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    let (_, old_timeline, _) = where_am_i(&conn).await;
    assert_eq!(pool.writable_primaries_detected(), 0);
    drop(conn);
    assert_eq!(pool.primary(), old);
    let before = pool.generation();

    // Promote the standby; the old primary keeps running and stays writable.
    timeout(BOUND, cluster.promote(1)).await.unwrap().unwrap();
    assert!(!cluster.nodes()[0].is_in_recovery().await.unwrap());
    cluster.nodes()[0]
        .sql("CREATE TABLE still_writable (id int)")
        .await
        .unwrap();

    let mut generations = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..RUNS {
        let generation = timeout(BOUND, pool.rediscover()).await.unwrap().unwrap();
        let conn = timeout(BOUND, pool.get()).await.unwrap().unwrap();
        let (port, timeline, in_recovery) = where_am_i(&conn).await;
        assert!(!in_recovery);
        generations.push(generation);
        ports.push((port, timeline));
    }
    let changes = generations.windows(2).filter(|w| w[0] != w[1]).count()
        + usize::from(generations[0] != before);
    let on_new = ports.iter().filter(|(p, _)| *p == new_port).count();
    println!(
        "generations {before} -> {generations:?}; changes {changes}; gets on the promoted \
         node {on_new}/{RUNS}"
    );
    assert_eq!(
        changes, 1,
        "the primary switched exactly once: {generations:?}"
    );
    assert_eq!(pool.primary(), new, "the promoted node (higher timeline)");
    // The first run sees both (the old primary's answer waits one interval for the other
    // host); on a loaded machine the promoted node may answer later, and its answer asks for
    // the run that switches: one get on the old primary at most. From then on every
    // connection is on the promoted node, on its new timeline.
    let first_new = ports.iter().position(|(p, _)| *p == new_port).unwrap();
    assert!(first_new <= 1, "switched at get {first_new}: {ports:?}");
    assert!(
        ports[first_new..]
            .iter()
            .all(|&(p, tl)| p == new_port && tl > old_timeline),
        "{ports:?}"
    );

    let new_timeline = ports[first_new].1;

    // One event for the split brain, however many runs saw it: both hosts with their
    // timelines, and the one followed.
    let events = pool.timeline().events();
    let splits: Vec<_> = events
        .iter()
        .filter(|e| e.kind.name() == "writable_primaries")
        .collect();
    assert_eq!(splits.len(), 1, "{splits:#?}");
    assert_eq!(
        splits[0].kind,
        EventKind::WritablePrimaries {
            primaries: vec![
                (Arc::from(old.as_str()), Some(old_timeline)),
                (Arc::from(new.as_str()), Some(new_timeline)),
            ],
            following: Some(Arc::from(new.as_str())),
            same_cluster: true,
        }
    );
    assert_eq!(splits[0].endpoint.as_deref(), Some(new.as_str()));
    assert_eq!(pool.writable_primaries_detected(), 1);
    #[cfg(feature = "serde")]
    {
        let json = serde_json::to_value(pool.timeline()).unwrap();
        let split: Vec<_> = json["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "writable_primaries")
            .collect();
        assert_eq!(split.len(), 1);
        assert_eq!(
            (
                &split[0]["endpoint"],
                &split[0]["primaries"],
                &split[0]["following"],
                &split[0]["sameCluster"]
            ),
            (
                &serde_json::json!(new),
                &serde_json::json!([
                    {"endpoint": old, "timeline": old_timeline},
                    {"endpoint": new, "timeline": new_timeline},
                ]),
                &serde_json::json!(new),
                &serde_json::json!(true)
            ),
            "{:#}",
            split[0]
        );
    }
    // Beside it, in the same timeline, the one switch to the promoted node (before or after
    // the event: that depends on which host answered first in that run, never the outcome).
    let switches: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Switch { from, to, .. } => Some((from.to_string(), to.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(switches, [(old.clone(), new.clone())]);

    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("WARN") && l.contains("two writable primaries"))
        .unwrap_or_else(|| panic!("no warning names the split brain:\n{text}"));
    assert!(
        warning.contains(&old)
            && warning.contains(&new)
            && warning.contains(&format!("following={new}")),
        "{warning}"
    );
    let timeline_warnings = text
        .lines()
        .filter(|l| l.contains("switchover::timeline") && l.contains("writable_primaries"))
        .count();
    assert_eq!(timeline_warnings, 1, "{text}");
    let distinct: BTreeSet<_> = ports.iter().map(|p| p.0).collect();
    assert!(distinct.len() <= 2);
    drop(pool);
    cluster.kill_primary().await.unwrap();
}

/// The same split brain with a slow path to the old primary: a `get` whose connect to it
/// started before the switch and finished after it must not hand that connection out.
#[tokio::test(flavor = "current_thread")]
async fn a_connection_whose_connect_straddles_the_switch_is_never_handed_out() {
    let logs = Logs::default();
    let writer = {
        let logs = logs.clone();
        move || logs.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(writer)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut cluster = PgCluster::start(1).await.unwrap();
    let proxy = FaultProxy::start(cluster.nodes()[0].addr()).await.unwrap();
    let slow = format!("127.0.0.1:{}", proxy.port());
    let new_port = cluster.nodes()[1].port();
    let pool = FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .host("127.0.0.1", proxy.port())
        .host(cluster.nodes()[1].host(), new_port)
        .connect_timeout(Duration::from_secs(2))
        .login_timeout(Duration::from_secs(5))
        .probe_timeout(Duration::from_secs(3))
        .acquire_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // No connection yet: the first `get` has to connect.
    assert_eq!(timeout(BOUND, pool.rediscover()).await.unwrap().unwrap(), 0);
    assert_eq!(pool.primary(), slow);

    timeout(BOUND, cluster.promote(1)).await.unwrap().unwrap();
    let delay = Duration::from_millis(400);
    proxy
        .set_mode(Mode::Latency {
            delay,
            jitter: Duration::ZERO,
        })
        .await
        .unwrap();
    let accepted = proxy.accepted();
    let get = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await })
    };
    // While that connect is under way, re-discovery switches to the promoted node.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(timeout(BOUND, pool.rediscover()).await.unwrap().unwrap(), 1);
    assert_eq!(pool.primary(), format!("127.0.0.1:{new_port}"));

    let conn = timeout(BOUND, get).await.unwrap().unwrap().unwrap();
    let (port, _, in_recovery) = where_am_i(&conn).await;
    assert_eq!((port, in_recovery, conn.generation()), (new_port, false, 1));
    assert!(proxy.accepted() > accepted, "the slow connect was made");

    // The slow connect of generation 0 straddled the switch: it is abandoned when the primary
    // moves (or, had it finished first, dropped as of an older generation), never handed out.
    let text = logs.text();
    let switched = text
        .find("discovery switched the primary")
        .unwrap_or_else(|| panic!("no switch logged:\n{text}"));
    let straddled = text[switched..].lines().any(|l| {
        l.contains(&format!("{slow}: the primary moved while connecting"))
            || (l.contains("connected")
                && l.contains(&format!("host={slow}"))
                && l.contains("generation=0"))
    });
    assert!(
        straddled,
        "no connect of generation 0 was abandoned or finished after the switch:\n{text}"
    );
    drop(conn);
    drop(pool);
    cluster.kill_primary().await.unwrap();
}

/// Nothing fails and nobody asks: the backstop run re-checks the healthy old primary, finds the
/// promoted node beside it, and the pool moves to it on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_promoted_beside_a_healthy_primary_is_found_without_a_failure() {
    let mut cluster = PgCluster::start(1).await.unwrap();
    let new = addr(&cluster.nodes()[1]);
    let pool = FailoverPool::builder()
        .connection_string("user=postgres dbname=postgres")
        .hosts(
            cluster
                .nodes()
                .iter()
                .map(|n| (n.host().to_owned(), n.port())),
        )
        .build()
        .unwrap();
    let conn = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    assert!(!where_am_i(&conn).await.2);
    drop(conn);
    let before = pool.generation();

    timeout(BOUND, cluster.promote(1)).await.unwrap().unwrap();
    let promoted = tokio::time::Instant::now();
    // The backstop is 5 s: two of them and the runs they ask for are well within 15 s.
    while pool.primary() != new && promoted.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("found the promoted node after {:?}", promoted.elapsed());
    assert_eq!(pool.primary(), new);
    assert_eq!(pool.generation(), before + 1);
    let conn = timeout(BOUND, pool.get()).await.unwrap().unwrap();
    assert_eq!(where_am_i(&conn).await.0, cluster.nodes()[1].port());
    drop(conn);
    drop(pool);
    cluster.kill_primary().await.unwrap();
}

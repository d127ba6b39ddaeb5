//! The Postgres pool following a real Patroni cluster (Patroni 3 on etcd 3.4, Postgres 15):
//! a planned switchover and a killed leader. The pool must write to the new leader within 1 s
//! of the moment `GET /cluster` first names it, and never to a member Patroni no longer names;
//! every acknowledged write must be on the old leader once it rejoins, with the port of the
//! server that acknowledged it.
//!
//! The pool obeys Patroni through its knob (`FailoverPoolBuilder::authority`). Outcomes are
//! asserted; the one bound on time is the one the issue asks for, measured on real servers,
//! never under a paused clock: the router follows, and the first write is acknowledged by the
//! new leader, within 1 s of `/cluster` naming it; 0 writes on the old leader after that.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchover::postgres::FailoverPool;
use switchover::postgres::patroni::Patroni;
use switchover::retry::RetryPolicy;
use switchover::route::AuthorityEvent;
use switchover::testing::PatroniCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

/// Bounds every step that could hang if the pool were wrong.
const BOUND: Duration = Duration::from_secs(90);
/// How soon the pool must follow, and write on the new leader, after `/cluster` names it.
const GAP: Duration = Duration::from_secs(1);

/// One acknowledged write: its id, when it was acknowledged, the server port that ran it.
#[derive(Clone, Copy, Debug)]
struct Ack {
    id: i64,
    at: Instant,
    port: u16,
}

/// A moment `GET /cluster` first named a leader (`host:port`).
#[derive(Clone, Debug)]
struct Named {
    at: Instant,
    primary: String,
}

/// The leader's `host:port` in one member's `GET /cluster`, read with a plain HTTP request
/// and serde_json (independently of the authority under test, which also waits for the
/// leader's promotion).
async fn cluster_leader(api: &str) -> Option<String> {
    let mut s = TcpStream::connect(api).await.ok()?;
    let request = format!("GET /cluster HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8(raw).ok()?;
    let body: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()?;
    let leader = body["members"]
        .as_array()?
        .iter()
        .find(|m| m["role"] == "leader")?;
    Some(format!(
        "{}:{}",
        leader["host"].as_str()?,
        leader["port"].as_u64()?
    ))
}

/// Polls every member's `/cluster` every 20 ms and records each leader the first time one
/// names it (the reference the client gap is measured from).
async fn watch_cluster(
    apis: Vec<String>,
    named: Arc<Mutex<Vec<Named>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        for api in &apis {
            let Ok(Some(leader)) = timeout(Duration::from_millis(300), cluster_leader(api)).await
            else {
                continue;
            };
            let mut named = named.lock().unwrap();
            if named.last().is_none_or(|n| n.primary != leader) {
                named.push(Named {
                    at: Instant::now(),
                    primary: leader,
                });
            }
        }
        tokio::select! {
            () = sleep(Duration::from_millis(20)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Writes one row after another (unique ids, `RETURNING inet_server_port()`), non-idempotent,
/// each within a 10 s deadline; records acknowledged writes and counts failures.
async fn write_loop(
    pool: FailoverPool,
    acks: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<Mutex<Vec<String>>>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut id = 0_i64;
    while !*stop.borrow() {
        id += 1;
        let result = pool
            .run(move |c| {
                Box::pin(async move {
                    let row = c
                        .query_one(
                            "INSERT INTO w (id) VALUES ($1) RETURNING inet_server_port()",
                            &[&id],
                        )
                        .await?;
                    Ok(row.get::<_, i32>(0))
                })
            })
            .await;
        match result {
            Ok(port) => acks.lock().unwrap().push(Ack {
                id,
                at: Instant::now(),
                port: u16::try_from(port).unwrap(),
            }),
            Err(e) => {
                let ms = t0.elapsed().as_millis();
                failures
                    .lock()
                    .unwrap()
                    .push(format!("+{ms} ms id {id}: {e}"));
            }
        }
        tokio::select! {
            () = sleep(Duration::from_millis(10)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// What the test saw, for a failure message: the pool, its write errors, the follower's and
/// the router's events (each stamped with the time since `t0`), and `/cluster`'s leaders.
struct Seen {
    t0: Instant,
    pool: FailoverPool,
    failures: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<String>>>,
    named: Arc<Mutex<Vec<Named>>>,
}

impl Seen {
    /// Records every follower and router event of `pool` (until it is closed) into `events`.
    fn start(pool: &FailoverPool, failures: Arc<Mutex<Vec<String>>>) -> Seen {
        let t0 = Instant::now();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut authority = pool
            .follower()
            .expect("the pool follows Patroni")
            .subscribe();
        let mut route = pool.router().subscribe();
        let log = events.clone();
        tokio::spawn(async move {
            loop {
                let line = tokio::select! {
                    e = authority.recv() => match e {
                        Some(e) => format!("authority {e:?}"),
                        None => return,
                    },
                    e = route.recv() => match e {
                        Some(e) => format!("router {e:?}"),
                        None => return,
                    },
                };
                let ms = t0.elapsed().as_millis();
                log.lock().unwrap().push(format!("+{ms} ms {line}"));
            }
        });
        Seen {
            t0,
            pool: pool.clone(),
            failures,
            events,
            named: Arc::default(),
        }
    }

    /// What the pool shows now, and the last events and write errors.
    fn report(&self) -> String {
        let tail = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n  ");
        let follower = self.pool.follower().expect("the pool follows Patroni");
        let failures = self.failures.lock().unwrap();
        let events = self.events.lock().unwrap();
        let named: Vec<String> = self
            .named
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "+{} ms {}",
                    n.at.saturating_duration_since(self.t0).as_millis(),
                    n.primary
                )
            })
            .collect();
        format!(
            "at +{} ms: pool.primary() = {}, generation {}; follower: {follower:?}, record {:?}, \
             unreachable {}, polls {}\ntopology: {:?}\nrouter: {:?}\n/cluster named: {named:?}\n\
             last of {} write errors:\n  {}\nlast of {} follower/router events:\n  {}",
            self.t0.elapsed().as_millis(),
            self.pool.primary(),
            self.pool.generation(),
            follower.record(),
            follower.is_unreachable(),
            follower.polls(),
            self.pool.topology(),
            self.pool.router().snapshot(),
            failures.len(),
            tail(&failures, 10),
            events.len(),
            tail(&events, 30),
        )
    }
}

/// Waits until `n` writes have been acknowledged by the server on `port`; if they never are,
/// fails with what the pool shows (primary, follower, router, the last write errors and
/// events) and the last lines of every member's Patroni log (which has its Postgres log).
async fn wait_acks_on(
    cluster: &PatroniCluster,
    seen: &Seen,
    acks: &Mutex<Vec<Ack>>,
    port: u16,
    n: usize,
) {
    let acked = || {
        acks.lock()
            .unwrap()
            .iter()
            .filter(|a| a.port == port)
            .count()
    };
    let waited = timeout(BOUND, async {
        while acked() < n {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        let logs: Vec<String> = cluster
            .members()
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.name(), m.log()))
            .collect();
        panic!(
            "{} of {n} writes acknowledged on port {port} within {BOUND:?}; {}\npatroni logs:\n{}",
            acked(),
            seen.report(),
            logs.join("\n")
        );
    }
}

/// Waits until every replica runs and member `i` has replayed the last acknowledged write
/// (and so the table and every write acknowledged before it).
async fn wait_replicated(
    cluster: &mut PatroniCluster,
    acks: &Mutex<Vec<Ack>>,
    i: usize,
    what: &str,
) {
    timeout(BOUND, cluster.wait_replicas(BOUND))
        .await
        .unwrap()
        .unwrap();
    let last = acks
        .lock()
        .unwrap()
        .last()
        .expect("an acknowledged write")
        .id;
    let query = format!("SELECT count(*) FROM w WHERE id = {last}");
    let member = &cluster.members()[i];
    let mut seen = String::new();
    let started = Instant::now();
    let replayed = timeout(BOUND, async {
        loop {
            match member.sql(&query).await {
                Ok(n) if n == "1" => break,
                Ok(n) => seen = format!("count {n}"),
                Err(e) => seen = e.to_string(),
            }
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        replayed.is_ok(),
        "{what}: write {last} not replayed on {} within {BOUND:?} ({seen}); its log:\n{}",
        member.name(),
        member.log()
    );
    println!(
        "patroni: {what}: write {last} replayed on {} after {} ms",
        member.name(),
        started.elapsed().as_millis()
    );
}

/// What one leader change looked like to the client.
#[derive(Debug)]
struct Change {
    /// From `/cluster` first naming the new leader to the first write it acknowledged.
    gap: Duration,
    /// From `/cluster` first naming it to the follower's `Followed`.
    follow: Duration,
    /// Writes the old leader acknowledged after `/cluster` named the new one.
    late_on_old: usize,
}

/// The leader change at `named` (the moment the watcher first saw `/cluster` name the new
/// leader), after the previous one (`since`) and until the next one (`until`). Patroni named it
/// by the earlier of that moment and the follower's own read naming it (the watcher asks the
/// members one after the other, the follower at once): the gap is measured from there.
fn change(
    named: &Named,
    since: Instant,
    until: Option<Instant>,
    acks: &[Ack],
    followed: &[(Instant, String)],
    (old_port, new_port): (u16, u16),
) -> Change {
    let followed_at = followed
        .iter()
        .find(|(t, p)| *p == named.primary && *t >= since)
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("the follower never followed {}", named.primary));
    let at = named.at.min(followed_at);
    let first = acks
        .iter()
        .find(|a| a.port == new_port && a.at >= at)
        .expect("a write on the new leader");
    Change {
        gap: first.at.saturating_duration_since(at),
        follow: followed_at.saturating_duration_since(named.at),
        late_on_old: acks
            .iter()
            .filter(|a| a.port == old_port && a.at > at && until.is_none_or(|u| a.at < u))
            .count(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_follows_a_patroni_switchover_and_a_killed_leader() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut cluster = timeout(BOUND, PatroniCluster::start(2))
        .await
        .expect("cluster start timed out")
        .unwrap();
    let first = cluster.wait_leader(BOUND).await.unwrap();
    let other = 1 - first;
    let port = |i: usize| cluster.members()[i].pg_port();
    let (p_first, p_other) = (port(first), port(other));
    let host = |p: u16| format!("127.0.0.1:{p}");
    cluster.members()[first]
        .sql("CREATE TABLE w (id bigint PRIMARY KEY, port int NOT NULL DEFAULT inet_server_port())")
        .await
        .unwrap();

    let pool = FailoverPool::builder()
        .connection_string(cluster.conn_string())
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(1))
        .probe_timeout(Duration::from_secs(1))
        .query_timeout(Duration::from_secs(2))
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(1000)
                .deadline(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .authority(Patroni::builder().members(cluster.api_addrs()))
        .build()
        .unwrap();
    let follower = pool.follower().expect("the pool follows Patroni").clone();
    let mut events = follower.subscribe();

    let (stop_tx, stop) = watch::channel(false);
    let acks = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Seen::start(&pool, failures.clone());
    let named = seen.named.clone();
    let watch_task = tokio::spawn(watch_cluster(
        cluster.api_addrs(),
        named.clone(),
        stop.clone(),
    ));
    let write_task = tokio::spawn(write_loop(
        pool.clone(),
        acks.clone(),
        failures.clone(),
        seen.t0,
        stop,
    ));
    wait_acks_on(&cluster, &seen, &acks, p_first, 20).await;
    assert_eq!(pool.primary(), host(p_first));

    // Before the switchover, the other member has replayed the table and every write the
    // leader acknowledged so far: with asynchronous replication Patroni may promote a replica
    // that has not (its base backup was just taken, its WAL receiver may not stream yet), and
    // every write on it then fails with `relation "w" does not exist` (one CI failure: 0 of 20
    // writes acknowledged by m1 within 90 s).
    wait_replicated(
        &mut cluster,
        &acks,
        other,
        "the replica replicates the first leader",
    )
    .await;

    // A planned switchover to the other member.
    timeout(BOUND, cluster.switchover(other))
        .await
        .unwrap()
        .unwrap();
    wait_acks_on(&cluster, &seen, &acks, p_other, 20).await;
    // Before the kill, the demoted leader streams again and has what the new one acknowledged
    // so far (else Patroni may promote it without them: asynchronous replication).
    wait_replicated(
        &mut cluster,
        &acks,
        first,
        "the demoted leader replicates the new one",
    )
    .await;

    // The new leader's Postgres dies with its Patroni; the first leader takes over after the
    // leader key expires.
    timeout(BOUND, cluster.kill_leader())
        .await
        .unwrap()
        .unwrap();
    let before_kill = acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.port == p_first)
        .count();
    wait_acks_on(&cluster, &seen, &acks, p_first, before_kill + 20).await;
    stop_tx.send(true).unwrap();
    write_task.await.unwrap();
    watch_task.await.unwrap();

    let mut followed = Vec::new();
    let mut rejected = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            AuthorityEvent::Followed { primary, at, .. } => {
                followed.push((at, primary.to_string()))
            }
            AuthorityEvent::Rejected { rejection, .. } => rejected.push(rejection),
            _ => {}
        }
    }
    let named = named.lock().unwrap().clone();
    let acks = acks.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    // `/cluster` named: the first leader, the other member (switchover), the first again (kill).
    let names: Vec<&str> = named.iter().map(|n| n.primary.as_str()).collect();
    assert_eq!(
        names,
        [host(p_first), host(p_other), host(p_first)],
        "{named:?}"
    );
    let switch = change(
        &named[1],
        named[0].at,
        Some(named[2].at),
        &acks,
        &followed,
        (p_first, p_other),
    );
    let kill = change(
        &named[2],
        named[1].at,
        None,
        &acks,
        &followed,
        (p_other, p_first),
    );
    println!(
        "patroni: switchover gap_ms={} follow_ms={} late_on_old={}; killed leader gap_ms={} \
         follow_ms={} late_on_old={}; writes acked={} failed={}; named={:?}; rejected={:?}",
        switch.gap.as_millis(),
        switch.follow.as_millis(),
        switch.late_on_old,
        kill.gap.as_millis(),
        kill.follow.as_millis(),
        kill.late_on_old,
        acks.len(),
        failures.len(),
        named.iter().map(|n| &n.primary).collect::<Vec<_>>(),
        rejected,
    );
    for f in &failures {
        println!("failed write: {f}");
    }
    assert_eq!(
        switch.late_on_old, 0,
        "writes on the old leader after the switchover"
    );
    assert_eq!(
        kill.late_on_old, 0,
        "writes on the killed leader after the new one was named"
    );
    assert!(
        switch.follow <= GAP,
        "switchover: followed after {:?}",
        switch.follow
    );
    assert!(
        kill.follow <= GAP,
        "killed leader: followed after {:?}",
        kill.follow
    );
    // The bound: the pool writes on the new leader within 1 s of `/cluster` naming it.
    assert!(switch.gap <= GAP, "switchover: client gap {:?}", switch.gap);
    assert!(kill.gap <= GAP, "killed leader: client gap {:?}", kill.gap);

    // The killed member rejoins as a replica of the first one (rebuilt from it: an async
    // replica promoted after a kill may lack the killed leader's last WAL). Every write the
    // survivor acknowledged is there with the port that acknowledged it; writes the killed
    // leader acknowledged and never replicated are lost by the server itself, and counted.
    let member = cluster.member_mut(other).unwrap();
    member.restart().unwrap();
    timeout(BOUND, member.reinitialize())
        .await
        .unwrap()
        .unwrap();
    timeout(BOUND, cluster.wait_replicas(BOUND))
        .await
        .unwrap()
        .unwrap();
    let last = acks.last().unwrap().id;
    let rejoined = &cluster.members()[other];
    let mut seen = String::new();
    let replayed = timeout(BOUND, async {
        loop {
            let n = rejoined
                .sql(&format!("SELECT count(*) FROM w WHERE id = {last}"))
                .await;
            match n {
                Ok(n) if n == "1" => break,
                Ok(n) => seen = format!("count {n}"),
                Err(e) => seen = e.to_string(),
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        replayed.is_ok(),
        "the rejoined member never replayed write {last} ({seen}); its log:\n{}",
        rejoined.log()
    );
    let rows = rejoined
        .sql("SELECT id, port FROM w ORDER BY id")
        .await
        .unwrap();
    let on_member: std::collections::HashMap<i64, u16> = rows
        .lines()
        .map(|l| {
            let (id, port) = l.split_once('|').unwrap();
            (id.parse().unwrap(), port.parse().unwrap())
        })
        .collect();
    let mut lost_with_the_killed_leader = 0;
    for a in &acks {
        match on_member.get(&a.id) {
            Some(port) => assert_eq!(*port, a.port, "write {} ran elsewhere", a.id),
            None => {
                assert_eq!(
                    a.port, p_other,
                    "write {} acknowledged by the survivor is missing",
                    a.id
                );
                lost_with_the_killed_leader += 1;
            }
        }
    }
    println!(
        "patroni: acknowledged writes lost with the killed leader (async replication): {lost_with_the_killed_leader}"
    );
    drop(follower);
    pool.close();
}

//! Outages under the paused clock: a pool that starts with its primary down, requests pending
//! on a frozen or declared-down node.

use super::*;

/// A pool built while its primary is down starts anyway, with the primary in doubt: reads are
/// served by the replica at once, a write waits for a primary and lands on the promoted one.
/// (Building failed with "no primary" before.)
#[tokio::test(start_paused = true)]
async fn a_pool_starts_with_its_primary_down_and_serves_reads_then_writes() {
    let fake = Fake::new(2);
    fake.with(|s| {
        s.nodes[1]
            .data
            .insert(b"k".to_vec(), bulk("before the outage"));
    });
    fake.kill(0);
    let parts = Parts {
        backend: fake.clone(),
        settings: Settings {
            discovery_interval: Duration::from_secs(3600),
            ..Settings::default()
        },
        retry: policy(40, 100),
        budget: None,
        read_policy: Box::new(PreferReplica::new()),
        tracker: HealthTracker::builder().build().unwrap(),
        initial: fake.addrs(),
        heartbeat: None,
    };
    let started = Instant::now();
    let pool = Pool::new(Inner::start(parts).await.expect("starts in doubt"));
    // One discovery run: n0 refuses at once, n1 connects (1 ms) and answers (1 ms).
    assert_eq!(started.elapsed(), ms(2));
    assert!(pool.inner.rediscovery.in_doubt());
    assert_eq!(pool.inner.topology.usable_replicas().len(), 1);

    let started = Instant::now();
    let v = query(&pool, redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(v, bulk("before the outage"));
    // n1: connect 1 ms + GET 1 ms, while no primary is confirmed.
    assert_eq!(started.elapsed(), ms(2));

    let promoter = tokio::spawn({
        let fake = fake.clone();
        async move {
            sleep(ms(300)).await;
            fake.promote(1);
        }
    });
    let r = query(&pool, redis::cmd("SET").arg("k").arg("v")).await;
    assert_eq!(r.unwrap(), Value::Okay);
    assert_eq!(
        fake.log(1),
        ["GET", "SET"],
        "the write waited for n1's promotion"
    );
    assert_eq!(pool.inner.router.active().id().name(), "n1:6379");
    assert!(!pool.inner.rediscovery.in_doubt());
    promoter.await.unwrap();
}

/// In-flight cancellation: a write pending on a frozen primary fails at once when discovery
/// switches to the promoted replica (the frozen node missed its check), and, declared
/// idempotent, is retried there in the same call. Without the cut it waited for the frozen
/// node for ever (the fake has no response timeout).
#[tokio::test(start_paused = true)]
async fn a_write_pending_on_a_frozen_primary_is_cut_by_the_switch_and_retried() {
    let fake = Fake::new(2);
    let mut pool = start(&fake, policy(5, 100), Box::new(PreferReplica::new())).await;
    pool.idempotent = true;
    // The shared connection of n0 is made (1 ms) before it freezes.
    query(&pool, redis::cmd("SET").arg("k").arg("0"))
        .await
        .unwrap();
    fake.set_latency(0, Duration::from_secs(3600));
    fake.promote(1);
    let generation = pool.inner.router.generation();

    let started = Instant::now();
    let write = tokio::spawn({
        let pool = pool.clone();
        async move { query(&pool, redis::cmd("SET").arg("k").arg("1")).await }
    });
    sleep(ms(10)).await;
    // What a missed heartbeat does (the core suspects).
    pool.inner.rediscovery.suspect();
    let r = write.await.unwrap();
    assert_eq!(r.unwrap(), Value::Okay);
    // The run from 10 ms: n0's ROLE times out at the heartbeat timeout (300 ms), n1 says
    // master: the switch at 310 ms cuts n0's connection; 100 ms of backoff; then n1: connect
    // 1 ms + SET 1 ms.
    assert_eq!(started.elapsed(), ms(412));
    assert_eq!(pool.inner.router.generation(), generation + 1);
    assert_eq!(fake.log(0), ["SET"], "the pending SET never ran on n0");
    assert_eq!(fake.log(1), ["SET"]);
    assert_eq!(fake.get(1, "k"), Some(bulk("1")));
}

/// In-flight cancellation: a node declared down fails what waits on its shared connection at
/// once; a write that may have run there is not retried unless idempotent.
#[tokio::test(start_paused = true)]
async fn a_node_declared_down_fails_its_pending_requests_at_once() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(5, 100), Box::new(PreferReplica::new())).await;
    query(&pool, redis::cmd("SET").arg("k").arg("0"))
        .await
        .unwrap();
    fake.set_latency(0, Duration::from_secs(3600));

    let started = Instant::now();
    let write = tokio::spawn({
        let pool = pool.clone();
        async move { query(&pool, redis::cmd("SET").arg("k").arg("1")).await }
    });
    sleep(ms(10)).await;
    endpoint(&pool, 0).force_down();
    let err = write
        .await
        .unwrap()
        .expect_err("sent, may have run: not retried");
    assert_eq!(
        started.elapsed(),
        ms(10),
        "failed at the verdict, not later"
    );
    assert!(err.is_connection_dropped(), "{err}");
    assert_eq!(fake.log(0), ["SET"], "only the first SET ran");
}

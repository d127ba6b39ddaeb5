//! Unit tests of `builder.rs`.

use super::*;

fn field(b: FailoverPoolBuilder) -> &'static str {
    b.build().unwrap_err().field()
}

/// A host on loopback whose port is closed: the background discovery that `build` starts
/// is refused at once and sends nothing anywhere else.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn bad_input_is_refused_at_build() {
    let local = || FailoverPool::builder().host("127.0.0.1", closed_port());
    assert_eq!(field(FailoverPool::builder()), "hosts");
    assert_eq!(
        field(FailoverPool::builder().connection_string("user=postgres")),
        "hosts"
    );
    assert_eq!(
        field(FailoverPool::builder().connection_string("host=a port=notaport")),
        "connection_string"
    );
    assert_eq!(
        field(FailoverPool::builder().connection_string("host=a bogus=1")),
        "connection_string"
    );
    assert_eq!(field(local().max_size(0)), "max_size");
    assert_eq!(
        field(local().max_concurrent_connects(0)),
        "max_concurrent_connects"
    );
    assert_eq!(
        field(local().acquire_timeout(Duration::ZERO)),
        "acquire_timeout"
    );
    assert_eq!(
        field(
            local()
                .connect_timeout(Duration::from_secs(5))
                .login_timeout(Duration::from_secs(1))
        ),
        "login_timeout"
    );
    assert_eq!(
        field(local().rediscovery_interval(Duration::ZERO)),
        "rediscovery_interval"
    );
    assert_eq!(
        field(local().verify_idle_after(Some(Duration::ZERO))),
        "verify_idle_after"
    );
    assert_eq!(field(local().heartbeat(Duration::ZERO)), "heartbeat");
    assert_eq!(
        field(local().heartbeat_timeout(Duration::ZERO)),
        "heartbeat_timeout"
    );
    assert_eq!(
        field(FailoverPool::builder().connection_string("host=a,b port=1,2,3")),
        "port"
    );
    #[cfg(not(feature = "tls"))]
    assert_eq!(
        field(FailoverPool::builder().connection_string("host=a sslmode=require")),
        "sslmode"
    );
    assert_eq!(
        field(FailoverPool::builder().connection_string("host=a sslmode=bogus")),
        "sslmode"
    );
}

#[test]
fn build_outside_a_runtime_names_the_field() {
    let err = FailoverPool::builder()
        .host("127.0.0.1", closed_port())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "probe");
}

#[tokio::test]
async fn health_settings_default_and_can_be_tuned() {
    use crate::Classification;
    use crate::health::HealthState;

    let port = closed_port();
    let id: Arc<str> = format!("127.0.0.1:{port}").into();
    // Stops the background discovery, so only the failures below count.
    let quiet = |pool: FailoverPool| {
        pool.close();
        pool
    };
    let fail = |pool: &FailoverPool, n: usize| {
        let ep = pool.tracker().endpoint(&id).unwrap();
        for _ in 0..n {
            ep.record_failure(Classification::transient().not_executed());
        }
        ep.state()
    };
    // The default: a host is down after 2 failures in a row.
    let pool = quiet(
        FailoverPool::builder()
            .host("127.0.0.1", port)
            .build()
            .unwrap(),
    );
    assert_eq!(fail(&pool, 1), HealthState::Up);
    assert_eq!(fail(&pool, 1), HealthState::Down);
    let ev = pool.tracker().endpoint(&id).unwrap().stats();
    assert_eq!(
        ev.down_until.map(|u| u - ev.since),
        Some(Duration::from_millis(500))
    );

    // Tuned: 5 failures, a 2 s first ejection.
    let pool = quiet(
        FailoverPool::builder()
            .host("127.0.0.1", port)
            .health(|h| h.failure_threshold(5).ejection_base(Duration::from_secs(2)))
            .build()
            .unwrap(),
    );
    assert_eq!(fail(&pool, 4), HealthState::Up);
    assert_eq!(fail(&pool, 1), HealthState::Down);
    let ev = pool.tracker().endpoint(&id).unwrap().stats();
    assert_eq!(
        ev.down_until.map(|u| u - ev.since),
        Some(Duration::from_secs(2))
    );

    // Invalid values are refused at build, naming the tracker's field.
    assert_eq!(
        field(
            FailoverPool::builder()
                .host("127.0.0.1", port)
                .health(|h| h.failure_threshold(0))
        ),
        "failure_threshold"
    );
    let dbg = format!("{:?}", FailoverPool::builder().health(|h| h));
    assert!(dbg.contains("health: true"), "{dbg}");
}

#[tokio::test]
async fn the_heartbeat_is_on_by_default_bounds_the_trackers_probes_and_can_be_turned_off() {
    let port = closed_port();
    let config = |b: FailoverPoolBuilder| {
        let pool = b.host("127.0.0.1", port).build().unwrap();
        pool.close();
        pool.tracker().core().config
    };
    let on = config(FailoverPool::builder());
    assert_eq!(on.heartbeat, Some(DEFAULT_HEARTBEAT));
    assert_eq!(on.probe_timeout, DEFAULT_HEARTBEAT_TIMEOUT);
    let tuned = config(
        FailoverPool::builder()
            .heartbeat(Duration::from_millis(100))
            .heartbeat_timeout(Duration::from_millis(150)),
    );
    assert_eq!(tuned.heartbeat, Some(Duration::from_millis(100)));
    assert_eq!(tuned.probe_timeout, Duration::from_millis(150));
    // Off: the tracker probes only hosts that are down, within the probe timeout.
    let off = config(FailoverPool::builder().heartbeat(None));
    assert_eq!(off.heartbeat, None);
    assert_eq!(off.probe_timeout, Timeouts::default().probe);
}

#[tokio::test]
async fn a_closed_pool_says_so_at_once_even_with_the_primary_in_doubt() {
    let pool = FailoverPool::builder()
        .host("127.0.0.1", closed_port())
        .build()
        .unwrap();
    pool.close();
    let started = tokio::time::Instant::now();
    for err in [
        pool.get().await.unwrap_err(),
        pool.get_read().await.unwrap_err(),
        pool.run(|c| Box::pin(async move { c.simple_query("").await.map(drop) }))
            .await
            .unwrap_err(),
    ] {
        assert!(err.is_closed(), "{err:?}");
    }
    // Far below the acquire timeout (5 s) and re-discovery's wait limit (4.05 s).
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn debug_output_never_shows_the_password() {
    let port = closed_port();
    let builder = FailoverPool::builder()
        .connection_string(format!(
            "host=127.0.0.1 port={port} user=app password=hunter2"
        ))
        .host("127.0.0.1", closed_port());
    let dbg = format!("{builder:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    let pool = builder.build().unwrap();
    assert_eq!(pool.hosts().len(), 2);
    let dbg = format!("{pool:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    pool.close();
}

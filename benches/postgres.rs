//! Simple-query throughput through `switchover::postgres::FailoverPool` versus raw
//! deadpool-postgres, against the same local Postgres 15 server (started by the testing kit) in
//! the same run.
//!
//! Each iteration takes a connection from the pool, runs `SELECT 1` (simple protocol, one round
//! trip) and returns the connection. IDs: `postgres/raw` and `postgres/switchover`. Two
//! interleaved comparisons follow: the same call, and a checkout alone (take a connection and
//! return it, no round trip), which isolates the pool's own cost.
//!
//! With feature `tls`, the same comparisons run over TLS against a second server (`ssl=on`,
//! `hostssl`-only, a certificate from a throw-away CA): the pool with `sslmode=verify-full`
//! versus deadpool-postgres with the same rustls connector
//! ([`TlsConnector`](switchover::postgres::TlsConnector) over the same
//! [`TlsConfig`](switchover::tls::TlsConfig)). IDs: `postgres_tls/raw` and
//! `postgres_tls/switchover`; interleaved labels `tls_simple_query` and `tls_checkout`.
//!
//! Last, the heartbeat's cost: the same call through a pool with the default heartbeat and
//! through one with `heartbeat(None)`, in alternating phases of one second with only that pool
//! alive (`phases simple_query, heartbeat off vs on`).
//!
//! Run with `cargo bench --bench postgres --features postgres,testing` (add `,tls` for the TLS
//! group).
//!
//! Instructions per call and the heartbeat's cost by count, under callgrind (the server is
//! another process, not counted): `postgres --loop N raw|switchover|switchover-quiet` runs `N`
//! calls (`get()` + `SELECT 1`) of one side and nothing else (`raw` builds no pool;
//! `switchover-quiet` is a pool without heartbeat, so with nothing in the background);
//! run it with `N` and `2N` and divide the difference by `N`. `postgres --idle SECS
//! default|no-heartbeat` leaves a pool idle for `SECS` seconds; the differences of the
//! counts, divided by `SECS`, are its background work's instructions per second.
//!
//! ```text
//! bin=$(ls -t target/release/deps/postgres-* | grep -v '\.d$' | head -1)
//! for n in 2000 4000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $bin --loop $n switchover-quiet 2>&1 |
//!     grep 'refs:'
//! done
//! ```

#[path = "support/interleave.rs"]
mod interleave;

use std::time::Duration;

use criterion::{Criterion, criterion_group};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchover::postgres::FailoverPool;
use switchover::testing::{PgCluster, PgNode};
use tokio_postgres::NoTls;
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

/// Raw deadpool-postgres on `node`, plaintext, 16 connections, fast recycling.
fn raw_pool(node: &PgNode) -> Pool {
    deadpool_on(raw_config(node), NoTls)
}

/// `node`'s address, user and database as a plain `tokio_postgres` configuration.
fn raw_config(node: &PgNode) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(node.host())
        .port(node.port())
        .user("postgres")
        .dbname("postgres");
    cfg
}

/// Raw deadpool-postgres over `cfg` with `tls`: 16 connections, fast recycling.
fn deadpool_on<T>(cfg: tokio_postgres::Config, tls: T) -> Pool
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mgr = Manager::from_config(
        cfg,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(16)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("raw pool")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cluster = rt
        .block_on(PgCluster::start(0))
        .expect("start Postgres 15 with the testing kit");
    let node = cluster.primary();

    let raw = raw_pool(node);
    let pool = rt.block_on(async {
        FailoverPool::builder()
            .connection_string(node.conn_string())
            .max_size(16)
            .build()
            .expect("switchover pool")
    });

    // Warm both pools up.
    rt.block_on(async {
        raw.get()
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap();
        pool.get()
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap();
    });

    let mut group = c.benchmark_group("postgres");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw", |b| {
        b.to_async(&rt).iter(|| async {
            let client = raw.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap()
        })
    });
    group.bench_function("switchover", |b| {
        b.to_async(&rt).iter(|| async {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap()
        })
    });
    group.finish();

    // Drift-proof comparison: alternate blocks of raw and pool calls.
    rt.block_on(interleave::interleaved(
        "simple_query",
        30,
        200,
        || async {
            let client = raw.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        },
        || async {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        },
    ));
    // The pool's own cost, without the round trip: take a connection and return it.
    rt.block_on(interleave::interleaved(
        "checkout",
        30,
        2000,
        || async {
            drop(raw.get().await.unwrap());
        },
        || async {
            drop(pool.get().await.unwrap());
        },
    ));
    drop(pool);
    // The heartbeat's cost (target ≤ 1 %): the same call through a pool with the default
    // heartbeat (200 ms, one round trip per beat on a kept connection) and through one without,
    // each alone in its phase (see `interleave::phases`; two pools alive side by side would
    // both pay for the one heartbeat).
    let conn = node.conn_string();
    rt.block_on(interleave::phases(
        "simple_query, heartbeat off vs on",
        10,
        Duration::from_secs(1),
        |on| {
            let builder = FailoverPool::builder()
                .connection_string(conn.clone())
                .max_size(16);
            let builder = if on { builder } else { builder.heartbeat(None) };
            std::future::ready(builder.build().expect("switchover pool"))
        },
        |pool| async move {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        },
    ));
    drop(raw);
    drop(cluster);
    #[cfg(feature = "tls")]
    bench_tls(c, &rt);
}

/// The same comparison over TLS: both sides verify-full against the test CA, with one rustls
/// configuration each built from the same options.
#[cfg(feature = "tls")]
fn bench_tls(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use switchover::postgres::TlsConnector;
    use switchover::testing::{LOCALHOST_NAMES, TestCa};
    use switchover::tls::{Roots, TlsOptions};

    let ca = TestCa::new().expect("test CA");
    let cert = ca
        .server("pg", LOCALHOST_NAMES)
        .expect("server certificate");
    let cluster = rt
        .block_on(PgCluster::builder().tls(&cert).ssl_only().start())
        .expect("start Postgres 15 with TLS");
    let node = cluster.primary();
    let tls = TlsOptions::new()
        .roots(Roots::PemFile(ca.cert_path().to_owned()))
        .load()
        .expect("TLS options");
    let raw = {
        let mut cfg = raw_config(node);
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        let connector = TlsConnector::new(&tls, node.host()).expect("connector");
        deadpool_on(cfg, connector)
    };
    let pool = rt.block_on(async {
        FailoverPool::builder()
            .connection_string(format!(
                "{} sslmode=verify-full sslrootcert={}",
                node.conn_string(),
                ca.cert_path().display()
            ))
            .max_size(16)
            .build()
            .expect("switchover TLS pool")
    });
    rt.block_on(async {
        let check = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        let a: bool = raw
            .get()
            .await
            .unwrap()
            .query_one(check, &[])
            .await
            .unwrap()
            .get(0);
        let b: bool = pool
            .get()
            .await
            .unwrap()
            .query_one(check, &[])
            .await
            .unwrap()
            .get(0);
        assert!(a && b, "both sides encrypted");
    });

    let mut group = c.benchmark_group("postgres_tls");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw", |b| {
        b.to_async(rt).iter(|| async {
            let client = raw.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap()
        })
    });
    group.bench_function("switchover", |b| {
        b.to_async(rt).iter(|| async {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap()
        })
    });
    group.finish();

    rt.block_on(interleave::interleaved(
        "tls_simple_query",
        30,
        200,
        || async {
            let client = raw.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        },
        || async {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        },
    ));
    rt.block_on(interleave::interleaved(
        "tls_checkout",
        30,
        2000,
        || async {
            drop(raw.get().await.unwrap());
        },
        || async {
            drop(pool.get().await.unwrap());
        },
    ));
    drop(pool);
    drop(raw);
    drop(cluster);
}

criterion_group!(benches, bench);

/// What a pool does in the background, on wall-clock timers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Background {
    /// The defaults: a heartbeat every 200 ms on the kept connection (rediscovery runs only
    /// while the primary is in doubt).
    Default,
    /// Without the heartbeat: nothing in the background of a healthy pool. For instruction
    /// counts of the calls alone (under callgrind the calls run far slower while the heartbeat
    /// keeps its wall-clock pace, so each call would carry many times its real share of it).
    NoHeartbeat,
}

impl Background {
    fn parse(side: &str) -> Option<Self> {
        match side {
            "default" | "switchover" => Some(Background::Default),
            "no-heartbeat" | "switchover-quiet" => Some(Background::NoHeartbeat),
            _ => None,
        }
    }

    fn pool(self, conn: String) -> FailoverPool {
        let builder = FailoverPool::builder().connection_string(conn).max_size(16);
        let builder = match self {
            Background::Default => builder,
            Background::NoHeartbeat => builder.heartbeat(None),
        };
        builder.build().expect("switchover pool")
    }
}

/// A runtime as the bench's, for the plain loops.
fn loop_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `--loop N raw|switchover|switchover-quiet`: `N` calls through one side.
fn plain_loop(args: &[String]) {
    let usage = "usage: postgres --loop N raw|switchover|switchover-quiet";
    let [n, side] = args else { panic!("{usage}") };
    let n: u32 = n.parse().expect("N");
    let background = match side.as_str() {
        "raw" => None,
        s => Some(Background::parse(s).expect(usage)),
    };
    let rt = loop_runtime();
    let start = std::time::Instant::now();
    rt.block_on(async {
        let cluster = PgCluster::start(0).await.expect("Postgres 15");
        let node = cluster.primary();
        match background {
            None => {
                let raw = raw_pool(node);
                for _ in 0..n {
                    let client = raw.get().await.unwrap();
                    client.simple_query("SELECT 1").await.unwrap();
                }
            }
            Some(b) => {
                let pool = b.pool(node.conn_string());
                for _ in 0..n {
                    let client = pool.get().await.unwrap();
                    client.simple_query("SELECT 1").await.unwrap();
                }
            }
        }
    });
    println!(
        "{side}: {:?} per call ({n} calls, with set-up)",
        start.elapsed() / n
    );
}

/// `--idle SECS default|no-heartbeat`: a pool with that background work left idle for
/// `SECS` seconds of wall-clock time (after one call), for its instructions per second.
fn idle(args: &[String]) {
    let usage = "usage: postgres --idle SECS default|no-heartbeat";
    let [secs, side] = args else {
        panic!("{usage}")
    };
    let secs: u64 = secs.parse().expect("SECS");
    let background = Background::parse(side).expect(usage);
    loop_runtime().block_on(async {
        let cluster = PgCluster::start(0).await.expect("Postgres 15");
        let pool = background.pool(cluster.primary().conn_string());
        let client = pool.get().await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
        drop(client);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    });
    println!("idle {secs} s");
}

fn main() {
    if interleave::run_mode(&[("--loop", plain_loop), ("--idle", idle)]) {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

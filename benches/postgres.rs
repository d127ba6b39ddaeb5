//! Simple-query throughput through `switchover::postgres::FailoverPool` versus raw
//! deadpool-postgres, against the same local Postgres 15 server (started by the testing kit) in
//! the same run.
//!
//! Each iteration takes a connection from the pool, runs `SELECT 1` (simple protocol, one round
//! trip) and returns the connection. IDs: `postgres/raw` and `postgres/switchover`. Two
//! interleaved comparisons follow: the same call, and a checkout alone (take a connection and
//! return it, no round trip), which isolates the pool's own cost.
//!
//! Run with `cargo bench --bench postgres --features postgres,testing`.

#[path = "support/interleave.rs"]
mod interleave;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use switchover::postgres::FailoverPool;
use switchover::testing::PgCluster;
use tokio_postgres::NoTls;

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

    let raw = {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(node.host())
            .port(node.port())
            .user("postgres")
            .dbname("postgres");
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(mgr)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("raw pool")
    };
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
    drop(raw);
    drop(cluster);
}

criterion_group!(benches, bench);
criterion_main!(benches);

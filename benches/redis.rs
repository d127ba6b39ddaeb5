//! GET/SET throughput through the split pool versus a raw redis-rs multiplexed connection to the
//! same local server, in the same run.
//!
//! The bench starts its own `redis-server` with the testing kit. Each iteration runs 32 SET+GET
//! pairs concurrently (pipelined on the multiplexed connection), on a current-thread Tokio
//! runtime: `raw` through `redis::aio::MultiplexedConnection`, `switchover` through
//! `SplitPool` (routing by command, the core's runner with the default retry policy: endpoint
//! pick, latency and health recording, retry executor; redis-rs arms its response timer in both).
//!
//! Run with `cargo bench --bench redis --features redis,testing`.

#[path = "support/interleave.rs"]
mod interleave;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use switchover::redis::SplitPool;
use switchover::testing::RedisServer;

const BATCH: usize = 32;

async fn batch<C: ConnectionLike + Clone + Send + Sync>(con: &C) {
    let ops = (0..BATCH).map(|i| {
        let mut c = con.clone();
        async move {
            let key = format!("bench{i}");
            let _: () = c.set(&key, i).await.expect("SET");
            let v: usize = c.get(&key).await.expect("GET");
            black_box(v);
        }
    });
    join_all(ops).await;
}

fn get_set(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (server, raw, pool) = rt.block_on(async {
        let server = RedisServer::start()
            .await
            .expect("redis-server (apt-get install redis-server)");
        let raw = redis::Client::open(server.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        let pool = SplitPool::builder()
            .nodes([server.addr().to_string()])
            .build()
            .await
            .expect("pool");
        (server, raw, pool)
    });

    let mut group = c.benchmark_group("redis_get_set");
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.bench_function("raw", |b| b.to_async(&rt).iter(|| batch(&raw)));
    group.bench_function("switchover", |b| b.to_async(&rt).iter(|| batch(&pool)));
    group.finish();

    // Drift-proof comparison: alternate blocks of raw and pool batches.
    rt.block_on(interleave::interleaved(
        "get_set batch",
        30,
        20,
        || batch(&raw),
        || batch(&pool),
    ));
    drop(pool);
    drop(server);
}

criterion_group!(benches, get_set);
criterion_main!(benches);

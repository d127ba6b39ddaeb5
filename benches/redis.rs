//! GET/SET throughput through the split pool versus a raw redis-rs multiplexed connection to the
//! same local server, in the same run.
//!
//! The bench starts its own `redis-server` with the testing kit. Each iteration runs 32 SET+GET
//! pairs concurrently (pipelined on the multiplexed connection), on a current-thread Tokio
//! runtime: `raw` through `redis::aio::MultiplexedConnection`, `switchover` through
//! `SplitPool` (routing by command, the core's runner with the default retry policy: endpoint
//! pick, latency and health recording, retry executor; redis-rs arms its response timer in both).
//!
//! With feature `tls` the same comparison runs again over TLS (`redis_get_set_tls`): a
//! TLS-only server from the testing kit, the raw connection built with redis-rs's
//! `Client::build_with_tls` and the pool with `SplitPoolBuilder::tls`, both trusting the same
//! test CA and verifying the server's IP address.
//!
//! Run with `cargo bench --bench redis --features redis,testing` (add `,tls` for the TLS run).
//!
//! The plaintext group ends with the heartbeat's cost: the pool with its default heartbeat
//! against one with `heartbeat(None)`, in alternating one-second phases with only that pool
//! alive (`phases get_set batch, heartbeat off vs on`).
//!
//! Instructions per command: `redis --loop N raw|switchover|switchover-quiet` runs `N`
//! batches of one side (`raw` builds no pool) and nothing else; run it under callgrind with
//! `N` and `2N` and divide the difference by `N × 64` (the server is another process, not
//! counted). Compare `raw` with `switchover-quiet`, a pool without heartbeat and without a
//! discovery run within the run: under callgrind the commands run about a hundred times slower
//! while the background work keeps its wall-clock pace (a `ROLE` every 200 ms, a discovery run
//! every second), so with it each command carries a hundred times its real share. The
//! background work's own cost: `redis --idle SECS default|no-heartbeat|quiet` leaves a pool
//! idle for `SECS` seconds; the differences of the counts, divided by `SECS`, are its
//! instructions per second.
//!
//! ```text
//! bin=$(ls -t target/release/deps/redis-* | grep -v '\.d$' | head -1)
//! for n in 300 600; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null $bin --loop $n switchover-quiet 2>&1 |
//!     grep 'refs:'
//! done
//! ```

#[path = "support/interleave.rs"]
mod interleave;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
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

/// A current-thread runtime with time and I/O, as the bench runs on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What a pool does in the background, on wall-clock timers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Background {
    /// The defaults: a heartbeat every 200 ms, a discovery run every second.
    Default,
    /// The defaults without the heartbeat.
    NoHeartbeat,
    /// Neither heartbeat nor (within the run) a discovery run: for instruction counts of the
    /// commands alone (see the module docs).
    Quiet,
}

/// A pool on `server`, with `background`.
async fn pool_on(server: &RedisServer, background: Background) -> SplitPool {
    let builder = SplitPool::builder().nodes([server.addr().to_string()]);
    let builder = match background {
        Background::Default => builder,
        Background::NoHeartbeat => builder.heartbeat(None),
        Background::Quiet => builder
            .heartbeat(None)
            .discovery_interval(std::time::Duration::from_secs(3600)),
    };
    builder.build().await.expect("pool")
}

/// A redis-server from the testing kit.
async fn server() -> RedisServer {
    RedisServer::start()
        .await
        .expect("redis-server (apt-get install redis-server)")
}

/// A raw redis-rs multiplexed connection to `server`.
async fn raw_on(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

fn get_set(c: &mut Criterion) {
    let rt = runtime();
    let (server, raw, pool) = rt.block_on(async {
        let server = server().await;
        let raw = raw_on(&server).await;
        let pool = pool_on(&server, Background::Default).await;
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
        200,
        10,
        || batch(&raw),
        || batch(&pool),
    ));
    drop(pool);
    heartbeat_cost(&rt, &server);
    drop(server);
}

/// The same comparison over TLS.
#[cfg(feature = "tls")]
fn get_set_tls(c: &mut Criterion) {
    use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};
    use switchover::testing::{RedisTls, TestCa};
    use switchover::tls::{Roots, TlsOptions};

    // redis-rs builds its rustls configuration from the process default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ca = TestCa::new().expect("test CA");
    let kit = RedisTls::new(&ca).expect("server certificate");
    let (server, raw, pool) = rt.block_on(async {
        let server = RedisServer::start_tls(&kit)
            .await
            .expect("redis-server with TLS (apt-get install redis-server)");
        let info = ConnectionAddr::TcpTls {
            host: "127.0.0.1".into(),
            port: server.port(),
            insecure: false,
            tls_params: None,
        }
        .into_connection_info()
        .expect("connection info");
        let certs = TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.cert_pem().into_bytes()),
        };
        let raw = redis::Client::build_with_tls(info, certs)
            .expect("TLS client")
            .get_multiplexed_async_connection()
            .await
            .expect("raw TLS connection");
        let pool = SplitPool::builder()
            .nodes([format!("rediss://{}", server.addr())])
            .tls(TlsOptions::new().roots(Roots::PemFile(ca.cert_path().to_path_buf())))
            .build()
            .await
            .expect("pool over TLS");
        (server, raw, pool)
    });

    let mut group = c.benchmark_group("redis_get_set_tls");
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.bench_function("raw", |b| b.to_async(&rt).iter(|| batch(&raw)));
    group.bench_function("switchover", |b| b.to_async(&rt).iter(|| batch(&pool)));
    group.finish();

    rt.block_on(interleave::interleaved(
        "get_set batch over TLS",
        200,
        10,
        || batch(&raw),
        || batch(&pool),
    ));
    drop(pool);
    drop(server);
}

/// `--loop N raw|switchover|switchover-quiet`: `N` batches through one side, for instruction
/// counts (`raw` builds no pool; `switchover-quiet` is a pool without background work).
fn plain_loop(args: &[String]) {
    let (n, side) = match args {
        [n, side] => (n.parse::<u32>().expect("N"), side.as_str()),
        _ => panic!("usage: redis --loop N raw|switchover|switchover-quiet"),
    };
    let background = match side {
        "raw" => None,
        "switchover" => Some(Background::Default),
        "switchover-quiet" => Some(Background::Quiet),
        _ => panic!("no side named {side:?}"),
    };
    let rt = runtime();
    let start = std::time::Instant::now();
    rt.block_on(async {
        let server = server().await;
        match background {
            None => {
                let raw = raw_on(&server).await;
                for _ in 0..n {
                    batch(&raw).await;
                }
            }
            Some(b) => {
                let pool = pool_on(&server, b).await;
                for _ in 0..n {
                    batch(&pool).await;
                }
            }
        }
    });
    let per_cmd = start.elapsed() / (n * 2 * BATCH as u32);
    println!("{side}: {per_cmd:?} per command ({n} batches, with set-up)");
}

/// `--idle SECS default|no-heartbeat|quiet`: a pool with that background work (see
/// [`Background`]) left idle for `SECS` seconds of wall-clock time, for the instructions per
/// second of its background work (differences of the counts under callgrind, divided by
/// `SECS`).
fn idle(args: &[String]) {
    let (secs, background) = match args {
        [secs, side] => (
            secs.parse::<u64>().expect("SECS"),
            match side.as_str() {
                "default" => Background::Default,
                "no-heartbeat" => Background::NoHeartbeat,
                "quiet" => Background::Quiet,
                _ => panic!("usage: redis --idle SECS default|no-heartbeat|quiet"),
            },
        ),
        _ => panic!("usage: redis --idle SECS default|no-heartbeat|quiet"),
    };
    runtime().block_on(async {
        let server = server().await;
        let pool = pool_on(&server, background).await;
        batch(&pool).await;
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    });
    println!("idle {secs} s");
}

/// The heartbeat's cost on this bench: the pool with its default heartbeat against the pool
/// without one, each alone in its phase (see `interleave::phases`).
fn heartbeat_cost(rt: &tokio::runtime::Runtime, server: &RedisServer) {
    rt.block_on(interleave::phases(
        "get_set batch, heartbeat off vs on",
        10,
        std::time::Duration::from_secs(1),
        |on| {
            pool_on(
                server,
                if on {
                    Background::Default
                } else {
                    Background::NoHeartbeat
                },
            )
        },
        |pool| async move { batch(&pool).await },
    ));
}

#[cfg(feature = "tls")]
criterion_group!(benches, get_set, get_set_tls);
#[cfg(not(feature = "tls"))]
criterion_group!(benches, get_set);

fn main() {
    if interleave::run_mode(&[("--loop", plain_loop), ("--idle", idle)]) {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! Failover drills in ordinary `cargo test`: a fault-injecting TCP proxy and fixtures that run
//! real servers in real topologies and break them on demand.
//!
//! - [`FaultProxy`]: a TCP proxy on `127.0.0.1` in front of one upstream, switchable at run time
//!   between [`Mode::Pass`], [`Mode::Refuse`], [`Mode::Reset`], [`Mode::BlackHole`],
//!   [`Mode::Latency`] and [`Mode::CutOnReply`] (the server executes the request, the client never
//!   sees the reply), with a movable upstream and connection counters.
//! - Redis: [`RedisServer`], [`RedisReplicaSet`] (primary + replicas), [`RedisSentinel`]
//!   (a replica set watched by 1–3 sentinels that fail over about 1 s after the primary dies);
//!   each also on TLS ports only, replicating over TLS (`RedisTls`, feature `tls`), and a
//!   server that also listens on a Unix socket.
//! - Postgres 15: [`PgCluster`] (primary + streaming standbys) of [`PgNode`]s that can be killed,
//!   promoted, fenced read-only and waited on until they replay the primary's WAL.
//! - Patroni: [`PatroniCluster`] (etcd + 2–3 [`PatroniMember`]s running Postgres 15, short TTLs)
//!   with a planned switchover, a killed leader and a member that rejoins.
//! - DynamoDB Local: [`DynamoDbRegions`] of [`DynamoDbLocal`] processes, one per "region", that
//!   can be killed, paused and resumed; with feature `dynamodb`, SDK clients (retries off,
//!   timeouts on) and helpers to create tables and copy items between regions.
//! - Partitions: [`NetNs`], a Linux network namespace behind a veth pair whose packets are
//!   dropped on demand ([`NetNs::partition`] / [`NetNs::heal`], one-way variants), silently, so
//!   keepalive and `TCP_USER_TIMEOUT` are exercised for real; servers start inside one with
//!   [`RedisServer::start_in`], [`DynamoDbLocal::start_in`], and, each node in its own
//!   namespace, [`RedisReplicaSet::start_in_netns`], [`RedisSentinel::start_in_netns`],
//!   [`PgCluster::start_in_netns`] and [`DynamoDbRegions::start_in_netns`]; then
//!   `partition()` / `heal()` on the node. Root, `ip` and `iptables` are required; a missing
//!   one is an error naming it.
//! - TLS: [`TestCa`], a throw-away certificate authority that issues server and client
//!   certificates as PEM files for the fixtures and the clients under test.
//!
//! Every fixture binds `127.0.0.1` on a free port, lives in its own temporary directory, waits
//! until the server is ready (30 s at most, then [`Error::Timeout`] with the server's log), and
//! stops its processes on `Drop`, also when a test panics. Fixtures can run in parallel. A
//! missing program is an [`Error::MissingBinary`] whose message carries the install command
//! (`apt-get install redis-server`, ...); nothing skips silently. `scripts/install-deps.sh` in
//! the repository installs everything on Debian.
//!
//! The fixtures drive the servers with their own tools or protocols (`redis-server`, a small
//! RESP client, `pg_ctl`/`psql`, raw HTTP), so this module needs none of the client crates;
//! only the DynamoDB helpers use the AWS SDK. Kill and pause use `SIGKILL`/`SIGSTOP`/`SIGCONT`
//! on the fixture's own processes only. Do not pause Tokio's clock in tests that use them.
//!
//! Every server runs under `setpriv --pdeathsig KILL` (also through `ip netns exec` and the
//! `setpriv --reuid postgres` of the Postgres fixture), forked from one thread that lives as
//! long as the test process: a test that aborts (a stack overflow, `SIGKILL`) takes its servers
//! down with it instead of leaving them running. Namespaces left by such a run are removed by
//! the next run's first [`NetNs::create`] ([`sweep_stale`]).
//!
//! # Example
//!
//! A client that talks to Redis through the proxy, then loses it:
//!
//! ```no_run
//! use std::time::Duration;
//! use switchover::testing::{Error, FaultProxy, Mode, RedisReplicaSet, RespClient};
//!
//! # async fn drill() -> Result<(), Error> {
//! let mut set = RedisReplicaSet::start(1).await?;
//! let proxy = FaultProxy::start(set.primary().addr()).await?;
//!
//! let mut client = RespClient::connect_with_timeout(proxy.addr(), Duration::from_millis(200)).await?;
//! client.command(&["SET", "k", "v"]).await?;
//!
//! // The network to the primary goes silent: the client times out.
//! proxy.set_mode(Mode::BlackHole).await?;
//! assert!(client.command(&["GET", "k"]).await.unwrap_err().is_timeout());
//!
//! // The primary dies; promote the replica and move the proxy's upstream to it.
//! set.kill_primary().await?;
//! set.promote(1).await?;
//! proxy.set_upstream(set.primary().addr());
//! proxy.set_mode(Mode::Pass).await?;
//! let mut client = RespClient::connect(proxy.addr()).await?;
//! client.command(&["SET", "k", "v2"]).await?;
//! # Ok(()) }
//! ```

mod certs;
mod dynamodb;
mod error;
mod netns;
mod patroni;
mod postgres;
mod postgres_tls;
mod process;
mod proxy;
mod redis;
#[cfg(feature = "tls")]
mod redis_tls;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod resolver;
mod resp;
mod sentinel;

pub use certs::{IssuedCert, LOCALHOST_NAMES, TestCa};
pub use dynamodb::{
    CACHE_ENV, DYNAMODB_LOCAL_DIR_ENV, DYNAMODB_LOCAL_NPM_VERSION, DynamoDbLocal, DynamoDbRegions,
    dynamodb_local_dir,
};
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use dynamodb::{CLIENT_CONNECT_TIMEOUT, CLIENT_OPERATION_TIMEOUT};
pub use error::Error;
pub use netns::{Cut, NETNS_PREFIX, NetNs, sweep_stale};
pub use patroni::{PATRONI_TTL, PatroniCluster, PatroniMember};
pub use postgres::{PG_BIN_ENV, PgCluster, PgNode};
pub use postgres_tls::PgClusterBuilder;
pub use proxy::{FaultProxy, Mode};
pub use redis::{RedisReplicaSet, RedisServer};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use redis_tls::{RedisTls, TlsAuthClients};
#[cfg(any(feature = "redis", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "redis", feature = "postgres"))))]
pub use resolver::TestResolver;
pub use resp::{DEFAULT_RESP_TIMEOUT, Reply, RespClient};
pub use sentinel::{RedisSentinel, SENTINEL_MASTER_NAME};

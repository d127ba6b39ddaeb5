//! The seam between the failover logic and redis-rs: how the pool reaches a node or a sentinel.
//!
//! [`Backend`] is implemented by [`RedisIo`] (redis-rs multiplexed connections over the streams
//! `Connector` opens, a small pool of dedicated connections per node) and, in the unit tests,
//! by a scripted fake. The pool is generic over it, so the hot path calls redis-rs directly:
//! no boxing, no dynamic dispatch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt as _;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisResult, Value};

use super::config::{NodeAddr, Settings, Timeouts};
use super::connect::{Connector, Tls};
use super::error::Error;
use super::login::Login;
use super::spares::{Lease, Spares};
use crate::observe::PoolMetrics;

/// What ends a connection: once it resolves, the connection's task stops, and every request
/// pending on the connection fails at once (redis-rs: a broken pipe, "may have executed").
pub(crate) type Cut = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A cut that never comes: the connection ends only when it breaks or is dropped.
pub(crate) fn never() -> Cut {
    Box::pin(std::future::pending())
}

/// How the pool talks to its nodes and sentinels.
pub(crate) trait Backend: Send + Sync + Sized + 'static {
    /// What the pool keeps per node to open connections to it.
    type Client: Send + Sync + 'static;
    /// A shared (multiplexed) connection to one node, cloned for each command.
    type Conn: Clone + Send + Sync + 'static;

    /// What is needed to reach `addr` (no I/O); `name`: its host name's addresses, when it
    /// is a host name.
    fn client(
        &self,
        addr: &NodeAddr,
        name: Option<Arc<crate::resolve::Name>>,
    ) -> Result<Self::Client, Error>;

    /// Opens a shared connection, which ends at `cut`; the caller bounds the time it takes.
    fn connect(
        &self,
        client: &Self::Client,
        cut: Cut,
    ) -> impl Future<Output = RedisResult<Self::Conn>> + Send;

    /// Opens a node's control connection (heartbeats, discovery's `ROLE`), which ends at
    /// `cut`: as [`connect`](Self::connect), but with no response timeout of its own — the
    /// caller bounds every reply, by the heartbeat timeout, which may exceed the response
    /// timeout (slow is not dead).
    fn connect_control(
        &self,
        client: &Self::Client,
        cut: Cut,
    ) -> impl Future<Output = RedisResult<Self::Conn>> + Send {
        self.connect(client, cut)
    }

    /// Sends one command and reads its reply, bounded by the response timeout. Error replies
    /// come back as [`Value::ServerError`], as redis-rs does.
    fn send<'a>(
        conn: &'a mut Self::Conn,
        cmd: &'a Cmd,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'a;

    /// Sends `count` commands of `pipeline` from `offset` and reads their replies.
    fn send_pipeline<'a>(
        conn: &'a mut Self::Conn,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> impl Future<Output = RedisResult<Vec<Value>>> + Send + 'a;

    /// Closes whatever else is open to the node (its dedicated connections), after its role
    /// changed.
    fn reset(&self, client: &Self::Client);

    /// For a silent node that never answered: the error saying it speaks the other protocol
    /// (a TLS-only port asked in plaintext, a plaintext port asked in TLS), if it does. The
    /// fake never does.
    fn mismatch(
        &self,
        client: &Self::Client,
    ) -> impl Future<Output = Option<redis::RedisError>> + Send {
        let _ = client;
        async { None }
    }

    /// Asks `sentinel` for `SENTINEL GET-MASTER-ADDR-BY-NAME master`, `SENTINEL REPLICAS
    /// master` and `SENTINEL MASTER master` (its timings), within [`Timeouts::exchange`].
    fn ask_sentinel<'a>(
        &'a self,
        sentinel: &'a NodeAddr,
        master: &'a str,
    ) -> impl Future<Output = RedisResult<(Value, Value, Value)>> + Send + 'a;
}

/// The real backend: redis-rs.
#[derive(Debug)]
pub(crate) struct RedisIo {
    login: Login,
    sentinel_login: Login,
    /// TLS to the data nodes (`None`: plaintext; never for a Unix socket).
    tls: Option<Tls>,
    /// TLS to the sentinels given without a `redis://` scheme.
    sentinel_tls: Option<Tls>,
    /// Sentinels given as `redis://`: plaintext even when the rest is TLS.
    plaintext_sentinels: Vec<NodeAddr>,
    db: i64,
    timeouts: Timeouts,
    dedicated_size: usize,
    /// Shared connections: redis-rs's response timeout on every command.
    shared: AsyncConnectionConfig,
    /// Dedicated and control connections apply their own, per-command timeout (blocking
    /// commands wait longer than the response timeout; a heartbeat waits its own timeout).
    dedicated: AsyncConnectionConfig,
    resolver: crate::resolve::Resolver,
    ages: Arc<crate::resolve::AgeLimit>,
    /// The pool's observe name: its nodes' dedicated pools are `{name}:dedicated:{host:port}`.
    name: std::sync::Arc<str>,
}

impl RedisIo {
    pub(crate) fn new(s: &Settings) -> Self {
        RedisIo {
            login: s.login.clone(),
            sentinel_login: s.sentinel_login.clone(),
            tls: s.tls.clone(),
            sentinel_tls: s.sentinel_tls.clone(),
            plaintext_sentinels: s.plaintext_sentinels.clone(),
            db: s.db,
            timeouts: s.timeouts,
            dedicated_size: s.dedicated_pool_size,
            shared: AsyncConnectionConfig::new()
                .set_response_timeout(Some(s.timeouts.response_timeout())),
            dedicated: AsyncConnectionConfig::new().set_response_timeout(None),
            resolver: s.resolver.clone(),
            ages: s.ages.clone(),
            name: std::sync::Arc::from(&*s.observe.name),
        }
    }

    /// The database of the data nodes.
    pub(crate) fn db(&self) -> i64 {
        self.db
    }

    /// Opens a multiplexed connection to a data node with `config`, logged in, ending at `cut`.
    async fn open(
        &self,
        client: &NodeClient,
        cut: Cut,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MultiplexedConnection> {
        let limit = self.timeouts.connect_timeout();
        let cut = cut.shared();
        self.login
            .open(client.to.addr(), self.db, limit, |info| {
                let cut = Box::pin(cut.clone());
                async move { client.to.multiplexed(&info, config, limit, cut).await }
            })
            .await
    }

    /// How to reach a sentinel (TLS unless it was given as `redis://`).
    fn sentinel(&self, addr: &NodeAddr) -> Connector {
        let tls = match self.plaintext_sentinels.contains(addr) {
            true => None,
            false => self.sentinel_tls.as_ref(),
        };
        // A sentinel's host name is looked up at every connect.
        let name = crate::resolve::Name::new(addr.host(), addr.port(), &self.resolver);
        Connector::new(addr, tls).with_name(name, self.timeouts.connect_timeout())
    }

    /// A pub/sub connection to a sentinel (its own credentials, database 0), logged in.
    pub(crate) async fn sentinel_pubsub(&self, addr: &NodeAddr) -> RedisResult<PubSub> {
        let to = self.sentinel(addr);
        let limit = self.timeouts.connect_timeout();
        self.sentinel_login
            .open(addr, 0, limit, |info| {
                let to = &to;
                async move { to.pubsub(&info, limit, never()).await }
            })
            .await
    }

    /// A dedicated connection to `node`, logged in with the credentials of this moment; a new
    /// one ends at `cut`.
    pub(crate) async fn dedicated(&self, node: &NodeClient, cut: Cut) -> RedisResult<Lease> {
        let limit = self.timeouts.connect_timeout();
        let cut = cut.shared();
        let open = || {
            self.login.open(node.to.addr(), self.db, limit, |info| {
                let cut = Box::pin(cut.clone());
                async move {
                    node.to
                        .multiplexed(&info, &self.dedicated, limit, cut)
                        .await
                }
            })
        };
        node.spares.get(open).await
    }

    /// A pub/sub connection to `node`, logged in, that ends at `cut`.
    pub(crate) async fn pubsub(&self, node: &NodeClient, cut: Cut) -> RedisResult<PubSub> {
        let limit = self.timeouts.connect_timeout();
        let cut = cut.shared();
        self.login
            .open(node.to.addr(), self.db, limit, |info| {
                let cut: Cut = Box::pin(cut.clone());
                async move { node.to.pubsub(&info, limit, cut).await }
            })
            .await
    }
}

/// What the real backend keeps per node: how to reach it, and its dedicated connections.
#[derive(Debug)]
pub(crate) struct NodeClient {
    to: Connector,
    spares: Arc<Spares>,
}

impl Backend for RedisIo {
    type Client = NodeClient;
    type Conn = MultiplexedConnection;

    fn client(
        &self,
        addr: &NodeAddr,
        name: Option<Arc<crate::resolve::Name>>,
    ) -> Result<NodeClient, Error> {
        let limit = self.timeouts.connect_timeout();
        let wait = limit.saturating_mul(4);
        Ok(NodeClient {
            to: Connector::new(addr, self.tls.as_ref()).with_name(name, limit),
            spares: Spares::new(
                self.dedicated_size,
                wait,
                self.ages.clone(),
                PoolMetrics::named(|| format!("{}:dedicated:{addr}", self.name)),
            ),
        })
    }

    async fn connect(&self, client: &NodeClient, cut: Cut) -> RedisResult<MultiplexedConnection> {
        self.open(client, cut, &self.shared).await
    }

    async fn connect_control(
        &self,
        client: &NodeClient,
        cut: Cut,
    ) -> RedisResult<MultiplexedConnection> {
        // No response timeout of redis-rs's: `Node::control` bounds each reply itself.
        self.open(client, cut, &self.dedicated).await
    }

    #[inline]
    fn send<'a>(
        conn: &'a mut MultiplexedConnection,
        cmd: &'a Cmd,
    ) -> impl Future<Output = RedisResult<Value>> + Send + 'a {
        conn.send_packed_command(cmd)
    }

    #[inline]
    fn send_pipeline<'a>(
        conn: &'a mut MultiplexedConnection,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> impl Future<Output = RedisResult<Vec<Value>>> + Send + 'a {
        conn.send_packed_commands(pipeline, offset, count)
    }

    fn reset(&self, client: &NodeClient) {
        client.spares.clear();
    }

    async fn mismatch(&self, client: &NodeClient) -> Option<redis::RedisError> {
        client.to.mismatch(self.timeouts.connect_timeout()).await
    }

    async fn ask_sentinel(
        &self,
        sentinel: &NodeAddr,
        master: &str,
    ) -> RedisResult<(Value, Value, Value)> {
        let to = self.sentinel(sentinel);
        let connect = self.timeouts.connect_timeout();
        let limit = self.timeouts.exchange();
        let ask = async {
            let mut c = self
                .sentinel_login
                .open(sentinel, 0, connect, |info| {
                    let to = &to;
                    async move { to.multiplexed(&info, &self.shared, connect, never()).await }
                })
                .await?;
            let m: Value = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(master)
                .query_async(&mut c)
                .await?;
            let r: Value = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(master)
                .query_async(&mut c)
                .await?;
            let t: Value = redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(master)
                .query_async(&mut c)
                .await?;
            Ok((m, r, t))
        };
        tokio::time::timeout(limit, ask).await.map_err(|_| {
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })?
    }
}

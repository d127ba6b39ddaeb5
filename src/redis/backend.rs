//! The seam between the failover logic and redis-rs: how the pool reaches a node or a sentinel.
//!
//! [`Backend`] is implemented by [`RedisIo`] (redis-rs multiplexed connections, deadpool for
//! dedicated connections) and, in the unit tests, by a scripted fake. The pool is generic over
//! it, so the hot path calls redis-rs directly: no boxing, no dynamic dispatch.

use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisError, RedisResult, Value,
};

use super::config::{NodeAddr, Secret, Settings, Timeouts};
use super::error::Error;

/// How the pool talks to its nodes and sentinels.
pub(crate) trait Backend: Send + Sync + Sized + 'static {
    /// What the pool keeps per node to open connections to it.
    type Client: Send + Sync + 'static;
    /// A shared (multiplexed) connection to one node, cloned for each command.
    type Conn: Clone + Send + Sync + 'static;

    /// What is needed to reach `addr` (no I/O).
    fn client(&self, addr: &NodeAddr) -> Result<Self::Client, Error>;

    /// Opens a shared connection; the caller bounds the time it takes.
    fn connect(
        &self,
        client: &Self::Client,
    ) -> impl Future<Output = RedisResult<Self::Conn>> + Send;

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

    /// Asks `sentinel` for `SENTINEL GET-MASTER-ADDR-BY-NAME master` and `SENTINEL REPLICAS
    /// master`, within [`Timeouts::exchange`].
    fn ask_sentinel<'a>(
        &'a self,
        sentinel: &'a NodeAddr,
        master: &'a str,
    ) -> impl Future<Output = RedisResult<(Value, Value)>> + Send + 'a;
}

/// The real backend: redis-rs.
#[derive(Debug)]
pub(crate) struct RedisIo {
    username: Option<String>,
    password: Option<Secret>,
    sentinel_username: Option<String>,
    sentinel_password: Option<Secret>,
    db: i64,
    timeouts: Timeouts,
    dedicated_size: usize,
}

impl RedisIo {
    pub(crate) fn new(s: &Settings) -> Self {
        RedisIo {
            username: s.username.clone(),
            password: s.password.clone(),
            sentinel_username: s.sentinel_username.clone(),
            sentinel_password: s.sentinel_password.clone(),
            db: s.db,
            timeouts: s.timeouts,
            dedicated_size: s.dedicated_pool_size,
        }
    }

    /// A redis-rs client for a sentinel (its own credentials, database 0).
    pub(crate) fn sentinel_client(&self, addr: &NodeAddr) -> Result<Client, Error> {
        client_for(
            addr,
            self.sentinel_username.as_ref(),
            self.sentinel_password.as_ref(),
            0,
        )
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect_timeout()))
            .set_response_timeout(Some(self.timeouts.response_timeout()))
    }
}

/// What the real backend keeps per node: the redis-rs client and the node's pool of dedicated
/// connections (replaced when the node changes role).
pub(crate) struct NodeClient {
    client: Client,
    dedicated: RwLock<deadpool_redis::Pool>,
    size: usize,
    connect_timeout: Duration,
}

impl NodeClient {
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn dedicated_pool(&self) -> deadpool_redis::Pool {
        crate::sync::read(&self.dedicated).clone()
    }
}

impl Backend for RedisIo {
    type Client = NodeClient;
    type Conn = MultiplexedConnection;

    fn client(&self, addr: &NodeAddr) -> Result<NodeClient, Error> {
        let client = client_for(
            addr,
            self.username.as_ref(),
            self.password.as_ref(),
            self.db,
        )?;
        let connect_timeout = self.timeouts.connect_timeout();
        let dedicated = dedicated_pool(&client, self.dedicated_size, connect_timeout)?;
        Ok(NodeClient {
            client,
            dedicated: RwLock::new(dedicated),
            size: self.dedicated_size,
            connect_timeout,
        })
    }

    async fn connect(&self, client: &NodeClient) -> RedisResult<MultiplexedConnection> {
        client
            .client
            .get_multiplexed_async_connection_with_config(&self.config())
            .await
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
        match dedicated_pool(&client.client, client.size, client.connect_timeout) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *crate::sync::write(&client.dedicated), fresh);
                // Connections in use are discarded when they come back.
                old.close();
            }
            Err(e) => {
                tracing::warn!(target: "switchover::redis", error = %e, "could not renew the dedicated pool");
            }
        }
    }

    async fn ask_sentinel(&self, sentinel: &NodeAddr, master: &str) -> RedisResult<(Value, Value)> {
        let client = self.sentinel_client(sentinel).map_err(RedisError::from)?;
        let limit = self.timeouts.exchange();
        let ask = async {
            let mut c = client
                .get_multiplexed_async_connection_with_config(&self.config())
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
            Ok((m, r))
        };
        tokio::time::timeout(limit, ask)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
    }
}

fn redis_info(
    username: Option<&String>,
    password: Option<&Secret>,
    db: i64,
) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default().set_db(db);
    if let Some(u) = username {
        info = info.set_username(u);
    }
    if let Some(p) = password {
        info = info.set_password(&p.0);
    }
    info
}

fn client_for(
    addr: &NodeAddr,
    username: Option<&String>,
    password: Option<&Secret>,
    db: i64,
) -> Result<Client, Error> {
    let info = addr
        .connection_addr()
        .into_connection_info()
        .map_err(|e| Error::node(&addr.to_string(), e))?
        .set_redis_settings(redis_info(username, password, db));
    Client::open(info).map_err(|e| Error::node(&addr.to_string(), e))
}

fn dedicated_pool(
    client: &Client,
    size: usize,
    connect_timeout: Duration,
) -> Result<deadpool_redis::Pool, Error> {
    let node = client.get_connection_info().addr().to_string();
    let manager = deadpool_redis::Manager::new_with_config(
        client.get_connection_info().clone(),
        // Dedicated connections apply their own, per-command timeout (blocking commands wait
        // longer than the response timeout).
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None),
    )
    .map_err(|e| Error::dedicated(&node, "could not create the connection manager", Some(e)))?;
    deadpool_redis::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout * 4))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| Error::dedicated(&node, e.to_string(), None))
}

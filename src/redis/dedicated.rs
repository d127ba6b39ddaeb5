//! [`DedicatedConnection`]: a connection of its own to one node, from the node's pool,
//! that goes stale when the node changes role.

use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::backend::RedisIo;
use super::error::Error;
use super::node::NodeRef;
use super::spares::Lease;
use crate::error::Classify;

/// A connection of its own to one node, from the node's pool: for transactions (`WATCH`,
/// `MULTI`/`EXEC`), blocking commands and anything that must not share a connection. Made by
/// [`SplitPool::dedicated`](super::SplitPool::dedicated).
///
/// Each command has the pool's response timeout. Once the node has changed role since the
/// connection was handed out, every command fails with a [stale](Error::is_stale) error (surely
/// not executed) and the connection is discarded instead of going back to the pool.
pub struct DedicatedConnection {
    conn: Lease,
    node: NodeRef<RedisIo>,
    epoch: u64,
    /// The bound of each command (`None`: a blocking command that may wait for ever).
    limit: Option<Duration>,
    db: i64,
}

impl fmt::Debug for DedicatedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DedicatedConnection")
            .field("node", &self.node.name)
            .field("stale", &self.is_stale())
            .finish_non_exhaustive()
    }
}

impl DedicatedConnection {
    /// A connection from `node`'s pool; each command bounded by `timeout`.
    pub(crate) async fn get(
        node: NodeRef<RedisIo>,
        io: &RedisIo,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let epoch = node.role_epoch.load(Relaxed);
        let conn = io
            .dedicated(&node.client, node.down_cut())
            .await
            .map_err(|e| Error::dedicated(&node.name, "connection failed", Some(e)))?;
        Ok(DedicatedConnection {
            conn,
            node,
            epoch,
            limit: Some(timeout),
            db: io.db(),
        })
    }

    /// For a blocking command: its block time added to the bound (`None`: no bound).
    pub(crate) fn blocking(mut self, block: Option<Duration>) -> Self {
        self.limit = match block {
            Some(b) => self.limit.map(|t| t.saturating_add(b)),
            None => None,
        };
        self
    }

    /// `host:port` of the node.
    pub fn node(&self) -> &str {
        &self.node.name
    }

    /// `true` once the node has changed role since this connection was handed out.
    pub fn is_stale(&self) -> bool {
        self.node.role_epoch.load(Relaxed) != self.epoch
    }

    fn check(&mut self) -> RedisResult<&mut redis::aio::MultiplexedConnection> {
        if self.is_stale() {
            self.discard();
            return Err(Error::stale().into());
        }
        self.conn.conn().ok_or_else(|| Error::stale().into())
    }

    /// Takes the connection out of the pool for good: it is closed, not reused.
    fn discard(&mut self) {
        self.conn.discard();
    }
}

async fn bounded<T>(
    limit: Option<Duration>,
    f: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match limit {
        None => f.await,
        Some(d) => tokio::time::timeout(d, f)
            .await
            .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?,
    }
}

impl ConnectionLike for DedicatedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let limit = self.limit;
            let node = self.node.clone();
            let c = self.check()?;
            let r = bounded(limit, c.req_packed_command(cmd)).await;
            if let Err(e) = &r {
                node.endpoint.record_failure(e.classify());
                if e.is_timeout() {
                    // A timed-out connection may deliver the late answer to the next command.
                    self.discard();
                }
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let limit = self.limit;
            let c = self.check()?;
            let r = bounded(limit, c.req_packed_commands(pipeline, offset, count)).await;
            if r.as_ref().is_err_and(|e| e.is_timeout()) {
                self.discard();
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

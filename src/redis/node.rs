//! One Redis node: its client, its shared multiplexed connection, its dedicated-connection pool
//! and its health endpoint.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisConnectionInfo, RedisError};

use super::config::{NodeAddr, Secret, Settings};
use super::error::Error;
use crate::health::Endpoint;

/// The id of one node in the pool's [`Router`](crate::route::Router) and
/// [`HealthTracker`](crate::health::HealthTracker): its `host:port`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub(crate) index: u32,
    pub(crate) name: Arc<str>,
}

impl NodeId {
    /// `host:port`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

pub(crate) const ROLE_UNKNOWN: u8 = 0;
pub(crate) const ROLE_PRIMARY: u8 = 1;
pub(crate) const ROLE_REPLICA: u8 = 2;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) addr: NodeAddr,
    pub(crate) name: String,
    client: Client,
    pub(crate) endpoint: Endpoint<NodeId>,
    conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    connecting: tokio::sync::Mutex<()>,
    dedicated: RwLock<deadpool_redis::Pool>,
    dedicated_size: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The role discovery last gave this node (`ROLE_*`).
    pub(crate) role: AtomicU8,
    /// Bumped whenever the node's role changes: dedicated connections of an older epoch are
    /// stale.
    pub(crate) role_epoch: AtomicU64,
    /// For a replica: its link to the primary is up.
    pub(crate) link_up: AtomicBool,
    /// For a replica: bytes behind the primary at the last discovery.
    pub(crate) lag: AtomicU64,
    /// The pool drained this node's endpoint (a replica unfit for reads), and will clear it.
    pub(crate) drained_by_pool: AtomicBool,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("role", &self.role.load(Relaxed))
            .field("state", &self.endpoint.state())
            .finish_non_exhaustive()
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

pub(crate) fn client_for(
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
    let manager = deadpool_redis::Manager::new_with_config(
        client.get_connection_info().clone(),
        // Dedicated connections apply their own, per-command timeout (blocking commands wait
        // longer than the response timeout).
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None),
    )
    .map_err(|e| Error::Dedicated {
        node: client.get_connection_info().addr().to_string(),
        reason: "could not create the connection manager".into(),
        source: Some(e),
    })?;
    deadpool_redis::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .wait_timeout(Some(connect_timeout * 4))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .build()
        .map_err(|e| Error::Dedicated {
            node: client.get_connection_info().addr().to_string(),
            reason: e.to_string(),
            source: None,
        })
}

impl Node {
    pub(crate) fn new(
        id: u64,
        addr: NodeAddr,
        settings: &Settings,
        endpoint: Endpoint<NodeId>,
    ) -> Result<Self, Error> {
        let client = client_for(
            &addr,
            settings.username.as_ref(),
            settings.password.as_ref(),
            settings.db,
        )?;
        let dedicated = dedicated_pool(
            &client,
            settings.dedicated_pool_size,
            settings.connect_timeout,
        )?;
        Ok(Node {
            id,
            name: addr.to_string(),
            addr,
            client,
            endpoint,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            dedicated: RwLock::new(dedicated),
            dedicated_size: settings.dedicated_pool_size,
            connect_timeout: settings.connect_timeout,
            response_timeout: settings.response_timeout,
            role: AtomicU8::new(ROLE_UNKNOWN),
            role_epoch: AtomicU64::new(0),
            link_up: AtomicBool::new(false),
            lag: AtomicU64::new(0),
            drained_by_pool: AtomicBool::new(false),
        })
    }

    /// The shared multiplexed connection, made on first use (connect timeout, then response
    /// timeout on every command).
    #[inline]
    pub(crate) async fn connection(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        if let Some((id, c)) = self.conn.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok((*id, c.clone()));
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        // The connection timeout covers the TCP connect; the handshake (HELLO/AUTH/SELECT,
        // CLIENT SETINFO) is bounded here too, so that a black-holed node cannot hold us. The
        // bound also covers the wait for the lock: a caller queued behind others' failed
        // attempts must not wait for each of them in turn.
        tokio::time::timeout(
            self.connect_timeout + self.response_timeout,
            self.connect_in_turn(),
        )
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
    }

    async fn connect_in_turn(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some((id, c)) = self.conn.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok((*id, c.clone()));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let made = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let id = NEXT_CONN_ID.fetch_add(1, Relaxed);
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some((id, made.clone()));
        tracing::debug!(target: "switchover::redis", node = %self.name, "connected");
        Ok((id, made))
    }

    /// Forgets the shared connection `id` (a newer one is kept).
    pub(crate) fn drop_connection(&self, id: u64) {
        let mut slot = self.conn.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|(current, _)| *current == id) {
            *slot = None;
            tracing::debug!(target: "switchover::redis", node = %self.name, "dropped connection");
        }
    }

    /// Drops every connection to this node: the shared one and the dedicated pool (connections
    /// in use are discarded when they come back).
    pub(crate) fn drop_all_connections(&self) {
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = None;
        match dedicated_pool(&self.client, self.dedicated_size, self.connect_timeout) {
            Ok(fresh) => {
                let old = std::mem::replace(
                    &mut *self.dedicated.write().unwrap_or_else(|e| e.into_inner()),
                    fresh,
                );
                old.close();
            }
            Err(e) => {
                tracing::warn!(target: "switchover::redis", node = %self.name, error = %e, "could not renew the dedicated pool");
            }
        }
    }

    pub(crate) fn dedicated_pool(&self) -> deadpool_redis::Pool {
        self.dedicated
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn set_role(&self, role: u8) -> bool {
        let old = self.role.swap(role, Relaxed);
        if old != role {
            self.role_epoch.fetch_add(1, Relaxed);
            true
        } else {
            false
        }
    }
}

pub(crate) type NodeRef = Arc<Node>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthTracker;

    /// Callers queued for the connect lock of a black-holed node each give up within one
    /// connect bound, instead of waiting for every earlier caller's attempt in turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_connects_to_a_black_hole_each_end_within_the_bound() {
        // Accepts connections and never answers (not even the handshake).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = NodeAddr::from(listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let settings = Settings {
            connect_timeout: Duration::from_millis(100),
            response_timeout: Duration::from_millis(200),
            ..Settings::default()
        };
        let id = NodeId {
            index: 0,
            name: addr.to_string().into(),
        };
        let tracker = HealthTracker::builder()
            .endpoint(id.clone())
            .build()
            .unwrap();
        let node = Arc::new(Node::new(0, addr, &settings, tracker.endpoint(&id).unwrap()).unwrap());
        let bound = Duration::from_millis(300);
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let r = node.connection().await;
                    (r.is_err(), started.elapsed())
                })
            })
            .collect();
        for c in callers {
            let (failed, took) = c.await.unwrap();
            assert!(failed, "a black-holed node gives no connection");
            assert!(
                took < bound + Duration::from_millis(300),
                "a queued caller waited {took:?}, over the {bound:?} bound"
            );
        }
    }
}

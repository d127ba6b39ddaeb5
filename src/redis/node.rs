//! One Redis node: its id, its backend client, its shared connection and what discovery last
//! learned about it (the role itself lives on its health endpoint).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::RedisError;

use super::backend::{Backend, Cut, never};
use super::config::NodeAddr;
use crate::health::{Endpoint, HealthState};
use crate::observe::{PoolMetrics, Stamp};
use crate::resolve::age::expired;
use crate::resolve::{AgeLimit, Name};
use crate::route::Router;
use crate::sync::{read, write};
use tokio::time::Instant;

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

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) struct Node<B: Backend> {
    /// Itself, for the task of its shared connection (which must not keep it alive).
    me: Weak<Node<B>>,
    /// The pool's router: a shared connection ends when the primary moves off its node.
    router: Router<NodeId>,
    pub(crate) addr: NodeAddr,
    pub(crate) name: String,
    pub(crate) client: B::Client,
    pub(crate) endpoint: Endpoint<NodeId>,
    /// The shared connection: its id, the epoch of the addresses it went to, the connection.
    conn: RwLock<Option<(u64, u64, B::Conn)>>,
    connecting: tokio::sync::Mutex<()>,
    /// The control connection: `ROLE` for the heartbeat and discovery, apart from the callers'
    /// traffic (made on first use, dropped when it fails, replaced when its host name moved
    /// or it reached its maximum age), with its address epoch and deadline.
    control: tokio::sync::Mutex<Option<Control<B::Conn>>>,
    /// For a node given by host name: its addresses.
    pub(crate) dns: Option<Arc<Name>>,
    /// The maximum age of its connections.
    ages: Arc<AgeLimit>,
    /// The bound of one connect, handshake and wait for the connect lock included.
    connect_bound: Duration,
    /// Bumped by discovery whenever the node's role changes or its host name moved: dedicated
    /// connections of an older epoch are stale.
    pub(crate) role_epoch: AtomicU64,
    /// For a replica: its link to the primary is up (and it follows the primary).
    pub(crate) link_up: AtomicBool,
    /// For a replica: bytes behind the primary at the last discovery.
    pub(crate) lag: AtomicU64,
    /// The pool drained this node's endpoint (a replica unfit for reads), and will clear it.
    pub(crate) drained_by_pool: AtomicBool,
    /// The node has answered `ROLE` at least once (so it is no TLS-only port).
    pub(crate) answered: AtomicBool,
    /// The sentinels no longer report it: discovery does not ask it, reads skip it (its
    /// endpoint is drained), until the sentinels report it again.
    pub(crate) forgotten: AtomicBool,
    /// Callers waiting for the shared connection to be made.
    waiting: AtomicUsize,
    /// `db.client.connection.*` of the shared connection (`{router}:shared:{host:port}`).
    metrics: PoolMetrics,
}

pub(crate) type NodeRef<B> = Arc<Node<B>>;

/// A control connection: its address epoch, its deadline (maximum age), the connection.
type Control<C> = (u64, Option<Instant>, C);

impl<B: Backend> fmt::Debug for Node<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("role", &self.endpoint.role())
            .field("state", &self.endpoint.state())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Node<B> {
    pub(crate) fn new(
        addr: NodeAddr,
        client: B::Client,
        endpoint: Endpoint<NodeId>,
        router: Router<NodeId>,
        connect_bound: Duration,
        (dns, ages): (Option<Arc<Name>>, Arc<AgeLimit>),
    ) -> Arc<Self> {
        let metrics = PoolMetrics::named(|| format!("{}:shared:{addr}", router.observer().name));
        metrics.max(1);
        metrics.connections(0, 0);
        metrics.pending(0);
        Arc::new_cyclic(|me| Node {
            me: me.clone(),
            router,
            name: addr.to_string(),
            addr,
            client,
            endpoint,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            control: tokio::sync::Mutex::new(None),
            dns,
            ages,
            connect_bound,
            role_epoch: AtomicU64::new(0),
            link_up: AtomicBool::new(false),
            lag: AtomicU64::new(0),
            drained_by_pool: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            forgotten: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            metrics,
        })
    }

    /// The node's id (its endpoint's).
    pub(crate) fn id(&self) -> &NodeId {
        self.endpoint.id()
    }

    /// The shared connection (with its id), if there is one.
    #[inline]
    pub(crate) fn cached_connection(&self) -> Option<(u64, B::Conn)> {
        read(&self.conn).as_ref().map(|(id, _, c)| (*id, c.clone()))
    }

    /// Makes the shared connection (or waits for the caller making it).
    #[cold]
    pub(crate) async fn connect(&self, backend: &B) -> Result<(u64, B::Conn), RedisError> {
        // The bound covers the TCP connect, the handshake (HELLO/AUTH/SELECT, CLIENT SETINFO)
        // and the wait for the lock: a caller queued behind others' failed attempts must not
        // wait for each of them in turn, and a black-holed node cannot hold it.
        self.metrics.pending(self.waiting.fetch_add(1, Relaxed) + 1);
        let made = tokio::time::timeout(self.connect_bound, self.connect_in_turn(backend)).await;
        self.metrics.pending(self.waiting.fetch_sub(1, Relaxed) - 1);
        made.map_err(|_| {
            self.metrics.timeout();
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
        })?
    }

    async fn connect_in_turn(&self, backend: &B) -> Result<(u64, B::Conn), RedisError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some((id, _, c)) = read(&self.conn).as_ref() {
            return Ok((*id, c.clone()));
        }
        let id = NEXT_CONN_ID.fetch_add(1, Relaxed);
        let before = self.address_epoch();
        let started = Stamp::now();
        let made = backend.connect(&self.client, self.cut(id)).await?;
        self.metrics.created(started);
        // Made on the first lookup of the name: of the epoch that lookup started.
        let epoch = if before == 0 {
            self.address_epoch()
        } else {
            before
        };
        *write(&self.conn) = Some((id, epoch, made.clone()));
        self.metrics.connections(0, 1);
        tracing::debug!(target: "switchover::redis", node = %self.name, "connected");
        self.retire_at_age(id);
        Ok((id, made))
    }

    /// The epoch of the node's addresses now (0: no host name, or never resolved).
    fn address_epoch(&self) -> u64 {
        self.dns.as_ref().map_or(0, |d| d.epoch())
    }

    /// Forgets the shared connection `id` at its maximum age: commands already sent on it
    /// finish (the connection lives while they hold it), the next ones make a new one.
    fn retire_at_age(&self, id: u64) {
        let Some(age) = self.ages.draw() else { return };
        let me = self.me.clone();
        tokio::spawn(async move {
            tokio::time::sleep(age).await;
            if let Some(node) = me.upgrade() {
                let mut slot = write(&node.conn);
                if slot.as_ref().is_some_and(|(current, _, _)| *current == id) {
                    node.clear_slot(&mut slot);
                    drop(slot);
                    tracing::debug!(target: "switchover::redis", node = %node.name, ?age, "shared connection reached its maximum age: replaced");
                }
            }
        });
    }

    /// Discovery's `ROLE` answered on a control connection of address epoch `epoch`: the
    /// node is the one at those addresses from now on. When that retires an older epoch (the
    /// host name moved), the connections to the old addresses go: the shared one is forgotten
    /// (commands sent on it finish), the idle dedicated ones are closed and those handed out go
    /// stale.
    pub(crate) fn answered_at(&self, epoch: u64, backend: &B) {
        let Some(dns) = &self.dns else { return };
        if !dns.confirm(epoch) {
            return;
        }
        self.role_epoch.fetch_add(1, Relaxed);
        backend.reset(&self.client);
        let mut slot = write(&self.conn);
        if slot.as_ref().is_some_and(|(_, e, _)| dns.is_stale(*e)) {
            self.clear_slot(&mut slot);
        }
        drop(slot);
        tracing::info!(target: "switchover::redis", node = %self.name, "host name moved: connections to the old address retired");
    }

    /// Empties the shared connection's slot (held write-locked by the caller).
    fn clear_slot(&self, slot: &mut Option<(u64, u64, B::Conn)>) {
        *slot = None;
        self.metrics.connections(0, 0);
    }

    /// Sends `cmd` on the control connection (made first if there is none, within `connect`)
    /// and reads its reply within `reply`; a connection that fails is dropped, so the next call
    /// makes a new one. (A reply that times out leaves the connection: redis-rs drops the late
    /// reply.)
    ///
    /// Slow is not dead: when `reply` runs out but the node answered something meanwhile (a
    /// call through the pool, a late heartbeat), the reply gets one more `reply` (the caller's
    /// own bound still applies): a link that delays every reply must not fail discovery.
    pub(crate) async fn control(
        &self,
        backend: &B,
        bounds: (Duration, Duration),
        cmd: &redis::Cmd,
    ) -> Result<redis::Value, RedisError> {
        self.control_at(backend, bounds, cmd).await.0
    }

    /// As [`control`](Self::control), with the address epoch of the control connection that
    /// was asked. A control connection to an address the node's host name moved off, or past
    /// its maximum age, is replaced first.
    pub(crate) async fn control_at(
        &self,
        backend: &B,
        (connect, reply): (Duration, Duration),
        cmd: &redis::Cmd,
    ) -> (Result<redis::Value, RedisError>, u64) {
        let timed_out = || RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let now = self.address_epoch();
        let (epoch, mut conn) = {
            let mut slot = self.control.lock().await;
            match slot.as_ref() {
                Some((e, deadline, c)) if *e == now && !expired(*deadline) => (*e, c.clone()),
                _ => {
                    *slot = None;
                    let made = tokio::time::timeout(
                        connect,
                        backend.connect_control(&self.client, never()),
                    )
                    .await
                    .map_err(|_| timed_out());
                    let made = match made {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) | Err(e) => return (Err(e), now),
                    };
                    let epoch = if now == 0 { self.address_epoch() } else { now };
                    *slot = Some((epoch, self.ages.deadline(), made.clone()));
                    (epoch, made)
                }
            }
        };
        let mark = self.endpoint.heard_mark();
        let mut send = std::pin::pin!(B::send(&mut conn, cmd));
        let answer = match tokio::time::timeout(reply, send.as_mut()).await {
            Err(_) if self.endpoint.heard_since(mark) => tokio::time::timeout(reply, send).await,
            other => other,
        };
        let answer = match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                *self.control.lock().await = None;
                Err(e)
            }
            Err(_) => Err(timed_out()),
        };
        (answer, epoch)
    }

    /// When the shared connection `id` ends by itself: the node is declared down, or the
    /// primary moves off it while it has missed its heartbeat (a live node that was demoted
    /// keeps the connection: its answers, `READONLY` included, say what happened better than
    /// a cut). The connection is forgotten first, so that no new request is sent on it; then
    /// its task stops, and every request pending on it fails at once.
    fn cut(&self, id: u64) -> Cut {
        let me = self.me.clone();
        let down = self.down_cut();
        let moved = moved_off(self.router.clone(), self.endpoint.clone());
        Box::pin(async move {
            let why = tokio::select! {
                () = down => "declared down",
                () = moved => "the primary moved off it while it missed its heartbeat",
            };
            if let Some(node) = me.upgrade() {
                let mut slot = write(&node.conn);
                if slot.as_ref().is_some_and(|(current, _, _)| *current == id) {
                    node.clear_slot(&mut slot);
                }
                drop(slot);
                tracing::info!(target: "switchover::redis", node = %node.name, why, "ended the shared connection: what waited on it fails now");
            }
        })
    }

    /// Resolves when the node is next declared down (never when it is down already: a
    /// connection made to a node that is down is made to be used).
    pub(crate) fn down_cut(&self) -> Cut {
        match self.endpoint.state() {
            HealthState::Down => never(),
            _ => Box::pin(self.endpoint.down_signal()),
        }
    }

    /// Forgets the shared connection `id` (a newer one is kept).
    pub(crate) fn drop_connection(&self, id: u64) {
        let mut slot = write(&self.conn);
        if slot.as_ref().is_some_and(|(current, _, _)| *current == id) {
            self.clear_slot(&mut slot);
            tracing::debug!(target: "switchover::redis", node = %self.name, "dropped connection");
        }
    }

    /// After a change of role: drops the shared connection, closes the dedicated ones (through
    /// the backend) and makes those handed out stale.
    pub(crate) fn role_changed(&self, backend: &B) {
        self.role_epoch.fetch_add(1, Relaxed);
        self.clear_slot(&mut write(&self.conn));
        backend.reset(&self.client);
    }
}

/// Resolves when the router's active endpoint moves off `ep` while `ep` has missed its last
/// check (a heartbeat, a call) or is not available.
async fn moved_off(router: Router<NodeId>, ep: Endpoint<NodeId>) {
    loop {
        let active = router.active();
        let (was_active, seen) = (active.endpoint().ptr_eq(&ep), active.generation());
        router.generation_moved(seen).await;
        let now_active = router.active().endpoint().ptr_eq(&ep);
        let failing = ep.stats().consecutive_failures > 0 || !ep.is_available();
        if was_active && !now_active && failing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthTracker;
    use crate::redis::backend::RedisIo;
    use crate::redis::config::{Settings, Timeouts};

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
            timeouts: Timeouts::new()
                .connect(Duration::from_millis(100))
                .response(Duration::from_millis(200)),
            ..Settings::default()
        };
        let id = NodeId {
            index: 0,
            name: addr.to_string().into(),
        };
        let tracker = HealthTracker::builder().build().unwrap();
        let router = Router::builder(&tracker)
            .endpoint(id.clone(), 0)
            .build()
            .unwrap();
        let backend = Arc::new(RedisIo::new(&settings));
        let client = backend.client(&addr, None).unwrap();
        let node = Node::<RedisIo>::new(
            addr,
            client,
            tracker.endpoint(&id).unwrap(),
            router,
            settings.timeouts.exchange(),
            (None, settings.ages.clone()),
        );
        let bound = Duration::from_millis(300);
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let node = node.clone();
                let backend = backend.clone();
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let r = node.connect(&backend).await;
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

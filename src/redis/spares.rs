//! The pool of one node's dedicated connections: at most `size` handed out at once, idle ones
//! kept for reuse (checked with `UNWATCH` + `PING` before), all dropped when the node changes
//! role or its host name moved, none handed out past its maximum age. Each new one is opened (and logged in) by the caller's `open`, so it gets the
//! credentials of that moment.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::observe::{Borrow, PoolMetrics, Stamp};
use crate::resolve::AgeLimit;
use crate::resolve::age::expired;
use crate::sync::lock;
use tokio::time::Instant;

/// One node's dedicated connections.
#[derive(Debug)]
pub(crate) struct Spares {
    idle: Mutex<Vec<(u64, Option<Instant>, MultiplexedConnection)>>,
    permits: Arc<Semaphore>,
    /// Bumped by [`clear`](Self::clear): connections of an older epoch are not reused.
    epoch: AtomicU64,
    /// How long a caller waits for a free slot, and for the check of an idle connection.
    wait: Duration,
    /// The maximum age of a connection.
    ages: Arc<AgeLimit>,
    /// Connections handed out now.
    out: AtomicUsize,
    /// Callers waiting for a slot now.
    waiting: AtomicUsize,
    /// `db.client.connection.*` of this pool.
    metrics: PoolMetrics,
}

/// A connection handed out, with its slot; back to the idle list on drop unless
/// [`discard`](Lease::discard)ed.
pub(crate) struct Lease {
    conn: Option<MultiplexedConnection>,
    epoch: u64,
    /// Not handed out again past this (its maximum age).
    deadline: Option<Instant>,
    spares: Arc<Spares>,
    _slot: OwnedSemaphorePermit,
    _borrow: Borrow,
}

impl Spares {
    /// At most `size` handed out at once; `metrics` names the pool's instruments.
    pub(crate) fn new(
        size: usize,
        wait: Duration,
        ages: Arc<AgeLimit>,
        metrics: PoolMetrics,
    ) -> Arc<Self> {
        metrics.max(size);
        metrics.connections(0, 0);
        metrics.pending(0);
        Arc::new(Spares {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            epoch: AtomicU64::new(0),
            wait,
            ages,
            out: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            metrics,
        })
    }

    /// An idle connection that still answers, else a new one from `open`.
    pub(crate) async fn get<F, Fut>(self: &Arc<Self>, open: F) -> RedisResult<Lease>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RedisResult<MultiplexedConnection>>,
    {
        let asked = Stamp::now();
        let slot = self.slot().await?;
        let epoch = self.epoch.load(Relaxed);
        loop {
            let idle = self.pop_idle();
            let Some((e, deadline, mut conn)) = idle else {
                break;
            };
            if e == epoch && !expired(deadline) && self.still_good(&mut conn).await {
                return Ok(self.lease(conn, epoch, deadline, slot, asked));
            }
        }
        let started = Stamp::now();
        let conn = open().await?;
        self.metrics.created(started);
        Ok(self.lease(conn, epoch, self.ages.deadline(), slot, asked))
    }

    /// A free slot, within the wait (counted as pending meanwhile, as a timeout after it).
    async fn slot(self: &Arc<Self>) -> RedisResult<OwnedSemaphorePermit> {
        let pending = self.waiting.fetch_add(1, Relaxed) + 1;
        self.metrics.pending(pending);
        let got = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await;
        let pending = self.waiting.fetch_sub(1, Relaxed) - 1;
        self.metrics.pending(pending);
        match got {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::NotConnected,
            ))),
            Err(_) => {
                self.metrics.timeout();
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "every dedicated connection is in use (waited {:?})",
                        self.wait
                    ),
                )))
            }
        }
    }

    fn pop_idle(&self) -> Option<(u64, Option<Instant>, MultiplexedConnection)> {
        let mut idle = lock(&self.idle);
        let conn = idle.pop();
        self.metrics.connections(idle.len(), self.out.load(Relaxed));
        conn
    }

    fn lease(
        self: &Arc<Self>,
        conn: MultiplexedConnection,
        epoch: u64,
        deadline: Option<Instant>,
        slot: OwnedSemaphorePermit,
        asked: Stamp,
    ) -> Lease {
        let out = self.out.fetch_add(1, Relaxed) + 1;
        self.metrics.connections(lock(&self.idle).len(), out);
        Lease {
            conn: Some(conn),
            epoch,
            deadline,
            spares: Arc::clone(self),
            _slot: slot,
            _borrow: self.metrics.checked_out(asked),
        }
    }

    /// `UNWATCH` (a transaction left open) and `PING`, within the wait.
    async fn still_good(&self, conn: &mut MultiplexedConnection) -> bool {
        let mut check = redis::pipe();
        check.cmd("UNWATCH").ignore().cmd("PING");
        let answered = tokio::time::timeout(self.wait, check.query_async::<(String,)>(conn)).await;
        matches!(answered, Ok(Ok(_)))
    }

    /// Drops the idle connections; those handed out are not reused.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Relaxed);
        let mut idle = lock(&self.idle);
        idle.clear();
        self.metrics.connections(0, self.out.load(Relaxed));
    }
}

impl Lease {
    pub(crate) fn conn(&mut self) -> Option<&mut MultiplexedConnection> {
        self.conn.as_mut()
    }

    /// Closes the connection instead of reusing it.
    pub(crate) fn discard(&mut self) {
        self.conn = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let spares = &self.spares;
        let out = spares.out.fetch_sub(1, Relaxed) - 1;
        let mut idle = lock(&spares.idle);
        if let Some(conn) = self.conn.take()
            && self.epoch == spares.epoch.load(Relaxed)
            && !expired(self.deadline)
        {
            idle.push((self.epoch, self.deadline, conn));
        }
        spares.metrics.connections(idle.len(), out);
    }
}

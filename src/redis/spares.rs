//! The pool of one node's dedicated connections: at most `size` handed out at once, idle ones
//! kept for reuse (checked with `UNWATCH` + `PING` before), all dropped when the node changes
//! role or its host name moved, none handed out past its maximum age. Each new one is opened (and logged in) by the caller's `open`, so it gets the
//! credentials of that moment.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
}

impl Spares {
    pub(crate) fn new(size: usize, wait: Duration, ages: Arc<AgeLimit>) -> Arc<Self> {
        Arc::new(Spares {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
            epoch: AtomicU64::new(0),
            wait,
            ages,
        })
    }

    /// An idle connection that still answers, else a new one from `open`.
    pub(crate) async fn get<F, Fut>(self: &Arc<Self>, open: F) -> RedisResult<Lease>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = RedisResult<MultiplexedConnection>>,
    {
        let slot = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "every dedicated connection is in use (waited {:?})",
                        self.wait
                    ),
                ))
            })?
            .map_err(|_| {
                RedisError::from(std::io::Error::from(std::io::ErrorKind::NotConnected))
            })?;
        let epoch = self.epoch.load(Relaxed);
        loop {
            let idle = lock(&self.idle).pop();
            let Some((e, deadline, mut conn)) = idle else {
                break;
            };
            if e == epoch && !expired(deadline) && self.still_good(&mut conn).await {
                return Ok(self.lease(conn, epoch, deadline, slot));
            }
        }
        let conn = open().await?;
        Ok(self.lease(conn, epoch, self.ages.deadline(), slot))
    }

    fn lease(
        self: &Arc<Self>,
        conn: MultiplexedConnection,
        epoch: u64,
        deadline: Option<Instant>,
        slot: OwnedSemaphorePermit,
    ) -> Lease {
        Lease {
            conn: Some(conn),
            epoch,
            deadline,
            spares: Arc::clone(self),
            _slot: slot,
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
        lock(&self.idle).clear();
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
        if let Some(conn) = self.conn.take()
            && self.epoch == self.spares.epoch.load(Relaxed)
            && !expired(self.deadline)
        {
            lock(&self.spares.idle).push((self.epoch, self.deadline, conn));
        }
    }
}

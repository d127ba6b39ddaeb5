//! The one connection per host that the heartbeat, the health tracker's probes and
//! re-discovery ask the server's role on: made on first use, replaced once it breaks, never a
//! new connection per beat.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;

use super::conn::PgConnection;
use super::error::Error;

/// One slot per host, each holding that host's kept connection while it is open.
#[derive(Debug)]
pub(crate) struct Kept {
    slots: Vec<Mutex<Option<Arc<PgConnection>>>>,
    /// The pool was closed: no more connections.
    closed: AtomicBool,
}

impl Kept {
    pub(crate) fn new(hosts: usize) -> Self {
        Kept {
            slots: (0..hosts).map(|_| Mutex::new(None)).collect(),
            closed: AtomicBool::new(false),
        }
    }

    /// Host `host`'s kept connection: the open one, or a new one from `connect` (one connect at
    /// a time per host; a caller that arrives meanwhile waits for it and shares it). The caller
    /// bounds the time.
    pub(crate) async fn get<F, Fut>(
        &self,
        host: usize,
        connect: F,
    ) -> Result<Arc<PgConnection>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<PgConnection, Error>>,
    {
        let mut slot = self.slots[host].lock().await;
        if self.closed.load(Ordering::Acquire) {
            *slot = None;
            return Err(Error::closed());
        }
        if let Some(conn) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = Arc::new(connect().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// `true` when host `host` has an open kept connection (`false` while one is being made).
    pub(crate) fn is_open(&self, host: usize) -> bool {
        self.slots[host]
            .try_lock()
            .is_ok_and(|slot| slot.as_ref().is_some_and(|c| !c.is_closed()))
    }

    /// Forgets host `host`'s connection if it is still `conn` (it failed a query): the next
    /// [`get`](Self::get) connects again.
    pub(crate) fn discard(&self, host: usize, conn: &Arc<PgConnection>) {
        if let Ok(mut slot) = self.slots[host].try_lock()
            && slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn))
        {
            *slot = None;
        }
    }

    /// `true` once [`close`](Self::close)d.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Drops every kept connection and makes no more (the pool was closed).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in &self.slots {
            if let Ok(mut slot) = slot.try_lock() {
                *slot = None;
            }
        }
    }
}

//! Read-your-writes sessions: a handle whose reads go to the primary for a while after each of
//! its writes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Read-your-writes state of one session handle.
#[derive(Debug)]
pub(crate) struct Session {
    window: Duration,
    started: Instant,
    /// Nanoseconds after `started` of the last write, plus one (0: none yet).
    last_write: AtomicU64,
}

impl Session {
    pub(crate) fn new(window: Duration) -> Self {
        Session {
            window,
            started: Instant::now(),
            last_write: AtomicU64::new(0),
        }
    }

    /// Opens (or extends) the window: a write through this session succeeded.
    pub(crate) fn mark_write(&self) {
        let n = nanos(Instant::now().saturating_duration_since(self.started));
        self.last_write.store(n.saturating_add(1), Relaxed);
    }

    /// `true` while the window after the last write is open: reads go to the primary.
    pub(crate) fn in_window(&self) -> bool {
        let last = self.last_write.load(Relaxed);
        if last == 0 {
            return false;
        }
        let now = nanos(Instant::now().saturating_duration_since(self.started));
        // A window beyond u64 nanoseconds (585 years) is "forever", not truncated to a few.
        now.saturating_sub(last - 1) < nanos(self.window)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_read_your_writes_window_is_not_truncated() {
        // 2^55 s is 2^64 * 5^9 ns: truncated to u64 it would be a window of 0.
        for window in [Duration::MAX, Duration::from_secs(1 << 55)] {
            let s = Session::new(window);
            assert!(!s.in_window(), "no write yet");
            s.mark_write();
            assert!(
                s.in_window(),
                "{window:?}: reads after a write go to the primary"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_closes_exactly_after_the_last_write() {
        let s = Session::new(Duration::from_millis(300));
        s.mark_write();
        tokio::time::sleep(Duration::from_millis(299)).await;
        assert!(s.in_window());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!s.in_window());
    }
}

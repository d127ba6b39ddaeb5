//! Futures that wait for a counter to move: an endpoint declared down ([`DownSignal`]), a
//! router's generation ([`GenerationMoved`](crate::route::GenerationMoved)).
//!
//! A [`Signal`] is a `u64` and the wakers of the futures waiting for it to change. Changing it
//! is rare (a transition, a switch) and wakes every waiter; waiting costs nothing until the
//! future is polled and not ready (then one short lock to register, and one when it is
//! dropped). The futures own an `Arc` of the signal, so they are `'static`, `Send` and `Unpin`:
//! an adapter can keep one beside a connection or `select!` on it in a spawned task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::sync::lock;

/// A counter and the wakers of the futures that wait for it to change.
#[derive(Default)]
pub(crate) struct Signal {
    value: AtomicU64,
    waiters: Mutex<Waiters>,
}

/// The registered wakers. A slot belongs to one [`Wait`] from its first registration until it
/// is dropped; waking empties the slots but keeps them owned, so a slot is never reused while
/// its owner lives.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("value", &self.get())
            .finish_non_exhaustive()
    }
}

impl Signal {
    /// The value (one atomic load).
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Acquire)
    }

    /// Adds one to the value and wakes every waiter; returns the new value.
    pub(crate) fn bump(&self) -> u64 {
        let n = self.value.fetch_add(1, AcqRel).wrapping_add(1);
        self.wake_all();
        n
    }

    /// Stores `value` and wakes every waiter.
    pub(crate) fn set(&self, value: u64) {
        self.value.store(value, Release);
        self.wake_all();
    }

    fn wake_all(&self) {
        // Taken under the lock (a waiter that registers after it sees the new value), woken
        // outside it.
        let woken: Vec<Waker> = {
            let mut w = lock(&self.waiters);
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in woken {
            waker.wake();
        }
    }
}

/// Waits for a [`Signal`] to hold something other than `seen`; resolves with that value.
pub(crate) struct Wait {
    signal: Arc<Signal>,
    seen: u64,
    slot: Option<usize>,
}

impl Wait {
    /// Waits for `signal` to move away from `seen`.
    pub(crate) fn new(signal: Arc<Signal>, seen: u64) -> Self {
        Wait {
            signal,
            seen,
            slot: None,
        }
    }

    /// `Ready` with the signal's value once it differs from `seen`; else registers `cx`'s
    /// waker.
    pub(crate) fn poll_moved(&mut self, cx: &mut Context<'_>) -> Poll<u64> {
        let v = self.signal.get();
        if v != self.seen {
            return Poll::Ready(v);
        }
        let mut w = lock(&self.signal.waiters);
        // Checked again under the lock: a change after this point wakes the waker stored now.
        let v = self.signal.get();
        if v != self.seen {
            return Poll::Ready(v);
        }
        let i = match self.slot {
            Some(i) => i,
            None => {
                let i = match w.free.pop() {
                    Some(i) => i,
                    None => {
                        w.slots.push(None);
                        w.slots.len() - 1
                    }
                };
                self.slot = Some(i);
                i
            }
        };
        match &mut w.slots[i] {
            Some(old) if old.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut w = lock(&self.signal.waiters);
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("seen", &self.seen)
            .field("now", &self.signal.get())
            .finish()
    }
}

/// A future that resolves once its endpoint is declared [`Down`](super::HealthState::Down)
/// after the future was made (see [`Endpoint::down_signal`](super::Endpoint::down_signal)), at
/// once if the endpoint was down already.
///
/// `'static`, `Send` and `Unpin`: keep it beside a connection, or `select!` on it with the
/// call it guards. It costs an `Arc` clone to make; polled and not ready, it registers its
/// waker once (a short lock), and unregisters when dropped.
#[must_use = "futures do nothing unless polled"]
pub struct DownSignal {
    wait: Wait,
    ready: bool,
}

impl DownSignal {
    /// Resolves when `downs` moves from `seen`, or at once when `ready`.
    pub(super) fn new(downs: Arc<Signal>, seen: u64, ready: bool) -> Self {
        DownSignal {
            wait: Wait::new(downs, seen),
            ready,
        }
    }
}

impl Future for DownSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.ready {
            return Poll::Ready(());
        }
        match this.wait.poll_moved(cx) {
            Poll::Ready(_) => {
                this.ready = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for DownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownSignal")
            .field(
                "down",
                &(self.ready || self.wait.signal.get() != self.wait.seen),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    impl Signal {
        fn new(value: u64) -> Self {
            Signal {
                value: AtomicU64::new(value),
                waiters: Mutex::default(),
            }
        }
    }

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    #[test]
    fn a_wait_is_woken_once_by_a_change_and_resolves_with_the_value() {
        let s = Arc::new(Signal::new(5));
        let mut w = Wait::new(Arc::clone(&s), 5);
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(w.poll_moved(&mut cx), Poll::Pending);
        // Polled again with the same waker: still one registration.
        assert_eq!(w.poll_moved(&mut cx), Poll::Pending);
        assert_eq!(lock(&s.waiters).slots.len(), 1);
        assert_eq!(s.bump(), 6);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(w.poll_moved(&mut cx), Poll::Ready(6));
        s.set(9);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a waker is woken once");
    }

    #[test]
    fn a_moved_signal_is_ready_without_registering() {
        let s = Arc::new(Signal::new(2));
        let mut w = Wait::new(Arc::clone(&s), 1);
        let (_, waker) = waker();
        assert_eq!(
            w.poll_moved(&mut Context::from_waker(&waker)),
            Poll::Ready(2)
        );
        assert!(lock(&s.waiters).slots.is_empty());
    }

    #[test]
    fn dropped_waits_free_their_slots_for_reuse() {
        let s = Arc::new(Signal::new(0));
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            let mut a = Wait::new(Arc::clone(&s), 0);
            let mut b = Wait::new(Arc::clone(&s), 0);
            assert!(a.poll_moved(&mut cx).is_pending());
            assert!(b.poll_moved(&mut cx).is_pending());
        }
        let w = lock(&s.waiters);
        assert_eq!(w.slots.len(), 2, "slots are reused");
        assert!(w.slots.iter().all(Option::is_none));
        assert_eq!(w.free.len(), 2);
    }

    #[test]
    fn a_woken_slot_stays_with_its_owner() {
        let s = Arc::new(Signal::new(0));
        let (_, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut a = Wait::new(Arc::clone(&s), 0);
        assert!(a.poll_moved(&mut cx).is_pending());
        s.set(1);
        // `a`'s slot is empty but not free: a new waiter gets another one.
        let mut b = Wait::new(Arc::clone(&s), 1);
        assert!(b.poll_moved(&mut cx).is_pending());
        assert_eq!(lock(&s.waiters).slots.len(), 2);
        drop(a);
        assert!(
            lock(&s.waiters).slots[1].is_some(),
            "b's waker survives a's drop"
        );
    }

    #[test]
    fn down_signal_is_static_send_unpin() {
        fn check<T: Future<Output = ()> + Send + Unpin + 'static>(_: &T) {}
        let sig = DownSignal::new(Arc::new(Signal::new(0)), 0, false);
        check(&sig);
    }
}

//! [`GenerationMoved`]: a future that resolves when the router's generation changes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::router::Router;
use crate::health::{EndpointId, Wait};

/// A future that resolves with the router's new generation once it differs from the one the
/// caller saw (see [`Router::generation_moved`]), at once if it differs already.
///
/// `'static`, `Send` and `Unpin`: keep it beside a connection made under a generation, or
/// `select!` on it with the call it guards. It costs an `Arc` clone to make; polled and not
/// ready, it registers its waker once (a short lock), and unregisters when dropped.
#[must_use = "futures do nothing unless polled"]
pub struct GenerationMoved {
    wait: Wait,
    now: Option<u64>,
}

impl Future for GenerationMoved {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let this = self.get_mut();
        if let Some(g) = this.now {
            return Poll::Ready(g);
        }
        let moved = this.wait.poll_moved(cx);
        if let Poll::Ready(g) = moved {
            this.now = Some(g);
        }
        moved
    }
}

impl fmt::Debug for GenerationMoved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerationMoved")
            .field("wait", &self.wait)
            .field("moved_to", &self.now)
            .finish()
    }
}

impl<K: EndpointId> Router<K> {
    /// A future that resolves with the new generation once [`generation`](Self::generation)
    /// differs from `seen` (at once if it differs already): what an adapter `select!`s on to
    /// fail the calls in flight on a connection made under generation `seen` when the primary
    /// changes.
    ///
    /// The generation moves when the router switches, which happens when it re-evaluates (on
    /// [`active`](Self::active), [`read_target`](Self::read_target), the operation runner,
    /// [`switch_to`](Self::switch_to), a [`Rediscovery`](super::Rediscovery) run): the future
    /// wakes with that switch, not before.
    ///
    /// ```
    /// use switchover::health::HealthTracker;
    /// use switchover::route::Router;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tracker = HealthTracker::new(["a", "b"]);
    /// let router = Router::builder(&tracker).endpoints(["a", "b"]).build()?;
    /// let moved = router.generation_moved(router.generation());
    /// router.switch_to(&"b")?;
    /// assert_eq!(moved.await, 1);
    /// # Ok(()) }
    /// ```
    pub fn generation_moved(&self, seen: u64) -> GenerationMoved {
        let now = self.generation();
        GenerationMoved {
            wait: Wait::new(Arc::clone(self.moved_signal()), seen),
            now: (now != seen).then_some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_moved_is_static_send_unpin() {
        fn check<T: Future<Output = u64> + Send + Unpin + 'static>(_: &T) {}
        let t = crate::health::HealthTracker::new(["a"]);
        let r = Router::builder(&t).endpoints(["a"]).build().unwrap();
        check(&r.generation_moved(0));
    }
}

//! A first-try success through the `tower` layer allocates nothing: `poll_ready`, `call` and
//! the one poll of its future are counted by a global allocator (per thread, so the runtime's
//! other threads do not count), and a failed first attempt, which starts the retries in one
//! allocation, shows that the counter sees the layer's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use switchover::retry::{RetryBudget, RetryPolicy};
use switchover::tower::RetryLayer;
use tower::{Layer, Service};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a const-initialised
// thread local, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

type Answer = fn(u64) -> Ready<io::Result<u64>>;

fn succeed(x: u64) -> Ready<io::Result<u64>> {
    ready(Ok(x + 1))
}

fn refuse(_: u64) -> Ready<io::Result<u64>> {
    ready(Err(io::ErrorKind::ConnectionRefused.into()))
}

/// What a call's future gave after one poll: its output if it was ready.
type Polled<S> = Option<Result<<S as Service<u64>>::Response, <S as Service<u64>>::Error>>;

/// Readies `svc`, calls it and polls the future once with a no-op waker, then drops it; returns
/// the output (if ready) and the allocations made meanwhile.
fn one_call<S: Service<u64>>(svc: &mut S, x: u64) -> (Polled<S>, u64) {
    let mut cx = Context::from_waker(Waker::noop());
    let before = allocations();
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let out = {
        let mut fut = pin!(svc.call(x));
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => Some(out),
            Poll::Pending => None,
        }
    };
    (out, allocations() - before)
}

#[tokio::test(flavor = "current_thread")]
async fn a_first_try_success_allocates_nothing() {
    let limited = RetryPolicy::builder()
        .max_attempts(3)
        .deadline(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let layers = [
        ("default policy", RetryLayer::new(RetryPolicy::default())),
        (
            "with a budget",
            RetryLayer::new(RetryPolicy::default()).budget(RetryBudget::new()),
        ),
        ("deadline and attempt timeout", RetryLayer::new(limited)),
        ("one attempt", RetryLayer::new(RetryPolicy::no_retry())),
    ];
    for (name, layer) in layers {
        let mut svc = layer.layer(tower::service_fn(succeed as Answer));
        // The first call of a thread may set up thread locals (the clock, tracing).
        one_call(&mut svc, 0);
        for x in 1..=3 {
            let (out, allocated) = one_call(&mut svc, x);
            assert_eq!(out.unwrap().unwrap(), x + 1, "{name}");
            assert_eq!(allocated, 0, "{name}: allocations in a first-try success");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_first_attempt_starts_the_retries_in_one_allocation() {
    let policy = RetryPolicy::builder().max_attempts(2).build().unwrap();
    let mut svc = RetryLayer::new(policy).layer(tower::service_fn(refuse as Answer));
    one_call(&mut svc, 0);
    // Refused (surely not executed): the retries start, and wait for their backoff.
    let (out, allocated) = one_call(&mut svc, 1);
    assert!(out.is_none(), "the retry waits for its backoff");
    assert!(allocated >= 1, "the retries allocate ({allocated})");
}

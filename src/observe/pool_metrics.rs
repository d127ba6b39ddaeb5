//! [`PoolMetrics`]: a pool's OpenTelemetry `db.client.connection.*` instruments, and the
//! crate's helpers that time a checkout ([`Stamp`], [`Borrow`]) without reading the clock when
//! the `metrics` feature is off.

use std::time::Duration;

#[cfg(feature = "metrics")]
use tokio::time::Instant;

/// A pool's OpenTelemetry connection instruments (`db.client.connection.*`, label
/// `db.client.connection.pool.name`), for adapters and users' own pools. Register once (a
/// pool keeps it), then report from the pool's hooks. Cloning shares the handles. Without the
/// `metrics` feature it is empty and every method a no-op.
///
/// ```
/// use std::time::Duration;
/// use switchover::observe::PoolMetrics;
///
/// let m = PoolMetrics::new("redis 127.0.0.1:6379");
/// m.max(16);
/// m.connections(3, 1); // idle, used
/// m.pending(0);
/// m.wait_time(Duration::from_micros(40));
/// m.use_time(Duration::from_micros(300));
/// ```
#[derive(Clone)]
pub struct PoolMetrics {
    #[cfg(feature = "metrics")]
    inner: on::Handles,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMetrics").finish_non_exhaustive()
    }
}

#[cfg(feature = "metrics")]
mod on {
    use metrics::{Counter, Gauge, Histogram};

    use crate::observe::names;

    #[derive(Clone)]
    pub(super) struct Handles {
        pub(super) idle: Gauge,
        pub(super) used: Gauge,
        pub(super) max: Gauge,
        pub(super) pending: Gauge,
        pub(super) timeouts: Counter,
        pub(super) create: Histogram,
        pub(super) wait: Histogram,
        pub(super) used_for: Histogram,
    }

    impl Handles {
        pub(super) fn new(pool: &str) -> Self {
            crate::observe::metrics::describe();
            const POOL: &str = "db.client.connection.pool.name";
            const STATE: &str = "db.client.connection.state";
            let p = || pool.to_owned();
            Handles {
                idle: metrics::gauge!(names::POOL_COUNT, POOL => p(), STATE => "idle"),
                used: metrics::gauge!(names::POOL_COUNT, POOL => p(), STATE => "used"),
                max: metrics::gauge!(names::POOL_MAX, POOL => p()),
                pending: metrics::gauge!(names::POOL_PENDING, POOL => p()),
                timeouts: metrics::counter!(names::POOL_TIMEOUTS, POOL => p()),
                create: metrics::histogram!(names::POOL_CREATE_TIME, POOL => p()),
                wait: metrics::histogram!(names::POOL_WAIT_TIME, POOL => p()),
                used_for: metrics::histogram!(names::POOL_USE_TIME, POOL => p()),
            }
        }
    }
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl PoolMetrics {
    /// The instruments of the pool named `pool` (a `host:port`, a region, a pool name: bounded,
    /// never a credential).
    pub fn new(pool: &str) -> Self {
        PoolMetrics {
            #[cfg(feature = "metrics")]
            inner: on::Handles::new(pool),
        }
    }

    /// As [`new`](Self::new), with the name made only when the feature is on.
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn named(pool: impl FnOnce() -> String) -> Self {
        PoolMetrics {
            #[cfg(feature = "metrics")]
            inner: on::Handles::new(&pool()),
        }
    }

    /// Connections now idle and in use.
    #[inline]
    pub fn connections(&self, idle: usize, used: usize) {
        #[cfg(feature = "metrics")]
        {
            self.inner.idle.set(idle as f64);
            self.inner.used.set(used as f64);
        }
    }

    /// The pool's maximum size.
    #[inline]
    pub fn max(&self, max: usize) {
        #[cfg(feature = "metrics")]
        self.inner.max.set(max as f64);
    }

    /// Requests waiting for a connection now.
    #[inline]
    pub fn pending(&self, waiting: usize) {
        #[cfg(feature = "metrics")]
        self.inner.pending.set(waiting as f64);
    }

    /// A wait for a connection timed out.
    #[inline]
    pub fn timeout(&self) {
        #[cfg(feature = "metrics")]
        self.inner.timeouts.increment(1);
    }

    /// A connection took `d` to create.
    #[inline]
    pub fn create_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        self.inner.create.record(d.as_secs_f64());
    }

    /// Obtaining a connection took `d`.
    #[inline]
    pub fn wait_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        self.inner.wait.record(d.as_secs_f64());
    }

    /// A connection was borrowed for `d`.
    #[inline]
    pub fn use_time(&self, d: Duration) {
        #[cfg(feature = "metrics")]
        self.inner.used_for.record(d.as_secs_f64());
    }

    /// For a pool of your own: a connection asked for at `asked` was obtained now. Records
    /// the wait, and the use when the returned [`Borrow`] drops (keep it with the connection).
    #[must_use = "the use is recorded when the Borrow drops"]
    #[inline]
    pub fn borrow(&self, asked: tokio::time::Instant) -> Borrow {
        self.checked_out(Stamp::at(asked))
    }

    /// A connection was created, starting at `started`.
    #[inline]
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn created(&self, started: Stamp) {
        #[cfg(feature = "metrics")]
        self.create_time(started.0.elapsed());
    }

    /// A connection was obtained, asked for at `asked`: records the wait and starts timing its
    /// use, recorded when the returned [`Borrow`] drops.
    #[inline]
    pub(crate) fn checked_out(&self, asked: Stamp) -> Borrow {
        #[cfg(feature = "metrics")]
        {
            let now = Instant::now();
            self.wait_time(now.saturating_duration_since(asked.0));
            Borrow {
                since: now,
                use_time: self.inner.used_for.clone(),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Borrow {}
    }
}

/// A clock reading, taken only with the `metrics` feature (empty without).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp(#[cfg(feature = "metrics")] Instant);

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Stamp {
    /// Now.
    #[inline]
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn now() -> Self {
        Stamp(
            #[cfg(feature = "metrics")]
            Instant::now(),
        )
    }

    /// An instant the caller read already.
    #[inline]
    pub(crate) fn at(at: tokio::time::Instant) -> Self {
        Stamp(
            #[cfg(feature = "metrics")]
            at,
        )
    }
}

/// A connection being borrowed, from [`PoolMetrics::borrow`]: records
/// `db.client.connection.use_time` when dropped (the connection went back to its pool, or was
/// discarded). Empty without the `metrics` feature.
pub struct Borrow {
    #[cfg(feature = "metrics")]
    since: Instant,
    #[cfg(feature = "metrics")]
    use_time: metrics::Histogram,
}

#[cfg(feature = "metrics")]
impl Drop for Borrow {
    fn drop(&mut self) {
        self.use_time.record(self.since.elapsed().as_secs_f64());
    }
}

impl std::fmt::Debug for Borrow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Borrow").finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tokio::time::sleep;

    use super::{PoolMetrics, Stamp};

    /// (name, state label, value) of every series of the pool `pool`.
    fn series(
        snap: &metrics_util::debugging::Snapshotter,
        pool: &str,
    ) -> Vec<(String, String, DebugValue)> {
        let mut v: Vec<_> = snap
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| {
                k.key()
                    .labels()
                    .any(|l| l.key() == "db.client.connection.pool.name" && l.value() == pool)
            })
            .map(|(k, _, _, v)| {
                let state = k
                    .key()
                    .labels()
                    .find(|l| l.key() == "db.client.connection.state")
                    .map_or(String::new(), |l| l.value().to_owned());
                (k.key().name().to_owned(), state, v)
            })
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    fn hist(xs: &[f64]) -> DebugValue {
        DebugValue::Histogram(xs.iter().map(|x| (*x).into()).collect())
    }

    /// A checkout records its wait from the stamp, and its use when the borrow drops; a
    /// creation its time from its stamp; every series under the pool's name.
    #[tokio::test(start_paused = true)]
    async fn a_checkout_times_its_wait_and_its_use_exactly() {
        let recorder = DebuggingRecorder::new();
        let snap = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let m = PoolMetrics::named(|| "p:main".to_owned());
        m.max(4);
        let asked = Stamp::now();
        let made = Stamp::now();
        sleep(Duration::from_millis(3)).await;
        m.created(made);
        let borrow = m.checked_out(asked);
        m.connections(0, 1);
        m.pending(0);
        sleep(Duration::from_millis(7)).await;
        drop(borrow);
        m.timeout();
        let (s, g) = (
            |n: &str| format!("db.client.connection.{n}"),
            DebugValue::Gauge,
        );
        assert_eq!(
            series(&snap, "p:main"),
            vec![
                (s("count"), "idle".into(), g(0.0.into())),
                (s("count"), "used".into(), g(1.0.into())),
                (s("create_time"), String::new(), hist(&[0.003])),
                (s("max"), String::new(), g(4.0.into())),
                (s("pending_requests"), String::new(), g(0.0.into())),
                (s("timeouts"), String::new(), DebugValue::Counter(1)),
                (s("use_time"), String::new(), hist(&[0.007])),
                (s("wait_time"), String::new(), hist(&[0.003])),
            ]
        );
    }
}

/// Without the feature nothing is left: no field, no clock read, no drop glue.
#[cfg(all(test, not(feature = "metrics")))]
mod off_tests {
    use std::mem::{needs_drop, size_of};

    use super::{Borrow, PoolMetrics, Stamp};

    #[test]
    fn the_instruments_are_empty_without_the_feature() {
        assert_eq!(
            (
                size_of::<PoolMetrics>(),
                size_of::<Stamp>(),
                size_of::<Borrow>()
            ),
            (0, 0, 0)
        );
        assert!(!needs_drop::<Borrow>() && !needs_drop::<PoolMetrics>());
    }
}

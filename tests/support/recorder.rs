//! The process-wide `metrics` debugging recorder of a test binary, and lookups in its
//! snapshots (shared by the adapters' observability tests).

#![allow(dead_code)]

use std::sync::OnceLock;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// The recorder, installed once before any router of this binary is built (metric handles are
/// registered when the router, or the pool, is).
pub fn recorder() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        snapshotter
    })
}

/// One snapshot of the recorder (taking one resets its counters).
pub type Metrics = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The values of the series `name` whose labels include every `(key, value)`.
pub fn series<'a>(
    metrics: &'a Metrics,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a DebugValue> + 'a {
    metrics
        .iter()
        .filter(move |(key, ..)| key.key().name() == name)
        .filter(move |(key, ..)| {
            labels
                .iter()
                .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| value)
}

/// The sum of the counter `name` over the series whose labels include every `(key, value)`.
pub fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    series(metrics, name, labels)
        .map(|v| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

/// The gauge `name` of the series whose labels include every `(key, value)`.
pub fn gauge(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(metrics, name, labels).find_map(|v| match v {
        DebugValue::Gauge(g) => Some(g.into_inner()),
        _ => None,
    })
}

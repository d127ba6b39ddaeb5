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

/// One snapshot of a recorder as (name, labels, value) (taking it drains the recorder: use a
/// recorder of the test's own, see `metrics::set_default_local_recorder`).
pub type Samples = Vec<(String, Vec<(String, String)>, DebugValue)>;

/// Takes one snapshot of `snap`'s recorder.
pub fn take(snap: &Snapshotter) -> Samples {
    snap.snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| {
            let key = k.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.name().to_owned(), labels, v)
        })
        .collect()
}

/// The values of the samples of `name` whose labels include every `(key, value)`.
pub fn matching<'a>(
    s: &'a Samples,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a DebugValue> + 'a {
    s.iter()
        .filter(move |(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(.., v)| v)
}

/// The samples of a histogram.
pub fn hist(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    matching(s, name, labels)
        .flat_map(|v| match v {
            DebugValue::Histogram(h) => h.iter().map(|x| x.0).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The value of a gauge or a counter.
pub fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(s, name, labels).find_map(|v| match v {
        DebugValue::Gauge(g) => Some(g.into_inner()),
        DebugValue::Counter(c) => Some(*c as f64),
        DebugValue::Histogram(_) => None,
    })
}

/// Asserts that each of `endpoints` beat up at the default heartbeat rate (every 200 ms, each
/// beat 160-200 ms after the last) in `s`, a snapshot covering `window` seconds, each beat
/// within the default 300 ms heartbeat timeout; prints the counts.
pub fn assert_heartbeat_rate(s: &Samples, router: &str, endpoints: &[&str], window: f64) {
    let (least, most) = ((window / 0.2).floor() - 2.0, (window / 0.16).ceil() + 1.0);
    for ep in endpoints {
        let labels = [("router", router), ("endpoint", *ep), ("outcome", "up")];
        let up = hist(s, "switchover.heartbeat.duration", &labels);
        println!(
            "heartbeats of {ep} in {window:.3} s: {} (expected {least}..={most}), durations {up:?}",
            up.len()
        );
        assert!(
            (least..=most).contains(&(up.len() as f64)),
            "{ep}: {} beats in {window:.3} s",
            up.len()
        );
        assert!(up.iter().all(|t| *t > 0.0 && *t < 0.3), "{ep}: {up:?}");
    }
}

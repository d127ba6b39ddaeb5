//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): the
//! runner's attempts, switches, failovers, endpoint states, rediscovery and probes under
//! `switchover.*`, and the OpenTelemetry `db.client.connection.*` instruments of a pool
//! ([`PoolMetrics`](crate::observe::PoolMetrics)). Without the feature every type here is empty and every call a no-op.
//!
//! Handles are registered when the router (or pool) is built, so install the recorder first.

use crate::route::SwitchReason;

/// Every metric this crate emits: (name, kind, unit, labels, what).
///
/// | name | kind | unit | labels | what |
/// |---|---|---|---|---|
/// | `switchover.attempts` | counter | `{attempt}` | router, outcome | attempts of routed calls by outcome: success, transient, throttled, permanent, timeout |
/// | `switchover.budget.exhausted` | counter | `{call}` | router | calls stopped because the retry budget could not pay for a retry |
/// | `switchover.switches` | counter | `{switch}` | router, from, to, reason | switches of the active endpoint |
/// | `switchover.generation` | gauge | `1` | router | the router's generation (switches so far) |
/// | `switchover.failover.duration` | histogram | `s` | router, reason | failover duration: first failed call to first success on the new endpoint (the timeline's phases) |
/// | `switchover.endpoint.state` | gauge | `1` | router, endpoint, state | 1 for the endpoint's current state (up, probing, down, draining), 0 for the others |
/// | `switchover.probe.latency` | histogram | `s` | router, endpoint | latency a probe result reports (heartbeats, probes of down endpoints, rediscovery's role checks) |
/// | `switchover.heartbeat.duration` | histogram | `s` | router, endpoint, outcome | each heartbeat of the tracker's probe task, start to verdict, by outcome: up, down, timeout, slow (no answer in time while the endpoint answered calls: counts nothing) |
/// | `switchover.rediscovery.runs` | counter | `{run}` | router, outcome | rediscovery runs by outcome: primary, no_primary |
/// | `switchover.rediscovery.duration` | histogram | `s` | router | duration of rediscovery runs |
/// | `switchover.writable_primaries` | counter | `{detection}` | router | sets of endpoints found writable at once (a split brain), once per set until one of them is seen as something else (the timeline's `writable_primaries` event) |
/// | `switchover.retry.budget.tokens` | gauge | `{token}` | budget | tokens in a retry budget |
/// | `db.client.connection.count` | gauge | `{connection}` | db.client.connection.pool.name, db.client.connection.state | connections by state: idle, used |
/// | `db.client.connection.max` | gauge | `{connection}` | db.client.connection.pool.name | the pool's maximum size |
/// | `db.client.connection.pending_requests` | gauge | `{request}` | db.client.connection.pool.name | requests waiting for a connection |
/// | `db.client.connection.timeouts` | counter | `{timeout}` | db.client.connection.pool.name | waits for a connection that timed out |
/// | `db.client.connection.create_time` | histogram | `s` | db.client.connection.pool.name | time to create a connection |
/// | `db.client.connection.wait_time` | histogram | `s` | db.client.connection.pool.name | time to obtain a connection from the pool |
/// | `db.client.connection.use_time` | histogram | `s` | db.client.connection.pool.name | time between borrowing a connection and returning it |
///
/// Label values: `router` is the [`Observe`](crate::observe::Observe) name, `endpoint` an
/// endpoint id (`host:port`, a region), `budget` the budget's name; never a credential, a key
/// or query text.
///
/// What each adapter's pools report (`{name}` is the adapter's `observe` name):
///
/// | pool (`db.client.connection.pool.name`) | count, max, pending | timeouts | create_time | wait_time | use_time |
/// |---|---|---|---|---|---|
/// | Postgres `{name}:main` (`get`, `run`, `transaction`) and `{name}:read` (`get_read`) | sampled from deadpool every second | a checkout that waited for a free slot until its deadline | each connection made | each checkout (one attempt of the runner): from its start to the connection in hand, a new connection's creation included | checkout to drop (back to the pool, discarded, or taken out with `PooledConnection::take`) |
/// | Redis `{name}:shared:{host:port}`: the node's one multiplexed connection | used 1 while it is held, idle 0; max 1; pending: callers waiting for it to be (re)made | a (re)connect not done within the connect bound | each shared connection made | not reported: commands share it, nothing is checked out | not reported |
/// | Redis `{name}:dedicated:{host:port}`: the node's dedicated connections (`SplitPool::dedicated`) | idle kept and handed out, on every change; max: the dedicated pool size; pending: callers waiting for a slot | a wait for a slot past its limit | each dedicated connection made | `dedicated()`: from asking to the connection in hand (an idle one's check, or a new one's creation, included) | handed out to dropped |
///
/// Not reported as pools: the Postgres kept connection and the Redis control connection (one
/// per host for heartbeats and discovery: their beats are `switchover.heartbeat.duration`),
/// and the DynamoDB client's HTTP connections (the AWS SDK's, not visible to the crate).
pub const METRICS: &[(&str, &str, &str, &str, &str)] = &[
    (
        names::ATTEMPTS,
        "counter",
        "{attempt}",
        "router, outcome",
        "attempts of routed calls by outcome: success, transient, throttled, permanent, timeout",
    ),
    (
        names::BUDGET_EXHAUSTED,
        "counter",
        "{call}",
        "router",
        "calls stopped because the retry budget could not pay for a retry",
    ),
    (
        names::SWITCHES,
        "counter",
        "{switch}",
        "router, from, to, reason",
        "switches of the active endpoint",
    ),
    (
        names::GENERATION,
        "gauge",
        "1",
        "router",
        "the router's generation (switches so far)",
    ),
    (
        names::FAILOVER_DURATION,
        "histogram",
        "s",
        "router, reason",
        "failover duration: first failed call to first success on the new endpoint (the timeline's phases)",
    ),
    (
        names::ENDPOINT_STATE,
        "gauge",
        "1",
        "router, endpoint, state",
        "1 for the endpoint's current state (up, probing, down, draining), 0 for the others",
    ),
    (
        names::PROBE_LATENCY,
        "histogram",
        "s",
        "router, endpoint",
        "latency a probe result reports (heartbeats, probes of down endpoints, rediscovery's role checks)",
    ),
    (
        names::HEARTBEAT_DURATION,
        "histogram",
        "s",
        "router, endpoint, outcome",
        "each heartbeat of the tracker's probe task, start to verdict, by outcome: up, down, timeout, slow (no answer in time while the endpoint answered calls: counts nothing)",
    ),
    (
        names::REDISCOVERY_RUNS,
        "counter",
        "{run}",
        "router, outcome",
        "rediscovery runs by outcome: primary, no_primary",
    ),
    (
        names::REDISCOVERY_DURATION,
        "histogram",
        "s",
        "router",
        "duration of rediscovery runs",
    ),
    (
        names::WRITABLE_PRIMARIES,
        "counter",
        "{detection}",
        "router",
        "sets of endpoints found writable at once (a split brain), once per set until one of them is seen as something else (the timeline's `writable_primaries` event)",
    ),
    (
        names::BUDGET_TOKENS,
        "gauge",
        "{token}",
        "budget",
        "tokens in a retry budget",
    ),
    (
        names::POOL_COUNT,
        "gauge",
        "{connection}",
        "db.client.connection.pool.name, db.client.connection.state",
        "connections by state: idle, used",
    ),
    (
        names::POOL_MAX,
        "gauge",
        "{connection}",
        "db.client.connection.pool.name",
        "the pool's maximum size",
    ),
    (
        names::POOL_PENDING,
        "gauge",
        "{request}",
        "db.client.connection.pool.name",
        "requests waiting for a connection",
    ),
    (
        names::POOL_TIMEOUTS,
        "counter",
        "{timeout}",
        "db.client.connection.pool.name",
        "waits for a connection that timed out",
    ),
    (
        names::POOL_CREATE_TIME,
        "histogram",
        "s",
        "db.client.connection.pool.name",
        "time to create a connection",
    ),
    (
        names::POOL_WAIT_TIME,
        "histogram",
        "s",
        "db.client.connection.pool.name",
        "time to obtain a connection from the pool",
    ),
    (
        names::POOL_USE_TIME,
        "histogram",
        "s",
        "db.client.connection.pool.name",
        "time between borrowing a connection and returning it",
    ),
];

/// The metric names.
pub mod names {
    /// Counter: attempts by `outcome`.
    pub const ATTEMPTS: &str = "switchover.attempts";
    /// Counter: calls stopped by the retry budget.
    pub const BUDGET_EXHAUSTED: &str = "switchover.budget.exhausted";
    /// Counter: switches of the active endpoint.
    pub const SWITCHES: &str = "switchover.switches";
    /// Gauge: the router's generation.
    pub const GENERATION: &str = "switchover.generation";
    /// Histogram (seconds): failover duration.
    pub const FAILOVER_DURATION: &str = "switchover.failover.duration";
    /// Gauge: the endpoint's state (1 for the current one).
    pub const ENDPOINT_STATE: &str = "switchover.endpoint.state";
    /// Histogram (seconds): the latency a probe result reports.
    pub const PROBE_LATENCY: &str = "switchover.probe.latency";
    /// Histogram (seconds): heartbeats by `outcome` (up, down, timeout, slow).
    pub const HEARTBEAT_DURATION: &str = "switchover.heartbeat.duration";
    /// Counter: rediscovery runs by outcome.
    pub const REDISCOVERY_RUNS: &str = "switchover.rediscovery.runs";
    /// Histogram (seconds): rediscovery run duration.
    pub const REDISCOVERY_DURATION: &str = "switchover.rediscovery.duration";
    /// Counter: sets of endpoints found writable at once (a split brain).
    pub const WRITABLE_PRIMARIES: &str = "switchover.writable_primaries";
    /// Gauge: tokens in a retry budget.
    pub const BUDGET_TOKENS: &str = "switchover.retry.budget.tokens";
    /// Gauge: connections by state (OpenTelemetry).
    pub const POOL_COUNT: &str = "db.client.connection.count";
    /// Gauge: the pool's maximum size (OpenTelemetry).
    pub const POOL_MAX: &str = "db.client.connection.max";
    /// Gauge: requests waiting for a connection (OpenTelemetry).
    pub const POOL_PENDING: &str = "db.client.connection.pending_requests";
    /// Counter: connection waits that timed out (OpenTelemetry).
    pub const POOL_TIMEOUTS: &str = "db.client.connection.timeouts";
    /// Histogram (seconds): connection creation time (OpenTelemetry).
    pub const POOL_CREATE_TIME: &str = "db.client.connection.create_time";
    /// Histogram (seconds): time to obtain a connection (OpenTelemetry).
    pub const POOL_WAIT_TIME: &str = "db.client.connection.wait_time";
    /// Histogram (seconds): time a connection is borrowed (OpenTelemetry).
    pub const POOL_USE_TIME: &str = "db.client.connection.use_time";
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn reason_label(r: SwitchReason) -> &'static str {
    match r {
        SwitchReason::Failover => "failover",
        SwitchReason::Evacuated => "evacuated",
        SwitchReason::Demoted => "demoted",
        SwitchReason::Failback => "failback",
        SwitchReason::Authority => "authority",
        _ => "manual",
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::sync::{Arc, Once};
    use std::time::Duration;

    use metrics::{Counter, Unit};

    use super::{names, reason_label};
    use crate::health::HealthState;
    use crate::observe::snapshot::state_str;
    use crate::route::SwitchReason;

    static DESCRIBE: Once = Once::new();

    /// Describes every metric to the recorder once (units and help texts).
    pub(crate) fn describe() {
        DESCRIBE.call_once(|| {
            for (name, kind, unit, _, help) in super::METRICS {
                let unit = match *unit {
                    "s" => Unit::Seconds,
                    _ => Unit::Count,
                };
                match *kind {
                    "counter" => metrics::describe_counter!(*name, unit, *help),
                    "gauge" => metrics::describe_gauge!(*name, unit, *help),
                    _ => metrics::describe_histogram!(*name, unit, *help),
                }
            }
        });
    }

    /// A router's instruments: the hot-path counters are registered once, at build.
    pub(crate) struct Instruments {
        router: Arc<str>,
        success: Counter,
        transient: Counter,
        throttled: Counter,
        permanent: Counter,
        timeout: Counter,
    }

    impl Instruments {
        pub(crate) fn new(router: &Arc<str>) -> Self {
            describe();
            let attempt = |outcome: &'static str| metrics::counter!(names::ATTEMPTS, "router" => router.to_string(), "outcome" => outcome);
            Instruments {
                router: Arc::clone(router),
                success: attempt("success"),
                transient: attempt("transient"),
                throttled: attempt("throttled"),
                permanent: attempt("permanent"),
                timeout: attempt("timeout"),
            }
        }

        #[inline]
        pub(crate) fn attempt_ok(&self) {
            self.success.increment(1);
        }

        pub(crate) fn attempt_failed(&self, outcome: &'static str) {
            match outcome {
                "timeout" => &self.timeout,
                "throttled" => &self.throttled,
                "permanent" => &self.permanent,
                _ => &self.transient,
            }
            .increment(1);
        }

        fn router(&self) -> String {
            self.router.to_string()
        }

        pub(crate) fn budget_exhausted(&self) {
            metrics::counter!(names::BUDGET_EXHAUSTED, "router" => self.router()).increment(1);
        }

        pub(crate) fn switched(&self, from: &str, to: &str, reason: SwitchReason, generation: u64) {
            metrics::counter!(names::SWITCHES, "router" => self.router(), "from" => from.to_owned(),
                "to" => to.to_owned(), "reason" => reason_label(reason))
            .increment(1);
            metrics::gauge!(names::GENERATION, "router" => self.router()).set(generation as f64);
        }

        pub(crate) fn failover(&self, reason: SwitchReason, took: Duration) {
            metrics::histogram!(names::FAILOVER_DURATION, "router" => self.router(),
                "reason" => reason_label(reason))
            .record(took.as_secs_f64());
        }

        pub(crate) fn state(&self, endpoint: &str, from: HealthState, to: HealthState) {
            for (s, v) in [(from, 0.0), (to, 1.0)] {
                metrics::gauge!(names::ENDPOINT_STATE, "router" => self.router(),
                    "endpoint" => endpoint.to_owned(), "state" => state_str(s))
                .set(v);
            }
        }

        /// Every endpoint starts up: the state gauges start at up = 1.
        pub(crate) fn initial_state(&self, endpoint: &str, state: HealthState) {
            metrics::gauge!(names::ENDPOINT_STATE, "router" => self.router(),
                "endpoint" => endpoint.to_owned(), "state" => state_str(state))
            .set(1.0);
        }

        pub(crate) fn probe_latency(&self, endpoint: &str, latency: Duration) {
            metrics::histogram!(names::PROBE_LATENCY, "router" => self.router(),
                "endpoint" => endpoint.to_owned())
            .record(latency.as_secs_f64());
        }

        pub(crate) fn heartbeat(&self, endpoint: &str, outcome: &'static str, took: Duration) {
            metrics::histogram!(names::HEARTBEAT_DURATION, "router" => self.router(),
                "endpoint" => endpoint.to_owned(), "outcome" => outcome)
            .record(took.as_secs_f64());
        }

        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        pub(crate) fn writable_primaries(&self) {
            metrics::counter!(names::WRITABLE_PRIMARIES, "router" => self.router()).increment(1);
        }

        pub(crate) fn rediscovery(&self, found: bool, took: Duration) {
            let outcome = if found { "primary" } else { "no_primary" };
            metrics::counter!(names::REDISCOVERY_RUNS, "router" => self.router(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!(names::REDISCOVERY_DURATION, "router" => self.router())
                .record(took.as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::health::HealthState;
    use crate::route::SwitchReason;

    /// Without the `metrics` feature: nothing, and every call compiles to nothing.
    pub(crate) struct Instruments;

    #[allow(clippy::unused_self)]
    impl Instruments {
        pub(crate) fn new(_: &Arc<str>) -> Self {
            Instruments
        }
        #[inline(always)]
        pub(crate) fn attempt_ok(&self) {}
        #[inline(always)]
        pub(crate) fn attempt_failed(&self, _: &'static str) {}
        #[inline(always)]
        pub(crate) fn budget_exhausted(&self) {}
        #[inline(always)]
        pub(crate) fn switched(&self, _: &str, _: &str, _: SwitchReason, _: u64) {}
        #[inline(always)]
        pub(crate) fn failover(&self, _: SwitchReason, _: Duration) {}
        #[inline(always)]
        pub(crate) fn state(&self, _: &str, _: HealthState, _: HealthState) {}
        #[inline(always)]
        pub(crate) fn initial_state(&self, _: &str, _: HealthState) {}
        #[inline(always)]
        pub(crate) fn probe_latency(&self, _: &str, _: Duration) {}
        #[inline(always)]
        pub(crate) fn rediscovery(&self, _: bool, _: Duration) {}
        #[inline(always)]
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        pub(crate) fn writable_primaries(&self) {}
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) use off::Instruments;
#[cfg(feature = "metrics")]
pub(crate) use on::{Instruments, describe};

#[cfg(test)]
mod tests {
    /// The doc table of [`METRICS`](super::METRICS) lists every metric, in order, with the
    /// same kind, unit, labels and text.
    #[test]
    fn the_doc_table_is_the_metrics_list() {
        let src = include_str!("metrics.rs");
        let rows: Vec<Vec<String>> = src
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix("/// | `"))
            .filter(|l| l.starts_with("switchover.") || l.starts_with("db.client."))
            .map(|l| {
                format!("| `{l}")
                    .split(" | ")
                    .map(|c| {
                        c.trim_matches(|ch| ch == '|' || ch == ' ' || ch == '`')
                            .to_owned()
                    })
                    .collect()
            })
            .collect();
        let listed: Vec<Vec<String>> = super::METRICS
            .iter()
            .map(|(n, k, u, l, w)| [n, k, u, l, w].iter().map(|s| (**s).to_owned()).collect())
            .collect();
        assert_eq!(rows, listed);
    }
}

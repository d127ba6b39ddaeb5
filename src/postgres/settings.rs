//! Everything a pool was built with, validated, and the policies derived from it once.

use std::time::Duration;

use super::login::Login;
use super::role::TargetRole;
use super::timeouts::Timeouts;
use super::topology::DiscoveryConfig;
use crate::error::ConfigError;
use crate::observe::Observe;
use crate::retry::{ExponentialBackoff, Jitter, MAX_ATTEMPTS, RetryBudget, RetryPolicy};

/// The validated settings of one [`FailoverPool`](super::FailoverPool) (hosts aside: they
/// live in the backend).
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) target_role: TargetRole,
    pub(crate) read_role: TargetRole,
    pub(crate) max_size: usize,
    pub(crate) max_concurrent_connects: usize,
    pub(crate) timeouts: Timeouts,
    pub(crate) verify_idle_after: Option<Duration>,
    pub(crate) reconnect_backoff: ExponentialBackoff,
    pub(crate) retry_policy: RetryPolicy,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) rediscovery_interval: Duration,
    /// The heartbeat interval (`None`: off) and timeout.
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) heartbeat_timeout: Duration,
    /// The credential provider of new connections, if any.
    pub(crate) login: Option<Login>,
    /// How the pool's router is observed.
    pub(crate) observe: Observe,
    /// How often the hosts' names are looked up again (besides every re-discovery run).
    pub(crate) resolve_interval: Duration,
    /// The maximum age of a connection, and each connection's draw.
    pub(crate) ages: std::sync::Arc<crate::resolve::AgeLimit>,
}

impl Settings {
    /// The runner policy of one acquire: as many attempts as the executor allows within the
    /// acquire timeout, the reconnect backoff between them, and throttled outcomes (a host
    /// declined because it cannot serve the role) waiting no longer than other failures.
    pub(crate) fn acquire_policy(&self) -> Result<RetryPolicy, ConfigError> {
        RetryPolicy::builder()
            .max_attempts(MAX_ATTEMPTS)
            .deadline(self.timeouts.acquire)
            .throttle_factor(1.0)
            .backoff(self.reconnect_backoff)
            .build()
    }

    pub(crate) fn discovery(&self) -> DiscoveryConfig {
        let probe_timeout = self.timeouts.probe;
        DiscoveryConfig {
            interval: self.rediscovery_interval,
            probe_timeout,
            silence: match self.heartbeat {
                Some(_) => self.heartbeat_timeout.min(probe_timeout),
                None => probe_timeout,
            },
        }
    }
}

/// 20 ms doubling to 250 ms, full jitter: the default reconnect backoff and the default
/// backoff of the retry policy.
pub(crate) fn default_backoff() -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()
        .expect("constant backoff settings are valid")
}

/// 10 attempts within 15 s with [`default_backoff`].
pub(crate) fn default_retry_policy() -> Result<RetryPolicy, ConfigError> {
    RetryPolicy::builder()
        .max_attempts(10)
        .deadline(Duration::from_secs(15))
        .backoff(default_backoff())
        .build()
}

//! A Redis read/write-splitting pool that follows the primary through failover.
//!
//! [`SplitPool`] sits in front of one primary and its replicas (not Redis Cluster). Writes go to
//! the primary, reads to replicas; when the primary dies or is demoted, the pool finds the new
//! one and retries the writes that were refused. It implements
//! [`redis::aio::ConnectionLike`], so code written against redis-rs (`AsyncCommands`,
//! `query_async`, pipelines, scripts) runs on it unchanged.
//!
//! redis-rs's `ConnectionManager` reconnects only when its socket drops, and stays glued to a
//! demoted primary; replica reads exist there only in cluster mode. This module closes that gap.
//!
//! # What it does
//!
//! - **Discovery**: a static list of nodes whose roles are asked, not trusted (`ROLE` on each,
//!   in parallel), or Sentinel (`SENTINEL GET-MASTER-ADDR-BY-NAME` and `SENTINEL REPLICAS` on
//!   every sentinel, then `ROLE` on the nodes they name). Re-run every
//!   [`discovery_interval`](SplitPoolBuilder::discovery_interval) (1 s) as a backstop, and at
//!   once on a failover signal; concurrent triggers share one run.
//! - **Routing**: a command in [`READ_ONLY_COMMANDS`] (compared without case) goes to a replica
//!   chosen by the [read policy](SplitPoolBuilder::read_policy) (default
//!   [`PreferReplica`]: replicas in turn, the primary when none is
//!   usable); everything else goes to the primary. A pipeline or `MULTI`/`EXEC` goes to a
//!   replica only when every command in it is a read. Blocking commands (`BLPOP`, `XREAD
//!   BLOCK`, `WAIT`, ...) run on a [dedicated connection](SplitPool::dedicated) with their block
//!   time added to the timeout.
//! - **Replica choice** skips replicas that are down in the [`HealthTracker`], whose
//!   link to the primary is down (`ROLE` state other than `connected`), that follow another
//!   node, or that lag more than [`max_replica_lag`](SplitPoolBuilder::max_replica_lag) bytes.
//! - **Failover signals**: `READONLY` replies (also inside script errors and transactions),
//!   refused, reset and timed-out connections to the primary, failed `ROLE` probes, and the
//!   sentinels' `+switch-master` events. On a signal the primary is *in doubt*: writes wait (up
//!   to the response plus connect timeout per attempt) for a discovery run that confirms a
//!   primary; the router [switches](crate::route::Router::switch_to) to it (generation bump),
//!   connections to nodes whose role changed are dropped, and the write is retried.
//! - **Retry safety**: a write refused with `READONLY` or a refused connection surely did not
//!   run, so it is retried even if not idempotent; a write that timed out or lost its
//!   connection after being sent, or a pipeline whose writes were refused with `READONLY` after
//!   other commands in it that are not reads (`PUBLISH`, ...) ran, is retried only through an
//!   [`idempotent`](SplitPool::idempotent) handle. Reads are always retried (on another
//!   replica first).
//! - **Timeouts**: every command has a response timeout (1 s) and every connection a shorter
//!   connect timeout (250 ms), so a black-holed node cannot hang callers.
//! - **Read-your-writes**: [`SplitPool::read_your_writes`] makes a session handle whose reads go
//!   to the primary for a window after each of its writes.
//!
//! Every decision (primary in doubt, confirmed, switched, node role changed, replica unusable,
//! `+switch-master`) is a `tracing` event with target `switchover::redis`.
//!
//! # Example
//!
//! ```no_run
//! use redis::AsyncCommands;
//! use switchover::redis::SplitPool;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = SplitPool::builder()
//!     .nodes(["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"])
//!     .password("s3cret")
//!     .build()
//!     .await?;
//!
//! let mut con = pool.clone();
//! let _: () = con.set("greeting", "hello").await?; // the primary
//! let v: Option<String> = con.get("greeting").await?; // a replica (may lag)
//!
//! // With Sentinel:
//! let pool = SplitPool::builder()
//!     .sentinels(["10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"])
//!     .master_name("mymaster")
//!     .build()
//!     .await?;
//!
//! // Writes that may be retried after a timeout; a session that reads its own writes.
//! let mut writer = pool.idempotent().read_your_writes(std::time::Duration::from_millis(500));
//! let _: () = writer.set("k", 1).await?;
//! let k: i64 = writer.get("k").await?; // the primary, within 500 ms of the write
//! # let _ = (v, k);
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - `SELECT` through the pool is refused (it would change one shared connection only); set
//!   the database with [`db`](SplitPoolBuilder::db).
//! - `MULTI`/`WATCH` sent as separate commands share a multiplexed connection with other
//!   callers, as with redis-rs's `MultiplexedConnection`; use an atomic
//!   [`Pipeline`](redis::Pipeline) or a [dedicated connection](SplitPool::dedicated).
//! - Pub/sub connections ([`SplitPool::pubsub`]) do not follow failovers by themselves.
//! - In static mode only the listed nodes are used; replicas the primary reports but that are
//!   not listed are ignored.
//! - TLS and Unix sockets are not supported.

mod classify;
mod command;
mod config;
mod discovery;
mod error;
mod node;
mod pool;

use std::time::Duration;

pub use classify::is_readonly;
pub use command::{READ_ONLY_COMMANDS, is_read_only};
pub use config::{NodeAddr, ReadFrom};
pub use error::Error;
pub use node::NodeId;
pub use pool::{DedicatedConnection, PoolStatus, SplitPool, Target};

use config::{Secret, Settings, Source};

use crate::error::ConfigError;
use crate::health::HealthTracker;
use crate::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryPolicy};
use crate::route::{PreferReplica, PrimaryOnly, ReadPolicy, ReplicaOnly};

/// The default retry policy of a pool: 40 attempts within a 10 s deadline, exponential backoff
/// from 10 ms to 250 ms with full jitter. Long enough to ride out a Sentinel failover
/// (`down-after-milliseconds` plus election), short waits so that writes resume soon after the
/// new primary is confirmed.
pub fn default_retry_policy() -> RetryPolicy {
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(10))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()
        .unwrap_or_default();
    RetryPolicy::builder()
        .max_attempts(40)
        .deadline(Duration::from_secs(10))
        .backoff(backoff)
        .build()
        .unwrap_or_default()
}

/// Everything [`SplitPoolBuilder::validate`] checked, ready to start a pool.
type Validated = (
    Settings,
    RetryPolicy,
    Box<dyn ReadPolicy<NodeId>>,
    crate::health::HealthTrackerBuilder<NodeId>,
    Vec<NodeAddr>,
);

/// Builder of [`SplitPool`]: nodes or sentinels, credentials, timeouts, read policy, retries.
/// Everything is validated by [`build`](Self::build) before any connection is made.
#[must_use]
pub struct SplitPoolBuilder {
    nodes: Vec<String>,
    sentinels: Vec<String>,
    master: Option<String>,
    settings: Settings,
    retry: Option<RetryPolicy>,
    budget: Option<RetryBudget>,
    read_policy: Option<Box<dyn ReadPolicy<NodeId>>>,
    health: Option<HealthCustomizer>,
}

/// Tunes a pool's health tracker (see [`SplitPoolBuilder::health`]).
type HealthCustomizer = Box<
    dyn FnOnce(
            crate::health::HealthTrackerBuilder<NodeId>,
        ) -> crate::health::HealthTrackerBuilder<NodeId>
        + Send,
>;

impl std::fmt::Debug for SplitPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitPoolBuilder")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact(n)).collect::<Vec<_>>(),
            )
            .field(
                "sentinels",
                &self.sentinels.iter().map(|n| redact(n)).collect::<Vec<_>>(),
            )
            .field("master", &self.master)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn redact(s: &str) -> String {
    match NodeAddr::parse(s) {
        Ok(a) => a.to_string(),
        Err(_) => "<unparsable>".to_owned(),
    }
}

impl SplitPool {
    /// A builder with the defaults: no nodes, no password, database 0, response timeout 1 s,
    /// connect timeout 250 ms, [`PreferReplica`], [`default_retry_policy`], discovery every
    /// 1 s (every 50 ms while the primary is in doubt), no lag bound, 8 dedicated connections
    /// per node.
    pub fn builder() -> SplitPoolBuilder {
        SplitPoolBuilder {
            nodes: Vec::new(),
            sentinels: Vec::new(),
            master: None,
            settings: Settings::default(),
            retry: None,
            budget: None,
            read_policy: None,
            health: None,
        }
    }
}

impl SplitPoolBuilder {
    /// The nodes (`host:port` or `redis://[user:password@]host:port`) of a static topology.
    /// Their roles are discovered with `ROLE`; the order does not matter.
    pub fn nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.nodes.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// The sentinels (`host:port`) to ask for the primary and replicas of
    /// [`master_name`](Self::master_name).
    pub fn sentinels<S: Into<String>>(mut self, sentinels: impl IntoIterator<Item = S>) -> Self {
        self.sentinels.extend(sentinels.into_iter().map(Into::into));
        self
    }

    /// The name the sentinels monitor (required with [`sentinels`](Self::sentinels)).
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master = Some(name.into());
        self
    }

    /// The ACL user of the data nodes (default: none).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.settings.username = Some(username.into());
        self
    }

    /// The password of the data nodes (default: none). Never shown in `Debug`, errors or logs.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.settings.password = Some(Secret(password.into()));
        self
    }

    /// The ACL user of the sentinels (default: none).
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.settings.sentinel_username = Some(username.into());
        self
    }

    /// The password of the sentinels (default: none). Never shown.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.settings.sentinel_password = Some(Secret(password.into()));
        self
    }

    /// The database (default 0; 0 to 65 535).
    pub fn db(mut self, db: i64) -> Self {
        self.settings.db = db;
        self
    }

    /// The time every command may take on a shared connection (default 1 s). A node that does
    /// not answer in time is treated as failing.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.response_timeout = timeout;
        self
    }

    /// The time a connection may take to open (default 250 ms; not longer than the response
    /// timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Where reads go, from the built-in choices (default [`ReadFrom::PreferReplica`]).
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_policy = Some(match read_from {
            ReadFrom::Primary => Box::new(PrimaryOnly),
            ReadFrom::ReplicaOnly => Box::new(ReplicaOnly::new()),
            _ => Box::new(PreferReplica::new()),
        });
        self.settings.read_from = read_from;
        self
    }

    /// Where reads go, by any [`ReadPolicy`] of the router (for example
    /// [`LowestLatency`](crate::route::LowestLatency)).
    pub fn read_policy(mut self, policy: impl ReadPolicy<NodeId> + 'static) -> Self {
        self.read_policy = Some(Box::new(policy));
        self
    }

    /// Skips replicas more than `bytes` of replication stream behind the primary, as of the last
    /// discovery (default: no bound).
    pub fn max_replica_lag(mut self, bytes: u64) -> Self {
        self.settings.max_replica_lag = Some(bytes);
        self
    }

    /// How often discovery runs when nothing is wrong (default 1 s).
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.settings.discovery_interval = interval;
        self
    }

    /// The shortest time between two discovery runs, and how often discovery runs while the
    /// primary is in doubt (default 50 ms).
    pub fn rediscovery_interval(mut self, interval: Duration) -> Self {
        self.settings.rediscovery_interval = interval;
        self
    }

    /// The retry policy of every command (default [`default_retry_policy`]). A command makes
    /// at most `max_attempts` attempts; the first is bounded by the response timeout and runs
    /// without the executor (no timer on the success path), and the policy's deadline counts
    /// from the first failure. Its backoff is also used between Sentinel reconnects.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// A shared retry budget that every retry of the pool's commands draws from (default:
    /// none). Successes refill it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Tunes the health tracker of the nodes, e.g.
    /// `.health(|h| h.failure_threshold(5).ejection_base(Duration::from_secs(2)))`. The pool
    /// adds the endpoints itself. Default: [`HealthTracker::builder`]'s defaults (down after 3
    /// failures in a row, ejected 1 s growing × 2 up to 30 s, back after 2 successes).
    pub fn health(
        mut self,
        customize: impl FnOnce(
            crate::health::HealthTrackerBuilder<NodeId>,
        ) -> crate::health::HealthTrackerBuilder<NodeId>
        + Send
        + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// The most dedicated connections per node (default 8; at least 1).
    pub fn dedicated_pool_size(mut self, size: usize) -> Self {
        self.settings.dedicated_pool_size = size;
        self
    }

    fn validate(mut self) -> Result<Validated, ConfigError> {
        let s = &mut self.settings;
        if !self.nodes.is_empty() && !self.sentinels.is_empty() {
            return Err(ConfigError::new(
                "nodes",
                "give either nodes or sentinels, not both",
            ));
        }
        let mut initial = Vec::new();
        if !self.sentinels.is_empty() {
            let master = self
                .master
                .clone()
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        "master_name",
                        "Sentinel needs the name of the monitored master",
                    )
                })?;
            let mut sentinels = Vec::new();
            for raw in &self.sentinels {
                let (addr, creds) = NodeAddr::parse_with_credentials(raw, "sentinels")?;
                if creds.password.is_some() && s.sentinel_password.is_none() {
                    s.sentinel_password = creds.password;
                }
                sentinels.push(addr);
            }
            s.source = Source::Sentinel { sentinels, master };
        } else if !self.nodes.is_empty() {
            if self.master.is_some() {
                return Err(ConfigError::new(
                    "master_name",
                    "a master name needs sentinels",
                ));
            }
            for raw in &self.nodes {
                let (addr, creds) = NodeAddr::parse_with_credentials(raw, "nodes")?;
                if creds.password.is_some() && s.password.is_none() {
                    s.password = creds.password;
                }
                if creds.username.is_some() && s.username.is_none() {
                    s.username = creds.username;
                }
                if !initial.contains(&addr) {
                    initial.push(addr);
                }
            }
            s.source = Source::Static;
        } else {
            return Err(ConfigError::new("nodes", "no nodes and no sentinels given"));
        }
        for (field, d) in [
            ("response_timeout", s.response_timeout),
            ("connect_timeout", s.connect_timeout),
            ("discovery_interval", s.discovery_interval),
            ("rediscovery_interval", s.rediscovery_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be above zero"));
            }
            if d > crate::retry::MAX_DEADLINE {
                return Err(ConfigError::new(
                    field,
                    format!("{d:?} is longer than a day"),
                ));
            }
        }
        if s.connect_timeout > s.response_timeout {
            return Err(ConfigError::new(
                "connect_timeout",
                format!(
                    "{:?} is longer than the response timeout {:?}",
                    s.connect_timeout, s.response_timeout
                ),
            ));
        }
        if s.rediscovery_interval > s.discovery_interval {
            return Err(ConfigError::new(
                "rediscovery_interval",
                "must not exceed discovery_interval",
            ));
        }
        if !(0..=65_535).contains(&s.db) {
            return Err(ConfigError::new(
                "db",
                format!("{} is not a database number", s.db),
            ));
        }
        if s.dedicated_pool_size == 0 {
            return Err(ConfigError::new(
                "dedicated_pool_size",
                "must be at least 1",
            ));
        }
        let retry = self.retry.unwrap_or_else(default_retry_policy);
        let policy = self
            .read_policy
            .unwrap_or_else(|| Box::new(PreferReplica::new()));
        let mut tracker = HealthTracker::builder();
        if let Some(customize) = self.health {
            tracker = customize(tracker);
        }
        let mut settings = self.settings;
        settings.budget = self.budget;
        Ok((settings, retry, policy, tracker, initial))
    }

    /// Validates the settings, runs a first discovery and starts the background tasks (which
    /// need a Tokio runtime with the time driver).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for bad input (no nodes and no sentinels, both, an unparsable address,
    /// Sentinel without a master name, a zero or inverted timeout, a bad database number);
    /// [`Error::NoPrimary`] when no node confirms the master role.
    pub async fn build(self) -> Result<SplitPool, Error> {
        let (settings, retry, policy, tracker, mut initial) = self.validate()?;
        let tracker = tracker.build()?;
        if let Source::Sentinel { sentinels, master } = &settings.source {
            // Seed the node list from the sentinels; discovery keeps it current.
            let probe = SplitPool::sentinel_seed(&settings, sentinels, master).await?;
            initial = probe;
        }
        SplitPool::start(settings, retry, policy, tracker, initial).await
    }
}

impl SplitPool {
    async fn sentinel_seed(
        settings: &Settings,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> Result<Vec<NodeAddr>, Error> {
        use discovery::{parse_master_addr, parse_sentinel_replicas};
        let limit = settings.connect_timeout + settings.response_timeout;
        let mut last = None;
        for addr in sentinels {
            let client = node::client_for(
                addr,
                settings.sentinel_username.as_ref(),
                settings.sentinel_password.as_ref(),
                0,
            )?;
            let r = tokio::time::timeout(limit, async {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(settings.connect_timeout))
                    .set_response_timeout(Some(settings.response_timeout));
                let mut c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let m: redis::Value = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(master)
                    .query_async(&mut c)
                    .await?;
                let r: redis::Value = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(master)
                    .query_async(&mut c)
                    .await?;
                Ok::<_, redis::RedisError>((m, r))
            })
            .await;
            match r {
                Ok(Ok((m, r))) => match parse_master_addr(&m) {
                    Some(Some(primary)) => {
                        let mut nodes = vec![primary];
                        for rep in parse_sentinel_replicas(&r).unwrap_or_default() {
                            if !nodes.contains(&rep.addr) {
                                nodes.push(rep.addr);
                            }
                        }
                        return Ok(nodes);
                    }
                    Some(None) => {
                        last = Some(Error::NoPrimary(format!(
                            "sentinel {addr} does not know master `{master}`"
                        )));
                    }
                    None => {
                        last = Some(Error::protocol(
                            &addr.to_string(),
                            "not a GET-MASTER-ADDR-BY-NAME reply",
                        ))
                    }
                },
                Ok(Err(e)) => last = Some(Error::node(&addr.to_string(), e)),
                Err(_) => last = Some(Error::Timeout(limit)),
            }
        }
        Err(last.unwrap_or_else(|| Error::NoPrimary("no sentinel answered".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: SplitPoolBuilder) -> &'static str {
        match b.validate() {
            Err(e) => e.field(),
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn bad_input_is_refused_at_build() {
        assert_eq!(field(SplitPool::builder()), "nodes");
        assert_eq!(field(SplitPool::builder().nodes(["nonsense"])), "nodes");
        assert_eq!(
            field(SplitPool::builder().sentinels(["127.0.0.1:26379"])),
            "master_name"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .sentinels(["127.0.0.1:26379"])
                    .master_name(" ")
            ),
            "master_name"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .nodes(["127.0.0.1:1"])
                    .sentinels(["127.0.0.1:2"])
                    .master_name("m")
            ),
            "nodes"
        );
        assert_eq!(
            field(SplitPool::builder().nodes(["127.0.0.1:1"]).master_name("m")),
            "master_name"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .nodes(["127.0.0.1:1"])
                    .response_timeout(Duration::ZERO)
            ),
            "response_timeout"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .nodes(["127.0.0.1:1"])
                    .connect_timeout(Duration::from_secs(2))
            ),
            "connect_timeout"
        );
        assert_eq!(
            field(SplitPool::builder().nodes(["127.0.0.1:1"]).db(-1)),
            "db"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .nodes(["127.0.0.1:1"])
                    .dedicated_pool_size(0)
            ),
            "dedicated_pool_size"
        );
        assert_eq!(
            field(SplitPool::builder().nodes(["127.0.0.1:1", "127.0.0.1:2"])),
            "accepted"
        );
        assert_eq!(
            field(
                SplitPool::builder()
                    .sentinels(["127.0.0.1:26379"])
                    .master_name("m")
            ),
            "accepted"
        );
    }

    #[test]
    fn passwords_stay_out_of_debug_and_errors() {
        let b = SplitPool::builder()
            .nodes(["redis://app:hunter2@127.0.0.1:6379"])
            .password("s3cret-pw")
            .sentinel_password("other-pw");
        let shown = format!("{b:?}");
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("s3cret-pw")
                && !shown.contains("other-pw"),
            "{shown}"
        );
        let err = SplitPool::builder()
            .nodes(["redis://app:hunter2@nohost"])
            .validate()
            .err()
            .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn health_settings_are_validated_before_any_connection() {
        // Port 1 never answers: the error must come from validation, not from a connect.
        let err = SplitPool::builder()
            .nodes(["127.0.0.1:1"])
            .health(|h| h.failure_threshold(0))
            .build()
            .await
            .err()
            .unwrap();
        match err {
            Error::Config(e) => assert_eq!(e.field(), "failure_threshold"),
            other => panic!("expected a configuration error, got {other}"),
        }
    }

    #[test]
    fn default_retry_policy_rides_out_a_failover() {
        let p = default_retry_policy();
        assert_eq!(p.deadline(), Some(Duration::from_secs(10)));
        assert_eq!(p.max_attempts(), 40);
        assert_eq!(p.backoff().cap(), Duration::from_millis(250));
    }
}

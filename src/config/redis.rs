//! Config of a Redis pool: [`RedisConfig`], built into a
//! [`SplitPoolBuilder`](crate::redis::SplitPoolBuilder).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::health::HealthConfig;
use super::retry::{BudgetConfig, RetryConfig};
use super::section::Section;
use crate::auth::Secret;
use crate::error::ConfigError;
use crate::redis::{
    NodeAddr, ReadFrom, SplitPool, SplitPoolBuilder, Timeouts, default_retry_policy,
};
use crate::retry::MAX_DEADLINE;
use crate::route::LowestLatency;

/// A Redis [`SplitPool`] from a config file. Every field is optional and keeps the
/// [`SplitPoolBuilder`]'s default (see its table), but the pool needs `nodes`, or `sentinels`
/// and `master_name`. [`build_at`](Section::build_at) checks what the builder checks before
/// connecting and names the value by its path (`redis.timeouts.response`, `redis.nodes[1]`).
///
/// ```toml
/// [redis]
/// sentinels = ["10.0.0.5:26379", "10.0.0.6:26379", "10.0.0.7:26379"]
/// master_name = "cache"                # or: nodes = ["redis://10.0.0.8:6379", ...]
/// username = "app"
/// password = "…"                       # never shown by Debug or errors
/// sentinel_password = "…"
/// db = 0
/// read_from = "prefer_replica"         # primary | prefer_replica | replica_only | lowest_latency
/// max_replica_lag = 1048576            # bytes
/// discovery_interval = "1s"
/// rediscovery_interval = "50ms"
/// dedicated_pool_size = 8
/// heartbeat = "200ms"                  # or "off"
/// heartbeat_timeout = "300ms"
/// resolve_interval = "5s"              # host names looked up again
/// max_connection_age = "30m"           # or "off"
///
/// [redis.timeouts]
/// connect = "250ms"
/// response = "1s"
///
/// [redis.retry]                        # over the pool's own default policy
/// max_attempts = 20
///
/// [redis.budget]                       # present: retries draw from a budget
/// capacity = 500
///
/// [redis.health]
/// failure_threshold = 3
///
/// [redis.tls]                          # feature `tls`; present: TLS to every node
/// ca_file = "/etc/ssl/cache-ca.pem"
/// ```
///
/// ```no_run
/// use serde::Deserialize;
/// use switchover::config::{self, ConfigPath, RedisConfig, Section};
///
/// #[derive(Deserialize)]
/// struct Service {
///     redis: RedisConfig,
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let text = std::fs::read_to_string("service.toml")?;
/// let service: Service = config::deserialize(toml::Deserializer::parse(&text)?)?;
/// let pool = service.redis.build_at(&ConfigPath::new("redis"))?.build().await?;
/// # let _ = pool; Ok(()) }
/// ```
///
/// Credential providers and read policies of your own are code: set them on the builder
/// `build_at` returns. A password written in a node's URL (`redis://app:pw@host:6379`) is
/// taken out as the builder does and never shown either.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// See [`SplitPoolBuilder::nodes`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// See [`SplitPoolBuilder::sentinels`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<String>,
    /// See [`SplitPoolBuilder::master_name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// See [`SplitPoolBuilder::username`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// See [`SplitPoolBuilder::password`]. Written back in clear by `Serialize`.
    #[serde(
        with = "super::secret::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<Secret>,
    /// See [`SplitPoolBuilder::sentinel_username`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_username: Option<String>,
    /// See [`SplitPoolBuilder::sentinel_password`].
    #[serde(
        with = "super::secret::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sentinel_password: Option<Secret>,
    /// See [`SplitPoolBuilder::db`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<i64>,
    /// See [`SplitPoolBuilder::timeouts`].
    pub timeouts: RedisTimeoutsConfig,
    /// See [`SplitPoolBuilder::read_from`] (and, for `lowest_latency`,
    /// [`read_policy`](SplitPoolBuilder::read_policy)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_from: Option<ReadFromConfig>,
    /// See [`SplitPoolBuilder::max_replica_lag`] (bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replica_lag: Option<u64>,
    /// See [`SplitPoolBuilder::discovery_interval`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub discovery_interval: Option<Duration>,
    /// See [`SplitPoolBuilder::rediscovery_interval`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rediscovery_interval: Option<Duration>,
    /// See [`SplitPoolBuilder::dedicated_pool_size`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedicated_pool_size: Option<usize>,
    /// See [`SplitPoolBuilder::heartbeat`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<Option<Duration>>,
    /// See [`SplitPoolBuilder::heartbeat_timeout`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_timeout: Option<Duration>,
    /// See [`SplitPoolBuilder::resolve_interval`]: how often host names are looked up again.
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolve_interval: Option<Duration>,
    /// See [`SplitPoolBuilder::max_connection_age`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connection_age: Option<Option<Duration>>,
    /// See [`SplitPoolBuilder::retry_policy`]; built over [`default_retry_policy`].
    pub retry: RetryConfig,
    /// See [`SplitPoolBuilder::budget`]; left out, no budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// See [`SplitPoolBuilder::health`].
    pub health: HealthConfig,
    /// See [`SplitPoolBuilder::tls`]; present (even empty), TLS is on.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::TlsConfig>,
    /// See [`SplitPoolBuilder::sentinel_tls`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_tls: Option<super::TlsConfig>,
}

/// [`Timeouts`] of a Redis pool from a config file; every field defaults to [`Timeouts::new`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisTimeoutsConfig {
    /// See [`Timeouts::connect`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<Duration>,
    /// See [`Timeouts::response`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub response: Option<Duration>,
}

impl RedisTimeoutsConfig {
    /// The timeouts this config says, over [`Timeouts::new`].
    pub fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::new();
        if let Some(d) = self.connect {
            t = t.connect(d);
        }
        if let Some(d) = self.response {
            t = t.response(d);
        }
        t
    }
}

/// Where reads go, by name: `"primary"`, `"prefer_replica"`, `"replica_only"` (see
/// [`ReadFrom`]) or `"lowest_latency"` ([`LowestLatency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFromConfig {
    /// [`ReadFrom::Primary`].
    Primary,
    /// [`ReadFrom::PreferReplica`] (the default).
    PreferReplica,
    /// [`ReadFrom::ReplicaOnly`].
    ReplicaOnly,
    /// The node with the lowest latency, primary or replica ([`LowestLatency`]).
    LowestLatency,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A node's URL may carry a password: show the address only.
        let shown = |list: &[String]| {
            list.iter()
                .map(|raw| match NodeAddr::parse(raw) {
                    Ok(a) => a.to_string(),
                    Err(_) => "<unparsable>".to_owned(),
                })
                .collect::<Vec<_>>()
        };
        let mut d = f.debug_struct("RedisConfig");
        d.field("nodes", &shown(&self.nodes))
            .field("sentinels", &shown(&self.sentinels))
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &self.sentinel_password)
            .field("db", &self.db)
            .field("timeouts", &self.timeouts)
            .field("read_from", &self.read_from)
            .field("max_replica_lag", &self.max_replica_lag)
            .field("discovery_interval", &self.discovery_interval)
            .field("rediscovery_interval", &self.rediscovery_interval)
            .field("dedicated_pool_size", &self.dedicated_pool_size)
            .field("heartbeat", &self.heartbeat)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("resolve_interval", &self.resolve_interval)
            .field("max_connection_age", &self.max_connection_age)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("health", &self.health);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls)
            .field("sentinel_tls", &self.sentinel_tls);
        d.finish()
    }
}

impl RedisConfig {
    /// A [`ConfigError`] of the builder this config made (from
    /// [`SplitPoolBuilder::build`], through [`Error::config_error`](crate::redis::Error::config_error))
    /// named by the path of the value in this config: `connect_timeout` is
    /// `redis.timeouts.connect`, a tracker field is `redis.health.<field>`, a TLS file is
    /// `redis.tls.ca_file`.
    pub fn rejected(&self, at: &ConfigPath, error: &ConfigError) -> InvalidConfig {
        match error.field() {
            "connect_timeout" => at.join("timeouts").invalid("connect", error.reason()),
            "response_timeout" => at.join("timeouts").invalid("response", error.reason()),
            // The pool's own knobs, though the tracker has fields of the same name.
            "heartbeat" | "heartbeat_timeout" => at.rejected(error.clone()),
            f if super::fields::HEALTH.contains(&f) => at.join("health").rejected(error.clone()),
            #[cfg(feature = "tls")]
            "roots" | "client_cert" | "client_key" | "server_name" => {
                // The nodes' options unless only the sentinels have their own.
                match (&self.tls, &self.sentinel_tls) {
                    (None, Some(s)) => s.rejected(&at.join("sentinel_tls"), error),
                    (Some(t), _) => t.rejected(&at.join("tls"), error),
                    (None, None) => at.rejected(error.clone()),
                }
            }
            _ => at.rejected(error.clone()),
        }
    }

    /// The nodes or the sentinels: one of them, every address readable, a master name with
    /// sentinels and only then.
    fn check_source(&self, at: &ConfigPath) -> Result<(), InvalidConfig> {
        match (self.nodes.is_empty(), self.sentinels.is_empty()) {
            (false, false) => {
                return Err(at.invalid("nodes", "give either nodes or sentinels, not both"));
            }
            (true, true) => return Err(at.invalid("nodes", "no nodes and no sentinels given")),
            _ => {}
        }
        for (i, raw) in self.nodes.iter().enumerate() {
            NodeAddr::parse(raw).map_err(|e| at.invalid(&format!("nodes[{i}]"), e.reason()))?;
        }
        for (i, raw) in self.sentinels.iter().enumerate() {
            let addr = NodeAddr::parse(raw)
                .map_err(|e| at.invalid(&format!("sentinels[{i}]"), e.reason()))?;
            if addr.is_unix() {
                return Err(at.invalid(
                    &format!("sentinels[{i}]"),
                    format!("`{addr}`: sentinels are reached over TCP"),
                ));
            }
        }
        let master = self.master_name.as_deref();
        if self.sentinels.is_empty() {
            if master.is_some() {
                return Err(at.invalid("master_name", "a master name needs sentinels"));
            }
            #[cfg(feature = "tls")]
            if self.sentinel_tls.is_some() {
                return Err(at.invalid("sentinel_tls", "no sentinels are given"));
            }
        } else if master.is_none_or(|m| m.trim().is_empty()) {
            return Err(at.invalid(
                "master_name",
                "Sentinel needs the name of the monitored master",
            ));
        }
        Ok(())
    }

    /// Database number, intervals and pool size, as the builder checks them.
    fn check_settings(&self, at: &ConfigPath) -> Result<(), InvalidConfig> {
        self.timeouts
            .timeouts()
            .validate()
            .map_err(|e| self.rejected(at, &e))?;
        let discovery = self.discovery_interval.unwrap_or(DISCOVERY_INTERVAL);
        let rediscovery = self.rediscovery_interval.unwrap_or(REDISCOVERY_INTERVAL);
        for (field, d) in [
            ("discovery_interval", discovery),
            ("rediscovery_interval", rediscovery),
        ] {
            if d.is_zero() {
                return Err(at.invalid(field, "must be above zero"));
            }
            if d > MAX_DEADLINE {
                return Err(at.invalid(field, format!("{d:?} is longer than a day")));
            }
        }
        if rediscovery > discovery {
            return Err(at.invalid("rediscovery_interval", "must not exceed discovery_interval"));
        }
        if let Some(db) = self.db
            && !(0..=65_535).contains(&db)
        {
            return Err(at.invalid("db", format!("{db} is not a database number")));
        }
        super::connections::check(at, self.resolve_interval, self.max_connection_age)?;
        if self.dedicated_pool_size == Some(0) {
            return Err(at.invalid("dedicated_pool_size", "must be at least 1"));
        }
        for (field, d) in [
            ("heartbeat", self.heartbeat.flatten()),
            ("heartbeat_timeout", self.heartbeat_timeout),
        ] {
            match d {
                Some(d) if d.is_zero() => return Err(at.invalid(field, "must be above zero")),
                Some(d) if d > MAX_DEADLINE => {
                    return Err(at.invalid(field, format!("{d:?} is longer than a day")));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The builder's interval defaults (see the table on [`SplitPoolBuilder`]), for checking a
/// value set here against one left out.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
const REDISCOVERY_INTERVAL: Duration = Duration::from_millis(50);

impl Section for RedisConfig {
    type Output = SplitPoolBuilder;

    /// Checks every value the [`SplitPoolBuilder`] checks before connecting (the addresses,
    /// nodes or sentinels, timeouts, intervals, database, pool size, the retry policy over
    /// [`default_retry_policy`], the budget, the health settings, the TLS files) and returns
    /// the builder, ready for [`build`](SplitPoolBuilder::build) or more code-only knobs. Whether
    /// TLS and plaintext addresses mix is checked by `build`; map its error with
    /// [`rejected`](RedisConfig::rejected).
    fn build_at(&self, at: &ConfigPath) -> Result<SplitPoolBuilder, InvalidConfig> {
        self.check_source(at)?;
        self.check_settings(at)?;
        let mut b = SplitPool::builder()
            .nodes(self.nodes.iter().cloned())
            .sentinels(self.sentinels.iter().cloned());
        if let Some(m) = &self.master_name {
            b = b.master_name(m.clone());
        }
        if let Some(u) = &self.username {
            b = b.username(u.clone());
        }
        if let Some(p) = &self.password {
            b = b.password(p.expose());
        }
        if let Some(u) = &self.sentinel_username {
            b = b.sentinel_username(u.clone());
        }
        if let Some(p) = &self.sentinel_password {
            b = b.sentinel_password(p.expose());
        }
        if let Some(db) = self.db {
            b = b.db(db);
        }
        if self.timeouts != RedisTimeoutsConfig::default() {
            b = b.timeouts(self.timeouts.timeouts());
        }
        b = match self.read_from {
            Some(ReadFromConfig::Primary) => b.read_from(ReadFrom::Primary),
            Some(ReadFromConfig::PreferReplica) => b.read_from(ReadFrom::PreferReplica),
            Some(ReadFromConfig::ReplicaOnly) => b.read_from(ReadFrom::ReplicaOnly),
            Some(ReadFromConfig::LowestLatency) => b.read_policy(LowestLatency),
            None => b,
        };
        if let Some(lag) = self.max_replica_lag {
            b = b.max_replica_lag(lag);
        }
        if let Some(d) = self.discovery_interval {
            b = b.discovery_interval(d);
        }
        if let Some(d) = self.rediscovery_interval {
            b = b.rediscovery_interval(d);
        }
        if let Some(n) = self.dedicated_pool_size {
            b = b.dedicated_pool_size(n);
        }
        if let Some(h) = self.heartbeat {
            b = b.heartbeat(h);
        }
        if let Some(t) = self.heartbeat_timeout {
            b = b.heartbeat_timeout(t);
        }
        if let Some(d) = self.resolve_interval {
            b = b.resolve_interval(d);
        }
        if let Some(age) = self.max_connection_age {
            b = b.max_connection_age(age);
        }
        if self.retry != RetryConfig::default() {
            b = b.retry_policy(
                self.retry
                    .build_from(&default_retry_policy(), &at.join("retry"))?,
            );
        }
        if let Some(budget) = &self.budget {
            b = b.budget(budget.build_at(&at.join("budget"))?);
        }
        if self.health != HealthConfig::default() {
            // The pool's tracker starts from the tracker builder's defaults, so this check
            // is the one `build` makes.
            let settings = self.health.build_at(&at.join("health"))?;
            b = b.health(move |h| settings.apply(h));
        }
        #[cfg(feature = "tls")]
        {
            if let Some(tls) = &self.tls {
                b = b.tls(tls.build_at(&at.join("tls"))?);
            }
            if let Some(tls) = &self.sentinel_tls {
                b = b.sentinel_tls(tls.build_at(&at.join("sentinel_tls"))?);
            }
        }
        Ok(b)
    }
}

#[cfg(test)]
#[path = "redis_tests.rs"]
mod tests;

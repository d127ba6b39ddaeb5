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
        if self.dedicated_pool_size == Some(0) {
            return Err(at.invalid("dedicated_pool_size", "must be at least 1"));
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
mod tests {
    use super::*;
    use crate::config;
    use crate::retry::Jitter;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A service's config with the pool under `[redis]`.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Service {
        redis: RedisConfig,
    }

    fn read(text: &str) -> Result<RedisConfig, InvalidConfig> {
        let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
        config::deserialize::<Service, _>(de).map(|s| s.redis)
    }

    fn at() -> ConfigPath {
        ConfigPath::new("redis")
    }

    /// A port on loopback with nothing behind it.
    fn closed() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    }

    fn nodes() -> RedisConfig {
        RedisConfig {
            nodes: vec![closed()],
            ..RedisConfig::default()
        }
    }

    fn every_field_set() -> RedisConfig {
        RedisConfig {
            nodes: Vec::new(),
            sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
            master_name: Some("cache".into()),
            username: Some("app".into()),
            password: Some(Secret::new("hunter2")),
            sentinel_username: Some("watcher".into()),
            sentinel_password: Some(Secret::new("s3ntinel")),
            db: Some(3),
            timeouts: RedisTimeoutsConfig {
                connect: Some(ms(100)),
                response: Some(ms(400)),
            },
            read_from: Some(ReadFromConfig::LowestLatency),
            max_replica_lag: Some(1 << 20),
            discovery_interval: Some(ms(2000)),
            rediscovery_interval: Some(ms(20)),
            dedicated_pool_size: Some(2),
            retry: RetryConfig {
                max_attempts: Some(7),
                backoff: Some(config::BackoffConfig {
                    jitter: Some(Jitter::None),
                    ..Default::default()
                }),
                ..RetryConfig::default()
            },
            budget: Some(BudgetConfig {
                capacity: Some(40),
                ..BudgetConfig::default()
            }),
            health: HealthConfig {
                failure_threshold: Some(4),
                ..HealthConfig::default()
            },
            #[cfg(feature = "tls")]
            tls: Some(super::super::TlsConfig {
                roots: Some(super::super::RootsConfig::Webpki),
                server_name: Some("cache.internal".into()),
                ..Default::default()
            }),
            #[cfg(feature = "tls")]
            sentinel_tls: None,
        }
    }

    #[test]
    fn a_redis_config_round_trips_through_toml() {
        let config = every_field_set();
        let text = toml::to_string(&Service {
            redis: config.clone(),
        })
        .unwrap();
        for line in [
            "master_name = \"cache\"",
            "password = \"hunter2\"",
            "read_from = \"lowest_latency\"",
            "rediscovery_interval = \"20ms\"",
            "[redis.timeouts]",
            "response = \"400ms\"",
            "[redis.retry.backoff]",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(read(&text).unwrap(), config);
        // And the static form, with a URL.
        let text = "[redis]\nnodes = [\"redis://127.0.0.1:7000\", \"[::1]:7001\"]\nread_from = \"replica_only\"\n";
        let back = read(text).unwrap();
        assert_eq!(back.read_from, Some(ReadFromConfig::ReplicaOnly));
        let written = toml::to_string(&Service {
            redis: back.clone(),
        })
        .unwrap();
        assert_eq!(read(&written).unwrap(), back);
    }

    #[test]
    fn a_file_sets_what_it_says_on_the_builder() {
        let b = every_field_set().build_at(&at()).unwrap();
        let shown = format!("{b:?}");
        for part in [
            "master: Some(\"cache\")",
            "username: Some(\"app\")",
            "db: 3",
            "connect: 100ms, response: 400ms",
            "max_replica_lag: Some(1048576)",
            "discovery_interval: 2s",
            "rediscovery_interval: 20ms",
            "dedicated_pool_size: 2",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(shown.contains("Secret(***)"), "{shown}");
    }

    #[test]
    fn an_empty_config_builds_the_builders_defaults() {
        let node = closed();
        let ours = RedisConfig {
            nodes: vec![node.clone()],
            ..RedisConfig::default()
        };
        let theirs = SplitPool::builder().nodes([node]);
        assert_eq!(
            format!("{:?}", ours.build_at(&at()).unwrap()),
            format!("{theirs:?}")
        );
        let ours = RedisConfig {
            sentinels: vec!["127.0.0.1:26379".into()],
            master_name: Some("m".into()),
            ..RedisConfig::default()
        };
        let theirs = SplitPool::builder()
            .sentinels(["127.0.0.1:26379"])
            .master_name("m");
        assert_eq!(
            format!("{:?}", ours.build_at(&at()).unwrap()),
            format!("{theirs:?}")
        );
        // Empty sections are left out of the builder, as an absent one.
        let text =
            "[redis]\nnodes = [\"127.0.0.1:1\"]\n[redis.retry]\n[redis.health]\n[redis.timeouts]\n";
        let read_back = read(text).unwrap();
        assert_eq!(read_back.retry, RetryConfig::default());
        assert_eq!(read_back.health, HealthConfig::default());
        assert_eq!(read_back.timeouts, RedisTimeoutsConfig::default());
    }

    type Change = Box<dyn Fn(&mut RedisConfig)>;

    fn refused() -> Vec<(Change, &'static str)> {
        vec![
            (Box::new(|c| c.nodes.clear()), "redis.nodes"),
            (
                Box::new(|c| c.sentinels = vec!["127.0.0.1:26379".into()]),
                "redis.nodes",
            ),
            (
                Box::new(|c| c.nodes.push("nohost".into())),
                "redis.nodes[1]",
            ),
            (
                Box::new(|c| {
                    c.nodes.clear();
                    c.sentinels = vec!["127.0.0.1:26379".into(), "unix:///tmp/s.sock".into()];
                    c.master_name = Some("m".into());
                }),
                "redis.sentinels[1]",
            ),
            (
                Box::new(|c| {
                    c.nodes.clear();
                    c.sentinels = vec!["127.0.0.1:26379".into()];
                }),
                "redis.master_name",
            ),
            (
                Box::new(|c| {
                    c.nodes.clear();
                    c.sentinels = vec!["127.0.0.1:26379".into()];
                    c.master_name = Some(" ".into());
                }),
                "redis.master_name",
            ),
            (
                Box::new(|c| c.master_name = Some("m".into())),
                "redis.master_name",
            ),
            (Box::new(|c| c.db = Some(-1)), "redis.db"),
            (Box::new(|c| c.db = Some(65_536)), "redis.db"),
            (
                Box::new(|c| c.timeouts.response = Some(Duration::ZERO)),
                "redis.timeouts.response",
            ),
            (
                Box::new(|c| c.timeouts.connect = Some(ms(2000))),
                "redis.timeouts.connect",
            ),
            (
                Box::new(|c| c.timeouts.connect = Some(Duration::ZERO)),
                "redis.timeouts.connect",
            ),
            (
                Box::new(|c| c.discovery_interval = Some(Duration::ZERO)),
                "redis.discovery_interval",
            ),
            (
                Box::new(|c| c.discovery_interval = Some(Duration::from_secs(2 * 86_400))),
                "redis.discovery_interval",
            ),
            // Against the other interval's default: 1 s, 50 ms.
            (
                Box::new(|c| c.discovery_interval = Some(ms(40))),
                "redis.rediscovery_interval",
            ),
            (
                Box::new(|c| c.rediscovery_interval = Some(ms(1001))),
                "redis.rediscovery_interval",
            ),
            (
                Box::new(|c| c.rediscovery_interval = Some(Duration::ZERO)),
                "redis.rediscovery_interval",
            ),
            (
                Box::new(|c| c.dedicated_pool_size = Some(0)),
                "redis.dedicated_pool_size",
            ),
            (
                Box::new(|c| c.health.failure_threshold = Some(0)),
                "redis.health.failure_threshold",
            ),
            (
                Box::new(|c| c.health.ejection_growth = Some(0.5)),
                "redis.health.ejection_growth",
            ),
        ]
    }

    #[tokio::test]
    async fn every_refused_value_names_its_path_and_the_builder_refuses_it_too() {
        for (change, path) in refused() {
            let mut config = nodes();
            change(&mut config);
            let err = config.build_at(&at()).err().unwrap_or_else(|| {
                panic!("{path}: accepted {config:?}");
            });
            assert_eq!(err.path(), path, "{err}");
            assert!(err.to_string().starts_with(&format!("invalid `{path}`")));
            // The builder, given the same values, refuses them before connecting.
            let raw = builder_of(&config);
            let built = raw.build().await.expect_err("refused");
            let e = built
                .config_error()
                .unwrap_or_else(|| panic!("{path}: {built}"));
            // The builder's own field, named here by its path.
            let named = config.rejected(&at(), e);
            let base = |p: &str| p.split('[').next().unwrap().to_owned();
            assert_eq!(base(named.path()), base(path), "{path}: {e}");
        }
        // Retry and budget refusals are the core sections', under their paths.
        let mut config = nodes();
        config.retry.max_attempts = Some(0);
        assert_eq!(
            config.build_at(&at()).unwrap_err().path(),
            "redis.retry.max_attempts"
        );
        let mut config = nodes();
        config.budget = Some(BudgetConfig {
            capacity: Some(0),
            ..Default::default()
        });
        assert_eq!(
            config.build_at(&at()).unwrap_err().path(),
            "redis.budget.capacity"
        );
    }

    /// The builder with `config`'s values, set without the config's checks.
    fn builder_of(config: &RedisConfig) -> SplitPoolBuilder {
        let mut b = SplitPool::builder()
            .nodes(config.nodes.iter().cloned())
            .sentinels(config.sentinels.iter().cloned())
            .timeouts(config.timeouts.timeouts());
        if let Some(m) = &config.master_name {
            b = b.master_name(m.clone());
        }
        if let Some(db) = config.db {
            b = b.db(db);
        }
        if let Some(d) = config.discovery_interval {
            b = b.discovery_interval(d);
        }
        if let Some(d) = config.rediscovery_interval {
            b = b.rediscovery_interval(d);
        }
        if let Some(n) = config.dedicated_pool_size {
            b = b.dedicated_pool_size(n);
        }
        let health = config.health.clone();
        b.health(move |mut h| {
            if let Some(n) = health.failure_threshold {
                h = h.failure_threshold(n);
            }
            if let Some(g) = health.ejection_growth {
                h = h.ejection_growth(g);
            }
            h
        })
    }

    #[test]
    fn every_unreadable_value_names_its_path() {
        for (text, path) in [
            ("[redis]\nnodes = \"127.0.0.1:1\"", "redis.nodes"),
            ("[redis]\ndb = \"zero\"", "redis.db"),
            ("[redis]\nread_from = \"nearest\"", "redis.read_from"),
            (
                "[redis]\ndiscovery_interval = \"1\"",
                "redis.discovery_interval",
            ),
            ("[redis]\npasword = \"x\"", "redis.pasword"),
            (
                "[redis.timeouts]\nresponse = \"2x\"",
                "redis.timeouts.response",
            ),
            (
                "[redis.timeouts]\nattempt = \"1s\"",
                "redis.timeouts.attempt",
            ),
            (
                "[redis.retry]\nmax_attempts = -1",
                "redis.retry.max_attempts",
            ),
            (
                "[redis.health]\nejection_base = 5",
                "redis.health.ejection_base",
            ),
            ("[redis]\npassword = 123456", "redis.password"),
        ] {
            let err = read(text).unwrap_err();
            assert_eq!(err.path(), path, "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn a_password_never_shows() {
        let mut config = every_field_set();
        config.sentinels[0] = "redis://app:urlpass@127.0.0.1:26379".into();
        let shown = format!("{config:?} {:?}", config.build_at(&at()).unwrap());
        for secret in ["hunter2", "s3ntinel", "urlpass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // Not in the errors either: a password that is not a string (read from a parsed
        // value: `toml::Deserializer::parse` quotes the offending line of the document in
        // every error it gives), a bad URL with one.
        let value: toml::Value = toml::from_str("[redis]\npassword = 987654").unwrap();
        let err = config::deserialize::<Service, _>(value).unwrap_err();
        assert_eq!(err.path(), "redis.password");
        assert!(!err.to_string().contains("987654"), "{err}");
        let config = RedisConfig {
            nodes: vec!["redis://app:urlpass@nohost".into()],
            password: Some(Secret::new("hunter2")),
            ..RedisConfig::default()
        };
        let err = config.build_at(&at()).unwrap_err();
        assert_eq!(err.path(), "redis.nodes[0]");
        let text = format!("{err} {err:?} {config:?}");
        assert!(
            !text.contains("urlpass") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[cfg(feature = "tls")]
    #[tokio::test]
    async fn tls_files_are_checked_and_builder_errors_are_named_by_path() {
        use super::super::TlsConfig;
        let missing = std::env::temp_dir().join("switchover-config-test-no-such-file.pem");
        let mut config = nodes();
        config.tls = Some(TlsConfig {
            ca_file: Some(missing.clone()),
            ..Default::default()
        });
        let err = config.build_at(&at()).unwrap_err();
        assert_eq!(err.path(), "redis.tls.ca_file", "{err}");
        config.tls = Some(TlsConfig {
            roots: Some(super::super::RootsConfig::Webpki),
            client_cert_file: Some(missing),
            ..Default::default()
        });
        let err = config.build_at(&at()).unwrap_err();
        assert_eq!(err.path(), "redis.tls.client_key_file", "{err}");
        config.tls = None;
        config.sentinel_tls = Some(TlsConfig::default());
        assert_eq!(
            config.build_at(&at()).unwrap_err().path(),
            "redis.sentinel_tls"
        );
        // TLS and plaintext nodes mixed: refused by the builder's build, named here.
        let config = RedisConfig {
            nodes: vec![
                format!("rediss://{}", closed()),
                format!("redis://{}", closed()),
            ],
            ..RedisConfig::default()
        };
        let b = config.build_at(&at()).unwrap();
        let err = b.build().await.err().unwrap();
        let named = config.rejected(&at(), err.config_error().unwrap());
        assert_eq!(named.path(), "redis.nodes");
    }
}

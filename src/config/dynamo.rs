//! Config of a DynamoDB table handle: [`TableConfig`], built into a
//! [`TableBuilder`](crate::dynamo::TableBuilder).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::health::HealthConfig;
use super::retry::{BudgetConfig, RetryConfig};
use super::route::RouterConfig;
use super::section::Section;
use crate::dynamo::{Canary, RegionConfig, Table, TableBuilder, Timeouts, WriteMode};
use crate::observe::Observe;
use crate::route::LowestLatency;

/// A [`Table`] from a config file. Every field but `name` and `regions` is optional and keeps
/// the [`TableBuilder`]'s default (see its table); [`build_at`](Section::build_at) validates
/// everything the builder would refuse at build, naming the value by its path
/// (`dynamodb.timeouts.attempt`).
///
/// ```toml
/// [dynamodb]
/// name = "orders"
/// write_mode = "primary_only"        # or "any_healthy"
/// read_policy = "active"             # or "lowest_latency"
/// heartbeat = "200ms"                # or "off"
/// suspect_after = "100ms"            # or "off"
/// canary = "describe_table"          # or { get_item = { pk = "canary" } }
/// failback = "30s"                   # or "manual" (the [router] section's knob)
///
/// [[dynamodb.regions]]
/// name = "eu-west-1"
/// endpoint = "http://127.0.0.1:8000" # left out: built from your SdkConfig
/// table_name = "orders-euw1"         # left out: `name`
///
/// [dynamodb.timeouts]
/// connect = "250ms"
/// attempt = "500ms"
/// operation = "2s"
///
/// [dynamodb.retry]                   # over the table's own default policy
/// max_attempts = 4
///
/// [dynamodb.budget]                  # present: the table draws retries from a budget
/// capacity = 500
///
/// [dynamodb.health]
/// failure_threshold = 2
///
/// [dynamodb.observe]
/// name = "dynamodb:orders"
/// timeline_capacity = 256
/// ```
///
/// Credentials are never config: a region with an `endpoint` signs with placeholder keys
/// (DynamoDB Local) and one without is built from the `SdkConfig` you pass to
/// [`builder_with_sdk`](Self::builder_with_sdk), whose credentials provider it uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableConfig {
    /// The logical table name (see [`Table::builder`]). Required.
    pub name: String,
    /// The regions, in order of preference. At least one.
    pub regions: Vec<RegionEntry>,
    /// See [`TableBuilder::timeouts`].
    pub timeouts: TimeoutsConfig,
    /// See [`TableBuilder::retry_policy`]; built over the table's own default policy.
    pub retry: RetryConfig,
    /// See [`TableBuilder::budget`]; left out, no budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// See [`TableBuilder::health`]; applied after the table's own health defaults.
    pub health: HealthConfig,
    /// The router's knobs (`failback`); see [`TableBuilder::failback`].
    pub router: RouterConfig,
    /// See [`TableBuilder::heartbeat`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<Option<Duration>>,
    /// See [`TableBuilder::suspect_after`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub suspect_after: Option<Option<Duration>>,
    /// See [`TableBuilder::canary`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryConfig>,
    /// See [`TableBuilder::write_mode`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_mode: Option<WriteModeConfig>,
    /// See [`TableBuilder::read_policy`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_policy: Option<ReadPolicyConfig>,
    /// See [`TableBuilder::observe`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observe: Option<ObserveConfig>,
}

/// One region of a [`TableConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionEntry {
    /// The region's name (its id in events, errors and health checks). Required.
    pub name: String,
    /// An endpoint URL (see [`RegionConfig::endpoint`]); left out, the client is built from
    /// the `SdkConfig` given to [`TableConfig::builder_with_sdk`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The physical table name in this region (see [`RegionConfig::table_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
}

/// [`Timeouts`] from a config file; every field defaults to [`Timeouts::new`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// See [`Timeouts::connect`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<Duration>,
    /// See [`Timeouts::attempt`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt: Option<Duration>,
    /// See [`Timeouts::operation`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub operation: Option<Duration>,
}

impl TimeoutsConfig {
    /// The timeouts this config says, over [`Timeouts::new`].
    pub fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::new();
        if let Some(d) = self.connect {
            t = t.connect(d);
        }
        if let Some(d) = self.attempt {
            t = t.attempt(d);
        }
        if let Some(d) = self.operation {
            t = t.operation(d);
        }
        t
    }
}

/// A [`Canary`] from a config file: `"describe_table"`, or `{ get_item = { pk = "canary" } }`
/// (a key of string attributes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CanaryConfig {
    /// [`Canary::DescribeTable`].
    DescribeTable,
    /// [`Canary::GetItem`] of this key, every attribute a string (`S`).
    GetItem(BTreeMap<String, String>),
}

impl CanaryConfig {
    /// The canary.
    pub fn canary(&self) -> Canary {
        match self {
            CanaryConfig::DescribeTable => Canary::DescribeTable,
            CanaryConfig::GetItem(key) => Canary::GetItem(
                key.iter()
                    .map(|(k, v)| (k.clone(), AttributeValue::S(v.clone())))
                    .collect(),
            ),
        }
    }
}

/// A [`WriteMode`] from a config file: `"primary_only"` or `"any_healthy"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteModeConfig {
    /// [`WriteMode::PrimaryOnly`].
    PrimaryOnly,
    /// [`WriteMode::AnyHealthy`].
    AnyHealthy,
}

/// The read policies a config file can name: `"active"` or `"lowest_latency"` (your own
/// [`ReadPolicy`](crate::route::ReadPolicy) is code: set it on the builder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicyConfig {
    /// The active region ([`PrimaryOnly`](crate::route::PrimaryOnly), the default).
    Active,
    /// The nearest healthy region ([`LowestLatency`]).
    LowestLatency,
}

/// An [`Observe`] from a config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObserveConfig {
    /// See [`Observe::new`]; left out, `dynamodb:{name}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// See [`Observe::timeline_capacity`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline_capacity: Option<usize>,
}

impl TableConfig {
    /// [`build_at`](Section::build_at) with `sdk` for the regions that have no `endpoint`
    /// (see [`RegionConfig::from_sdk_config`]).
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the first rejected value.
    pub fn builder_with_sdk(
        &self,
        sdk: &SdkConfig,
        at: &ConfigPath,
    ) -> Result<TableBuilder, InvalidConfig> {
        self.builder(Some(sdk), at)
    }

    fn builder(
        &self,
        sdk: Option<&SdkConfig>,
        at: &ConfigPath,
    ) -> Result<TableBuilder, InvalidConfig> {
        if self.name.trim().is_empty() {
            return Err(at.invalid("name", "must not be empty"));
        }
        let timeouts = self.timeouts.timeouts();
        timeouts.validate().map_err(|e| {
            let field = e.field().strip_suffix("_timeout").unwrap_or(e.field());
            at.join("timeouts").invalid(field, e.reason())
        })?;
        let mut b = Table::builder(self.name.clone()).timeouts(timeouts);
        for (i, r) in self.regions.iter().enumerate() {
            let here = at.join(&format!("regions[{i}]"));
            if r.name.trim().is_empty() {
                return Err(here.invalid("name", "must not be empty"));
            }
            if self.regions[..i].iter().any(|o| o.name == r.name) {
                return Err(here.invalid("name", format!("region `{}` is listed twice", r.name)));
            }
            if r.table_name.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(here.invalid("table_name", "must not be empty"));
            }
            let region = match (&r.endpoint, sdk) {
                (Some(url), _) if url.trim().is_empty() => {
                    return Err(here.invalid("endpoint", "must not be empty"));
                }
                (Some(url), _) => RegionConfig::endpoint(&r.name, url),
                (None, Some(sdk)) => RegionConfig::from_sdk_config(&r.name, sdk),
                (None, None) => {
                    return Err(here.invalid(
                        "endpoint",
                        "required unless the table is built with an SdkConfig \
                         (TableConfig::builder_with_sdk)",
                    ));
                }
            };
            b = b.region(match &r.table_name {
                Some(t) => region.table_name(t),
                None => region,
            });
        }
        if self.retry != RetryConfig::default() {
            let base = TableBuilder::default_policy(&timeouts).map_err(|e| at.rejected(e))?;
            b = b.retry_policy(self.retry.build_from(&base, &at.join("retry"))?);
        }
        if let Some(budget) = &self.budget {
            b = b.budget(budget.build_at(&at.join("budget"))?);
        }
        if self.health != HealthConfig::default() {
            let settings = self.health.build_at(&at.join("health"))?;
            b = b.health(move |h| settings.apply(h));
        }
        if let Some(f) = self.router.build_at(&at.join("router"))?.failback() {
            b = b.failback(f);
        }
        if let Some(h) = self.heartbeat {
            b = b.heartbeat(h);
        }
        if let Some(s) = self.suspect_after {
            b = b.suspect_after(s);
        }
        if let Some(c) = &self.canary {
            b = b.canary(c.canary());
        }
        match self.write_mode {
            Some(WriteModeConfig::PrimaryOnly) => b = b.write_mode(WriteMode::PrimaryOnly),
            Some(WriteModeConfig::AnyHealthy) => b = b.write_mode(WriteMode::AnyHealthy),
            None => {}
        }
        if self.read_policy == Some(ReadPolicyConfig::LowestLatency) {
            b = b.read_policy(LowestLatency);
        }
        if let Some(o) = &self.observe {
            let name = o
                .name
                .clone()
                .unwrap_or_else(|| format!("dynamodb:{}", self.name));
            let mut observe = Observe::new(name);
            if let Some(n) = o.timeline_capacity {
                observe = observe.timeline_capacity(n);
            }
            b = b.observe(observe);
        }
        b.validate().map_err(|e| at.rejected(e))?;
        Ok(b)
    }
}

impl Section for TableConfig {
    type Output = TableBuilder;

    /// Checks every value the [`TableBuilder`] checks at build (names, regions, timeouts, the
    /// retry policy and health settings against the table's defaults) and returns the builder,
    /// ready for [`build`](TableBuilder::build) or for more code-only knobs (a read policy of
    /// your own). Every region needs an `endpoint` here; regions built from an `SdkConfig`
    /// go through [`TableConfig::builder_with_sdk`].
    fn build_at(&self, at: &ConfigPath) -> Result<TableBuilder, InvalidConfig> {
        self.builder(None, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::retry::Jitter;
    use crate::route::Failback;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A service's config with the table under `[dynamodb]`.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Service {
        dynamodb: TableConfig,
    }

    fn read(text: &str) -> Result<TableConfig, InvalidConfig> {
        let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
        config::deserialize::<Service, _>(de).map(|s| s.dynamodb)
    }

    fn at() -> ConfigPath {
        ConfigPath::new("dynamodb")
    }

    fn minimal() -> TableConfig {
        TableConfig {
            name: "orders".into(),
            regions: vec![RegionEntry {
                name: "r1".into(),
                endpoint: Some("http://127.0.0.1:9".into()),
                table_name: None,
            }],
            ..TableConfig::default()
        }
    }

    fn every_field_set() -> TableConfig {
        TableConfig {
            name: "orders".into(),
            regions: vec![
                RegionEntry {
                    name: "eu-west-1".into(),
                    endpoint: Some("http://127.0.0.1:9".into()),
                    table_name: Some("orders-euw1".into()),
                },
                RegionEntry {
                    name: "eu-central-1".into(),
                    endpoint: Some("http://127.0.0.1:10".into()),
                    table_name: None,
                },
            ],
            timeouts: TimeoutsConfig {
                connect: Some(ms(200)),
                attempt: Some(ms(800)),
                operation: Some(ms(3000)),
            },
            retry: RetryConfig {
                max_attempts: Some(5),
                backoff: Some(crate::config::BackoffConfig {
                    jitter: Some(Jitter::None),
                    ..Default::default()
                }),
                ..RetryConfig::default()
            },
            budget: Some(BudgetConfig {
                capacity: Some(50),
                ..BudgetConfig::default()
            }),
            health: HealthConfig {
                failure_threshold: Some(3),
                ..HealthConfig::default()
            },
            router: RouterConfig {
                failback: Some(Failback::After(ms(60_000))),
            },
            heartbeat: Some(None),
            suspect_after: Some(Some(ms(150))),
            canary: Some(CanaryConfig::GetItem(BTreeMap::from([(
                "pk".into(),
                "canary".into(),
            )]))),
            write_mode: Some(WriteModeConfig::AnyHealthy),
            read_policy: Some(ReadPolicyConfig::LowestLatency),
            observe: Some(ObserveConfig {
                name: Some("orders-table".into()),
                timeline_capacity: Some(64),
            }),
        }
    }

    #[test]
    fn a_table_config_round_trips_through_toml() {
        let config = every_field_set();
        let text = toml::to_string(&Service {
            dynamodb: config.clone(),
        })
        .unwrap();
        for line in [
            "heartbeat = \"off\"",
            "suspect_after = \"150ms\"",
            "write_mode = \"any_healthy\"",
            "read_policy = \"lowest_latency\"",
            "attempt = \"800ms\"",
            "[dynamodb.canary.get_item]",
            "[[dynamodb.regions]]",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(read(&text).unwrap(), config);

        let text = "[dynamodb]\nname = \"t\"\ncanary = \"describe_table\"\nheartbeat = \"1s\"\n";
        let read_back = read(text).unwrap();
        assert_eq!(read_back.canary, Some(CanaryConfig::DescribeTable));
        assert_eq!(read_back.heartbeat, Some(Some(ms(1000))));
        let written = toml::to_string(&Service {
            dynamodb: read_back.clone(),
        })
        .unwrap();
        assert_eq!(read(&written).unwrap(), read_back);
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_builds_the_table_it_says() {
        let table = every_field_set().build_at(&at()).unwrap().build().unwrap();
        assert_eq!(
            table.regions().map(|r| r.as_str()).collect::<Vec<_>>(),
            ["eu-west-1", "eu-central-1"]
        );
        assert_eq!(table.region_client("eu-west-1").unwrap().1, "orders-euw1");
        assert_eq!(table.region_client("eu-central-1").unwrap().1, "orders");
        let policy = table.retry_policy();
        assert_eq!(policy.max_attempts(), 5);
        // Over the table's own default: its backoff base and cap, its deadline (the operation
        // timeout of this file), only the jitter changed.
        assert_eq!(policy.deadline(), Some(ms(3000)));
        assert_eq!(policy.backoff().base(), ms(25));
        assert_eq!(policy.backoff().cap(), ms(250));
        assert_eq!(policy.backoff().jitter(), Jitter::None);
        assert_eq!(table.inner.attempt_guard, ms(900));
        assert_eq!(table.inner.write_mode, WriteMode::AnyHealthy);
        assert_eq!(table.inner.budget.as_ref().map(|b| b.capacity()), Some(50));
        assert_eq!(table.timeline().name(), "orders-table");
        assert_eq!(table.timeline().capacity(), 64);
        let router = format!("{:?}", table.router());
        assert!(router.contains("failback: After(60s)"), "{router}");
        let health = table.tracker().core().config;
        assert_eq!(health.failure_threshold, 3);
        assert_eq!(health.heartbeat, None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_config_builds_the_builders_defaults() {
        let ours = minimal().build_at(&at()).unwrap();
        let theirs =
            Table::builder("orders").region(RegionConfig::endpoint("r1", "http://127.0.0.1:9"));
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        let (ours, theirs) = (ours.build().unwrap(), theirs.build().unwrap());
        assert_eq!(
            format!("{:?}", ours.retry_policy()),
            format!("{:?}", theirs.retry_policy())
        );
        assert_eq!(
            format!("{:?}", ours.tracker().core().config),
            format!("{:?}", theirs.tracker().core().config)
        );
        assert_eq!(ours.inner.attempt_guard, theirs.inner.attempt_guard);
        assert_eq!(ours.inner.suspect_after, theirs.inner.suspect_after);
        assert_eq!(
            format!("{:?}", ours.router()),
            format!("{:?}", theirs.router())
        );
        assert_eq!(ours.timeline().name(), theirs.timeline().name());
        assert_eq!(ours.timeline().capacity(), theirs.timeline().capacity());
        assert!(ours.inner.budget.is_none());
        assert_eq!(ours.inner.write_mode, theirs.inner.write_mode);
        // An empty [dynamodb.retry] is the default policy too.
        let text = "[dynamodb]\nname = \"orders\"\n[dynamodb.retry]\n[dynamodb.health]\n";
        assert_eq!(read(text).unwrap().retry, RetryConfig::default());
    }

    #[tokio::test(start_paused = true)]
    async fn every_refused_value_names_its_path() {
        type Change = Box<dyn Fn(&mut TableConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.name = " ".into()), "dynamodb.name"),
            (Box::new(|c| c.regions.clear()), "dynamodb.regions"),
            (
                Box::new(|c| c.regions[0].name = String::new()),
                "dynamodb.regions[0].name",
            ),
            (
                Box::new(|c| c.regions[0].endpoint = None),
                "dynamodb.regions[0].endpoint",
            ),
            (
                Box::new(|c| c.regions[0].endpoint = Some(String::new())),
                "dynamodb.regions[0].endpoint",
            ),
            (
                Box::new(|c| c.regions[0].table_name = Some(" ".into())),
                "dynamodb.regions[0].table_name",
            ),
            (
                Box::new(|c| c.regions.push(c.regions[0].clone())),
                "dynamodb.regions[1].name",
            ),
            (
                Box::new(|c| c.timeouts.connect = Some(Duration::ZERO)),
                "dynamodb.timeouts.connect",
            ),
            (
                Box::new(|c| c.timeouts.attempt = Some(ms(5000))),
                "dynamodb.timeouts.attempt",
            ),
            (
                Box::new(|c| c.timeouts.operation = Some(Duration::ZERO)),
                "dynamodb.timeouts.operation",
            ),
            (
                Box::new(|c| c.retry.max_attempts = Some(0)),
                "dynamodb.retry.max_attempts",
            ),
            (
                Box::new(|c| {
                    c.retry.backoff = Some(crate::config::BackoffConfig {
                        factor: Some(0.5),
                        ..Default::default()
                    })
                }),
                "dynamodb.retry.backoff.factor",
            ),
            (
                Box::new(|c| {
                    c.budget = Some(BudgetConfig {
                        capacity: Some(0),
                        ..Default::default()
                    })
                }),
                "dynamodb.budget.capacity",
            ),
            (
                Box::new(|c| c.health.failure_threshold = Some(0)),
                "dynamodb.health.failure_threshold",
            ),
            (
                Box::new(|c| c.heartbeat = Some(Some(Duration::ZERO))),
                "dynamodb.heartbeat",
            ),
            (
                Box::new(|c| c.suspect_after = Some(Some(ms(500)))),
                "dynamodb.suspect_after",
            ),
        ];
        for (change, path) in cases {
            let mut config = minimal();
            change(&mut config);
            let err = config.build_at(&at()).err().unwrap_or_else(|| {
                panic!("{path}: accepted {config:?}");
            });
            assert_eq!(err.path(), path, "{err}");
            assert!(err.to_string().starts_with(&format!("invalid `{path}`")));
        }
    }

    #[test]
    fn every_unreadable_value_names_its_path() {
        for (text, path) in [
            ("[dynamodb]\nheartbeat = \"soon\"", "dynamodb.heartbeat"),
            ("[dynamodb]\nsuspect_after = 3", "dynamodb.suspect_after"),
            ("[dynamodb]\nwrite_mode = \"both\"", "dynamodb.write_mode"),
            (
                "[dynamodb]\nread_policy = \"nearest\"",
                "dynamodb.read_policy",
            ),
            ("[dynamodb]\ncanary = \"ping\"", "dynamodb.canary"),
            ("[dynamodb]\nregion = []", "dynamodb.region"),
            (
                "[dynamodb.timeouts]\nattempt = \"2x\"",
                "dynamodb.timeouts.attempt",
            ),
            (
                "[dynamodb.timeouts]\nresponse = \"1s\"",
                "dynamodb.timeouts.response",
            ),
            (
                "[[dynamodb.regions]]\nname = \"a\"\nendpont = \"x\"",
                "dynamodb.regions[0].endpont",
            ),
            (
                "[dynamodb.retry]\nmax_attempts = -1",
                "dynamodb.retry.max_attempts",
            ),
            (
                "[dynamodb.observe]\ntimeline_capacity = \"x\"",
                "dynamodb.observe.timeline_capacity",
            ),
        ] {
            let err = read(text).unwrap_err();
            assert_eq!(err.path(), path, "{text}: {err}");
        }
    }
}

//! Config from files: serde structs for the retry executor, the budget, the health tracker
//! and the router, turned into the builders' values with the builders' own validation.
//!
//! Each struct is a [`Section`]: every field optional (left out, it keeps the builder's
//! default), durations written as `"250ms"` / `"2s"` ([`duration`]), unknown fields refused. A
//! rejected value is an [`InvalidConfig`] that names its dotted path, both when it cannot be
//! read ([`deserialize`]: `"2x"` is not a duration) and when a builder refuses it
//! ([`Section::build_at`]: a zero attempt count).
//!
//! ```
//! use serde::Deserialize;
//! use switchover::config::{self, BudgetConfig, ConfigPath, HealthConfig, RetryConfig, RouterConfig, Section};
//! use switchover::health::HealthTracker;
//!
//! /// The part of a service's config that says how it calls the payments API.
//! #[derive(Deserialize)]
//! struct PaymentsApi {
//!     #[serde(default)]
//!     retry: RetryConfig,
//!     #[serde(default)]
//!     budget: BudgetConfig,
//!     #[serde(default)]
//!     health: HealthConfig,
//!     #[serde(default)]
//!     router: RouterConfig,
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let text = r#"
//! [retry]
//! max_attempts = 4
//! deadline = "2s"
//!
//! [health]
//! ejection_base = "500ms"
//! "#;
//! let api: PaymentsApi = config::deserialize(toml::Deserializer::parse(text)?)?;
//! let at = ConfigPath::new("payments");
//! let policy = api.retry.build_at(&at.join("retry"))?;
//! let budget = api.budget.build_at(&at.join("budget"))?;
//! let health = api.health.build_at(&at.join("health"))?;
//! let tracker = health.apply(HealthTracker::builder().endpoints(["primary", "fallback"])).build()?;
//! assert_eq!(policy.max_attempts(), 4);
//! assert_eq!(budget.capacity(), 500);
//! assert_eq!(tracker.len(), 2);
//! # Ok(()) }
//! ```
//!
//! # Adding a section
//!
//! An adapter's config is one more file here: a struct of its builder's knobs (durations
//! through [`duration`], `#[serde(default, deny_unknown_fields)]`), nesting the core sections
//! where the builder takes their values, and a [`Section`] impl that builds each nested
//! section at `at.join("retry")` (over the adapter's own default policy with
//! [`RetryConfig::build_from`]) and maps its builder's [`ConfigError`](crate::ConfigError)s
//! with [`ConfigPath::rejected`], so every error reads `redis.timeouts.response`.

#[cfg(any(feature = "redis", feature = "postgres"))]
mod connections;
pub mod duration;
#[cfg(feature = "dynamodb")]
mod dynamo;
mod error;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod fields;
mod health;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod retry;
mod route;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod secret;
mod section;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "dynamodb")]
pub use dynamo::{
    CanaryConfig, ObserveConfig, ReadPolicyConfig, RegionEntry, TableConfig, TimeoutsConfig,
    WriteModeConfig,
};
pub use error::{ConfigPath, InvalidConfig};
pub use health::{FailureRateConfig, HealthConfig, HealthSettings};
#[cfg(feature = "postgres")]
pub use postgres::{PoolConfig, PostgresConfig, PostgresTimeoutsConfig};
#[cfg(feature = "redis")]
pub use redis::{ReadFromConfig, RedisConfig, RedisTimeoutsConfig};
pub use retry::{BackoffConfig, BudgetConfig, RetryConfig};
pub use route::{RouterConfig, RouterSettings};
pub use section::{Section, deserialize};
#[cfg(feature = "tls")]
pub use tls::{RootsConfig, TlsConfig};

//! Region-aware DynamoDB table handles that fail over between the regions of a Global Table.
//!
//! A [`Table`] is one logical table replicated in several regions. Build it from the table name
//! and an ordered list of [`RegionConfig`]s (the first is the preferred region); every call then
//! goes to the right region, and when a region fails the next one takes over, without the
//! caller changing a line.
//!
//! - **Any SDK operation** runs through the handle with a closure that receives the region's
//!   `Client` and physical table name: [`Table::read`] (eventually consistent reads),
//!   [`Table::write`] (writes, routed by the [`WriteMode`]) and [`Table::active`] (strongly
//!   consistent reads, conditional writes, transactions: always the active region). You keep
//!   the SDK's fluent builders.
//! - **Convenience calls** for the common item operations: [`Table::get_item`],
//!   [`Table::put_item`], [`Table::update_item`], [`Table::delete_item`], [`Table::query`].
//! - **Time limits by default** ([`Timeouts`]: connect 250 ms, attempt 500 ms, operation 2 s):
//!   the SDK sets none, so a black-holed region would hang calls forever.
//! - **One retry layer**: the clients the handle builds have the SDK's retries turned off; the
//!   handle retries with a [`RetryPolicy`](crate::retry::RetryPolicy), across regions. A client
//!   you pass in keeps its own retries, and the handle warns (a `WARN` event) that attempts
//!   multiply.
//! - **Classification** of every `SdkError` ([`classify`], [`FailureKind`]): refused
//!   connections and connect timeouts surely did not execute; timeouts, dispatch failures and
//!   5xx (`InternalServerError`, `ServiceUnavailable`) are transient and count against the
//!   region; throttling codes (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//!   `RequestLimitExceeded`) are retried in the same region and never fail over by default;
//!   `ConditionalCheckFailedException`, `ValidationException` and other 4xx are the caller's
//!   and return at once; `ResourceNotFoundException` is reported as
//!   [`FailureKind::TableNotFound`]: the table is missing in that region, a configuration
//!   error, not counted against the region.
//! - **Idempotency**: reads are idempotent; writes are not unless marked (a plain put of a
//!   whole item and a delete are marked for you; an update or a transaction is marked by you:
//!   `SET`-only updates and transactions with a `client_request_token` are idempotent, `ADD` is
//!   not). A failure that may have executed is retried only for idempotent calls.
//! - **Health**: every call's outcome feeds a [`HealthTracker`](crate::health::HealthTracker)
//!   (a region is down after 2 transient failures in a row by default); a [`Canary`] probe
//!   (`DescribeTable`, or a `GetItem` of a heartbeat key) brings it back, and optionally
//!   probes healthy regions as a heartbeat.
//! - **Failover and failback** by the [`Router`](crate::route::Router): the next region in order
//!   takes over as soon as the active one is down; the preferred region gets the traffic back
//!   only after it has stayed healthy for the failback delay (30 s by default).
//!   [`Table::evacuate`] drains a region for drills; [`Table::subscribe`] delivers every switch;
//!   every switch is also a `tracing` event (target `switchover::dynamo`).
//!
//! # Write modes and last-writer-wins
//!
//! With [`WriteMode::PrimaryOnly`] (the default) writes follow the router's single active
//! region. With [`WriteMode::AnyHealthy`] a failed write is retried at once in another healthy
//! region, before the router switches; that is faster, but two regions may take writes for the
//! same item for a moment, and a Global Table settles such conflicts by **last writer wins**: a
//! write can silently erase a concurrent one made in another region. Conditional writes,
//! strongly consistent reads and transactions always go to the active region in both modes.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use aws_sdk_dynamodb::types::AttributeValue;
//! use switchover::dynamo::{RegionConfig, Table};
//! use switchover::route::Failback;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // let sdk = aws_config::load_from_env().await;
//! // RegionConfig::from_sdk_config("eu-west-1", &sdk), ...
//! let table = Table::builder("orders")
//!     .region(RegionConfig::endpoint("eu-west-1", "http://127.0.0.1:8000"))
//!     .region(RegionConfig::endpoint("eu-central-1", "http://127.0.0.1:8001"))
//!     .failback(Failback::After(Duration::from_secs(60)))
//!     .build()?;
//!
//! let item = [
//!     ("pk".to_owned(), AttributeValue::S("order-1".into())),
//!     ("total".to_owned(), AttributeValue::N("42".into())),
//! ];
//! table.put_item(item.into()).send().await?; // idempotent: a whole-item put
//!
//! // Any operation, with the SDK's own builders, on the region of each attempt:
//! let out = table
//!     .read(|client, table| {
//!         client
//!             .get_item()
//!             .table_name(table)
//!             .key("pk", AttributeValue::S("order-1".into()))
//!             .send()
//!     })
//!     .send()
//!     .await?;
//! println!("{:?} from {}", out.item, table.active_region());
//! # Ok(()) }
//! ```

mod classify;
mod config;
mod error;
mod ops;
mod probe;
mod table;

pub use classify::{
    FailureKind, RESOURCE_NOT_FOUND, THROTTLING_CODES, TRANSIENT_CODES, classify, failure_kind,
};
pub use config::{Canary, RegionConfig, RegionName, Timeouts, WriteMode};
pub use error::Error;
pub use ops::{DeleteItem, GetItem, Item, PutItem, Query, UpdateItem};
pub use table::{Call, MAX_REGIONS, Table, TableBuilder};

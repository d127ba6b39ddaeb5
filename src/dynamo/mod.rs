//! Region-aware DynamoDB table handles that fail over between the regions of a Global Table.
//!
//! A [`Table`] is one logical table replicated in several regions: build it from the table
//! name and an ordered list of [`RegionConfig`]s (the first is the preferred region), and every
//! call goes to the right region; when a region fails, the next one takes over without the
//! caller changing a line. Calls take your SDK builders as they are ([`Table::read`],
//! [`Table::write`], [`Table::active`]) or use the item shorthands ([`Table::get_item`],
//! [`Table::put_item`], [`Table::update_item`], [`Table::delete_item`], [`Table::query`]).
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
//!
//! # How it works
//!
//! Each call runs through the crate's one attempt loop ([`Router::call`](crate::route::Router::call)):
//! every attempt goes to the region the access picks (a read: the read policy's region, then
//! a region that has not failed in this call; a write: the active region, or with
//! [`WriteMode::AnyHealthy`] an untried healthy one; [`Table::active`], conditional writes and
//! strongly consistent reads: always the active region), is bounded by the [`Timeouts`], and its
//! outcome, read by [`classify`] into a [`FailureKind`], feeds that region's health. A region
//! is down after a few transient failures in a row and the router moves writes to the next
//! one; a [`Canary`] probe brings it back, and the router fails back after the failback delay.
//! Throttling is retried in the same region and never fails over; a missing table
//! ([`FailureKind::TableNotFound`]) is a configuration error, returned at once and never
//! counted against the region. The clients the handle builds have the SDK's own retries off,
//! so there is one retry layer. Defaults are listed on [`TableBuilder`].
//!
//! # Observability
//!
//! [`Table::health`] is the table's health document (`dynamodb:region` checks: state, active,
//! suspect, latency; `warn` when failed over or a region is out, `fail` only when no region can
//! take writes), [`Table::timeline`] its incident timeline with the phases of each failover,
//! and with the `metrics` feature its router reports the `switchover.*` metrics under the
//! `router` label `dynamodb:{table}` ([`TableBuilder::observe`] renames it).
//!
//! With [`WriteMode::AnyHealthy`] two regions may take writes for the same item for a moment,
//! and a Global Table settles such conflicts by **last writer wins**; see the variant's docs.

mod builder;
mod call;
mod classify;
mod config;
mod error;
mod observe;
mod ops;
mod probe;
mod table;
#[cfg(test)]
mod tests;

pub use builder::{MAX_REGIONS, TableBuilder};
pub use call::Call;
pub use classify::{
    FailureKind, RESOURCE_NOT_FOUND, THROTTLING_CODES, TRANSIENT_CODES, classify, failure_kind,
};
pub use config::{Canary, RegionConfig, RegionName, Timeouts, WriteMode};
pub use error::Error;
pub use ops::{DeleteItem, GetItem, Item, PutItem, Query, UpdateItem};
pub use table::Table;

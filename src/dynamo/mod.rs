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
//! # Silent regions
//!
//! A region that stops answering without refusing (a frozen process, a black-holed network)
//! is found by silence, not by errors:
//!
//! - an attempt unanswered for the suspect delay ([`TableBuilder::suspect_after`], 100 ms, or
//!   4 × the region's average latency if longer) makes its region **suspect**, and so does a
//!   heartbeat the tracker cuts at its 300 ms bound; the first silence of an episode counts one
//!   failure and sends one confirming canary (bounded by 2 × the suspect delay) whose miss
//!   counts another: with the failure threshold of 2 the region is **down** about 300 ms after
//!   it went silent, the heartbeat alone takes it down within 800 ms;
//! - a read in a suspect region is re-sent at once to a region that is not (it was a read:
//!   nothing to undo), and later reads skip the suspect region;
//! - a write (or a strongly consistent read) for a suspect active region waits for the verdict
//!   (an answer, or down), at most the canary's bound, instead of each waiting out the
//!   attempt timeout; in [`WriteMode::PrimaryOnly`] writes go to the next region only once the
//!   active one is declared down, never while it is merely suspect;
//! - an attempt still in flight when its region is declared down ends then: retried elsewhere
//!   if idempotent, else returned as a timeout that may have executed.
//!
//! Any answer (a success, a service error) or a canary that answers clears the suspicion. The
//! heartbeat ([`TableBuilder::heartbeat`], every 200 ms per region that is up, each bounded by
//! 300 ms) costs 5 requests per second per region per table handle (clones share it); a region
//! that is down is probed every 500 ms instead. After a resumed region answers again, the
//! table fails back within its remaining ejection (at most 5 s, the ejection cap), two probes
//! (≤ 0.5 s) and the failback delay.
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
//!
//! # One decision for the fleet
//!
//! Each handle decides alone by default, so in a partial outage the instances of a service
//! may write to two regions at once. [`TableBuilder::authority`] with a
//! [`fleet::FleetLease`] makes every instance follow one control record instead (a lease in a
//! DynamoDB table you name, written with conditional writes only): writes go only to the
//! region it names, and a write whose instance cannot reach that region waits for it or for
//! a new decision within its deadline, then fails; it never writes elsewhere. See [`fleet`].

mod builder;
mod call;
mod classify;
mod config;
mod error;
pub mod fleet;
mod observe;
mod ops;
mod probe;
mod suspect;
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

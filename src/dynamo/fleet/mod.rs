//! One decision for the whole fleet: a lease in a control store the user runs (a DynamoDB table
//! with conditional writes, [`DynamoLeaseStore`], or any [`LeaseStore`]) names the region
//! every instance writes to.
//!
//! Every instance of a service builds its [`Table`](super::Table) with
//! [`TableBuilder::authority`](super::TableBuilder::authority)`(`[`FleetLease::dynamodb`]`(..))`.
//! Then, every poll interval (250 ms), each instance:
//!
//! 1. writes its **report** — the regions its own health tracker holds unavailable — into the
//!    control record, beside the decision (when it changed, else every second);
//! 2. reads the record with a strongly consistent read;
//! 3. if it holds the **lease** (or the lease expired: takeover), decides and writes, under
//!    the condition that the record's `version` is the one it read: the lease renewed, and
//!    if at least half the instances that reported in the last 3 s cannot reach the active
//!    region while another is reachable by more, a new active region with the epoch + 1 (so a
//!    region only the holder can reach is not kept active); after every instance has reached
//!    a preferred region for 30 s, back to it;
//! 4. **follows** the record through a [`Follower`](crate::route::Follower): the router routes
//!    writes to the named region from the next call on, whatever its own health says.
//!
//! An instance that cannot reach the named region does not write elsewhere, in any
//! [`WriteMode`](super::WriteMode): its writes retry there within their deadline and fail with
//! the handle's [`Error`](super::Error) ([`Error::is_timeout`](super::Error::is_timeout) or a
//! connect failure), and its report moves the fleet if enough instances share its view. A
//! record that names an unknown region, goes back in epoch, or does not parse is reported
//! ([`AuthorityEvent::Rejected`](crate::route::AuthorityEvent::Rejected) and a warning) and
//! ignored. While the control store is unreachable an instance keeps the last record (or, with
//! [`WhenUnreachable::FallBackAfter`](crate::route::WhenUnreachable::FallBackAfter), lets its
//! own health decide).
//!
//! Cost per instance: 4 strongly consistent reads a second, a report write a second, and from
//! the holder a renewal about every 0.7 s.

mod decide;
mod lease;
mod record;
mod store;

pub use lease::{FleetLease, FleetLeaseBuilder};
pub use record::{ControlRecord, Report};
pub use store::{DynamoLeaseStore, LeaseStore, StoreError};

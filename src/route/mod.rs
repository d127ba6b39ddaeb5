//! The failover router: which endpoint takes writes now, which serves a read, when to fail
//! over and when to fail back.
//!
//! (docs completed below)

mod event;
mod read;
mod router;
mod run;
mod slots;

pub use event::{RouteEvent, SwitchReason};
pub use read::{
    LowestLatency, PreferReplica, PrimaryOnly, ReadCandidates, ReadPolicy, ReplicaOnly, RoundRobin,
};
pub use router::{Active, Failback, Router, RouterBuilder, SwitchError};
pub use run::RoutedCall;

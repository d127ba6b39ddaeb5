//! What an authority says and what a follower reports: [`Record`], [`AuthorityError`], the
//! [`Authority`] trait, [`WhenUnreachable`], [`Rejection`], [`AuthorityEvent`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// One decision of an authority: the endpoint it names as primary, and the epoch of that
/// decision (epochs never go back; a new decision has a higher one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<K> {
    pub(super) primary: K,
    pub(super) epoch: u64,
    pub(super) decided_at: Option<SystemTime>,
    pub(super) reason: Option<Arc<str>>,
}

impl<K> Record<K> {
    /// A record naming `primary` at `epoch`.
    pub fn new(primary: K, epoch: u64) -> Self {
        Record {
            primary,
            epoch,
            decided_at: None,
            reason: None,
        }
    }

    /// When the decision was recorded, by the wall clock of whoever recorded it (followers
    /// report how long they took to follow it).
    pub fn decided_at(mut self, at: SystemTime) -> Self {
        self.decided_at = Some(at);
        self
    }

    /// Why the decision was taken (for events and logs).
    pub fn with_reason(mut self, reason: impl Into<Arc<str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The endpoint named as primary.
    pub fn primary(&self) -> &K {
        &self.primary
    }

    /// The epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When it was decided, if the authority says.
    pub fn decided(&self) -> Option<SystemTime> {
        self.decided_at
    }

    /// Why, if the authority says.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// Why one read of an [`Authority`] gave no record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorityError {
    unparsable: bool,
    pub(super) reason: Arc<str>,
}

impl AuthorityError {
    /// The authority could not be reached (or did not answer in time).
    pub fn unreachable(reason: impl Into<Arc<str>>) -> Self {
        AuthorityError {
            unparsable: false,
            reason: reason.into(),
        }
    }

    /// The authority answered with a record that does not parse.
    pub fn unparsable(reason: impl Into<Arc<str>>) -> Self {
        AuthorityError {
            unparsable: true,
            reason: reason.into(),
        }
    }

    /// `true` for a record that does not parse, `false` for an unreachable authority.
    pub fn is_unparsable(&self) -> bool {
        self.unparsable
    }

    /// The reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unparsable {
            write!(f, "authority record does not parse: {}", self.reason)
        } else {
            write!(f, "authority unreachable: {}", self.reason)
        }
    }
}

impl std::error::Error for AuthorityError {}

/// An external decision source: a lease record, Patroni's leader, a Sentinel quorum. One call
/// of [`read`](Self::read) is one look at it (the [`Follower`](super::Follower) calls it every poll interval);
/// it may also do the protocol's own work on the way (renew a lease, write a report).
pub trait Authority<K>: Send + Sync + 'static {
    /// The authority's current record.
    fn read(&self) -> impl Future<Output = Result<Record<K>, AuthorityError>> + Send;
}

/// What a [`Follower`](super::Follower) does while its authority is unreachable.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenUnreachable {
    /// Keep following the last good record (the default): no instance moves on its own view.
    #[default]
    KeepLast,
    /// After the authority has been unreachable this long, let local health decide again (the
    /// roles the follower set are cleared) until a record is read again.
    FallBackAfter(Duration),
}

/// Why a record was ignored (the last good record stands).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection<K> {
    /// It names an endpoint the router does not route.
    UnknownEndpoint {
        /// The endpoint named.
        primary: K,
        /// The record's epoch.
        epoch: u64,
    },
    /// Its epoch is below the last good one.
    EpochWentBack {
        /// The record's epoch.
        epoch: u64,
        /// The last good epoch.
        last: u64,
    },
    /// Same epoch as the last good record, another primary.
    Conflicting {
        /// The endpoint named.
        primary: K,
        /// The epoch.
        epoch: u64,
    },
    /// It does not parse.
    Unparsable {
        /// Why.
        reason: Arc<str>,
    },
}

impl<K: fmt::Debug> fmt::Display for Rejection<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::UnknownEndpoint { primary, epoch } => {
                write!(f, "epoch {epoch} names {primary:?}, which is not routed")
            }
            Rejection::EpochWentBack { epoch, last } => {
                write!(f, "epoch {epoch} is below the last good epoch {last}")
            }
            Rejection::Conflicting { primary, epoch } => {
                write!(
                    f,
                    "epoch {epoch} names {primary:?}, another primary than before"
                )
            }
            Rejection::Unparsable { reason } => write!(f, "record does not parse: {reason}"),
        }
    }
}

/// What a [`Follower`](super::Follower) saw, sent to each [subscriber](super::Follower::subscribe) in order.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorityEvent<K> {
    /// A new record is followed: the router routes writes to `primary` from now on.
    Followed {
        /// The endpoint named.
        primary: K,
        /// The record's epoch.
        epoch: u64,
        /// The router's generation afterwards.
        generation: u64,
        /// Whether local health can reach it (else writes fail until it can, or a new record).
        reachable: bool,
        /// From the record's [`decided`](Record::decided) time to now, by this host's clock.
        lag: Option<Duration>,
        /// When.
        at: Instant,
    },
    /// A record was ignored; the last good one stands.
    Rejected {
        /// Why.
        rejection: Rejection<K>,
        /// When.
        at: Instant,
    },
    /// The authority could not be read (the first failure of an episode).
    Unreachable {
        /// Why.
        reason: Arc<str>,
        /// The epoch still followed (0: none yet).
        keeping: u64,
        /// When.
        at: Instant,
    },
    /// Unreachable for the [`WhenUnreachable::FallBackAfter`] delay: local health decides.
    FellBack {
        /// When.
        at: Instant,
    },
    /// The authority answered again after an unreachable episode.
    Reachable {
        /// When.
        at: Instant,
    },
}

use std::sync::Arc;
use std::time::Duration;

use super::classify::{breaks_connection, find_pg_error, is_failover_error};
use super::role::{ServerRole, TargetRole};
use crate::error::{Classification, Classify};
use crate::retry::StopReason;

/// An error of the Postgres failover pool.
///
/// `Display` describes what the pool was doing; the cause (a [`tokio_postgres::Error`], a
/// timeout, an earlier failure) is the [`source`](std::error::Error::source). Host names appear as
/// `host:port`; passwords never appear, and neither do user names in this layer's messages (the
/// server's own message in a source, such as a failed password authentication, may name the
/// user).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection of the wanted role could be handed out within the acquire timeout. The
    /// source is the last failure seen while trying, when there was one.
    #[error("no {role} connection within the acquire timeout of {timeout:?}")]
    AcquireTimeout {
        /// The role asked for.
        role: TargetRole,
        /// The acquire timeout.
        timeout: Duration,
        /// The last failure seen while trying.
        #[source]
        last: Option<Box<Error>>,
    },
    /// Connecting to (or logging in to) a host failed.
    #[error("could not connect to {host}")]
    Connect {
        /// The host, as `host:port`.
        host: Arc<str>,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Connecting to a host did not finish (TCP, TLS and login) within the login timeout.
    #[error("connecting to {host} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The host, as `host:port`.
        host: Arc<str>,
        /// The login timeout.
        timeout: Duration,
    },
    /// A host answered but is not of the wanted role.
    #[error("{host} is a {actual}, not usable as {wanted}")]
    WrongRole {
        /// The host, as `host:port`.
        host: Arc<str>,
        /// The role the server reported.
        actual: ServerRole,
        /// The role asked for.
        wanted: TargetRole,
    },
    /// No host is currently known to have the wanted role (every host is down or of another
    /// role).
    #[error("no host is known to be usable as {role}")]
    NoHost {
        /// The role asked for.
        role: TargetRole,
    },
    /// A statement or transaction failed and was not (or no longer) retried.
    #[error("{reason} after {attempts} attempt{s}", s = if *.attempts == 1 { "" } else { "s" })]
    Query {
        /// Why the runner stopped.
        reason: StopReason,
        /// How many attempts were made.
        attempts: u32,
        /// The last error (`None` when the last attempt was cut by the runner's deadline).
        #[source]
        source: Option<Box<Error>>,
    },
    /// A statement or transaction on a pooled connection did not finish within the query
    /// timeout. The connection is dropped.
    #[error("no reply from {host} within the query timeout of {timeout:?}")]
    QueryTimeout {
        /// The host the connection was on, as `host:port`.
        host: Arc<str>,
        /// The query timeout.
        timeout: Duration,
    },
    /// An error from the client on a pooled connection.
    #[error("postgres error on {host}")]
    Postgres {
        /// The host the connection was on, as `host:port`.
        host: Arc<str>,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection was lost after `COMMIT` was sent and before its reply arrived: the
    /// transaction may or may not have committed. Never retried unless the operation was
    /// declared idempotent; check the data before acting on it.
    #[error("outcome unknown: the connection to {host} was lost after COMMIT was sent")]
    OutcomeUnknown {
        /// The host the transaction ran on, as `host:port`.
        host: Arc<str>,
        /// The client's error (`None` when the reply simply never came within the deadline).
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// The connection was found closed before `COMMIT` could be sent: nothing committed.
    #[error("the connection to {host} was lost before COMMIT")]
    ConnectionLost {
        /// The host the connection was on, as `host:port`.
        host: Arc<str>,
    },
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
}

impl Error {
    /// `true` for [`Error::OutcomeUnknown`], also when it is the cause of an
    /// [`Error::Query`].
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Error::OutcomeUnknown { .. } => true,
            Error::Query { source, .. } => source.as_ref().is_some_and(|s| s.is_outcome_unknown()),
            _ => false,
        }
    }

    /// `true` when the pool gave up waiting for a connection.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::AcquireTimeout { .. }
                | Error::ConnectTimeout { .. }
                | Error::QueryTimeout { .. }
        )
    }

    /// The client error underneath, if there is one.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        find_pg_error(self)
    }

    /// The SQLSTATE of the server error underneath, if there is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.as_postgres().and_then(tokio_postgres::Error::code)
    }

    /// `true` when this error means the topology may have changed and the pool should
    /// re-discover the roles of its hosts.
    pub(crate) fn triggers_discovery(&self) -> bool {
        match self {
            Error::Connect { source, .. } => is_failover_error(source),
            Error::ConnectTimeout { .. }
            | Error::WrongRole { .. }
            | Error::NoHost { .. }
            | Error::QueryTimeout { .. }
            | Error::ConnectionLost { .. } => true,
            Error::Postgres { source, .. } => is_failover_error(source),
            Error::OutcomeUnknown { source, .. } => source.as_ref().is_none_or(is_failover_error),
            Error::AcquireTimeout { last, .. } => {
                last.as_ref().is_some_and(|e| e.triggers_discovery())
            }
            Error::Query { source, .. } => source.as_ref().is_some_and(|e| e.triggers_discovery()),
            Error::Closed => false,
        }
    }

    /// `true` when the connection this error came from must not be reused.
    pub(crate) fn breaks_connection(&self) -> bool {
        match self {
            Error::Postgres { source, .. } => {
                breaks_connection(source) || is_failover_error(source)
            }
            _ => true,
        }
    }
}

/// Connect failures are transient and not executed; [`Error::WrongRole`] and
/// [`Error::NoHost`] too (nothing ran); [`Error::OutcomeUnknown`] is transient and may have
/// executed; client errors are classified as in the [`Classify`] implementation for
/// [`tokio_postgres::Error`]; [`Error::Closed`] is permanent.
impl Classify for Error {
    fn classify(&self) -> Classification {
        match self {
            Error::Connect { source, .. } => match source.code() {
                // Login rejected by the server: invalid password, unknown database...
                Some(code) if !super::classify::is_failover_sqlstate(code) => source.classify(),
                _ => Classification::transient().not_executed(),
            },
            Error::ConnectTimeout { .. }
            | Error::WrongRole { .. }
            | Error::NoHost { .. }
            | Error::ConnectionLost { .. }
            | Error::AcquireTimeout { .. } => Classification::transient().not_executed(),
            Error::Postgres { source, .. } => source.classify(),
            Error::OutcomeUnknown { .. } | Error::QueryTimeout { .. } => {
                Classification::transient()
            }
            Error::Query { source, .. } => match source {
                Some(s) => s.classify(),
                None => Classification::transient(),
            },
            Error::Closed => Classification::permanent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as StdError;

    #[test]
    fn error_is_send_sync_and_displays_this_layer_only() {
        fn is<T: Send + Sync + StdError + 'static>() {}
        is::<Error>();
        let e = Error::ConnectTimeout {
            host: Arc::from("127.0.0.1:5432"),
            timeout: Duration::from_secs(3),
        };
        assert_eq!(
            e.to_string(),
            "connecting to 127.0.0.1:5432 timed out after 3s"
        );
        assert!(e.triggers_discovery());
        assert!(e.classify().is_retry_safe(false));
        let wrapped = Error::AcquireTimeout {
            role: TargetRole::Primary,
            timeout: Duration::from_secs(5),
            last: Some(Box::new(e)),
        };
        assert_eq!(
            wrapped.to_string(),
            "no primary connection within the acquire timeout of 5s"
        );
        assert!(wrapped.source().is_some());
        assert!(wrapped.is_timeout());
        assert!(!wrapped.is_outcome_unknown());
    }
}

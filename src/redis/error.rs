//! The error type of the Redis pool.

use std::io;

use redis::RedisError;

use crate::error::{Classification, Classify, ConfigError};

/// An error of the Redis pool: a rejected configuration, a failed discovery, or a command that
/// could not be run.
///
/// `Display` describes what the pool was doing; the redis-rs error, when there is one, is the
/// [`source`](std::error::Error::source). Never contains a password.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was rejected when the pool was built.
    #[error("invalid redis pool configuration")]
    Config(#[from] ConfigError),
    /// No reachable node reported the `master` role (static discovery), or no sentinel named a
    /// primary that answers.
    #[error("no primary found: {0}")]
    NoPrimary(String),
    /// A node could not be reached or answered with an error.
    #[error("redis node {node} failed")]
    Node {
        /// `host:port` of the node.
        node: String,
        /// What redis-rs reported.
        #[source]
        source: RedisError,
    },
    /// A node or sentinel answered something the pool could not understand.
    #[error("unexpected reply from {node}: {what}")]
    Protocol {
        /// `host:port` of the node or sentinel.
        node: String,
        /// What was wrong with the reply.
        what: String,
    },
    /// A per-node connection pool (deadpool) failed to hand out a connection.
    #[error("no dedicated connection to {node}: {reason}")]
    Dedicated {
        /// `host:port` of the node.
        node: String,
        /// Why (pool closed, timed out, or connection failure).
        reason: String,
        /// The redis-rs error, when a connection attempt failed.
        #[source]
        source: Option<RedisError>,
    },
    /// The operation did not finish within its time limit.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The connection was handed out before a failover and its node changed role since; get a
    /// new one.
    #[error("stale connection: the primary changed since this connection was handed out")]
    Stale,
    /// The pool was closed.
    #[error("the pool is closed")]
    Closed,
}

impl Error {
    pub(crate) fn node(node: &str, source: RedisError) -> Self {
        Error::Node {
            node: node.to_owned(),
            source,
        }
    }

    pub(crate) fn protocol(node: &str, what: impl Into<String>) -> Self {
        Error::Protocol {
            node: node.to_owned(),
            what: what.into(),
        }
    }
}

impl Classify for Error {
    /// Configuration errors and a closed pool are permanent; a missing primary, a stale
    /// connection and an unreadable reply are transient; a node error is classified by its
    /// redis-rs error; a timeout may have executed.
    fn classify(&self) -> Classification {
        match self {
            Error::Config(_) | Error::Closed => Classification::permanent(),
            Error::NoPrimary(_) | Error::Stale => Classification::transient().not_executed(),
            Error::Node { source, .. } => source.classify(),
            Error::Dedicated { source, .. } => {
                source
                    .as_ref()
                    .map_or(Classification::transient().not_executed(), |s| {
                        // A connection that could not be made ran nothing.
                        s.classify().not_executed()
                    })
            }
            Error::Protocol { .. } | Error::Timeout(_) => Classification::transient(),
        }
    }
}

/// The pool's own failures, handed to redis-rs callers ([`ConnectionLike`]) as I/O errors whose
/// kind keeps the classification: `ConnectionRefused` for what surely did not run (no primary,
/// stale connection), `TimedOut` for a timeout; the message is this error's.
///
/// [`ConnectionLike`]: redis::aio::ConnectionLike
impl From<Error> for RedisError {
    fn from(err: Error) -> Self {
        match err {
            Error::Node { source, .. } => source,
            Error::Dedicated {
                source: Some(source),
                ..
            } => source,
            Error::Timeout(_) => RedisError::from(io::Error::new(io::ErrorKind::TimedOut, err)),
            Error::Protocol { .. } => RedisError::from(io::Error::other(err)),
            Error::Config(_) | Error::Closed => {
                RedisError::from(io::Error::new(io::ErrorKind::Unsupported, err))
            }
            other => RedisError::from(io::Error::new(io::ErrorKind::ConnectionRefused, other)),
        }
    }
}

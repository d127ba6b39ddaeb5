use std::time::Duration;

/// Everything that can go wrong while starting, breaking or querying a fixture or the proxy.
///
/// `Display` describes what the kit was doing; the underlying cause (an I/O error, an SDK error)
/// is available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program the fixture needs is not installed. The message carries the install command.
    #[error("`{binary}` not found; install it with: {hint}")]
    MissingBinary {
        /// The program (or file) that was looked for.
        binary: String,
        /// The command that installs it on Debian, e.g. `apt-get install redis-server`.
        hint: String,
    },
    /// An I/O operation failed (spawning a process, binding a port, talking to a server).
    #[error("{context}")]
    Io {
        /// What the kit was doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something did not happen in time (a server did not become ready, a failover did not
    /// complete, a command did not answer).
    #[error(
        "timed out after {after:?} waiting for {what}{}",
        detail_suffix(detail)
    )]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the kit waited.
        after: Duration,
        /// Extra detail, e.g. the tail of the server log; may be empty.
        detail: String,
    },
    /// A server process exited while the kit expected it to run.
    #[error("{what} exited unexpectedly ({status}){}", detail_suffix(log))]
    Exited {
        /// Which server.
        what: String,
        /// Its exit status.
        status: String,
        /// The tail of its log.
        log: String,
    },
    /// A helper command (`initdb`, `pg_ctl`, `psql`, ...) failed.
    #[error("`{command}` failed ({status}){}", detail_suffix(output))]
    Command {
        /// The command line, abbreviated.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (or stdout when stderr was empty).
        output: String,
    },
    /// A SQL statement sent with [`PgNode::sql`](super::PgNode::sql) failed on the server.
    #[error("sql statement failed{}: {message}", sqlstate.as_deref().map(|s| format!(" with SQLSTATE {s}")).unwrap_or_default())]
    Sql {
        /// The five-character SQLSTATE reported by the server, e.g. `25006` for a write in a
        /// read-only transaction; `None` when the failure happened before the server answered.
        sqlstate: Option<String>,
        /// The server's message.
        message: String,
    },
    /// A Redis server answered a command with an error reply (e.g. `READONLY ...`).
    #[error("redis replied with an error: {0}")]
    Redis(String),
    /// A server sent something the kit could not parse.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The fixture was asked for something it cannot do (no such node, too many sentinels, ...).
    #[error("invalid fixture request: {0}")]
    Invalid(String),
    /// A DynamoDB call made by a helper failed.
    #[cfg(feature = "dynamodb")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
    #[error("dynamodb {operation} on {region} failed")]
    Dynamo {
        /// The operation, e.g. `CreateTable`.
        operation: &'static str,
        /// The region (fixture process) it was sent to.
        region: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl Error {
    /// The SQLSTATE of a failed SQL statement, if this is an [`Error::Sql`] that carries one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Sql { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// Whether this error is a [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether this error is a [`Error::MissingBinary`].
    pub fn is_missing_binary(&self) -> bool {
        matches!(self, Self::MissingBinary { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn timeout(
        what: impl Into<String>,
        after: Duration,
        detail: impl Into<String>,
    ) -> Self {
        Self::Timeout {
            what: what.into(),
            after,
            detail: detail.into(),
        }
    }
}

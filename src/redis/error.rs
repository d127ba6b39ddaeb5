//! The error of the Redis pool: an opaque struct with a kind and predicates.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use redis::RedisError;

use crate::error::{Classification, Classify, ConfigError};
use crate::route::NoPrimary;

/// What went wrong, as [`Error::kind`] reports it. New kinds may be added.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The configuration was rejected when the pool was built
    /// ([`Error::config_error`] says which field).
    Config,
    /// No node was confirmed as primary (static discovery: none reported the `master` role;
    /// Sentinel: no sentinel named a primary that answers), within the wait limit.
    NoPrimary,
    /// The read policy found no replica to read from
    /// ([`ReadFrom::ReplicaOnly`](super::ReadFrom::ReplicaOnly) with none usable).
    NoReplica,
    /// A node or sentinel could not be reached or answered with an error
    /// ([`Error::redis_error`]).
    Node,
    /// A node or sentinel answered something the pool could not understand.
    Protocol,
    /// A node's pool of dedicated connections could not hand one out.
    Dedicated,
    /// The operation did not finish within its time limit.
    Timeout,
    /// A dedicated connection whose node changed role since it was handed out: get a new one.
    Stale,
    /// A node or sentinel rejected the login (`WRONGPASS`, `NOAUTH`, `-ERR invalid password`,
    /// a credential provider that refused): [`Error::node_addr`] names it, the redis-rs error
    /// is the [`source`](StdError::source). Permanent.
    Auth,
    /// The TLS handshake with a node or sentinel failed (an untrusted or misnamed
    /// certificate, a client certificate required or refused, TLS against a plaintext port),
    /// or a plaintext login was cut at once by a TLS-only port. Permanent.
    Tls,
}

/// An error of the Redis pool: a rejected configuration, no confirmed primary, no replica for
/// a read, or a node that failed.
///
/// Opaque: ask [`kind`](Self::kind) or the `is_*` predicates. `Display` describes what the pool
/// was doing; the redis-rs error, when there is one, is the [`source`](StdError::source). Never
/// contains a password.
///
/// ```no_run
/// # async fn demo() {
/// use switchover::redis::SplitPool;
///
/// match SplitPool::builder().nodes(["10.0.0.1:6379"]).build().await {
///     Ok(_pool) => {}
///     Err(e) if e.is_config() => eprintln!("fix the settings: {e}"),
///     Err(e) if e.is_no_primary() => eprintln!("{e}"), // says what each node answered
///     Err(e) => eprintln!("failed: {e}"),
/// }
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    /// `host:port` of the node or sentinel concerned.
    node: Option<String>,
    /// What was wrong, in this layer's words.
    what: Option<String>,
    /// The time limit that ran out; for [`ErrorKind::NoPrimary`] after several attempts, the
    /// whole time the call waited.
    limit: Option<Duration>,
    /// For [`ErrorKind::NoPrimary`]: the attempts the call made.
    attempts: Option<u32>,
    cause: Cause,
}

enum Cause {
    None,
    Config(ConfigError),
    Redis(RedisError),
    NoPrimary(NoPrimary),
}

impl Error {
    fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                node: None,
                what: None,
                limit: None,
                attempts: None,
                cause: Cause::None,
            }),
        }
    }

    fn at(mut self, node: &str) -> Self {
        self.inner.node = Some(node.to_owned());
        self
    }

    fn what(mut self, what: impl Into<String>) -> Self {
        self.inner.what = Some(what.into());
        self
    }

    fn cause(mut self, cause: Cause) -> Self {
        self.inner.cause = cause;
        self
    }

    pub(crate) fn node(node: &str, source: RedisError) -> Self {
        Error::new(ErrorKind::Node)
            .at(node)
            .cause(Cause::Redis(source))
    }

    pub(crate) fn protocol(node: &str, what: impl Into<String>) -> Self {
        Error::new(ErrorKind::Protocol).at(node).what(what)
    }

    pub(crate) fn no_primary(e: NoPrimary) -> Self {
        Error::new(ErrorKind::NoPrimary).cause(Cause::NoPrimary(e))
    }

    /// No primary, after a call that waited `waited` in all over `attempts` attempts (the
    /// core's error says how long the last attempt waited).
    pub(crate) fn no_primary_after(e: NoPrimary, waited: Duration, attempts: u32) -> Self {
        let mut err = Error::no_primary(e);
        err.inner.limit = Some(waited);
        err.inner.attempts = Some(attempts);
        err
    }

    /// `node` (a `server`: "redis node" or "sentinel") refused the login (`tls`: the TLS
    /// handshake failed) with `source`.
    pub(crate) fn refused(server: &str, node: &str, tls: bool, source: RedisError) -> Self {
        let kind = if tls { ErrorKind::Tls } else { ErrorKind::Auth };
        Error::new(kind)
            .at(node)
            .what(server)
            .cause(Cause::Redis(source))
    }

    pub(crate) fn no_replica() -> Self {
        Error::new(ErrorKind::NoReplica)
    }

    pub(crate) fn dedicated(
        node: &str,
        reason: impl Into<String>,
        source: Option<RedisError>,
    ) -> Self {
        let e = Error::new(ErrorKind::Dedicated).at(node).what(reason);
        match source {
            Some(s) => e.cause(Cause::Redis(s)),
            None => e,
        }
    }

    pub(crate) fn timeout(limit: Duration) -> Self {
        let mut e = Error::new(ErrorKind::Timeout);
        e.inner.limit = Some(limit);
        e
    }

    pub(crate) fn stale() -> Self {
        Error::new(ErrorKind::Stale)
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// `true` for a configuration rejected by [`build`](super::SplitPoolBuilder::build).
    pub fn is_config(&self) -> bool {
        self.inner.kind == ErrorKind::Config
    }

    /// `true` when no primary was confirmed.
    pub fn is_no_primary(&self) -> bool {
        self.inner.kind == ErrorKind::NoPrimary
    }

    /// `true` when the read policy found no replica.
    pub fn is_no_replica(&self) -> bool {
        self.inner.kind == ErrorKind::NoReplica
    }

    /// `true` when a time limit ran out (the pool's own, or redis-rs's response timeout).
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
            || matches!(&self.inner.cause, Cause::Redis(e) if e.is_timeout())
    }

    /// `true` for a dedicated connection whose node changed role.
    pub fn is_stale(&self) -> bool {
        self.inner.kind == ErrorKind::Stale
    }

    /// `true` when a node or sentinel rejected the login ([`ErrorKind::Auth`]).
    pub fn is_auth(&self) -> bool {
        self.inner.kind == ErrorKind::Auth
    }

    /// `true` when the TLS handshake failed ([`ErrorKind::Tls`]).
    pub fn is_tls(&self) -> bool {
        self.inner.kind == ErrorKind::Tls
    }

    /// `host:port` of the node or sentinel concerned, when one is.
    pub fn node_addr(&self) -> Option<&str> {
        self.inner.node.as_deref()
    }

    /// The configuration error (its [`field`](ConfigError::field) names the setting).
    pub fn config_error(&self) -> Option<&ConfigError> {
        match &self.inner.cause {
            Cause::Config(e) => Some(e),
            _ => None,
        }
    }

    /// The redis-rs error of the node, when there is one.
    pub fn redis_error(&self) -> Option<&RedisError> {
        match &self.inner.cause {
            Cause::Redis(e) => Some(e),
            _ => None,
        }
    }

    /// How long the caller waited for a primary (for [`ErrorKind::NoPrimary`]): over all its
    /// attempts when a command made several.
    pub fn waited(&self) -> Option<Duration> {
        match &self.inner.cause {
            Cause::NoPrimary(e) => self.inner.limit.or(e.waited()),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::new(ErrorKind::Config).cause(Cause::Config(e))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(n) = &self.inner.node {
            d.field("node", n);
        }
        if let Some(w) = &self.inner.what {
            d.field("what", w);
        }
        match &self.inner.cause {
            Cause::None => {}
            Cause::Config(e) => {
                d.field("cause", e);
            }
            Cause::Redis(e) => {
                d.field("cause", e);
            }
            Cause::NoPrimary(e) => {
                d.field("cause", e);
            }
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let node = i.node.as_deref().unwrap_or("?");
        let what = i.what.as_deref().unwrap_or("");
        match (&i.kind, &i.cause) {
            (ErrorKind::Config, _) => f.write_str("invalid redis pool configuration"),
            // What discovery found instead, and the whole time the caller waited.
            (ErrorKind::NoPrimary, Cause::NoPrimary(e)) => match (i.limit, i.attempts) {
                (Some(waited), Some(n)) => write!(
                    f,
                    "no primary confirmed: {} (waited {waited:?} in all, over {n} attempt{})",
                    e.reason(),
                    if n == 1 { "" } else { "s" }
                ),
                _ => fmt::Display::fmt(e, f),
            },
            (ErrorKind::NoPrimary, _) => f.write_str("no primary confirmed"),
            (ErrorKind::NoReplica, _) => {
                f.write_str("no replica available for a read (the read policy refused)")
            }
            (ErrorKind::Node, _) => write!(f, "redis node {node} failed"),
            (ErrorKind::Protocol, _) => write!(f, "unexpected reply from {node}: {what}"),
            (ErrorKind::Dedicated, _) => write!(f, "no dedicated connection to {node}: {what}"),
            (ErrorKind::Timeout, _) => match i.limit {
                Some(d) => write!(f, "timed out after {d:?}"),
                None => f.write_str("timed out"),
            },
            (ErrorKind::Stale, _) => f.write_str(
                "stale connection: the node changed role since this connection was handed out",
            ),
            // Logged in, then refused a command by the user's ACL rules: say which.
            (ErrorKind::Auth, Cause::Redis(e)) if e.code() == Some("NOPERM") => write!(
                f,
                "{what} {node} refused a command to this user (NOPERM: {})",
                e.detail().unwrap_or("no permission")
            ),
            (ErrorKind::Auth, _) => write!(f, "authentication to {what} {node} failed"),
            (ErrorKind::Tls, _) => write!(f, "TLS with {what} {node} failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner.cause {
            Cause::Config(e) => Some(e),
            Cause::Redis(e) => Some(e),
            Cause::None | Cause::NoPrimary(_) => None,
        }
    }
}

impl Classify for Error {
    /// A rejected configuration is permanent; no primary is as [`NoPrimary`] says (transient
    /// and not executed, permanent for a rejected login); no replica and a stale connection are
    /// transient and surely not executed; a node error is classified by its redis-rs error; a
    /// dedicated connection that could not be made ran nothing; a timeout or an unreadable
    /// reply may have executed.
    fn classify(&self) -> Classification {
        match (&self.inner.kind, &self.inner.cause) {
            (ErrorKind::Config | ErrorKind::Auth | ErrorKind::Tls, _) => {
                Classification::permanent()
            }
            (ErrorKind::NoPrimary, Cause::NoPrimary(e)) => e.classify(),
            (ErrorKind::NoPrimary | ErrorKind::NoReplica | ErrorKind::Stale, _) => {
                Classification::transient().not_executed()
            }
            (ErrorKind::Dedicated, Cause::Redis(e)) => e.classify().not_executed(),
            (ErrorKind::Dedicated, _) => Classification::transient().not_executed(),
            (_, Cause::Redis(e)) => e.classify(),
            _ => Classification::transient(),
        }
    }
}

/// The pool's own failures, handed to redis-rs callers ([`ConnectionLike`]) as I/O errors whose
/// kind keeps the classification: `ConnectionRefused` for what surely did not run (no primary,
/// no replica, a stale connection), `TimedOut` for a timeout; the message is this error's. A
/// node's redis-rs error is handed back as it is.
///
/// [`ConnectionLike`]: redis::aio::ConnectionLike
impl From<Error> for RedisError {
    fn from(err: Error) -> Self {
        let kind = match err.inner.kind {
            ErrorKind::Timeout => io::ErrorKind::TimedOut,
            ErrorKind::Protocol => io::ErrorKind::Other,
            ErrorKind::Config => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::ConnectionRefused,
        };
        if let (ErrorKind::Auth | ErrorKind::Tls, Cause::Redis(source)) =
            (err.inner.kind, &err.inner.cause)
        {
            // The redis-rs error does not say which server refused: the caller's error does.
            let shown = format!("{err}: {source}");
            return match err.inner.kind {
                ErrorKind::Auth => RedisError::from((
                    redis::ErrorKind::AuthenticationFailed,
                    "authentication failed",
                    shown,
                )),
                _ => RedisError::from(io::Error::new(io::ErrorKind::InvalidData, shown)),
            };
        }
        let Inner {
            kind: k,
            node,
            what,
            limit,
            attempts,
            cause,
        } = *err.inner;
        match cause {
            Cause::Redis(source) => source,
            cause => {
                let err = Error {
                    inner: Box::new(Inner {
                        kind: k,
                        node,
                        what,
                        limit,
                        attempts,
                        cause,
                    }),
                };
                RedisError::from(io::Error::new(kind, err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorClass, Execution};

    #[test]
    fn no_primary_says_why_and_how_long_and_stays_not_executed_for_redis_callers() {
        let e = Error::no_primary(NoPrimary::new("a: replica of b; b: unreachable"));
        assert!(e.is_no_primary());
        assert_eq!(e.kind(), ErrorKind::NoPrimary);
        assert_eq!(
            e.to_string(),
            "no primary confirmed: a: replica of b; b: unreachable"
        );
        let c = e.classify();
        assert_eq!(
            (c.class(), c.execution()),
            (ErrorClass::Transient, Execution::NotExecuted)
        );
        let r = RedisError::from(e);
        assert!(r.is_connection_refusal(), "{r}");
        assert!(r.to_string().contains("b: unreachable"), "{r}");
        assert_eq!(r.classify().execution(), Execution::NotExecuted);
    }

    #[test]
    fn a_node_error_keeps_the_redis_error_as_its_source() {
        let io = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        let e = Error::node("10.0.0.1:6379", io);
        assert!(e.is_timeout());
        assert_eq!(e.node_addr(), Some("10.0.0.1:6379"));
        assert_eq!(e.to_string(), "redis node 10.0.0.1:6379 failed");
        assert!(e.source().is_some());
        assert!(RedisError::from(e).is_timeout());
    }
}

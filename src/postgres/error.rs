//! The error of every [`FailoverPool`](super::FailoverPool) call: one opaque type with a
//! [`kind`](Error::kind) and predicates.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::classify::{
    TlsFailure, breaks_connection, find_pg_error, is_failover_error, is_failover_sqlstate,
    is_login_refusal, tls_failure,
};
use super::role::{ServerRole, TargetRole};
use crate::error::{Classification, Classify, Execution};
use crate::retry::StopReason;

/// What failed. New kinds may be added: match with a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No connection of the wanted role within the acquire timeout; the
    /// [`source`](StdError::source) is the last failure seen while trying.
    AcquireTimeout,
    /// Connecting to (or logging in to) a host failed; the source is the client's error.
    Connect,
    /// Connecting to a host (TCP, TLS and login) did not finish within the login timeout.
    ConnectTimeout,
    /// The server refused the login (SQLSTATE class `28`: a wrong password, a user or
    /// database `pg_hba.conf` does not admit, a login it admits only over TLS or only with a
    /// client certificate), or the [credential provider](super::FailoverPoolBuilder::credentials)
    /// gave no credentials (its error is the source) or none within the connect timeout.
    /// Permanent, except a provider's transient failure or timeout.
    Authentication,
    /// The TLS handshake with a host failed: its certificate was refused (another name, an
    /// unknown authority, expired), it refused ours, or it does not offer TLS and the
    /// `sslmode` requires it. Permanent, except a connection lost during the handshake.
    Tls,
    /// A host answered but is not of the wanted role.
    WrongRole,
    /// No host is known to be usable as the wanted role (every host down or of another role,
    /// or re-discovery found no writable primary).
    NoHost,
    /// A step of the runner got no reply within the query timeout; the connection is dropped.
    QueryTimeout,
    /// The retry policy's deadline or attempt timeout cut an attempt that was in flight.
    AttemptTimeout,
    /// The client reported an error on a pooled connection; the source is that error.
    Postgres,
    /// The connection was lost after `COMMIT` was sent and before its reply: the transaction
    /// may or may not have committed. In [`run`](super::FailoverPool::run) (autocommit): the
    /// connection was lost while a statement of the closure was in flight, so that statement
    /// may or may not have run, and the statements before it committed.
    OutcomeUnknown,
    /// The connection was found closed before `COMMIT` could be sent: nothing committed.
    ConnectionLost,
    /// The pool was closed.
    Closed,
}

/// Why the runner stopped and how many attempts it made (set on errors of calls that went
/// through it).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop {
    pub(crate) reason: StopReason,
    pub(crate) attempts: u32,
    pub(crate) may_have_executed: bool,
}

/// An error of the Postgres failover pool.
///
/// [`kind`](Self::kind) says what failed (for a call the runner retried, what its last attempt
/// failed with); [`attempts`](Self::attempts) and [`stop_reason`](Self::stop_reason) say how
/// the runner ended. `Display` describes this layer; the client's error (or, for
/// [`ErrorKind::AcquireTimeout`], the last failure seen) is the
/// [`source`](StdError::source). Hosts appear as `host:port`; passwords never appear, and
/// neither do user names in this layer's messages (the server's own message in a source, such
/// as a failed password authentication, may name the user).
///
/// ```no_run
/// # async fn demo(pool: switchover::postgres::FailoverPool) -> Result<(), switchover::postgres::Error> {
/// use switchover::postgres::ErrorKind;
///
/// match pool
///     .transaction(|tx| Box::pin(async move {
///         tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&42_i64]).await?;
///         Ok(())
///     }))
///     .await
/// {
///     Ok(()) => println!("committed"),
///     Err(e) if e.is_outcome_unknown() => println!("check whether order 42 exists"),
///     Err(e) if e.kind() == ErrorKind::Postgres => println!("rejected: {:?}", e.code()),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    host: Option<Arc<str>>,
    /// The role asked for (acquire timeout, wrong role, no host).
    wanted: Option<TargetRole>,
    /// The role the server reported (wrong role).
    actual: Option<ServerRole>,
    /// The limit that ran out (acquire, login, query).
    timeout: Option<Duration>,
    /// What re-discovery found instead of a primary (no host).
    reason: Option<Arc<str>>,
    stop: Option<Stop>,
    source: Option<Source>,
}

enum Source {
    Postgres(tokio_postgres::Error),
    Earlier(Error),
    Credentials(crate::auth::CredentialError),
}

impl Error {
    fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                host: None,
                wanted: None,
                actual: None,
                timeout: None,
                reason: None,
                stop: None,
                source: None,
            }),
        }
    }

    fn on(mut self, host: Arc<str>) -> Self {
        self.inner.host = Some(host);
        self
    }

    fn pg(mut self, source: tokio_postgres::Error) -> Self {
        self.inner.source = Some(Source::Postgres(source));
        self
    }

    pub(crate) fn acquire_timeout(
        wanted: TargetRole,
        timeout: Duration,
        last: Option<Error>,
    ) -> Self {
        let mut e = Error::new(ErrorKind::AcquireTimeout);
        e.inner.wanted = Some(wanted);
        e.inner.timeout = Some(timeout);
        e.inner.source = last.map(Source::Earlier);
        e
    }

    /// A failed connect: [`ErrorKind::Authentication`] for a refused login,
    /// [`ErrorKind::Tls`] for a failed handshake, else [`ErrorKind::Connect`].
    pub(crate) fn connect(host: Arc<str>, source: tokio_postgres::Error) -> Self {
        let kind = if is_login_refusal(&source) {
            ErrorKind::Authentication
        } else if tls_failure(&source).is_some() {
            ErrorKind::Tls
        } else {
            ErrorKind::Connect
        };
        let mut e = Error::new(kind).on(host);
        if kind == ErrorKind::Authentication
            && source
                .as_db_error()
                .is_some_and(|db| db.message().ends_with("no encryption"))
        {
            e.inner.reason = Some(Arc::from(
                "the server admits this login only over TLS (sslmode is disable)",
            ));
        }
        e.pg(source)
    }

    /// A connect that reached no server (refused, unreachable, reset): no server answered, so
    /// another address of the host may.
    pub(crate) fn reached_no_server(&self) -> bool {
        self.inner.kind == ErrorKind::Connect
            && self
                .pg_source()
                .is_some_and(|p| p.code().is_none() && p.as_db_error().is_none())
    }

    /// The lookup of `host`'s name failed (its message names the name).
    pub(crate) fn lookup(host: Arc<str>, source: &std::io::Error) -> Self {
        let mut e = Error::new(ErrorKind::Connect).on(host);
        e.inner.reason = Some(Arc::from(source.to_string()));
        e
    }

    /// The credential provider failed for `host`.
    pub(crate) fn credentials(host: Arc<str>, source: crate::auth::CredentialError) -> Self {
        let mut e = Error::new(ErrorKind::Authentication).on(host);
        e.inner.source = Some(Source::Credentials(source));
        e
    }

    /// The credential provider did not answer for `host` within `timeout`.
    pub(crate) fn credentials_timeout(host: Arc<str>, timeout: Duration) -> Self {
        let mut e = Error::new(ErrorKind::Authentication).on(host);
        e.inner.timeout = Some(timeout);
        e.inner.reason = Some(Arc::from("the credential provider did not answer"));
        e
    }

    /// `true` when the server refused the login with a secret that a fresh one may fix
    /// (`28P01` wrong password, `28000` no rule admits it).
    pub(crate) fn is_rejected_secret(&self) -> bool {
        self.inner.kind == ErrorKind::Authentication
            && self
                .pg_source()
                .and_then(tokio_postgres::Error::code)
                .is_some_and(|c| matches!(c.code(), "28P01" | "28000"))
    }

    pub(crate) fn connect_timeout(host: Arc<str>, timeout: Duration) -> Self {
        let mut e = Error::new(ErrorKind::ConnectTimeout).on(host);
        e.inner.timeout = Some(timeout);
        e
    }

    pub(crate) fn wrong_role(host: Arc<str>, actual: ServerRole, wanted: TargetRole) -> Self {
        let mut e = Error::new(ErrorKind::WrongRole).on(host);
        e.inner.actual = Some(actual);
        e.inner.wanted = Some(wanted);
        e
    }

    pub(crate) fn no_host(wanted: TargetRole, reason: Option<Arc<str>>) -> Self {
        let mut e = Error::new(ErrorKind::NoHost);
        e.inner.wanted = Some(wanted);
        e.inner.reason = reason;
        e
    }

    pub(crate) fn query_timeout(host: Arc<str>, timeout: Duration) -> Self {
        let mut e = Error::new(ErrorKind::QueryTimeout).on(host);
        e.inner.timeout = Some(timeout);
        e
    }

    /// The runner's time limit cut an attempt on `host`; `earlier` is the error an earlier
    /// attempt returned, if any.
    pub(crate) fn attempt_timeout(host: Option<Arc<str>>, earlier: Option<Error>) -> Self {
        let mut e = Error::new(ErrorKind::AttemptTimeout);
        e.inner.host = host;
        e.inner.source = earlier.map(Source::Earlier);
        e
    }

    pub(crate) fn postgres(host: Arc<str>, source: tokio_postgres::Error) -> Self {
        Error::new(ErrorKind::Postgres).on(host).pg(source)
    }

    pub(crate) fn outcome_unknown(host: Arc<str>, source: Option<tokio_postgres::Error>) -> Self {
        let mut e = Error::new(ErrorKind::OutcomeUnknown).on(host);
        e.inner.source = source.map(Source::Postgres);
        e
    }

    /// The connection was lost while a statement of `run`'s closure was in flight.
    pub(crate) fn outcome_unknown_in_run(host: Arc<str>, source: tokio_postgres::Error) -> Self {
        let mut e = Error::outcome_unknown(host, Some(source));
        e.inner.reason = Some(Arc::from("run"));
        e
    }

    pub(crate) fn connection_lost(host: Arc<str>) -> Self {
        Error::new(ErrorKind::ConnectionLost).on(host)
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorKind::Closed)
    }

    /// Attaches how the runner ended.
    pub(crate) fn stopped(mut self, stop: Stop) -> Self {
        self.inner.stop = Some(stop);
        self
    }

    /// What failed.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The host the failure happened on, as `host:port`, when it is known.
    pub fn host(&self) -> Option<&str> {
        self.inner.host.as_deref()
    }

    /// How many attempts the runner made, the first included (`None`: the call did not go
    /// through the runner).
    pub fn attempts(&self) -> Option<u32> {
        self.inner.stop.map(|s| s.attempts)
    }

    /// Why the runner stopped trying (`None`: the call did not go through the runner).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.stop.map(|s| s.reason)
    }

    /// `true` when the connection was lost after `COMMIT` was sent, or in
    /// [`run`](super::FailoverPool::run) while a statement was in flight: check the data before
    /// acting on it. Never retried unless the operation was declared idempotent.
    pub fn is_outcome_unknown(&self) -> bool {
        self.inner.kind == ErrorKind::OutcomeUnknown
    }

    /// `true` when a limit ran out: the acquire, login, query or attempt timeout, or the
    /// connect timeout of a credential provider.
    pub fn is_timeout(&self) -> bool {
        match self.inner.kind {
            ErrorKind::AcquireTimeout
            | ErrorKind::ConnectTimeout
            | ErrorKind::QueryTimeout
            | ErrorKind::AttemptTimeout => true,
            ErrorKind::Authentication => self.inner.timeout.is_some(),
            _ => false,
        }
    }

    /// `true` when the pool was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.kind == ErrorKind::Closed
    }

    /// The client error underneath, if there is one (searched through the sources).
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        find_pg_error(self)
    }

    /// The SQLSTATE of the server error underneath, if there is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.as_postgres().and_then(tokio_postgres::Error::code)
    }

    fn pg_source(&self) -> Option<&tokio_postgres::Error> {
        match &self.inner.source {
            Some(Source::Postgres(e)) => Some(e),
            _ => None,
        }
    }

    fn earlier(&self) -> Option<&Error> {
        match &self.inner.source {
            Some(Source::Earlier(e)) => Some(e),
            _ => None,
        }
    }

    /// `true` when this error means the topology may have changed and the primary must be
    /// re-discovered.
    pub(crate) fn triggers_discovery(&self) -> bool {
        match self.inner.kind {
            ErrorKind::Connect | ErrorKind::Postgres => {
                self.pg_source().is_some_and(is_failover_error)
            }
            ErrorKind::Authentication => false,
            ErrorKind::Tls => self.classify().class() != crate::error::ErrorClass::Permanent,
            ErrorKind::ConnectTimeout
            | ErrorKind::WrongRole
            | ErrorKind::NoHost
            | ErrorKind::QueryTimeout
            | ErrorKind::AttemptTimeout
            | ErrorKind::ConnectionLost => true,
            ErrorKind::OutcomeUnknown => self.pg_source().is_none_or(is_failover_error),
            ErrorKind::AcquireTimeout => self.earlier().is_some_and(Error::triggers_discovery),
            ErrorKind::Closed => false,
        }
    }

    /// `true` when the connection this error came from must not be reused.
    pub(crate) fn breaks_connection(&self) -> bool {
        match (self.inner.kind, self.pg_source()) {
            (ErrorKind::Postgres, Some(e)) => breaks_connection(e) || is_failover_error(e),
            _ => true,
        }
    }
}

/// Connect failures are transient and not executed (a login rejected by the server, such as a
/// wrong password or an unknown database, is permanent); a wrong role, no host, a lost
/// connection before `COMMIT` and an acquire timeout are transient and not executed (nothing
/// ran); an unknown outcome and the query and attempt timeouts are transient and may have
/// executed; client errors on a pooled connection are classified by their
/// [`Classify`] implementation; a closed pool is permanent. An error of the runner says "may
/// have executed" when any of its attempts may have.
impl Classify for Error {
    fn classify(&self) -> Classification {
        let c = match self.inner.kind {
            ErrorKind::Connect => match self.pg_source() {
                Some(pg) if pg.code().is_some_and(|c| !is_failover_sqlstate(c)) => pg.classify(),
                _ => Classification::transient().not_executed(),
            },
            ErrorKind::Authentication => match &self.inner.source {
                Some(Source::Credentials(c)) => c.classify().not_executed(),
                Some(Source::Postgres(_)) => Classification::permanent(),
                _ => Classification::transient().not_executed(),
            },
            ErrorKind::Tls => match self.pg_source().and_then(tls_failure) {
                Some(TlsFailure::Refused) => Classification::permanent(),
                _ => Classification::transient().not_executed(),
            },
            ErrorKind::ConnectTimeout
            | ErrorKind::WrongRole
            | ErrorKind::NoHost
            | ErrorKind::ConnectionLost
            | ErrorKind::AcquireTimeout => Classification::transient().not_executed(),
            ErrorKind::Postgres => match self.pg_source() {
                Some(pg) => pg.classify(),
                None => Classification::permanent(),
            },
            ErrorKind::OutcomeUnknown | ErrorKind::QueryTimeout | ErrorKind::AttemptTimeout => {
                Classification::transient()
            }
            ErrorKind::Closed => Classification::permanent(),
        };
        match self.inner.stop {
            Some(s) if s.may_have_executed => c.with_execution(Execution::MayHaveExecuted),
            _ => c,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::AcquireTimeout => "acquire timeout",
            ErrorKind::Connect => "connect failed",
            ErrorKind::ConnectTimeout => "connect timeout",
            ErrorKind::Authentication => "authentication failed",
            ErrorKind::Tls => "tls failed",
            ErrorKind::WrongRole => "wrong role",
            ErrorKind::NoHost => "no host",
            ErrorKind::QueryTimeout => "query timeout",
            ErrorKind::AttemptTimeout => "attempt timeout",
            ErrorKind::Postgres => "postgres error",
            ErrorKind::OutcomeUnknown => "outcome unknown",
            ErrorKind::ConnectionLost => "connection lost",
            ErrorKind::Closed => "pool closed",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let host = i.host.as_deref().unwrap_or("?");
        let wanted = i.wanted.unwrap_or_default();
        let t = i.timeout.unwrap_or_default();
        match i.kind {
            ErrorKind::AcquireTimeout => {
                write!(
                    f,
                    "no {wanted} connection within the acquire timeout of {t:?}"
                )
            }
            ErrorKind::Connect => {
                write!(f, "could not connect to {host}")?;
                match &i.reason {
                    Some(r) => write!(f, ": {r}"),
                    None => Ok(()),
                }
            }
            ErrorKind::ConnectTimeout => write!(f, "connecting to {host} timed out after {t:?}"),
            ErrorKind::Authentication => match (&i.source, i.timeout) {
                (Some(Source::Credentials(_)), _) => write!(f, "no credentials for {host}"),
                (_, Some(t)) => write!(f, "no credentials for {host} within {t:?}"),
                _ => {
                    write!(f, "{host} refused the login")?;
                    match &i.reason {
                        Some(r) => write!(f, ": {r}"),
                        None => Ok(()),
                    }
                }
            },
            ErrorKind::Tls => write!(f, "TLS with {host} failed"),
            ErrorKind::WrongRole => match i.actual {
                Some(actual) => write!(f, "{host} is a {actual}, not usable as {wanted}"),
                None => write!(f, "{host} is not usable as {wanted}"),
            },
            ErrorKind::NoHost => {
                write!(f, "no host is known to be usable as {wanted}")?;
                match &i.reason {
                    Some(r) => write!(f, " ({r})"),
                    None => Ok(()),
                }
            }
            ErrorKind::QueryTimeout => {
                write!(f, "no reply from {host} within the query timeout of {t:?}")
            }
            ErrorKind::AttemptTimeout => {
                write!(
                    f,
                    "the attempt on {host} timed out at the retry policy's limit"
                )
            }
            ErrorKind::Postgres => write!(f, "postgres error on {host}"),
            ErrorKind::OutcomeUnknown if i.reason.is_some() => write!(
                f,
                "outcome unknown: the connection to {host} was lost while a statement of run \
                 was in flight (autocommit: the statements before it committed)"
            ),
            ErrorKind::OutcomeUnknown => write!(
                f,
                "outcome unknown: the connection to {host} was lost after COMMIT was sent"
            ),
            ErrorKind::ConnectionLost => {
                write!(f, "the connection to {host} was lost before COMMIT")
            }
            ErrorKind::Closed => f.write_str("the pool is closed"),
        }?;
        if let Some(s) = i.stop {
            let plural = if s.attempts == 1 { "" } else { "s" };
            write!(f, " ({}, {} attempt{plural})", s.reason, s.attempts)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        let mut d = f.debug_struct("Error");
        d.field("kind", &i.kind);
        if let Some(h) = &i.host {
            d.field("host", h);
        }
        if let Some(w) = &i.wanted {
            d.field("wanted", w);
        }
        if let Some(a) = &i.actual {
            d.field("actual", a);
        }
        if let Some(t) = &i.timeout {
            d.field("timeout", t);
        }
        if let Some(r) = &i.reason {
            d.field("reason", r);
        }
        if let Some(s) = &i.stop {
            d.field("stop", &s.reason).field("attempts", &s.attempts);
        }
        match &i.source {
            Some(Source::Postgres(e)) => d.field("source", e),
            Some(Source::Earlier(e)) => d.field("source", e),
            Some(Source::Credentials(e)) => d.field("source", e),
            None => &mut d,
        };
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner.source {
            Some(Source::Postgres(e)) => Some(e),
            Some(Source::Earlier(e)) => Some(e),
            Some(Source::Credentials(e)) => Some(e),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_displays_this_layer_only() {
        fn is<T: Send + Sync + StdError + 'static>() {}
        is::<Error>();
        let e = Error::connect_timeout(Arc::from("127.0.0.1:5432"), Duration::from_secs(3));
        assert_eq!(
            e.to_string(),
            "connecting to 127.0.0.1:5432 timed out after 3s"
        );
        assert_eq!(e.kind(), ErrorKind::ConnectTimeout);
        assert_eq!(e.host(), Some("127.0.0.1:5432"));
        assert!(e.triggers_discovery());
        assert!(e.classify().is_retry_safe(false));
        let wrapped = Error::acquire_timeout(TargetRole::Primary, Duration::from_secs(5), Some(e));
        assert_eq!(
            wrapped.to_string(),
            "no primary connection within the acquire timeout of 5s"
        );
        assert!(wrapped.source().is_some());
        assert!(wrapped.is_timeout());
        assert!(!wrapped.is_outcome_unknown());
        assert_eq!(wrapped.attempts(), None);
    }

    #[test]
    fn a_runner_error_says_how_it_stopped_and_whether_anything_ran() {
        let e = Error::connection_lost(Arc::from("db:5432")).stopped(Stop {
            reason: StopReason::DeadlineExceeded,
            attempts: 3,
            may_have_executed: false,
        });
        assert_eq!(
            e.to_string(),
            "the connection to db:5432 was lost before COMMIT (deadline exceeded, 3 attempts)"
        );
        assert_eq!(e.attempts(), Some(3));
        assert_eq!(e.stop_reason(), Some(StopReason::DeadlineExceeded));
        assert_eq!(e.classify().execution(), Execution::NotExecuted);
        let ran = Error::connection_lost(Arc::from("db:5432")).stopped(Stop {
            reason: StopReason::DeadlineExceeded,
            attempts: 3,
            may_have_executed: true,
        });
        assert_eq!(ran.classify().execution(), Execution::MayHaveExecuted);
        assert_eq!(Error::closed().classify(), Classification::permanent());
    }
}

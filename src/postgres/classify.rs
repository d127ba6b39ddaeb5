use std::error::Error as StdError;

use tokio_postgres::error::SqlState;

use crate::error::{Classification, Classify};

/// The kinds of [`tokio_postgres::Error`] that carry no SQLSTATE. tokio-postgres keeps its kind
/// private; its `Display` text (stable across 0.7.x) names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    Db,
    Closed,
    Connect,
    Io,
    Timeout,
    Tls,
    Parse,
    UnexpectedMessage,
    Encode,
    Authentication,
    Config,
    Caller,
}

fn client_kind(err: &tokio_postgres::Error) -> ClientKind {
    if err.as_db_error().is_some() {
        return ClientKind::Db;
    }
    if err.is_closed() {
        return ClientKind::Closed;
    }
    // `Display` describes the kind only (the cause is in `source`), so it holds no user data.
    match err.to_string().as_str() {
        "error connecting to server" => ClientKind::Connect,
        "error communicating with the server" => ClientKind::Io,
        "timeout waiting for server" => ClientKind::Timeout,
        "error performing TLS handshake" => ClientKind::Tls,
        "error parsing response from server" => ClientKind::Parse,
        "unexpected message from server" => ClientKind::UnexpectedMessage,
        "error encoding message to server" => ClientKind::Encode,
        "authentication error" => ClientKind::Authentication,
        "invalid connection string" | "invalid configuration" => ClientKind::Config,
        // Serialising parameters, reading columns, row counts: the caller's code.
        _ => ClientKind::Caller,
    }
}

/// Classifies a SQLSTATE.
///
/// | SQLSTATE | class | executed |
/// |---|---|---|
/// | `25006` read-only transaction | transient | no |
/// | `57P01` admin shutdown, `57P02` crash shutdown | transient | maybe |
/// | `57P03` cannot connect now, `57P05` idle session timeout | transient | no |
/// | `08001`, `08004` (could not connect, rejected) | transient | no |
/// | other class `08` (connection exceptions) | transient | maybe |
/// | `40001` serialization failure, `40P01` deadlock | transient | no |
/// | `53300` too many connections | throttled | no |
/// | other class `53` (insufficient resources) | transient | no |
/// | class `58` (system error) | transient | maybe |
/// | anything else | permanent | — |
pub(crate) fn classify_sqlstate(code: &SqlState) -> Classification {
    let code = code.code();
    match code {
        "25006" | "57P03" | "57P05" | "08001" | "08004" | "40001" | "40P01" => {
            Classification::transient().not_executed()
        }
        "57P01" | "57P02" => Classification::transient(),
        "53300" => Classification::throttled().not_executed(),
        _ if code.starts_with("08") => Classification::transient(),
        _ if code.starts_with("53") => Classification::transient().not_executed(),
        _ if code.starts_with("58") => Classification::transient(),
        _ => Classification::permanent(),
    }
}

/// Classification of tokio-postgres errors for the retry executor and the health tracker.
///
/// - errors from the server are classified by SQLSTATE (see the table on
///   [`is_failover_error`]): `25006` and `57P03` are
///   transient and surely not executed; `57P01`/`57P02` and class `08` are transient and may
///   have executed; `40001`/`40P01` (serialization failure, deadlock) are transient and not
///   executed (the transaction was rolled back); `53300` is throttled; everything else the
///   server rejects is permanent;
/// - a failed connect (refused, unreachable, timed out before the startup message) is
///   transient and not executed;
/// - a connection lost or closed while a request was in flight is transient and **may have
///   executed**: the request may have reached the server;
/// - authentication, configuration, parameter/column conversion and row-count errors are
///   permanent.
impl Classify for tokio_postgres::Error {
    fn classify(&self) -> Classification {
        match client_kind(self) {
            ClientKind::Db => match self.code() {
                Some(code) => classify_sqlstate(code),
                None => Classification::permanent(),
            },
            ClientKind::Tls if matches!(tls_failure(self), Some(TlsFailure::Refused)) => {
                Classification::permanent()
            }
            ClientKind::Connect | ClientKind::Tls => Classification::transient().not_executed(),
            ClientKind::Closed
            | ClientKind::Io
            | ClientKind::Timeout
            | ClientKind::Parse
            | ClientKind::UnexpectedMessage => Classification::transient(),
            ClientKind::Encode
            | ClientKind::Authentication
            | ClientKind::Config
            | ClientKind::Caller => Classification::permanent(),
        }
    }
}

/// `true` when `err` means "this server is no longer what we thought it was", so the pool must
/// re-discover the roles of its hosts: a read-only transaction (`25006`), a shutdown or a
/// server not accepting connections (`57P01`, `57P02`, `57P03`), a connection exception (class
/// `08`), a lost, closed or timed-out connection, or a failed connect.
///
/// How the pool classifies client errors ([`Classify`]) and which are failover signals:
///
/// | error | class | executed | failover signal |
/// |---|---|---|---|
/// | `25006` read-only transaction | transient | no | yes |
/// | `57P01` admin shutdown, `57P02` crash shutdown | transient | maybe | yes |
/// | `57P03` cannot connect now | transient | no | yes |
/// | class `08` connection exception (`08001`/`08004`: not executed) | transient | maybe | yes |
/// | connection closed or lost, I/O error, client timeout | transient | maybe | yes |
/// | connect refused or unreachable | transient | no | yes |
/// | `40001` serialization failure, `40P01` deadlock | transient | no | no |
/// | `53300` too many connections | throttled | no | no |
/// | TLS: a certificate refused by either side, or no TLS where it is required | permanent | — | no |
/// | TLS: the connection broke during the handshake | transient | no | yes |
/// | other SQL errors, authentication (class `28`), conversions | permanent | — | no |
///
/// ```
/// // Errors from the caller's own code are not failover signals.
/// # fn demo(err: &tokio_postgres::Error) {
/// if switchover::postgres::is_failover_error(err) {
///     // the pool re-discovers the primary on its own; this is for your logs
/// }
/// # }
/// ```
pub fn is_failover_error(err: &tokio_postgres::Error) -> bool {
    match client_kind(err) {
        ClientKind::Db => match err.code() {
            Some(code) => is_failover_sqlstate(code),
            None => false,
        },
        ClientKind::Tls => !matches!(tls_failure(err), Some(TlsFailure::Refused)),
        ClientKind::Closed
        | ClientKind::Connect
        | ClientKind::Io
        | ClientKind::Timeout
        | ClientKind::Parse
        | ClientKind::UnexpectedMessage => true,
        ClientKind::Encode
        | ClientKind::Authentication
        | ClientKind::Config
        | ClientKind::Caller => false,
    }
}

pub(crate) fn is_failover_sqlstate(code: &SqlState) -> bool {
    let code = code.code();
    matches!(code, "25006" | "57P01" | "57P02" | "57P03") || code.starts_with("08")
}

/// `true` when `err` says the connection was lost under a request (closed, or a transport
/// error), so a statement in flight may or may not have run.
pub(crate) fn lost_in_flight(err: &tokio_postgres::Error) -> bool {
    matches!(client_kind(err), ClientKind::Closed | ClientKind::Io)
}

/// `true` when the connection `err` came from can no longer be used (as opposed to an error of
/// one statement on a healthy connection).
pub(crate) fn breaks_connection(err: &tokio_postgres::Error) -> bool {
    match client_kind(err) {
        ClientKind::Db => err.code().is_some_and(|c| {
            let c = c.code();
            matches!(c, "57P01" | "57P02" | "57P03" | "57P05") || c.starts_with("08")
        }),
        ClientKind::Closed
        | ClientKind::Connect
        | ClientKind::Io
        | ClientKind::Timeout
        | ClientKind::Tls
        | ClientKind::Parse
        | ClientKind::UnexpectedMessage => true,
        _ => false,
    }
}

/// Why a TLS handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// A certificate was refused (by either side), the handshake could not agree, or the
    /// server does not offer TLS: the same will happen next time.
    Refused,
    /// The connection broke during the handshake.
    Broken,
}

/// What kind of TLS failure `err` is; `None` when it is not one.
pub(crate) fn tls_failure(err: &tokio_postgres::Error) -> Option<TlsFailure> {
    if client_kind(err) != ClientKind::Tls {
        return None;
    }
    let mut cur = err.source();
    while let Some(e) = cur {
        if e.to_string() == "server does not support TLS" {
            return Some(TlsFailure::Refused);
        }
        #[cfg(feature = "tls")]
        {
            let rustls_error = e.downcast_ref::<rustls::Error>().is_some()
                || e.downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::get_ref)
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
            if rustls_error {
                return Some(TlsFailure::Refused);
            }
        }
        cur = e.source();
    }
    Some(TlsFailure::Broken)
}

/// `true` when the server refused the login (SQLSTATE class `28`).
pub(crate) fn is_login_refusal(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|c| c.code().starts_with("28"))
}

/// Walks `err`'s source chain for a tokio-postgres error.
pub(crate) fn find_pg_error<'a>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a tokio_postgres::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            return Some(pg);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorClass, Execution};

    #[test]
    fn sqlstates_classify_as_documented() {
        let c = classify_sqlstate(&SqlState::READ_ONLY_SQL_TRANSACTION);
        assert_eq!(c.class(), ErrorClass::Transient);
        assert_eq!(c.execution(), Execution::NotExecuted);

        let c = classify_sqlstate(&SqlState::ADMIN_SHUTDOWN);
        assert_eq!(c.class(), ErrorClass::Transient);
        assert_eq!(c.execution(), Execution::MayHaveExecuted);

        let c = classify_sqlstate(&SqlState::CANNOT_CONNECT_NOW);
        assert_eq!(c.execution(), Execution::NotExecuted);

        let c = classify_sqlstate(&SqlState::CONNECTION_FAILURE);
        assert_eq!(c.class(), ErrorClass::Transient);
        assert_eq!(c.execution(), Execution::MayHaveExecuted);

        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ] {
            let c = classify_sqlstate(&code);
            assert!(c.is_retry_safe(false), "{code:?}");
        }
        assert_eq!(
            classify_sqlstate(&SqlState::TOO_MANY_CONNECTIONS).class(),
            ErrorClass::Throttled
        );
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::SYNTAX_ERROR,
            SqlState::UNDEFINED_TABLE,
            SqlState::QUERY_CANCELED,
        ] {
            assert_eq!(
                classify_sqlstate(&code).class(),
                ErrorClass::Permanent,
                "{code:?}"
            );
        }
    }

    #[test]
    fn failover_sqlstates() {
        for code in [
            SqlState::READ_ONLY_SQL_TRANSACTION,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
        ] {
            assert!(is_failover_sqlstate(&code), "{code:?}");
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
        ] {
            assert!(!is_failover_sqlstate(&code), "{code:?}");
        }
    }
}

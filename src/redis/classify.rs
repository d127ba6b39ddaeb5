//! [`Classify`] for redis-rs errors.

#[cfg(test)]
use std::io;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::error::{Classification, Classify};

/// The server's words when a write reaches a replica, in a plain reply or inside a script error
/// (Redis 6 wraps it as `ERR Error running script ... -READONLY ...`).
const READONLY_MARKER: &str = "READONLY";
const READONLY_TEXT: &str = "You can't write against a read only";

/// `true` when `err` says the node refused a write because it is a replica: a `READONLY` reply,
/// a script error carrying `READONLY`, or a pipeline / transaction containing one.
///
/// Such a write surely did not execute, and the node is no longer (or never was) the primary.
pub fn is_readonly(err: &RedisError) -> bool {
    if err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) {
        return true;
    }
    if err.code() == Some(READONLY_MARKER) {
        return true;
    }
    if err.detail().is_some_and(mentions_readonly) {
        return true;
    }
    // Pipelines and aborted transactions carry one server error per failed command; `kind()`
    // only looks at the first.
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::ExecAbort) | ErrorKind::Extension => {
            err.clone().into_server_errors().is_some_and(|errors| {
                errors.iter().any(|(_, e)| {
                    e.kind() == Some(ServerErrorKind::ReadOnly)
                        || e.code() == READONLY_MARKER
                        || e.details().is_some_and(mentions_readonly)
                })
            })
        }
        _ => false,
    }
}

fn mentions_readonly(detail: &str) -> bool {
    detail.contains(READONLY_TEXT) || detail.contains("-READONLY")
}

impl Classify for RedisError {
    /// How `switchover` reads a redis-rs error:
    ///
    /// | error | class | executed? |
    /// |---|---|---|
    /// | `READONLY` (also inside a script error, a pipeline or an aborted transaction) | transient | not executed |
    /// | `MASTERDOWN`, `LOADING`, `NOREPLICAS`, `CLUSTERDOWN` | transient | not executed |
    /// | `BUSY` (a script is running), `TRYAGAIN`, `OOM` | throttled | not executed |
    /// | connection refused | transient | not executed |
    /// | timeout (marked [`timed_out`](Classification::timed_out): with the heartbeat on, one slow reply is not a failure), reset, broken pipe, not connected, closed connection, unparsable reply | transient | may have executed |
    /// | syntax (`ERR`), `WRONGTYPE`, `NOSCRIPT`, `NOPERM`, `EXECABORT`, type conversion, client-side and configuration errors, failed authentication | permanent | — |
    fn classify(&self) -> Classification {
        if is_readonly(self) {
            return Classification::transient().not_executed();
        }
        match self.kind() {
            ErrorKind::Server(kind) => match kind {
                ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::ClusterDown => Classification::transient().not_executed(),
                ServerErrorKind::TryAgain => Classification::throttled().not_executed(),
                _ => Classification::permanent(),
            },
            ErrorKind::Extension => match self.code() {
                Some("BUSY") | Some("OOM") => Classification::throttled().not_executed(),
                Some("NOREPLICAS") | Some("MASTERDOWN") | Some("LOADING") => {
                    Classification::transient().not_executed()
                }
                _ => Classification::permanent(),
            },
            // redis-rs keeps the `io::Error` behind an `Arc`, out of reach of `downcast_ref`: read
            // it through its predicates. Reset, broken pipe, timeout, closed connection: the
            // request may have been sent.
            ErrorKind::Io if self.is_connection_refusal() => {
                Classification::transient().not_executed()
            }
            // A reply slower than the response timeout: judged like an attempt the runner cut
            // (with the heartbeat on, slow is not dead: one heartbeat now decides).
            ErrorKind::Io if self.is_timeout() => Classification::transient().timed_out(),
            ErrorKind::Io => Classification::transient(),
            ErrorKind::Parse => Classification::transient(),
            ErrorKind::MasterNameNotFoundBySentinel | ErrorKind::NoValidReplicasFoundBySentinel => {
                Classification::transient().not_executed()
            }
            _ => Classification::permanent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorClass, Execution};

    fn server_error(reply: &[u8]) -> RedisError {
        redis::parse_redis_value(reply)
            .expect("a valid RESP error")
            .extract_error()
            .expect_err("an error reply")
    }

    #[test]
    fn readonly_replies_are_transient_and_not_executed() {
        for reply in [
            &b"-READONLY You can't write against a read only replica.\r\n"[..],
            // Redis 7 inside a script.
            b"-READONLY You can't write against a read only replica. script: d2, on @user_script:1.\r\n",
            // Redis 6 wraps it in ERR.
            b"-ERR Error running script (call to f_1): @user_script:1: -READONLY You can't write against a read only replica.\r\n",
        ] {
            let err = server_error(reply);
            assert!(is_readonly(&err), "{err}");
            let c = err.classify();
            assert_eq!(c.class(), ErrorClass::Transient, "{err}");
            assert_eq!(c.execution(), Execution::NotExecuted, "{err}");
        }
    }

    #[test]
    fn server_errors_by_code() {
        let cases: [(&[u8], ErrorClass, Execution); 9] = [
            (
                b"-ERR syntax error\r\n",
                ErrorClass::Permanent,
                Execution::MayHaveExecuted,
            ),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                ErrorClass::Permanent,
                Execution::MayHaveExecuted,
            ),
            (
                b"-NOSCRIPT No matching script\r\n",
                ErrorClass::Permanent,
                Execution::MayHaveExecuted,
            ),
            (
                b"-BUSY Redis is busy running a script\r\n",
                ErrorClass::Throttled,
                Execution::NotExecuted,
            ),
            (
                b"-LOADING Redis is loading the dataset in memory\r\n",
                ErrorClass::Transient,
                Execution::NotExecuted,
            ),
            (
                b"-MASTERDOWN Link with MASTER is down\r\n",
                ErrorClass::Transient,
                Execution::NotExecuted,
            ),
            (
                b"-TRYAGAIN later\r\n",
                ErrorClass::Throttled,
                Execution::NotExecuted,
            ),
            (
                b"-NOREPLICAS Not enough good replicas to write.\r\n",
                ErrorClass::Transient,
                Execution::NotExecuted,
            ),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
                ErrorClass::Throttled,
                Execution::NotExecuted,
            ),
        ];
        for (reply, class, execution) in cases {
            let err = server_error(reply);
            let c = err.classify();
            assert_eq!(c.class(), class, "{err}");
            if class != ErrorClass::Permanent {
                assert_eq!(c.execution(), execution, "{err}");
            }
        }
    }

    #[test]
    fn io_errors_by_kind() {
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.classify().execution(), Execution::NotExecuted);
        assert_eq!(refused.classify().class(), ErrorClass::Transient);

        let timeout = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(timeout.is_timeout());
        assert_eq!(timeout.classify().class(), ErrorClass::Transient);
        assert_eq!(timeout.classify().execution(), Execution::MayHaveExecuted);
        assert!(timeout.classify().is_timed_out());

        let reset = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(reset.is_connection_dropped());
        assert_eq!(reset.classify().execution(), Execution::MayHaveExecuted);

        // redis-rs does not say whether a request went out before "not connected": the table
        // errs on the safe side.
        let not_connected = RedisError::from(io::Error::from(io::ErrorKind::NotConnected));
        assert_eq!(not_connected.classify().class(), ErrorClass::Transient);
        assert_eq!(
            not_connected.classify().execution(),
            Execution::MayHaveExecuted
        );
    }

    #[test]
    fn client_side_errors_are_permanent() {
        let err = RedisError::from((ErrorKind::UnexpectedReturnType, "bad type"));
        assert_eq!(err.classify().class(), ErrorClass::Permanent);
        let err = RedisError::from((ErrorKind::InvalidClientConfig, "bad config"));
        assert_eq!(err.classify().class(), ErrorClass::Permanent);
    }
}

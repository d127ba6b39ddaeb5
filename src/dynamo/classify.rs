//! Reading an `SdkError` into the crate's error vocabulary.

use std::error::Error as StdError;
use std::io;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::Classification;

/// DynamoDB error codes that mean "slow down": retried with more patience, never an outage.
///
/// The AWS SDK's own throttling list (`aws_runtime::retries::classifiers::THROTTLING_ERRORS`)
/// is included: `TransactionInProgressException` (another request with the same client token
/// is still running) is contention on one item, not a failure of the region.
pub const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "BandwidthLimitExceeded",
    "TransactionInProgressException",
    "SlowDown",
];

/// DynamoDB error codes that mean the service failed on its side.
pub const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// The code DynamoDB returns when the table (or index) does not exist in the region asked.
pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";

/// What kind of failure an `SdkError` is, before any retrying: the detail behind a
/// [`Classification`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The request could not be built; it was never sent (a bug or bad input in the caller).
    Construction,
    /// The connection could not be established (refused, connect timeout): the request surely
    /// did not reach the server.
    ConnectFailed,
    /// The connection failed after the request may have been sent (reset, closed, I/O error).
    Dispatch,
    /// No answer in time: the request may have executed.
    Timeout,
    /// An answer came back that could not be read (truncated body, garbage).
    BadResponse,
    /// DynamoDB is shedding load (a throttling code or HTTP 429).
    Throttled,
    /// DynamoDB failed on its side (HTTP 5xx, `InternalServerError`, `ServiceUnavailable`).
    ServerError,
    /// The table does not exist in this region: a configuration error, not an outage.
    TableNotFound,
    /// The request was refused for a reason of the caller's (failed condition, validation,
    /// missing permission, any other 4xx).
    Rejected,
}

impl FailureKind {
    /// The verdict for retrying and for the region's health.
    ///
    /// | kind | class | execution |
    /// |---|---|---|
    /// | `Construction` | permanent | not executed |
    /// | `ConnectFailed` | transient | not executed |
    /// | `Dispatch`, `Timeout`, `BadResponse` | transient | may have executed |
    /// | `ServerError` | transient | may have executed |
    /// | `Throttled` | throttled | not executed |
    /// | `TableNotFound`, `Rejected` | permanent | not executed |
    pub const fn classification(self) -> Classification {
        match self {
            FailureKind::Construction | FailureKind::TableNotFound | FailureKind::Rejected => {
                Classification::permanent().not_executed()
            }
            FailureKind::ConnectFailed => Classification::transient().not_executed(),
            FailureKind::Dispatch
            | FailureKind::Timeout
            | FailureKind::BadResponse
            | FailureKind::ServerError => Classification::transient(),
            FailureKind::Throttled => Classification::throttled().not_executed(),
        }
    }
}

impl FailureKind {
    /// `true` when the region answered (a service error, throttling, a missing table, a
    /// rejection): it is alive, whatever it said.
    pub(crate) const fn is_answer(self) -> bool {
        matches!(
            self,
            FailureKind::Throttled
                | FailureKind::ServerError
                | FailureKind::TableNotFound
                | FailureKind::Rejected
        )
    }
}

/// Reads an `SdkError` of any DynamoDB operation into a [`FailureKind`].
///
/// - `DispatchFailure`: a refused connection, an unreachable address or a connect timeout is
///   [`ConnectFailed`](FailureKind::ConnectFailed) (surely not executed); any other connector
///   error (reset, closed connection, read timeout) is [`Dispatch`](FailureKind::Dispatch)
///   (may have executed);
/// - `TimeoutError` (the SDK's attempt or operation timeout): [`Timeout`](FailureKind::Timeout);
/// - `ResponseError`: [`ServerError`](FailureKind::ServerError) when the status is 5xx,
///   [`Throttled`](FailureKind::Throttled) for 429, [`BadResponse`](FailureKind::BadResponse)
///   otherwise;
/// - `ServiceError`: by error code first ([`THROTTLING_CODES`], [`TRANSIENT_CODES`],
///   [`RESOURCE_NOT_FOUND`]), then by HTTP status (5xx server error, 429 throttled, other 4xx
///   rejected);
/// - `ConstructionFailure`: [`Construction`](FailureKind::Construction).
pub fn failure_kind<E>(error: &SdkError<E, HttpResponse>) -> FailureKind
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ConstructionFailure(_) => FailureKind::Construction,
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(failure) => {
            let connector = failure
                .as_connector_error()
                .map(|c| c as &(dyn StdError + 'static));
            if connector.is_some_and(|c| never_connected(c) || is_connect_timeout(c)) {
                FailureKind::ConnectFailed
            } else if failure.is_user() {
                FailureKind::Construction
            } else if failure.is_timeout() {
                FailureKind::Timeout
            } else {
                FailureKind::Dispatch
            }
        }
        SdkError::ResponseError(response) => match response.raw().status().as_u16() {
            429 => FailureKind::Throttled,
            500..=599 => FailureKind::ServerError,
            _ => FailureKind::BadResponse,
        },
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            by_code_and_status(service.err().code(), status)
        }
        _ => FailureKind::Dispatch,
    }
}

/// Reads an `SdkError` of any DynamoDB operation into the crate's [`Classification`]: the
/// verdict of [`failure_kind`] (see [`FailureKind::classification`]).
///
/// ```
/// use aws_sdk_dynamodb::error::SdkError;
/// use aws_sdk_dynamodb::operation::get_item::GetItemError;
/// use switchover::ErrorClass;
///
/// let err: SdkError<GetItemError, _> = SdkError::construction_failure("bad key");
/// assert_eq!(switchover::dynamo::classify(&err).class(), ErrorClass::Permanent);
/// ```
pub fn classify<E>(error: &SdkError<E, HttpResponse>) -> Classification
where
    E: ProvideErrorMetadata,
{
    failure_kind(error).classification()
}

fn by_code_and_status(code: Option<&str>, status: u16) -> FailureKind {
    if let Some(code) = code {
        // Codes may come namespaced (`com.amazonaws.dynamodb.v20120810#ThrottlingException`).
        let code = code.rsplit('#').next().unwrap_or(code);
        if THROTTLING_CODES.contains(&code) {
            return FailureKind::Throttled;
        }
        if TRANSIENT_CODES.contains(&code) {
            return FailureKind::ServerError;
        }
        if code == RESOURCE_NOT_FOUND {
            return FailureKind::TableNotFound;
        }
    }
    match status {
        429 => FailureKind::Throttled,
        500..=599 => FailureKind::ServerError,
        _ => FailureKind::Rejected,
    }
}

/// Whether the source chain shows the connection was never established.
fn never_connected(error: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::AddrNotAvailable
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
            )
        {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether the source chain names the HTTP client's connect timeout (its error type is private;
/// its message is "HTTP connect timeout occurred after ...").
fn is_connect_timeout(error: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(error);
    while let Some(e) = cur {
        if e.to_string().starts_with("HTTP connect timeout") {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorClass, Execution};
    use aws_sdk_dynamodb::error::ConnectorError;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;

    type Err = SdkError<PutItemError, HttpResponse>;

    fn service(code: &str, status: u16) -> Err {
        let meta = aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .message("m")
            .build();
        let err = PutItemError::generic(meta);
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(err, raw)
    }

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            (
                "ProvisionedThroughputExceededException",
                400,
                FailureKind::Throttled,
            ),
            ("ThrottlingException", 400, FailureKind::Throttled),
            ("RequestLimitExceeded", 400, FailureKind::Throttled),
            (
                "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                400,
                FailureKind::Throttled,
            ),
            ("InternalServerError", 500, FailureKind::ServerError),
            ("ServiceUnavailable", 503, FailureKind::ServerError),
            ("SomethingNew", 502, FailureKind::ServerError),
            ("SomethingNew", 429, FailureKind::Throttled),
            (
                "ConditionalCheckFailedException",
                400,
                FailureKind::Rejected,
            ),
            ("ValidationException", 400, FailureKind::Rejected),
            ("AccessDeniedException", 400, FailureKind::Rejected),
            // Contention on a client request token, not an outage (the SDK throttles it too).
            (
                "TransactionInProgressException",
                400,
                FailureKind::Throttled,
            ),
            ("RequestTimeoutException", 400, FailureKind::ServerError),
            ("ResourceNotFoundException", 400, FailureKind::TableNotFound),
        ];
        for (code, status, kind) in cases {
            assert_eq!(
                failure_kind(&service(code, status)),
                kind,
                "{code} {status}"
            );
        }
    }

    #[test]
    fn kinds_map_to_classes() {
        let c = classify(&service("ThrottlingException", 400));
        assert_eq!(c.class(), ErrorClass::Throttled);
        assert!(!c.counts_against_endpoint());
        let c = classify(&service("InternalServerError", 500));
        assert_eq!(c.class(), ErrorClass::Transient);
        assert_eq!(c.execution(), Execution::MayHaveExecuted);
        let c = classify(&service("ConditionalCheckFailedException", 400));
        assert_eq!(c.class(), ErrorClass::Permanent);
        let c = classify(&service("ResourceNotFoundException", 400));
        assert_eq!(c.class(), ErrorClass::Permanent);
        assert!(!c.counts_against_endpoint());
    }

    #[test]
    fn refused_connections_did_not_execute() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err: Err = SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        assert_eq!(failure_kind(&err), FailureKind::ConnectFailed);
        assert_eq!(classify(&err).execution(), Execution::NotExecuted);

        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let err: Err = SdkError::dispatch_failure(ConnectorError::io(Box::new(reset)));
        assert_eq!(failure_kind(&err), FailureKind::Dispatch);
        assert_eq!(classify(&err).execution(), Execution::MayHaveExecuted);

        let err: Err = SdkError::timeout_error("attempt timeout");
        assert_eq!(failure_kind(&err), FailureKind::Timeout);
        assert_eq!(classify(&err).class(), ErrorClass::Transient);
    }
}

//! The error a [`Table`](super::Table) call returns.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::classify::FailureKind;
use crate::error::{Classification, Classify, Execution};
use crate::retry::StopReason;

/// A [`Table`](super::Table) call that did not succeed.
///
/// It says which region answered last, how many attempts were made, why the handle stopped
/// (a [`StopReason`]) and what the last failure was (a [`FailureKind`]); the SDK's own error,
/// when there was one, is the [`source`](StdError::source) and can be taken back with
/// [`into_sdk_error`](Self::into_sdk_error).
///
/// A missing table is reported as [`FailureKind::TableNotFound`] with the region and the
/// physical table name: a configuration error, never retried and never counted against the
/// region.
///
/// ```no_run
/// # async fn demo(table: switchover::dynamo::Table) {
/// use aws_sdk_dynamodb::types::AttributeValue;
///
/// let item = [("pk".to_owned(), AttributeValue::S("a".into()))].into();
/// match table.put_item(item).condition("attribute_not_exists(pk)").send().await {
///     Ok(_) => println!("created"),
///     Err(e) if e.is_conditional_check_failed() => println!("already there"),
///     Err(e) if e.is_table_not_found() => eprintln!("misconfigured: {e}"),
///     Err(e) => eprintln!("failed: {e}"),
/// }
/// # }
/// ```
pub struct Error<E> {
    inner: Box<Inner<E>>,
}

struct Inner<E> {
    kind: FailureKind,
    stop: StopReason,
    attempts: u32,
    region: Option<Arc<str>>,
    table: Option<Arc<str>>,
    execution: Execution,
    source: Option<SdkError<E, HttpResponse>>,
}

impl<E> Error<E> {
    pub(crate) fn new(
        kind: FailureKind,
        stop: StopReason,
        attempts: u32,
        source: Option<SdkError<E, HttpResponse>>,
    ) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                stop,
                attempts,
                region: None,
                table: None,
                execution: kind.classification().execution(),
                source,
            }),
        }
    }

    pub(crate) fn at(mut self, region: Arc<str>, table: Arc<str>) -> Self {
        self.inner.region = Some(region);
        self.inner.table = Some(table);
        self
    }

    pub(crate) fn with_execution(mut self, execution: Execution) -> Self {
        self.inner.execution = execution;
        self
    }

    /// What the last failure was.
    pub fn kind(&self) -> FailureKind {
        self.inner.kind
    }

    /// Why the handle stopped trying.
    pub fn stop_reason(&self) -> StopReason {
        self.inner.stop
    }

    /// How many attempts were made, across all regions, the first included.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The region of the last attempt, if one was made.
    pub fn region(&self) -> Option<&str> {
        self.inner.region.as_deref()
    }

    /// The physical table name used in that region.
    pub fn table_name(&self) -> Option<&str> {
        self.inner.table.as_deref()
    }

    /// Whether any attempt of this call may have run on a server: `NotExecuted` only when
    /// every attempt surely did not. When it says `MayHaveExecuted` for a write that was not
    /// idempotent, read the item back before trying again.
    pub fn execution(&self) -> Execution {
        self.inner.execution
    }

    /// The DynamoDB error code of the last failure (`"ConditionalCheckFailedException"`, ...),
    /// when the service answered with one.
    pub fn code(&self) -> Option<&str>
    where
        E: ProvideErrorMetadata,
    {
        match &self.inner.source {
            Some(SdkError::ServiceError(s)) => s.err().code(),
            _ => None,
        }
    }

    /// `true` when the table does not exist in [`region`](Self::region).
    pub fn is_table_not_found(&self) -> bool {
        self.inner.kind == FailureKind::TableNotFound
    }

    /// `true` when a condition expression failed (the item was not written).
    pub fn is_conditional_check_failed(&self) -> bool
    where
        E: ProvideErrorMetadata,
    {
        self.code() == Some("ConditionalCheckFailedException")
            && self.inner.kind == FailureKind::Rejected
    }

    /// `true` when the last failure was throttling.
    pub fn is_throttled(&self) -> bool {
        self.inner.kind == FailureKind::Throttled
    }

    /// `true` when the last failure was a timeout (the SDK's or the handle's).
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == FailureKind::Timeout
    }

    /// The SDK's error of the last failed attempt; `None` when the last attempt ran out of
    /// the handle's own time limit instead of returning.
    pub fn sdk_error(&self) -> Option<&SdkError<E, HttpResponse>> {
        self.inner.source.as_ref()
    }

    /// Takes the SDK's error of the last failed attempt.
    pub fn into_sdk_error(self) -> Option<SdkError<E, HttpResponse>> {
        self.inner.source
    }

    /// The operation's own error (`GetItemError`, ...) when the service answered with one.
    pub fn service_error(&self) -> Option<&E> {
        self.inner
            .source
            .as_ref()
            .and_then(SdkError::as_service_error)
    }
}

impl<E> Classify for Error<E> {
    fn classify(&self) -> Classification {
        self.inner
            .kind
            .classification()
            .with_execution(self.inner.execution)
    }
}

impl<E> fmt::Debug for Error<E>
where
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("stop", &self.inner.stop)
            .field("attempts", &self.inner.attempts)
            .field("region", &self.inner.region)
            .field("table", &self.inner.table)
            .field("execution", &self.inner.execution)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl<E> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let region = self.inner.region.as_deref().unwrap_or("?");
        if self.inner.kind == FailureKind::TableNotFound {
            let table = self.inner.table.as_deref().unwrap_or("?");
            return write!(
                f,
                "table `{table}` does not exist in region `{region}` (a configuration error, \
                 not an outage)"
            );
        }
        let s = if self.inner.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "dynamodb call failed in region `{region}`: {} ({}, {} attempt{s})",
            self.inner.kind, self.inner.stop, self.inner.attempts
        )
    }
}

impl<E> StdError for Error<E>
where
    E: StdError + 'static,
{
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Construction => "request could not be built",
            FailureKind::ConnectFailed => "could not connect",
            FailureKind::Dispatch => "connection failed",
            FailureKind::Timeout => "timed out",
            FailureKind::BadResponse => "unreadable response",
            FailureKind::Throttled => "throttled",
            FailureKind::ServerError => "server error",
            FailureKind::TableNotFound => "table not found",
            FailureKind::Rejected => "request rejected",
        })
    }
}

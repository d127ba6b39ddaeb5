//! One call through a [`Table`]: where its attempts go, how each is bounded, and how a failed
//! call becomes an [`Error`]. The attempts themselves are run by the core's runner
//! ([`Router::call`](crate::route::Router::call)).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::classify::{FailureKind, failure_kind};
use super::config::{RegionName, WriteMode};
use super::error::Error;
use super::suspect::AvoidSuspects;
use super::table::{Inner, Slot, Table};
use crate::error::{Classification, Execution};
use crate::retry::StopReason;
use crate::route::{Follower, Held, RouteError, Target};

/// A held write gives up this long before the call's deadline, so the deadline never cuts it
/// (a cut attempt may have executed; a held one surely did not).
const HOLD_MARGIN: Duration = Duration::from_millis(20);

/// Which regions an attempt may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// An eventually consistent read: the read policy's region, or on retry a region that has
    /// not failed in this call.
    Read,
    /// A write: per the [`WriteMode`].
    Write,
    /// Always the router's active region: strongly consistent reads, conditional writes,
    /// transactions.
    Active,
}

impl Access {
    fn target<'a>(self, inner: &'a Inner) -> Target<'a, RegionName> {
        match self {
            Access::Read => Target::Read(&*inner.read_policy),
            Access::Write if inner.write_mode == WriteMode::AnyHealthy => Target::ActiveThenUntried,
            Access::Write | Access::Active => Target::Active,
        }
    }
}

/// The failure of one attempt, as the runner sees it.
enum Failure<E> {
    /// The SDK returned an error.
    Sdk {
        kind: FailureKind,
        error: Box<SdkError<E, HttpResponse>>,
    },
    /// The handle's own attempt bound ran out (a client with no timeout of its own).
    TimedOut,
    /// A read left its region unanswered after the suspect delay, for one that is not
    /// suspect (the silence was counted once, when the region became suspect).
    Hedged,
    /// The region was declared down while the write waited for its verdict: never sent.
    Redirected,
    /// The region was declared down while the attempt was in flight there.
    RegionDown,
}

impl<E> Failure<E> {
    fn classification(&self) -> Classification {
        match self {
            Failure::Sdk { kind, .. } => kind.classification(),
            Failure::TimedOut | Failure::RegionDown => Classification::transient(),
            Failure::Hedged | Failure::Redirected => Classification::redirected(),
        }
    }
}

/// One call through a [`Table`]: made by [`Table::read`], [`Table::write`] or
/// [`Table::active`], started by [`send`](Self::send).
#[must_use = "a call does nothing until `send` is awaited"]
pub struct Call<'t, F> {
    table: &'t Table,
    op: F,
    access: Access,
    idempotent: bool,
}

impl<F> fmt::Debug for Call<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("table", &self.table.inner.name)
            .field("access", &self.access)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl<'t, F> Call<'t, F> {
    /// A call of `op` with `access`, not idempotent.
    pub(crate) fn new<Fut, T, E>(table: &'t Table, access: Access, op: F) -> Self
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        Call {
            table,
            op,
            access,
            idempotent: false,
        }
    }

    /// Declares whether running the operation twice is harmless (reads: always `true`;
    /// writes: default `false`). A plain `PutItem` of a whole item, a `DeleteItem`, an
    /// `UpdateItem` that only `SET`s values, and a transaction with a client request token are
    /// idempotent; an `ADD` or a counter increment is not. A failure that may have executed is
    /// retried only for idempotent calls; one that surely did not (connection refused,
    /// throttling) always is.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Sends every attempt to the router's active region only (for strongly consistent reads,
    /// conditional writes and transactions, whatever the read policy or write mode).
    pub fn active_region_only(mut self) -> Self {
        self.access = Access::Active;
        self
    }

    /// Runs the call.
    ///
    /// # Errors
    ///
    /// An [`Error`] with the last SDK error, the region, the attempt count and why the handle
    /// stopped.
    pub async fn send<T, E, Fut>(self) -> Result<T, Error<E>>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata,
    {
        let Call {
            table,
            mut op,
            access,
            idempotent,
        } = self;
        let inner = &*table.inner;
        // No held write outlives the call's deadline (the runner's starts a moment later).
        let deadline = inner.policy.deadline().map(|d| Instant::now() + d);
        let read_policy = AvoidSuspects(inner);
        let target = match access {
            Access::Read => Target::Read(&read_policy),
            _ => access.target(inner),
        };
        inner
            .router
            .call(&inner.policy, |attempt| {
                inner.note_switch(attempt.generation());
                let slot = inner.slot(attempt.endpoint());
                let fut = op(&slot.client, &slot.table);
                async move {
                    let failure = match inner.attempt(slot, access, deadline, fut).await {
                        Ok(value) => return Ok(value),
                        Err(failure) => failure,
                    };
                    let c = failure.classification();
                    tracing::debug!(
                        target: "switchover::dynamo",
                        table = %inner.name,
                        region = %slot.id,
                        class = %c.class(),
                        execution = %c.execution(),
                        "attempt failed"
                    );
                    Err(failure)
                }
            })
            .target(target)
            .idempotent(idempotent)
            .maybe_budget(inner.budget.as_ref())
            .classify_with(Failure::classification)
            .run()
            .await
            .map_err(|e| inner.error(e))
    }
}

impl Inner {
    /// One attempt of `fut` in `slot`, bounded by the handle's attempt bound, with suspicion:
    ///
    /// - a write (or an active-only call) to a suspect region first waits for its verdict (an
    ///   answer, or the region declared down: then it is redirected, never sent), at most the
    ///   confirm timeout;
    /// - unanswered after the suspect delay, the region becomes suspect; a read then leaves
    ///   for a region that is not, if there is one, and any other attempt keeps waiting but
    ///   ends as soon as the region is declared down.
    ///
    /// Until the suspect delay, this is the operation's future and one timer.
    async fn attempt<T, E, Fut>(
        &self,
        slot: &Slot,
        access: Access,
        deadline: Option<Instant>,
        fut: Fut,
    ) -> Result<T, Failure<E>>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata,
    {
        let signals = &*slot.signals;
        if access != Access::Read
            && !slot.endpoint.is_available()
            && let Some(follower) = &self.follower
            && !self.hold(slot, follower, deadline).await
        {
            return Err(Failure::Redirected);
        }
        if access != Access::Read && signals.is_suspect() && !self.verdict(slot).await {
            return Err(Failure::Redirected);
        }
        let start = Instant::now();
        let guard = self.attempt_guard;
        let mut fut = std::pin::pin!(fut);
        let first = self.suspect_delay(slot).map_or(guard, |d| d.min(guard));
        let answer = tokio::select! {
            biased;
            out = &mut fut => Some(out),
            () = tokio::time::sleep_until(start + first) => None,
        };
        let out = match answer {
            Some(out) => out,
            None if first == guard => {
                self.suspect(slot, None);
                return Err(Failure::TimedOut);
            }
            None => {
                // The slow path: the region is silent.
                let down = signals.down().notified();
                self.suspect(slot, Some(start));
                if access == Access::Read && self.has_alternative(slot) {
                    return Err(Failure::Hedged);
                }
                if !slot.endpoint.is_available() {
                    return Err(Failure::RegionDown);
                }
                tokio::select! {
                    biased;
                    out = &mut fut => out,
                    () = down => return Err(Failure::RegionDown),
                    () = tokio::time::sleep_until(start + guard) => {
                        return Err(Failure::TimedOut);
                    }
                }
            }
        };
        match out {
            Ok(value) => {
                signals.answered();
                Ok(value)
            }
            Err(error) => {
                let kind = failure_kind(&error);
                match kind {
                    FailureKind::Timeout => self.suspect(slot, None),
                    k if k.is_answer() => signals.answered(),
                    _ => {}
                }
                Err(Failure::Sdk {
                    kind,
                    error: Box::new(error),
                })
            }
        }
    }

    /// A write for the region a fleet authority names, which this handle cannot reach: it must
    /// not go elsewhere, so the core holds it ([`Follower::hold`]) until the region comes back
    /// (`true`) or a new decision (`false`: redirected, never sent; the runner picks the new
    /// region at once), at most the attempt bound and never past shortly before the call's
    /// deadline.
    #[cold]
    async fn hold(
        &self,
        slot: &Slot,
        follower: &Follower<RegionName>,
        deadline: Option<Instant>,
    ) -> bool {
        let mut end = Instant::now() + self.attempt_guard;
        if let Some(d) = deadline {
            end = end.min(d.checked_sub(HOLD_MARGIN).unwrap_or(d));
        }
        follower.hold(|| slot.endpoint.is_available(), end).await == Held::Ready
    }

    /// Waits for a suspect region's verdict, at most the confirm timeout: `false` when it was
    /// declared down (or is not available), `true` when it answered or the wait ran out.
    #[cold]
    async fn verdict(&self, slot: &Slot) -> bool {
        let signals = &*slot.signals;
        let (down, answered) = (
            signals.down().notified(),
            signals.answered_notify().notified(),
        );
        if !signals.is_suspect() {
            return true;
        }
        if slot.endpoint.is_available() {
            tokio::select! {
                () = down => {}
                () = answered => {}
                () = tokio::time::sleep(self.confirm_timeout) => {}
            }
        }
        slot.endpoint.is_available()
    }

    /// The caller's error of a failed call.
    ///
    /// When the runner cut the last attempt (the deadline or the policy's attempt timeout), its
    /// request was in flight in the region the runner names and may have executed; the last
    /// error the operation returned, if any, is an earlier attempt's (maybe another region's,
    /// maybe surely not executed), so the call is reported as a timeout in that region.
    fn error<E>(&self, e: RouteError<RegionName, Failure<E>>) -> Error<E> {
        let (reason, attempts, cut) = (e.reason(), e.attempts(), e.timed_out());
        let execution = if e.may_have_executed() {
            Execution::MayHaveExecuted
        } else {
            Execution::NotExecuted
        };
        let slot = e.endpoint().and_then(|id| self.find(id));
        let last = if cut { None } else { e.into_last_error() };
        let error = match last {
            Some(Failure::Sdk { kind, error }) => Error::new(kind, reason, attempts, Some(*error)),
            Some(Failure::TimedOut | Failure::RegionDown | Failure::Hedged) | None => {
                Error::new(FailureKind::Timeout, reason, attempts, None)
            }
            Some(Failure::Redirected) => {
                Error::new(FailureKind::ConnectFailed, reason, attempts, None)
            }
        }
        .with_execution(execution);
        let Some(slot) = slot else {
            return error;
        };
        if error.kind() == FailureKind::TableNotFound {
            tracing::error!(
                target: "switchover::dynamo",
                table = %slot.table,
                region = %slot.id,
                "table does not exist in this region (configuration error)"
            );
        } else if reason != StopReason::Permanent {
            tracing::debug!(
                target: "switchover::dynamo",
                table = %self.name,
                region = %slot.id,
                reason = %reason,
                attempts,
                "call failed"
            );
        }
        error.at(slot.id.shared(), Arc::clone(&slot.table))
    }
}

//! The region-aware table handle and its builder.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::classify::{FailureKind, failure_kind};
use super::config::{Canary, RegionConfig, RegionName, Timeouts, WriteMode};
use super::error::Error;
use super::probe::CanaryProbe;
use crate::error::{Classification, ConfigError, Execution};
use crate::health::{Endpoint, HealthState, HealthTracker, HealthTrackerBuilder};
use crate::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryError, RetryPolicy, StopReason};
use crate::route::{Failback, PrimaryOnly, ReadPolicy, RouteEvent, Router, SwitchError};

/// The most regions one table handle accepts.
pub const MAX_REGIONS: usize = 64;

/// Slack added to the attempt timeout for the handle's own guard, so the SDK's timeout (on the
/// clients the handle builds) fires first and reports a proper `TimeoutError`.
const GUARD_SLACK: Duration = Duration::from_millis(100);

type HealthCustomizer =
    Box<dyn FnOnce(HealthTrackerBuilder<RegionName>) -> HealthTrackerBuilder<RegionName> + Send>;

/// A handle on one logical DynamoDB table replicated in several regions (a Global Table) that
/// sends each call to the right region and fails over between them.
///
/// Cheap to clone (an `Arc`); clones share the clients, the health tracker, the router and the
/// probe task, which stops when the last clone is dropped. Built with [`Table::builder`].
///
/// See the [module documentation](super) for the behaviour.
#[derive(Clone)]
pub struct Table {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    regions: Vec<Slot>,
    router: Router<RegionName>,
    policy: RetryPolicy,
    attempt_guard: Duration,
    read_policy: Box<dyn ReadPolicy<RegionName>>,
    write_mode: WriteMode,
    budget: Option<RetryBudget>,
    /// The generation of the last switch logged by this handle.
    seen_generation: AtomicU64,
    /// The active region (slot index) at `seen_generation`.
    seen_active: AtomicUsize,
}

struct Slot {
    id: RegionName,
    client: Client,
    table: Arc<str>,
    endpoint: Endpoint<RegionName>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &*self.inner;
        f.debug_struct("Table")
            .field("name", &i.name)
            .field(
                "regions",
                &i.regions
                    .iter()
                    .map(|s| (&s.id, &s.table, s.endpoint.state()))
                    .collect::<Vec<_>>(),
            )
            .field("active", i.router.active().id())
            .field("write_mode", &i.write_mode)
            .finish_non_exhaustive()
    }
}

/// Which regions an attempt may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// An eventually consistent read: the read policy's region, or any healthy region on retry.
    Read,
    /// A write: per the [`WriteMode`].
    Write,
    /// Always the router's active region: strongly consistent reads, conditional writes,
    /// transactions.
    Active,
}

/// The failure of one attempt, inside the handle.
enum Attempt<E> {
    Sdk {
        kind: FailureKind,
        error: Box<SdkError<E, HttpResponse>>,
        slot: usize,
    },
    TimedOut {
        slot: usize,
    },
}

impl<E> Attempt<E> {
    fn classification(&self) -> Classification {
        match self {
            Attempt::Sdk { kind, .. } => kind.classification(),
            Attempt::TimedOut { .. } => Classification::transient(),
        }
    }
}

impl Table {
    /// A builder for the table `name` (its name in every region unless a region says
    /// otherwise).
    pub fn builder(name: impl Into<String>) -> TableBuilder {
        TableBuilder {
            name: name.into(),
            regions: Vec::new(),
            timeouts: Timeouts::new(),
            retry_policy: None,
            health: None,
            canary: Canary::default(),
            heartbeat: None,
            failback: Failback::After(Duration::from_secs(30)),
            read_policy: Box::new(PrimaryOnly),
            write_mode: WriteMode::default(),
            budget: None,
        }
    }

    /// The logical table name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The regions, in order of preference.
    pub fn regions(&self) -> impl Iterator<Item = &RegionName> + '_ {
        self.inner.regions.iter().map(|s| &s.id)
    }

    /// The region that takes writes now (re-evaluated: a failover or failback due now happens
    /// here).
    pub fn active_region(&self) -> RegionName {
        let (slot, _) = self.inner.active_slot();
        self.inner.regions[slot].id.clone()
    }

    /// The client and physical table name of `region`, for calls that must go to one region
    /// (outside failover; nothing is recorded).
    pub fn region_client(&self, region: &str) -> Option<(&Client, &str)> {
        self.inner
            .regions
            .iter()
            .find(|s| s.id == region)
            .map(|s| (&s.client, &*s.table))
    }

    /// The health state of `region`, if it is one of the table's.
    pub fn region_state(&self, region: &str) -> Option<HealthState> {
        self.inner
            .regions
            .iter()
            .find(|s| s.id == region)
            .map(|s| s.endpoint.state())
    }

    /// The router (active region, generation, events) for advanced use.
    pub fn router(&self) -> &Router<RegionName> {
        &self.inner.router
    }

    /// The health tracker of the regions.
    pub fn health(&self) -> &HealthTracker<RegionName> {
        self.inner.router.tracker()
    }

    /// A subscription to every switch of the active region (and to all-down periods), from now
    /// on. Events are produced when the handle re-evaluates the router, which every call does.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RouteEvent<RegionName>> {
        self.inner.router.subscribe()
    }

    /// Moves traffic away from `region` for a drill or maintenance: it is drained (no new
    /// calls, not counted as down) and, if it was active, the next region takes over. Undo
    /// with [`restore`](Self::restore).
    ///
    /// # Errors
    ///
    /// [`SwitchError::UnknownEndpoint`] when `region` is not one of the table's.
    pub fn evacuate(&self, region: &str) -> Result<(), SwitchError> {
        let id = self
            .inner
            .find(region)
            .ok_or(SwitchError::UnknownEndpoint)?;
        tracing::warn!(target: "switchover::dynamo", table = %self.inner.name, region, "evacuating region");
        self.inner.router.evacuate(&self.inner.regions[id].id)?;
        self.inner.active_slot();
        Ok(())
    }

    /// Ends an [`evacuate`](Self::evacuate) (or any manual override) of `region`: it is
    /// tracked again, and the router fails back to it after its hysteresis if it is preferred.
    ///
    /// # Errors
    ///
    /// [`SwitchError::UnknownEndpoint`] when `region` is not one of the table's.
    pub fn restore(&self, region: &str) -> Result<(), SwitchError> {
        let id = self
            .inner
            .find(region)
            .ok_or(SwitchError::UnknownEndpoint)?;
        tracing::info!(target: "switchover::dynamo", table = %self.inner.name, region, "restoring region");
        self.health().clear(&self.inner.regions[id].id);
        Ok(())
    }

    /// A call of any SDK operation for a read (eventually consistent): `op` gets the client
    /// and the physical table name of the region of each attempt (the read policy's choice;
    /// after a failure, any other healthy region). Reads are idempotent.
    ///
    /// ```no_run
    /// # async fn demo(table: switchover::dynamo::Table) -> Result<(), Box<dyn std::error::Error>> {
    /// let page = table
    ///     .read(|client, table| client.scan().table_name(table).limit(10).send())
    ///     .send()
    ///     .await?;
    /// println!("{} items", page.count());
    /// # Ok(()) }
    /// ```
    pub fn read<F, Fut, T, E>(&self, op: F) -> Call<'_, F>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        Call {
            table: self,
            op,
            access: Access::Read,
            idempotent: true,
        }
    }

    /// A call of any SDK operation for a write, routed by the [`WriteMode`]. Not idempotent
    /// unless marked with [`Call::idempotent`]: a write that may have executed is not retried.
    pub fn write<F, Fut, T, E>(&self, op: F) -> Call<'_, F>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        Call {
            table: self,
            op,
            access: Access::Write,
            idempotent: false,
        }
    }

    /// A call of any SDK operation that must see the active region's latest data or change it
    /// atomically: strongly consistent reads, conditional writes, transactions, `DescribeTable`.
    /// Always sent to the router's active region. Not idempotent unless marked.
    ///
    /// ```no_run
    /// # async fn demo(table: switchover::dynamo::Table) -> Result<(), Box<dyn std::error::Error>> {
    /// use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
    ///
    /// let out = table
    ///     .active(|client, table| {
    ///         let put = Put::builder()
    ///             .table_name(table)
    ///             .item("pk", AttributeValue::S("order-1".into()))
    ///             .build()
    ///             .expect("table and item are set");
    ///         client
    ///             .transact_write_items()
    ///             .transact_items(TransactWriteItem::builder().put(put).build())
    ///             .client_request_token("order-1-v1") // makes retries idempotent
    ///             .send()
    ///     })
    ///     .idempotent(true)
    ///     .send()
    ///     .await?;
    /// # let _ = out; Ok(()) }
    /// ```
    pub fn active<F, Fut, T, E>(&self, op: F) -> Call<'_, F>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        Call {
            table: self,
            op,
            access: Access::Active,
            idempotent: false,
        }
    }

    /// Sends `DescribeTable` to every region and returns the regions where the table is
    /// missing (with their physical names), so a misconfiguration shows at start-up rather than
    /// at the first failover. Regions that cannot be reached are not reported.
    pub async fn missing_tables(&self) -> Vec<(RegionName, String)> {
        let mut missing = Vec::new();
        for slot in &self.inner.regions {
            let out = tokio::time::timeout(
                self.inner.attempt_guard,
                slot.client.describe_table().table_name(&*slot.table).send(),
            )
            .await;
            if let Ok(Err(e)) = out
                && failure_kind(&e) == FailureKind::TableNotFound
            {
                missing.push((slot.id.clone(), slot.table.to_string()));
            }
        }
        missing
    }

    /// Runs `op` with retries and routing; the engine of every call.
    pub(crate) async fn execute<T, E, F, Fut>(
        &self,
        access: Access,
        idempotent: bool,
        mut op: F,
    ) -> Result<T, Error<E>>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata,
    {
        let inner = &*self.inner;
        // Regions that failed (transiently) during this call, as a bit set.
        let failed = AtomicU64::new(0);
        let may_have_executed = AtomicBool::new(false);
        let last_slot = AtomicUsize::new(0);
        let guard = inner.attempt_guard;
        let attempt = || {
            let slot_index = inner.pick(access, failed.load(Ordering::Relaxed));
            last_slot.store(slot_index, Ordering::Relaxed);
            let slot = &inner.regions[slot_index];
            let fut = op(&slot.client, &slot.table);
            let (failed, may_have_executed) = (&failed, &may_have_executed);
            async move {
                let start = Instant::now();
                let outcome = match tokio::time::timeout(guard, fut).await {
                    Ok(Ok(value)) => {
                        slot.endpoint.record_success_with_latency(start.elapsed());
                        return Ok(value);
                    }
                    Ok(Err(error)) => Attempt::Sdk {
                        kind: failure_kind(&error),
                        error: Box::new(error),
                        slot: slot_index,
                    },
                    Err(_) => Attempt::TimedOut { slot: slot_index },
                };
                let c = outcome.classification();
                slot.endpoint.record_failure(c);
                if c.execution() == Execution::MayHaveExecuted {
                    may_have_executed.store(true, Ordering::Relaxed);
                }
                if c.counts_against_endpoint() {
                    failed.fetch_or(1 << slot_index, Ordering::Relaxed);
                }
                tracing::debug!(
                    target: "switchover::dynamo",
                    table = %inner.name,
                    region = %slot.id,
                    class = %c.class(),
                    execution = %c.execution(),
                    "attempt failed"
                );
                Err(outcome)
            }
        };
        let mut retry = inner
            .policy
            .retry(attempt)
            .idempotent(idempotent)
            .classify_with(|a: &Attempt<E>| a.classification());
        if let Some(budget) = &inner.budget {
            retry = retry.budget(budget);
        }
        retry.run().await.map_err(|e: RetryError<Attempt<E>>| {
            let reason = e.reason();
            let attempts = e.attempts();
            // The executor cut the last attempt (deadline or the policy's attempt timeout): its
            // request was in flight in `last_slot` and may have executed, and `last_error`, if
            // any, is an earlier attempt's (maybe another region's, maybe surely not executed).
            let cut = e.timed_out();
            let execution = if cut || may_have_executed.load(Ordering::Relaxed) {
                Execution::MayHaveExecuted
            } else {
                Execution::NotExecuted
            };
            let last_error = if cut { None } else { e.into_last_error() };
            let (error, slot) = match last_error {
                Some(Attempt::Sdk { kind, error, slot }) => {
                    (Error::new(kind, reason, attempts, Some(*error)), slot)
                }
                Some(Attempt::TimedOut { slot }) => (
                    Error::new(FailureKind::Timeout, reason, attempts, None),
                    slot,
                ),
                None => (
                    Error::new(FailureKind::Timeout, reason, attempts, None),
                    last_slot.load(Ordering::Relaxed),
                ),
            };
            let slot = &inner.regions[slot];
            let error = error
                .at(slot.id.shared(), Arc::clone(&slot.table))
                .with_execution(execution);
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
                    table = %inner.name,
                    region = %slot.id,
                    reason = %reason,
                    attempts,
                    "call failed"
                );
            }
            error
        })
    }
}

impl Inner {
    fn find(&self, region: &str) -> Option<usize> {
        self.regions.iter().position(|s| s.id == region)
    }

    fn slot_of(&self, endpoint: &Endpoint<RegionName>) -> usize {
        self.regions
            .iter()
            .position(|s| s.endpoint.ptr_eq(endpoint))
            .unwrap_or(0)
    }

    /// The active region's slot and whether every region is down; logs a switch the first
    /// time this handle sees it.
    fn active_slot(&self) -> (usize, bool) {
        let active = self.router.active();
        let slot = self.slot_of(active.endpoint());
        let generation = active.generation();
        let seen = self.seen_generation.load(Ordering::Relaxed);
        if generation != seen
            && self
                .seen_generation
                .compare_exchange(seen, generation, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let from = self.seen_active.swap(slot, Ordering::AcqRel);
            tracing::warn!(
                target: "switchover::dynamo",
                table = %self.name,
                from = %self.regions[from].id,
                to = %self.regions[slot].id,
                generation,
                all_down = active.is_all_down(),
                "active region switched"
            );
        }
        (slot, active.is_all_down())
    }

    /// The region of the next attempt. `failed` holds the regions that failed in this call.
    fn pick(&self, access: Access, failed: u64) -> usize {
        let (active, _) = self.active_slot();
        let first_untried = || {
            self.regions
                .iter()
                .enumerate()
                .find(|(i, s)| failed & (1 << i) == 0 && s.endpoint.is_available())
                .map(|(i, _)| i)
        };
        match access {
            Access::Active => active,
            Access::Write => match self.write_mode {
                WriteMode::AnyHealthy if failed & (1 << active) != 0 => {
                    first_untried().unwrap_or(active)
                }
                _ => active,
            },
            Access::Read => {
                let chosen = self
                    .router
                    .read_target(&*self.read_policy)
                    .map(|ep| self.slot_of(ep))
                    .unwrap_or(active);
                if failed & (1 << chosen) != 0 {
                    first_untried().unwrap_or(chosen)
                } else {
                    chosen
                }
            }
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
        self.table
            .execute(self.access, self.idempotent, self.op)
            .await
    }
}

/// Builder of [`Table`]. Validation happens in [`build`](Self::build).
#[must_use]
pub struct TableBuilder {
    name: String,
    regions: Vec<RegionConfig>,
    timeouts: Timeouts,
    retry_policy: Option<RetryPolicy>,
    health: Option<HealthCustomizer>,
    canary: Canary,
    heartbeat: Option<Duration>,
    failback: Failback,
    read_policy: Box<dyn ReadPolicy<RegionName>>,
    write_mode: WriteMode,
    budget: Option<RetryBudget>,
}

impl fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableBuilder")
            .field("name", &self.name)
            .field("regions", &self.regions)
            .field("timeouts", &self.timeouts)
            .field("retry_policy", &self.retry_policy)
            .field("canary", &self.canary)
            .field("heartbeat", &self.heartbeat)
            .field("failback", &self.failback)
            .field("write_mode", &self.write_mode)
            .finish_non_exhaustive()
    }
}

impl TableBuilder {
    /// Adds a region; the first added is the preferred one, then in order.
    pub fn region(mut self, region: RegionConfig) -> Self {
        self.regions.push(region);
        self
    }

    /// Adds several regions, in order of preference.
    pub fn regions(mut self, regions: impl IntoIterator<Item = RegionConfig>) -> Self {
        self.regions.extend(regions);
        self
    }

    /// The time limits (default [`Timeouts::new`]: connect 250 ms, attempt 500 ms, operation
    /// 2 s).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How calls are retried, across regions (default: 4 attempts, exponential backoff from
    /// 25 ms capped at 250 ms with full jitter, deadline = the operation timeout). A policy
    /// without a deadline gets the operation timeout as deadline (its other settings are
    /// kept). The policy's own attempt timeout, if set, bounds each attempt too (the shorter
    /// of it and the handle's attempt timeout wins); the handle applies it, so an attempt that
    /// runs out of time counts against its region.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// Tunes the health tracker of the regions, e.g.
    /// `.health(|h| h.failure_threshold(5).ejection_base(Duration::from_secs(2)))`.
    ///
    /// Defaults for a table: a region is down after **2** transient failures in a row (calls or
    /// probes), ejected 1 s (× 2 per consecutive ejection, ≤ 30 s), back up after 2 probe
    /// successes; probes every 500 ms, each bounded by the attempt timeout; throttling never
    /// marks a region down. The endpoints and the probe are set by the handle.
    pub fn health(
        mut self,
        customize: impl FnOnce(HealthTrackerBuilder<RegionName>) -> HealthTrackerBuilder<RegionName>
        + Send
        + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// The canary request of the region probe (default [`Canary::DescribeTable`]).
    pub fn canary(mut self, canary: Canary) -> Self {
        self.canary = canary;
        self
    }

    /// Probes healthy regions too, every `interval` (default: only regions that are down or
    /// probing are probed).
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// When to move back to a preferred region after a failover (default: once it has stayed
    /// up for 30 s).
    pub fn failback(mut self, failback: Failback) -> Self {
        self.failback = failback;
        self
    }

    /// Which region serves eventually consistent reads (default
    /// [`PrimaryOnly`](crate::route::PrimaryOnly): the active region). Use
    /// [`LowestLatency`](crate::route::LowestLatency) for the nearest healthy region.
    pub fn read_policy(mut self, policy: impl ReadPolicy<RegionName> + 'static) -> Self {
        self.read_policy = Box::new(policy);
        self
    }

    /// Where writes go (default [`WriteMode::PrimaryOnly`]).
    pub fn write_mode(mut self, mode: WriteMode) -> Self {
        self.write_mode = mode;
        self
    }

    /// Draws retries from a shared [`RetryBudget`] (default: none).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Validates the configuration, builds the region clients, and starts the health tracker
    /// (its probe task) and the router. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field for an empty table name, no regions, more than
    /// [`MAX_REGIONS`], an empty or duplicate region name, an empty physical table name or
    /// endpoint, credentials on a client you built, invalid timeouts or health settings, or no
    /// Tokio runtime.
    pub fn build(self) -> Result<Table, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("table_name", "must not be empty"));
        }
        if self.regions.is_empty() {
            return Err(ConfigError::new(
                "regions",
                "at least one region is required",
            ));
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(ConfigError::new(
                "regions",
                format!(
                    "{} regions is more than the limit of {MAX_REGIONS}",
                    self.regions.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for r in &self.regions {
            if r.name.trim().is_empty() {
                return Err(ConfigError::new("regions", "a region name is empty"));
            }
            if !seen.insert(r.name.as_str()) {
                return Err(ConfigError::new(
                    "regions",
                    format!("region `{}` is listed twice", r.name),
                ));
            }
            if r.table_name.as_deref().is_some_and(|t| t.trim().is_empty()) {
                return Err(ConfigError::new(
                    "table_name",
                    format!("the table name of region `{}` is empty", r.name),
                ));
            }
        }
        self.timeouts.validate()?;
        let policy = match self.retry_policy {
            None => RetryPolicy::builder()
                .max_attempts(4)
                .deadline(self.timeouts.operation_timeout())
                .backoff(
                    ExponentialBackoff::builder()
                        .base(Duration::from_millis(25))
                        .cap(Duration::from_millis(250))
                        .jitter(Jitter::Full)
                        .build()?,
                )
                .build()?,
            Some(p) if p.deadline().is_some() => p,
            Some(p) => p
                .to_builder()
                .deadline(self.timeouts.operation_timeout())
                .build()?,
        };

        // The handle bounds each attempt itself, so a timed-out attempt is recorded against its
        // region. A policy attempt timeout left to the executor would drop the attempt before
        // that, and a black-holed region would never be marked down: fold it into the guard.
        let mut attempt_guard = self.timeouts.attempt_timeout() + GUARD_SLACK;
        let policy = match policy.attempt_timeout() {
            None => policy,
            Some(t) => {
                attempt_guard = attempt_guard.min(t);
                let mut b = RetryPolicy::builder()
                    .max_attempts(policy.max_attempts())
                    .max_delay(policy.max_delay())
                    .throttle_factor(policy.throttle_factor())
                    .backoff(*policy.backoff());
                if let Some(d) = policy.deadline() {
                    b = b.deadline(d);
                }
                b.build()?
            }
        };

        let mut clients = Vec::with_capacity(self.regions.len());
        for r in &self.regions {
            let client = r.client(&self.timeouts)?;
            if matches!(r.source, super::config::Source::Client(_)) {
                warn_about_user_client(&self.name, &r.name, &client, policy.max_attempts());
            }
            clients.push(client);
        }
        let ids: Vec<RegionName> = self
            .regions
            .iter()
            .map(|r| RegionName::new(&r.name))
            .collect();
        let tables: Vec<Arc<str>> = self
            .regions
            .iter()
            .map(|r| Arc::from(r.table_name.as_deref().unwrap_or(&self.name)))
            .collect();

        let probe = CanaryProbe::new(
            ids.iter()
                .cloned()
                .zip(clients.iter().cloned())
                .zip(tables.iter().cloned())
                .map(|((id, client), table)| (id, client, table))
                .collect(),
            self.canary,
        );
        let mut health = HealthTracker::builder()
            .failure_threshold(2)
            .probe_interval(Duration::from_millis(500))
            .probe_timeout(self.timeouts.attempt_timeout());
        if let Some(h) = self.heartbeat {
            health = health.heartbeat(h);
        }
        if let Some(customize) = self.health {
            health = customize(health);
        }
        let tracker = health.endpoints(ids.iter().cloned()).probe(probe).build()?;
        let mut router = Router::builder(&tracker).failback(self.failback);
        for (priority, id) in ids.iter().enumerate() {
            router = router.endpoint(id.clone(), priority as u32);
        }
        let router = router.build()?;

        let mut regions = Vec::with_capacity(ids.len());
        for ((id, client), table) in ids.into_iter().zip(clients).zip(tables) {
            let endpoint = tracker.endpoint(&id).ok_or_else(|| {
                ConfigError::new("regions", format!("region `{id}` was not registered"))
            })?;
            regions.push(Slot {
                id,
                client,
                table,
                endpoint,
            });
        }
        let generation = router.generation();
        let first = router.active();
        let active = regions
            .iter()
            .position(|s| s.endpoint.ptr_eq(first.endpoint()))
            .unwrap_or(0);
        tracing::info!(
            target: "switchover::dynamo",
            table = %self.name,
            regions = ?regions.iter().map(|s| &s.id).collect::<Vec<_>>(),
            active = %regions[active].id,
            write_mode = ?self.write_mode,
            "table handle built"
        );
        Ok(Table {
            inner: Arc::new(Inner {
                name: Arc::from(self.name),
                regions,
                router,
                policy,
                attempt_guard,
                read_policy: self.read_policy,
                write_mode: self.write_mode,
                budget: self.budget,
                seen_generation: AtomicU64::new(generation),
                seen_active: AtomicUsize::new(active),
            }),
        })
    }
}

/// Says, once at build time, that a client the user built retries on its own.
fn warn_about_user_client(table: &str, region: &str, client: &Client, our_attempts: u32) {
    let config = client.config();
    let sdk_attempts = config.retry_config().map_or(3, |r| r.max_attempts());
    if sdk_attempts > 1 {
        tracing::warn!(
            target: "switchover::dynamo",
            table,
            region,
            sdk_attempts,
            handle_attempts = our_attempts,
            worst_case_requests = sdk_attempts.saturating_mul(our_attempts),
            "the client passed for this region retries on its own: every attempt of the handle \
             may be several requests (set `RetryConfig::disabled()` on it to keep one retry layer)"
        );
    }
    let timeouts = config.timeout_config();
    if timeouts
        .is_none_or(|t| t.operation_attempt_timeout().is_none() && t.operation_timeout().is_none())
    {
        tracing::warn!(
            target: "switchover::dynamo",
            table,
            region,
            "the client passed for this region has no attempt or operation timeout; the handle \
             bounds each attempt by its own attempt timeout"
        );
    }
}

//! The region-aware table handle: its regions, accessors and manual controls.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use tokio::sync::mpsc;

use super::builder::TableBuilder;
use super::call::{Access, Call};
use super::classify::{FailureKind, failure_kind};
use super::config::{RegionName, WriteMode};
use super::suspect::{Confirm, Signals};
use crate::health::{Endpoint, HealthState, HealthTracker};
use crate::retry::{RetryBudget, RetryPolicy};
use crate::route::{Follower, ReadPolicy, RouteEvent, Router, SwitchError};

/// A handle on one logical DynamoDB table replicated in several regions (a Global Table) that
/// sends each call to the right region and fails over between them.
///
/// Cheap to clone (an `Arc`); clones share the clients, the health tracker, the router and the
/// probe task, which stops when the last clone is dropped. Built with [`Table::builder`].
///
/// See the [module documentation](super) for the behaviour.
#[derive(Clone)]
pub struct Table {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) name: Arc<str>,
    /// The regions in order of preference (the router's order of addition).
    pub(crate) regions: Vec<Slot>,
    pub(crate) router: Router<RegionName>,
    pub(crate) policy: RetryPolicy,
    /// The handle's own bound of one attempt (the attempt timeout plus slack).
    pub(crate) attempt_guard: Duration,
    pub(crate) read_policy: Box<dyn ReadPolicy<RegionName>>,
    pub(crate) write_mode: WriteMode,
    pub(crate) budget: Option<RetryBudget>,
    /// How long an attempt may go unanswered before its region is suspect.
    pub(crate) suspect_after: Option<Duration>,
    /// The canary a suspect region gets at once, and its bound.
    pub(crate) confirm: Arc<dyn Confirm>,
    pub(crate) confirm_timeout: Duration,
    /// The bound of one heartbeat or probe.
    pub(crate) probe_timeout: Duration,
    /// The generation of the last switch logged by this handle.
    pub(crate) seen_generation: AtomicU64,
    /// The active region (slot index) at `seen_generation`.
    pub(crate) seen_active: AtomicUsize,
    /// The fleet authority this handle follows, if any.
    pub(crate) follower: Option<Follower<RegionName>>,
}

/// One region: its client, its physical table name and its health endpoint.
pub(crate) struct Slot {
    pub(crate) id: RegionName,
    pub(crate) client: Client,
    pub(crate) table: Arc<str>,
    pub(crate) endpoint: Endpoint<RegionName>,
    /// Its suspicion: an attempt or a heartbeat went unanswered and nothing answered since.
    pub(crate) signals: Arc<Signals>,
}

impl Slot {
    /// `true` while the region is suspect (one relaxed load).
    #[inline]
    pub(crate) fn is_suspect(&self) -> bool {
        self.signals.is_suspect()
    }
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

impl Table {
    /// A builder for the table `name` (its name in every region unless a region says
    /// otherwise).
    pub fn builder(name: impl Into<String>) -> TableBuilder {
        TableBuilder::new(name.into())
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
        let active = self.inner.router.active();
        self.inner.note_switch(active.generation());
        active.id().clone()
    }

    /// The client and physical table name of `region`, for calls that must go to one region
    /// (outside failover; nothing is recorded).
    pub fn region_client(&self, region: &str) -> Option<(&Client, &str)> {
        self.inner.find(region).map(|s| (&s.client, &*s.table))
    }

    /// The health state of `region`, if it is one of the table's.
    pub fn region_state(&self, region: &str) -> Option<HealthState> {
        self.inner.find(region).map(|s| s.endpoint.state())
    }

    /// The router (active region, generation, events) for advanced use.
    pub fn router(&self) -> &Router<RegionName> {
        &self.inner.router
    }

    /// The fleet authority this handle follows ([`TableBuilder::authority`]): its epoch, last
    /// record and events. `None` when the handle decides alone.
    pub fn follower(&self) -> Option<&Follower<RegionName>> {
        self.inner.follower.as_ref()
    }

    /// The health tracker of the regions.
    pub fn tracker(&self) -> &HealthTracker<RegionName> {
        self.inner.router.tracker()
    }

    /// The retry policy every call runs with: the one given to
    /// [`TableBuilder::retry_policy`] (with the operation timeout as its deadline when it had
    /// none), or the default.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.policy
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
        let slot = self
            .inner
            .find(region)
            .ok_or(SwitchError::UnknownEndpoint)?;
        tracing::warn!(target: "switchover::dynamo", table = %self.inner.name, region, "evacuating region");
        let generation = self.inner.router.evacuate(&slot.id)?;
        self.inner.note_switch(generation);
        Ok(())
    }

    /// Ends an [`evacuate`](Self::evacuate) (or any manual override) of `region`: it is
    /// tracked again, and the router fails back to it after its hysteresis if it is preferred.
    ///
    /// # Errors
    ///
    /// [`SwitchError::UnknownEndpoint`] when `region` is not one of the table's.
    pub fn restore(&self, region: &str) -> Result<(), SwitchError> {
        let slot = self
            .inner
            .find(region)
            .ok_or(SwitchError::UnknownEndpoint)?;
        tracing::info!(target: "switchover::dynamo", table = %self.inner.name, region, "restoring region");
        self.tracker().clear(&slot.id);
        Ok(())
    }

    /// A call of any SDK operation for a read (eventually consistent): `op` gets the client
    /// and the physical table name of the region of each attempt (the read policy's choice;
    /// after a failure, a region that has not failed in this call). Reads are idempotent.
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
        Call::new(self, Access::Read, op).idempotent(true)
    }

    /// A call of any SDK operation for a write, routed by the [`WriteMode`]. Not idempotent
    /// unless marked with [`Call::idempotent`]: a write that may have executed is not retried.
    pub fn write<F, Fut, T, E>(&self, op: F) -> Call<'_, F>
    where
        F: FnMut(&Client, &str) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        Call::new(self, Access::Write, op)
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
        Call::new(self, Access::Active, op)
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
}

impl Inner {
    /// The region named `region`.
    pub(super) fn find(&self, region: &str) -> Option<&Slot> {
        self.regions.iter().find(|s| s.id == region)
    }

    /// The region of `endpoint` (one of the router's): a scan of a few pointer comparisons.
    #[inline]
    pub(crate) fn slot(&self, endpoint: &Endpoint<RegionName>) -> &Slot {
        self.regions
            .iter()
            .find(|s| s.endpoint.ptr_eq(endpoint))
            .unwrap_or(&self.regions[0])
    }

    /// Logs a switch the first time this handle sees its `generation`: one atomic load when
    /// nothing changed.
    #[inline]
    pub(super) fn note_switch(&self, generation: u64) {
        if generation != self.seen_generation.load(Ordering::Relaxed) {
            self.log_switch();
        }
    }

    #[cold]
    fn log_switch(&self) {
        let seen = self.seen_generation.load(Ordering::Relaxed);
        let active = self.router.active();
        let generation = active.generation();
        if generation == seen
            || self
                .seen_generation
                .compare_exchange(seen, generation, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let to = self
            .regions
            .iter()
            .position(|s| s.endpoint.ptr_eq(active.endpoint()))
            .unwrap_or(0);
        let from = self.seen_active.swap(to, Ordering::AcqRel);
        tracing::warn!(
            target: "switchover::dynamo",
            table = %self.name,
            from = %self.regions[from].id,
            to = %self.regions[to].id,
            generation,
            all_down = active.is_all_down(),
            "active region switched"
        );
    }
}

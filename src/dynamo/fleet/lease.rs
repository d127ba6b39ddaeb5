//! The fleet lease: one instance holds it and decides; every instance reports and follows.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;

use super::decide::{Memory, Rules, decide};
use super::record::{ControlRecord, Report};
use super::store::{DynamoLeaseStore, LeaseStore, StoreError};
use crate::dynamo::RegionName;
use crate::error::ConfigError;
use crate::health::Endpoint;
use crate::route::{Authority, AuthorityError, Follower, Record, Router, WhenUnreachable};
use crate::sync::lock;

/// The fleet lease of one resource: a constructor of [`FleetLeaseBuilder`]s.
#[derive(Debug, Clone, Copy)]
pub struct FleetLease;

impl FleetLease {
    /// A lease on `resource` (one control record; e.g. the logical table name) in `store`,
    /// for the instance `instance` (unique in the fleet: a host name, a task id).
    pub fn builder<S: LeaseStore>(
        store: S,
        resource: impl Into<String>,
        instance: impl Into<String>,
    ) -> FleetLeaseBuilder<S> {
        FleetLeaseBuilder {
            store,
            resource: resource.into(),
            instance: instance.into(),
            lease_ttl: Duration::from_secs(2),
            poll_interval: Duration::from_millis(250),
            read_timeout: Duration::from_secs(1),
            report_every: Duration::from_secs(1),
            report_ttl: Duration::from_secs(3),
            rules: Rules {
                switch_share: 0.5,
                failback_after: Some(Duration::from_secs(30)),
            },
            when_unreachable: WhenUnreachable::KeepLast,
        }
    }

    /// [`builder`](Self::builder) with a [`DynamoLeaseStore`] on `table` through `client`.
    pub fn dynamodb(
        client: Client,
        table: impl Into<Arc<str>>,
        resource: impl Into<String>,
        instance: impl Into<String>,
    ) -> FleetLeaseBuilder<DynamoLeaseStore> {
        Self::builder(DynamoLeaseStore::new(client, table), resource, instance)
    }
}

/// Builder of a fleet lease; made by [`FleetLease::builder`], given to
/// [`TableBuilder::authority`](crate::dynamo::TableBuilder::authority) or started on a router
/// with [`start`](Self::start).
///
/// | knob | default |
/// |---|---|
/// | [`lease_ttl`](Self::lease_ttl) | 2 s; the holder renews it once a third has passed; another instance takes it over once it expired |
/// | [`poll_interval`](Self::poll_interval) | 250 ms: every instance reads the record (and follows it) this often, so a decision reaches the fleet within one interval plus one read |
/// | [`read_timeout`](Self::read_timeout) | 1 s per poll (report, read, and the holder's write) |
/// | [`report_every`](Self::report_every) | 1 s: an unchanged report is rewritten this often (a changed one at once) |
/// | [`report_ttl`](Self::report_ttl) | 3 s: older reports (an instance gone) are ignored |
/// | [`switch_share`](Self::switch_share) | 0.5: move when at least half the reporting instances cannot reach the active region and another region is reachable by more |
/// | [`failback_after`](Self::failback_after) | 30 s: back to a preferred region once every reporting instance has reached it this long |
/// | [`when_unreachable`](Self::when_unreachable) | [`WhenUnreachable::KeepLast`] |
#[must_use]
pub struct FleetLeaseBuilder<S> {
    store: S,
    resource: String,
    instance: String,
    lease_ttl: Duration,
    poll_interval: Duration,
    read_timeout: Duration,
    report_every: Duration,
    report_ttl: Duration,
    rules: Rules,
    when_unreachable: WhenUnreachable,
}

impl<S> fmt::Debug for FleetLeaseBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetLeaseBuilder")
            .field("resource", &self.resource)
            .field("instance", &self.instance)
            .field("lease_ttl", &self.lease_ttl)
            .field("poll_interval", &self.poll_interval)
            .field("report_ttl", &self.report_ttl)
            .field("rules", &self.rules)
            .field("when_unreachable", &self.when_unreachable)
            .finish_non_exhaustive()
    }
}

impl<S: LeaseStore> FleetLeaseBuilder<S> {
    /// How long a lease lasts unless renewed (default 2 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often each instance reads the record (default 250 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The bound of one poll (default 1 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How often an unchanged report is rewritten (default 1 s).
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }

    /// How long a report counts (default 3 s).
    pub fn report_ttl(mut self, ttl: Duration) -> Self {
        self.report_ttl = ttl;
        self
    }

    /// The share of reporting instances that must be unable to reach the active region before
    /// the holder moves the fleet (default 0.5; in `(0, 1]`).
    pub fn switch_share(mut self, share: f64) -> Self {
        self.rules.switch_share = share;
        self
    }

    /// How long every reporting instance must reach a preferred region before the fleet
    /// moves back to it (default 30 s; `None`: only by a new record written by hand).
    pub fn failback_after(mut self, after: impl Into<Option<Duration>>) -> Self {
        self.rules.failback_after = after.into();
        self
    }

    /// What an instance does while the control store is unreachable (default
    /// [`WhenUnreachable::KeepLast`]).
    pub fn when_unreachable(mut self, when: WhenUnreachable) -> Self {
        self.when_unreachable = when;
        self
    }

    /// Starts following the lease on `router` (its endpoints are the regions, in order of
    /// preference). [`TableBuilder::authority`](crate::dynamo::TableBuilder::authority) calls
    /// this for you.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: an empty `resource` or `instance`, a zero duration,
    /// a lease TTL not above twice the poll interval, a report TTL not above the report
    /// interval, a switch share outside `(0, 1]`, or no Tokio runtime.
    pub fn start(self, router: &Router<RegionName>) -> Result<Follower<RegionName>, ConfigError> {
        self.validate()?;
        let regions: Vec<Endpoint<RegionName>> =
            router.endpoints().map(|(e, _)| e.clone()).collect();
        let lease = Lease {
            store: self.store,
            resource: self.resource,
            instance: self.instance,
            regions,
            lease_ttl: self.lease_ttl,
            report_every: self.report_every,
            report_ttl: self.report_ttl,
            rules: self.rules,
            state: Mutex::default(),
        };
        Follower::builder(router)
            .poll_interval(self.poll_interval)
            .read_timeout(self.read_timeout)
            .when_unreachable(self.when_unreachable)
            .start(lease)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.resource.trim().is_empty() {
            return Err(ConfigError::new("resource", "must not be empty"));
        }
        if self.instance.trim().is_empty() {
            return Err(ConfigError::new("instance", "must not be empty"));
        }
        for (field, d) in [
            ("lease_ttl", self.lease_ttl),
            ("poll_interval", self.poll_interval),
            ("report_every", self.report_every),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be above zero"));
            }
        }
        if self.lease_ttl <= self.poll_interval * 2 {
            return Err(ConfigError::new(
                "lease_ttl",
                "must be above twice the poll interval (the holder renews it on a poll)",
            ));
        }
        if self.report_ttl <= self.report_every {
            return Err(ConfigError::new(
                "report_ttl",
                "must be above the report interval",
            ));
        }
        let share = self.rules.switch_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(ConfigError::new("switch_share", "must be in (0, 1]"));
        }
        Ok(())
    }
}

/// One instance's side of the lease: the [`Authority`] its follower polls.
struct Lease<S> {
    store: S,
    resource: String,
    instance: String,
    regions: Vec<Endpoint<RegionName>>,
    lease_ttl: Duration,
    report_every: Duration,
    report_ttl: Duration,
    rules: Rules,
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    /// The last report written.
    reported: Option<Report>,
    /// The highest epoch seen: a new decision gets a higher one, even if the store went back.
    max_epoch: u64,
    memory: Memory,
}

impl<S: LeaseStore> Lease<S> {
    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    /// This instance's view: the regions its health tracker holds unavailable.
    fn my_report(&self, now: u64) -> Report {
        Report {
            unreachable: self
                .regions
                .iter()
                .filter(|e| !e.is_available())
                .map(|e| e.id().as_str().to_owned())
                .collect(),
            at_ms: now,
        }
    }

    /// Writes this instance's report when it changed or is due.
    async fn report(&self, mine: &Report) -> Result<(), StoreError> {
        let due = lock(&self.state).reported.as_ref().is_none_or(|r| {
            r.unreachable != mine.unreachable
                || mine.at_ms.saturating_sub(r.at_ms) >= Self::ms(self.report_every)
        });
        if due
            && self
                .store
                .report(&self.resource, &self.instance, mine)
                .await?
        {
            lock(&self.state).reported = Some(mine.clone());
        }
        Ok(())
    }

    /// The record the holder writes next, if any: a decision, a renewal or a takeover.
    fn next(&self, r: &ControlRecord, mine: &Report, now: u64) -> Option<ControlRecord> {
        let holder = r.holder == self.instance && r.lease_expiry_ms > now;
        if !holder && r.lease_expiry_ms > now {
            return None;
        }
        let fresh = |rep: &&Report| rep.at_ms + Self::ms(self.report_ttl) >= now;
        let mut reports: Vec<&Report> = r
            .reports
            .iter()
            .filter(|(i, _)| **i != self.instance)
            .map(|(_, rep)| rep)
            .filter(fresh)
            .collect();
        reports.push(mine);
        let names: Vec<&str> = self.regions.iter().map(|e| e.id().as_str()).collect();
        let mut state = lock(&self.state);
        let decision = decide(
            &names,
            &r.active,
            &reports,
            self.rules,
            &mut state.memory,
            now,
        );
        let ttl = Self::ms(self.lease_ttl);
        let renew_due = !holder || r.lease_expiry_ms.saturating_sub(now) < ttl * 2 / 3;
        if decision.is_none() && !renew_due {
            return None;
        }
        let mut n = r.clone();
        n.holder.clone_from(&self.instance);
        n.lease_expiry_ms = now + ttl;
        n.version = r.version + 1;
        if let Some((to, why)) = decision {
            n.active = to;
            n.epoch = state.max_epoch.max(r.epoch) + 1;
            n.reason = why;
            n.decided_at_ms = now;
        }
        Some(n)
    }

    /// The first record of the resource: the most preferred region this instance reaches.
    fn first(&self, mine: &Report, now: u64) -> ControlRecord {
        let active = self
            .regions
            .iter()
            .find(|e| e.is_available())
            .or(self.regions.first())
            .map_or_else(String::new, |e| e.id().as_str().to_owned());
        ControlRecord {
            active,
            epoch: lock(&self.state).max_epoch + 1,
            holder: self.instance.clone(),
            lease_expiry_ms: now + Self::ms(self.lease_ttl),
            reason: "first record".to_owned(),
            decided_at_ms: now,
            version: 1,
            reports: [(self.instance.clone(), mine.clone())].into(),
        }
    }

    fn log_write(&self, old: Option<&ControlRecord>, new: &ControlRecord) {
        let (resource, instance) = (&self.resource, &self.instance);
        match old {
            Some(o) if o.epoch != new.epoch => tracing::warn!(
                target: "switchover::dynamo",
                resource, instance, from = %o.active, to = %new.active, epoch = new.epoch,
                reason = %new.reason, "fleet lease: the holder moved the fleet"
            ),
            Some(o) if o.holder != new.holder => tracing::warn!(
                target: "switchover::dynamo",
                resource, instance, previous = %o.holder, epoch = new.epoch,
                "fleet lease taken over (the previous lease expired)"
            ),
            Some(_) => {
                tracing::trace!(target: "switchover::dynamo", resource, instance, "fleet lease renewed")
            }
            None => tracing::info!(
                target: "switchover::dynamo",
                resource, instance, active = %new.active, epoch = new.epoch, "fleet lease: first record"
            ),
        }
    }
}

impl<S: LeaseStore> Authority<RegionName> for Lease<S> {
    async fn read(&self) -> Result<Record<RegionName>, AuthorityError> {
        let now = self.store.now_ms();
        let mine = self.my_report(now);
        self.report(&mine).await?;
        let loaded = self.store.load(&self.resource).await?;
        let next = match &loaded {
            None => Some(self.first(&mine, now)),
            Some(r) => self.next(r, &mine, now),
        };
        let record = match next {
            None => loaded,
            Some(n) => {
                let expected = loaded.as_ref().map(|r| r.version);
                if self.store.write(&self.resource, &n, expected).await? {
                    self.log_write(loaded.as_ref(), &n);
                    Some(n)
                } else {
                    // Another instance wrote first: follow what it wrote.
                    self.store.load(&self.resource).await?
                }
            }
        };
        let Some(r) = record else {
            return Err(AuthorityError::unreachable(
                "no control record after writing one",
            ));
        };
        {
            let mut state = lock(&self.state);
            state.max_epoch = state.max_epoch.max(r.epoch);
        }
        let record = Record::new(RegionName::new(&r.active), r.epoch).with_reason(r.reason);
        Ok(match r.decided_at_ms {
            0 => record,
            ms => record.decided_at(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }
}

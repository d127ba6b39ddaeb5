//! What a [`Table`] reports about itself: its health document and its incident timeline, both
//! read from the table's router (see [`observe`](crate::observe)).

use super::config::RegionName;
use super::table::Table;
use crate::observe::{Components, Health, Status, Timeline};

/// The key of every region's check in [`Table::health`].
pub(crate) const REGION_KEY: &str = "dynamodb:region";

impl Table {
    /// The table's health now, one check per region under `dynamodb:region` (component id: the
    /// region name), in the shape of the IETF health-check draft. No I/O and no lock on the
    /// steady path: atomic reads of the router and the regions' states.
    ///
    /// Each check observes the region's `state`, `active` (it takes writes now), `suspect` (an
    /// attempt there or its heartbeat went unanswered, and nothing has answered since),
    /// `tableName`, `latencyMs` (moving average, when known), `priority`, `failuresTotal`,
    /// `ejections` and `stateForMs`; the active region's check also the router's `generation`.
    ///
    /// | status | when |
    /// |---|---|
    /// | `pass` | the preferred region is active and every region is up and answering |
    /// | `warn` | failed over (the active region is not the preferred one), or a region is down, probing, draining or suspect: writes are served |
    /// | `fail` | no region can take writes now: every region is down (in both [write modes](super::WriteMode), a region that is up takes the writes once the router has moved to it, which reading the health does) |
    ///
    /// ```no_run
    /// # fn demo(table: &switchover::dynamo::Table) {
    /// use switchover::observe::Status;
    ///
    /// let health = table.health();
    /// let code = health.status.http_code(); // 200 for pass and warn, 503 for fail
    /// for check in health.checks("dynamodb:region") {
    ///     println!("{} {} {:?}", check.component_id, check.status, check.observed);
    /// }
    /// # let _ = (code, Status::Pass); }
    /// ```
    pub fn health(&self) -> Health {
        let inner = &*self.inner;
        let components = Components::new("dynamodb").all("region");
        let mut health = inner.router.health(&components);
        let active = inner.router.active();
        for slot in &inner.regions {
            let Some(check) = health.check_mut(REGION_KEY, slot.id.as_str()) else {
                continue;
            };
            let is_active = slot.endpoint.ptr_eq(active.endpoint());
            let suspect = slot.is_suspect();
            check.observe("active", is_active);
            check.observe("suspect", suspect);
            check.observe("tableName", slot.table.to_string());
            if suspect {
                check.degrade(
                    Status::Warn,
                    "suspect: a request or heartbeat went unanswered",
                );
            }
        }
        health.refresh_status();
        health
    }

    /// The table's incident timeline: the last events of its regions (down, probes, switches,
    /// failbacks) and each failover with its phases, which add up to the client gap. See
    /// [`Timeline`].
    pub fn timeline(&self) -> Timeline<RegionName> {
        self.inner.router.timeline()
    }
}

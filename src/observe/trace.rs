//! Timeline events as `tracing` events: target `switchover::timeline`, message `timeline`,
//! and stable field names.
//!
//! Every event has `router`, `event` (the kind's name), `seq`, `at_ms` (since the router was
//! built) and, when it is about one, `endpoint`. Then, by kind: `from`, `to`, `reason`,
//! `ejection_ms` (state); `from`, `to` (role); `up`, `latency_ms` (probe, at `DEBUG`);
//! `primary`, `generation`, `error`, `took_ms` (rediscovery finished); `from`, `to`,
//! `generation`, `reason`, `all_down` (switch, failback); `active` (all-down); `attempts`
//! (budget exhausted); `from`, `to`, `generation`, `detection_ms`, `rediscovery_ms`,
//! `switch_ms`, `first_success_ms`, `total_ms` (failover); `primaries` (`host:port, host:port`),
//! `timelines` (`1, 2`, `?` when unknown), `following`, `same_cluster` (writable primaries, at
//! `WARN`). `errors` lists the last classified failures when there are some.

use tokio::time::Instant;

use super::timeline::{Event, EventKind};
use super::wall::millis;
use crate::health::EndpointId;
use crate::observe::label;

const T: &str = "switchover::timeline";

pub(super) fn emit<K: EndpointId>(router: &str, origin: Instant, e: &Event<K>) {
    let event = e.kind.name();
    let seq = e.seq;
    let at_ms = millis(e.at.saturating_duration_since(origin));
    let endpoint = e.endpoint.as_ref().map(label).unwrap_or_default();
    let errors = if e.errors.is_empty() {
        String::new()
    } else {
        format!(
            "{:?}",
            e.errors.iter().map(|n| n.outcome()).collect::<Vec<_>>()
        )
    };
    macro_rules! ev {
        ($lvl:ident $(, $($f:tt)+)?) => {
            tracing::$lvl!(target: T, router, event, seq, at_ms, endpoint = %endpoint,
                errors = %errors $(, $($f)+)?, "timeline")
        };
    }
    match &e.kind {
        EventKind::Suspect | EventKind::RediscoveryStarted => ev!(info),
        EventKind::State {
            from,
            to,
            reason,
            ejection,
        } => {
            let ejection_ms = ejection.map(millis);
            if to.is_available() {
                ev!(info, from = %from, to = %to, reason = %reason)
            } else {
                ev!(warn, from = %from, to = %to, reason = %reason, ejection_ms)
            }
        }
        EventKind::Role { from, to } => ev!(info, from = %from, to = %to),
        EventKind::Probe { up, latency, .. } => {
            let latency_ms = latency.map(millis);
            ev!(debug, up, latency_ms)
        }
        EventKind::RediscoveryFinished {
            primary,
            error,
            took,
        } => {
            let took_ms = millis(*took);
            let generation = primary.as_ref().map(|(_, g)| *g);
            let primary = primary.as_ref().map(|(p, _)| label(p)).unwrap_or_default();
            let error = error.as_deref().unwrap_or_default();
            ev!(info, primary = %primary, generation, error, took_ms)
        }
        EventKind::Switch {
            from,
            to,
            generation,
            reason,
            all_down,
        } => ev!(warn, from = %label(from), to = %label(to), generation, reason = %reason,
            all_down),
        EventKind::AllDown { active } => ev!(error, active = %label(active)),
        EventKind::AllDownLeft { active } => ev!(info, active = %label(active)),
        EventKind::BudgetExhausted { attempts } => ev!(warn, attempts),
        EventKind::Failover(f) => {
            let p = f.phases;
            ev!(warn, from = %label(&f.from), to = %label(&f.to), generation = f.generation,
                detection_ms = millis(p.detection), rediscovery_ms = millis(p.rediscovery),
                switch_ms = millis(p.switch), first_success_ms = millis(p.first_success),
                total_ms = millis(p.total()))
        }
        EventKind::WritablePrimaries {
            primaries,
            following,
            same_cluster,
        } => {
            let (mut list, mut timelines) = (String::new(), String::new());
            for (n, (k, tl)) in primaries.iter().enumerate() {
                let sep = if n == 0 { "" } else { ", " };
                list.push_str(sep);
                list.push_str(&label(k));
                timelines.push_str(sep);
                match tl {
                    Some(tl) => timelines.push_str(&tl.to_string()),
                    None => timelines.push('?'),
                }
            }
            let following = following.as_ref().map(label).unwrap_or_default();
            ev!(warn, primaries = %list, timelines = %timelines, following = %following,
                same_cluster = *same_cluster)
        }
    }
}

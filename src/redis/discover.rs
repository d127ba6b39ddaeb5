//! The protocol part of finding the primary, behind the core's [`Discover`]: ask the sentinels
//! (in Sentinel mode), then `ROLE` on every node; record each node's role, health, link and
//! lag; choose the primary. The core's [`Rediscovery`](crate::route::Rediscovery) does the rest
//! (single flight, waiting, readmit, switch).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::future::{join, join_all};
use redis::Value;
use tokio::time::Instant;

use super::backend::Backend;
use super::config::{NodeAddr, Source};
use super::error::Error;
use super::login::{LoginFailure, login_failure};
use super::node::{Node, NodeId, NodeRef};
use super::reply::{RoleReply, parse_role};
use super::resolve::Resolved;
use super::topology::{Refusal, Topology};
use crate::health::{HealthState, ProbeResult, Role};
use crate::route::{Discover, NoPrimary};

/// The pool's [`Discover`]: one run over the [`Topology`].
pub(crate) struct Discovery<B: Backend>(pub(crate) Arc<Topology<B>>);

impl<B: Backend> Discover<NodeId> for Discovery<B> {
    fn discover(&self) -> impl Future<Output = Result<NodeId, NoPrimary>> + Send {
        let topology = Arc::clone(&self.0);
        async move { topology.discover().await }
    }
}

/// What one node said to `ROLE`, and how long it took.
type Answer = Result<(RoleReply, Duration), Error>;

impl<B: Backend> Topology<B> {
    /// One discovery run: returns the id of the primary, after recording what every node said.
    pub(crate) async fn discover(&self) -> Result<NodeId, NoPrimary> {
        // The nodes' host names are looked up again beside the run (it does not wait); a
        // name that moved asks for another run.
        self.names.kick();
        // In Sentinel mode the primary is the one a majority of the sentinels names (or a
        // newer `+switch-master`), once it claims the role itself.
        let sentinels_say = match &self.settings.source {
            Source::Sentinel { sentinels, master } => {
                Some(self.learn_from_sentinels(sentinels, master).await)
            }
            Source::Static => None,
        };
        let nodes = self.known_nodes();
        let (answers, resolved) = self.ask_nodes(&nodes).await;
        let claims = claims(&nodes, &answers, &resolved);
        let current = self
            .node_of(self.router.active().endpoint())
            .map(|n| n.addr.clone());
        let chosen = match &sentinels_say {
            None => choose_primary(&claims, None, current.as_ref()),
            Some(Ok(p)) => claims
                .iter()
                .find(|(a, _, _)| resolved.same(a, p))
                .map(|(a, _, _)| a.clone()),
            Some(Err(_)) => None,
        };
        let Some(primary) = chosen else {
            return Err(self.found_none(&nodes, &answers, &resolved, sentinels_say));
        };
        self.set_refusal(None);
        let offset = claims
            .iter()
            .find(|(a, _, _)| *a == primary)
            .map_or(0, |(_, offset, _)| *offset);
        for (node, answer) in nodes.iter().zip(&answers) {
            self.apply(node, answer, Follows::Primary(&primary, offset), &resolved);
        }
        let Some(node) = nodes.iter().find(|n| n.addr == primary) else {
            return Err(NoPrimary::new(format!("{primary} is not a known node")));
        };
        // It answered `ROLE` as master just now: let it take writes. The core readmits an
        // ejected endpoint; a manual override (a drain, a forced down) is lifted here, as
        // discovery always did.
        if !node.endpoint.is_available() && !node.endpoint.readmit() {
            node.endpoint.clear();
            node.drained_by_pool.store(false, Relaxed);
        }
        self.named_primary(node);
        Ok(node.id().clone())
    }

    /// `ROLE` on every node, in parallel, with their host names resolved beside, so that a
    /// node configured by name and reported by IP (or the reverse) is one node.
    async fn ask_nodes(&self, nodes: &[NodeRef<B>]) -> (Vec<Answer>, Resolved) {
        let mut resolved = Resolved::default();
        let limit = self.settings.timeouts.connect_timeout();
        let resolver = &self.settings.resolver;
        for n in nodes {
            if let Some(dns) = &n.dns {
                resolved.learn(&n.addr, dns.current().1);
            }
        }
        let (mut answers, ()) = join(
            join_all(nodes.iter().map(|n| self.role_of(n))),
            resolved.add(nodes.iter().map(|n| &n.addr), resolver, limit),
        )
        .await;
        if answers.iter().all(Result::is_err) {
            self.ask_other_protocol(nodes, &mut answers).await;
        }
        resolved
            .add(reported_masters(&answers), resolver, limit)
            .await;
        (answers, resolved)
    }

    /// When no node answered: a node that never answered and stays silent may speak the other
    /// protocol (a TLS-only port waits for a handshake, a plaintext one for a line), so each
    /// such node is asked once in it, in parallel. (Only then: a node frozen while others
    /// answer must not lengthen every run.)
    async fn ask_other_protocol(&self, nodes: &[NodeRef<B>], answers: &mut [Answer]) {
        let silent = |n: &Node<B>, a: &Answer| match a {
            Err(e) => {
                !n.answered.load(Relaxed)
                    && (e.is_timeout()
                        || e.redis_error().is_some_and(|r| r.is_connection_dropped()))
            }
            Ok(_) => false,
        };
        let asked = nodes.iter().zip(answers.iter()).map(|(n, a)| async move {
            match silent(n, a) {
                true => self.backend.mismatch(&n.client).await,
                false => None,
            }
        });
        let found = join_all(asked).await;
        for ((node, answer), why) in nodes.iter().zip(answers.iter_mut()).zip(found) {
            if let Some(why) = why {
                *answer = Err(Error::node(&node.name, why));
            }
        }
    }

    /// Records a run that found no primary, and says why. Roles and read fitness follow it
    /// too: a node that now says `slave` is no primary. A replica still serves reads while it
    /// follows the [last primary](Self::last_known_primary) (its data is as fresh as when its
    /// link dropped: a primary stopped or mid-failover leaves reads served), unless a lag bound
    /// is set, which no run without a primary can check.
    fn found_none(
        &self,
        nodes: &[NodeRef<B>],
        answers: &[Answer],
        resolved: &Resolved,
        sentinels_say: Option<Result<NodeAddr, NoPrimary>>,
    ) -> NoPrimary {
        let last = match self.settings.max_replica_lag {
            None => self.last_known_primary(nodes, answers, resolved),
            Some(_) => None,
        };
        for (node, answer) in nodes.iter().zip(answers) {
            self.apply(node, answer, Follows::Last(last.as_ref()), resolved);
        }
        let refusal = refusal(nodes, answers);
        let why = no_primary(nodes, answers, refusal.as_ref());
        let why = match sentinels_say {
            Some(Err(no_quorum)) if refusal.is_none() => no_quorum,
            Some(Ok(p)) if refusal.is_none() => NoPrimary::new(format!(
                "the sentinels name {p}, which does not claim the master role; {}",
                why.reason()
            )),
            _ => why,
        };
        self.set_refusal(refusal);
        why
    }

    /// The primary the replicas may still follow in a run that found none: the node discovery
    /// last named primary; before any was named (a pool started during an outage), the node
    /// most of the answering replicas follow. `None` when that node answered as a replica
    /// itself (it was demoted: nobody's data is current).
    fn last_known_primary(
        &self,
        nodes: &[NodeRef<B>],
        answers: &[Answer],
        resolved: &Resolved,
    ) -> Option<NodeAddr> {
        let last = match self.last_primary() {
            Some(n) => n.addr.clone(),
            None => {
                let masters: Vec<&NodeAddr> = reported_masters(answers).collect();
                let most = masters
                    .iter()
                    .max_by_key(|m| masters.iter().filter(|o| resolved.same(o, m)).count())?;
                (*most).clone()
            }
        };
        let demoted = nodes.iter().zip(answers).any(|(n, a)| {
            resolved.same(&n.addr, &last) && matches!(a, Ok((RoleReply::Replica { .. }, _)))
        });
        (!demoted).then_some(last)
    }

    /// `ROLE` on `node`, through its control connection: the connect within the connect
    /// timeout, the reply within [`role_timeout`](super::config::Settings::role_timeout).
    async fn role_of(&self, node: &Node<B>) -> Answer {
        let started = Instant::now();
        let limit = self.settings.role_exchange();
        let bounds = (
            self.settings.timeouts.connect_timeout(),
            self.settings.role_timeout(),
        );
        let ask = async {
            match node
                .control_at(&self.backend, bounds, &redis::cmd("ROLE"))
                .await
            {
                (Ok(Value::ServerError(e)), _) => Err(Error::node(&node.name, e.into())),
                (Ok(v), epoch) => Ok((v, epoch)),
                (Err(e), _) => Err(Error::node(&node.name, e)),
            }
        };
        let reply = match tokio::time::timeout(limit, ask).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(limit)),
        };
        let (reply, epoch) = reply?;
        node.answered.store(true, Relaxed);
        let role =
            parse_role(&reply).ok_or_else(|| Error::protocol(&node.name, "not a ROLE reply"))?;
        // The role check reached the node's current address: connections to an address its
        // host name moved off are retired (its role is recorded below, as any other).
        node.answered_at(epoch, &self.backend);
        Ok((role, started.elapsed()))
    }

    /// Records what `node` said, given whom the replicas should follow: its health and role,
    /// whether it serves reads, and a new role epoch (connections dropped) when its role
    /// changed.
    fn apply(&self, node: &Node<B>, answer: &Answer, follows: Follows<'_>, resolved: &Resolved) {
        let is_primary = matches!(follows, Follows::Primary(p, _) if node.addr == *p);
        let old = node.endpoint.role();
        let another = matches!(follows, Follows::Primary(..)) && !is_primary;
        record_probe(node, answer, is_primary, another);
        let replica = match answer {
            Ok((
                RoleReply::Replica {
                    master,
                    link_up,
                    offset,
                },
                _,
            )) => Some((master.as_ref(), *link_up, *offset)),
            _ => None,
        };
        let (usable, lag) = match (replica, follows) {
            (Some((master, link_up, offset)), Follows::Primary(primary, primary_offset)) => {
                let follows = master.is_some_and(|m| resolved.same(m, primary));
                let lag = replica_lag(primary_offset, offset);
                let within = self.settings.max_replica_lag.is_none_or(|max| lag <= max);
                (follows && link_up && within, lag)
            }
            // No primary now: a replica of the last one keeps serving reads, its lag as last
            // measured.
            (Some((Some(master), _, _)), Follows::Last(Some(last))) => (
                resolved.same(master, last) && !resolved.same(&node.addr, last),
                node.lag.load(Relaxed),
            ),
            _ => (false, 0),
        };
        node.lag.store(lag, Relaxed);
        let role = node.endpoint.role();
        let was_usable = node.link_up.swap(usable, Relaxed);
        if role == Role::Replica && was_usable && !usable {
            tracing::info!(target: "switchover::redis", node = %node.name, lag, "replica not usable for reads (link down, lagging or following another primary)");
        }
        // A node unfit for reads (link down, lagging, following another node, another
        // self-declared primary, unreachable) is drained in the tracker, so the read policy
        // skips it; it is cleared when it is fit again. A drain the pool did not make is left
        // alone. With the heartbeat on, an unreachable node is left to it: a drain would stop
        // its heartbeats, so it would never be declared down (and what waits on it never cut).
        let unfit = !is_primary && !usable;
        let judged_by_heartbeat = answer.is_err() && self.settings.heartbeat.is_some();
        let ep = &node.endpoint;
        if unfit && !judged_by_heartbeat && ep.state() == HealthState::Up {
            ep.drain();
            node.drained_by_pool.store(true, Relaxed);
        } else if !unfit
            && node.drained_by_pool.swap(false, Relaxed)
            && ep.state() == HealthState::Draining
        {
            ep.clear();
        }
        if role != old {
            node.role_changed(&self.backend);
        }
    }
}

/// Whom the replicas of a run should follow.
#[derive(Clone, Copy)]
enum Follows<'a> {
    /// The primary the run chose, and its replication offset.
    Primary(&'a NodeAddr, i64),
    /// The run found none: the last primary, if the replicas may still serve its data.
    Last(Option<&'a NodeAddr>),
}

/// Records a node's answer as a probe: up with its role, or down. `chosen`: this node is the
/// primary the run names; `another`: the run names another node. Another node claiming
/// `master` (split brain, a restarted old primary) is recorded as a replica, so the router
/// never takes it for a primary candidate; so is a primary that does not answer while the run
/// names another (a frozen old primary: what is still sent to it is no write to the primary);
/// any other unreachable node keeps its role.
fn record_probe<B: Backend>(node: &Node<B>, answer: &Answer, chosen: bool, another: bool) {
    let ep = &node.endpoint;
    match answer {
        Ok((RoleReply::Primary { .. }, latency)) => {
            let role = if chosen { Role::Primary } else { Role::Replica };
            ep.record_probe(ProbeResult::up().with_role(role).with_latency(*latency));
        }
        Ok((RoleReply::Replica { .. }, latency)) => {
            ep.record_probe(
                ProbeResult::up()
                    .with_role(Role::Replica)
                    .with_latency(*latency),
            );
        }
        Ok((RoleReply::Sentinel, _)) => ep.record_probe(ProbeResult::down()),
        Err(e) => {
            tracing::debug!(target: "switchover::redis", node = %node.name, error = %e, "ROLE failed");
            match another && ep.role() == Role::Primary {
                true => ep.record_probe(ProbeResult::down().with_role(Role::Replica)),
                false => ep.record_probe(ProbeResult::down()),
            }
        }
    }
}

/// For each node that answered `master`: its address, offset, and how many of the answering
/// replicas follow it with their link up.
fn claims<B: Backend>(
    nodes: &[NodeRef<B>],
    answers: &[Answer],
    resolved: &Resolved,
) -> Vec<(NodeAddr, i64, usize)> {
    let follows = |a: &Answer, primary: &NodeAddr| matches!(a, Ok((RoleReply::Replica { master: Some(m), link_up: true, .. }, _)) if resolved.same(m, primary));
    nodes
        .iter()
        .zip(answers)
        .filter_map(|(node, answer)| match answer {
            Ok((RoleReply::Primary { offset, .. }, _)) => {
                let followers = answers.iter().filter(|a| follows(a, &node.addr)).count();
                Some((node.addr.clone(), *offset, followers))
            }
            _ => None,
        })
        .collect()
}

/// Chooses the primary among the nodes that claim the `master` role.
///
/// `claims` holds, for each node that answered `master`, its address, its offset and how many
/// of the answering replicas follow it. `preferred` (the sentinels' choice) wins when it is
/// among the claimants; otherwise the node most replicas follow, then the highest offset, then
/// `current` (no switch without a reason).
pub(crate) fn choose_primary(
    claims: &[(NodeAddr, i64, usize)],
    preferred: Option<&NodeAddr>,
    current: Option<&NodeAddr>,
) -> Option<NodeAddr> {
    if let Some(p) = preferred
        && claims.iter().any(|(a, _, _)| a == p)
    {
        return Some(p.clone());
    }
    claims
        .iter()
        .max_by_key(|(a, offset, followers)| (*followers, *offset, Some(a) == current))
        .map(|(a, _, _)| a.clone())
}

/// The node that refused this client (a rejected login, a failed TLS handshake), when that is
/// why no primary was found: every node that answered refused, none said anything else (the
/// others are unreachable).
fn refusal<B: Backend>(nodes: &[NodeRef<B>], answers: &[Answer]) -> Option<Refusal> {
    let mut first = None;
    for (node, answer) in nodes.iter().zip(answers) {
        match answer {
            Ok(_) => return None,
            Err(e) => {
                if let Some(r) = e.redis_error()
                    && let Some(f) = login_failure(r)
                {
                    first.get_or_insert_with(|| Refusal {
                        node: node.name.clone(),
                        tls: f == LoginFailure::Tls,
                        err: r.clone(),
                    });
                }
            }
        }
    }
    first
}

/// Why a run found no primary: what each node said. Permanent when the nodes refused this
/// client (a wrong password, an expired token, a TLS mismatch do not fix themselves).
fn no_primary<B: Backend>(
    nodes: &[NodeRef<B>],
    answers: &[Answer],
    refused: Option<&Refusal>,
) -> NoPrimary {
    let mut reason = match refused {
        Some(r) if r.tls => format!("TLS with {} failed (", r.node),
        Some(r) => format!("authentication to {} failed (", r.node),
        None => String::from("no node reported the master role ("),
    };
    for (i, (node, answer)) in nodes.iter().zip(answers).enumerate() {
        if i > 0 {
            reason.push_str("; ");
        }
        let _ = match answer {
            Ok((
                RoleReply::Replica {
                    master, link_up, ..
                },
                _,
            )) => {
                let of = master
                    .as_ref()
                    .map_or("nobody".to_owned(), |m| m.to_string());
                let link = if *link_up { "up" } else { "down" };
                write!(reason, "{}: replica of {of}, link {link}", node.name)
            }
            Ok((RoleReply::Sentinel, _)) => write!(reason, "{}: a sentinel", node.name),
            Ok((RoleReply::Primary { .. }, _)) => write!(reason, "{}: master", node.name),
            Err(e) => match e.redis_error() {
                Some(r) => write!(reason, "{}: {r}", node.name),
                None => write!(reason, "{}: {e}", node.name),
            },
        };
    }
    reason.push(')');
    match refused {
        Some(_) => NoPrimary::permanent(reason),
        None => NoPrimary::new(reason),
    }
}

/// Bytes a replica at `offset` is behind a primary at `primary_offset` (0 when ahead). The
/// offsets come from the servers: any pair, however odd, gives a number, never an overflow.
fn replica_lag(primary_offset: i64, offset: i64) -> u64 {
    u64::try_from(primary_offset.saturating_sub(offset)).unwrap_or(0)
}

/// The primaries the replicas among `answers` say they follow.
fn reported_masters(answers: &[Answer]) -> impl Iterator<Item = &NodeAddr> {
    answers.iter().filter_map(|a| match a {
        Ok((RoleReply::Replica { master, .. }, _)) => master.as_ref(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_primary() {
        let a = NodeAddr::new("a", 1).unwrap();
        let b = NodeAddr::new("b", 1).unwrap();
        // The node replicas follow wins over a lone restarted node with a higher offset.
        let claims = [(a.clone(), 500, 0), (b.clone(), 100, 2)];
        assert_eq!(choose_primary(&claims, None, Some(&a)), Some(b.clone()));
        // The sentinels' choice wins when it claims the role.
        assert_eq!(choose_primary(&claims, Some(&a), None), Some(a.clone()));
        // Ties keep the current primary.
        let tie = [(a.clone(), 1, 0), (b.clone(), 1, 0)];
        assert_eq!(choose_primary(&tie, None, Some(&a)), Some(a.clone()));
        assert_eq!(choose_primary(&tie, None, Some(&b)), Some(b));
        assert_eq!(choose_primary(&[], None, Some(&a)), None);
    }

    #[test]
    fn replica_lag_never_overflows_on_server_offsets() {
        assert_eq!(replica_lag(1000, 400), 600);
        assert_eq!(replica_lag(400, 1000), 0);
        // A replica that has not synced yet reports -1.
        assert_eq!(replica_lag(10, -1), 11);
        assert_eq!(replica_lag(i64::MAX, -1), i64::MAX as u64);
        assert_eq!(replica_lag(i64::MAX, i64::MIN), i64::MAX as u64);
        assert_eq!(replica_lag(i64::MIN, i64::MAX), 0);
    }
}

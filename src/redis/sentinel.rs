//! Sentinel: what the sentinels say about the primary and its replicas (for discovery and the
//! first node list), and the `+switch-master` listener, a failover signal for discovery.

use std::fmt::Write as _;
use std::sync::Weak;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::RedisError;

use super::backend::{Backend, RedisIo};
use super::config::NodeAddr;
use super::error::Error;
use super::login::{LoginFailure, login_failure};
use super::pool::Inner;
use super::reply::{
    SentinelReplica, SentinelTimings, parse_master_addr, parse_sentinel_replicas,
    parse_sentinel_timings, parse_switch_master,
};
use super::topology::Topology;
use crate::retry::{Backoff, RetryPolicy};
use crate::route::NoPrimary;

/// One sentinel's answer: the primary it names and the replicas it lists.
type SentinelView = (NodeAddr, Vec<SentinelReplica>, Option<SentinelTimings>);

/// Asks `sentinel` about `master`.
async fn ask<B: Backend>(
    backend: &B,
    sentinel: &NodeAddr,
    master: &str,
) -> Result<SentinelView, Error> {
    let shown = sentinel.to_string();
    let (m, r, t) =
        backend
            .ask_sentinel(sentinel, master)
            .await
            .map_err(|e| match login_failure(&e) {
                Some(f) => Error::refused("sentinel", &shown, f == LoginFailure::Tls, e),
                None => Error::node(&shown, e),
            })?;
    match parse_master_addr(&m) {
        Some(Some(primary)) => Ok((
            primary,
            parse_sentinel_replicas(&r).unwrap_or_default(),
            parse_sentinel_timings(&t),
        )),
        Some(None) => Err(Error::no_primary(NoPrimary::new(format!(
            "sentinel {shown} does not know master `{master}`"
        )))),
        None => Err(Error::protocol(
            &shown,
            "not a GET-MASTER-ADDR-BY-NAME reply",
        )),
    }
}

/// The first node list: the primary and replicas the first sentinel that answers names, asked
/// in turn, with the timings it monitors the master with.
pub(crate) async fn seed<B: Backend>(
    backend: &B,
    sentinels: &[NodeAddr],
    master: &str,
) -> Result<(Vec<NodeAddr>, Option<SentinelTimings>), Error> {
    let mut last = None;
    for addr in sentinels {
        match ask(backend, addr, master).await {
            Ok((primary, replicas, timings)) => {
                let mut nodes = vec![primary];
                for rep in replicas {
                    if !nodes.contains(&rep.addr) {
                        nodes.push(rep.addr);
                    }
                }
                return Ok((nodes, timings));
            }
            // A sentinel that refused this client says more than one that is down.
            Err(e)
                if last
                    .as_ref()
                    .is_none_or(|l: &Error| !(l.is_auth() || l.is_tls())) =>
            {
                last = Some(e)
            }
            Err(_) => {}
        }
    }
    Err(last.unwrap_or_else(|| Error::no_primary(NoPrimary::new("no sentinel answered"))))
}

impl<B: Backend> Topology<B> {
    /// Asks every sentinel (in parallel) and adds the nodes the majority names. Returns the
    /// primary the pool may believe: the one a majority of the *configured* sentinels names,
    /// unless a `+switch-master` announcement (made by a sentinel a majority elected to lead
    /// the failover) names a newer one that the majority has not caught up with yet, or the
    /// leader of a failover under way flags the replica it promotes.
    pub(crate) async fn learn_from_sentinels(
        &self,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> Result<NodeAddr, NoPrimary> {
        let (vote, promoted) = self.ask_sentinels(sentinels, master).await;
        if let Ok((primary, replicas, _)) = &vote {
            self.add_node(primary.clone());
            for r in replicas {
                if r.healthy {
                    self.add_node(r.addr.clone());
                } else {
                    self.remember(&r.addr);
                }
            }
            // Nodes the majority no longer lists at all (removed, or forgotten after a
            // `SENTINEL RESET`) are pruned; a listed node that is down is still asked.
            let mut listed: Vec<NodeAddr> = replicas.iter().map(|r| r.addr.clone()).collect();
            listed.push(primary.clone());
            listed.extend(crate::sync::read(&self.sentinel_hint).clone());
            self.forget_unlisted(&listed);
        }
        let mut hint = crate::sync::write(&self.sentinel_hint);
        match (&vote, hint.as_ref()) {
            // The majority caught up with the announcement: its word alone counts again.
            (Ok((primary, _, _)), Some(h)) if h == primary => *hint = None,
            (_, Some(h)) => {
                let h = h.clone();
                drop(hint);
                self.add_node(h.clone());
                return Ok(h);
            }
            (_, None) => {}
        }
        drop(hint);
        // A failover under way: the replica its leader chose (elected by a majority, as for
        // `+switch-master`), before the leader announces the switch (up to a second later,
        // once it sees the role change in its `INFO` polling). Believed only once it claims
        // `master` itself, as any sentinel's choice.
        if let Some(p) = promoted
            && !matches!(&vote, Ok((primary, _, _)) if *primary == p)
        {
            self.add_node(p.clone());
            return Ok(p);
        }
        vote.map(|(primary, _, _)| primary)
    }

    /// The answer a majority of the configured sentinels gives, or why there is none; and the
    /// replica a sentinel flags `promoted` (the leader of a failover under way), if any.
    async fn ask_sentinels(
        &self,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> (Result<SentinelView, NoPrimary>, Option<NodeAddr>) {
        let asks = sentinels
            .iter()
            .map(|addr| ask(&self.backend, addr, master));
        let answers = join_all(asks).await;
        let promoted = answers
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .flat_map(|(_, replicas, _)| replicas)
            .find(|r| r.promoted)
            .map(|r| r.addr.clone());
        (tally(sentinels, answers), promoted)
    }
}

/// The view a majority of `sentinels` (all configured, answering or not) shares, or why none
/// does: what each sentinel said.
fn tally(
    sentinels: &[NodeAddr],
    answers: Vec<Result<SentinelView, Error>>,
) -> Result<SentinelView, NoPrimary> {
    let needed = sentinels.len() / 2 + 1;
    let named: Vec<&SentinelView> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    let best = named
        .iter()
        .map(|v| (named.iter().filter(|w| w.0 == v.0).count(), *v))
        .max_by_key(|(votes, _)| *votes);
    if let Some((votes, view)) = best
        && votes >= needed
    {
        return Ok(view.clone());
    }
    let mut reason = format!(
        "no quorum of sentinels: {} of the {} configured name the same master ({needed} needed; ",
        best.map_or(0, |(v, _)| v),
        sentinels.len(),
    );
    for (i, (addr, answer)) in sentinels.iter().zip(&answers).enumerate() {
        if i > 0 {
            reason.push_str(", ");
        }
        let _ = match answer {
            Ok((primary, _, _)) => write!(reason, "{addr} names {primary}"),
            Err(e) => {
                tracing::debug!(target: "switchover::redis", sentinel = %addr, error = %e, "sentinel query failed");
                write!(reason, "{addr}: {e}")
            }
        };
    }
    reason.push(')');
    Err(NoPrimary::new(reason))
}

/// The default retry policy in Sentinel mode, from the timings the sentinels report: the
/// [default](super::default_retry_policy)'s deadline (10 s, for the election and the switch)
/// after the sentinels' `down-after-milliseconds` (30 s when stock), so that a write rides
/// out a failover with the sentinels' own timings; as many attempts per second as the
/// default. `failover-timeout` bounds a failed election and retry (180 s when stock), longer
/// than any write should wait: not added.
pub(crate) fn retry_policy_for(timings: SentinelTimings) -> RetryPolicy {
    let base = super::default_retry_policy();
    let base_deadline = base.deadline().unwrap_or(Duration::from_secs(10));
    let deadline = base_deadline.saturating_add(timings.down_after);
    let scale = deadline
        .as_millis()
        .div_ceil(base_deadline.as_millis().max(1));
    let attempts = u32::try_from(scale)
        .unwrap_or(u32::MAX)
        .saturating_mul(base.max_attempts());
    RetryPolicy::builder()
        .max_attempts(attempts)
        .deadline(deadline)
        .backoff(*base.backoff())
        .build()
        .unwrap_or(base)
}

/// Subscribes to `+switch-master` on `sentinel` and turns each announcement for `master` into a
/// hint for discovery and a doubt about the primary. Reconnects with the retry policy's backoff;
/// ends when the pool is dropped or closed.
pub(crate) async fn listen(weak: Weak<Inner<RedisIo>>, sentinel: NodeAddr, master: String) {
    let mut failures = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Relaxed) {
            return;
        }
        let limit = inner.topology.settings.timeouts.exchange();
        let backoff = *inner.retry.backoff();
        let pubsub = tokio::time::timeout(limit, async {
            let mut p = inner.topology.backend.sentinel_pubsub(&sentinel).await?;
            p.subscribe("+switch-master").await?;
            Ok::<_, RedisError>(p)
        })
        .await;
        drop(inner);
        match pubsub {
            Ok(Ok(mut p)) => {
                failures = 0;
                tracing::debug!(target: "switchover::redis", sentinel = %sentinel, "subscribed to +switch-master");
                let mut messages = p.on_message();
                loop {
                    if weak.upgrade().is_none_or(|i| i.closed.load(Relaxed)) {
                        return;
                    }
                    let msg = tokio::select! {
                        m = messages.next() => m,
                        // Re-check the pool is alive now and then.
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    };
                    let Some(msg) = msg else { break };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(new) = parse_switch_master(&payload, &master) {
                        let Some(inner) = weak.upgrade() else { return };
                        tracing::warn!(target: "switchover::redis", sentinel = %sentinel, primary = %new, "sentinel announced +switch-master");
                        *crate::sync::write(&inner.topology.sentinel_hint) = Some(new);
                        inner.rediscovery.suspect();
                    }
                }
            }
            _ => failures = failures.saturating_add(1),
        }
        // Reconnect with the executor's backoff (jittered).
        let delay = backoff
            .schedule()
            .nth(failures.min(20) as usize)
            .unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(delay.max(Duration::from_millis(10))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port).unwrap()
    }

    fn names(port: u16) -> Result<SentinelView, Error> {
        Ok((addr(port), Vec::new(), None))
    }

    fn down() -> Result<SentinelView, Error> {
        Err(Error::timeout(Duration::from_millis(250)))
    }

    #[test]
    fn the_default_policy_rides_out_the_sentinels_down_after() {
        let stock = SentinelTimings {
            down_after: Duration::from_secs(30),
            failover_timeout: Duration::from_secs(180),
        };
        let p = retry_policy_for(stock);
        assert_eq!(p.deadline(), Some(Duration::from_secs(40)));
        assert_eq!(p.max_attempts(), 160);
        assert_eq!(p.backoff(), super::super::default_retry_policy().backoff());
        let quick = SentinelTimings {
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_secs(180),
        };
        let p = retry_policy_for(quick);
        assert_eq!(p.deadline(), Some(Duration::from_secs(11)));
        assert_eq!(p.max_attempts(), 80);
    }

    #[test]
    fn a_majority_of_the_configured_sentinels_decides() {
        let three = [addr(1), addr(2), addr(3)];
        // One of three answers: no quorum, whatever it says.
        let err = tally(&three, vec![names(7000), down(), down()]).unwrap_err();
        let why = err.reason();
        assert!(
            why.starts_with("no quorum of sentinels: 1 of the 3 configured name the same master (2 needed; 127.0.0.1:1 names 127.0.0.1:7000, 127.0.0.1:2: "),
            "{why}"
        );
        // Two of three agree.
        assert_eq!(
            tally(&three, vec![names(7000), down(), names(7000)])
                .unwrap()
                .0,
            addr(7000)
        );
        // Two answer and disagree.
        assert!(tally(&three, vec![names(7000), names(7001), down()]).is_err());
        // Two of two; one of one; one of two is not a majority.
        assert!(tally(&three[..2], vec![names(7000), names(7000)]).is_ok());
        assert!(tally(&three[..1], vec![names(7000)]).is_ok());
        assert!(tally(&three[..2], vec![names(7000), down()]).is_err());
    }
}

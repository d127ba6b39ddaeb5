//! Sentinel: what the sentinels say about the primary and its replicas (for discovery and the
//! first node list), and the `+switch-master` listener, a failover signal for discovery.

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
    SentinelReplica, parse_master_addr, parse_sentinel_replicas, parse_switch_master,
};
use super::topology::Topology;
use crate::retry::Backoff;
use crate::route::NoPrimary;

/// One sentinel's answer: the primary it names and the replicas it lists.
type SentinelView = (NodeAddr, Vec<SentinelReplica>);

/// Asks `sentinel` about `master`.
async fn ask<B: Backend>(
    backend: &B,
    sentinel: &NodeAddr,
    master: &str,
) -> Result<SentinelView, Error> {
    let shown = sentinel.to_string();
    let (m, r) =
        backend
            .ask_sentinel(sentinel, master)
            .await
            .map_err(|e| match login_failure(&e) {
                Some(f) => Error::refused("sentinel", &shown, f == LoginFailure::Tls, e),
                None => Error::node(&shown, e),
            })?;
    match parse_master_addr(&m) {
        Some(Some(primary)) => Ok((primary, parse_sentinel_replicas(&r).unwrap_or_default())),
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
/// in turn.
pub(crate) async fn seed<B: Backend>(
    backend: &B,
    sentinels: &[NodeAddr],
    master: &str,
) -> Result<Vec<NodeAddr>, Error> {
    let mut last = None;
    for addr in sentinels {
        match ask(backend, addr, master).await {
            Ok((primary, replicas)) => {
                let mut nodes = vec![primary];
                for rep in replicas {
                    if !nodes.contains(&rep.addr) {
                        nodes.push(rep.addr);
                    }
                }
                return Ok(nodes);
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
    /// Asks every sentinel (in parallel), adds the nodes the majority names, and takes the
    /// `+switch-master` hint: returns the primary the sentinels prefer, if any.
    pub(crate) async fn learn_from_sentinels(
        &self,
        sentinels: &[NodeAddr],
        master: &str,
    ) -> Option<NodeAddr> {
        let mut preferred = None;
        if let Some((primary, replicas)) = self.ask_sentinels(sentinels, master).await {
            self.add_node(primary.clone());
            for r in replicas.iter().filter(|r| r.healthy) {
                self.add_node(r.addr.clone());
            }
            preferred = Some(primary);
        }
        let hint = crate::sync::write(&self.sentinel_hint).take();
        if let Some(h) = hint {
            self.add_node(h.clone());
            preferred = Some(h);
        }
        preferred
    }

    /// The majority's answer (ties: the first sentinel's).
    async fn ask_sentinels(&self, sentinels: &[NodeAddr], master: &str) -> Option<SentinelView> {
        let asks = sentinels.iter().map(|addr| async move {
            match ask(&self.backend, addr, master).await {
                Ok(view) => Some(view),
                Err(e) => {
                    tracing::debug!(target: "switchover::redis", sentinel = %addr, error = %e, "sentinel query failed");
                    None
                }
            }
        });
        let answers: Vec<SentinelView> = join_all(asks).await.into_iter().flatten().collect();
        let mut best: Option<(usize, &SentinelView)> = None;
        for a in &answers {
            let votes = answers.iter().filter(|b| b.0 == a.0).count();
            if best.is_none_or(|(v, _)| votes > v) {
                best = Some((votes, a));
            }
        }
        best.map(|(_, a)| a.clone())
    }
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

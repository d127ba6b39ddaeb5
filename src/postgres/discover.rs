//! The protocol part of finding the primary: probe every host's role in parallel
//! ([`RoleDiscovery`], the core's [`Discover`]), and the health tracker's probe that brings an
//! ejected host back with its role ([`RoleProbe`]).

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backend::{Backend, ProbeError};
use super::role::ServerRole;
use super::topology::{HostRoles, health_role};
use crate::health::{Endpoint, Probe, ProbeResult};
use crate::route::{Discover, NoPrimary};

/// One discovery run: every host probed at once, each probe bounded by the probe timeout and
/// recording what it found (role and health) on its endpoint when it finishes. The run names
/// the first host that answers as a writable primary, so a black-holed host does not hold the
/// switch up for its whole probe timeout; the other probes keep running in the background and
/// record what they find. The first run of a pool waits for every probe, so the roles of all
/// hosts are known before the first connection is placed.
pub(crate) struct RoleDiscovery<B> {
    backend: Arc<B>,
    roles: Arc<HostRoles>,
    endpoints: Vec<Endpoint<Arc<str>>>,
    probe_timeout: Duration,
}

impl<B: Backend> RoleDiscovery<B> {
    pub(crate) fn new(
        backend: Arc<B>,
        roles: Arc<HostRoles>,
        endpoints: Vec<Endpoint<Arc<str>>>,
        probe_timeout: Duration,
    ) -> Self {
        RoleDiscovery {
            backend,
            roles,
            endpoints,
            probe_timeout,
        }
    }
}

impl<B: Backend> Discover<Arc<str>> for RoleDiscovery<B> {
    fn discover(&self) -> impl Future<Output = Result<Arc<str>, NoPrimary>> + Send {
        let backend = self.backend.clone();
        let roles = self.roles.clone();
        let endpoints = self.endpoints.clone();
        let timeout = self.probe_timeout;
        async move {
            let wait_all = !roles.learned();
            let started = Instant::now();
            let (tx, mut rx) = mpsc::unbounded_channel();
            for (i, endpoint) in endpoints.into_iter().enumerate() {
                let (backend, roles, tx) = (backend.clone(), roles.clone(), tx.clone());
                tokio::spawn(async move {
                    let found = probe_host(&*backend, &roles, &endpoint, i, timeout).await;
                    let _ = tx.send((i, found));
                });
            }
            drop(tx);
            let mut found: Vec<Option<Result<ServerRole, ProbeError>>> =
                vec![None; roles.names().len()];
            let mut chosen = None;
            while let Some((i, outcome)) = rx.recv().await {
                if chosen.is_none() && outcome == Ok(ServerRole::Primary) {
                    chosen = Some(i);
                }
                found[i] = Some(outcome);
                if chosen.is_some() && !wait_all {
                    break;
                }
            }
            if wait_all {
                roles.mark_learned();
            }
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match chosen {
                Some(i) => {
                    tracing::debug!(
                        target: "switchover::postgres",
                        primary = %roles.names()[i],
                        elapsed_ms,
                        "re-discovery found the writable primary"
                    );
                    Ok(roles.names()[i].clone())
                }
                None => Err(no_primary(roles.names(), &found)),
            }
        }
    }
}

/// Probes host `i` within `timeout` and records the outcome on its endpoint.
async fn probe_host<B: Backend>(
    backend: &B,
    roles: &HostRoles,
    endpoint: &Endpoint<Arc<str>>,
    i: usize,
    timeout: Duration,
) -> Result<ServerRole, ProbeError> {
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, backend.probe(i)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ProbeError::transient(format!(
            "no answer within the probe timeout of {timeout:?}"
        ))),
    };
    match &outcome {
        Ok(role) => {
            roles.record(i, endpoint, *role);
            endpoint.record_probe(
                ProbeResult::up()
                    .with_role(health_role(*role))
                    .with_latency(started.elapsed()),
            );
        }
        Err(e) => {
            tracing::debug!(
                target: "switchover::postgres",
                host = %roles.names()[i],
                error = %e.detail,
                "probe failed"
            );
            endpoint.record_probe(ProbeResult::down());
        }
    }
    outcome
}

/// Why a run that heard from every host found no primary: each host's answer; permanent
/// when no host reported a role and one rejected the login.
fn no_primary(names: &[Arc<str>], found: &[Option<Result<ServerRole, ProbeError>>]) -> NoPrimary {
    let mut reason = String::from("no writable primary:");
    let mut answered = false;
    let mut rejected = false;
    for (name, f) in names.iter().zip(found) {
        let _ = match f {
            Some(Ok(role)) => {
                answered = true;
                write!(reason, " {name}={role}")
            }
            Some(Err(e)) => {
                rejected |= e.permanent;
                write!(reason, " {name}=unreachable ({})", e.detail)
            }
            None => write!(reason, " {name}=no answer"),
        };
    }
    if rejected && !answered {
        NoPrimary::permanent(reason)
    } else {
        NoPrimary::new(reason)
    }
}

/// The health tracker's background probe: brings an ejected host back, with its role.
pub(crate) struct RoleProbe<B> {
    backend: Arc<B>,
    roles: Arc<HostRoles>,
}

impl<B> RoleProbe<B> {
    pub(crate) fn new(backend: Arc<B>, roles: Arc<HostRoles>) -> Self {
        RoleProbe { backend, roles }
    }
}

impl<B: Backend> Probe<Arc<str>> for RoleProbe<B> {
    fn probe(&self, id: &Arc<str>) -> impl Future<Output = ProbeResult> + Send {
        let backend = self.backend.clone();
        let roles = self.roles.clone();
        let index = roles.index_of(id);
        async move {
            let Some(i) = index else {
                return ProbeResult::down();
            };
            let started = Instant::now();
            match backend.probe(i).await {
                Ok(role) => {
                    roles.note(i, role);
                    ProbeResult::up()
                        .with_role(health_role(role))
                        .with_latency(started.elapsed())
                }
                Err(_) => ProbeResult::down(),
            }
        }
    }
}

//! What the pool, its managers and its probe share: the hosts, the health tracker, the router,
//! the connect limiter and re-discovery.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool::managed::WeakPool;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::config::{HealthCustomizer, HostConfig, Settings};
use super::conn::{PgConnection, connect};
use super::error::Error;
use super::manager::ConnectionManager;
use super::role::{ServerRole, TargetRole};
use crate::error::Classify;
use crate::health::{Endpoint, HealthTracker, Probe, ProbeResult, Role};
use crate::route::{Failback, Router};

/// The hosts, shared with the tracker's probe.
#[derive(Debug)]
pub(crate) struct Hosts {
    pub(crate) configs: Vec<HostConfig>,
    /// The role each host last reported (`ServerRole::to_u8`, 0 unknown).
    roles: Vec<AtomicU8>,
    probe_timeout: Duration,
}

impl Hosts {
    pub(crate) fn role(&self, i: usize) -> Option<ServerRole> {
        ServerRole::from_u8(self.roles[i].load(Ordering::Acquire))
    }

    fn set_role(&self, i: usize, role: ServerRole) {
        self.roles[i].store(role.to_u8(), Ordering::Release);
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.configs.iter().position(|h| &*h.name == name)
    }

    /// Connects to host `i`, reads its role and disconnects, within the probe timeout.
    pub(crate) async fn probe_role(&self, i: usize) -> Result<(ServerRole, Duration), Error> {
        let started = Instant::now();
        let conn = connect(i, &self.configs[i], 0, self.probe_timeout).await?;
        let role = match conn.role() {
            Some(r) => r,
            None => tokio::time::timeout(self.probe_timeout, conn.query_role())
                .await
                .map_err(|_| Error::ConnectTimeout {
                    host: self.configs[i].name.clone(),
                    timeout: self.probe_timeout,
                })?
                .map_err(|source| Error::Postgres {
                    host: self.configs[i].name.clone(),
                    source,
                })?,
        };
        self.set_role(i, role);
        Ok((role, started.elapsed()))
    }
}

pub(crate) fn health_role(role: ServerRole) -> Role {
    match role {
        ServerRole::Primary => Role::Primary,
        ServerRole::Standby | ServerRole::ReadOnly => Role::Replica,
    }
}

fn record_role(
    hosts: &Hosts,
    endpoint: &Endpoint<Arc<str>>,
    i: usize,
    role: ServerRole,
    before: Option<ServerRole>,
) {
    hosts.set_role(i, role);
    endpoint.set_role(health_role(role));
    if before != Some(role) {
        tracing::info!(
            target: "switchover::postgres",
            host = %hosts.configs[i].name,
            role = %role,
            previous = ?before.map(|r| r.to_string()),
            "host role observed"
        );
    }
}

/// The background probe of the health tracker: brings ejected hosts back, with their role.
#[derive(Debug, Clone)]
pub(crate) struct RoleProbe {
    hosts: Arc<Hosts>,
}

impl Probe<Arc<str>> for RoleProbe {
    fn probe(&self, id: &Arc<str>) -> impl Future<Output = ProbeResult> + Send {
        let hosts = self.hosts.clone();
        let id = id.clone();
        async move {
            let Some(i) = hosts.index_of(&id) else {
                return ProbeResult::down();
            };
            match hosts.probe_role(i).await {
                Ok((role, latency)) => ProbeResult::up()
                    .with_role(health_role(role))
                    .with_latency(latency),
                Err(_) => ProbeResult::down(),
            }
        }
    }
}

/// Shared state of one [`FailoverPool`](super::FailoverPool).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) hosts: Arc<Hosts>,
    pub(crate) tracker: HealthTracker<Arc<str>>,
    pub(crate) router: Router<Arc<str>>,
    /// Endpoint handles by host index.
    pub(crate) endpoints: Vec<Endpoint<Arc<str>>>,
    /// Bounds the connects in flight across both pools.
    pub(crate) connects: Semaphore,
    /// When the last re-discovery started (`None`: never). Held while one runs, so they never
    /// overlap.
    discovery: Mutex<Option<Instant>>,
    /// The pools, to evict idle connections after a switch (weak: the pools own the core).
    pub(crate) pools: OnceLock<[WeakPool<ConnectionManager>; 2]>,
    read_cursor: AtomicUsize,
}

impl Core {
    pub(crate) fn new(
        mut settings: Settings,
        health: Option<HealthCustomizer>,
    ) -> Result<Arc<Core>, crate::ConfigError> {
        let configs = std::mem::take(&mut settings.hosts);
        let names: Vec<Arc<str>> = configs.iter().map(|h| h.name.clone()).collect();
        let mut seen = std::collections::HashSet::new();
        for n in &names {
            if !seen.insert(n.clone()) {
                return Err(crate::ConfigError::new(
                    "hosts",
                    format!("{n} is listed twice"),
                ));
            }
        }
        let hosts = Arc::new(Hosts {
            roles: configs.iter().map(|_| AtomicU8::new(0)).collect(),
            configs,
            probe_timeout: settings.timeouts.probe,
        });
        // The defaults documented on `FailoverPoolBuilder::health`.
        let mut health_builder = HealthTracker::builder()
            .failure_threshold(2)
            .ejection_base(Duration::from_millis(500))
            .ejection_cap(Duration::from_secs(10))
            .probe_interval(Duration::from_millis(250))
            .probe_timeout(settings.timeouts.probe);
        if let Some(customize) = health {
            health_builder = customize(health_builder);
        }
        let tracker = health_builder
            .endpoints(names.iter().cloned())
            .probe(RoleProbe {
                hosts: hosts.clone(),
            })
            .build()?;
        let mut rb = Router::builder(&tracker).failback(Failback::Manual);
        for (i, n) in names.iter().enumerate() {
            rb = rb.endpoint(n.clone(), i as u32);
        }
        let router = rb.build()?;
        let endpoints = names
            .iter()
            .map(|n| tracker.endpoint(n).expect("registered above"))
            .collect();
        Ok(Arc::new(Core {
            connects: Semaphore::new(settings.max_concurrent_connects),
            settings,
            hosts,
            tracker,
            router,
            endpoints,
            discovery: Mutex::new(None),
            pools: OnceLock::new(),
            read_cursor: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn host_count(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn host_name(&self, i: usize) -> &Arc<str> {
        &self.hosts.configs[i].name
    }

    /// The index of the router's active endpoint.
    pub(crate) fn active_index(&self) -> usize {
        let active = self.router.active();
        let id = active.id();
        self.endpoints
            .iter()
            .position(|e| e.id() == id)
            .unwrap_or(0)
    }

    pub(crate) fn has_discovered(&self) -> bool {
        self.discovery
            .try_lock()
            .map(|g| g.is_some())
            .unwrap_or(true)
    }

    /// Records what one host said it is, in our table and in the tracker.
    pub(crate) fn observe_role(&self, i: usize, role: ServerRole) {
        let before = self.hosts.role(i);
        record_role(&self.hosts, &self.endpoints[i], i, role, before);
    }

    /// The hosts to try for `target`, best first: available hosts of a preferred role, then
    /// of an acceptable role, then (for roles other than `Primary`) available hosts of unknown
    /// role. `Primary` is the router's active endpoint only.
    pub(crate) fn candidates(&self, target: TargetRole) -> Vec<usize> {
        let active = self.active_index();
        if target == TargetRole::Primary {
            return vec![active];
        }
        let n = self.host_count();
        let start = self.read_cursor.fetch_add(1, Ordering::Relaxed);
        // Rotate through hosts so reads spread over standbys; the active endpoint is ranked by
        // its role like any other host.
        let order: Vec<usize> = (0..n).map(|k| (start + k) % n).collect();
        let mut preferred = Vec::new();
        let mut acceptable = Vec::new();
        let mut unknown = Vec::new();
        let primary_first = matches!(target, TargetRole::PreferPrimary | TargetRole::Any);
        if primary_first && self.endpoints[active].is_available() {
            preferred.push(active);
        }
        for i in order {
            if preferred.contains(&i) || !self.endpoints[i].is_available() {
                continue;
            }
            match self.hosts.role(i) {
                Some(r) if target.prefers(r) => preferred.push(i),
                Some(r) if target.accepts(r) => acceptable.push(i),
                Some(_) => {}
                None => unknown.push(i),
            }
        }
        preferred.extend(acceptable);
        preferred.extend(unknown);
        preferred
    }

    /// `true` when an available host has a role `target` prefers.
    pub(crate) fn preferred_available(&self, target: TargetRole) -> bool {
        (0..self.host_count()).any(|i| {
            self.endpoints[i].is_available()
                && self.hosts.role(i).is_some_and(|r| target.prefers(r))
        })
    }

    /// Opens a connection for `target`, trying the candidates in order. Runs the first
    /// re-discovery if none ran yet.
    pub(crate) async fn create(&self, target: TargetRole) -> Result<PgConnection, Error> {
        if !self.has_discovered() {
            // The first use: learn every host's role (in parallel) before choosing.
            let _ = self.rediscover_with(Instant::now(), true).await;
        }
        let generation = self.router.generation();
        let candidates = self.candidates(target);
        if candidates.is_empty() {
            return Err(Error::NoHost { role: target });
        }
        let _permit = self.connects.acquire().await.map_err(|_| Error::Closed)?;
        let login = self.settings.timeouts.login;
        let mut last = None;
        for i in candidates {
            match connect(i, &self.hosts.configs[i], generation, login).await {
                Ok(conn) => {
                    self.endpoints[i].record_success();
                    let role = conn.role().unwrap_or(ServerRole::ReadOnly);
                    self.observe_role(i, role);
                    if target.accepts(role) {
                        tracing::debug!(
                            target: "switchover::postgres",
                            host = %self.host_name(i),
                            role = %role,
                            wanted = %target,
                            generation,
                            "connected"
                        );
                        return Ok(conn);
                    }
                    last = Some(Error::WrongRole {
                        host: self.host_name(i).clone(),
                        actual: role,
                        wanted: target,
                    });
                }
                Err(e) => {
                    self.endpoints[i].record_failure(e.classify());
                    tracing::debug!(
                        target: "switchover::postgres",
                        host = %self.host_name(i),
                        error = %e,
                        "connect failed"
                    );
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::NoHost { role: target }))
    }

    /// Re-discovers the roles of every host, in parallel, and switches the router to the
    /// primary found. Runs at most one at a time; returns at once when a re-discovery started
    /// after `observed_at` (it already accounts for what the caller saw).
    ///
    /// Returns the generation afterwards, or [`Error::NoHost`] when no primary was found.
    pub(crate) async fn rediscover(&self, observed_at: Instant) -> Result<u64, Error> {
        self.rediscover_with(observed_at, false).await
    }

    /// [`rediscover`](Self::rediscover); with `wait_all`, waits for every probe (each bounded
    /// by the probe timeout) instead of deciding at the first primary that answers.
    pub(crate) async fn rediscover_with(
        &self,
        observed_at: Instant,
        wait_all: bool,
    ) -> Result<u64, Error> {
        let mut last = self.discovery.lock().await;
        if let Some(started) = *last
            && started >= observed_at
        {
            return Ok(self.router.generation());
        }
        let started = Instant::now();
        *last = Some(started);

        // Probe every host in parallel. Each probe records its own result (role, health) when
        // it finishes; the decision is taken as soon as a writable primary answers, so a
        // black-holed host does not hold the switch up for its whole probe timeout.
        let n = self.host_count();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..n {
            let hosts = self.hosts.clone();
            let endpoint = self.endpoints[i].clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let found = match hosts.probe_role(i).await {
                    Ok((role, latency)) => {
                        let before = hosts.role(i);
                        record_role(&hosts, &endpoint, i, role, before);
                        endpoint.record_probe(
                            ProbeResult::up()
                                .with_role(health_role(role))
                                .with_latency(latency),
                        );
                        Some(role)
                    }
                    Err(e) => {
                        tracing::debug!(
                            target: "switchover::postgres",
                            host = %hosts.configs[i].name,
                            error = %e,
                            "probe failed"
                        );
                        endpoint.record_probe(ProbeResult::down());
                        None
                    }
                };
                let _ = tx.send((i, found));
            });
        }
        drop(tx);
        let mut found: Vec<Option<ServerRole>> = vec![None; n];
        let mut answered = 0;
        let mut chosen = None;
        while let Some((i, role)) = rx.recv().await {
            answered += 1;
            found[i] = role;
            if role == Some(ServerRole::Primary) && chosen.is_none() {
                chosen = Some(i);
                if !wait_all {
                    break;
                }
            }
        }
        let active = self.active_index();
        if answered < n {
            // The others keep probing in the background and record what they find.
            tracing::debug!(
                target: "switchover::postgres",
                answered,
                hosts = n,
                "decided before every probe answered"
            );
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let result = match chosen {
            None => {
                tracing::warn!(
                    target: "switchover::postgres",
                    roles = ?self.describe(&found),
                    elapsed_ms,
                    "re-discovery found no writable primary"
                );
                Err(Error::NoHost {
                    role: TargetRole::Primary,
                })
            }
            Some(i) => {
                let before = self.router.generation();
                // It just said it is the writable primary: an ejection from before (failed
                // connects while it was being promoted) must not keep writes away from it.
                // A manual override is left alone, and then the switch is refused.
                self.endpoints[i].readmit();
                match self.router.switch_to(self.host_name(i)) {
                    Ok(generation) => {
                        if generation != before || i != active {
                            tracing::warn!(
                                target: "switchover::postgres",
                                from = %self.host_name(active),
                                to = %self.host_name(i),
                                generation,
                                elapsed_ms,
                                "switched to the new primary"
                            );
                        } else {
                            tracing::debug!(
                                target: "switchover::postgres",
                                primary = %self.host_name(i),
                                generation,
                                elapsed_ms,
                                "re-discovery confirmed the primary"
                            );
                        }
                        Ok(generation)
                    }
                    Err(e) => {
                        tracing::warn!(
                            target: "switchover::postgres",
                            host = %self.host_name(i),
                            error = %e,
                            "found a primary the router cannot switch to yet"
                        );
                        Err(Error::NoHost {
                            role: TargetRole::Primary,
                        })
                    }
                }
            }
        };
        self.evict_idle();
        result
    }

    fn describe(&self, found: &[Option<ServerRole>]) -> Vec<String> {
        found
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(r) => format!("{}={r}", self.host_name(i)),
                None => format!("{}=unreachable", self.host_name(i)),
            })
            .collect()
    }

    /// Drops every idle connection that is of an older generation, on an unavailable host, or
    /// whose server role no longer fits its pool.
    pub(crate) fn evict_idle(&self) {
        let Some(pools) = self.pools.get() else {
            return;
        };
        let generation = self.router.generation();
        for weak in pools {
            let Some(pool) = weak.upgrade() else {
                continue;
            };
            let target = pool.manager().target();
            let res = pool.retain(|conn, _| self.still_fits(conn, target, generation));
            if !res.removed.is_empty() {
                tracing::info!(
                    target: "switchover::postgres",
                    evicted = res.removed.len(),
                    kept = res.retained,
                    pool = %target,
                    generation,
                    "evicted idle connections"
                );
            }
        }
    }

    /// The checks that need no round trip: open, current generation, host available, server
    /// role acceptable.
    pub(crate) fn still_fits(
        &self,
        conn: &PgConnection,
        target: TargetRole,
        generation: u64,
    ) -> bool {
        !conn.is_closed()
            && conn.generation() == generation
            && self.endpoints[conn.host_index()].is_available()
            && conn.role().is_some_and(|r| target.accepts(r))
    }
}

//! [`SplitPoolBuilder`]: every knob of a pool, its default, and the validation done before any
//! connection is made.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backend::RedisIo;
use super::config::{NodeAddr, ReadFrom, Settings, Source, Timeouts, check_duration};
use super::connect::{TlsOptions, load_tls};
use super::error::Error;
use super::heartbeat::Heartbeat;
use super::node::NodeId;
use super::pool::{Parts, SplitPool};
use crate::auth::{CredentialProvider, Secret};
use crate::error::ConfigError;
use crate::health::{HealthTracker, HealthTrackerBuilder};
use crate::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryPolicy};
use crate::route::{PreferReplica, PrimaryOnly, ReadPolicy, ReplicaOnly};

/// The default retry policy of a pool: 40 attempts within a 10 s deadline, exponential backoff
/// from 10 ms to 250 ms with full jitter: short waits so that writes resume soon after the new
/// primary is confirmed. The 10 s deadline covers a failover of nodes listed statically and of
/// sentinels with a `down-after-milliseconds` up to about 9 s; in Sentinel mode a pool built
/// without a [`retry_policy`](SplitPoolBuilder::retry_policy) stretches it to the sentinels'
/// own down-after plus 10 s (see the builder's defaults).
pub fn default_retry_policy() -> RetryPolicy {
    let backoff = ExponentialBackoff::builder()
        .base(Duration::from_millis(10))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()
        .unwrap_or_default();
    RetryPolicy::builder()
        .max_attempts(40)
        .deadline(Duration::from_secs(10))
        .backoff(backoff)
        .build()
        .unwrap_or_default()
}

/// Tunes a pool's health tracker (see [`SplitPoolBuilder::health`]).
type HealthCustomizer =
    Box<dyn FnOnce(HealthTrackerBuilder<NodeId>) -> HealthTrackerBuilder<NodeId> + Send>;

/// Builder of [`SplitPool`], made by [`SplitPool::builder`]. Everything is validated by
/// [`build`](Self::build) before any connection is made.
///
/// | knob | default | what it sets |
/// |---|---|---|
/// | [`nodes`](Self::nodes) / [`sentinels`](Self::sentinels) + [`master_name`](Self::master_name) | — (one of them is required) | where the nodes are |
/// | [`username`](Self::username), [`password`](Self::password) | none | credentials of the data nodes |
/// | [`credentials`](Self::credentials) | none | a provider of the data nodes' credentials, asked for each new connection |
/// | [`sentinel_username`](Self::sentinel_username), [`sentinel_password`](Self::sentinel_password) | none | credentials of the sentinels |
/// | [`sentinel_credentials`](Self::sentinel_credentials) | none | a provider of the sentinels' credentials |
/// | `tls` (feature `tls`) | plaintext (for `rediss://` addresses: platform roots, full verification) | TLS to the nodes (and the sentinels) |
/// | `sentinel_tls` (feature `tls`) | as `tls` | TLS to the sentinels, when it differs |
/// | [`db`](Self::db) | 0 | the database |
/// | [`timeouts`](Self::timeouts) | connect 250 ms, response 1 s | see [`Timeouts`] |
/// | [`read_from`](Self::read_from) / [`read_policy`](Self::read_policy) | [`ReadFrom::PreferReplica`] | where reads go |
/// | [`max_replica_lag`](Self::max_replica_lag) | no bound | replicas further behind serve no reads |
/// | [`discovery_interval`](Self::discovery_interval) | 1 s | discovery while the primary is confirmed (a backstop) |
/// | [`rediscovery_interval`](Self::rediscovery_interval) | 50 ms | discovery while the primary is in doubt; the least gap between runs |
/// | [`retry_policy`](Self::retry_policy) | [`default_retry_policy`]; with Sentinel, its deadline after the sentinels' down-after (below) | retries of every command |
/// | [`budget`](Self::budget) | none | a shared retry budget |
/// | [`health`](Self::health) | [`HealthTracker::builder`]'s defaults | the nodes' health tracking |
/// | [`dedicated_pool_size`](Self::dedicated_pool_size) | 8 | dedicated connections per node |
/// | [`observe`](Self::observe) | [`Observe`](crate::observe::Observe) named `redis`, 256 timeline events | the router's timeline and metrics label |
/// | [`heartbeat`](Self::heartbeat) | 200 ms (jittered by the tracker, never later) | `ROLE` on each node that is up, on its own control connection |
/// | [`heartbeat_timeout`](Self::heartbeat_timeout) | 300 ms | a heartbeat unanswered this long is missed; also the bound of each node's `ROLE` reply in discovery |
/// | [`resolver`](Self::resolver) | [`SystemResolver`](crate::resolve::SystemResolver) | how host names of nodes and sentinels are looked up |
/// | [`resolve_interval`](Self::resolve_interval) | 5 s | the nodes' host names looked up again (also on every discovery run) |
/// | [`max_connection_age`](Self::max_connection_age) | 30 min (each connection 0 to 10 % less) | connections older are replaced; `None`: never |
///
/// **The heartbeat's cost**: one `ROLE` per node that is up every 200 ms or a little less
/// (the tracker's jitter only shortens the gap): about 5 to 6 requests per node per second per
/// pool (clones share it), plus one control connection per node. A missed heartbeat of the
/// primary puts it in doubt at once (a discovery run); a node that misses the tracker's failure
/// threshold in a row is declared down, and what waits on its connections fails at once. A
/// command slower than the response timeout is not a missed heartbeat: the heartbeat's
/// verdict, not the slow call, judges the node.
///
/// In Sentinel mode, unless a [`retry_policy`](Self::retry_policy) is given, the default
/// policy's deadline is derived from what the first sentinel that answers reports
/// (`SENTINEL MASTER`): its `down-after-milliseconds` plus the default 10 s (for the election
/// and the switch), with as many attempts per second as the default. With stock Sentinel
/// timings (down-after 30 s) a call may take up to 40 s, so that a write rides out a failover;
/// set a retry policy for a shorter deadline.
///
/// A write whose primary is in doubt waits for discovery up to the **wait limit**: one full
/// discovery run (the connect plus the response timeout for `ROLE`; twice that with Sentinel,
/// which is asked first) plus the rediscovery interval, so that it sees the outcome of a run
/// that started after its doubt. Then it fails (surely not executed) and the retry policy
/// decides whether to wait again.
#[must_use]
pub struct SplitPoolBuilder {
    nodes: Vec<String>,
    sentinels: Vec<String>,
    master: Option<String>,
    settings: Settings,
    tls: Option<TlsOptions>,
    sentinel_tls: Option<TlsOptions>,
    retry: Option<RetryPolicy>,
    budget: Option<RetryBudget>,
    read_policy: Option<Box<dyn ReadPolicy<NodeId>>>,
    health: Option<HealthCustomizer>,
}

impl fmt::Debug for SplitPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |list: &[String]| list.iter().map(|n| redact(n)).collect::<Vec<_>>();
        f.debug_struct("SplitPoolBuilder")
            .field("nodes", &redacted(&self.nodes))
            .field("sentinels", &redacted(&self.sentinels))
            .field("master", &self.master)
            .field("settings", &self.settings)
            .field("tls", &self.tls)
            .field("sentinel_tls", &self.sentinel_tls)
            .finish_non_exhaustive()
    }
}

fn redact(s: &str) -> String {
    match NodeAddr::parse(s) {
        Ok(a) => a.to_string(),
        Err(_) => "<unparsable>".to_owned(),
    }
}

impl SplitPool {
    /// A builder with the defaults listed on [`SplitPoolBuilder`].
    pub fn builder() -> SplitPoolBuilder {
        SplitPoolBuilder {
            nodes: Vec::new(),
            sentinels: Vec::new(),
            master: None,
            settings: Settings::default(),
            tls: None,
            sentinel_tls: None,
            retry: None,
            budget: None,
            read_policy: None,
            health: None,
        }
    }
}

impl SplitPoolBuilder {
    /// The nodes (`host:port`, `redis://[user:password@]host:port`, `rediss://...` for TLS, or
    /// `unix:///path/to/redis.sock`) of a static topology. Their roles are discovered with
    /// `ROLE`; the order does not matter. All are TLS or none: `rediss://` turns TLS on (with
    /// [`tls`](Self::tls)'s settings, else the platform's roots); a `redis://` node with TLS on
    /// is refused. A Unix socket never uses TLS.
    pub fn nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.nodes.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// The sentinels (`host:port`, `redis://...`, `rediss://...`) to ask for the primary and
    /// replicas of [`master_name`](Self::master_name). A `rediss://` sentinel turns TLS on for
    /// the nodes too (a Sentinel that talks TLS to them has `tls-replication yes`); a sentinel
    /// given as `redis://` stays plaintext when the rest is TLS; a bare `host:port` follows
    /// the pool.
    pub fn sentinels<S: Into<String>>(mut self, sentinels: impl IntoIterator<Item = S>) -> Self {
        self.sentinels.extend(sentinels.into_iter().map(Into::into));
        self
    }

    /// The name the sentinels monitor (required with [`sentinels`](Self::sentinels)).
    pub fn master_name(mut self, name: impl Into<String>) -> Self {
        self.master = Some(name.into());
        self
    }

    /// The ACL user of the data nodes (also the user a [credential provider](Self::credentials)
    /// is asked for).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.settings.login.username = Some(username.into());
        self
    }

    /// The password of the data nodes. Never shown in `Debug`, errors or logs.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.settings.login.password = Some(Secret::new(password.into()));
        self
    }

    /// Where the data nodes' credentials come from: `provider` is asked (with the node's host,
    /// port and the [`username`](Self::username)) before every new connection — shared, `ROLE`,
    /// dedicated, pub/sub — within the connect timeout; wrap a slow one in
    /// [`CachedCredentials`](crate::auth::CachedCredentials). When a node rejects the login
    /// (`WRONGPASS`, `NOAUTH`, `-ERR invalid password`) the provider is told
    /// ([`rejected`](CredentialProvider::rejected)) and asked once more, so a rotated password
    /// costs no failed command. Takes the place of [`password`](Self::password); a user in the
    /// provider's answer wins over [`username`](Self::username).
    pub fn credentials(mut self, provider: impl CredentialProvider) -> Self {
        self.settings.login.provider = Some(Arc::new(provider));
        self
    }

    /// The ACL user of the sentinels.
    pub fn sentinel_username(mut self, username: impl Into<String>) -> Self {
        self.settings.sentinel_login.username = Some(username.into());
        self
    }

    /// The password of the sentinels (they often have their own, `requirepass` in
    /// `sentinel.conf`). Never shown.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.settings.sentinel_login.password = Some(Secret::new(password.into()));
        self
    }

    /// Where the sentinels' credentials come from, as [`credentials`](Self::credentials) for
    /// the nodes (every query and subscription is a new connection).
    pub fn sentinel_credentials(mut self, provider: impl CredentialProvider) -> Self {
        self.settings.sentinel_login.provider = Some(Arc::new(provider));
        self
    }

    /// Talk TLS to the nodes (and the sentinels, unless [`sentinel_tls`](Self::sentinel_tls)
    /// says otherwise or they are given as `redis://`), with the crate's shared
    /// [`TlsOptions`](crate::tls::TlsOptions) (the Postgres pool takes the same): roots,
    /// verification level, client certificate for mutual TLS, and a server-name override for
    /// nodes reported as `ip:port` (by Sentinel, by `ROLE`) whose certificates name a host.
    /// Loaded and checked by [`build`](Self::build) (a [`ConfigError`] naming `roots`,
    /// `client_cert`, `client_key` or `server_name`). Not for Unix sockets.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, options: crate::tls::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// TLS options of the sentinels when they differ from the nodes' (another CA, another
    /// server name); turns TLS on for them.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn sentinel_tls(mut self, options: crate::tls::TlsOptions) -> Self {
        self.sentinel_tls = Some(options);
        self
    }

    /// The database (0 to 65 535).
    pub fn db(mut self, db: i64) -> Self {
        self.settings.db = db;
        self
    }

    /// How long the pool waits for a node: to connect, and for each reply.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.settings.timeouts = timeouts;
        self
    }

    /// Where reads go, from the built-in choices. With
    /// [`ReplicaOnly`](ReadFrom::ReplicaOnly) and no replica usable, a read fails at once
    /// ([`is_no_replica`](Error::is_no_replica); surely not executed).
    pub fn read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_policy = Some(match read_from {
            ReadFrom::Primary => Box::new(PrimaryOnly),
            ReadFrom::ReplicaOnly => Box::new(ReplicaOnly::new()),
            _ => Box::new(PreferReplica::new()),
        });
        self
    }

    /// Where reads go, by any [`ReadPolicy`] of the router (for example
    /// [`LowestLatency`](crate::route::LowestLatency), which sees every command's latency). A
    /// policy that chooses no endpoint makes the read fail at once, as with
    /// [`ReadFrom::ReplicaOnly`].
    pub fn read_policy(mut self, policy: impl ReadPolicy<NodeId> + 'static) -> Self {
        self.read_policy = Some(Box::new(policy));
        self
    }

    /// Skips replicas more than `bytes` of replication stream behind the primary, as of the last
    /// discovery.
    pub fn max_replica_lag(mut self, bytes: u64) -> Self {
        self.settings.max_replica_lag = Some(bytes);
        self
    }

    /// How often discovery runs while the primary is confirmed: a backstop against a missed
    /// failover signal.
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.settings.discovery_interval = interval;
        self
    }

    /// How often discovery runs while the primary is in doubt, and the shortest time between
    /// two runs (a burst of doubts costs one run). Not above the discovery interval.
    pub fn rediscovery_interval(mut self, interval: Duration) -> Self {
        self.settings.rediscovery_interval = interval;
        self
    }

    /// The retry policy of every command: the core's runner makes at most `max_attempts`
    /// attempts within the policy's deadline, each on the endpoint it picks at that moment. Its
    /// backoff is also used between Sentinel reconnects. An attempt timeout, if you set one,
    /// should exceed the response timeout (a write in doubt waits for discovery within its
    /// attempt, up to the attempt timeout).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// A shared retry budget that every retry of the pool's commands draws from. Successes
    /// refill it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Tunes the health tracker of the nodes, e.g.
    /// `.health(|h| h.failure_threshold(5).ejection_base(Duration::from_secs(2)))`. The pool
    /// adds the endpoints itself.
    pub fn health(
        mut self,
        customize: impl FnOnce(HealthTrackerBuilder<NodeId>) -> HealthTrackerBuilder<NodeId>
        + Send
        + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// The most dedicated connections per node (at least 1).
    pub fn dedicated_pool_size(mut self, size: usize) -> Self {
        self.settings.dedicated_pool_size = size;
        self
    }

    /// How the pool's router is observed: the name of its timeline and the `router` label of
    /// its `switchover.*` metrics, and how many timeline events it keeps. Default:
    /// `Observe::new("redis")` with 256 events. See [`SplitPool::health`] and
    /// [`SplitPool::timeline`].
    pub fn observe(mut self, observe: crate::observe::Observe) -> Self {
        self.settings.observe = observe;
        self
    }

    /// Asks each node that is up `ROLE` this often, on a control connection of its own
    /// (`None`: no heartbeat; a silent node is then found by the calls that wait for it, and
    /// by the discovery backstop). Default 200 ms. See the heartbeat's cost above.
    pub fn heartbeat(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.settings.heartbeat = interval.into();
        self
    }

    /// How the host names of the nodes and the sentinels are looked up (default
    /// [`SystemResolver`](crate::resolve::SystemResolver)); each lookup is bounded by the
    /// connect timeout. A failing lookup fails the connect that needed it, naming the host; a
    /// lookup that answers no address keeps the last good ones. See
    /// [`resolve_interval`](Self::resolve_interval) for what happens when a name moves.
    pub fn resolver(mut self, resolver: impl crate::resolve::Resolve) -> Self {
        self.settings.resolver = crate::resolve::Resolver(Arc::new(resolver));
        self
    }

    /// How often the host names of the nodes are looked up again (default 5 s); they are
    /// also looked up at every discovery run (in the background: a run never waits for a
    /// lookup). When a name's addresses change, new connections go to the new address at
    /// once; discovery's `ROLE` then asks the new address on a new control connection, and
    /// once it answers, the connections to the old address are retired: the shared
    /// connection is replaced (commands already sent on it finish), idle dedicated
    /// connections are closed, and those handed out go [stale](Error::is_stale). The role the
    /// new address reports is the node's role from then on (a name moved to a replica is no
    /// primary until it is promoted). IP addresses and Unix sockets are never looked up.
    ///
    /// [`Error::is_stale`]: super::Error::is_stale
    pub fn resolve_interval(mut self, interval: Duration) -> Self {
        self.settings.resolve_interval = interval;
        self
    }

    /// The maximum age of a connection (default 30 minutes; `None`: no limit), the backstop
    /// for a move no lookup shows (a resolver cache, a load balancer in front of the nodes).
    /// Each connection's limit is drawn up to 10 % below it, so a fleet does not reconnect
    /// at once. At its limit the shared connection is replaced without failing a command
    /// (commands already sent on it finish, the next ones go to a new connection), the
    /// control connection is replaced at its next use, and dedicated connections are not
    /// handed out again (one handed out is closed when given back).
    pub fn max_connection_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        let age = age.into();
        self.settings.ages = Arc::new(crate::resolve::AgeLimit::new(age, None));
        self
    }

    /// As [`max_connection_age`](Self::max_connection_age), with the limits of the
    /// connections drawn from a fixed `seed` (tests).
    #[doc(hidden)]
    pub fn max_connection_age_seeded(mut self, age: Option<Duration>, seed: u64) -> Self {
        self.settings.ages = Arc::new(crate::resolve::AgeLimit::new(age, Some(seed)));
        self
    }

    /// How long a heartbeat may go unanswered before the node missed it (default 300 ms). It
    /// may exceed the response timeout: a node slower than the commands' timeout but within
    /// this one is slow, not dead. With the heartbeat on, it also bounds each node's `ROLE`
    /// reply in a discovery run, so that a silent node does not hold a run for the response
    /// timeout.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.settings.heartbeat_timeout = Some(timeout);
        self
    }

    /// Checks every setting; returns the pool's parts, with the nodes of a static topology.
    fn validate(mut self) -> Result<Parts<RedisIo>, ConfigError> {
        let initial = self.validate_source()?;
        self.validate_settings()?;
        // The heartbeat first, so that the caller's `health` settings win.
        let mut tracker = HealthTracker::builder().probe_timeout(self.settings.heartbeat_timeout());
        let mut heartbeat = None;
        if let Some(every) = self.settings.heartbeat {
            let (probe, slot) = Heartbeat::new();
            tracker = tracker.heartbeat(every).probe(probe);
            heartbeat = Some(slot);
        }
        if let Some(customize) = self.health {
            tracker = customize(tracker);
        }
        Ok(Parts {
            backend: RedisIo::new(&self.settings),
            settings: self.settings,
            retry: self.retry.unwrap_or_else(default_retry_policy),
            budget: self.budget,
            read_policy: self
                .read_policy
                .unwrap_or_else(|| Box::new(PreferReplica::new())),
            tracker: tracker.build()?,
            initial,
            heartbeat,
        })
    }

    /// Nodes or sentinels (one of them), their addresses and the credentials they carry.
    fn validate_source(&mut self) -> Result<Vec<NodeAddr>, ConfigError> {
        let s = &mut self.settings;
        match (self.nodes.is_empty(), self.sentinels.is_empty()) {
            (false, false) => Err(ConfigError::new(
                "nodes",
                "give either nodes or sentinels, not both",
            )),
            (true, true) => Err(ConfigError::new("nodes", "no nodes and no sentinels given")),
            (true, false) => {
                let master = self
                    .master
                    .clone()
                    .filter(|m| !m.trim().is_empty())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "master_name",
                            "Sentinel needs the name of the monitored master",
                        )
                    })?;
                let mut sentinels = Vec::new();
                let mut any_tls = false;
                for raw in &self.sentinels {
                    let (addr, creds) = NodeAddr::parse_with_credentials(raw, "sentinels")?;
                    if addr.is_unix() {
                        return Err(ConfigError::new(
                            "sentinels",
                            format!("`{addr}`: sentinels are reached over TCP"),
                        ));
                    }
                    let login = &mut s.sentinel_login;
                    if creds.password.is_some() && login.password.is_none() {
                        login.password = creds.password.clone();
                    }
                    if creds.username.is_some() && login.username.is_none() {
                        login.username = creds.username.clone();
                    }
                    any_tls |= creds.tls;
                    if creds.plaintext() {
                        s.plaintext_sentinels.push(addr.clone());
                    }
                    sentinels.push(addr);
                }
                s.source = Source::Sentinel { sentinels, master };
                let nodes_tls = any_tls || self.tls.is_some();
                if nodes_tls {
                    s.tls = Some(load_tls(self.tls.as_ref(), "sentinels")?);
                }
                if self.sentinel_tls.is_some() {
                    s.sentinel_tls = Some(load_tls(self.sentinel_tls.as_ref(), "sentinels")?);
                } else if nodes_tls {
                    s.sentinel_tls = s.tls.clone();
                }
                Ok(Vec::new())
            }
            (false, true) => {
                if self.master.is_some() {
                    return Err(ConfigError::new(
                        "master_name",
                        "a master name needs sentinels",
                    ));
                }
                if self.sentinel_tls.is_some() {
                    return Err(ConfigError::new("sentinel_tls", "no sentinels are given"));
                }
                let mut initial = Vec::new();
                let mut schemes = Vec::new();
                let mut unix = None;
                for raw in &self.nodes {
                    let (addr, creds) = NodeAddr::parse_with_credentials(raw, "nodes")?;
                    let login = &mut s.login;
                    if creds.password.is_some() && login.password.is_none() {
                        login.password = creds.password.clone();
                    }
                    if creds.username.is_some() && login.username.is_none() {
                        login.username = creds.username.clone();
                    }
                    if addr.is_unix() {
                        unix.get_or_insert_with(|| addr.clone());
                    } else {
                        schemes.push((addr.clone(), creds));
                    }
                    if !initial.contains(&addr) {
                        initial.push(addr);
                    }
                }
                let tls_on = self.tls.is_some() || schemes.iter().any(|(_, c)| c.tls);
                if tls_on && let Some(unix) = unix {
                    return Err(ConfigError::new(
                        "nodes",
                        format!("`{unix}`: a Unix socket takes no TLS"),
                    ));
                }
                if tls_on {
                    // All TLS or none: an explicit `redis://`, or a bare `host:port` beside
                    // `rediss://` nodes (with no `tls` setting to say what it means).
                    let plain = schemes
                        .iter()
                        .find(|(_, c)| c.plaintext() || (self.tls.is_none() && !c.tls));
                    if let Some((plain, _)) = plain {
                        return Err(ConfigError::new(
                            "nodes",
                            format!(
                                "`{plain}` is plaintext while other nodes use TLS (give every node as `rediss://`, or set `tls`)"
                            ),
                        ));
                    }
                    s.tls = Some(load_tls(self.tls.as_ref(), "nodes")?);
                }
                s.source = Source::Static;
                Ok(initial)
            }
        }
    }

    /// Timeouts, intervals, database number, pool size.
    fn validate_settings(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        s.timeouts.validate()?;
        check_duration("discovery_interval", s.discovery_interval)?;
        check_duration("rediscovery_interval", s.rediscovery_interval)?;
        if s.rediscovery_interval > s.discovery_interval {
            return Err(ConfigError::new(
                "rediscovery_interval",
                "must not exceed discovery_interval",
            ));
        }
        if !(0..=65_535).contains(&s.db) {
            return Err(ConfigError::new(
                "db",
                format!("{} is not a database number", s.db),
            ));
        }
        if let Some(h) = s.heartbeat {
            check_duration("heartbeat", h)?;
        }
        if let Some(t) = s.heartbeat_timeout {
            check_duration("heartbeat_timeout", t)?;
        }
        crate::resolve::check_interval("resolve_interval", s.resolve_interval)?;
        crate::resolve::check_age("max_connection_age", s.ages.max())?;
        if s.dedicated_pool_size == 0 {
            return Err(ConfigError::new(
                "dedicated_pool_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Validates the settings, finds the nodes (asking the sentinels in Sentinel mode), waits
    /// for discovery to confirm a primary and starts the background tasks (which need a Tokio
    /// runtime with the time driver).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](super::ErrorKind::Config) for bad input (no nodes and no
    /// sentinels, both, an unparsable address, Sentinel without a master name, a zero or
    /// inverted timeout, a bad database number, a bad health setting);
    /// [`ErrorKind::NoPrimary`](super::ErrorKind::NoPrimary) when no node confirms the master
    /// role within the wait limit (at once for a rejected login); a sentinel's error when none
    /// answers.
    pub async fn build(self) -> Result<SplitPool, Error> {
        let derive_retry = self.retry.is_none();
        let mut parts = self.validate()?;
        if let Source::Sentinel { sentinels, master } = &parts.settings.source {
            // Seed the node list from the sentinels; discovery keeps it current.
            let (initial, timings) =
                super::sentinel::seed(&parts.backend, sentinels, master).await?;
            parts.initial = initial;
            if derive_retry && let Some(t) = timings {
                parts.retry = super::sentinel::retry_policy_for(t);
                tracing::debug!(target: "switchover::redis", down_after = ?t.down_after, failover_timeout = ?t.failover_timeout, deadline = ?parts.retry.deadline(), "retry deadline from the sentinels' timings");
            }
        }
        SplitPool::start(parts).await
    }
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;

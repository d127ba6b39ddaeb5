//! [`FailoverPoolBuilder`]: every knob of a pool, with its default, validated by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::authority::AuthorityStarter;
use super::hosts;
use super::login::Login;
use super::pool::FailoverPool;
use super::role::TargetRole;
use super::settings::{Settings, default_backoff, default_retry_policy};
use super::ssl::SslMode;
use super::timeouts::Timeouts;
use super::tls_plan::TlsPlan;
use crate::auth::{CachedCredentials, CredentialProvider};
use crate::error::ConfigError;
use crate::health::{HealthTracker, HealthTrackerBuilder};
use crate::observe::Observe;
use crate::retry::{ExponentialBackoff, RetryBudget, RetryPolicy};

/// Tunes the pool's health tracker (see [`FailoverPoolBuilder::health`]).
pub(crate) type HealthCustomizer =
    Box<dyn FnOnce(HealthTrackerBuilder<Arc<str>>) -> HealthTrackerBuilder<Arc<str>> + Send>;

/// Builder of [`FailoverPool`]. Nothing is validated until [`build`](Self::build).
///
/// Hosts come from a libpq-style connection string (several hosts allowed, comma-separated,
/// `host=a,b port=5432,5433` or `postgresql://u@a:5432,b:5433/db`), from
/// [`hosts`](Self::hosts)/[`host`](Self::host), or both (the explicit list is appended).
/// `target_session_attrs` in the string is ignored: the pool does role selection itself.
///
/// # Defaults
///
/// | knob | default |
/// |---|---|
/// | [`target_role`](Self::target_role) (what [`get`](FailoverPool::get), [`run`](FailoverPool::run) and [`transaction`](FailoverPool::transaction) use) | [`TargetRole::Primary`] |
/// | [`read_role`](Self::read_role) (what [`get_read`](FailoverPool::get_read) uses) | [`TargetRole::PreferStandby`] |
/// | [`max_size`](Self::max_size) | 16 connections per role |
/// | [`max_concurrent_connects`](Self::max_concurrent_connects) | 4, across roles |
/// | [`connect_timeout`](Self::connect_timeout) ([`Timeouts::connect`]) | 2 s |
/// | [`login_timeout`](Self::login_timeout) ([`Timeouts::login`]) | 3 s |
/// | [`acquire_timeout`](Self::acquire_timeout) ([`Timeouts::acquire`]) | 5 s |
/// | [`recycle_timeout`](Self::recycle_timeout) ([`Timeouts::recycle`]) | 1 s |
/// | [`probe_timeout`](Self::probe_timeout) ([`Timeouts::probe`]) | 2 s |
/// | [`query_timeout`](Self::query_timeout) ([`Timeouts::query`]) | 10 s |
/// | [`Timeouts::tcp_user_timeout`] | 5 s |
/// | [`Timeouts::keepalive_idle`], [`keepalive_interval`](Timeouts::keepalive_interval), [`keepalive_retries`](Timeouts::keepalive_retries) | 5 s, 1 s, 3 |
/// | [`verify_idle_after`](Self::verify_idle_after) | 10 s |
/// | [`reconnect_backoff`](Self::reconnect_backoff) | 20 ms doubling to 250 ms, full jitter |
/// | [`retry_policy`](Self::retry_policy) | 10 attempts within 15 s, backoff 20 ms doubling to 250 ms, full jitter |
/// | [`budget`](Self::budget) | none |
/// | [`rediscovery_interval`](Self::rediscovery_interval) | 50 ms |
/// | [`heartbeat`](Self::heartbeat) | every 200 ms per host (a little less: jittered), on the host's kept connection |
/// | [`heartbeat_timeout`](Self::heartbeat_timeout) | 300 ms |
/// | [`observe`](Self::observe) | [`Observe`] named `postgres`, 256 timeline events |
/// | [`authority`](Self::authority) | none: the pool finds the writable primary itself |
/// | [`resolver`](Self::resolver) | [`SystemResolver`](crate::resolve::SystemResolver) |
/// | [`resolve_interval`](Self::resolve_interval) | 5 s (host names are also looked up again at every re-discovery run) |
/// | [`max_connection_age`](Self::max_connection_age) | 30 min, each connection's limit drawn up to 10 % below |
/// | [`health`](Self::health) | a host is down after 2 transient failures in a row (calls, connects or probes), ejected 500 ms (× 2 per consecutive ejection, ≤ 10 s), back up after 2 probe successes; down hosts probed every 250 ms within the probe timeout; throttling never marks a host down |
#[must_use]
pub struct FailoverPoolBuilder {
    conn_str: Option<String>,
    config: Option<tokio_postgres::Config>,
    extra_hosts: Vec<(String, u16)>,
    target_role: TargetRole,
    read_role: TargetRole,
    max_size: usize,
    max_concurrent_connects: usize,
    timeouts: Timeouts,
    verify_idle_after: Option<Duration>,
    reconnect_backoff: Option<ExponentialBackoff>,
    retry_policy: Option<RetryPolicy>,
    budget: Option<RetryBudget>,
    rediscovery_interval: Duration,
    heartbeat: Option<Duration>,
    heartbeat_timeout: Duration,
    health: Option<HealthCustomizer>,
    ssl_mode: Option<SslMode>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsOptions>,
    credentials: Option<Arc<dyn CredentialProvider>>,
    observe: Option<Observe>,
    /// See [`authority`](Self::authority) (in `authority.rs`).
    pub(super) authority: Option<AuthorityStarter>,
    names: Names,
}

/// The host-name knobs: how names are looked up, how often again, how old a connection gets.
#[derive(Clone, Debug)]
struct Names {
    resolver: crate::resolve::Resolver,
    interval: Duration,
    max_age: Option<Duration>,
    seed: Option<u64>,
}

impl fmt::Debug for FailoverPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password: never print it.
        let mut d = f.debug_struct("FailoverPoolBuilder");
        d.field("conn_str", &self.conn_str.as_ref().map(|_| "<redacted>"))
            .field("config", &self.config.as_ref().map(|_| "<redacted>"))
            .field("extra_hosts", &self.extra_hosts)
            .field("target_role", &self.target_role)
            .field("read_role", &self.read_role)
            .field("max_size", &self.max_size)
            .field("max_concurrent_connects", &self.max_concurrent_connects)
            .field("timeouts", &self.timeouts)
            .field("verify_idle_after", &self.verify_idle_after)
            .field("retry_policy", &self.retry_policy)
            .field("budget", &self.budget.is_some())
            .field("rediscovery_interval", &self.rediscovery_interval)
            .field("heartbeat", &self.heartbeat)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("health", &self.health.is_some())
            .field("ssl_mode", &self.ssl_mode)
            .field("credentials", &self.credentials.is_some())
            .field("observe", &self.observe)
            .field("authority", &self.authority.is_some())
            .field("names", &self.names);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.finish_non_exhaustive()
    }
}

impl Default for FailoverPoolBuilder {
    fn default() -> Self {
        FailoverPoolBuilder {
            conn_str: None,
            config: None,
            extra_hosts: Vec::new(),
            target_role: TargetRole::Primary,
            read_role: TargetRole::PreferStandby,
            max_size: 16,
            max_concurrent_connects: 4,
            timeouts: Timeouts::default(),
            verify_idle_after: Some(Duration::from_secs(10)),
            reconnect_backoff: None,
            retry_policy: None,
            budget: None,
            rediscovery_interval: Duration::from_millis(50),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            health: None,
            ssl_mode: None,
            #[cfg(feature = "tls")]
            tls: None,
            credentials: None,
            observe: None,
            authority: None,
            names: Names {
                resolver: crate::resolve::Resolver::default(),
                interval: crate::resolve::DEFAULT_RESOLVE_INTERVAL,
                max_age: Some(crate::resolve::DEFAULT_MAX_CONNECTION_AGE),
                seed: None,
            },
        }
    }
}

impl FailoverPoolBuilder {
    /// How host names (not IP addresses, not `hostaddr`, not Unix sockets) are looked up
    /// (default [`SystemResolver`](crate::resolve::SystemResolver)). The pool connects to a
    /// name's addresses in order until one answers (`hostaddr`, with the name kept for
    /// TLS); each lookup is
    /// bounded by the login timeout of the connect that needs it. A failing lookup fails that
    /// connect with an error naming the host; one that answers no address keeps the last good
    /// ones.
    pub fn resolver(mut self, resolver: impl crate::resolve::Resolve) -> Self {
        self.names.resolver = crate::resolve::Resolver(Arc::new(resolver));
        self
    }

    /// How often host names are looked up again (default 5 s, the TTL of the RDS and Aurora
    /// cluster endpoints); they are also looked up at every re-discovery run, in the
    /// background. When a name's address changes, new connections go to the new address at
    /// once, and the host's kept connection (heartbeat, probes) is replaced at its next use, so
    /// the next role check asks the new address. Once it has answered, the host is the node
    /// there, with the role it reported, and every connection to the old address is ended:
    /// idle ones (never handed out again) and those checked out, whose pending requests fail
    /// with "connection closed" like any other in-flight cancellation (the runner methods
    /// retry what is safe). A name moved to a standby is no primary until it is promoted.
    pub fn resolve_interval(mut self, interval: Duration) -> Self {
        self.names.interval = interval;
        self
    }

    /// The maximum age of a connection (default 30 minutes; `None`: no limit): the backstop
    /// for a move no lookup shows (a resolver cache, a load balancer in front of the nodes).
    /// Each connection's limit is drawn up to 10 % below it, so a fleet does not reconnect at
    /// once. An older connection fails the recycle check (it is closed, never handed out
    /// again; one checked out finishes its work first); the kept connection is replaced at
    /// its next use.
    pub fn max_connection_age(mut self, age: impl Into<Option<Duration>>) -> Self {
        self.names.max_age = age.into();
        self
    }

    /// As [`max_connection_age`](Self::max_connection_age), the limits drawn from a fixed
    /// `seed` (tests).
    #[doc(hidden)]
    pub fn max_connection_age_seeded(mut self, age: Option<Duration>, seed: u64) -> Self {
        self.names.max_age = age;
        self.names.seed = Some(seed);
        self
    }

    /// A libpq-style connection string: `key=value` pairs or a `postgresql://` URL, with one or
    /// several hosts. Parsed by [`build`](Self::build).
    pub fn connection_string(mut self, s: impl Into<String>) -> Self {
        self.conn_str = Some(s.into());
        self
    }

    /// A ready client configuration (user, password, database, hosts...). Replaces a connection
    /// string set earlier.
    pub fn config(mut self, config: tokio_postgres::Config) -> Self {
        self.config = Some(config);
        self.conn_str = None;
        self
    }

    /// Adds one host, after those of the connection string or configuration.
    pub fn host(mut self, host: impl Into<String>, port: u16) -> Self {
        self.extra_hosts.push((host.into(), port));
        self
    }

    /// Adds several hosts, in priority order.
    pub fn hosts<H: Into<String>>(mut self, hosts: impl IntoIterator<Item = (H, u16)>) -> Self {
        self.extra_hosts
            .extend(hosts.into_iter().map(|(h, p)| (h.into(), p)));
        self
    }

    /// The role [`get`](FailoverPool::get), [`run`](FailoverPool::run) and
    /// [`transaction`](FailoverPool::transaction) hand out.
    pub fn target_role(mut self, role: TargetRole) -> Self {
        self.target_role = role;
        self
    }

    /// The role [`get_read`](FailoverPool::get_read) hands out.
    pub fn read_role(mut self, role: TargetRole) -> Self {
        self.read_role = role;
        self
    }

    /// The most connections per role (at least 1).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// The most connects in flight at once, across roles (at least 1). Bounds the reconnect
    /// storm after a failover.
    pub fn max_concurrent_connects(mut self, n: usize) -> Self {
        self.max_concurrent_connects = n;
        self
    }

    /// All phase deadlines at once.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The TCP connect deadline per host ([`Timeouts::connect`]).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.timeouts.connect = t;
        self
    }

    /// The deadline for TCP connect, TLS and login to one host ([`Timeouts::login`]).
    pub fn login_timeout(mut self, t: Duration) -> Self {
        self.timeouts.login = t;
        self
    }

    /// The deadline of one [`get`](FailoverPool::get) ([`Timeouts::acquire`]): `get` never
    /// waits longer, even when every host is down.
    pub fn acquire_timeout(mut self, t: Duration) -> Self {
        self.timeouts.acquire = t;
        self
    }

    /// The deadline of the check of an idle connection ([`Timeouts::recycle`]).
    pub fn recycle_timeout(mut self, t: Duration) -> Self {
        self.timeouts.recycle = t;
        self
    }

    /// The deadline of one role probe ([`Timeouts::probe`]).
    pub fn probe_timeout(mut self, t: Duration) -> Self {
        self.timeouts.probe = t;
        self
    }

    /// The deadline of each step of the runner ([`Timeouts::query`]).
    pub fn query_timeout(mut self, t: Duration) -> Self {
        self.timeouts.query = t;
        self
    }

    /// Verify idle connections with a round trip (an empty query) when they have been idle
    /// longer than this; `None` never does. Connections used more recently are checked
    /// without a round trip: closed socket, generation, role reported by the server, host
    /// health.
    pub fn verify_idle_after(mut self, after: Option<Duration>) -> Self {
        self.verify_idle_after = after;
        self
    }

    /// The backoff between the attempts of one [`get`](FailoverPool::get).
    pub fn reconnect_backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.reconnect_backoff = Some(backoff);
        self
    }

    /// The retry policy of [`run`](FailoverPool::run) and
    /// [`transaction`](FailoverPool::transaction): attempts, deadline and backoff.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// A shared retry budget that every retry of [`run`](FailoverPool::run) and
    /// [`transaction`](FailoverPool::transaction) draws from. Successes refill it.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// While the primary is in doubt, how often re-discovery probes every host; also the
    /// least time between two runs, so a burst of failover errors costs one run.
    pub fn rediscovery_interval(mut self, interval: Duration) -> Self {
        self.rediscovery_interval = interval;
        self
    }

    /// How often every host that is up is asked its role on the connection the pool keeps to
    /// it for probes (`SELECT pg_is_in_recovery(), current_setting(...)`, one round trip, no
    /// login); `None` turns the heartbeat off. Default: 200 ms (each beat a little early, by
    /// up to 20 %, so pools do not beat in step).
    ///
    /// A beat that does not answer within [`heartbeat_timeout`](Self::heartbeat_timeout)
    /// counts against the host: a frozen or partitioned primary is suspected at its first
    /// missed beat (the core's re-discovery runs at once) and declared down at the second
    /// (every connection to it then ends, see the [module docs](super)), instead of waiting
    /// for a query or the kernel. A query cut by its timeout on a host whose heartbeat
    /// answers is slow, not dead: it is not counted against the host.
    ///
    /// Cost: at most `1 / interval × 1.25` round trips per host per second per pool (6.25 at
    /// the default), and one connection per host. Off, a silent host is found by the query
    /// timeout, the acquire timeout, `tcp_user_timeout` or keepalive, whichever comes first.
    pub fn heartbeat(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.heartbeat = interval.into();
        self
    }

    /// How long one heartbeat (and, with the heartbeat on, any probe of a host by the health
    /// tracker, which reconnects when its kept connection broke) may take before it counts as
    /// missed; with the heartbeat on, also how long a re-discovery run waits for a host that
    /// does not answer before it decides without it (the host's probe goes on in the
    /// background, within the [probe timeout](Self::probe_timeout)). Default 300 ms: far above
    /// a round trip to a healthy server in the same region, short enough that a silent
    /// primary is suspected within about half a second.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Tunes the health tracker of the hosts, e.g.
    /// `.health(|h| h.failure_threshold(3).ejection_cap(Duration::from_secs(30)))`; the pool's
    /// defaults are in the table above. The endpoints (one per host, id `host:port`) and the
    /// role probe are set by the pool: endpoints added here are not hosts of the pool.
    /// Settings you do not touch keep the pool's defaults (so a base ejection above 10 s needs
    /// a larger cap too). Invalid values are refused by [`build`](Self::build) with the
    /// tracker's [`ConfigError`].
    pub fn health(
        mut self,
        customize: impl FnOnce(HealthTrackerBuilder<Arc<str>>) -> HealthTrackerBuilder<Arc<str>>
        + Send
        + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// libpq's `sslmode` for every TCP host, instead of the connection string's (or, for a
    /// [`config`](Self::config), its `ssl_mode`). See [`SslMode`] for what each mode checks.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// The TLS options (roots, client certificate, server-name override) used when the
    /// `sslmode` asks for TLS; `sslrootcert`, `sslcert` and `sslkey` in the connection string
    /// replace the matching parts. The verification level always follows the `sslmode`.
    /// Setting this counts as giving roots, so `verify-ca` and `verify-full` need no
    /// `sslrootcert` (the default roots are the platform store, see
    /// [`TlsOptions`](crate::tls::TlsOptions)).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, options: crate::tls::TlsOptions) -> Self {
        self.tls = Some(options);
        self
    }

    /// Where the user and password of each new connection come from, instead of the
    /// connection string: the provider is asked with the host (or socket directory), port and
    /// configured user, its answers are cached per host (the pool wraps it in a
    /// [`CachedCredentials`]; do not wrap it yourself), and each call is bounded by the
    /// connect timeout. When the server rejects the secret (`28P01`, `28000`) the pool tells
    /// the provider ([`rejected`](CredentialProvider::rejected)) and logs in once more with
    /// fresh credentials, so a rotation costs no failed operation. A provider that fails or
    /// does not answer gives [`ErrorKind::Authentication`](super::ErrorKind::Authentication)
    /// naming the host. A user returned by the provider replaces the configured one.
    pub fn credentials(mut self, provider: impl CredentialProvider) -> Self {
        self.credentials = Some(Arc::new(CachedCredentials::new(provider)));
        self
    }

    /// How the pool's router is observed: the name of its timeline and the `router` label of
    /// its `switchover.*` metrics (its deadpool pools report `db.client.connection.*` as
    /// `{name}:main` and `{name}:read`), and how many timeline events it keeps. Default:
    /// `Observe::new("postgres")` with 256 events. See [`FailoverPool::health`] and
    /// [`FailoverPool::timeline`].
    pub fn observe(mut self, observe: Observe) -> Self {
        self.observe = Some(observe);
        self
    }

    /// Validates the settings and builds the pool. Must be called inside a Tokio runtime: it
    /// starts the health tracker's probe and the re-discovery, whose first run (probing every
    /// host for its role, in the background) starts at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when: the connection string does not parse
    /// (`connection_string`); there is no host (`hosts`); `sslmode` is unknown or `allow`
    /// (`sslmode`); without feature `tls`, `sslmode` is `prefer` (it would silently mean
    /// plaintext) or above, or `sslrootcert`/`sslcert` is given (the field, saying to enable
    /// the feature); `sslkey` is given without `sslcert` (`sslcert`) or the reverse (`sslkey`);
    /// with `tls`, `verify-ca`/`verify-full` has no roots, or a bundle, certificate or key is
    /// unreadable, empty, not PEM or encrypted (`sslrootcert`, `sslcert`, `sslkey`), or a host
    /// cannot be a TLS server name (`hosts`); `sslcrl`, `sslcrldir`, `sslpassword`,
    /// `gssencmode` or `krbsrvname` is given (that key: not supported); the number of ports matches neither one nor the number of hosts
    /// (`port`); `max_size` or `max_concurrent_connects` is zero; a timeout or the
    /// re-discovery interval is zero or longer than a day; the login timeout is shorter than
    /// the connect timeout; a host is listed twice (`hosts`); a [`health`](Self::health)
    /// setting is invalid (the tracker's field name); no Tokio runtime is running (`probe`: the
    /// tracker's probe task is the first thing started).
    pub fn build(self) -> Result<FailoverPool, ConfigError> {
        let (base, ssl_keys) = hosts::base_config(self.conn_str, self.config)?;
        let addrs = hosts::addresses(&base, self.extra_hosts)?;
        #[cfg(feature = "tls")]
        let builder_tls = self.tls;
        #[cfg(not(feature = "tls"))]
        let builder_tls = ();
        let tls = TlsPlan::new(ssl_keys, self.ssl_mode, builder_tls)?;
        if self.max_size == 0 {
            return Err(ConfigError::new("max_size", "must be at least 1"));
        }
        if self.max_concurrent_connects == 0 {
            return Err(ConfigError::new(
                "max_concurrent_connects",
                "must be at least 1",
            ));
        }
        self.timeouts.validate()?;
        if self.verify_idle_after.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "verify_idle_after",
                "must be above zero (use `None` to never verify)",
            ));
        }
        for (field, d) in [
            ("rediscovery_interval", Some(self.rediscovery_interval)),
            ("heartbeat", self.heartbeat),
            ("heartbeat_timeout", Some(self.heartbeat_timeout)),
        ] {
            if d.is_some_and(|d| d.is_zero() || d > crate::retry::MAX_DEADLINE) {
                return Err(ConfigError::new(
                    field,
                    "must be above zero and at most a day",
                ));
            }
        }
        crate::resolve::check_interval("resolve_interval", self.names.interval)?;
        crate::resolve::check_age("max_connection_age", self.names.max_age)?;
        let n = &self.names;
        let hosts = hosts::host_configs(&base, addrs, &self.timeouts, &tls, &n.resolver)?;
        let settings = Settings {
            target_role: self.target_role,
            read_role: self.read_role,
            max_size: self.max_size,
            max_concurrent_connects: self.max_concurrent_connects,
            timeouts: self.timeouts,
            verify_idle_after: self.verify_idle_after,
            reconnect_backoff: self.reconnect_backoff.unwrap_or_else(default_backoff),
            retry_policy: match self.retry_policy {
                Some(p) => p,
                None => default_retry_policy()?,
            },
            budget: self.budget,
            rediscovery_interval: self.rediscovery_interval,
            heartbeat: self.heartbeat,
            heartbeat_timeout: self.heartbeat_timeout,
            login: self
                .credentials
                .map(|p| Login::new(p, self.timeouts.connect)),
            observe: self.observe.unwrap_or_else(|| Observe::new("postgres")),
            resolve_interval: n.interval,
            ages: Arc::new(crate::resolve::AgeLimit::new(n.max_age, n.seed)),
        };
        let mut health = health_defaults(&settings);
        if let Some(customize) = self.health {
            health = customize(health);
        }
        FailoverPool::start(hosts, settings, health, self.authority)
    }
}

/// The default heartbeat interval.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(200);
/// The default heartbeat timeout.
pub(crate) const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);

/// The tracker defaults documented above: with the heartbeat on, the tracker beats every host
/// that is up and bounds all its probes by the heartbeat timeout; off, by the probe timeout.
fn health_defaults(settings: &Settings) -> HealthTrackerBuilder<Arc<str>> {
    let health = HealthTracker::builder()
        .failure_threshold(2)
        .ejection_base(Duration::from_millis(500))
        .ejection_cap(Duration::from_secs(10))
        .probe_interval(Duration::from_millis(250));
    match settings.heartbeat {
        Some(interval) => health
            .heartbeat(interval)
            .probe_timeout(settings.heartbeat_timeout),
        None => health.probe_timeout(settings.timeouts.probe),
    }
}

#[cfg(test)]
#[path = "builder_tests.rs"]
mod tests;

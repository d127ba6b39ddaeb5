use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use super::pool::FailoverPool;
use super::role::TargetRole;
use crate::error::ConfigError;
use crate::health::HealthTrackerBuilder;
use crate::retry::{ExponentialBackoff, Jitter, MAX_DEADLINE, RetryPolicy};

/// The deadlines of every phase of getting and using a connection. Every phase has one by
/// default.
///
/// | phase | default | what it bounds |
/// |---|---|---|
/// | [`connect`](Self::connect) | 2 s | the TCP connect to one host |
/// | [`login`](Self::login) | 3 s | TCP connect, TLS and login to one host, together |
/// | [`acquire`](Self::acquire) | 5 s | one [`get`](FailoverPool::get): waiting for a slot, connecting, re-discovering, retrying |
/// | [`recycle`](Self::recycle) | 1 s | the check of an idle connection before it is handed out |
/// | [`probe`](Self::probe) | 2 s | asking one host for its role during re-discovery |
/// | [`query`](Self::query) | 10 s | each step of the runner ([`run`](FailoverPool::run), [`transaction`](FailoverPool::transaction)): `BEGIN`, the closure, `COMMIT` |
/// | [`tcp_user_timeout`](Self::tcp_user_timeout) | 5 s | unacknowledged data on a socket (Linux `TCP_USER_TIMEOUT`) |
/// | [`keepalive_idle`](Self::keepalive_idle) | 5 s | idle time before TCP keepalive probes start |
/// | [`keepalive_interval`](Self::keepalive_interval) | 1 s | time between keepalive probes |
/// | [`keepalive_retries`](Self::keepalive_retries) | 3 | unanswered probes before the socket is dropped |
///
/// With the defaults a black-holed host is detected within about 8 s by an idle connection
/// (keepalive) and within 5 s by a busy one (`tcp_user_timeout`), instead of the kernel's
/// 15 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connect to one host (default 2 s).
    pub connect: Duration,
    /// TCP connect, TLS and login to one host (default 3 s).
    pub login: Duration,
    /// One `get` from start to finish (default 5 s).
    pub acquire: Duration,
    /// The check of an idle connection before reuse (default 1 s).
    pub recycle: Duration,
    /// One role probe during re-discovery (default 2 s).
    pub probe: Duration,
    /// Each step of the runner: `BEGIN`, the caller's closure, `COMMIT` (default 10 s). Does not
    /// apply to connections used directly from `get`.
    pub query: Duration,
    /// `TCP_USER_TIMEOUT` on every socket (default 5 s).
    pub tcp_user_timeout: Duration,
    /// TCP keepalive idle time (default 5 s).
    pub keepalive_idle: Duration,
    /// TCP keepalive interval (default 1 s).
    pub keepalive_interval: Duration,
    /// TCP keepalive probe count (default 3).
    pub keepalive_retries: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(2),
            login: Duration::from_secs(3),
            acquire: Duration::from_secs(5),
            recycle: Duration::from_secs(1),
            probe: Duration::from_secs(2),
            query: Duration::from_secs(10),
            tcp_user_timeout: Duration::from_secs(5),
            keepalive_idle: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(1),
            keepalive_retries: 3,
        }
    }
}

/// One host of the pool: its display name (`host:port`) and the client configuration that
/// reaches it and only it.
pub(crate) struct HostConfig {
    pub(crate) name: Arc<str>,
    pub(crate) config: tokio_postgres::Config,
}

impl fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `tokio_postgres::Config`'s own `Debug` redacts the password; we print even less.
        f.debug_struct("HostConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Everything the pool was built with, validated.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) hosts: Vec<HostConfig>,
    pub(crate) target_role: TargetRole,
    pub(crate) read_role: TargetRole,
    pub(crate) max_size: usize,
    pub(crate) max_concurrent_connects: usize,
    pub(crate) timeouts: Timeouts,
    pub(crate) verify_idle_after: Option<Duration>,
    pub(crate) reconnect_backoff: ExponentialBackoff,
    pub(crate) runner_policy: RetryPolicy,
}

/// Tunes the pool's health tracker (see [`FailoverPoolBuilder::health`]).
pub(crate) type HealthCustomizer =
    Box<dyn FnOnce(HealthTrackerBuilder<Arc<str>>) -> HealthTrackerBuilder<Arc<str>> + Send>;

/// Builder of [`FailoverPool`]. Nothing is validated or connected until
/// [`build`](Self::build).
///
/// Hosts come from a libpq-style connection string (several hosts allowed, comma-separated,
/// `host=a,b port=5432,5433` or `postgresql://u@a:5432,b:5433/db`), from
/// [`hosts`](Self::hosts)/[`host`](Self::host), or both (the explicit list is appended).
/// `target_session_attrs` in the string is ignored: the pool does role selection itself.
///
/// Defaults: target role [`TargetRole::Primary`] for [`get`](FailoverPool::get),
/// [`TargetRole::PreferStandby`] for [`get_read`](FailoverPool::get_read), 16 connections per
/// role, 4 concurrent connects, the [`Timeouts`] defaults, idle connections older than 10 s
/// verified with a round trip before reuse, reconnect backoff 20 ms doubling to 250 ms with full
/// jitter, and a runner policy of 10 attempts within 15 s (backoff 20 ms doubling to 250 ms,
/// full jitter).
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
    runner_policy: Option<RetryPolicy>,
    health: Option<HealthCustomizer>,
}

impl fmt::Debug for FailoverPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password: never print it.
        f.debug_struct("FailoverPoolBuilder")
            .field("conn_str", &self.conn_str.as_ref().map(|_| "<redacted>"))
            .field("config", &self.config.as_ref().map(|_| "<redacted>"))
            .field("extra_hosts", &self.extra_hosts)
            .field("target_role", &self.target_role)
            .field("read_role", &self.read_role)
            .field("max_size", &self.max_size)
            .field("max_concurrent_connects", &self.max_concurrent_connects)
            .field("timeouts", &self.timeouts)
            .field("verify_idle_after", &self.verify_idle_after)
            .field("health", &self.health.is_some())
            .finish_non_exhaustive()
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
            runner_policy: None,
            health: None,
        }
    }
}

fn default_backoff() -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()
        .expect("constant backoff settings are valid")
}

impl FailoverPoolBuilder {
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

    /// The role [`get`](FailoverPool::get) hands out (default [`TargetRole::Primary`]).
    pub fn target_role(mut self, role: TargetRole) -> Self {
        self.target_role = role;
        self
    }

    /// The role [`get_read`](FailoverPool::get_read) hands out (default
    /// [`TargetRole::PreferStandby`]).
    pub fn read_role(mut self, role: TargetRole) -> Self {
        self.read_role = role;
        self
    }

    /// The most connections per role (default 16; at least 1).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// The most connects in flight at once, across roles (default 4; at least 1). Bounds the
    /// reconnect storm after a failover.
    pub fn max_concurrent_connects(mut self, n: usize) -> Self {
        self.max_concurrent_connects = n;
        self
    }

    /// All phase deadlines at once (default [`Timeouts::default`]).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The TCP connect deadline per host (default 2 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.timeouts.connect = t;
        self
    }

    /// The deadline for TCP connect, TLS and login to one host (default 3 s).
    pub fn login_timeout(mut self, t: Duration) -> Self {
        self.timeouts.login = t;
        self
    }

    /// The deadline of one [`get`](FailoverPool::get) (default 5 s). `get` never waits longer,
    /// even when every host is down.
    pub fn acquire_timeout(mut self, t: Duration) -> Self {
        self.timeouts.acquire = t;
        self
    }

    /// The deadline of the check of an idle connection (default 1 s).
    pub fn recycle_timeout(mut self, t: Duration) -> Self {
        self.timeouts.recycle = t;
        self
    }

    /// The deadline of one role probe (default 2 s).
    pub fn probe_timeout(mut self, t: Duration) -> Self {
        self.timeouts.probe = t;
        self
    }

    /// The deadline of each step of the runner (default 10 s).
    pub fn query_timeout(mut self, t: Duration) -> Self {
        self.timeouts.query = t;
        self
    }

    /// Verify idle connections with a round trip (an empty query) when they have been idle
    /// longer than this (default 10 s); `None` never does. Connections used more recently are
    /// checked without a round trip: closed socket, generation, role reported by the server,
    /// host health.
    pub fn verify_idle_after(mut self, after: Option<Duration>) -> Self {
        self.verify_idle_after = after;
        self
    }

    /// The backoff between reconnect attempts inside one `get` (default 20 ms doubling to
    /// 250 ms, full jitter).
    pub fn reconnect_backoff(mut self, backoff: ExponentialBackoff) -> Self {
        self.reconnect_backoff = Some(backoff);
        self
    }

    /// The retry policy of [`FailoverPool::run`] and
    /// [`FailoverPool::transaction`] (default 10 attempts within 15 s, backoff 20 ms
    /// doubling to 250 ms, full jitter).
    pub fn runner_policy(mut self, policy: RetryPolicy) -> Self {
        self.runner_policy = Some(policy);
        self
    }

    /// Tunes the health tracker of the hosts, e.g.
    /// `.health(|h| h.failure_threshold(3).ejection_cap(Duration::from_secs(30)))`.
    ///
    /// Defaults for a pool: a host is down after **2** transient failures in a row (calls,
    /// connects or probes), ejected **500 ms** (× 2 per consecutive ejection, ≤ **10 s**), back
    /// up after 2 probe successes; down hosts are probed every **250 ms**, each probe bounded by
    /// the [probe timeout](Timeouts::probe); throttling never marks a host down. The endpoints
    /// (one per host, id `host:port`) and the role probe are set by the pool: endpoints added
    /// here are not hosts of the pool. Settings you do not touch keep the pool's defaults (so a
    /// base ejection above 10 s needs a larger cap too). Invalid values are refused by
    /// [`build`](Self::build) with the tracker's [`ConfigError`].
    pub fn health(
        mut self,
        customize: impl FnOnce(HealthTrackerBuilder<Arc<str>>) -> HealthTrackerBuilder<Arc<str>>
        + Send
        + 'static,
    ) -> Self {
        self.health = Some(Box::new(customize));
        self
    }

    /// Validates the settings and builds the pool. Connects to nothing: the first
    /// [`get`](FailoverPool::get) discovers the roles of the hosts. Must be called inside a
    /// Tokio runtime: it starts the health tracker's background probe, which brings ejected
    /// hosts back.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when: the connection string does not parse
    /// (`connection_string`); there is no host (`hosts`); a Unix-socket host is given (`hosts`:
    /// only TCP hosts are supported); `sslmode=require` is asked for (`sslmode`: TLS is not
    /// supported yet); the number of ports matches neither one nor the number of hosts
    /// (`port`); `max_size` or `max_concurrent_connects` is zero; a timeout is zero or longer
    /// than a day; the login timeout is shorter than the connect timeout; a host is listed twice
    /// (`hosts`); a [`health`](Self::health) setting is invalid (the tracker's field name); no
    /// Tokio runtime is running (`probe`).
    pub fn build(self) -> Result<FailoverPool, ConfigError> {
        let base = match (self.conn_str, self.config) {
            (Some(s), _) => s.parse::<tokio_postgres::Config>().map_err(|e| {
                ConfigError::new(
                    "connection_string",
                    format!("does not parse: {}", describe_parse_error(&e)),
                )
            })?,
            (None, Some(c)) => c,
            (None, None) => tokio_postgres::Config::new(),
        };
        if base.get_ssl_mode() == SslMode::Require {
            return Err(ConfigError::new(
                "sslmode",
                "`require` is not supported: the pool connects without TLS",
            ));
        }

        let mut addrs: Vec<(String, u16)> = Vec::new();
        let ports = base.get_ports();
        let n = base.get_hosts().len().max(base.get_hostaddrs().len());
        if ports.len() > 1 && ports.len() != n {
            return Err(ConfigError::new(
                "port",
                format!("{} ports for {n} hosts", ports.len()),
            ));
        }
        for i in 0..n {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            let host = match (base.get_hostaddrs().get(i), base.get_hosts().get(i)) {
                (Some(addr), _) => addr.to_string(),
                (None, Some(Host::Tcp(h))) => h.clone(),
                (None, Some(_)) => {
                    return Err(ConfigError::new(
                        "hosts",
                        "Unix-socket hosts are not supported; give TCP hosts",
                    ));
                }
                (None, None) => unreachable!("i is below the larger of both lengths"),
            };
            addrs.push((host, port));
        }
        addrs.extend(self.extra_hosts);
        if addrs.is_empty() {
            return Err(ConfigError::new("hosts", "no host given"));
        }
        for (h, _) in &addrs {
            if h.is_empty() {
                return Err(ConfigError::new("hosts", "empty host name"));
            }
        }
        if self.max_size == 0 {
            return Err(ConfigError::new("max_size", "must be at least 1"));
        }
        if self.max_concurrent_connects == 0 {
            return Err(ConfigError::new(
                "max_concurrent_connects",
                "must be at least 1",
            ));
        }
        let t = self.timeouts;
        for (field, d) in [
            ("connect_timeout", t.connect),
            ("login_timeout", t.login),
            ("acquire_timeout", t.acquire),
            ("recycle_timeout", t.recycle),
            ("probe_timeout", t.probe),
            ("query_timeout", t.query),
            ("tcp_user_timeout", t.tcp_user_timeout),
            ("keepalive_idle", t.keepalive_idle),
            ("keepalive_interval", t.keepalive_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be above zero"));
            }
            if d > MAX_DEADLINE {
                return Err(ConfigError::new(
                    field,
                    format!("{d:?} is longer than the limit of {MAX_DEADLINE:?}"),
                ));
            }
        }
        if t.login < t.connect {
            return Err(ConfigError::new(
                "login_timeout",
                format!(
                    "{:?} is shorter than the connect timeout of {:?}",
                    t.login, t.connect
                ),
            ));
        }
        if let Some(d) = self.verify_idle_after
            && d.is_zero()
        {
            return Err(ConfigError::new(
                "verify_idle_after",
                "must be above zero (use `None` to never verify)",
            ));
        }

        let hosts = addrs
            .into_iter()
            .map(|(host, port)| {
                let mut c = tokio_postgres::Config::new();
                if let Some(u) = base.get_user() {
                    c.user(u);
                }
                if let Some(p) = base.get_password() {
                    c.password(p);
                }
                if let Some(d) = base.get_dbname() {
                    c.dbname(d);
                }
                if let Some(o) = base.get_options() {
                    c.options(o);
                }
                match base.get_application_name() {
                    Some(a) => c.application_name(a),
                    None => c.application_name("switchover"),
                };
                c.ssl_mode(SslMode::Disable);
                c.channel_binding(base.get_channel_binding());
                c.host(&host);
                c.port(port);
                c.connect_timeout(t.connect);
                c.tcp_user_timeout(t.tcp_user_timeout);
                c.keepalives(true);
                c.keepalives_idle(t.keepalive_idle);
                c.keepalives_interval(t.keepalive_interval);
                c.keepalives_retries(t.keepalive_retries);
                let name: Arc<str> = if host.contains(':') {
                    format!("[{host}]:{port}").into()
                } else {
                    format!("{host}:{port}").into()
                };
                HostConfig { name, config: c }
            })
            .collect();

        let settings = Settings {
            hosts,
            target_role: self.target_role,
            read_role: self.read_role,
            max_size: self.max_size,
            max_concurrent_connects: self.max_concurrent_connects,
            timeouts: t,
            verify_idle_after: self.verify_idle_after,
            reconnect_backoff: self.reconnect_backoff.unwrap_or_else(default_backoff),
            runner_policy: match self.runner_policy {
                Some(p) => p,
                None => RetryPolicy::builder()
                    .max_attempts(10)
                    .deadline(Duration::from_secs(15))
                    .backoff(default_backoff())
                    .build()?,
            },
        };
        FailoverPool::from_settings(settings, self.health)
    }
}

/// The parse error's message, without any part of the input (which may hold a password).
fn describe_parse_error(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let inner = e.source().map(ToString::to_string).unwrap_or_default();
    if inner.starts_with("unknown option")
        || inner.starts_with("invalid value for option")
        || inner == "unexpected EOF"
        || inner == "unterminated parameter"
    {
        inner
    } else {
        "malformed syntax".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(b: FailoverPoolBuilder) -> &'static str {
        b.build().unwrap_err().field()
    }

    #[tokio::test]
    async fn bad_input_is_refused_at_build() {
        assert_eq!(field(FailoverPool::builder()), "hosts");
        assert_eq!(
            field(FailoverPool::builder().connection_string("user=postgres")),
            "hosts"
        );
        assert_eq!(
            field(FailoverPool::builder().connection_string("host=a port=notaport")),
            "connection_string"
        );
        assert_eq!(
            field(FailoverPool::builder().connection_string("host=a bogus=1")),
            "connection_string"
        );
        assert_eq!(
            field(FailoverPool::builder().host("a", 1).max_size(0)),
            "max_size"
        );
        assert_eq!(
            field(
                FailoverPool::builder()
                    .host("a", 1)
                    .max_concurrent_connects(0)
            ),
            "max_concurrent_connects"
        );
        assert_eq!(
            field(
                FailoverPool::builder()
                    .host("a", 1)
                    .acquire_timeout(Duration::ZERO)
            ),
            "acquire_timeout"
        );
        assert_eq!(
            field(
                FailoverPool::builder()
                    .host("a", 1)
                    .connect_timeout(Duration::from_secs(5))
                    .login_timeout(Duration::from_secs(1))
            ),
            "login_timeout"
        );
        assert_eq!(
            field(FailoverPool::builder().connection_string("host=a,b port=1,2,3")),
            "port"
        );
        assert_eq!(
            field(FailoverPool::builder().connection_string("host=a sslmode=require")),
            "sslmode"
        );
    }

    #[tokio::test]
    async fn parse_errors_never_echo_the_input() {
        let secret = "hunter2-secret";
        for s in [
            format!("host=a password='{secret}"),
            format!("host=a password={secret} port=x{secret}"),
            format!("postgresql://u:{secret}@a:notaport/db"),
            format!("host=a password{secret}"),
        ] {
            let err = FailoverPool::builder()
                .connection_string(s)
                .build()
                .unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }

    #[tokio::test]
    async fn health_settings_default_and_can_be_tuned() {
        use crate::Classification;
        use crate::health::HealthState;

        let fail = |pool: &FailoverPool, n: usize| {
            let ep = pool.tracker().endpoint(&Arc::from("a:1")).unwrap();
            for _ in 0..n {
                ep.record_failure(Classification::transient().not_executed());
            }
            ep.state()
        };
        // The default: a host is down after 2 failures in a row.
        let pool = FailoverPool::builder().host("a", 1).build().unwrap();
        assert_eq!(fail(&pool, 1), HealthState::Up);
        assert_eq!(fail(&pool, 1), HealthState::Down);
        let ev = pool.tracker().endpoint(&Arc::from("a:1")).unwrap().stats();
        assert_eq!(
            ev.down_until.map(|u| u - ev.since),
            Some(Duration::from_millis(500))
        );

        // Tuned: 5 failures, a 2 s first ejection.
        let pool = FailoverPool::builder()
            .host("a", 1)
            .health(|h| h.failure_threshold(5).ejection_base(Duration::from_secs(2)))
            .build()
            .unwrap();
        assert_eq!(fail(&pool, 4), HealthState::Up);
        assert_eq!(fail(&pool, 1), HealthState::Down);
        let ev = pool.tracker().endpoint(&Arc::from("a:1")).unwrap().stats();
        assert_eq!(
            ev.down_until.map(|u| u - ev.since),
            Some(Duration::from_secs(2))
        );

        // Invalid values are refused at build, naming the tracker's field.
        assert_eq!(
            field(
                FailoverPool::builder()
                    .host("a", 1)
                    .health(|h| h.failure_threshold(0))
            ),
            "failure_threshold"
        );
        let dbg = format!("{:?}", FailoverPool::builder().health(|h| h));
        assert!(dbg.contains("health: true"), "{dbg}");
    }

    #[tokio::test]
    async fn multi_host_strings_give_one_host_each() {
        let pool = FailoverPool::builder()
            .connection_string("host=10.0.0.1,db2 port=5432,5433 user=app password=hunter2")
            .host("db3", 6000)
            .build()
            .unwrap();
        assert_eq!(pool.hosts(), ["10.0.0.1:5432", "db2:5433", "db3:6000"]);
        let dbg = format!("{pool:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}

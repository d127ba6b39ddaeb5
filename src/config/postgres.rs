//! Config of a Postgres pool: [`PostgresConfig`], built into a
//! [`FailoverPoolBuilder`](crate::postgres::FailoverPoolBuilder).

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::health::HealthConfig;
use super::retry::{BackoffConfig, BudgetConfig, RetryConfig};
use super::section::Section;
use crate::auth::Secret;
use crate::error::ConfigError;
use crate::postgres::{FailoverPool, FailoverPoolBuilder, SslMode, TargetRole, Timeouts};
use crate::retry::{ExponentialBackoff, Jitter, MAX_DEADLINE, RetryPolicy};

/// A Postgres [`FailoverPool`] from a config file. Every field is optional and keeps the
/// [`FailoverPoolBuilder`]'s default (see its table), but the pool needs a host: in
/// `connection_string`, in `hosts`, or both (the list is appended). Errors name the value by
/// its path (`postgres.pool.max_size`, `postgres.timeouts.login`, `postgres.hosts[1]`).
///
/// ```toml
/// [postgres]
/// hosts = ["db1.internal:5432", "db2.internal:5432", "/run/postgresql"]
/// user = "app"
/// password = "…"                       # never shown by Debug or errors
/// dbname = "orders"
/// sslmode = "verify-full"              # disable | prefer | require | verify-ca | verify-full
/// target_role = "primary"              # primary | prefer_standby | standby | any | prefer_primary
/// read_role = "prefer_standby"
/// rediscovery_interval = "50ms"
/// heartbeat = "200ms"                  # or "off"
/// heartbeat_timeout = "300ms"
/// resolve_interval = "5s"              # host names looked up again
/// max_connection_age = "30m"           # or "off"
/// # or all of it, libpq style (may hold the password too; never shown):
/// # connection_string = "host=db1,db2 user=app dbname=orders sslmode=verify-full"
///
/// [postgres.pool]
/// max_size = 16
/// max_concurrent_connects = 4
/// verify_idle_after = "10s"            # or "off"
/// reconnect_backoff = { base = "20ms", cap = "250ms" }
///
/// [postgres.timeouts]
/// connect = "2s"
/// login = "3s"
/// acquire = "5s"
/// query = "10s"
///
/// [postgres.retry]                     # over the pool's own default policy
/// max_attempts = 6
///
/// [postgres.health]
/// failure_threshold = 3
///
/// [postgres.tls]                       # feature `tls`: the roots and client certificate
/// ca_file = "/etc/ssl/rds-global-bundle.pem"
/// ```
///
/// ```no_run
/// use serde::Deserialize;
/// use switchover::config::{self, ConfigPath, PostgresConfig};
///
/// #[derive(Deserialize)]
/// struct Service {
///     postgres: PostgresConfig,
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let text = std::fs::read_to_string("service.toml")?;
/// let service: Service = config::deserialize(toml::Deserializer::parse(&text)?)?;
/// // In a Tokio runtime: the pool starts its discovery at once.
/// let pool = service.postgres.build_pool(&ConfigPath::new("postgres"))?;
/// # let _ = pool; Ok(()) }
/// ```
///
/// `user`, `password` and `dbname` are added to the connection string (as `key='value'`
/// pairs, or as query parameters of a `postgresql://` URL), where they replace the string's
/// own. A credential provider is code: set it on the builder [`build_at`](Section::build_at)
/// returns.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// See [`FailoverPoolBuilder::connection_string`]. Held as a [`Secret`]: it may carry a
    /// password.
    #[serde(
        with = "super::secret::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connection_string: Option<Secret>,
    /// More hosts, after the connection string's ([`FailoverPoolBuilder::hosts`]):
    /// `"host:port"`, `"host"` (port 5432), `"[::1]:5433"`, or a Unix-socket directory
    /// (`"/run/postgresql"`, `"/run/postgresql:5433"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The user (libpq's `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The password (libpq's `password`). Written back in clear by `Serialize`.
    #[serde(
        with = "super::secret::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub password: Option<Secret>,
    /// The database (libpq's `dbname`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// See [`FailoverPoolBuilder::ssl_mode`], spelt as libpq does (`"verify-full"`).
    #[serde(with = "ssl_mode", skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
    /// See [`FailoverPoolBuilder::target_role`].
    #[serde(with = "role", skip_serializing_if = "Option::is_none")]
    pub target_role: Option<TargetRole>,
    /// See [`FailoverPoolBuilder::read_role`].
    #[serde(with = "role", skip_serializing_if = "Option::is_none")]
    pub read_role: Option<TargetRole>,
    /// The pool's sizes and connection checks.
    pub pool: PoolConfig,
    /// See [`FailoverPoolBuilder::timeouts`].
    pub timeouts: PostgresTimeoutsConfig,
    /// See [`FailoverPoolBuilder::rediscovery_interval`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub rediscovery_interval: Option<Duration>,
    /// See [`FailoverPoolBuilder::heartbeat`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<Option<Duration>>,
    /// See [`FailoverPoolBuilder::heartbeat_timeout`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat_timeout: Option<Duration>,
    /// See [`FailoverPoolBuilder::resolve_interval`]: how often host names are looked up again.
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolve_interval: Option<Duration>,
    /// See [`FailoverPoolBuilder::max_connection_age`]: a duration, or `"off"`.
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_connection_age: Option<Option<Duration>>,
    /// See [`FailoverPoolBuilder::retry_policy`]; built over the pool's default policy (10
    /// attempts within 15 s, backoff 20 ms doubling to 250 ms, full jitter).
    pub retry: RetryConfig,
    /// See [`FailoverPoolBuilder::budget`]; left out, no budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetConfig>,
    /// See [`FailoverPoolBuilder::health`]; applied over the pool's own health defaults.
    pub health: HealthConfig,
    /// See [`FailoverPoolBuilder::tls`]: roots, client certificate, server name. The
    /// verification level follows `sslmode`, so `verification` is refused here.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::TlsConfig>,
}

/// The sizes and connection checks of a Postgres pool from a config file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// See [`FailoverPoolBuilder::max_size`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<usize>,
    /// See [`FailoverPoolBuilder::max_concurrent_connects`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_connects: Option<usize>,
    /// See [`FailoverPoolBuilder::verify_idle_after`]: a duration, or `"off"` (never).
    #[serde(
        with = "super::duration::switch",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_idle_after: Option<Option<Duration>>,
    /// See [`FailoverPoolBuilder::reconnect_backoff`]; over the pool's default (20 ms doubling
    /// to 250 ms, full jitter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_backoff: Option<BackoffConfig>,
}

/// [`Timeouts`] of a Postgres pool from a config file; every field defaults to
/// [`Timeouts::default`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresTimeoutsConfig {
    /// See [`Timeouts::connect`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect: Option<Duration>,
    /// See [`Timeouts::login`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub login: Option<Duration>,
    /// See [`Timeouts::acquire`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub acquire: Option<Duration>,
    /// See [`Timeouts::recycle`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub recycle: Option<Duration>,
    /// See [`Timeouts::probe`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub probe: Option<Duration>,
    /// See [`Timeouts::query`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub query: Option<Duration>,
    /// See [`Timeouts::tcp_user_timeout`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub tcp_user_timeout: Option<Duration>,
    /// See [`Timeouts::keepalive_idle`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub keepalive_idle: Option<Duration>,
    /// See [`Timeouts::keepalive_interval`].
    #[serde(
        with = "super::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub keepalive_interval: Option<Duration>,
    /// See [`Timeouts::keepalive_retries`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_retries: Option<u32>,
}

impl PostgresTimeoutsConfig {
    /// The timeouts this config says, over [`Timeouts::default`].
    pub fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::default();
        let set = |slot: &mut Duration, v: Option<Duration>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut t.connect, self.connect);
        set(&mut t.login, self.login);
        set(&mut t.acquire, self.acquire);
        set(&mut t.recycle, self.recycle);
        set(&mut t.probe, self.probe);
        set(&mut t.query, self.query);
        set(&mut t.tcp_user_timeout, self.tcp_user_timeout);
        set(&mut t.keepalive_idle, self.keepalive_idle);
        set(&mut t.keepalive_interval, self.keepalive_interval);
        if let Some(n) = self.keepalive_retries {
            t.keepalive_retries = n;
        }
        t
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PostgresConfig");
        d.field("connection_string", &self.connection_string)
            .field("hosts", &self.hosts)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("target_role", &self.target_role)
            .field("read_role", &self.read_role)
            .field("pool", &self.pool)
            .field("timeouts", &self.timeouts)
            .field("rediscovery_interval", &self.rediscovery_interval)
            .field("heartbeat", &self.heartbeat)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("resolve_interval", &self.resolve_interval)
            .field("max_connection_age", &self.max_connection_age)
            .field("retry", &self.retry)
            .field("budget", &self.budget)
            .field("health", &self.health);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.finish()
    }
}

/// The pool's default backoff (the builder's table): 20 ms doubling to 250 ms, full jitter.
fn default_backoff() -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(250))
        .jitter(Jitter::Full)
        .build()
        .unwrap_or_default()
}

/// The pool's default retry policy (the builder's table): 10 attempts within 15 s over
/// [`default_backoff`].
fn default_retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(10)
        .deadline(Duration::from_secs(15))
        .backoff(default_backoff())
        .build()
        .unwrap_or_default()
}

impl PostgresConfig {
    /// [`build_at`](Section::build_at), then [`FailoverPoolBuilder::build`], naming what the
    /// builder refuses by its path here (see [`rejected`](Self::rejected)). Must be called
    /// inside a Tokio runtime, as `build`.
    ///
    /// # Errors
    ///
    /// An [`InvalidConfig`] naming the first rejected value.
    pub fn build_pool(&self, at: &ConfigPath) -> Result<FailoverPool, InvalidConfig> {
        self.build_at(at)?
            .build()
            .map_err(|e| self.rejected(at, &e))
    }

    /// A [`ConfigError`] of [`FailoverPoolBuilder::build`] for the builder this config made,
    /// named by the path of the value in this config: `max_size` is `postgres.pool.max_size`,
    /// `login_timeout` is `postgres.timeouts.login`, a tracker field is
    /// `postgres.health.<field>`, a bundle that cannot be read is `postgres.tls.ca_file` (or
    /// `postgres.connection_string` when the string named it).
    pub fn rejected(&self, at: &ConfigPath, error: &ConfigError) -> InvalidConfig {
        let pool = || at.join("pool").rejected(error.clone());
        let timeouts = |field: &str| at.join("timeouts").invalid(field, error.reason());
        match error.field() {
            "max_size" | "max_concurrent_connects" | "verify_idle_after" => pool(),
            f @ ("heartbeat" | "heartbeat_timeout") => at.invalid(f, error.reason()),
            "probe_timeout" if self.health.probe_timeout.is_some() => {
                at.join("health").rejected(error.clone())
            }
            f @ ("tcp_user_timeout" | "keepalive_idle" | "keepalive_interval") => timeouts(f),
            f if f.ends_with("_timeout") => timeouts(f.trim_end_matches("_timeout")),
            f if super::fields::HEALTH.contains(&f) => at.join("health").rejected(error.clone()),
            "port" => at.invalid("connection_string", error.reason()),
            "sslmode" if self.sslmode.is_none() => at.invalid("connection_string", error.reason()),
            #[cfg(feature = "tls")]
            f @ ("sslrootcert" | "sslcert" | "sslkey") if !self.string_names(f) => {
                match (&self.tls, f) {
                    (Some(_), "sslrootcert") => at.join("tls").invalid("ca_file", error.reason()),
                    (Some(_), "sslcert") => {
                        at.join("tls").invalid("client_cert_file", error.reason())
                    }
                    (Some(_), _) => at.join("tls").invalid("client_key_file", error.reason()),
                    // `verify-ca` / `verify-full` with no roots anywhere.
                    (None, _) if self.sslmode.is_some() => at.invalid("sslmode", error.reason()),
                    (None, _) => at.invalid("connection_string", error.reason()),
                }
            }
            #[cfg(feature = "tls")]
            "roots" | "client_cert" | "client_key" | "server_name" => match &self.tls {
                Some(tls) => tls.rejected(&at.join("tls"), error),
                None => at.rejected(error.clone()),
            },
            "sslrootcert" | "sslcert" | "sslkey" | "sslcrl" | "sslcrldir" | "sslpassword"
            | "gssencmode" | "krbsrvname" => at.invalid("connection_string", error.reason()),
            "probe" => at.invalid("", error.reason()),
            _ => at.rejected(error.clone()),
        }
    }

    /// `true` when the connection string sets `key` (so an error about it is the string's).
    #[cfg(feature = "tls")]
    fn string_names(&self, key: &str) -> bool {
        self.connection_string
            .as_ref()
            .is_some_and(|s| s.expose().contains(key))
    }

    /// The connection string with `user`, `password` and `dbname` added, if there is anything
    /// to say.
    fn conn_str(&self) -> Option<String> {
        let extra: Vec<(&str, &str)> = [
            ("user", self.user.as_deref()),
            ("password", self.password.as_ref().map(Secret::expose)),
            ("dbname", self.dbname.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let base = self.connection_string.as_ref().map(|s| s.expose().trim());
        if extra.is_empty() {
            return base.map(str::to_owned);
        }
        let mut out = base.unwrap_or_default().to_owned();
        let url = out.starts_with("postgres://") || out.starts_with("postgresql://");
        for (k, v) in extra {
            if url {
                out.push(if out.contains('?') { '&' } else { '?' });
                let _ = write!(out, "{k}={}", percent_encode(v));
            } else {
                if !out.is_empty() {
                    out.push(' ');
                }
                let _ = write!(out, "{k}='");
                for c in v.chars() {
                    if c == '\'' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('\'');
            }
        }
        Some(out)
    }

    /// The `hosts` entries as `(host, port)`.
    fn host_list(&self, at: &ConfigPath) -> Result<Vec<(String, u16)>, InvalidConfig> {
        let mut out = Vec::with_capacity(self.hosts.len());
        for (i, raw) in self.hosts.iter().enumerate() {
            let bad = |why: &str| at.invalid(&format!("hosts[{i}]"), format!("`{raw}`: {why}"));
            let raw = raw.trim();
            let (host, port) = if let Some(v6) = raw.strip_prefix('[') {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| bad("expected `:port`"))?,
                        ),
                    ),
                }
            } else {
                match raw.rsplit_once(':') {
                    Some((h, _)) if h.contains(':') => {
                        return Err(bad("an IPv6 address needs brackets (`[::1]:5432`)"));
                    }
                    Some((h, p)) => (h, Some(p)),
                    None => (raw, None),
                }
            };
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            let port = match port {
                None => 5432,
                Some(p) => match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad("the port is not a number from 1 to 65535")),
                },
            };
            out.push((host.to_owned(), port));
        }
        Ok(out)
    }
}

fn percent_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

impl Section for PostgresConfig {
    type Output = FailoverPoolBuilder;

    /// Checks what can be checked without the connection string's parser: the `hosts`
    /// entries, that there is a host at all, the pool sizes, timeouts, intervals, the retry
    /// policy over the pool's default, the reconnect backoff, the budget, the health values
    /// against the tracker's own rules and the TLS files; returns the builder. What only
    /// [`FailoverPoolBuilder::build`] checks (the connection string, `sslmode` against the
    /// roots, health values against the pool's own health defaults) is named by
    /// [`build_pool`](PostgresConfig::build_pool).
    fn build_at(&self, at: &ConfigPath) -> Result<FailoverPoolBuilder, InvalidConfig> {
        let hosts = self.host_list(at)?;
        if hosts.is_empty() && self.connection_string.is_none() {
            return Err(at.invalid(
                "hosts",
                "no host given (give `hosts` or a `connection_string`)",
            ));
        }
        let mut b = FailoverPool::builder();
        if let Some(s) = self.conn_str() {
            b = b.connection_string(s);
        }
        b = b.hosts(hosts);
        if let Some(mode) = self.sslmode {
            b = b.ssl_mode(mode);
        }
        if let Some(r) = self.target_role {
            b = b.target_role(r);
        }
        if let Some(r) = self.read_role {
            b = b.read_role(r);
        }
        let pool = at.join("pool");
        for (field, n) in [
            ("max_size", self.pool.max_size),
            ("max_concurrent_connects", self.pool.max_concurrent_connects),
        ] {
            if n == Some(0) {
                return Err(pool.invalid(field, "must be at least 1"));
            }
        }
        if let Some(n) = self.pool.max_size {
            b = b.max_size(n);
        }
        if let Some(n) = self.pool.max_concurrent_connects {
            b = b.max_concurrent_connects(n);
        }
        if let Some(v) = self.pool.verify_idle_after {
            if v.is_some_and(|d| d.is_zero()) {
                return Err(pool.invalid(
                    "verify_idle_after",
                    "must be above zero (write \"off\" to never verify)",
                ));
            }
            b = b.verify_idle_after(v);
        }
        if let Some(backoff) = &self.pool.reconnect_backoff {
            b = b.reconnect_backoff(
                backoff.build_from(&default_backoff(), &pool.join("reconnect_backoff"))?,
            );
        }
        if self.timeouts != PostgresTimeoutsConfig::default() {
            let timeouts = self.timeouts.timeouts();
            timeouts.validate().map_err(|e| self.rejected(at, &e))?;
            b = b.timeouts(timeouts);
        }
        if let Some(d) = self.rediscovery_interval {
            if d.is_zero() || d > MAX_DEADLINE {
                return Err(at.invalid(
                    "rediscovery_interval",
                    "must be above zero and at most a day",
                ));
            }
            b = b.rediscovery_interval(d);
        }
        for (field, d) in [
            ("heartbeat", self.heartbeat.flatten()),
            ("heartbeat_timeout", self.heartbeat_timeout),
        ] {
            if d.is_some_and(|d| d.is_zero() || d > MAX_DEADLINE) {
                return Err(at.invalid(
                    field,
                    "must be above zero and at most a day (heartbeat: or \"off\")",
                ));
            }
        }
        super::connections::check(at, self.resolve_interval, self.max_connection_age)?;
        if let Some(d) = self.resolve_interval {
            b = b.resolve_interval(d);
        }
        if let Some(age) = self.max_connection_age {
            b = b.max_connection_age(age);
        }
        if let Some(h) = self.heartbeat {
            b = b.heartbeat(h);
        }
        if let Some(t) = self.heartbeat_timeout {
            b = b.heartbeat_timeout(t);
        }
        if self.retry != RetryConfig::default() {
            b = b.retry_policy(
                self.retry
                    .build_from(&default_retry_policy(), &at.join("retry"))?,
            );
        }
        if let Some(budget) = &self.budget {
            b = b.budget(budget.build_at(&at.join("budget"))?);
        }
        if self.health != HealthConfig::default() {
            let settings = self.health.build_at(&at.join("health"))?;
            b = b.health(move |h| settings.apply(h));
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let here = at.join("tls");
            if tls.verification.is_some() {
                return Err(here.invalid(
                    "verification",
                    "the `sslmode` decides the verification level of a Postgres pool",
                ));
            }
            b = b.tls(tls.build_at(&here)?);
        }
        Ok(b)
    }
}

/// [`SslMode`] as libpq spells it.
mod ssl_mode {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::postgres::SslMode;

    pub(super) fn serialize<S: Serializer>(m: &Option<SslMode>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(m.as_str()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SslMode>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse::<SslMode>()
            .map(Some)
            .map_err(|e| de::Error::custom(e.reason()))
    }
}

/// [`TargetRole`] by name.
mod role {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::postgres::TargetRole;

    const NAMES: [(&str, TargetRole); 5] = [
        ("primary", TargetRole::Primary),
        ("prefer_standby", TargetRole::PreferStandby),
        ("standby", TargetRole::Standby),
        ("any", TargetRole::Any),
        ("prefer_primary", TargetRole::PreferPrimary),
    ];

    pub(super) fn serialize<S: Serializer>(
        r: &Option<TargetRole>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match NAMES.iter().find(|(_, v)| Some(*v) == *r) {
            Some((name, _)) => s.serialize_str(name),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TargetRole>, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, r)) => Ok(Some(*r)),
            None => Err(de::Error::unknown_variant(
                &name,
                &[
                    "primary",
                    "prefer_standby",
                    "standby",
                    "any",
                    "prefer_primary",
                ],
            )),
        }
    }
}

#[cfg(test)]
#[path = "postgres_tests.rs"]
mod tests;

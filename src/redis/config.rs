//! Node addresses, credentials, timeouts and the pool builder's settings.

use std::fmt;
use std::time::Duration;

use super::connect::Tls;
use super::login::Login;
use crate::auth::Secret;
use crate::error::ConfigError;

/// One Redis node or sentinel: `host:port`, or the path of a Unix socket.
///
/// Parsed from `host:port`, `[ipv6]:port`, `redis://[user:password@]host:port[/]`,
/// `rediss://...` (the same over TLS, see [`SplitPoolBuilder::tls`](super::SplitPoolBuilder::tls))
/// or `unix:///path/to/redis.sock`; credentials in a URL are taken out (see
/// [`SplitPoolBuilder::password`](super::SplitPoolBuilder::password)) and never shown.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    /// The host, or the socket's path for a Unix socket.
    host: String,
    /// 0 for a Unix socket.
    port: u16,
    unix: bool,
}

/// What an address string says besides the address: credentials in a `redis://user:password@`
/// URL, and whether its scheme asks for TLS (`rediss://`).
#[derive(Clone, Default)]
pub(crate) struct UrlCredentials {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Secret>,
    /// `rediss://`.
    pub(crate) tls: bool,
    /// An explicit `redis://`.
    pub(crate) plain: bool,
}

impl UrlCredentials {
    /// `true` when the address said `redis://`: plaintext, whatever the pool's TLS.
    pub(crate) fn plaintext(&self) -> bool {
        self.plain
    }
}

impl NodeAddr {
    /// An address from its parts.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an empty host or port 0.
    pub fn new(host: impl Into<String>, port: u16) -> Result<Self, ConfigError> {
        let host = host.into();
        if host.is_empty() {
            return Err(ConfigError::new("nodes", "empty host"));
        }
        if port == 0 {
            return Err(ConfigError::new("nodes", format!("port 0 for host {host}")));
        }
        Ok(NodeAddr {
            host,
            port,
            unix: false,
        })
    }

    /// Parses `host:port`, `[ipv6]:port`, `redis://[user:password@]host:port[/]`,
    /// `rediss://[user:password@]host:port[/]` or `unix:///path/to/redis.sock`.
    ///
    /// ```
    /// use switchover::redis::NodeAddr;
    /// let a = NodeAddr::parse("redis://10.0.0.7:6380/").unwrap();
    /// assert_eq!((a.host(), a.port()), ("10.0.0.7", 6380));
    /// assert!(NodeAddr::parse("10.0.0.7").is_err());
    /// let s = NodeAddr::parse("unix:///run/redis/redis.sock").unwrap();
    /// assert!(s.is_unix());
    /// assert_eq!(s.to_string(), "unix:/run/redis/redis.sock");
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `nodes`) naming the address, with any password blanked out.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        Self::parse_with_credentials(s, "nodes").map(|(a, _)| a)
    }

    pub(crate) fn parse_with_credentials(
        s: &str,
        field: &'static str,
    ) -> Result<(Self, UrlCredentials), ConfigError> {
        let mut creds = UrlCredentials::default();
        let mut rest = s.trim();
        let shown = redact(rest);
        let bad = |why: &str| ConfigError::new(field, format!("`{shown}`: {why}"));
        if let Some(path) = rest
            .strip_prefix("unix://")
            .or_else(|| rest.strip_prefix("unix:"))
        {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad(
                    "a Unix socket needs an absolute path (`unix:///path/to/redis.sock`)",
                ));
            }
            if path.contains(['?', '#']) {
                return Err(bad(
                    "a Unix socket address takes no query (set the database with `db`)",
                ));
            }
            let addr = NodeAddr {
                host: path.to_owned(),
                port: 0,
                unix: true,
            };
            return Ok((addr, creds));
        }
        if let Some((scheme, after)) = rest.split_once("://") {
            if scheme.eq_ignore_ascii_case("rediss") {
                creds.tls = true;
            } else if scheme.eq_ignore_ascii_case("redis") {
                creds.plain = true;
            } else {
                return Err(bad(
                    "only `redis://`, `rediss://` and `unix://` addresses are supported",
                ));
            }
            rest = after.trim_end_matches('/');
            if let Some((userinfo, host)) = rest.rsplit_once('@') {
                match userinfo.split_once(':') {
                    Some((user, pass)) => {
                        if !user.is_empty() {
                            creds.username = Some(user.to_owned());
                        }
                        creds.password = Some(Secret::new(pass));
                    }
                    None if !userinfo.is_empty() => creds.username = Some(userinfo.to_owned()),
                    None => {}
                }
                rest = host;
            }
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing `:port`"))?;
            (host, port)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| bad("missing `:port`"))?
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        if host.contains('@') {
            // `user:password@host:port` without a scheme: never keep it as a host name, which
            // is shown in logs and errors.
            return Err(bad("credentials need a `redis://` address"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok((
            NodeAddr {
                host: host.to_owned(),
                port,
                unix: false,
            },
            creds,
        ))
    }

    /// The host name or IP address (for a Unix socket: its path).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (0 for a Unix socket).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `true` for a Unix socket.
    pub fn is_unix(&self) -> bool {
        self.unix
    }
}

/// Replaces the password of a `redis://user:password@host` address by `***`; without a scheme,
/// everything before the `@` (`user:password@host`, `password@host`).
fn redact(s: &str) -> String {
    let Some(at) = s.rfind('@') else {
        return s.to_owned();
    };
    // A scheme counts only before the `@` (`user:pw@redis://...` is all userinfo up to `@`).
    let start = s.find("://").filter(|&i| i < at).map_or(0, |i| i + 3);
    match s[start..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &s[..start], &s[at..]),
        None if start == 0 => format!("***{}", &s[at..]),
        None => s.to_owned(),
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unix {
            write!(f, "unix:{}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<std::net::SocketAddr> for NodeAddr {
    fn from(a: std::net::SocketAddr) -> Self {
        NodeAddr {
            host: a.ip().to_string(),
            port: a.port(),
            unix: false,
        }
    }
}

impl std::str::FromStr for NodeAddr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        NodeAddr::parse(s)
    }
}

/// How the pool finds its nodes.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// A fixed list; roles come from `ROLE`.
    Static,
    /// Sentinels watching `master`.
    Sentinel {
        sentinels: Vec<NodeAddr>,
        master: String,
    },
}

/// Where reads go. Writes always go to the primary.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadFrom {
    /// Every read goes to the primary.
    Primary,
    /// Reads go to a healthy replica (round robin), or to the primary when none is usable. The
    /// default.
    #[default]
    PreferReplica,
    /// Reads go to a healthy replica only; with none usable they fail (not executed).
    ReplicaOnly,
}

/// How long the pool waits for a node.
///
/// - `connect`: opening a connection (TCP connect and handshake);
/// - `response`: every command on a shared connection, and each step of discovery (`ROLE`, a
///   Sentinel query). A node that does not answer in time is treated as failing.
///
/// ```
/// use std::time::Duration;
/// use switchover::redis::Timeouts;
///
/// let t = Timeouts::new().response(Duration::from_millis(300));
/// assert_eq!(t.connect_timeout(), Duration::from_millis(250));
/// assert_eq!(t.response_timeout(), Duration::from_millis(300));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeouts {
    /// The defaults: connect 250 ms, response 1 s.
    pub const fn new() -> Self {
        Timeouts {
            connect: Duration::from_millis(250),
            response: Duration::from_secs(1),
        }
    }

    /// Sets the connect timeout (not longer than the response timeout).
    #[must_use]
    pub const fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// Sets the response timeout.
    #[must_use]
    pub const fn response(mut self, timeout: Duration) -> Self {
        self.response = timeout;
        self
    }

    /// The connect timeout.
    pub const fn connect_timeout(&self) -> Duration {
        self.connect
    }

    /// The response timeout.
    pub const fn response_timeout(&self) -> Duration {
        self.response
    }

    /// The longest one exchange with a node may take: connecting, then one reply.
    pub(crate) fn exchange(&self) -> Duration {
        self.connect.saturating_add(self.response)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [
            ("response_timeout", self.response),
            ("connect_timeout", self.connect),
        ] {
            check_duration(field, d)?;
        }
        if self.connect > self.response {
            return Err(ConfigError::new(
                "connect_timeout",
                format!(
                    "{:?} is longer than the response timeout {:?}",
                    self.connect, self.response
                ),
            ));
        }
        Ok(())
    }
}

/// A duration setting: above zero and at most a day.
pub(crate) fn check_duration(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::new(field, "must be above zero"));
    }
    if d > crate::retry::MAX_DEADLINE {
        return Err(ConfigError::new(
            field,
            format!("{d:?} is longer than a day"),
        ));
    }
    Ok(())
}

/// Every setting of a pool, validated.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) source: Source,
    pub(crate) login: Login,
    pub(crate) sentinel_login: Login,
    /// TLS to the data nodes, once validated.
    pub(crate) tls: Option<Tls>,
    /// TLS to the sentinels (given without a `redis://` scheme), once validated.
    pub(crate) sentinel_tls: Option<Tls>,
    /// Sentinels given as `redis://` while the rest is TLS.
    pub(crate) plaintext_sentinels: Vec<NodeAddr>,
    pub(crate) db: i64,
    pub(crate) timeouts: Timeouts,
    pub(crate) max_replica_lag: Option<u64>,
    pub(crate) discovery_interval: Duration,
    pub(crate) rediscovery_interval: Duration,
    pub(crate) dedicated_pool_size: usize,
    /// How the router is observed (timeline name, `router` metrics label).
    pub(crate) observe: crate::observe::Observe,
    /// How often each node in use is asked `ROLE` on its control connection (`None`: never;
    /// discovery and the calls alone judge the nodes).
    pub(crate) heartbeat: Option<Duration>,
    /// How long a heartbeat's `ROLE` may take before the node counts as silent; with the
    /// heartbeat on, also the bound of each node's `ROLE` reply in a discovery run (`None`:
    /// the default, see [`heartbeat_timeout`](Self::heartbeat_timeout)).
    pub(crate) heartbeat_timeout: Option<Duration>,
    /// How the host names of the nodes and sentinels are looked up.
    pub(crate) resolver: crate::resolve::Resolver,
    /// How often the nodes' host names are looked up again (besides every discovery run).
    pub(crate) resolve_interval: Duration,
    /// The maximum age of a connection (`None`: no limit), and each connection's draw.
    pub(crate) ages: std::sync::Arc<crate::resolve::AgeLimit>,
}

/// The default heartbeat of the nodes in use.
pub(crate) const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(200);
/// The default bound of one heartbeat.
pub(crate) const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(300);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            source: Source::Static,
            login: Login::default(),
            sentinel_login: Login::default(),
            tls: None,
            sentinel_tls: None,
            plaintext_sentinels: Vec::new(),
            db: 0,
            timeouts: Timeouts::new(),
            max_replica_lag: None,
            discovery_interval: Duration::from_secs(1),
            rediscovery_interval: Duration::from_millis(50),
            dedicated_pool_size: 8,
            observe: crate::observe::Observe::new("redis"),
            heartbeat: Some(DEFAULT_HEARTBEAT),
            heartbeat_timeout: None,
            resolver: crate::resolve::Resolver::default(),
            resolve_interval: crate::resolve::DEFAULT_RESOLVE_INTERVAL,
            ages: std::sync::Arc::new(crate::resolve::AgeLimit::new(
                Some(crate::resolve::DEFAULT_MAX_CONNECTION_AGE),
                None,
            )),
        }
    }
}

impl Settings {
    /// The longest one discovery run may take: a Sentinel query (in Sentinel mode, bounded by
    /// [`Timeouts::exchange`]), then `ROLE` on every node, in parallel, each bounded by
    /// [`role_exchange`](Self::role_exchange).
    pub(crate) fn discovery_run_bound(&self) -> Duration {
        let sentinels = match self.source {
            Source::Static => Duration::ZERO,
            Source::Sentinel { .. } => self.timeouts.exchange(),
        };
        sentinels.saturating_add(self.role_exchange())
    }

    /// The bound of one heartbeat: as set, else 300 ms.
    pub(crate) fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT)
    }

    /// How long a node's `ROLE` reply may take in discovery: the heartbeat's bound when the
    /// heartbeat is on (a node that silent would miss its heartbeat too), else the response
    /// timeout.
    pub(crate) fn role_timeout(&self) -> Duration {
        match self.heartbeat {
            Some(_) => self.heartbeat_timeout(),
            None => self.timeouts.response_timeout(),
        }
    }

    /// The longest one `ROLE` exchange in discovery may take: connecting, then the reply.
    pub(crate) fn role_exchange(&self) -> Duration {
        self.timeouts
            .connect_timeout()
            .saturating_add(self.role_timeout())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_address_forms() {
        let a = NodeAddr::parse("127.0.0.1:6379").unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:6379");
        let a = NodeAddr::parse("[::1]:7000").unwrap();
        assert_eq!((a.host(), a.port()), ("::1", 7000));
        assert_eq!(a.to_string(), "[::1]:7000");
        let (a, c) =
            NodeAddr::parse_with_credentials("redis://app:hunter2@cache:6380/", "nodes").unwrap();
        assert_eq!(a.to_string(), "cache:6380");
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(!c.tls);
        let (a, c) = NodeAddr::parse_with_credentials("rediss://cache:6380", "nodes").unwrap();
        assert_eq!((a.to_string(), c.tls), ("cache:6380".to_owned(), true));
        let a = NodeAddr::parse("unix:/tmp/r.sock").unwrap();
        assert_eq!((a.host(), a.port(), a.is_unix()), ("/tmp/r.sock", 0, true));
    }

    #[test]
    fn bad_addresses_are_rejected_without_the_password() {
        for bad in [
            "",
            "cache",
            "cache:",
            "cache:0",
            "cache:99999",
            "[::1:7000",
            "http://x:1",
            "unix://relative.sock",
            "unix:///tmp/r.sock?db=1",
        ] {
            let err = NodeAddr::parse(bad).unwrap_err();
            assert_eq!(err.field(), "nodes", "{bad}");
        }
        let err = NodeAddr::parse("redis://app:hunter2@cache").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("app:***@cache"), "{err}");
        // Credentials without a scheme are refused, and their password is not echoed.
        for bad in [
            "app:hunter2@cache:6379",
            "app:hunter2@cache",
            "hunter2@cache:x",
            "app:hunter2@redis://cache:6379",
        ] {
            let err = NodeAddr::parse(bad).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}

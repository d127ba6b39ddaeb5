//! Host names of the pools' endpoints: how they are resolved, re-resolved, and how long a
//! connection may live.
//!
//! Managed databases put one DNS name in front of a role: the RDS and Aurora cluster
//! endpoints, the ElastiCache primary and reader endpoints. On failover the name's address
//! moves to the new primary, and the old primary comes back as a replica. A client that
//! resolves the name once per connection and keeps its connections keeps talking to the old
//! node. The Redis (`redis::SplitPool`) and Postgres (`postgres::FailoverPool`) pools
//! therefore:
//!
//! - **resolve configured host names through a [`Resolve`]** (by default [`SystemResolver`],
//!   `tokio::net::lookup_host`; tests plug in their own, e.g.
//!   `switchover::testing::TestResolver`), each lookup bounded by the connect timeout. A
//!   failing lookup is an error naming the host; one that returns no address keeps the last
//!   good addresses. IP literals and Unix sockets are never looked up.
//! - **re-resolve them** on every discovery run (in the background, so a run never waits for
//!   a lookup) and periodically (the pools' `resolve_interval`, default
//!   [`DEFAULT_RESOLVE_INTERVAL`]). New connections go to the new addresses at once.
//! - **retire the connections to the old addresses** once the role check (Redis `ROLE`,
//!   Postgres `pg_is_in_recovery()`) has answered from a new address: from then on the name
//!   stands for the node there, with the role it reported (a name that moved to a node not yet
//!   promoted is no primary until it is). Each pool says what happens to each kind of
//!   connection.
//! - **cap the age of every connection** (`max_connection_age`, default
//!   [`DEFAULT_MAX_CONNECTION_AGE`], `None` to disable): the backstop for a change no lookup
//!   shows (a resolver cache, a load balancer in front of the nodes). Each connection's limit
//!   is drawn up to 10 % below the maximum, so a fleet does not reconnect in lockstep; a
//!   connection is never handed out past the maximum.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

pub(crate) mod age;
pub(crate) mod name;
mod schedule;

pub(crate) use age::AgeLimit;
pub(crate) use name::Name;
pub(crate) use schedule::{Names, refresh_loop};

/// The default interval between two periodic re-resolutions of a pool's host names: 5 s, the
/// TTL of the RDS and Aurora cluster endpoints.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// The default maximum age of a pool's connections: 30 minutes (HikariCP's `maxLifetime`),
/// each connection's own limit drawn up to 10 % below it.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// The future a [`Resolve`] returns.
pub type ResolveFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// Resolves a host name to socket addresses: the seam through which the pools look up the
/// names they are given.
///
/// The pool bounds every call by its connect timeout. An error fails what needed the
/// addresses (a connect to a name never resolved) with an error naming the host; an empty
/// answer is treated as "no news" and the last good addresses are kept.
///
/// ```
/// use std::net::SocketAddr;
/// use switchover::resolve::{Resolve, ResolveFuture};
///
/// /// Every name is the local host, on the port asked for.
/// struct Local;
///
/// impl Resolve for Local {
///     fn resolve<'a>(&'a self, _host: &'a str, port: u16) -> ResolveFuture<'a> {
///         Box::pin(async move { Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]) })
///     }
/// }
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` for `port`, in the order to try them.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system resolver: `tokio::net::lookup_host` (`getaddrinfo` on a blocking thread, so
/// `/etc/hosts`, `nsswitch.conf` and any local cache apply). The pools' default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A shared resolver, as the pools keep it.
#[derive(Clone)]
pub(crate) struct Resolver(pub(crate) std::sync::Arc<dyn Resolve>);

impl Default for Resolver {
    fn default() -> Self {
        Resolver(std::sync::Arc::new(SystemResolver))
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// Checks a resolve interval given to a builder: zero is refused, naming `field`.
pub(crate) fn check_interval(
    field: &'static str,
    d: Duration,
) -> Result<Duration, crate::ConfigError> {
    if d.is_zero() {
        return Err(crate::ConfigError::new(
            field,
            "must be greater than zero (names are re-resolved on every discovery run too)",
        ));
    }
    Ok(d)
}

/// Checks a maximum connection age given to a builder: zero is refused, naming `field`.
pub(crate) fn check_age(
    field: &'static str,
    d: Option<Duration>,
) -> Result<Option<Duration>, crate::ConfigError> {
    if d.is_some_and(|d| d.is_zero()) {
        return Err(crate::ConfigError::new(
            field,
            "must be greater than zero (`None` disables the limit)",
        ));
    }
    Ok(d)
}

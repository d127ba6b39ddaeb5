//! [`PatroniBuilder`]: the members to ask and how often, validated when built.

use std::sync::Arc;
use std::time::Duration;

use super::authority::Patroni;
use crate::error::ConfigError;
use crate::postgres::FailoverPool;
use crate::route::{Follower, FollowerBuilder, IntoFollower, Router, WhenUnreachable};

/// Builder of [`Patroni`]. Nothing is validated until [`build`](Self::build) or
/// [`follow`](Self::follow).
///
/// # Defaults
///
/// | knob | default |
/// |---|---|
/// | [`member`](Self::member) / [`members`](Self::members) | none (at least one is required) |
/// | [`poll_interval`](Self::poll_interval) (how often the leader is read) | 200 ms |
/// | [`request_timeout`](Self::request_timeout) (one `GET /cluster`, connect included) | 500 ms |
/// | [`when_unreachable`](Self::when_unreachable) | [`WhenUnreachable::KeepLast`] |
///
/// A new leader is followed within one poll interval plus one request after the first member
/// answers with it (≤ 700 ms with the defaults).
#[derive(Clone, Debug)]
#[must_use]
pub struct PatroniBuilder {
    members: Vec<String>,
    poll_interval: Duration,
    request_timeout: Duration,
    when_unreachable: WhenUnreachable,
}

impl Default for PatroniBuilder {
    fn default() -> Self {
        PatroniBuilder {
            members: Vec::new(),
            poll_interval: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            when_unreachable: WhenUnreachable::KeepLast,
        }
    }
}

impl PatroniBuilder {
    /// Adds a member's REST API: `host:port` or `http://host:port` (Patroni's
    /// `restapi.connect_address`). Ask every member: any one that reaches the DCS can answer.
    pub fn member(mut self, api: impl Into<String>) -> Self {
        self.members.push(api.into());
        self
    }

    /// Adds several members (see [`member`](Self::member)).
    pub fn members<S: Into<String>>(mut self, apis: impl IntoIterator<Item = S>) -> Self {
        self.members.extend(apis.into_iter().map(Into::into));
        self
    }

    /// How often the leader is read (default 200 ms; at most 1 s, so a new leader is followed
    /// within about a second).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The bound of one `GET /cluster`, connect included (default 500 ms).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// What the follower does while no member answers with a leader (default
    /// [`WhenUnreachable::KeepLast`]: the pool keeps the last leader Patroni named).
    pub fn when_unreachable(mut self, when: WhenUnreachable) -> Self {
        self.when_unreachable = when;
        self
    }

    /// The authority over `router`'s hosts (a [`FailoverPool::router`], whose ids are
    /// `host:port`), for a [`Follower`] of your own.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `members` when none is given or one is not `host:port`
    /// (an `https://` address included: TLS to the REST API is not supported),
    /// `request_timeout` when it is zero.
    pub fn build(&self, router: &Router<Arc<str>>) -> Result<Patroni, ConfigError> {
        if self.members.is_empty() {
            return Err(ConfigError::new(
                "members",
                "at least one Patroni REST API address is required",
            ));
        }
        let members = self
            .members
            .iter()
            .map(|m| api_address(m).map(Arc::from))
            .collect::<Result<Vec<Arc<str>>, _>>()?;
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be above zero"));
        }
        let hosts = router.endpoints().map(|(e, _)| e.id().clone()).collect();
        Ok(Patroni::new(members, hosts, self.request_timeout))
    }

    /// Makes `pool` follow Patroni's leader: starts a [`Follower`] of the pool's router that
    /// reads the leader every poll interval. Keep the follower as long as the pool: following
    /// stops when the last clone of it is dropped.
    ///
    /// Prefer the pool's knob,
    /// [`FailoverPoolBuilder::authority`](crate::postgres::FailoverPoolBuilder::authority)
    /// (the pool keeps the follower, its role probes confirm the leader before a write goes
    /// there, and writes wait while Patroni names none): a follower started here only closes
    /// the router's gate on the leader and marks the roles, so a write that starts while the
    /// leader is not yet a writable primary runs through its attempts instead of waiting.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); `poll_interval` when it is zero or above 1 s; `runtime`
    /// outside a Tokio runtime.
    pub fn follow(&self, pool: &FailoverPool) -> Result<Follower<Arc<str>>, ConfigError> {
        self.clone().into_follower(Follower::builder(pool.router()))
    }
}

/// The pool's knob takes it: `.authority(Patroni::builder().members([...]))` builds the
/// authority over the pool's hosts and starts its follower with this builder's poll interval,
/// a read timeout of the request timeout plus 100 ms, and the `when_unreachable` setting. A
/// new leader is then followed as soon as `/cluster` names it (the pool's role probe, every
/// re-discovery interval while the primary is in doubt, confirms its promotion before a write
/// goes there), not after its own API says it is promoted, and a slow member holds a read up
/// 100 ms at most once another one named a leader.
impl IntoFollower<Arc<str>> for PatroniBuilder {
    fn into_follower(
        self,
        builder: FollowerBuilder<Arc<str>>,
    ) -> Result<Follower<Arc<str>>, ConfigError> {
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(1) {
            return Err(ConfigError::new(
                "poll_interval",
                "must be above zero and at most 1 s",
            ));
        }
        let mut authority = self.build(builder.router())?;
        if builder.is_confirmed() {
            // The pool confirms the leader itself: no need to wait for its promotion here.
            authority = authority.follow_when_named();
        }
        builder
            .poll_interval(self.poll_interval)
            // Members are asked at once: one read takes one request timeout at most.
            .read_timeout(self.request_timeout + Duration::from_millis(100))
            .when_unreachable(self.when_unreachable)
            .start(authority)
    }
}

/// `host:port` of a REST API address (`http://` and a trailing `/` removed).
pub(super) fn api_address(member: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::new("members", format!("{member:?}: {why}"));
    let trimmed = member.trim();
    if trimmed.starts_with("https://") {
        return Err(bad("TLS to the Patroni REST API is not supported"));
    }
    let addr = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    let addr = addr.strip_suffix('/').unwrap_or(addr);
    if addr.contains('/') || addr.contains('@') || addr.chars().any(char::is_whitespace) {
        return Err(bad("expected host:port or http://host:port"));
    }
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("no port (expected host:port)"))?;
    let bracketed = host.starts_with('[') && host.ends_with(']') && host.len() > 2;
    if host.is_empty() || (host.contains(':') && !bracketed) {
        return Err(bad("bad host (an IPv6 address goes in brackets)"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(addr.to_owned()),
        _ => Err(bad("bad port")),
    }
}

//! The deadline of every phase of getting and using a connection.

use std::time::Duration;

use crate::error::ConfigError;
use crate::retry::MAX_DEADLINE;

/// The deadlines of every phase of getting and using a connection; each has one by default
/// (the values are in the table on [`FailoverPoolBuilder`](super::FailoverPoolBuilder)).
///
/// With the defaults a black-holed host is detected within about 8 s by an idle connection
/// (keepalive) and within 5 s by a busy one (`tcp_user_timeout`), instead of the kernel's
/// 15 minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connect to one host.
    pub connect: Duration,
    /// TCP connect, TLS and login to one host, together.
    pub login: Duration,
    /// One [`get`](super::FailoverPool::get) from start to finish: waiting for a slot,
    /// connecting, re-discovering, retrying. Also bounds the wait for a slot inside the runner.
    pub acquire: Duration,
    /// The check of an idle connection before it is handed out again.
    pub recycle: Duration,
    /// Asking one host for its role during re-discovery.
    pub probe: Duration,
    /// Each step of the runner ([`run`](super::FailoverPool::run),
    /// [`transaction`](super::FailoverPool::transaction)): `BEGIN`, the caller's closure,
    /// `COMMIT`. Does not apply to connections used directly from `get`.
    pub query: Duration,
    /// `TCP_USER_TIMEOUT` on every socket: unacknowledged data before the socket is dropped.
    pub tcp_user_timeout: Duration,
    /// Idle time before TCP keepalive probes start.
    pub keepalive_idle: Duration,
    /// Time between keepalive probes.
    pub keepalive_interval: Duration,
    /// Unanswered keepalive probes before the socket is dropped.
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

impl Timeouts {
    /// Refuses a zero timeout, one longer than a day, and a login timeout shorter than the
    /// connect timeout, naming the builder's field.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [
            ("connect_timeout", self.connect),
            ("login_timeout", self.login),
            ("acquire_timeout", self.acquire),
            ("recycle_timeout", self.recycle),
            ("probe_timeout", self.probe),
            ("query_timeout", self.query),
            ("tcp_user_timeout", self.tcp_user_timeout),
            ("keepalive_idle", self.keepalive_idle),
            ("keepalive_interval", self.keepalive_interval),
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
        if self.login < self.connect {
            return Err(ConfigError::new(
                "login_timeout",
                format!(
                    "{:?} is shorter than the connect timeout of {:?}",
                    self.login, self.connect
                ),
            ));
        }
        Ok(())
    }
}

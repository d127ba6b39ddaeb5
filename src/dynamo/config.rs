//! Configuration values of a [`Table`](super::Table): regions, timeouts, write mode, canary.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_types::SdkConfig;

use crate::error::ConfigError;

/// The name of a region of a [`Table`](super::Table): its id in the health tracker, the router,
/// events and errors. Cheap to clone (an `Arc<str>`); compares with `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionName(Arc<str>);

impl RegionName {
    /// A region name.
    pub fn new(name: impl AsRef<str>) -> Self {
        RegionName(Arc::from(name.as_ref()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Debug for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RegionName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RegionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RegionName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for RegionName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// One region of a [`Table`](super::Table): its name, how to reach it, and optionally a
/// different physical table name and credentials.
///
/// Three ways to reach a region:
///
/// - [`from_sdk_config`](Self::from_sdk_config): the handle builds the client from your shared
///   `SdkConfig` (credentials, HTTP client, endpoint), sets the region, **turns the SDK's own
///   retries off** (the handle retries, across regions) and sets the handle's
///   [`Timeouts`];
/// - [`endpoint`](Self::endpoint): the same, from scratch, against an endpoint URL (DynamoDB
///   Local, a VPC endpoint); without [`credentials`](Self::credentials) it signs with fixed
///   placeholder keys, which DynamoDB Local accepts;
/// - [`from_client`](Self::from_client): your own `Client`, used as it is. Its retry and
///   timeout settings are kept: if it retries (the SDK default is 3 attempts), every attempt
///   of the handle is up to that many requests, and the handle says so in a `WARN` event at
///   build time. The handle still bounds each attempt by its own attempt timeout.
///
/// ```
/// use switchover::dynamo::RegionConfig;
///
/// let local = RegionConfig::endpoint("us-east-1", "http://127.0.0.1:8000")
///     .table_name("orders-use1");
/// assert_eq!(local.name(), "us-east-1");
/// ```
#[derive(Clone)]
pub struct RegionConfig {
    pub(crate) name: String,
    pub(crate) source: Source,
    pub(crate) table_name: Option<String>,
    pub(crate) credentials: Option<Credentials>,
}

#[derive(Clone)]
pub(crate) enum Source {
    Client(Client),
    SdkConfig(Box<SdkConfig>),
    Endpoint(String),
}

impl RegionConfig {
    /// A region reached at `url` (DynamoDB Local, a VPC endpoint), signing for region `name`.
    pub fn endpoint(name: impl Into<String>, url: impl Into<String>) -> Self {
        RegionConfig {
            name: name.into(),
            source: Source::Endpoint(url.into()),
            table_name: None,
            credentials: None,
        }
    }

    /// A region whose client the handle builds from `config` (region set to `name`, SDK
    /// retries off, the handle's timeouts).
    pub fn from_sdk_config(name: impl Into<String>, config: &SdkConfig) -> Self {
        RegionConfig {
            name: name.into(),
            source: Source::SdkConfig(Box::new(config.clone())),
            table_name: None,
            credentials: None,
        }
    }

    /// A region served by your own `client`, used unchanged (see the type's docs about its
    /// retries).
    pub fn from_client(name: impl Into<String>, client: Client) -> Self {
        RegionConfig {
            name: name.into(),
            source: Source::Client(client),
            table_name: None,
            credentials: None,
        }
    }

    /// The physical name of the table in this region (default: the handle's table name).
    pub fn table_name(mut self, name: impl Into<String>) -> Self {
        self.table_name = Some(name.into());
        self
    }

    /// Credentials for this region's client (default: those of the `SdkConfig`, or
    /// placeholder keys for [`endpoint`](Self::endpoint)). Not allowed with
    /// [`from_client`](Self::from_client): the build fails.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The region's name (its id in events and errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Builds (or takes) the region's client.
    pub(crate) fn client(&self, timeouts: &Timeouts) -> Result<Client, ConfigError> {
        let builder = match &self.source {
            Source::Client(client) => {
                if self.credentials.is_some() {
                    return Err(ConfigError::new(
                        "credentials",
                        format!(
                            "region `{}` uses a client you built; set credentials on that \
                             client instead",
                            self.name
                        ),
                    ));
                }
                return Ok(client.clone());
            }
            Source::SdkConfig(config) => aws_sdk_dynamodb::config::Builder::from(&**config),
            Source::Endpoint(url) => {
                if url.is_empty() {
                    return Err(ConfigError::new(
                        "endpoint",
                        format!("region `{}` has an empty endpoint URL", self.name),
                    ));
                }
                aws_sdk_dynamodb::config::Builder::new()
                    .behavior_version(BehaviorVersion::latest())
                    .endpoint_url(url)
                    .credentials_provider(Credentials::new(
                        // DynamoDB Local accepts key ids made of letters and digits only.
                        "switchoverlocal",
                        "switchoverlocal",
                        None,
                        None,
                        "switchover-placeholder",
                    ))
            }
        };
        let mut builder = builder
            .region(Region::new(self.name.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .operation_attempt_timeout(timeouts.attempt)
                    .operation_timeout(timeouts.attempt)
                    .build(),
            );
        if let Some(credentials) = &self.credentials {
            builder = builder.credentials_provider(credentials.clone());
        }
        Ok(Client::from_conf(builder.build()))
    }
}

impl fmt::Debug for RegionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Client(_) => "client".to_owned(),
            Source::SdkConfig(_) => "sdk config".to_owned(),
            Source::Endpoint(url) => format!("endpoint {}", without_userinfo(url)),
        };
        f.debug_struct("RegionConfig")
            .field("name", &self.name)
            .field("source", &source)
            .field("table_name", &self.table_name)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `url` with any `user:password@` part replaced, so that `Debug` output never shows a secret
/// embedded in an endpoint URL.
fn without_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}<redacted>@{}", &rest[at + 1..]).into()
        }
        None => url.into(),
    }
}

/// The time limits of every call (the AWS SDK sets none by default, so a black-holed region
/// hangs a call forever). [`Timeouts::new`] holds the defaults.
///
/// - `connect`: the TCP (and TLS) connect timeout of the clients the handle builds;
/// - `attempt`: one attempt against one region (the SDK's attempt *and* operation timeout on
///   the clients the handle builds, since those make one attempt each; the handle also bounds
///   every attempt on your own clients by it, plus 100 ms of slack so the SDK's own timeout,
///   if any, fires first);
/// - `operation`: the whole call, every attempt in every region and the waits between them
///   included (the retry policy's deadline, when the policy sets none).
///
/// ```
/// use std::time::Duration;
/// use switchover::dynamo::Timeouts;
///
/// let t = Timeouts::new().attempt(Duration::from_secs(1)).operation(Duration::from_secs(5));
/// assert_eq!(t.connect_timeout(), Duration::from_millis(250));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    attempt: Duration,
    operation: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeouts {
    /// The defaults: connect 250 ms, attempt 500 ms, operation 2 s.
    pub const fn new() -> Self {
        Timeouts {
            connect: Duration::from_millis(250),
            attempt: Duration::from_millis(500),
            operation: Duration::from_secs(2),
        }
    }

    /// Sets the connect timeout.
    #[must_use]
    pub const fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// Sets the attempt timeout.
    #[must_use]
    pub const fn attempt(mut self, timeout: Duration) -> Self {
        self.attempt = timeout;
        self
    }

    /// Sets the operation timeout.
    #[must_use]
    pub const fn operation(mut self, timeout: Duration) -> Self {
        self.operation = timeout;
        self
    }

    /// The connect timeout.
    pub const fn connect_timeout(&self) -> Duration {
        self.connect
    }

    /// The attempt timeout.
    pub const fn attempt_timeout(&self) -> Duration {
        self.attempt
    }

    /// The operation timeout.
    pub const fn operation_timeout(&self) -> Duration {
        self.operation
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (field, d) in [
            ("connect_timeout", self.connect),
            ("attempt_timeout", self.attempt),
            ("operation_timeout", self.operation),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be above zero"));
            }
            if d > crate::retry::MAX_DEADLINE {
                return Err(ConfigError::new(
                    field,
                    format!("{d:?} is longer than the limit of one day"),
                ));
            }
        }
        if self.attempt > self.operation {
            return Err(ConfigError::new(
                "attempt_timeout",
                format!(
                    "{:?} is longer than the operation timeout {:?}",
                    self.attempt, self.operation
                ),
            ));
        }
        Ok(())
    }
}

/// Where writes may go.
///
/// Default: [`PrimaryOnly`](Self::PrimaryOnly).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// Every write goes to the router's single active region. When that region fails, a write
    /// retries there until the router switches (after the health tracker's failure threshold)
    /// and then follows it; it never writes to two regions at once. With a Global Table this
    /// keeps all writes of a moment in one region, so concurrent writers of one item are
    /// ordered by that region.
    #[default]
    PrimaryOnly,
    /// A write whose attempt failed may be retried at once in the next healthy region, before
    /// the router has switched. Faster to recover, but for a while two regions may take writes
    /// for the same item. A Global Table resolves such conflicts by **last writer wins** (the
    /// later timestamp replaces the earlier item as a whole, silently): an update in one region
    /// can erase a concurrent update made in another. Use it only for items that are written
    /// by one writer at a time, or whose writes are whole-item puts where any winner is fine.
    ///
    /// Conditional writes, strongly consistent reads and transactions still go only to the
    /// active region: a condition checked in one region says nothing of the other's copy.
    AnyHealthy,
}

/// The canary request a region's health probe sends.
///
/// Default: [`DescribeTable`](Self::DescribeTable).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Canary {
    /// `DescribeTable` of the region's table: needs no item, but it is a control-plane call
    /// with its own (lower) rate limit in AWS. Up when the table is `ACTIVE` or `UPDATING`.
    #[default]
    DescribeTable,
    /// An eventually consistent `GetItem` of this key (the item need not exist): a data-plane
    /// call with the same path as your reads. Use it when probing often (heartbeats).
    GetItem(HashMap<String, AttributeValue>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_userinfo_never_shows_in_debug() {
        let r = RegionConfig::endpoint("eu-west-1", "http://AKIA:s3cret@127.0.0.1:8000/x");
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("AKIA"),
            "{shown}"
        );
        assert!(
            shown.contains("http://<redacted>@127.0.0.1:8000/x"),
            "{shown}"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8000"),
            "http://127.0.0.1:8000"
        );
        assert_eq!(without_userinfo("u:p@host"), "<redacted>@host");
    }

    #[test]
    fn timeouts_validate() {
        assert!(Timeouts::new().validate().is_ok());
        let e = Timeouts::new()
            .connect(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "connect_timeout");
        let e = Timeouts::new()
            .attempt(Duration::from_secs(5))
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "attempt_timeout");
    }

    #[test]
    fn credentials_are_not_in_debug() {
        let r = RegionConfig::endpoint("r1", "http://127.0.0.1:1").credentials(Credentials::new(
            "AKIDSECRETISH",
            "VERYSECRET",
            Some("TOKEN".into()),
            None,
            "test",
        ));
        let s = format!("{r:?}");
        assert!(!s.contains("VERYSECRET") && !s.contains("AKIDSECRETISH") && !s.contains("TOKEN"));
        assert!(s.contains("<redacted>"));
    }
}

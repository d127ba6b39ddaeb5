//! Credentials for every new connection: passwords from a secret store, rotating secrets,
//! and AWS IAM authentication tokens for RDS and ElastiCache.
//!
//! A pool that logs in with a fixed password breaks the day the password rotates, and one
//! that logs in with an IAM token breaks 15 minutes after it started. The Postgres and Redis
//! pools of this crate instead ask a [`CredentialProvider`] for the user and secret of each
//! new connection, so a rotation reaches the next connection, and they tell the provider when
//! the server [rejected](CredentialProvider::rejected) a secret and ask once more, so a
//! rotation costs no failed operation.
//!
//! | type | what it gives | feature |
//! |---|---|---|
//! | [`StaticCredentials`] | the same user and password every time | — |
//! | [`credentials_fn`] | whatever an async closure returns (a vault, a file, a secret manager) | — |
//! | [`CachedCredentials`] | another provider's answers, cached per host, port and user until shortly before they expire, one fetch at a time | — |
//! | `RdsIamAuth` | RDS / Aurora IAM auth tokens (Postgres) | `aws-auth` |
//! | `ElastiCacheIamAuth` | ElastiCache for Valkey / Redis OSS 7+ IAM auth tokens | `aws-auth` |
//!
//! The shape:
//!
//! ```text
//! pub trait CredentialProvider: Send + Sync + 'static {
//!     fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a>;
//!     fn rejected(&self, request: &CredentialRequest<'_>, secret: &Secret) {}   // default: nothing
//! }
//! CredentialFuture<'a> = Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + 'a>>
//! CredentialRequest::new(host, port).with_user(user)   // host(), port(), user(), into_owned()
//! Credentials::new(user, secret) / ::password_only(secret), .expiring_at(t)   // user(), secret(), expires_at()
//! Secret::new(s) / From<String> / From<&str>, expose()   // Debug and Display: `Secret(***)`
//! CredentialError::new(msg) / ::from_source(e), .with_source(e), .permanent()   // is_permanent(); Classify
//! CachedCredentials::new(provider).refresh_before(d)   // get(&req), invalidate(&req), provider()
//! credentials_fn(|req: CredentialRequest<'static>| async move { .. })
//! // feature aws-auth:
//! RdsIamAuth::builder(shared_credentials_provider).region(r).user(default_user).clock(f).build()?
//! ElastiCacheIamAuth::builder(shared_credentials_provider).region(r).cache_name(n).user_id(u)
//!     .serverless(b).clock(f).build()?
//! ```
//!
//! Implemented for `Arc<P>` and `Box<P>`, so a pool can hold an `Arc<dyn CredentialProvider>`.
//!
//! # Secrets do not print
//!
//! [`Secret`] prints as `Secret(***)` in `Debug` and `Display`, and every type here that holds
//! one (credentials, providers, caches, errors) prints it that way; nothing in this module
//! logs a secret, a token or an AWS secret key.
//!
//! # Example: a password from a secret store, cached
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use switchover::auth::{credentials_fn, CachedCredentials, CredentialError, CredentialProvider, CredentialRequest, Credentials};
//!
//! # async fn fetch_from_vault(user: &str) -> Result<(String, Duration), std::io::Error> {
//! #     std::env::var(format!("DB_PASSWORD_{user}")).map(|p| (p, Duration::from_secs(900))).map_err(std::io::Error::other)
//! # }
//! # async fn demo() -> Result<(), CredentialError> {
//! let provider: Arc<dyn CredentialProvider> = Arc::new(CachedCredentials::new(credentials_fn(|req| async move {
//!     let user = req.user().unwrap_or("app").to_owned();
//!     let (password, ttl) = fetch_from_vault(&user).await.map_err(CredentialError::from_source)?;
//!     Ok(Credentials::new(user, password).expiring_at(SystemTime::now() + ttl))
//! })));
//!
//! // What a pool does for each new connection:
//! let request = CredentialRequest::new("db.internal", 5432).with_user("app");
//! let creds = provider.credentials(&request).await?;
//! // ... log in with creds.user() and creds.secret().expose(); if the server refuses:
//! provider.rejected(&request, creds.secret());
//! # Ok(())
//! # }
//! ```
//!
//! # Caching and refresh
//!
//! [`CachedCredentials`] keeps one entry per (host, port, configured user). It fetches again
//! once less than [`refresh_before`](CachedCredentials::refresh_before) of the lifetime is left
//! (default 5 minutes, at most half the lifetime: a 15-minute IAM token is replaced after 10),
//! lets concurrent new connections share one fetch, serves still-valid credentials while a
//! refresh is running or after it failed, never caches an error, and drops a secret the
//! server rejected. See its docs for the exact rules.
//!
//! # AWS IAM tokens (feature `aws-auth`)
//!
//! `RdsIamAuth` and `ElastiCacheIamAuth` sign IAM authentication tokens with the AWS SDK's own
//! credentials: they take an `aws_credential_types::provider::SharedCredentialsProvider`,
//! which is what `aws_config::load_defaults(..).await.credentials_provider()` returns, so the
//! SDK's whole credential chain (environment, profiles, SSO, web identity, ECS, IMDS) works
//! and this crate does not depend on `aws-config`. A token is a SigV4-presigned `connect` URL
//! without its scheme, valid for 15 minutes (`TOKEN_LIFETIME`), byte for byte what botocore
//! produces (the tests compare against vectors generated by botocore and recompute the
//! signature by hand from the SigV4 spec). Each provider's docs have an example. Wrap them in
//! [`CachedCredentials`]: with the default 5-minute lead a token is made every 10 minutes per
//! host and user, and the AWS credentials chain (which may call STS or IMDS) is asked only
//! then. The AWS secret key, the session token and the token itself never appear in `Debug`,
//! `Display`, errors or `tracing` output (signing runs with tracing silenced, because
//! `aws-sigv4` traces the canonical request, session token included, at `TRACE`).
//!
//! # Limitations
//!
//! - Providers have no timeout of their own: the pools bound each call with their connect or
//!   login timeout.
//! - A secret is not zeroized in memory (the client libraries keep their own copies).
//! - The cache never evicts a key; it is meant for the handful of hosts a pool talks to.
//! - A connection opened before its secret expired stays open; only new logins use new
//!   credentials.
//! - AWS tokens are SigV4 only (no SigV4a), signed for the host and port the pool connects to
//!   (RDS) or the configured cache name (ElastiCache); a pool that connects through a tunnel
//!   or an IP address needs the endpoint's name in its host list. MemoryDB and Aurora DSQL
//!   tokens are not provided yet.

mod cache;
mod credentials;
#[cfg(feature = "aws-auth")]
mod elasticache;
mod error;
#[cfg(feature = "aws-auth")]
mod presign;
mod provider;
#[cfg(feature = "aws-auth")]
mod rds;
mod secret;

pub use cache::{CachedCredentials, DEFAULT_REFRESH_BEFORE};
pub use credentials::{CredentialRequest, Credentials};
#[cfg(feature = "aws-auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-auth")))]
pub use elasticache::{ElastiCacheIamAuth, ElastiCacheIamAuthBuilder};
pub use error::CredentialError;
#[cfg(feature = "aws-auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-auth")))]
pub use presign::TOKEN_LIFETIME;
pub use provider::{
    CredentialFuture, CredentialProvider, FnCredentials, StaticCredentials, credentials_fn,
};
#[cfg(feature = "aws-auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-auth")))]
pub use rds::{RdsIamAuth, RdsIamAuthBuilder};
pub use secret::Secret;

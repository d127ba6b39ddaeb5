//! [`ElastiCacheIamAuth`]: ElastiCache (Valkey / Redis OSS 7+) IAM authentication tokens as
//! `AUTH` passwords.

use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::presign::{Clock, Presigner, check_region};
use super::{
    CredentialError, CredentialFuture, CredentialProvider, CredentialRequest, Credentials,
};
use crate::error::ConfigError;

/// Logs in to ElastiCache for Valkey or Redis OSS (7.0 and later) as an IAM-enabled user,
/// with an IAM authentication token as the password.
///
/// The token is the URL `{cache}/?Action=connect&User={user_id}` (plus
/// `&ResourceType=ServerlessCache` for a serverless cache) presigned with SigV4 (service
/// `elasticache`, 15 minutes), without the `https://` prefix, as AWS's ElastiCache IAM samples
/// and botocore's presigner produce it. `{cache}` is the replication group id or the
/// serverless cache name, not a node's host: one token is valid for every node of the cache,
/// so the request's host and port are not used. The credentials returned are the user id and
/// the token (for `AUTH <user> <token>` or `HELLO 3 AUTH ...`); they expire at the earlier of
/// 15 minutes after signing and the AWS credentials' own expiry.
///
/// Wrap it in [`CachedCredentials`](super::CachedCredentials) so new connections reuse a
/// token for 10 minutes.
///
/// ElastiCache closes IAM-authenticated connections after 12 hours; the Redis pool reconnects
/// with a new token like after any dropped connection.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use aws_credential_types::provider::SharedCredentialsProvider;
/// use switchover::auth::{CachedCredentials, CredentialProvider, ElastiCacheIamAuth};
///
/// # fn demo() -> Result<(), switchover::ConfigError> {
/// // With aws-config: `aws_config::load_defaults(BehaviorVersion::latest()).await
/// //     .credentials_provider().expect("a credentials chain")` is a SharedCredentialsProvider.
/// # let sdk_credentials = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
/// #     "AKIDEXAMPLE", "secret", None, None, "example"));
/// let auth = ElastiCacheIamAuth::builder(sdk_credentials)
///     .region("us-east-1")
///     .cache_name("my-replication-group")
///     .user_id("iam-user-01")
///     .build()?;
/// let provider: Arc<dyn CredentialProvider> = Arc::new(CachedCredentials::new(auth));
/// // Hand `provider` to the Redis pool; it calls it for every new connection.
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ElastiCacheIamAuth {
    signer: Presigner,
    cache_name: String,
    user_id: String,
    serverless: bool,
}

impl ElastiCacheIamAuth {
    /// A builder signing with `credentials` (the SDK's credentials chain, or any provider).
    pub fn builder(credentials: SharedCredentialsProvider) -> ElastiCacheIamAuthBuilder {
        ElastiCacheIamAuthBuilder {
            credentials,
            region: None,
            cache_name: None,
            user_id: None,
            serverless: false,
            clock: Clock::system(),
        }
    }

    async fn token(&self) -> Result<Credentials, CredentialError> {
        let mut query = vec![("Action", "connect"), ("User", self.user_id.as_str())];
        if self.serverless {
            query.push(("ResourceType", "ServerlessCache"));
        }
        let token = self.signer.token(&self.cache_name, &query).await?;
        Ok(Credentials::new(self.user_id.as_str(), token.text).expiring_at(token.expires_at))
    }
}

impl CredentialProvider for ElastiCacheIamAuth {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        Box::pin(self.token())
    }
}

/// Configures an [`ElastiCacheIamAuth`]; [`region`](Self::region),
/// [`cache_name`](Self::cache_name) and [`user_id`](Self::user_id) are required.
#[derive(Debug)]
pub struct ElastiCacheIamAuthBuilder {
    credentials: SharedCredentialsProvider,
    region: Option<String>,
    cache_name: Option<String>,
    user_id: Option<String>,
    serverless: bool,
    clock: Clock,
}

impl ElastiCacheIamAuthBuilder {
    /// The AWS region of the cache (`us-east-1`). Required.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The replication group id (or, for a serverless cache, its name), in lowercase as
    /// ElastiCache stores it. Required.
    pub fn cache_name(mut self, name: impl Into<String>) -> Self {
        self.cache_name = Some(name.into());
        self
    }

    /// The id of the IAM-enabled ElastiCache user (it must equal the user's name). Required.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// `true` for an ElastiCache Serverless cache (adds `ResourceType=ServerlessCache`).
    /// Default `false`.
    pub fn serverless(mut self, serverless: bool) -> Self {
        self.serverless = serverless;
        self
    }

    /// The wall clock tokens are signed at. Default [`SystemTime::now`]; tests pass a fixed
    /// time.
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Clock::new(now);
        self
    }

    /// Builds the provider.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a missing field, a `region` that is not a region name, a
    /// `cache_name` that is not lowercase letters, digits and hyphens, or an empty `user_id`.
    pub fn build(self) -> Result<ElastiCacheIamAuth, ConfigError> {
        let region = self
            .region
            .ok_or_else(|| ConfigError::new("region", "is required"))?;
        check_region(&region)?;
        let cache_name = self
            .cache_name
            .ok_or_else(|| ConfigError::new("cache_name", "is required"))?;
        if cache_name.is_empty()
            || !cache_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::new(
                "cache_name",
                format!(
                    "{cache_name:?} is not a cache name (lowercase letters, digits and hyphens)"
                ),
            ));
        }
        let user_id = self
            .user_id
            .ok_or_else(|| ConfigError::new("user_id", "is required"))?;
        if user_id.is_empty() {
            return Err(ConfigError::new("user_id", "must not be empty"));
        }
        Ok(ElastiCacheIamAuth {
            signer: Presigner {
                credentials: self.credentials,
                region,
                service: "elasticache",
                clock: self.clock,
            },
            cache_name,
            user_id,
            serverless: self.serverless,
        })
    }
}

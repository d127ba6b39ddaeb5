//! [`RdsIamAuth`]: RDS and Aurora IAM authentication tokens as database passwords.

use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::presign::{Clock, Presigner, check_region};
use super::{
    CredentialError, CredentialFuture, CredentialProvider, CredentialRequest, Credentials,
};
use crate::error::ConfigError;

/// Logs in to RDS or Aurora (Postgres, MySQL) with an IAM authentication token instead of a
/// password.
///
/// For each request it loads the AWS credentials from an SDK credentials provider and returns
/// the request's user (or the [default user](RdsIamAuthBuilder::user)) with the token for
/// `host:port`: the URL `{host}:{port}/?Action=connect&DBUser={user}` presigned with SigV4
/// (service `rds-db`, 15 minutes), byte for byte what botocore's `generate_db_auth_token`
/// and the other AWS SDKs produce. The credentials expire at the earlier of 15 minutes after
/// signing and the AWS credentials' own expiry.
///
/// Signing is local and cheap, but the credentials chain may call STS or the instance
/// metadata service, so wrap it in [`CachedCredentials`](super::CachedCredentials): a token is
/// then made once per host and user every 10 minutes.
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use aws_credential_types::provider::SharedCredentialsProvider;
/// use switchover::auth::{CachedCredentials, CredentialProvider, CredentialRequest, RdsIamAuth};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // With aws-config: `aws_config::load_defaults(BehaviorVersion::latest()).await
/// //     .credentials_provider().expect("a credentials chain")` is a SharedCredentialsProvider.
/// # let sdk_credentials = SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
/// #     "AKIDEXAMPLE", "secret", None, None, "example"));
/// let auth = RdsIamAuth::builder(sdk_credentials).region("us-east-1").build()?;
/// let provider: Arc<dyn CredentialProvider> = Arc::new(CachedCredentials::new(auth));
///
/// let host = "mydb.cluster-c1a2b3.us-east-1.rds.amazonaws.com";
/// let request = CredentialRequest::new(host, 5432).with_user("iam_user");
/// let creds = provider.credentials(&request).await?;
/// assert_eq!(creds.user(), Some("iam_user"));
/// // creds.secret().expose() is the password (TLS is required by RDS for IAM logins).
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RdsIamAuth {
    signer: Presigner,
    user: Option<String>,
}

impl RdsIamAuth {
    /// A builder signing with `credentials` (the SDK's credentials chain, or any provider).
    pub fn builder(credentials: SharedCredentialsProvider) -> RdsIamAuthBuilder {
        RdsIamAuthBuilder {
            credentials,
            region: None,
            user: None,
            clock: Clock::system(),
        }
    }

    /// The token for `user` at `host:port`.
    async fn token(
        &self,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<Credentials, CredentialError> {
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let token = self
            .signer
            .token(&authority, &[("Action", "connect"), ("DBUser", user)])
            .await?;
        Ok(Credentials::new(user, token.text).expiring_at(token.expires_at))
    }
}

impl CredentialProvider for RdsIamAuth {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        Box::pin(async move {
            let Some(user) = request.user().or(self.user.as_deref()) else {
                return Err(CredentialError::new(
                    "no database user for the RDS IAM token: configure the pool's user or RdsIamAuthBuilder::user",
                )
                .permanent());
            };
            self.token(request.host(), request.port(), user).await
        })
    }
}

/// Configures an [`RdsIamAuth`]; [`region`](RdsIamAuthBuilder::region) is required.
#[derive(Debug)]
pub struct RdsIamAuthBuilder {
    credentials: SharedCredentialsProvider,
    region: Option<String>,
    user: Option<String>,
    clock: Clock,
}

impl RdsIamAuthBuilder {
    /// The AWS region of the database (`us-east-1`). Required.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The database user to sign for when the pool's request names none. Default: none (the
    /// pool's configured user is required).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
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
    /// [`ConfigError`] for field `region` if it is missing or not a region name, or `user` if
    /// it is empty.
    pub fn build(self) -> Result<RdsIamAuth, ConfigError> {
        let region = self
            .region
            .ok_or_else(|| ConfigError::new("region", "is required"))?;
        check_region(&region)?;
        if self.user.as_deref() == Some("") {
            return Err(ConfigError::new("user", "must not be empty"));
        }
        Ok(RdsIamAuth {
            signer: Presigner {
                credentials: self.credentials,
                region,
                service: "rds-db",
                clock: self.clock,
            },
            user: self.user,
        })
    }
}

//! Logging in with a [`CredentialProvider`]: credentials for each new connection (cached by
//! the pool), asked within the connect timeout, and one more login with fresh ones when the
//! server rejects the secret — so a password rotation costs no failed operation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{PgConnection, connect_with};
use super::error::Error;
use super::hosts::HostConfig;
use crate::auth::{CredentialProvider, Credentials};

/// The pool's credential provider (wrapped in a [`CachedCredentials`](crate::auth::CachedCredentials)
/// at build) and the limit of one call to it.
#[derive(Clone)]
pub(crate) struct Login {
    provider: Arc<dyn CredentialProvider>,
    limit: Duration,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Login {
    pub(crate) fn new(provider: Arc<dyn CredentialProvider>, limit: Duration) -> Self {
        Login { provider, limit }
    }

    /// Connects to `host` with the provider's credentials; after a rejected secret
    /// (`28P01`, `28000`) tells the provider and logs in once more with fresh ones.
    pub(crate) async fn connect(
        &self,
        index: usize,
        host: &HostConfig,
        generation: u64,
        login: Duration,
    ) -> Result<PgConnection, Error> {
        let creds = self.fetch(host).await?;
        match self
            .connect_as(index, host, &creds, generation, login)
            .await
        {
            Err(e) if e.is_rejected_secret() => {
                tracing::info!(
                    target: "switchover::postgres",
                    host = %host.name,
                    "login rejected; retrying once with fresh credentials"
                );
                self.provider.rejected(&host.request, creds.secret());
                let fresh = self.fetch(host).await?;
                self.connect_as(index, host, &fresh, generation, login)
                    .await
            }
            result => result,
        }
    }

    async fn fetch(&self, host: &HostConfig) -> Result<Credentials, Error> {
        match tokio::time::timeout(self.limit, self.provider.credentials(&host.request)).await {
            Ok(Ok(creds)) => Ok(creds),
            Ok(Err(e)) => Err(Error::credentials(host.name.clone(), e)),
            Err(_) => Err(Error::credentials_timeout(host.name.clone(), self.limit)),
        }
    }

    async fn connect_as(
        &self,
        index: usize,
        host: &HostConfig,
        creds: &Credentials,
        generation: u64,
        login: Duration,
    ) -> Result<PgConnection, Error> {
        let mut config = host.config.clone();
        if let Some(user) = creds.user() {
            config.user(user);
        }
        config.password(creds.secret().expose());
        connect_with(index, host, &config, generation, login).await
    }
}

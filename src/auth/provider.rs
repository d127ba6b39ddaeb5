//! The [`CredentialProvider`] trait and the simple providers: [`StaticCredentials`] and
//! [`credentials_fn`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{CredentialError, CredentialRequest, Credentials, Secret};

/// The future a [`CredentialProvider`] returns.
pub type CredentialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Credentials, CredentialError>> + Send + 'a>>;

/// Where a pool gets the user and secret for each new connection.
///
/// The pools call [`credentials`](CredentialProvider::credentials) before every login (a new
/// connection, a reconnect), never on the path of a command, and bound the call with their
/// connect or login timeout: a provider needs no timeout of its own. Wrap a provider that is
/// slow or rate limited (a secret store, STS) in [`CachedCredentials`](super::CachedCredentials).
///
/// When the server rejects a secret the provider gave, the pool calls
/// [`rejected`](CredentialProvider::rejected) and asks once more, so a cache can drop the old
/// secret and a rotation costs no failed operation.
///
/// Implemented for `Arc<P>` and `Box<P>`, so `Arc<dyn CredentialProvider>` is a provider.
pub trait CredentialProvider: Send + Sync + 'static {
    /// Credentials to log in to `request.host():request.port()`.
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a>;

    /// The server rejected `secret`, which this provider returned for `request`. The default
    /// does nothing; a cache drops the secret so the next call fetches a new one.
    fn rejected(&self, request: &CredentialRequest<'_>, secret: &Secret) {
        let _ = (request, secret);
    }
}

impl<P: CredentialProvider + ?Sized> CredentialProvider for Arc<P> {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        (**self).credentials(request)
    }

    fn rejected(&self, request: &CredentialRequest<'_>, secret: &Secret) {
        (**self).rejected(request, secret)
    }
}

impl<P: CredentialProvider + ?Sized> CredentialProvider for Box<P> {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        (**self).credentials(request)
    }

    fn rejected(&self, request: &CredentialRequest<'_>, secret: &Secret) {
        (**self).rejected(request, secret)
    }
}

/// The same credentials for every request: a password from the configuration.
///
/// ```
/// use switchover::auth::{Credentials, StaticCredentials};
///
/// let provider = StaticCredentials::new(Credentials::new("app", "s3cret"));
/// assert!(!format!("{provider:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug)]
pub struct StaticCredentials(Credentials);

impl StaticCredentials {
    /// A provider that always returns `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        StaticCredentials(credentials)
    }
}

impl From<Credentials> for StaticCredentials {
    fn from(credentials: Credentials) -> Self {
        StaticCredentials(credentials)
    }
}

impl CredentialProvider for StaticCredentials {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        let c = self.0.clone();
        Box::pin(async move { Ok(c) })
    }
}

/// A provider from a closure: `f` gets an owned copy of the request and returns a future of
/// the credentials.
///
/// ```
/// use switchover::auth::{credentials_fn, CredentialError, Credentials};
///
/// # async fn read_vault(_path: &str) -> Result<String, std::io::Error> { Ok(String::new()) }
/// let provider = credentials_fn(|req| async move {
///     let path = format!("db/{}/{}", req.host(), req.user().unwrap_or("app"));
///     let password = read_vault(&path).await.map_err(CredentialError::from_source)?;
///     Ok(Credentials::new(req.user().unwrap_or("app"), password))
/// });
/// # let _ = provider;
/// ```
pub fn credentials_fn<F, Fut>(f: F) -> FnCredentials<F>
where
    F: Fn(CredentialRequest<'static>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
{
    FnCredentials(f)
}

/// The provider [`credentials_fn`] returns.
#[derive(Clone)]
pub struct FnCredentials<F>(F);

impl<F> fmt::Debug for FnCredentials<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnCredentials(..)")
    }
}

impl<F, Fut> CredentialProvider for FnCredentials<F>
where
    F: Fn(CredentialRequest<'static>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credentials, CredentialError>> + Send + 'static,
{
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        Box::pin((self.0)(request.clone().into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_provider<P: CredentialProvider>(_: &P) {}

    #[tokio::test]
    async fn static_fn_and_shared_providers_answer() {
        let req = CredentialRequest::new("db", 5432).with_user("app");
        let fixed = StaticCredentials::new(Credentials::new("app", "pw"));
        assert_eq!(
            fixed.credentials(&req).await.unwrap(),
            Credentials::new("app", "pw")
        );

        let f = credentials_fn(|r| async move {
            Ok(Credentials::new(
                r.user().unwrap_or("none"),
                format!("{}:{}", r.host(), r.port()),
            ))
        });
        let got = f.credentials(&req).await.unwrap();
        assert_eq!(
            (got.user(), got.secret().expose()),
            (Some("app"), "db:5432")
        );

        let shared: Arc<dyn CredentialProvider> = Arc::new(fixed);
        assert_provider(&shared);
        assert_eq!(
            shared.credentials(&req).await.unwrap().secret().expose(),
            "pw"
        );
        shared.rejected(&req, &Secret::new("pw")); // the default does nothing
        let boxed: Box<dyn CredentialProvider> = Box::new(f);
        assert_eq!(
            boxed.credentials(&req).await.unwrap().secret().expose(),
            "db:5432"
        );
    }
}

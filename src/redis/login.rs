//! Logging in to a node or a sentinel: fixed credentials or a [`CredentialProvider`] asked for
//! each new connection (bounded by the connect timeout), the one retry with a fresh secret
//! after a rejection, and telling a rejected login or a failed TLS handshake apart from an
//! unreachable node.
//!
//! redis-rs has a streaming credentials provider of its own (feature
//! `token-based-authentication`), but it re-authenticates open connections on a timer and
//! knows nothing of a secret the server just refused. The pool instead sets the user and
//! password of redis-rs's `RedisConnectionInfo` for each new connection (redis-rs sends `AUTH`
//! in its handshake, before `SELECT`), so one mechanism serves shared, dedicated, pub/sub and
//! Sentinel connections alike.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use redis::{ErrorKind, RedisConnectionInfo, RedisError, RedisResult};

use super::config::NodeAddr;
use crate::auth::{CredentialProvider, CredentialRequest, Credentials, Secret};

/// How one kind of server (the data nodes, or the sentinels) is logged in to: a fixed user and
/// password, or a provider asked for every new connection.
#[derive(Clone, Default)]
pub(crate) struct Login {
    /// The configured user: passed to the provider, and used when it names none.
    pub(crate) username: Option<String>,
    /// A fixed password (ignored when a provider is set).
    pub(crate) password: Option<Secret>,
    pub(crate) provider: Option<Arc<dyn CredentialProvider>>,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("provider", &self.provider.as_ref().map(|_| ".."))
            .finish()
    }
}

/// The settings of one login: what redis-rs connects with, and the secret in them.
pub(crate) struct LoginSettings {
    pub(crate) info: RedisConnectionInfo,
    secret: Option<Secret>,
}

/// Why a server that answered could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoginFailure {
    /// The server rejected the credentials (`WRONGPASS`, `NOAUTH`, `-ERR invalid password`),
    /// or the provider refused for good.
    Auth,
    /// The TLS handshake failed: a refused certificate, a client certificate the server
    /// requires, TLS against a plaintext port or plaintext against a TLS-only one.
    Tls,
}

impl Login {
    /// `true` with a credential provider: each new connection may log in with another secret.
    pub(crate) fn is_dynamic(&self) -> bool {
        self.provider.is_some()
    }

    fn request<'a>(&'a self, addr: &'a NodeAddr) -> CredentialRequest<'a> {
        let r = CredentialRequest::new(addr.host(), addr.port());
        match &self.username {
            Some(u) => r.with_user(u.as_str()),
            None => r,
        }
    }

    /// The settings of a new connection to `addr` with database `db`: the fixed credentials,
    /// or the provider's answer within `timeout`.
    async fn settings(
        &self,
        addr: &NodeAddr,
        db: i64,
        timeout: Duration,
    ) -> RedisResult<LoginSettings> {
        let mut info = RedisConnectionInfo::default().set_db(db);
        let Some(p) = &self.provider else {
            if let Some(u) = &self.username {
                info = info.set_username(u);
            }
            if let Some(pw) = &self.password {
                info = info.set_password(pw.expose());
            }
            return Ok(LoginSettings {
                info,
                secret: self.password.clone(),
            });
        };
        let request = self.request(addr);
        let creds = match tokio::time::timeout(timeout, p.credentials(&request)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if e.is_permanent() => {
                return Err(RedisError::from((
                    ErrorKind::AuthenticationFailed,
                    "the credential provider refused",
                    format!("for {addr}: {e}"),
                )));
            }
            Ok(Err(e)) => {
                return Err(RedisError::from(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the credential provider failed for {addr}: {e}"),
                )));
            }
            Err(_) => {
                return Err(RedisError::from(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the credential provider did not answer for {addr} within {timeout:?}"),
                )));
            }
        };
        Ok(Self::with(info, &creds, self.username.as_deref()))
    }

    fn with(mut info: RedisConnectionInfo, c: &Credentials, user: Option<&str>) -> LoginSettings {
        if let Some(u) = c.user().or(user) {
            info = info.set_username(u);
        }
        info = info.set_password(c.secret().expose());
        LoginSettings {
            info,
            secret: Some(c.secret().clone()),
        }
    }

    /// Opens something to `addr` with `open`, given the settings of a login (credentials
    /// asked within `timeout`) and `db`. With a provider, a rejected login is reported to it
    /// and tried once more with its next answer.
    pub(crate) async fn open<T, F, Fut>(
        &self,
        addr: &NodeAddr,
        db: i64,
        timeout: Duration,
        open: F,
    ) -> RedisResult<T>
    where
        F: Fn(RedisConnectionInfo) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let s = self.settings(addr, db, timeout).await?;
        let secret = s.secret.clone();
        match open(s.info).await {
            Err(e) if self.is_dynamic() && is_rejected_login(&e) => {
                self.rejected(addr, secret.as_ref());
                let fresh = self.settings(addr, db, timeout).await?;
                open(fresh.info).await
            }
            other => other,
        }
    }

    /// Tells the provider that the server rejected `secret` for `addr`, so its next answer is
    /// a fresh one.
    pub(crate) fn rejected(&self, addr: &NodeAddr, secret: Option<&Secret>) {
        if let (Some(p), Some(s)) = (&self.provider, secret) {
            tracing::info!(target: "switchover::redis", node = %addr, "login rejected; asking the credential provider again");
            p.rejected(&self.request(addr), s);
        }
    }
}

/// `true` when the server rejected the credentials.
pub(crate) fn is_rejected_login(e: &RedisError) -> bool {
    login_failure(e) == Some(LoginFailure::Auth)
}

/// Whether `e` says the server refused this client (credentials or TLS) rather than being
/// unreachable or busy.
pub(crate) fn login_failure(e: &RedisError) -> Option<LoginFailure> {
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || (e.code() == Some("ERR") && e.detail().is_some_and(|d| d.contains("invalid password")))
    {
        return Some(LoginFailure::Auth);
    }
    tls_failure(e).then_some(LoginFailure::Tls)
}

/// A failed TLS handshake: rustls's error inside the I/O error (a refused certificate, an
/// alert from the server, a plaintext answer to TLS).
fn tls_failure(e: &RedisError) -> bool {
    if super::connect::is_tls_failure(e) {
        return true;
    }
    let Some(io) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()) else {
        return false;
    };
    #[cfg(feature = "tls")]
    if io
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    {
        return true;
    }
    let _ = io;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_logins_are_told_apart_from_other_errors() {
        let wrongpass = redis::parse_redis_value(
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        )
        .unwrap();
        let redis::Value::ServerError(e) = wrongpass else {
            panic!("an error reply")
        };
        assert_eq!(
            login_failure(&RedisError::from(e)),
            Some(LoginFailure::Auth)
        );
        let old = redis::parse_redis_value(b"-ERR invalid password\r\n").unwrap();
        let redis::Value::ServerError(e) = old else {
            panic!("an error reply")
        };
        assert_eq!(
            login_failure(&RedisError::from(e)),
            Some(LoginFailure::Auth)
        );
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(login_failure(&refused), None);
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(login_failure(&auth), Some(LoginFailure::Auth));
    }
}

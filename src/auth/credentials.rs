//! [`Credentials`] (what a provider returns) and [`CredentialRequest`] (what it is asked for).

use std::borrow::Cow;
use std::time::SystemTime;

use super::Secret;

/// A user name and a secret to log in with, and when the secret stops being accepted.
///
/// `Debug` shows the user and the expiry; the secret prints as `Secret(***)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    user: Option<String>,
    secret: Secret,
    expires_at: Option<SystemTime>,
}

impl Credentials {
    /// `user` logging in with `secret`, which does not expire.
    pub fn new(user: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Credentials {
            user: Some(user.into()),
            secret: secret.into(),
            expires_at: None,
        }
    }

    /// A secret alone (Redis `AUTH <password>`); the pool logs in as its configured user, if
    /// any.
    pub fn password_only(secret: impl Into<Secret>) -> Self {
        Credentials {
            user: None,
            secret: secret.into(),
            expires_at: None,
        }
    }

    /// The same credentials, no longer accepted from `at` (an IAM token's expiry). Only new
    /// logins need a valid secret: a connection made before `at` stays open.
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The user to log in as, if the provider chose one.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The password or token.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// When the secret stops being accepted; `None` if it does not expire.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

/// What a pool asks a [`CredentialProvider`](super::CredentialProvider) for: credentials to
/// log in to `host:port`, as the configured user if there is one.
///
/// The strings are borrowed from the pool's configuration (or owned, after
/// [`into_owned`](CredentialRequest::into_owned)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialRequest<'a> {
    host: Cow<'a, str>,
    port: u16,
    user: Option<Cow<'a, str>>,
}

impl<'a> CredentialRequest<'a> {
    /// A request for `host:port` with no configured user.
    pub fn new(host: impl Into<Cow<'a, str>>, port: u16) -> Self {
        CredentialRequest {
            host: host.into(),
            port,
            user: None,
        }
    }

    /// The same request for the configured `user`.
    pub fn with_user(mut self, user: impl Into<Cow<'a, str>>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// The host the connection goes to, as configured (a name or an address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the connection goes to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user configured on the pool, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A copy that owns its strings, to move into a `'static` future.
    pub fn into_owned(self) -> CredentialRequest<'static> {
        CredentialRequest {
            host: Cow::Owned(self.host.into_owned()),
            port: self.port,
            user: self.user.map(|u| Cow::Owned(u.into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn debug_shows_user_and_expiry_but_not_the_secret() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(60);
        let c = Credentials::new("app", "tok3n").expiring_at(at);
        let shown = format!("{c:?}");
        assert!(!shown.contains("tok3n"), "{shown}");
        assert_eq!(
            shown,
            format!(
                "Credentials {{ user: Some(\"app\"), secret: Secret(***), expires_at: Some({at:?}) }}"
            )
        );
        assert_eq!(c.user(), Some("app"));
        assert_eq!(c.secret().expose(), "tok3n");
        assert_eq!(c.expires_at(), Some(at));
        let p = Credentials::password_only("pw");
        assert_eq!((p.user(), p.expires_at()), (None, None));
    }

    #[test]
    fn request_accessors_and_owned_copy() {
        let host = String::from("db.example");
        let r = CredentialRequest::new(host.as_str(), 5432).with_user("app");
        assert_eq!(
            (r.host(), r.port(), r.user()),
            ("db.example", 5432, Some("app"))
        );
        let owned: CredentialRequest<'static> = r.clone().into_owned();
        drop(host);
        assert_eq!(owned.host(), "db.example");
        assert_eq!(owned.user(), Some("app"));
        assert_eq!(CredentialRequest::new("h", 1).user(), None);
    }
}

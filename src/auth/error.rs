//! [`CredentialError`]: a provider could not produce credentials.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::error::{Classification, Classify};

/// A [`CredentialProvider`](super::CredentialProvider) could not produce credentials (the
/// secret store or the AWS credential chain failed, or refused).
///
/// Opaque: a message, an optional cause in [`source`](StdError::source), and whether it is
/// [permanent](CredentialError::is_permanent). Cloning is cheap (the cause is shared), so one
/// failed fetch can be handed to every caller that waited for it.
///
/// It [classifies](Classify) as transient and not executed (nothing reached the database), or
/// permanent once marked so. `Display` is the message only, never a secret: the providers of
/// this crate never put one in it, and yours must not either.
#[derive(Clone)]
pub struct CredentialError {
    message: Cow,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
    permanent: bool,
}

type Cow = std::borrow::Cow<'static, str>;

impl CredentialError {
    /// An error that says `message`.
    pub fn new(message: impl Into<Cow>) -> Self {
        CredentialError {
            message: message.into(),
            source: None,
            permanent: false,
        }
    }

    /// An error caused by `source`; `Display` says "could not get credentials" and `source()`
    /// returns the cause.
    pub fn from_source(source: impl StdError + Send + Sync + 'static) -> Self {
        CredentialError::new("could not get credentials").with_source(source)
    }

    /// The same error with `source` as its cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The same error, marked permanent: asking again will not help (no credentials are
    /// configured, the role may not log in). Pools stop retrying the login at once.
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }

    /// `true` if asking again will not help.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl fmt::Debug for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialError")
            .field("message", &self.message)
            .field("source", &self.source)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for CredentialError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl Classify for CredentialError {
    fn classify(&self) -> Classification {
        if self.permanent {
            Classification::permanent().not_executed()
        } else {
            Classification::transient().not_executed()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::{ErrorClass, Execution};

    use super::*;

    #[test]
    fn display_is_this_layer_and_the_cause_is_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "sts timed out");
        let e = CredentialError::from_source(io);
        assert_eq!(e.to_string(), "could not get credentials");
        assert_eq!(
            e.source().map(|s| s.to_string()).as_deref(),
            Some("sts timed out")
        );
        let c = e.classify();
        assert_eq!(
            (c.class(), c.execution()),
            (ErrorClass::Transient, Execution::NotExecuted)
        );

        let p = CredentialError::new("no credentials configured").permanent();
        assert!(p.is_permanent());
        assert_eq!(p.classify().class(), ErrorClass::Permanent);
        assert!(p.source().is_none());
        assert_eq!(
            format!("{p:?}"),
            "CredentialError { message: \"no credentials configured\", source: None, permanent: true }"
        );
    }
}

//! Transport errors of HTTP clients: refused before sending, or lost after.

use std::error::Error as StdError;

use crate::error::{Classification, Classifier, Classify};

/// Classifies an HTTP client's transport error by walking its [`source`](StdError::source)
/// chain (hyper, hyper-util and reqwest all keep the I/O error there):
///
/// - an I/O error decides: connection refused, not connected or address not available mean
///   the request surely did not reach the server (transient, **not executed**: retried even
///   for a `POST`); invalid input or data is permanent; any other (reset, broken pipe, timed
///   out, unexpected end) is transient and **may have executed**;
/// - an `http` crate error (a malformed URI or header) is permanent;
/// - anything else is transient and may have executed.
///
/// ```
/// use std::io;
/// use switchover::Execution;
///
/// let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
/// let c = switchover::http::classify_error(&refused);
/// assert_eq!(c.execution(), Execution::NotExecuted);
/// ```
pub fn classify_error(error: &(dyn StdError + 'static)) -> Classification {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.classify();
        }
        if e.is::<http::Error>()
            || e.is::<http::uri::InvalidUri>()
            || e.is::<http::header::InvalidHeaderValue>()
            || e.is::<http::header::InvalidHeaderName>()
        {
            return Classification::permanent();
        }
        cur = e.source();
    }
    Classification::transient()
}

/// The [`Classifier`] of [`classify_error`], for any error type of an HTTP client.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransportErrors;

impl<E: StdError + 'static> Classifier<E> for TransportErrors {
    fn classify(&self, error: &E) -> Classification {
        classify_error(error)
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::io;

    use super::*;
    use crate::error::{ErrorClass, Execution};

    /// A client error that wraps its cause, as hyper-util's does.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn finds_the_cause_in_the_chain() {
        let refused = Wrapped(Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)));
        let c = classify_error(&refused);
        assert_eq!(
            (c.class(), c.execution()),
            (ErrorClass::Transient, Execution::NotExecuted)
        );

        let reset = Wrapped(Box::new(io::Error::from(io::ErrorKind::ConnectionReset)));
        assert_eq!(
            classify_error(&reset).execution(),
            Execution::MayHaveExecuted
        );

        let bad_uri = Wrapped(Box::new("http://[::1".parse::<http::Uri>().unwrap_err()));
        assert_eq!(classify_error(&bad_uri).class(), ErrorClass::Permanent);

        let unknown = Wrapped("something broke".into());
        let c = classify_error(&unknown);
        assert_eq!(
            (c.class(), c.execution()),
            (ErrorClass::Transient, Execution::MayHaveExecuted)
        );
    }
}

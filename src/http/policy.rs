//! [`HttpPolicy`]: the `tower` layer's [`Policy`] for HTTP services.

use http::{Request, Response};

use super::method::is_idempotent;
use super::status::classify_response;
use super::transport::TransportErrors;
use crate::error::{Classification, Classifier};
use crate::tower::Policy;

/// The [`Policy`] of HTTP services (features `tower` and `http`):
///
/// - idempotent: `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`, and any request with an
///   `Idempotency-Key` header or the [`Idempotent`](super::Idempotent) extension
///   ([`is_idempotent`]);
/// - responses: `408`, `429` and `5xx` are failures, with `Retry-After` honoured on `429` and
///   `503`; other statuses go to the caller as they are ([`classify_response`]);
/// - errors: by the client's transport error ([`classify_error`](super::classify_error):
///   connection refused is not executed), or by a classifier of your own with
///   [`classify_errors_with`](Self::classify_errors_with).
///
/// ```
/// use switchover::http::HttpPolicy;
/// use switchover::tower::Policy;
///
/// type Req = http::Request<()>;
/// type Res = http::Response<()>;
/// let policy = HttpPolicy::new();
/// let post = Req::post("/v1/charges").body(()).unwrap();
/// let unavailable = Res::builder().status(503).body(()).unwrap();
/// assert!(!Policy::<Req, Res, std::io::Error>::is_idempotent(&policy, &post));
/// let c = Policy::<Req, Res, std::io::Error>::classify_response(&policy, &unavailable);
/// assert!(c.is_some_and(|c| c.class().is_retryable()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpPolicy<C = TransportErrors> {
    errors: C,
}

impl HttpPolicy {
    /// The policy above, with transport errors read by [`TransportErrors`].
    pub const fn new() -> Self {
        HttpPolicy {
            errors: TransportErrors,
        }
    }
}

impl<C> HttpPolicy<C> {
    /// Classifies the service's errors with `classifier` (e.g. for a `BoxError` stack:
    /// `|e: &BoxError| switchover::http::classify_error(e.as_ref())`).
    pub fn classify_errors_with<C2>(self, classifier: C2) -> HttpPolicy<C2> {
        HttpPolicy { errors: classifier }
    }
}

impl<B, RB, E, C> Policy<Request<B>, Response<RB>, E> for HttpPolicy<C>
where
    C: Classifier<E>,
{
    #[inline]
    fn is_idempotent(&self, request: &Request<B>) -> bool {
        is_idempotent(request)
    }

    #[inline]
    fn classify_response(&self, response: &Response<RB>) -> Option<Classification> {
        if response.status().is_success() {
            return None;
        }
        classify_response(response)
    }

    fn classify_error(&self, error: &E) -> Classification {
        self.errors.classify(error)
    }
}

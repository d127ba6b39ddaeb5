//! The default idempotency of a request: by method, by `Idempotency-Key`, or because the
//! caller says so.

use http::{HeaderName, Method, Request};

/// The header that makes a `POST` or `PATCH` safe to repeat: the server applies a request
/// with the same key once (IETF draft `Idempotency-Key`, used by Stripe, Adyen, PayPal).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request extension by which the caller declares a request idempotent whatever its method:
///
/// ```
/// use switchover::http::{Idempotent, is_idempotent};
///
/// let mut req = http::Request::post("/v1/refunds/42/cancel").body(()).unwrap();
/// assert!(!is_idempotent(&req));
/// req.extensions_mut().insert(Idempotent);
/// assert!(is_idempotent(&req));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Idempotent;

/// `true` for the methods RFC 9110 defines as idempotent: `GET`, `HEAD`, `OPTIONS`, `TRACE`,
/// `PUT` and `DELETE`.
pub fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether running `request` twice is harmless: an idempotent method, an
/// [`Idempotency-Key`](IDEMPOTENCY_KEY) header, or the [`Idempotent`] extension. A `POST` or
/// `PATCH` without either is retried only when it surely did not reach the server.
pub fn is_idempotent<B>(request: &Request<B>) -> bool {
    is_idempotent_method(request.method())
        || request.headers().contains_key(IDEMPOTENCY_KEY)
        || request.extensions().get::<Idempotent>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_keys_and_marks() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            let req = Request::builder().method(m).body(()).unwrap();
            assert!(is_idempotent(&req), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT"] {
            let req = Request::builder().method(m).body(()).unwrap();
            assert!(!is_idempotent(&req), "{m}");
        }
        let keyed = Request::post("/")
            .header("Idempotency-Key", "k-1")
            .body(())
            .unwrap();
        assert!(is_idempotent(&keyed));
        let mut marked = Request::patch("/").body(()).unwrap();
        marked.extensions_mut().insert(Idempotent);
        assert!(is_idempotent(&marked));
    }
}

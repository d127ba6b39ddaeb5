//! What a response status means for retrying and for the upstream's health.

use std::time::SystemTime;

use http::{HeaderMap, Response, StatusCode};

use super::retry_after::retry_after;
use crate::error::Classification;

/// The classification of a response with `status`, without looking at its headers; `None` for
/// a success (`1xx`, `2xx`, `3xx`).
///
/// | status | classification |
/// |---|---|
/// | `408 Request Timeout` | transient, not executed (the server gave up reading the request) |
/// | `429 Too Many Requests` | throttled, not executed (refused under a rate limit) |
/// | other `4xx` | permanent (the caller's fault: never retried, never held against the upstream) |
/// | `501`, `505`, `511` | permanent (the server will never accept this request) |
/// | other `5xx` | transient, may have executed (a `502` or `504` may come after the upstream ran it) |
///
/// ```
/// use http::StatusCode;
/// use switchover::{ErrorClass, Execution};
///
/// let c = switchover::http::classify_status(StatusCode::TOO_MANY_REQUESTS).unwrap();
/// assert_eq!((c.class(), c.execution()), (ErrorClass::Throttled, Execution::NotExecuted));
/// assert!(switchover::http::classify_status(StatusCode::OK).is_none());
/// ```
pub fn classify_status(status: StatusCode) -> Option<Classification> {
    let c = match status.as_u16() {
        408 => Classification::transient().not_executed(),
        429 => Classification::throttled().not_executed(),
        400..=499 | 501 | 505 | 511 => Classification::permanent(),
        500..=599 => Classification::transient(),
        _ => return None,
    };
    Some(c)
}

/// [`classify_status`] plus the server's `Retry-After` for `429` and `503` (delta-seconds or an
/// HTTP-date, read against the system clock now). The retry executor waits that long instead
/// of its backoff, cut to its `max_delay` and never past its deadline.
///
/// ```
/// use std::time::Duration;
/// use switchover::http::classify_response;
///
/// let res = http::Response::builder().status(503).header("retry-after", "2").body(()).unwrap();
/// assert_eq!(classify_response(&res).unwrap().retry_after(), Some(Duration::from_secs(2)));
/// ```
pub fn classify_response<B>(response: &Response<B>) -> Option<Classification> {
    classify_parts(response.status(), response.headers(), SystemTime::now())
}

/// [`classify_response`] from a status and headers, with `now` for an HTTP-date `Retry-After`.
pub fn classify_parts(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Classification> {
    let c = classify_status(status)?;
    if matches!(status.as_u16(), 429 | 503)
        && let Some(delay) = retry_after(headers, now)
    {
        return Some(c.with_retry_after(delay));
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::{ErrorClass, Execution};

    fn class(code: u16) -> Option<(ErrorClass, Execution)> {
        classify_status(StatusCode::from_u16(code).unwrap()).map(|c| (c.class(), c.execution()))
    }

    #[test]
    fn statuses_map_to_the_documented_classes() {
        use ErrorClass::*;
        use Execution::*;
        for ok in [100, 200, 201, 204, 301, 304, 399] {
            assert_eq!(class(ok), None, "{ok}");
        }
        assert_eq!(class(408), Some((Transient, NotExecuted)));
        assert_eq!(class(429), Some((Throttled, NotExecuted)));
        for caller in [400, 401, 403, 404, 409, 412, 422, 451, 499, 501, 505, 511] {
            assert_eq!(
                class(caller),
                Some((Permanent, MayHaveExecuted)),
                "{caller}"
            );
        }
        for server in [500, 502, 503, 504, 599] {
            assert_eq!(
                class(server),
                Some((Transient, MayHaveExecuted)),
                "{server}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_only_for_429_and_503() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let now = SystemTime::now();
        let ra = |code| {
            classify_parts(StatusCode::from_u16(code).unwrap(), &h, now)
                .and_then(|c| c.retry_after())
        };
        assert_eq!(ra(429), Some(Duration::from_secs(7)));
        assert_eq!(ra(503), Some(Duration::from_secs(7)));
        assert_eq!(ra(500), None);
        assert_eq!(ra(502), None);
        assert_eq!(ra(200), None);
    }
}

//! The `Retry-After` header: delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// The delay a `Retry-After` header asks for, read against `now`: `"120"` is two minutes, an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`, or the obsolete RFC 850 and asctime forms) is
/// the time until then, zero for a date already past. `None` when the header is absent or
/// malformed (a negative or fractional number, an unreadable date).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
/// assert_eq!(switchover::http::retry_after(&headers, now), Some(Duration::from_secs(10)));
/// headers.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(switchover::http::retry_after(&headers, now), Some(Duration::from_secs(120)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds too large for a u64 are "very long": the executor's ceiling cuts them.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn reads_seconds_and_every_date_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770); // 06 Nov 1994 08:49:30
        assert_eq!(retry_after(&with("0"), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&with(" 30 "), now),
            Some(Duration::from_secs(30))
        );
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&with(date), now),
                Some(Duration::from_secs(7)),
                "{date}"
            );
        }
        assert_eq!(
            retry_after(&with("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            retry_after(&with("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn ignores_what_is_not_a_delay() {
        let now = SystemTime::now();
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        for bad in ["-5", "1.5", "soon", "", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(retry_after(&with(bad), now), None, "{bad:?}");
        }
    }
}

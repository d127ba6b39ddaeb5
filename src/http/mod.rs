//! HTTP-aware classification (feature `http`): what a status, a `Retry-After`, a method and a
//! transport error mean for retrying, in the crate's [`Classification`](crate::Classification)
//! vocabulary. With the `tower` feature too: [`HttpPolicy`] for the [`tower`](crate::tower)
//! layer and [`BaseUrl`] to point one client at several upstreams.
//!
//! - **Statuses** ([`classify_status`], [`classify_response`]): `408` transient and `429`
//!   throttled, both not executed; other `4xx` permanent; `5xx` transient (may have executed),
//!   except the permanent `501`, `505`, `511`.
//! - **`Retry-After`** ([`retry_after`]) on `429` and `503`, in both forms (delta-seconds and
//!   HTTP-date); the executor waits that long instead of its backoff, cut to its `max_delay`
//!   and never past its deadline.
//! - **Idempotency** ([`is_idempotent`]): `GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`;
//!   `POST` and `PATCH` only with an [`Idempotency-Key`](IDEMPOTENCY_KEY) header or the
//!   [`Idempotent`] extension.
//! - **Transport errors** ([`classify_error`]): connection refused never reached the server
//!   (not executed, so even a `POST` is retried); other I/O failures may have executed.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use switchover::{ErrorClass, Execution};
//!
//! let res = http::Response::builder()
//!     .status(429)
//!     .header("retry-after", "3")
//!     .body(())
//!     .unwrap();
//! let c = switchover::http::classify_response(&res).unwrap();
//! assert_eq!(c.class(), ErrorClass::Throttled);
//! assert_eq!(c.execution(), Execution::NotExecuted);
//! assert_eq!(c.retry_after(), Some(Duration::from_secs(3)));
//! ```

mod method;
mod retry_after;
mod status;
mod transport;

#[cfg(feature = "tower")]
mod base;
#[cfg(feature = "tower")]
mod policy;

pub use method::{IDEMPOTENCY_KEY, Idempotent, is_idempotent, is_idempotent_method};
pub use retry_after::retry_after;
pub use status::{classify_parts, classify_response, classify_status};
pub use transport::{TransportErrors, classify_error};

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use base::BaseUrl;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use policy::HttpPolicy;

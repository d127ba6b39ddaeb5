//! TLS for the pools' connections: what a client trusts, how much it verifies, which
//! certificate it presents — one set of options for every adapter, built on rustls with the
//! ring provider.
//!
//! [`TlsOptions`] says it; [`TlsOptions::load`] reads and checks every file at once (an
//! unreadable or empty CA bundle, garbage PEM, a key without its certificate or the reverse
//! is a [`ConfigError`](crate::ConfigError) naming the field) and gives a [`TlsConfig`]: the
//! shared [`rustls::ClientConfig`] and the server name to use for each host.
//!
//! | [`Verification`] | checks | libpq `sslmode` |
//! |---|---|---|
//! | [`Full`](Verification::Full) | chain to a trusted root, validity dates, the host name (or IP address) | `verify-full` |
//! | [`CaOnly`](Verification::CaOnly) | chain to a trusted root, validity dates | `verify-ca`, `require` with a root certificate |
//! | [`None`](Verification::None) | nothing about the certificate (encrypted, not authenticated) | `require` without a root certificate |
//!
//! At every level the TLS handshake's signatures are checked with the provider's algorithms.
//!
//! Roots ([`Roots`]): a PEM bundle (file or bytes, e.g. the RDS global bundle), the platform
//! store, or the webpki (Mozilla) set compiled in.
//!
//! # Not supported
//!
//! - Certificate revocation (CRLs, OCSP): not checked.
//! - Encrypted private keys (a key password): refused at load; decrypt the key beforehand.
//! - Raw public keys, TLS 1.0/1.1, and providers other than ring.
//! - Certificates are read once at load: a renewed client certificate needs a new pool.

mod config;
mod options;
mod pem;
mod verify;

pub use config::TlsConfig;
pub use options::{Roots, TlsOptions, Verification};

#[cfg(all(test, feature = "testing"))]
mod tests;

//! [`TlsOptions`]: what a TLS client trusts, how much it verifies and who it says it is;
//! loaded and checked by [`TlsOptions::load`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};

use super::config::TlsConfig;
use super::pem::{self, PemSource};
use super::verify::NoNameCheck;
use crate::error::ConfigError;

/// The certificate authorities a client trusts.
#[non_exhaustive]
#[derive(Clone, Default)]
pub enum Roots {
    /// The platform's store (on Linux the distribution's bundle, e.g.
    /// `/etc/ssl/certs/ca-certificates.crt`; `SSL_CERT_FILE` / `SSL_CERT_DIR` override it), read
    /// at load. libpq spells it `sslrootcert=system`.
    #[default]
    Platform,
    /// The Mozilla root set compiled into the binary (`webpki-roots`): the same everywhere, no
    /// file needed, updated with the crate.
    Webpki,
    /// A PEM bundle on disk (e.g. the RDS global bundle), read at load.
    PemFile(PathBuf),
    /// A PEM bundle in memory.
    Pem(Vec<u8>),
}

impl fmt::Debug for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::Platform => f.write_str("Platform"),
            Roots::Webpki => f.write_str("Webpki"),
            Roots::PemFile(p) => f.debug_tuple("PemFile").field(p).finish(),
            Roots::Pem(b) => write!(f, "Pem({} bytes)", b.len()),
        }
    }
}

/// How much of the server's certificate is checked. The handshake signatures are checked at
/// every level (rustls always proves the server holds the key of the certificate it sent).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Verification {
    /// The chain leads to a trusted root, is valid now, and the leaf is valid for the server
    /// name (a DNS name against DNS SANs, an IP address against IP SANs). libpq's
    /// `verify-full`.
    #[default]
    Full,
    /// The chain leads to a trusted root and is valid now; the names are not checked. libpq's
    /// `verify-ca` (and `require` with a root certificate).
    CaOnly,
    /// Any certificate is accepted: encrypted, not authenticated (anyone on the path can
    /// impersonate the server). libpq's `require` without a root certificate. The roots are
    /// not loaded.
    None,
}

/// What a TLS client trusts, how much it verifies and which certificate it presents:
/// adapter-neutral options, turned into a [`rustls::ClientConfig`] (ring provider) by
/// [`load`](Self::load), which reads and checks every file.
///
/// | option | default |
/// |---|---|
/// | [`roots`](Self::roots) | [`Roots::Platform`] |
/// | [`verification`](Self::verification) | [`Verification::Full`] |
/// | [`client_cert_file`](Self::client_cert_file) / [`client_key_file`](Self::client_key_file) | none (no client certificate) |
/// | [`server_name`](Self::server_name) | the host each connection goes to |
///
/// ```
/// # fn demo() -> Result<(), switchover::ConfigError> {
/// use switchover::tls::{Roots, TlsOptions, Verification};
///
/// let tls = TlsOptions::new()
///     .roots(Roots::Webpki)
///     .verification(Verification::Full)
///     .load()?;
/// let name = tls.server_name("db.example.com")?;
/// # let _ = name; Ok(()) }
/// ```
#[must_use]
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    roots: Roots,
    verification: Verification,
    client_cert: Option<PemSource>,
    client_key: Option<PemSource>,
    server_name: Option<String>,
}

impl TlsOptions {
    /// The defaults: platform roots, full verification, no client certificate.
    pub fn new() -> Self {
        TlsOptions::default()
    }

    /// The certificate authorities trusted.
    pub fn roots(mut self, roots: Roots) -> Self {
        self.roots = roots;
        self
    }

    /// How much of the server's certificate is checked.
    pub fn verification(mut self, verification: Verification) -> Self {
        self.verification = verification;
        self
    }

    /// The client certificate chain (PEM file, leaf first) presented for mutual TLS; needs
    /// [`client_key_file`](Self::client_key_file) (or [`client_key_pem`](Self::client_key_pem)).
    pub fn client_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_cert = Some(PemSource::File(path.into()));
        self
    }

    /// The private key (PEM file: PKCS#8, PKCS#1 or SEC1, not encrypted) of the client
    /// certificate.
    pub fn client_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_key = Some(PemSource::File(path.into()));
        self
    }

    /// The client certificate chain as PEM bytes.
    pub fn client_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some(PemSource::Bytes(pem.into()));
        self
    }

    /// The client certificate's private key as PEM bytes (never printed by `Debug`).
    pub fn client_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_key = Some(PemSource::Bytes(pem.into()));
        self
    }

    /// The name sent as SNI and verified against the certificate for every connection,
    /// instead of the host connected to (e.g. connecting to an IP address behind a
    /// certificate for a DNS name).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The trusted roots.
    pub fn get_roots(&self) -> &Roots {
        &self.roots
    }

    /// The verification level.
    pub fn get_verification(&self) -> Verification {
        self.verification
    }

    /// Reads and checks every input and builds the client configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `roots` when the bundle cannot be read, is not PEM,
    /// holds no certificate or a certificate that is not a usable CA, or the platform store
    /// holds no usable certificate (not checked with [`Verification::None`], which loads no
    /// roots); `client_cert` when the chain cannot be read or holds no certificate, or when a
    /// key is given without it; `client_key` when the key cannot be read, holds no key or is
    /// encrypted, or when a certificate is given without it, or when key and certificate do
    /// not match; `server_name` when the override is neither a DNS name nor an IP address.
    pub fn load(self) -> Result<TlsConfig, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let builder = match self.verification {
            Verification::Full => {
                let roots = Arc::new(load_roots(&self.roots)?);
                let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| ConfigError::new("roots", e.to_string()))?;
                builder.with_webpki_verifier(verifier)
            }
            Verification::CaOnly => {
                let roots = Arc::new(load_roots(&self.roots)?);
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoNameCheck::chain_only(
                        roots, algorithms,
                    )))
            }
            Verification::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoNameCheck::unverified(algorithms))),
        };
        let config = match (&self.client_cert, &self.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "client_key",
                    "a client certificate needs its private key",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "client_cert",
                    "a client key needs its certificate",
                ));
            }
            (Some(cert), Some(key)) => {
                let chain = pem::certificates(cert, "client_cert")?;
                let key = pem::private_key(key, "client_key")?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ConfigError::new(
                        "client_key",
                        format!("not usable with the client certificate: {e}"),
                    )
                })?
            }
        };
        TlsConfig::new(config, self.verification, self.server_name)
    }
}

/// The root store of `roots`, never empty.
fn load_roots(roots: &Roots) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::Platform => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or_else(|| "no certificate found".to_owned(), ToString::to_string);
                return Err(ConfigError::new(
                    "roots",
                    format!("the platform store holds no usable certificate ({why})"),
                ));
            }
        }
        Roots::PemFile(path) => add_pem(&mut store, &PemSource::File(path.clone()))?,
        Roots::Pem(bytes) => add_pem(&mut store, &PemSource::Bytes(bytes.clone()))?,
    }
    Ok(store)
}

fn add_pem(store: &mut RootCertStore, source: &PemSource) -> Result<(), ConfigError> {
    for cert in pem::certificates(source, "roots")? {
        store
            .add(cert)
            .map_err(|e| ConfigError::new("roots", format!("not a usable CA certificate: {e}")))?;
    }
    Ok(())
}

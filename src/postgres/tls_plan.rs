//! How a pool's hosts use TLS: the `sslmode` and its keys, checked at build and, with feature
//! `tls`, loaded into one rustls configuration shared by every host.

use tokio_postgres::config::SslMode as ClientMode;

use super::ssl::{SslKeys, SslMode};
use crate::error::ConfigError;

/// The TLS options a builder may carry: [`TlsOptions`](crate::tls::TlsOptions) with feature
/// `tls`, nothing without.
#[cfg(feature = "tls")]
pub(crate) type BuilderTls = Option<crate::tls::TlsOptions>;
#[cfg(not(feature = "tls"))]
pub(crate) type BuilderTls = ();

/// The validated TLS settings of a pool.
#[derive(Debug)]
pub(crate) struct TlsPlan {
    /// The mode asked for.
    mode: SslMode,
    #[cfg(feature = "tls")]
    config: Option<crate::tls::TlsConfig>,
}

impl TlsPlan {
    /// Checks the keys of the connection string against the builder's mode and options.
    /// The mode is the builder's, else the string's, else `disable`.
    pub(crate) fn new(
        keys: SslKeys,
        mode: Option<SslMode>,
        options: BuilderTls,
    ) -> Result<Self, ConfigError> {
        let mode = mode.or(keys.mode).unwrap_or(SslMode::Disable);
        match (&keys.cert, &keys.key) {
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "sslcert",
                    "`sslkey` is given without `sslcert`",
                ));
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "sslkey",
                    "`sslcert` is given without `sslkey`",
                ));
            }
            _ => {}
        }
        Self::load(keys, mode, options)
    }

    #[cfg(not(feature = "tls"))]
    fn load(keys: SslKeys, mode: SslMode, (): ()) -> Result<Self, ConfigError> {
        const ENABLE: &str = "enable the `tls` feature of switchover to connect with TLS";
        match mode {
            SslMode::Disable => {}
            SslMode::Prefer => {
                return Err(ConfigError::new(
                    "sslmode",
                    format!(
                        "`prefer` is not supported without TLS: it would silently mean \
                         plaintext; say `sslmode=disable` to connect in plaintext on purpose, or \
                         {ENABLE}"
                    ),
                ));
            }
            m => {
                return Err(ConfigError::new(
                    "sslmode",
                    format!("`{m}` needs TLS: {ENABLE}"),
                ));
            }
        }
        for (field, given) in [
            ("sslrootcert", keys.rootcert.is_some()),
            ("sslcert", keys.cert.is_some()),
        ] {
            if given {
                return Err(ConfigError::new(field, format!("needs TLS: {ENABLE}")));
            }
        }
        Ok(TlsPlan { mode })
    }

    #[cfg(feature = "tls")]
    fn load(
        keys: SslKeys,
        mode: SslMode,
        options: Option<crate::tls::TlsOptions>,
    ) -> Result<Self, ConfigError> {
        use crate::tls::{Roots, TlsOptions, Verification};

        if mode == SslMode::Disable {
            return Ok(TlsPlan { mode, config: None });
        }
        let has_roots = keys.rootcert.is_some() || options.is_some();
        let mut o = options.unwrap_or_default();
        if let Some(root) = &keys.rootcert {
            o = o.roots(match root.as_str() {
                "system" => Roots::Platform,
                path => Roots::PemFile(path.into()),
            });
        }
        if let (Some(cert), Some(key)) = (&keys.cert, &keys.key) {
            o = o.client_cert_file(cert).client_key_file(key);
        }
        let verification = match mode {
            SslMode::Prefer | SslMode::Require if has_roots => Verification::CaOnly,
            SslMode::Prefer | SslMode::Require => Verification::None,
            SslMode::VerifyCa | SslMode::VerifyFull if !has_roots => {
                return Err(ConfigError::new(
                    "sslrootcert",
                    format!(
                        "`sslmode={mode}` needs the certificate authorities to trust: give \
                         `sslrootcert=<PEM file>` or `sslrootcert=system`, or the builder's \
                         `tls` roots"
                    ),
                ));
            }
            SslMode::VerifyCa => Verification::CaOnly,
            _ => Verification::Full,
        };
        let o: TlsOptions = o.verification(verification);
        let config = o.load().map_err(|e| {
            let field = match e.field() {
                "roots" => "sslrootcert",
                "client_cert" => "sslcert",
                "client_key" => "sslkey",
                _ => "tls",
            };
            ConfigError::new(field, e.reason().to_owned())
        })?;
        // PostgreSQL 17 checks the ALPN protocol when the client offers one; earlier servers
        // ignore it.
        let config = config.with_alpn(&[b"postgresql"]);
        Ok(TlsPlan {
            mode,
            config: Some(config),
        })
    }

    /// The mode tokio-postgres is given for a host: `disable` for a Unix socket.
    pub(crate) fn client_mode(&self, tcp: bool) -> ClientMode {
        match self.mode {
            _ if !tcp => ClientMode::Disable,
            SslMode::Disable => ClientMode::Disable,
            SslMode::Prefer => ClientMode::Prefer,
            _ => ClientMode::Require,
        }
    }

    /// The connector of a TCP host named `host` (SNI and the name verified, unless the
    /// options override it); `None` without TLS.
    #[cfg(feature = "tls")]
    pub(crate) fn connector(
        &self,
        host: &str,
    ) -> Result<Option<super::tls::TlsConnector>, ConfigError> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        let name = config.server_name(host).map_err(|_| {
            ConfigError::new(
                "hosts",
                format!(
                    "`{host}` is neither a DNS name nor an IP address, so TLS cannot verify it"
                ),
            )
        })?;
        Ok(Some(super::tls::TlsConnector::from_parts(
            config.client_config().clone(),
            name,
        )))
    }
}

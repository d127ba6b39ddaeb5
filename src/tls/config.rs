//! [`TlsConfig`]: loaded TLS options, ready to connect.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use super::options::Verification;
use crate::error::ConfigError;

/// [`TlsOptions`](super::TlsOptions) after [`load`](super::TlsOptions::load): every file read
/// and checked, the [`rustls::ClientConfig`] built once (ring provider) and shared by every
/// connection. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    config: Arc<ClientConfig>,
    verification: Verification,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("verification", &self.verification)
            .field("server_name", &self.server_name)
            .field(
                "client_auth",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    pub(super) fn new(
        config: ClientConfig,
        verification: Verification,
        server_name: Option<String>,
    ) -> Result<Self, ConfigError> {
        let server_name = server_name.map(|n| parse_name(&n)).transpose()?;
        Ok(TlsConfig {
            config: Arc::new(config),
            verification,
            server_name,
        })
    }

    /// The rustls client configuration (ring provider, safe default protocol versions).
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The same configuration offering `protocols` by ALPN (e.g. `b"postgresql"`).
    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> Self {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        self.config = Arc::new(config);
        self
    }

    /// The verification level.
    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// The name sent as SNI and verified for a connection to `host`: the
    /// [override](super::TlsOptions::server_name) if one was given, else `host` (an IP address
    /// is verified against the certificate's IP SANs and sends no SNI).
    ///
    /// # Errors
    ///
    /// `server_name` when `host` is neither a DNS name nor an IP address.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, ConfigError> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => parse_name(host),
        }
    }

    /// A connector for tokio streams over this configuration.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>, ConfigError> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(name.to_owned()).map_err(|_| {
        ConfigError::new(
            "server_name",
            format!("`{name}` is neither a DNS name nor an IP address"),
        )
    })
}

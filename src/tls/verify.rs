//! The server-certificate verifier rustls does not ship, in its two forms: the chain without
//! the name (`verify-ca`), and nothing but the handshake signatures (`require` without a root).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Never checks which names the server's certificate is for. With roots
/// ([`NoNameCheck::chain_only`], libpq's `sslmode=verify-ca`) it checks that the chain leads to
/// a trusted root and is valid now; without ([`NoNameCheck::unverified`], `sslmode=require`
/// without `sslrootcert`: encrypted, not authenticated) it accepts any certificate. Either way
/// the handshake signatures are checked against the certificate's key, so the connection is at
/// least bound to whoever holds that key.
#[derive(Debug)]
pub(crate) struct NoNameCheck {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoNameCheck {
    /// The chain, not the name (`verify-ca`).
    pub(crate) fn chain_only(
        roots: Arc<RootCertStore>,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        NoNameCheck {
            roots: Some(roots),
            algorithms,
        }
    }

    /// Any certificate (`require` without a root).
    pub(crate) fn unverified(algorithms: WebPkiSupportedAlgorithms) -> Self {
        NoNameCheck {
            roots: None,
            algorithms,
        }
    }
}

impl ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

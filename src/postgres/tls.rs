//! The `MakeTlsConnect` / `TlsConnect` glue between tokio-postgres and tokio-rustls, written
//! here rather than taken from `tokio-postgres-rustls`: that crate takes one `ClientConfig`
//! for every host, has no `verify-ca` or `require` semantics, and pulls in `x509-cert`,
//! `const-oid` and a direct `ring` for the channel-binding hash; this is ~100 lines over the
//! crate's own [`TlsConfig`], with one server name per host. Public, so that plain
//! tokio-postgres (or deadpool-postgres) code beside the pool connects with the pool's TLS.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream as PgStream};

use crate::error::ConfigError;
use crate::tls::TlsConfig;

/// A tokio-postgres TLS connector ([`MakeTlsConnect`]) over a [`TlsConfig`], for one server:
/// the name sent as SNI and verified is fixed when it is made (the pool makes one per host).
/// Offers channel binding (`tls-server-end-point`) for SCRAM-SHA-256-PLUS.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use switchover::postgres::TlsConnector;
/// use switchover::tls::{Roots, TlsOptions};
///
/// let tls = TlsOptions::new()
///     .roots(Roots::PemFile("/etc/ssl/rds-global-bundle.pem".into()))
///     .load()?;
/// let host = "db.example.com";
/// let (client, connection) = tokio_postgres::Config::new()
///     .host(host)
///     .user("app")
///     .ssl_mode(tokio_postgres::config::SslMode::Require)
///     .connect(TlsConnector::new(&tls, host)?)
///     .await?;
/// tokio::spawn(connection);
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector to `host` (its name, or the configuration's
    /// [override](crate::tls::TlsOptions::server_name)).
    ///
    /// # Errors
    ///
    /// `server_name` when the name is neither a DNS name nor an IP address.
    pub fn new(config: &TlsConfig, host: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_parts(
            config.client_config().clone(),
            config.server_name(host)?,
        ))
    }

    pub(crate) fn from_parts(config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        TlsConnector { config, name }
    }
}

impl<S> MakeTlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = TlsConnector;
    type Error = io::Error;

    /// The name tokio-postgres passes is the host of the one-host configuration this
    /// connector was made for; the name fixed at build (which may be an override) wins.
    fn make_tls_connect(&mut self, _domain: &str) -> Result<TlsConnector, io::Error> {
        Ok(self.clone())
    }
}

impl<S> TlsConnect<S> for TlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.name, stream).await?;
            Ok(TlsStream(tls))
        })
    }
}

/// A TLS stream to a Postgres server, made by [`TlsConnector`].
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (_, conn) = self.0.get_ref();
        f.debug_struct("TlsStream")
            .field("protocol", &conn.protocol_version())
            .field(
                "cipher_suite",
                &conn.negotiated_cipher_suite().map(|s| s.suite()),
            )
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> PgStream for TlsStream<S> {
    /// `tls-server-end-point` (RFC 5929) for SCRAM-SHA-256-PLUS: the hash of the server's
    /// certificate with its signature's hash, SHA-256 for MD5 and SHA-1. None for a
    /// certificate signed with SHA-512 or Ed25519 (no such hash here; the server cannot bind
    /// to Ed25519 either), so `channel_binding=require` fails there.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, conn) = self.0.get_ref();
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| end_point_hash(leaf.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// The `tls-server-end-point` hash of a DER certificate.
fn end_point_hash(der: &[u8]) -> Option<Vec<u8>> {
    use rustls::crypto::ring::cipher_suite::{TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384};
    // DER OID contents of the signature algorithms hashed with SHA-384 or SHA-512.
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
    ];
    const UNSUPPORTED: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
        &[0x2b, 0x65, 0x70],                                     // Ed25519
    ];
    let oid = signature_algorithm(der)?;
    if UNSUPPORTED.contains(&oid) {
        return None;
    }
    let suite = if SHA384.contains(&oid) {
        TLS13_AES_256_GCM_SHA384
    } else {
        TLS13_AES_128_GCM_SHA256
    };
    let hash = suite.tls13()?.common.hash_provider.hash(der);
    Some(hash.as_ref().to_vec())
}

/// The OID (contents) of `Certificate.signatureAlgorithm`: SEQUENCE { tbsCertificate,
/// AlgorithmIdentifier SEQUENCE { OID, ... }, BIT STRING }.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    let (cert, _) = tlv(der, 0x30)?;
    let (_, after_tbs) = tlv(cert, 0x30)?;
    let (alg, _) = tlv(after_tbs, 0x30)?;
    let (oid, _) = tlv(alg, 0x06)?;
    Some(oid)
}

/// One DER tag-length-value with tag `tag`: its contents and what follows.
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal DER `Certificate` with an empty TBS and the signature algorithm `oid`.
    fn cert_with(oid: &[u8]) -> Vec<u8> {
        let alg = [&[0x06, oid.len() as u8][..], oid].concat();
        let alg = [&[0x30, alg.len() as u8][..], &alg].concat();
        let body = [&[0x30, 0x00][..], &alg, &[0x03, 0x01, 0x00]].concat();
        [&[0x30, body.len() as u8][..], &body].concat()
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let sha256_ecdsa = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let sha384_ecdsa = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let ed25519 = [0x2b, 0x65, 0x70];
        let der = cert_with(&sha256_ecdsa);
        assert_eq!(signature_algorithm(&der), Some(&sha256_ecdsa[..]));
        assert_eq!(end_point_hash(&der).map(|h| h.len()), Some(32));
        assert_eq!(
            end_point_hash(&cert_with(&sha384_ecdsa)).map(|h| h.len()),
            Some(48)
        );
        // MD5 and SHA-1 are replaced by SHA-256 (RFC 5929).
        assert_eq!(
            end_point_hash(&cert_with(&sha1_rsa)).map(|h| h.len()),
            Some(32)
        );
        assert_eq!(end_point_hash(&cert_with(&ed25519)), None);
        // Not DER: no binding rather than a panic.
        assert_eq!(end_point_hash(b"\x30\x85garbage"), None);
        assert_eq!(end_point_hash(&[]), None);
    }

    #[cfg(feature = "testing")]
    #[test]
    fn a_test_ca_certificate_is_bound_with_sha256() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let ca = crate::testing::TestCa::new().unwrap();
        let cert = ca.server("pg", &["localhost"]).unwrap();
        let der = CertificateDer::from_pem_file(cert.cert_path()).unwrap();
        assert_eq!(
            signature_algorithm(der.as_ref()),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(end_point_hash(der.as_ref()).map(|h| h.len()), Some(32));
    }
}

//! The `MakeTlsConnect` / `TlsConnect` glue between tokio-postgres and tokio-rustls, written
//! here rather than taken from `tokio-postgres-rustls`: that crate takes one `ClientConfig`
//! for every host, has no `verify-ca` or `require` semantics, and pulls in `x509-cert`,
//! `const-oid` and a direct `ring` for the channel-binding hash; this is ~100 lines over the
//! crate's own [`TlsConfig`](crate::tls::TlsConfig), with one server name per host.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Connects one host over TLS: the shared client configuration and that host's server name
/// (SNI and the name verified), fixed at build.
#[derive(Clone)]
pub(crate) struct PgTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgTls {
    pub(crate) fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        PgTls { config, name }
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type TlsConnect = PgTls;
    type Error = io::Error;

    /// The name tokio-postgres passes is the host of the one-host configuration this
    /// connector was made for; the name fixed at build (which may be an override) wins.
    fn make_tls_connect(&mut self, _domain: &str) -> Result<PgTls, io::Error> {
        Ok(self.clone())
    }
}

impl<S> TlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PgTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.name, stream).await?;
            Ok(PgTlsStream(tls))
        })
    }
}

/// A TLS stream to a Postgres server.
pub(crate) struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
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

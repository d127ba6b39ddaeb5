//! Real handshakes (in memory, rustls on both sides) for each verification level, and the
//! load-time checks of every input.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::testing::{IssuedCert, TestCa};

fn server_config(cert: &IssuedCert, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(cert.cert_path())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(cert.key_path()).unwrap();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca.cert_path()).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// One handshake of `client` against a server presenting `cert`, to the name `host`; a byte
/// goes each way so that a refused client certificate (TLS 1.3 refuses it after the client
/// finished) shows too.
async fn handshake(
    client: &TlsConfig,
    server: Arc<ServerConfig>,
    host: &str,
) -> Result<(), String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let srv = tokio::spawn(async move {
        let mut s = acceptor.accept(b).await.map_err(|e| e.to_string())?;
        let mut byte = [0];
        s.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        s.write_all(&byte).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())
    });
    let name = client.server_name(host).map_err(|e| e.to_string())?;
    let result = async {
        let mut c = client
            .connector()
            .connect(name, a)
            .await
            .map_err(|e| e.to_string())?;
        c.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut byte = [0];
        c.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    }
    .await;
    let served = srv.await.unwrap();
    result.and(served)
}

#[tokio::test]
async fn each_verification_level_checks_what_it_says() {
    let ca = TestCa::new().unwrap();
    let right = ca.server("right", &["localhost", "127.0.0.1"]).unwrap();
    let other = ca.server("other", &["db.example.invalid"]).unwrap();
    let stranger_ca = TestCa::new().unwrap();
    let stranger = stranger_ca.server("stranger", &["localhost"]).unwrap();
    let level = |v| {
        TlsOptions::new()
            .roots(Roots::PemFile(ca.cert_path().to_owned()))
            .verification(v)
            .load()
            .unwrap()
    };
    let full = level(Verification::Full);
    let ca_only = level(Verification::CaOnly);
    let none = level(Verification::None);

    // Full: the right name (DNS and IP SANs), never another name or another CA.
    handshake(&full, server_config(&right, None), "localhost")
        .await
        .unwrap();
    handshake(&full, server_config(&right, None), "127.0.0.1")
        .await
        .unwrap();
    let err = handshake(&full, server_config(&other, None), "localhost")
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
    let err = handshake(&full, server_config(&stranger, None), "localhost")
        .await
        .unwrap_err();
    // Both test CAs have the same subject: webpki finds the wrong anchor and its signature fails.
    assert!(
        err.contains("invalid peer certificate: BadSignature"),
        "{err}"
    );

    // CaOnly: another name passes, another CA does not.
    handshake(&ca_only, server_config(&other, None), "localhost")
        .await
        .unwrap();
    let err = handshake(&ca_only, server_config(&stranger, None), "localhost")
        .await
        .unwrap_err();
    assert!(
        err.contains("invalid peer certificate: BadSignature"),
        "{err}"
    );

    // None: anything.
    handshake(&none, server_config(&stranger, None), "localhost")
        .await
        .unwrap();

    // The override replaces the host for SNI and the name check.
    let overridden = TlsOptions::new()
        .roots(Roots::PemFile(ca.cert_path().to_owned()))
        .server_name("db.example.invalid")
        .load()
        .unwrap();
    handshake(&overridden, server_config(&other, None), "127.0.0.1")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_given() {
    let ca = TestCa::new().unwrap();
    let server = ca.server("srv", &["localhost"]).unwrap();
    let client = ca.client("cli", "app").unwrap();
    let roots = Roots::PemFile(ca.cert_path().to_owned());
    let with = TlsOptions::new()
        .roots(roots.clone())
        .client_cert_file(client.cert_path())
        .client_key_file(client.key_path())
        .load()
        .unwrap();
    handshake(&with, server_config(&server, Some(&ca)), "localhost")
        .await
        .unwrap();
    let without = TlsOptions::new().roots(roots).load().unwrap();
    let err = handshake(&without, server_config(&server, Some(&ca)), "localhost")
        .await
        .unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn bad_input_is_refused_at_load_naming_the_field() {
    let ca = TestCa::new().unwrap();
    let client = ca.client("cli", "app").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n%%%not base64%%%\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "just some words\n").unwrap();
    let encrypted = dir.path().join("enc.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();

    let err = |o: TlsOptions| o.load().unwrap_err();
    for (path, says) in [
        (dir.path().join("missing.pem"), "cannot read"),
        (empty.clone(), "no PEM certificate"),
        (text.clone(), "no PEM certificate"),
        (garbage.clone(), "not valid PEM"),
    ] {
        let e = err(TlsOptions::new().roots(Roots::PemFile(path)));
        assert_eq!(e.field(), "roots");
        assert!(e.reason().contains(says), "{e}");
    }
    assert_eq!(
        err(TlsOptions::new().roots(Roots::Pem(Vec::new()))).field(),
        "roots"
    );
    // A key file is no certificate bundle.
    let e = err(TlsOptions::new().roots(Roots::PemFile(client.key_path().to_owned())));
    assert_eq!(e.field(), "roots");

    let roots = Roots::PemFile(ca.cert_path().to_owned());
    let e = err(TlsOptions::new()
        .roots(roots.clone())
        .client_key_file(client.key_path()));
    assert_eq!(e.field(), "client_cert");
    let e = err(TlsOptions::new()
        .roots(roots.clone())
        .client_cert_file(client.cert_path()));
    assert_eq!(e.field(), "client_key");
    let e = err(TlsOptions::new()
        .roots(roots.clone())
        .client_cert_file(client.cert_path())
        .client_key_file(&encrypted));
    assert_eq!(e.field(), "client_key");
    assert!(e.reason().contains("encrypted"), "{e}");
    let e = err(TlsOptions::new()
        .roots(roots.clone())
        .client_cert_file(client.cert_path())
        .client_key_file(&text));
    assert_eq!(e.field(), "client_key");
    let e = err(TlsOptions::new()
        .roots(roots.clone())
        .server_name("not a name!"));
    assert_eq!(e.field(), "server_name");

    // `None` loads no roots, so an empty bundle does not matter there.
    assert!(
        TlsOptions::new()
            .roots(Roots::PemFile(empty))
            .verification(Verification::None)
            .load()
            .is_ok()
    );
    assert!(TlsOptions::new().roots(Roots::Webpki).load().is_ok());
}

#[test]
fn debug_never_prints_a_key() {
    let key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
    let o = TlsOptions::new()
        .client_cert_pem("cert")
        .client_key_pem(key);
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("c2VjcmV0"), "{dbg}");
    assert!(dbg.contains("bytes"), "{dbg}");
}

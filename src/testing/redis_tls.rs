//! TLS for the Redis fixtures (feature `tls`): the server's certificate files and options, and
//! the rustls client the fixtures use to drive a TLS-only server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::Error;
use super::certs::{LOCALHOST_NAMES, TestCa};

/// Whether a TLS server asks its clients for a certificate (`tls-auth-clients`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsAuthClients {
    /// No client certificate is asked for (`no`). The default.
    #[default]
    No,
    /// A client certificate is verified if the client sends one (`optional`).
    Optional,
    /// Every client must present a certificate signed by the CA (`yes`): mutual TLS.
    Yes,
}

impl TlsAuthClients {
    fn as_arg(self) -> &'static str {
        match self {
            TlsAuthClients::No => "no",
            TlsAuthClients::Optional => "optional",
            TlsAuthClients::Yes => "yes",
        }
    }
}

/// The TLS settings of Redis fixtures started with [`RedisServer::start_tls`],
/// [`RedisReplicaSet::start_tls`] or [`RedisSentinel::start_tls`]: the server certificate and
/// key, the CA that signed it (and that verifies client certificates), and
/// [`tls-auth-clients`](TlsAuthClients).
///
/// The servers listen on their TLS port only (`--port 0 --tls-port N`), replicate over TLS
/// (`tls-replication yes`) and, for Sentinel, talk TLS to the nodes and to each other. The
/// fixtures drive them with a rustls client that trusts the CA and presents the server
/// certificate as its own (it is valid for client authentication too), so they work with
/// every [`TlsAuthClients`] mode.
///
/// [`RedisServer::start_tls`]: super::RedisServer::start_tls
/// [`RedisReplicaSet::start_tls`]: super::RedisReplicaSet::start_tls
/// [`RedisSentinel::start_tls`]: super::RedisSentinel::start_tls
///
/// ```no_run
/// # async fn demo() -> Result<(), switchover::testing::Error> {
/// use switchover::testing::{RedisServer, RedisTls, TestCa, TlsAuthClients};
///
/// let ca = TestCa::new()?;
/// let tls = RedisTls::new(&ca)?.auth_clients(TlsAuthClients::Yes);
/// let server = RedisServer::start_tls(&tls).await?;
/// assert!(server.url().starts_with("rediss://"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    auth_clients: TlsAuthClients,
    client: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("auth_clients", &self.auth_clients)
            .finish_non_exhaustive()
    }
}

impl RedisTls {
    /// A server certificate from `ca` for [`LOCALHOST_NAMES`] (`localhost`, `127.0.0.1`),
    /// written as `redis-server.crt`/`.key` in the CA's directory; no client certificates
    /// asked for.
    pub fn new(ca: &TestCa) -> Result<Self, Error> {
        let server = ca.server("redis-server", LOCALHOST_NAMES)?;
        Self::from_files(ca.cert_path(), server.cert_path(), server.key_path())
    }

    /// The settings of certificate files made elsewhere: the CA bundle, the server
    /// certificate and its key (PEM). The certificate is also the fixtures' client
    /// certificate, so it should allow client authentication (as [`TestCa::server`]'s do).
    pub fn from_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let (ca, cert, key) = (
            ca.as_ref().to_path_buf(),
            cert.as_ref().to_path_buf(),
            key.as_ref().to_path_buf(),
        );
        let client = Arc::new(client_config(&ca, &cert, &key)?);
        Ok(RedisTls {
            ca,
            cert,
            key,
            auth_clients: TlsAuthClients::No,
            client,
        })
    }

    /// Sets `tls-auth-clients` (default [`TlsAuthClients::No`]).
    #[must_use]
    pub fn auth_clients(mut self, mode: TlsAuthClients) -> Self {
        self.auth_clients = mode;
        self
    }

    /// The CA bundle (PEM) a client should trust.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// The server certificate (PEM).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The server's private key (PEM).
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The `tls-auth-clients` mode.
    pub fn auth_clients_mode(&self) -> TlsAuthClients {
        self.auth_clients
    }

    /// The TLS options of a server (`redis-server` arguments, without the port).
    pub(crate) fn server_args(&self) -> Vec<String> {
        [
            "--tls-cert-file".to_owned(),
            self.cert.display().to_string(),
            "--tls-key-file".to_owned(),
            self.key.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            self.ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            self.auth_clients.as_arg().to_owned(),
            "--tls-replication".to_owned(),
            "yes".to_owned(),
        ]
        .into()
    }

    /// The same options as lines of a `sentinel.conf` (sentinels also talk TLS to the nodes
    /// and to each other).
    pub(crate) fn sentinel_conf(&self) -> String {
        format!(
            "tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
             tls-auth-clients {auth}\ntls-replication yes\n",
            cert = self.cert.display(),
            key = self.key.display(),
            ca = self.ca.display(),
            auth = self.auth_clients.as_arg(),
        )
    }

    /// The fixtures' rustls client.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.client))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}

fn bad(path: &Path, what: impl fmt::Display) -> Error {
    Error::Invalid(format!("{}: {what}", path.display()))
}

/// A rustls client (ring) that trusts `ca` and presents `cert`/`key`.
fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(ca)?) {
        let c = c.map_err(|e| bad(ca, e))?;
        roots.add(c).map_err(|e| bad(ca, e))?;
    }
    if roots.is_empty() {
        return Err(bad(ca, "no CA certificate"));
    }
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| bad(key, e))?;
    // An explicit provider: the kit never depends on a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS client: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| bad(cert, e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::{RedisReplicaSet, RedisSentinel, RedisServer, RespClient};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tls_server_answers_over_tls_only_and_checks_client_certificates() {
        let ca = TestCa::new().unwrap();
        let tls = RedisTls::new(&ca)
            .unwrap()
            .auth_clients(TlsAuthClients::Yes);
        let server = RedisServer::start_tls(&tls).await.unwrap();
        assert!(server.is_tls());
        assert_eq!(
            server.url(),
            format!("rediss://127.0.0.1:{}/", server.port())
        );
        server.cmd(&["SET", "k", "v"]).await.unwrap();
        let mut c = RespClient::connect_tls(server.addr(), &tls, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(c.command(&["GET", "k"]).await.unwrap().as_str(), Some("v"));
        // Plaintext gets no answer from the TLS port.
        let mut plain = RespClient::connect_with_timeout(server.addr(), Duration::from_secs(2))
            .await
            .unwrap();
        assert!(plain.command(&["PING"]).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_set_replicates_over_tls_and_fails_over() {
        let ca = TestCa::new().unwrap();
        let tls = RedisTls::new(&ca).unwrap();
        let mut set = RedisReplicaSet::start_tls(1, &tls).await.unwrap();
        set.primary().cmd(&["SET", "k", "v"]).await.unwrap();
        set.wait_for_sync(Duration::from_secs(10)).await.unwrap();
        let replica = &set.nodes()[1];
        assert_eq!(replica.role().await.unwrap(), "slave");
        assert_eq!(
            replica.cmd(&["GET", "k"]).await.unwrap().as_str(),
            Some("v")
        );
        set.kill_primary().await.unwrap();
        set.promote(1).await.unwrap();
        assert_eq!(set.primary().role().await.unwrap(), "master");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sentinels_over_tls_fail_over() {
        let ca = TestCa::new().unwrap();
        let tls = RedisTls::new(&ca).unwrap();
        let mut s = RedisSentinel::start_tls(1, 1, &tls).await.unwrap();
        let old = s.current_primary().await.unwrap();
        assert_eq!(old, s.replica_set().primary().addr());
        s.kill_primary().await.unwrap();
        let new = s
            .wait_for_failover(old, Duration::from_secs(30))
            .await
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(s.replica_set().primary().role().await.unwrap(), "master");
    }
}

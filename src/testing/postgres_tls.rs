//! [`PgClusterBuilder`]: a [`PgCluster`] with TLS, `hostssl`-only or client-certificate
//! `pg_hba.conf` rules and password users — what the TLS and credential drills need.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Error;
use super::certs::{IssuedCert, TestCa};
use super::postgres::PgCluster;

/// File names, in each node's directory, of the server's TLS material.
pub(super) const SERVER_CERT: &str = "server.crt";
pub(super) const SERVER_KEY: &str = "server.key";
pub(super) const CLIENT_CA: &str = "client-ca.crt";

/// Builder of a [`PgCluster`] with TLS and authentication rules; [`PgCluster::start`] is
/// `PgCluster::builder().standbys(n).start()`.
///
/// | option | default |
/// |---|---|
/// | [`standbys`](Self::standbys) | 0 |
/// | [`tls`](Self::tls) | off (`ssl=off`) |
/// | [`ssl_only`](Self::ssl_only) | no: `host` lines accept TLS and plaintext |
/// | [`client_certs`](Self::client_certs) | not asked for |
/// | [`password_user`](Self::password_user) | none: every user is trusted |
///
/// The rules apply to client connections over TCP (127.0.0.1). Replication (`pg_basebackup`,
/// the standbys' WAL receivers) keeps a plain `host replication ... trust` line, and the
/// fixture's own `psql` goes through the Unix socket (`local ... trust`), so breaking the
/// client rules never breaks the fixture.
///
/// ```no_run
/// # async fn demo() -> Result<(), switchover::testing::Error> {
/// use switchover::testing::{LOCALHOST_NAMES, PgCluster, TestCa};
///
/// let ca = TestCa::new()?;
/// let cert = ca.server("pg", LOCALHOST_NAMES)?;
/// let cluster = PgCluster::builder().standbys(1).tls(&cert).ssl_only().start().await?;
/// let url = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.primary().url(), ca.cert_path().display());
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct PgClusterBuilder {
    bin_dir: Option<PathBuf>,
    standbys: usize,
    tls: Option<(String, String)>,
    ssl_only: bool,
    client_ca: Option<String>,
    password_users: Vec<String>,
}

/// What every node of a cluster is started with (the standbys copy the primary's
/// `pg_hba.conf` through `pg_basebackup`; the TLS files are written into each node's own
/// directory).
#[derive(Debug, Clone, Default)]
pub(super) struct NodeSetup {
    tls: Option<(String, String)>,
    client_ca: Option<String>,
    hba: Option<String>,
}

impl PgClusterBuilder {
    /// Binaries from `dir` instead of the default or [`PG_BIN_ENV`](super::PG_BIN_ENV).
    pub fn bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// How many streaming standbys to start after the primary.
    pub fn standbys(mut self, n: usize) -> Self {
        self.standbys = n;
        self
    }

    /// `ssl=on` with this server certificate and key (copied into each node's directory,
    /// owned by the server's user, key mode 0600). Issue it for [`LOCALHOST_NAMES`](super::LOCALHOST_NAMES)
    /// to connect to `localhost` or `127.0.0.1` with `verify-full`.
    pub fn tls(mut self, cert: &IssuedCert) -> Self {
        let key = std::fs::read_to_string(cert.key_path()).unwrap_or_default();
        self.tls = Some((cert.cert_pem().to_owned(), key));
        self
    }

    /// Client connections over TCP must use TLS (`hostssl` lines only): a plaintext login is
    /// refused with "no pg_hba.conf entry ... no encryption".
    pub fn ssl_only(mut self) -> Self {
        self.ssl_only = true;
        self
    }

    /// Client connections must present a certificate signed by `ca` whose common name is the
    /// user name (`clientcert=verify-full`; implies [`ssl_only`](Self::ssl_only)).
    pub fn client_certs(mut self, ca: &TestCa) -> Self {
        self.client_ca = Some(ca.cert_pem());
        self.ssl_only = true;
        self
    }

    /// `user` logs in over TCP with a password (`scram-sha-256`); create the role and its
    /// password with SQL once the cluster runs. Other users stay trusted.
    pub fn password_user(mut self, user: impl Into<String>) -> Self {
        self.password_users.push(user.into());
        self
    }

    /// Starts the cluster (see [`PgCluster::start`]).
    ///
    /// # Errors
    ///
    /// As [`PgCluster::start`]; [`Error::Invalid`] when [`tls`](Self::tls) was given a
    /// certificate whose key cannot be read, or TLS rules are asked for without `tls`.
    pub async fn start(self) -> Result<PgCluster, Error> {
        if matches!(&self.tls, Some((_, key)) if key.is_empty()) {
            return Err(Error::Invalid(
                "the server certificate's key cannot be read".into(),
            ));
        }
        if self.ssl_only && self.tls.is_none() {
            return Err(Error::Invalid(
                "ssl_only and client_certs need a server certificate (tls)".into(),
            ));
        }
        let setup = NodeSetup {
            hba: self.hba(),
            tls: self.tls,
            client_ca: self.client_ca,
        };
        PgCluster::launch_all(self.bin_dir, self.standbys, setup).await
    }

    /// The `pg_hba.conf` of the cluster, when anything differs from `initdb`'s.
    fn hba(&self) -> Option<String> {
        if !self.ssl_only && self.password_users.is_empty() {
            return None;
        }
        let kind = if self.ssl_only { "hostssl" } else { "host" };
        let client_cert = if self.client_ca.is_some() {
            " clientcert=verify-full"
        } else {
            ""
        };
        let mut hba = String::from(
            "local all all trust\nlocal replication all trust\nhost replication all 127.0.0.1/32 trust\n",
        );
        for user in &self.password_users {
            let _ = writeln!(
                hba,
                "{kind} all {user} 127.0.0.1/32 scram-sha-256{client_cert}"
            );
        }
        let _ = writeln!(hba, "{kind} all all 127.0.0.1/32 trust{client_cert}");
        Some(hba)
    }
}

impl NodeSetup {
    /// Writes the TLS files into `dir` (before it is handed to the server's user).
    pub(super) fn write_files(&self, dir: &Path) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let write = |name: &str, text: &str, mode: u32| -> Result<(), Error> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                })
                .map_err(|e| Error::io("writing a TLS file of the fixture", e))
        };
        if let Some((cert, key)) = &self.tls {
            write(SERVER_CERT, cert, 0o644)?;
            write(SERVER_KEY, key, 0o600)?;
        }
        if let Some(ca) = &self.client_ca {
            write(CLIENT_CA, ca, 0o644)?;
        }
        Ok(())
    }

    /// Replaces `initdb`'s `pg_hba.conf` (on the primary, before it starts).
    pub(super) fn write_hba(&self, data_dir: &Path) -> Result<(), Error> {
        match &self.hba {
            Some(hba) => std::fs::write(data_dir.join("pg_hba.conf"), hba)
                .map_err(|e| Error::io("writing pg_hba.conf", e)),
            None => Ok(()),
        }
    }

    /// The server settings (`-c` values) of a node living in `dir`.
    pub(super) fn settings(&self, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if self.tls.is_some() {
            out.push("ssl=on".to_owned());
            out.push(format!("ssl_cert_file={}", dir.join(SERVER_CERT).display()));
            out.push(format!("ssl_key_file={}", dir.join(SERVER_KEY).display()));
        }
        if self.client_ca.is_some() {
            out.push(format!("ssl_ca_file={}", dir.join(CLIENT_CA).display()));
        }
        out
    }

    /// `true` when the nodes run with `ssl=on`.
    pub(super) fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

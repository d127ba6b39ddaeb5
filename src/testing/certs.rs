//! Certificates for TLS fixtures: a throw-away certificate authority that issues server and client
//! certificates, written as PEM files a server can be pointed at.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use super::Error;

/// The names a server certificate for a local fixture is valid for: pass them to
/// [`TestCa::server`].
pub const LOCALHOST_NAMES: &[&str] = &["localhost", "127.0.0.1"];

/// A certificate authority made for one test run, in its own temporary directory.
///
/// It signs server certificates ([`TestCa::server`]) for the names a client will verify and client
/// certificates ([`TestCa::client`]) for mutual TLS. Everything is written as PEM files (the CA
/// as `ca.pem`), so a server started by the kit and a client under test read the same files. The
/// directory and its keys are removed on `Drop`.
///
/// ```no_run
/// # fn demo() -> Result<(), switchover::testing::Error> {
/// use switchover::testing::TestCa;
///
/// let ca = TestCa::new()?;
/// let server = ca.server("pg", &["localhost", "127.0.0.1"])?;
/// let other = ca.server("elsewhere", &["db.example.invalid"])?; // for verify-full refusals
/// assert!(server.cert_path().exists() && ca.cert_path().exists());
/// # let _ = other; Ok(()) }
/// ```
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
    cert_path: PathBuf,
}

/// A certificate and its private key, signed by a [`TestCa`], as PEM files in the CA's
/// directory.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    cert_pem: String,
}

impl TestCa {
    /// A new authority: a P-256 key and a self-signed CA certificate written to `ca.pem`.
    pub fn new() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("switchover-ca-")
            .tempdir()
            .map_err(|source| io("create the CA directory", source))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "switchover test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(cert_error)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(cert_error)?;
        let cert_path = dir.path().join("ca.pem");
        write(&cert_path, &issuer.pem())?;
        Ok(Self {
            issuer,
            dir,
            cert_path,
        })
    }

    /// The CA certificate (PEM), the bundle a client trusts (`sslrootcert`, `--tls-ca-cert-file`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate as PEM text.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate valid for `names` (DNS names or IP addresses), written as
    /// `<file_stem>.crt` / `<file_stem>.key`. Usable for server and client authentication, so a
    /// server that also dials other servers (Redis replication over TLS) can present it too.
    pub fn server(&self, file_stem: &str, names: &[&str]) -> Result<IssuedCert, Error> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let common_name = names
            .first()
            .cloned()
            .unwrap_or_else(|| file_stem.to_owned());
        let mut params = CertificateParams::new(names).map_err(cert_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(file_stem, params)
    }

    /// A client certificate with `common_name` as its subject (Postgres maps it to the user name
    /// with `clientcert=verify-full`), written as `<file_stem>.crt` / `<file_stem>.key`.
    pub fn client(&self, file_stem: &str, common_name: &str) -> Result<IssuedCert, Error> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file_stem, params)
    }

    fn issue(&self, file_stem: &str, mut params: CertificateParams) -> Result<IssuedCert, Error> {
        if file_stem.is_empty() || file_stem.contains(['/', '\\']) || file_stem == "ca" {
            return Err(Error::Invalid(format!(
                "certificate file stem {file_stem:?} must be a plain, non-empty name other than \"ca\""
            )));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(cert_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_error)?;
        let cert_path = self.dir.path().join(format!("{file_stem}.crt"));
        let key_path = self.dir.path().join(format!("{file_stem}.key"));
        let cert_pem = cert.pem();
        write(&cert_path, &cert_pem)?;
        write_private(&key_path, &key.serialize_pem())?;
        Ok(IssuedCert {
            cert_path,
            key_path,
            cert_pem,
        })
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The CA key stays out of Debug output.
        f.debug_struct("TestCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// The certificate (PEM).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The private key (PKCS#8 PEM, mode 0600).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate as PEM text.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Makes the certificate and key readable by `user` (e.g. `postgres`, which refuses a key
    /// that others can read and runs as its own user): changes their owner with `chown`.
    pub fn chown(&self, user: &str) -> Result<(), Error> {
        for path in [&self.cert_path, &self.key_path] {
            let output = std::process::Command::new("chown")
                .arg(user)
                .arg(path)
                .output()
                .map_err(|source| io("run chown", source))?;
            if !output.status.success() {
                return Err(Error::Command {
                    command: format!("chown {user} {}", path.display()),
                    status: output.status.to_string(),
                    output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
        }
        Ok(())
    }
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    fs::write(path, contents).map_err(|source| io(&format!("write {}", path.display()), source))
}

fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    write(path, contents)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|source| io(&format!("restrict {}", path.display()), source))
}

fn io(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_owned(),
        source,
    }
}

fn cert_error(error: rcgen::Error) -> Error {
    Error::Invalid(format!("certificate generation failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_files_a_server_and_a_client_can_load() {
        let ca = TestCa::new().unwrap();
        let server = ca.server("node", LOCALHOST_NAMES).unwrap();
        let client = ca.client("app", "app").unwrap();
        for path in [
            ca.cert_path(),
            server.cert_path(),
            server.key_path(),
            client.cert_path(),
            client.key_path(),
        ] {
            let text = fs::read_to_string(path).unwrap();
            assert!(
                text.starts_with("-----BEGIN "),
                "{}: {text}",
                path.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(server.key_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{ca:?}").contains("PRIVATE"));
        assert!(matches!(ca.server("ca", &["x"]), Err(Error::Invalid(_))));
        assert!(matches!(ca.server("../x", &["x"]), Err(Error::Invalid(_))));
    }
}

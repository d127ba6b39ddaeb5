//! PEM input (a file or bytes) and its loading into certificates and keys, every failure a
//! [`ConfigError`] naming the field.

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ConfigError;

/// Where PEM text comes from: a file read at build, or bytes already in memory.
#[derive(Clone)]
pub(crate) enum PemSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl PemSource {
    /// The PEM text; `field` names the option in the error.
    fn read(&self, field: &'static str) -> Result<Vec<u8>, ConfigError> {
        match self {
            PemSource::File(path) => std::fs::read(path).map_err(|e| {
                ConfigError::new(field, format!("cannot read {}: {e}", path.display()))
            }),
            PemSource::Bytes(b) => Ok(b.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::File(path) => path.display().to_string(),
            PemSource::Bytes(_) => "the PEM bytes".to_owned(),
        }
    }
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Bytes may be a private key: only their length is printed.
        match self {
            PemSource::File(path) => f.debug_tuple("File").field(path).finish(),
            PemSource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// Every certificate in `source`, at least one.
pub(crate) fn certificates(
    source: &PemSource,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let text = source.read(field)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| {
            ConfigError::new(
                field,
                format!("{} is not valid PEM: {e}", source.describe()),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            field,
            format!("{} holds no PEM certificate", source.describe()),
        ));
    }
    Ok(certs)
}

/// The one private key in `source` (PKCS#8, PKCS#1 or SEC1; not encrypted).
pub(crate) fn private_key(
    source: &PemSource,
    field: &'static str,
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let text = source.read(field)?;
    if text
        .windows(29)
        .any(|w| w == b"BEGIN ENCRYPTED PRIVATE KEY--")
        || text.windows(18).any(|w| w == b"Proc-Type: 4,ENCR")
    {
        return Err(ConfigError::new(
            field,
            format!(
                "{} is an encrypted key; encrypted keys (a key password) are not supported",
                source.describe()
            ),
        ));
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "holds no PEM private key".to_owned(),
            e => format!("is not a valid PEM private key: {e}"),
        };
        ConfigError::new(field, format!("{} {why}", source.describe()))
    })
}

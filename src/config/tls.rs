//! Config of TLS for the Redis and Postgres pools: [`TlsConfig`], built into the crate's
//! shared [`TlsOptions`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{ConfigPath, InvalidConfig};
use super::section::Section;
use crate::error::ConfigError;
use crate::tls::{Roots, TlsOptions, Verification};

/// [`TlsOptions`] from a config file (not to be confused with
/// [`tls::TlsConfig`](crate::tls::TlsConfig), the options once loaded). Every field is
/// optional and defaults to [`TlsOptions::new`]'s: the platform's roots, full verification, no
/// client certificate, the host connected to as the server name.
///
/// ```toml
/// ca_file = "/etc/ssl/rds-global-bundle.pem"  # or roots = "system" | "webpki"
/// verification = "full"                       # full | ca_only | none
/// client_cert_file = "/etc/app/client.pem"    # mutual TLS: both or neither
/// client_key_file = "/etc/app/client.key"
/// server_name = "cache.internal"              # verify this name, not the host's
/// ```
///
/// [`build_at`](Section::build_at) reads and checks every file, as the pools do when they are
/// built, so a missing bundle is `redis.tls.ca_file` before any connection is tried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// A built-in root set: `"system"` (the platform's store, [`Roots::Platform`]; also
    /// spelt `"platform"`) or `"webpki"` ([`Roots::Webpki`]). Not with `ca_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roots: Option<RootsConfig>,
    /// A PEM bundle of the certificate authorities trusted ([`Roots::PemFile`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `"full"`, `"ca_only"` or `"none"` (see [`Verification`]).
    #[serde(with = "verification", skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The client certificate chain for mutual TLS (see [`TlsOptions::client_cert_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// Its private key (see [`TlsOptions::client_key_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    /// See [`TlsOptions::server_name`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// The root sets a config file names (a bundle of your own is `ca_file`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootsConfig {
    /// [`Roots::Platform`] (libpq's `sslrootcert=system`).
    #[serde(alias = "platform")]
    System,
    /// [`Roots::Webpki`].
    Webpki,
}

impl TlsConfig {
    /// The options this config says, over [`TlsOptions::new`], unchecked (see
    /// [`build_at`](Section::build_at) for the checked ones).
    pub fn options(&self) -> TlsOptions {
        let mut o = TlsOptions::new();
        match (self.roots, &self.ca_file) {
            (_, Some(path)) => o = o.roots(Roots::PemFile(path.clone())),
            (Some(RootsConfig::System), None) => o = o.roots(Roots::Platform),
            (Some(RootsConfig::Webpki), None) => o = o.roots(Roots::Webpki),
            (None, None) => {}
        }
        if let Some(v) = self.verification {
            o = o.verification(v);
        }
        if let Some(path) = &self.client_cert_file {
            o = o.client_cert_file(path);
        }
        if let Some(path) = &self.client_key_file {
            o = o.client_key_file(path);
        }
        if let Some(name) = &self.server_name {
            o = o.server_name(name);
        }
        o
    }

    /// A [`ConfigError`] of [`TlsOptions::load`] (or of a pool loading these options) named
    /// by the field of this section that caused it.
    pub fn rejected(&self, at: &ConfigPath, error: &ConfigError) -> InvalidConfig {
        let field = match error.field() {
            "roots" if self.ca_file.is_some() => "ca_file",
            "roots" => "roots",
            "client_cert" => "client_cert_file",
            "client_key" => "client_key_file",
            "server_name" => "server_name",
            _ => "",
        };
        at.invalid(field, error.reason())
    }
}

impl Section for TlsConfig {
    type Output = TlsOptions;

    /// Loads the options ([`TlsOptions::load`]: every file read, every certificate and key
    /// parsed) to check them, and returns them for a pool's `tls` knob.
    fn build_at(&self, at: &ConfigPath) -> Result<TlsOptions, InvalidConfig> {
        if self.roots.is_some() && self.ca_file.is_some() {
            return Err(at.invalid("ca_file", "give either `ca_file` or `roots`, not both"));
        }
        let options = self.options();
        options.clone().load().map_err(|e| self.rejected(at, &e))?;
        Ok(options)
    }
}

/// [`Verification`] by name.
mod verification {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::tls::Verification;

    const NAMES: [(&str, Verification); 3] = [
        ("full", Verification::Full),
        ("ca_only", Verification::CaOnly),
        ("none", Verification::None),
    ];

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Verification>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match NAMES.iter().find(|(_, n)| Some(*n) == *v) {
            Some((name, _)) => s.serialize_str(name),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Verification>, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(Some(*v)),
            None => Err(de::Error::unknown_variant(
                &name,
                &["full", "ca_only", "none"],
            )),
        }
    }
}

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
/// built, so a missing bundle is `redis.tls.ca_file` before any connection is tried. The
/// Redis and Postgres sections hold one as `tls`; on its own:
///
/// ```no_run
/// use serde::Deserialize;
/// use switchover::config::{self, ConfigPath, Section, TlsConfig};
///
/// #[derive(Deserialize)]
/// struct Service {
///     tls: TlsConfig,
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let text = std::fs::read_to_string("service.toml")?;
/// let service: Service = config::deserialize(toml::Deserializer::parse(&text)?)?;
/// let options = service.tls.build_at(&ConfigPath::new("tls"))?; // a crate::tls::TlsOptions
/// let loaded = options.load()?; // the rustls client config, for a connector of your own
/// # let _ = loaded; Ok(()) }
/// ```
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// A service's config with TLS under `[cache.tls]`.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Cache {
        tls: TlsConfig,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Service {
        cache: Cache,
    }

    fn read(text: &str) -> Result<TlsConfig, InvalidConfig> {
        let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
        config::deserialize::<Service, _>(de).map(|s| s.cache.tls)
    }

    fn at() -> ConfigPath {
        ConfigPath::new("cache").join("tls")
    }

    fn missing() -> PathBuf {
        std::env::temp_dir().join("switchover-config-test-no-such-file.pem")
    }

    #[test]
    fn a_tls_config_round_trips_through_toml() {
        let config = TlsConfig {
            roots: None,
            ca_file: Some("/etc/ssl/bundle.pem".into()),
            verification: Some(Verification::CaOnly),
            client_cert_file: Some("/etc/app/client.pem".into()),
            client_key_file: Some("/etc/app/client.key".into()),
            server_name: Some("cache.internal".into()),
        };
        let text = toml::to_string(&Service {
            cache: Cache {
                tls: config.clone(),
            },
        })
        .unwrap();
        assert!(text.contains("verification = \"ca_only\""), "{text}");
        assert_eq!(read(&text).unwrap(), config);
        for (text, roots) in [
            ("roots = \"system\"", RootsConfig::System),
            ("roots = \"platform\"", RootsConfig::System),
            ("roots = \"webpki\"", RootsConfig::Webpki),
        ] {
            let got = read(&format!("[cache.tls]\n{text}")).unwrap();
            assert_eq!(got.roots, Some(roots));
        }
    }

    #[test]
    fn an_empty_config_is_the_default_options() {
        assert_eq!(
            format!("{:?}", TlsConfig::default().options()),
            format!("{:?}", TlsOptions::new())
        );
        let o = TlsConfig {
            roots: Some(RootsConfig::Webpki),
            verification: Some(Verification::None),
            ..TlsConfig::default()
        }
        .build_at(&at())
        .unwrap();
        assert!(matches!(o.get_roots(), Roots::Webpki));
        assert_eq!(o.get_verification(), Verification::None);
    }

    #[test]
    fn every_refused_value_names_its_path() {
        let dir =
            std::env::temp_dir().join(format!("switchover-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let webpki = || TlsConfig {
            roots: Some(RootsConfig::Webpki),
            ..TlsConfig::default()
        };
        let cases = [
            (
                TlsConfig {
                    ca_file: Some(missing()),
                    ..TlsConfig::default()
                },
                "cache.tls.ca_file",
            ),
            (
                TlsConfig {
                    ca_file: Some(empty.clone()),
                    ..TlsConfig::default()
                },
                "cache.tls.ca_file",
            ),
            (
                TlsConfig {
                    ca_file: Some(empty.clone()),
                    ..webpki()
                },
                "cache.tls.ca_file",
            ),
            (
                TlsConfig {
                    client_cert_file: Some(empty.clone()),
                    ..webpki()
                },
                "cache.tls.client_key_file",
            ),
            (
                TlsConfig {
                    client_key_file: Some(empty.clone()),
                    ..webpki()
                },
                "cache.tls.client_cert_file",
            ),
            (
                TlsConfig {
                    client_cert_file: Some(missing()),
                    client_key_file: Some(missing()),
                    ..webpki()
                },
                "cache.tls.client_cert_file",
            ),
            (
                TlsConfig {
                    server_name: Some("not a name".into()),
                    ..webpki()
                },
                "cache.tls.server_name",
            ),
            (
                TlsConfig {
                    server_name: Some(String::new()),
                    ..webpki()
                },
                "cache.tls.server_name",
            ),
        ];
        for (config, path) in cases {
            let err = config.build_at(&at()).err().unwrap_or_else(|| {
                panic!("{path}: accepted {config:?}");
            });
            assert_eq!(err.path(), path, "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
        for (text, path) in [
            ("[cache.tls]\nroots = \"mozilla\"", "cache.tls.roots"),
            (
                "[cache.tls]\nverification = \"verify-full\"",
                "cache.tls.verification",
            ),
            ("[cache.tls]\nca_file = 1", "cache.tls.ca_file"),
            ("[cache.tls]\nca = \"/x.pem\"", "cache.tls.ca"),
        ] {
            let err = read(text).unwrap_err();
            assert_eq!(err.path(), path, "{text}: {err}");
        }
    }

    #[cfg(feature = "testing")]
    #[test]
    fn a_ca_file_and_a_client_certificate_load() {
        let ca = crate::testing::TestCa::new().unwrap();
        let client = ca.client("client", "app").unwrap();
        let config = TlsConfig {
            ca_file: Some(ca.cert_path().to_owned()),
            client_cert_file: Some(client.cert_path().to_owned()),
            client_key_file: Some(client.key_path().to_owned()),
            server_name: Some("cache.internal".into()),
            ..TlsConfig::default()
        };
        let loaded = config.build_at(&at()).unwrap().load().unwrap();
        let shown = format!("{loaded:?}");
        assert!(shown.contains("client_auth: true"), "{shown}");
        assert!(shown.contains("cache.internal"), "{shown}");
        // Both `roots` and `ca_file`: which one is meant?
        let both = TlsConfig {
            roots: Some(RootsConfig::System),
            ..config
        };
        assert_eq!(
            both.build_at(&at()).unwrap_err().path(),
            "cache.tls.ca_file"
        );
    }
}

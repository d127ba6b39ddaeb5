//! The hosts of a pool: parsed from a libpq-style connection string or a client
//! configuration, each with a client configuration that reaches it and only it (TCP or a
//! Unix socket), and its TLS connector.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_postgres::config::{Host, SslMode};

use super::ssl::{self, SslKeys};
use super::timeouts::Timeouts;
pub(crate) use super::tls_plan::TlsPlan;
use crate::auth::CredentialRequest;
use crate::error::ConfigError;

/// One host of the pool: its display name (`host:port`, or the socket path for a Unix-socket
/// host) and the client configuration that reaches it and only it.
pub(crate) struct HostConfig {
    pub(crate) name: Arc<str>,
    pub(crate) config: tokio_postgres::Config,
    /// What a credential provider is asked for this host: its host (or socket directory),
    /// port and configured user.
    pub(crate) request: CredentialRequest<'static>,
    /// For a host given by name (not an IP address, no `hostaddr`): its addresses, looked up
    /// through the pool's resolver; `config` then has no port, and each connect adds the
    /// address and port it goes to.
    pub(crate) dns: Option<Arc<crate::resolve::Name>>,
    /// The TLS connector of this host (its own server name), when it uses TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<super::tls::TlsConnector>,
}

impl fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `tokio_postgres::Config`'s own `Debug` redacts the password; we print even less.
        let mut d = f.debug_struct("HostConfig");
        d.field("name", &self.name);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish_non_exhaustive()
    }
}

/// Where one host is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Address {
    /// A TCP host and the name its certificate is verified against (the `host` of a
    /// `host`/`hostaddr` pair, else the address).
    Tcp { host: String, tls_name: String },
    /// The directory of a Unix socket (`host=/run/postgresql`).
    Unix(PathBuf),
}

/// The base configuration, parsed from `conn_str`, else `config`, else empty, and the TLS
/// keys of the string (taken out before tokio-postgres parses the rest).
pub(crate) fn base_config(
    conn_str: Option<String>,
    config: Option<tokio_postgres::Config>,
) -> Result<(tokio_postgres::Config, SslKeys), ConfigError> {
    match (conn_str, config) {
        (Some(s), _) => {
            let (rest, keys) = ssl::split(&s)?;
            let base = rest.parse::<tokio_postgres::Config>().map_err(|e| {
                ConfigError::new(
                    "connection_string",
                    format!("does not parse: {}", describe_parse_error(&e)),
                )
            })?;
            Ok((base, keys))
        }
        (None, Some(c)) => {
            // A ready configuration has no "not said": its default is `prefer`, which means
            // TLS when offered with feature `tls` and, without it, plaintext (as tokio-postgres
            // with `NoTls`: refusing it would refuse every default configuration). Not
            // silently: a warning says so, and an explicit `Disable` silences it.
            let mode = match c.get_ssl_mode() {
                SslMode::Disable => ssl::SslMode::Disable,
                SslMode::Require => ssl::SslMode::Require,
                _ if cfg!(feature = "tls") => ssl::SslMode::Prefer,
                _ => {
                    tracing::warn!(
                        target: "switchover::postgres",
                        "the tokio_postgres::Config given has sslmode `prefer` (its default) and \
                         feature `tls` is off: connecting in plaintext; set \
                         `ssl_mode(SslMode::Disable)` on it to say so, or enable feature `tls`"
                    );
                    ssl::SslMode::Disable
                }
            };
            let keys = SslKeys {
                mode: Some(mode),
                ..SslKeys::default()
            };
            Ok((c, keys))
        }
        (None, None) => Ok((tokio_postgres::Config::new(), SslKeys::default())),
    }
}

/// The `(address, port)` pairs of `base` followed by `extra`, in priority order.
pub(crate) fn addresses(
    base: &tokio_postgres::Config,
    extra: Vec<(String, u16)>,
) -> Result<Vec<(Address, u16)>, ConfigError> {
    let ports = base.get_ports();
    let n = base.get_hosts().len().max(base.get_hostaddrs().len());
    if ports.len() > 1 && ports.len() != n {
        return Err(ConfigError::new(
            "port",
            format!("{} ports for {n} hosts", ports.len()),
        ));
    }
    let mut addrs = Vec::with_capacity(n + extra.len());
    for i in 0..n {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let address = match (base.get_hostaddrs().get(i), base.get_hosts().get(i)) {
            (Some(addr), Some(Host::Tcp(h))) => Address::Tcp {
                host: addr.to_string(),
                tls_name: h.clone(),
            },
            (Some(addr), _) => Address::Tcp {
                host: addr.to_string(),
                tls_name: addr.to_string(),
            },
            (None, Some(Host::Tcp(h))) => Address::Tcp {
                host: h.clone(),
                tls_name: h.clone(),
            },
            #[cfg(unix)]
            (None, Some(Host::Unix(dir))) => Address::Unix(dir.clone()),
            (None, _) => return Err(ConfigError::new("hosts", "no host given")),
        };
        addrs.push((address, port));
    }
    addrs.extend(extra.into_iter().map(|(h, p)| {
        let address = if h.starts_with('/') {
            Address::Unix(PathBuf::from(h))
        } else {
            Address::Tcp {
                tls_name: h.clone(),
                host: h,
            }
        };
        (address, p)
    }));
    if addrs.is_empty() {
        return Err(ConfigError::new("hosts", "no host given"));
    }
    if addrs.iter().any(|(a, _)| match a {
        Address::Tcp { host, .. } => host.is_empty(),
        Address::Unix(dir) => dir.as_os_str().is_empty(),
    }) {
        return Err(ConfigError::new("hosts", "empty host name"));
    }
    Ok(addrs)
}

/// One configuration per address: the credentials and options of `base`, that host only,
/// the socket deadlines of `t`, and TLS per `tls` (never for a Unix socket, as libpq).
pub(crate) fn host_configs(
    base: &tokio_postgres::Config,
    addrs: Vec<(Address, u16)>,
    t: &Timeouts,
    tls: &TlsPlan,
    resolver: &crate::resolve::Resolver,
) -> Result<Vec<HostConfig>, ConfigError> {
    let hosts = addrs
        .into_iter()
        .map(|(address, port)| host_config(base, &address, port, t, tls, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    for h in &hosts {
        if !seen.insert(&h.name) {
            return Err(ConfigError::new(
                "hosts",
                format!("{} is listed twice", h.name),
            ));
        }
    }
    Ok(hosts)
}

/// The configuration of one host.
fn host_config(
    base: &tokio_postgres::Config,
    address: &Address,
    port: u16,
    t: &Timeouts,
    tls: &TlsPlan,
    resolver: &crate::resolve::Resolver,
) -> Result<HostConfig, ConfigError> {
    let dns = match address {
        Address::Tcp { host, .. } => crate::resolve::Name::new(host, port, resolver),
        Address::Unix(_) => None,
    };
    let mut c = tokio_postgres::Config::new();
    if let Some(u) = base.get_user() {
        c.user(u);
    }
    if let Some(p) = base.get_password() {
        c.password(p);
    }
    if let Some(d) = base.get_dbname() {
        c.dbname(d);
    }
    if let Some(o) = base.get_options() {
        c.options(o);
    }
    c.application_name(base.get_application_name().unwrap_or("switchover"));
    c.channel_binding(base.get_channel_binding())
        .connect_timeout(t.connect);
    if dns.is_none() {
        c.port(port);
    }
    let (name, target, tls_name): (Arc<str>, String, Option<&str>) = match address {
        Address::Tcp { host, tls_name } => {
            c.host(host)
                .tcp_user_timeout(t.tcp_user_timeout)
                .keepalives(true)
                .keepalives_idle(t.keepalive_idle)
                .keepalives_interval(t.keepalive_interval)
                .keepalives_retries(t.keepalive_retries);
            let name = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            (name.into(), host.clone(), Some(tls_name))
        }
        Address::Unix(dir) => {
            #[cfg(unix)]
            c.host_path(dir);
            let name = format!("{}/.s.PGSQL.{port}", dir.display());
            (name.into(), dir.display().to_string(), None)
        }
    };
    c.ssl_mode(tls.client_mode(tls_name.is_some()));
    let mut request = CredentialRequest::new(target, port);
    if let Some(u) = base.get_user() {
        request = request.with_user(u.to_owned());
    }
    Ok(HostConfig {
        name,
        config: c,
        request,
        dns,
        #[cfg(feature = "tls")]
        tls: match tls_name {
            Some(n) => tls.connector(n)?,
            None => None,
        },
    })
}

/// The parse error's message, without any part of the input (which may hold a password).
fn describe_parse_error(e: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let inner = e.source().map(ToString::to_string).unwrap_or_default();
    if inner.starts_with("unknown option")
        || inner.starts_with("invalid value for option")
        || inner == "unexpected EOF"
        || inner == "unterminated parameter"
    {
        inner
    } else {
        "malformed syntax".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conn_str: &str, extra: &[(&str, u16)]) -> Result<Vec<String>, ConfigError> {
        let (base, keys) = base_config(Some(conn_str.to_owned()), None)?;
        let extra = extra.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect();
        let addrs = addresses(&base, extra)?;
        #[cfg(feature = "tls")]
        let plan = TlsPlan::new(keys, None, None)?;
        #[cfg(not(feature = "tls"))]
        let plan = TlsPlan::new(keys, None, ())?;
        let resolver = crate::resolve::Resolver::default();
        let hosts = host_configs(&base, addrs, &Timeouts::default(), &plan, &resolver)?;
        Ok(hosts.iter().map(|h| h.name.to_string()).collect())
    }

    #[test]
    fn multi_host_strings_give_one_host_each() {
        assert_eq!(
            names(
                "host=10.0.0.1,db2 port=5432,5433 user=app password=hunter2",
                &[("db3", 6000)]
            )
            .unwrap(),
            ["10.0.0.1:5432", "db2:5433", "db3:6000"]
        );
        assert_eq!(
            names("postgresql://u@a:5432,b:5433/db", &[]).unwrap(),
            ["a:5432", "b:5433"]
        );
        assert_eq!(names("host=::1 port=7", &[]).unwrap(), ["[::1]:7"]);
        assert_eq!(names("host=a,b", &[]).unwrap(), ["a:5432", "b:5432"]);
    }

    #[test]
    fn bad_host_lists_are_refused() {
        let field = |s: &str, extra: &[(&str, u16)]| names(s, extra).unwrap_err().field();
        assert_eq!(field("user=postgres", &[]), "hosts");
        assert_eq!(field("host=a,b port=1,2,3", &[]), "port");
        assert_eq!(field("host=a", &[("a", 5432)]), "hosts");
        #[cfg(not(feature = "tls"))]
        {
            // Without TLS compiled in, `prefer` would silently mean plaintext: refused, in both
            // forms; `require` and above name the feature.
            assert_eq!(field("host=a sslmode=prefer", &[]), "sslmode");
            assert_eq!(field("host=a sslmode = 'prefer'", &[]), "sslmode");
            assert_eq!(field("postgresql://u@a/db?sslmode=prefer", &[]), "sslmode");
            for mode in ["require", "verify-ca", "verify-full"] {
                let e = names(&format!("host=a sslmode={mode}"), &[]).unwrap_err();
                assert_eq!(e.field(), "sslmode");
                assert!(e.reason().contains("`tls` feature"), "{e}");
            }
            assert_eq!(field("host=a sslrootcert=/x.pem", &[]), "sslrootcert");
        }
        #[cfg(feature = "tls")]
        {
            assert!(names("host=a sslmode=prefer", &[]).is_ok());
            assert!(names("host=a sslmode=require", &[]).is_ok());
            // verify-* needs roots; an unreadable bundle names the key.
            assert_eq!(field("host=a sslmode=verify-full", &[]), "sslrootcert");
            assert_eq!(
                field("host=a sslmode=verify-ca sslrootcert=/nonexistent.pem", &[]),
                "sslrootcert"
            );
            assert_eq!(
                field(
                    "host=a sslmode=require sslcert=/c.pem sslkey=/nonexistent.pem",
                    &[]
                ),
                "sslcert"
            );
            assert_eq!(
                field(
                    "host=a,not_a_name! sslmode=verify-full sslrootcert=system",
                    &[]
                ),
                "hosts"
            );
        }
        assert_eq!(field("host=a sslmode=verify_full", &[]), "sslmode");
        assert_eq!(field("host=a sslkey=/k.pem", &[]), "sslcert");
        assert_eq!(field("host=a sslcert=/c.pem", &[]), "sslkey");
        assert!(names("host=a sslmode=disable", &[]).is_ok());
        assert!(
            names("host=a", &[]).is_ok(),
            "no sslmode: plaintext, as documented"
        );
        assert_eq!(field("host=a port=notaport", &[]), "connection_string");
        // A Unix-socket directory is a host of its own, named by its socket path.
        assert_eq!(
            names("host=/run/postgresql,db port=5433", &[("/tmp", 6000)]).unwrap(),
            [
                "/run/postgresql/.s.PGSQL.5433",
                "db:5433",
                "/tmp/.s.PGSQL.6000"
            ]
        );
    }

    /// The warnings `base_config` logs for `config`.
    fn warnings_for(config: tokio_postgres::Config) -> String {
        #[derive(Clone, Default)]
        struct Out(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            base_config(None, Some(config)).unwrap();
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_ready_configurations_prefer_is_plaintext_only_with_a_warning() {
        let mut c = tokio_postgres::Config::new();
        c.host("a");
        let logged = warnings_for(c.clone());
        if cfg!(feature = "tls") {
            assert_eq!(logged, "");
        } else {
            assert!(logged.contains("WARN"), "{logged}");
            assert!(
                logged.contains("sslmode `prefer` (its default) and feature `tls` is off: connecting in plaintext"),
                "{logged}"
            );
        }
        c.ssl_mode(SslMode::Disable);
        assert_eq!(
            warnings_for(c),
            "",
            "an explicit `disable` is not warned about"
        );
    }

    #[test]
    fn a_ready_configuration_keeps_its_default_mode() {
        let mut c = tokio_postgres::Config::new();
        c.host("a");
        let (_, keys) = base_config(None, Some(c.clone())).unwrap();
        let want = if cfg!(feature = "tls") {
            ssl::SslMode::Prefer
        } else {
            ssl::SslMode::Disable
        };
        assert_eq!(keys.mode, Some(want));
        c.ssl_mode(SslMode::Require);
        let (_, keys) = base_config(None, Some(c)).unwrap();
        assert_eq!(keys.mode, Some(ssl::SslMode::Require));
    }

    #[test]
    fn parse_errors_never_echo_the_input() {
        let secret = "hunter2-secret";
        for s in [
            format!("host=a password='{secret}"),
            format!("host=a password={secret} port=x{secret}"),
            format!("postgresql://u:{secret}@a:notaport/db"),
            format!("host=a password{secret}"),
        ] {
            let err = base_config(Some(s), None).map(drop).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }
}

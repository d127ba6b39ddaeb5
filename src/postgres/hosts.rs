//! The hosts of a pool: parsed from a libpq-style connection string or a client
//! configuration, each with a client configuration that reaches it and only it.

use std::fmt;
use std::sync::Arc;

use tokio_postgres::config::{Host, SslMode};

use super::timeouts::Timeouts;
use crate::error::ConfigError;

/// One host of the pool: its display name (`host:port`) and the client configuration that
/// reaches it and only it.
pub(crate) struct HostConfig {
    pub(crate) name: Arc<str>,
    pub(crate) config: tokio_postgres::Config,
}

impl fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `tokio_postgres::Config`'s own `Debug` redacts the password; we print even less.
        f.debug_struct("HostConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The base configuration: parsed from `conn_str`, else `config`, else empty.
pub(crate) fn base_config(
    conn_str: Option<String>,
    config: Option<tokio_postgres::Config>,
) -> Result<tokio_postgres::Config, ConfigError> {
    if let Some(s) = &conn_str
        && asks_for_prefer(s)
    {
        return Err(ConfigError::new(
            "sslmode",
            "`prefer` is not supported: the pool connects without TLS, so it would silently \
             mean plaintext; say `sslmode=disable` to connect in plaintext on purpose",
        ));
    }
    let base = match (conn_str, config) {
        (Some(s), _) => s.parse::<tokio_postgres::Config>().map_err(|e| {
            ConfigError::new(
                "connection_string",
                format!("does not parse: {}", describe_parse_error(&e)),
            )
        })?,
        (None, Some(c)) => c,
        (None, None) => tokio_postgres::Config::new(),
    };
    if base.get_ssl_mode() == SslMode::Require {
        return Err(ConfigError::new(
            "sslmode",
            "`require` is not supported: the pool connects without TLS",
        ));
    }
    Ok(base)
}

/// `true` when a connection string (key/value or URL form) says `sslmode=prefer` in so many
/// words. (tokio-postgres parses a missing `sslmode` as `prefer` too; the pool documents that it
/// connects in plaintext, and refuses only the explicit request it cannot honour.)
fn asks_for_prefer(conn_str: &str) -> bool {
    let squeezed: String = conn_str
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    squeezed.match_indices("sslmode=").any(|(i, m)| {
        let value = &squeezed[i + m.len()..];
        let value = value.trim_start_matches(['\'', '"']);
        value.starts_with("prefer")
    })
}

/// The `(host, port)` pairs of `base` followed by `extra`, in priority order.
pub(crate) fn addresses(
    base: &tokio_postgres::Config,
    extra: Vec<(String, u16)>,
) -> Result<Vec<(String, u16)>, ConfigError> {
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
        let host = match (base.get_hostaddrs().get(i), base.get_hosts().get(i)) {
            (Some(addr), _) => addr.to_string(),
            (None, Some(Host::Tcp(h))) => h.clone(),
            (None, _) => {
                return Err(ConfigError::new(
                    "hosts",
                    "Unix-socket hosts are not supported; give TCP hosts",
                ));
            }
        };
        addrs.push((host, port));
    }
    addrs.extend(extra);
    if addrs.is_empty() {
        return Err(ConfigError::new("hosts", "no host given"));
    }
    if addrs.iter().any(|(h, _)| h.is_empty()) {
        return Err(ConfigError::new("hosts", "empty host name"));
    }
    Ok(addrs)
}

/// One configuration per address: the credentials and options of `base`, that host only,
/// no TLS, and the socket deadlines of `t`.
pub(crate) fn host_configs(
    base: &tokio_postgres::Config,
    addrs: Vec<(String, u16)>,
    t: &Timeouts,
) -> Result<Vec<HostConfig>, ConfigError> {
    let hosts: Vec<HostConfig> = addrs
        .into_iter()
        .map(|(host, port)| {
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
            c.ssl_mode(SslMode::Disable)
                .channel_binding(base.get_channel_binding())
                .host(&host)
                .port(port)
                .connect_timeout(t.connect)
                .tcp_user_timeout(t.tcp_user_timeout)
                .keepalives(true)
                .keepalives_idle(t.keepalive_idle)
                .keepalives_interval(t.keepalive_interval)
                .keepalives_retries(t.keepalive_retries);
            let name: Arc<str> = if host.contains(':') {
                format!("[{host}]:{port}").into()
            } else {
                format!("{host}:{port}").into()
            };
            HostConfig { name, config: c }
        })
        .collect();
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
        let base = base_config(Some(conn_str.to_owned()), None)?;
        let extra = extra.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect();
        let addrs = addresses(&base, extra)?;
        let hosts = host_configs(&base, addrs, &Timeouts::default())?;
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
        assert_eq!(field("host=a sslmode=require", &[]), "sslmode");
        // `prefer` would silently mean plaintext: refused, in both forms.
        assert_eq!(field("host=a sslmode=prefer", &[]), "sslmode");
        assert_eq!(field("host=a sslmode = 'prefer'", &[]), "sslmode");
        assert_eq!(field("postgresql://u@a/db?sslmode=prefer", &[]), "sslmode");
        assert!(names("host=a sslmode=disable", &[]).is_ok());
        assert!(
            names("host=a", &[]).is_ok(),
            "no sslmode: plaintext, as documented"
        );
        assert_eq!(field("host=a port=notaport", &[]), "connection_string");
        assert_eq!(field("host=/tmp", &[]), "hosts");
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
            let err = base_config(Some(s), None).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
        }
    }
}

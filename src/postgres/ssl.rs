//! libpq's TLS keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), which tokio-postgres
//! parses only in part: they are taken out of the connection string here (key/value and URL
//! forms) and the rest is left to tokio-postgres.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// libpq's `sslmode`: whether a connection uses TLS and how much of the server's certificate
/// it checks.
///
/// | mode | TLS | certificate checked |
/// |---|---|---|
/// | `disable` | never | — |
/// | `prefer` | when the server offers it (plaintext only if it answers "no TLS"; a certificate or handshake error fails the connection) | as `require` |
/// | `require` | always | not at all, unless a root certificate is given: then as `verify-ca` (as libpq) |
/// | `verify-ca` | always | chain to a trusted root |
/// | `verify-full` | always | chain to a trusted root, and the host name (each host of a multi-host string against its own name; an IP host against IP SANs) |
///
/// A Unix-socket host never uses TLS (as libpq). `allow` is not supported.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it.
    Prefer,
    /// TLS, certificate not verified (unless a root certificate is given).
    Require,
    /// TLS, certificate chain verified.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// `true` for the modes that never fall back to plaintext.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(ConfigError::new(
                    "sslmode",
                    "`allow` is not supported; use `disable`, `prefer`, `require`, `verify-ca` \
                     or `verify-full`",
                ));
            }
            other => {
                return Err(ConfigError::new(
                    "sslmode",
                    format!(
                        "unknown mode `{other}`; use `disable`, `prefer`, `require`, \
                         `verify-ca` or `verify-full`"
                    ),
                ));
            }
        })
    }
}

/// The TLS keys found in a connection string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SslKeys {
    pub(crate) mode: Option<SslMode>,
    pub(crate) rootcert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

/// libpq keys that tokio-postgres would reject as unknown and that we do not support either:
/// refused naming the key, not as a parse error.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    (
        "sslpassword",
        "encrypted client keys are not supported; decrypt the key beforehand",
    ),
    ("gssencmode", "GSSAPI is not supported"),
    ("krbsrvname", "GSSAPI is not supported"),
];

/// Takes the TLS keys out of `conn_str`: the string without them (for tokio-postgres) and
/// their values. A string that does not tokenize is returned unchanged, so that
/// tokio-postgres reports the syntax error.
pub(crate) fn split(conn_str: &str) -> Result<(String, SslKeys), ConfigError> {
    let pairs = if is_url(conn_str) {
        return split_url(conn_str);
    } else {
        match tokenize(conn_str) {
            Some(pairs) => pairs,
            None => return Ok((conn_str.to_owned(), SslKeys::default())),
        }
    };
    let mut keys = SslKeys::default();
    let mut rest = String::with_capacity(conn_str.len());
    for (k, v) in pairs {
        if !take(&mut keys, &k, &v)? {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(&k);
            rest.push_str("='");
            for c in v.chars() {
                if c == '\'' || c == '\\' {
                    rest.push('\\');
                }
                rest.push(c);
            }
            rest.push('\'');
        }
    }
    Ok((rest, keys))
}

/// Records `k = v` when it is one of ours; `false` when it is not.
fn take(keys: &mut SslKeys, k: &str, v: &str) -> Result<bool, ConfigError> {
    if let Some((field, why)) = UNSUPPORTED.iter().find(|(f, _)| *f == k) {
        return Err(ConfigError::new(field, *why));
    }
    match k {
        "sslmode" => keys.mode = Some(v.parse()?),
        "sslrootcert" => keys.rootcert = Some(v.to_owned()),
        "sslcert" => keys.cert = Some(v.to_owned()),
        "sslkey" => keys.key = Some(v.to_owned()),
        _ => return Ok(false),
    }
    Ok(true)
}

fn is_url(s: &str) -> bool {
    let s = s.trim_start();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn split_url(url: &str) -> Result<(String, SslKeys), ConfigError> {
    let mut keys = SslKeys::default();
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), keys));
    };
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        match (percent_decode(k), percent_decode(v)) {
            (Some(k), Some(v)) if take(&mut keys, &k, &v)? => {}
            _ => kept.push(param),
        }
    }
    let rest = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((rest, keys))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// libpq's key/value syntax: `key = value` pairs separated by whitespace; a value is quoted
/// with `'` (with `\'` and `\\` escapes) or runs to the next whitespace (with `\` escapes).
/// `None` when the string does not follow it.
fn tokenize(s: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_are_taken_out_of_both_forms() {
        let (rest, keys) = split(
            "host=a,b  user = app password='it\\'s' sslmode=verify-full sslrootcert='/etc/ssl/rds bundle.pem' sslcert=/c.pem sslkey=/k.pem",
        )
        .unwrap();
        assert_eq!(keys.mode, Some(SslMode::VerifyFull));
        assert_eq!(keys.rootcert.as_deref(), Some("/etc/ssl/rds bundle.pem"));
        assert_eq!(keys.cert.as_deref(), Some("/c.pem"));
        assert_eq!(keys.key.as_deref(), Some("/k.pem"));
        assert!(!rest.contains("ssl"), "{rest}");
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_user(), Some("app"));
        assert_eq!(parsed.get_password(), Some(&b"it's"[..]));

        let (rest, keys) =
            split("postgresql://u:p@a:5432,b/db?sslmode=verify-ca&application_name=x&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(keys.mode, Some(SslMode::VerifyCa));
        assert_eq!(keys.rootcert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(rest, "postgresql://u:p@a:5432,b/db?application_name=x");
        let (rest, _) = split("postgres://u@a/db?sslmode=disable").unwrap();
        assert_eq!(rest, "postgres://u@a/db");
    }

    #[test]
    fn unknown_and_unsupported_keys_name_the_field() {
        for (s, field) in [
            ("host=a sslmode=verify_full", "sslmode"),
            ("host=a sslmode=allow", "sslmode"),
            ("postgresql://a/db?sslmode=bogus", "sslmode"),
            ("host=a sslcrl=/x", "sslcrl"),
            ("host=a sslpassword=x", "sslpassword"),
            ("host=a gssencmode=require", "gssencmode"),
        ] {
            assert_eq!(split(s).unwrap_err().field(), field, "{s}");
        }
        // Broken syntax is left for tokio-postgres to report.
        let (rest, keys) = split("host=a password='open").unwrap();
        assert_eq!(rest, "host=a password='open");
        assert_eq!(keys, SslKeys::default());
    }
}

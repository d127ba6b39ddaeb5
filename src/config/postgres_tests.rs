//! Unit tests of `postgres.rs`.

use super::*;
use crate::config;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A service's config with the pool under `[postgres]`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Service {
    postgres: PostgresConfig,
}

fn read(text: &str) -> Result<PostgresConfig, InvalidConfig> {
    let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
    config::deserialize::<Service, _>(de).map(|s| s.postgres)
}

fn at() -> ConfigPath {
    ConfigPath::new("postgres")
}

/// A port on loopback with nothing behind it: the discovery a built pool starts is refused
/// at once and goes nowhere else.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn local() -> PostgresConfig {
    PostgresConfig {
        hosts: vec![format!("127.0.0.1:{}", closed_port())],
        ..PostgresConfig::default()
    }
}

fn every_field_set() -> PostgresConfig {
    PostgresConfig {
        connection_string: Some(Secret::new("host=10.0.0.1,10.0.0.2 port=5432")),
        hosts: vec!["db3.internal:5433".into(), "/run/postgresql".into()],
        user: Some("app".into()),
        password: Some(Secret::new("hunter2")),
        dbname: Some("orders".into()),
        sslmode: Some(SslMode::Disable),
        target_role: Some(TargetRole::PreferPrimary),
        read_role: Some(TargetRole::Standby),
        pool: PoolConfig {
            max_size: Some(4),
            max_concurrent_connects: Some(2),
            verify_idle_after: Some(None),
            reconnect_backoff: Some(BackoffConfig {
                cap: Some(ms(100)),
                ..BackoffConfig::default()
            }),
        },
        timeouts: PostgresTimeoutsConfig {
            connect: Some(ms(500)),
            login: Some(ms(800)),
            acquire: Some(ms(3000)),
            recycle: Some(ms(200)),
            probe: Some(ms(700)),
            query: Some(ms(4000)),
            tcp_user_timeout: Some(ms(2500)),
            keepalive_idle: Some(ms(3000)),
            keepalive_interval: Some(ms(500)),
            keepalive_retries: Some(2),
        },
        rediscovery_interval: Some(ms(25)),
        heartbeat: Some(Some(ms(150))),
        heartbeat_timeout: Some(ms(250)),
        resolve_interval: Some(ms(750)),
        max_connection_age: Some(Some(ms(600_000))),
        retry: RetryConfig {
            max_attempts: Some(6),
            ..RetryConfig::default()
        },
        budget: Some(BudgetConfig {
            capacity: Some(30),
            ..BudgetConfig::default()
        }),
        health: HealthConfig {
            failure_threshold: Some(3),
            ..HealthConfig::default()
        },
        #[cfg(feature = "tls")]
        tls: Some(super::super::TlsConfig {
            roots: Some(super::super::RootsConfig::Webpki),
            ..Default::default()
        }),
    }
}

#[test]
fn a_postgres_config_round_trips_through_toml() {
    let config = every_field_set();
    let text = toml::to_string(&Service {
        postgres: config.clone(),
    })
    .unwrap();
    for line in [
        "password = \"hunter2\"",
        "sslmode = \"disable\"",
        "target_role = \"prefer_primary\"",
        "read_role = \"standby\"",
        "[postgres.pool]",
        "verify_idle_after = \"off\"",
        "heartbeat = \"150ms\"",
        "heartbeat_timeout = \"250ms\"",
        "resolve_interval = \"750ms\"",
        "max_connection_age = \"10m\"",
        "tcp_user_timeout = \"2s500ms\"",
        "[postgres.pool.reconnect_backoff]",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert_eq!(read(&text).unwrap(), config);
    let text =
        "[postgres]\nsslmode = \"verify-full\"\n[postgres.pool]\nverify_idle_after = \"30s\"\n";
    let back = read(text).unwrap();
    assert_eq!(back.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(back.pool.verify_idle_after, Some(Some(ms(30_000))));
    let written = toml::to_string(&Service {
        postgres: back.clone(),
    })
    .unwrap();
    assert_eq!(read(&written).unwrap(), back);
}

#[test]
fn user_password_and_dbname_join_the_connection_string() {
    let mut c = PostgresConfig {
        user: Some("app".into()),
        password: Some(Secret::new("it's a \\ secret")),
        ..PostgresConfig::default()
    };
    assert_eq!(
        c.conn_str().unwrap(),
        r"user='app' password='it\'s a \\ secret'"
    );
    c.connection_string = Some(Secret::new("host=a dbname=x"));
    c.dbname = Some("orders".into());
    let s = c.conn_str().unwrap();
    assert!(s.starts_with("host=a dbname=x user='app'"), "{s}");
    assert!(s.ends_with("dbname='orders'"), "{s}");
    // tokio-postgres reads them back, the later key winning.
    let parsed: tokio_postgres::Config = s.parse().unwrap();
    assert_eq!(parsed.get_dbname(), Some("orders"));
    assert_eq!(parsed.get_password(), Some(&b"it's a \\ secret"[..]));
    c.connection_string = Some(Secret::new(
        "postgresql://h1:5432,h2:5433/db?sslmode=disable",
    ));
    let s = c.conn_str().unwrap();
    assert_eq!(
        s,
        "postgresql://h1:5432,h2:5433/db?sslmode=disable&user=app&password=it%27s%20a%20%5C%20secret&dbname=orders"
    );
    let parsed: tokio_postgres::Config = s.parse().unwrap();
    assert_eq!(parsed.get_user(), Some("app"));
    assert_eq!(parsed.get_password(), Some(&b"it's a \\ secret"[..]));
    assert_eq!(parsed.get_dbname(), Some("orders"));
    assert_eq!(PostgresConfig::default().conn_str(), None);
}

#[tokio::test]
async fn a_file_builds_the_pool_it_says() {
    let port = closed_port();
    let config = PostgresConfig {
        connection_string: Some(Secret::new(format!(
            "host=127.0.0.1 port={port} user=app password=hunter2"
        ))),
        hosts: vec![format!("127.0.0.1:{}", closed_port()), "[::1]:1".into()],
        sslmode: Some(SslMode::Disable),
        ..every_field_set()
    };
    #[cfg(feature = "tls")]
    let config = PostgresConfig {
        tls: None,
        ..config
    };
    let b = config.build_at(&at()).unwrap();
    let shown = format!("{b:?}");
    for part in [
        "target_role: PreferPrimary",
        "read_role: Standby",
        "max_size: 4",
        "max_concurrent_connects: 2",
        "verify_idle_after: None",
        "connect: 500ms, login: 800ms",
        "keepalive_retries: 2",
        "rediscovery_interval: 25ms",
        "heartbeat: Some(150ms)",
        "heartbeat_timeout: 250ms",
        "interval: 750ms, max_age: Some(600s)",
        "max_attempts: 6",
        "budget: true",
        "health: true",
        "ssl_mode: Some(Disable)",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    let pool = config.build_pool(&at()).unwrap();
    pool.close();
    assert_eq!(pool.hosts().len(), 3);
    assert_eq!(pool.target_role(), TargetRole::PreferPrimary);
    assert_eq!(pool.read_role(), TargetRole::Standby);
    let health = pool.tracker().core().config;
    assert_eq!(health.failure_threshold, 3);
    // The pool's own defaults stay where the file says nothing; with the heartbeat on, the
    // tracker's probes are bounded by the file's heartbeat timeout.
    assert_eq!(health.ejection_base, ms(500));
    assert_eq!(health.heartbeat, Some(ms(150)));
    assert_eq!(health.probe_timeout, ms(250));
}

#[tokio::test]
async fn an_empty_config_builds_the_builders_defaults() {
    let port = closed_port();
    let ours = PostgresConfig {
        hosts: vec![format!("127.0.0.1:{port}")],
        ..PostgresConfig::default()
    }
    .build_at(&at())
    .unwrap();
    let theirs = FailoverPool::builder().hosts([("127.0.0.1", port)]);
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    let (ours, theirs) = (ours.build().unwrap(), theirs.build().unwrap());
    ours.close();
    theirs.close();
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    assert_eq!(
        format!("{:?}", ours.tracker().core().config),
        format!("{:?}", theirs.tracker().core().config)
    );
    assert_eq!(
        format!("{:?}", ours.router()),
        format!("{:?}", theirs.router())
    );
    // A host with no port is on 5432; a connection string alone needs no `hosts`.
    let b = PostgresConfig {
        hosts: vec!["db1".into()],
        ..PostgresConfig::default()
    }
    .build_at(&at())
    .unwrap();
    assert!(format!("{b:?}").contains("extra_hosts: [(\"db1\", 5432)]"));
    let b = PostgresConfig {
        connection_string: Some(Secret::new("host=db1")),
        ..PostgresConfig::default()
    }
    .build_at(&at())
    .unwrap();
    assert_eq!(
        format!("{b:?}"),
        format!(
            "{:?}",
            FailoverPool::builder().connection_string("host=db1")
        )
    );
}

type Change = Box<dyn Fn(&mut PostgresConfig)>;

#[tokio::test]
async fn every_refused_value_names_its_path() {
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|c| c.hosts.clear()), "postgres.hosts"),
        (
            Box::new(|c| c.hosts.push("db:x".into())),
            "postgres.hosts[1]",
        ),
        (
            Box::new(|c| c.hosts.push("db:0".into())),
            "postgres.hosts[1]",
        ),
        (
            Box::new(|c| c.hosts.push("::1:5432".into())),
            "postgres.hosts[1]",
        ),
        (
            Box::new(|c| c.hosts.push("[::1".into())),
            "postgres.hosts[1]",
        ),
        (
            Box::new(|c| c.hosts.push(":5432".into())),
            "postgres.hosts[1]",
        ),
        (
            Box::new(|c| c.pool.max_size = Some(0)),
            "postgres.pool.max_size",
        ),
        (
            Box::new(|c| c.pool.max_concurrent_connects = Some(0)),
            "postgres.pool.max_concurrent_connects",
        ),
        (
            Box::new(|c| c.pool.verify_idle_after = Some(Some(Duration::ZERO))),
            "postgres.pool.verify_idle_after",
        ),
        (
            Box::new(|c| {
                c.pool.reconnect_backoff = Some(BackoffConfig {
                    factor: Some(0.5),
                    ..BackoffConfig::default()
                })
            }),
            "postgres.pool.reconnect_backoff.factor",
        ),
        (
            Box::new(|c| c.timeouts.connect = Some(Duration::ZERO)),
            "postgres.timeouts.connect",
        ),
        (
            Box::new(|c| c.timeouts.connect = Some(ms(4000))),
            "postgres.timeouts.login",
        ),
        (
            Box::new(|c| c.timeouts.acquire = Some(Duration::from_secs(2 * 86_400))),
            "postgres.timeouts.acquire",
        ),
        (
            Box::new(|c| c.timeouts.recycle = Some(Duration::ZERO)),
            "postgres.timeouts.recycle",
        ),
        (
            Box::new(|c| c.timeouts.probe = Some(Duration::ZERO)),
            "postgres.timeouts.probe",
        ),
        (
            Box::new(|c| c.timeouts.query = Some(Duration::ZERO)),
            "postgres.timeouts.query",
        ),
        (
            Box::new(|c| c.timeouts.tcp_user_timeout = Some(Duration::ZERO)),
            "postgres.timeouts.tcp_user_timeout",
        ),
        (
            Box::new(|c| c.timeouts.keepalive_idle = Some(Duration::ZERO)),
            "postgres.timeouts.keepalive_idle",
        ),
        (
            Box::new(|c| c.timeouts.keepalive_interval = Some(Duration::ZERO)),
            "postgres.timeouts.keepalive_interval",
        ),
        (
            Box::new(|c| c.rediscovery_interval = Some(Duration::ZERO)),
            "postgres.rediscovery_interval",
        ),
        (
            Box::new(|c| c.heartbeat = Some(Some(Duration::ZERO))),
            "postgres.heartbeat",
        ),
        (
            Box::new(|c| c.heartbeat_timeout = Some(Duration::ZERO)),
            "postgres.heartbeat_timeout",
        ),
        (
            Box::new(|c| c.resolve_interval = Some(Duration::ZERO)),
            "postgres.resolve_interval",
        ),
        (
            Box::new(|c| c.max_connection_age = Some(Some(Duration::ZERO))),
            "postgres.max_connection_age",
        ),
        (
            Box::new(|c| c.retry.max_attempts = Some(0)),
            "postgres.retry.max_attempts",
        ),
        (
            Box::new(|c| {
                c.budget = Some(BudgetConfig {
                    capacity: Some(0),
                    ..BudgetConfig::default()
                })
            }),
            "postgres.budget.capacity",
        ),
        (
            Box::new(|c| c.health.failure_threshold = Some(0)),
            "postgres.health.failure_threshold",
        ),
    ];
    for (change, path) in cases {
        let mut config = local();
        change(&mut config);
        let err = config.build_at(&at()).err().unwrap_or_else(|| {
            panic!("{path}: accepted {config:?}");
        });
        assert_eq!(err.path(), path, "{err}");
        assert!(err.to_string().starts_with(&format!("invalid `{path}`")));
    }
}

#[tokio::test]
async fn what_only_build_checks_is_named_by_build_pool() {
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|c| c.connection_string = Some(Secret::new("host=a port=x"))),
            "postgres.connection_string",
        ),
        (
            Box::new(|c| c.connection_string = Some(Secret::new("host=a,b port=1,2,3"))),
            "postgres.connection_string",
        ),
        (
            Box::new(|c| c.connection_string = Some(Secret::new("host=a sslmode=allow"))),
            "postgres.connection_string",
        ),
        (
            Box::new(|c| c.connection_string = Some(Secret::new("host=a sslcrl=/x"))),
            "postgres.connection_string",
        ),
        (
            Box::new(|c| c.hosts.push(c.hosts[0].clone())),
            "postgres.hosts",
        ),
        // Over the pool's own health defaults: its 10 s ejection cap is below this base,
        // and the cap is what to set.
        (
            Box::new(|c| c.health.ejection_base = Some(Duration::from_secs(20))),
            "postgres.health.ejection_cap",
        ),
        #[cfg(not(feature = "tls"))]
        (
            Box::new(|c| c.sslmode = Some(SslMode::Require)),
            "postgres.sslmode",
        ),
        #[cfg(feature = "tls")]
        (
            Box::new(|c| c.sslmode = Some(SslMode::VerifyFull)),
            "postgres.sslmode",
        ),
    ];
    for (change, path) in cases {
        let mut config = local();
        change(&mut config);
        let err = config.build_pool(&at()).err().unwrap_or_else(|| {
            panic!("{path}: accepted {config:?}");
        });
        assert_eq!(err.path(), path, "{err}");
    }
}

#[test]
fn every_unreadable_value_names_its_path() {
    for (text, path) in [
        ("[postgres]\nhosts = \"db1\"", "postgres.hosts"),
        ("[postgres]\nsslmode = \"allow\"", "postgres.sslmode"),
        ("[postgres]\nsslmode = \"verify_full\"", "postgres.sslmode"),
        (
            "[postgres]\ntarget_role = \"replica\"",
            "postgres.target_role",
        ),
        ("[postgres]\nread_role = 1", "postgres.read_role"),
        (
            "[postgres]\nrediscovery_interval = \"0.5\"",
            "postgres.rediscovery_interval",
        ),
        ("[postgres.pool]\nmax_size = -1", "postgres.pool.max_size"),
        (
            "[postgres.pool]\nverify_idle_after = \"never\"",
            "postgres.pool.verify_idle_after",
        ),
        ("[postgres.pool]\nmin_size = 1", "postgres.pool.min_size"),
        (
            "[postgres.timeouts]\nlogin = \"3\"",
            "postgres.timeouts.login",
        ),
        (
            "[postgres.timeouts]\nstatement = \"1s\"",
            "postgres.timeouts.statement",
        ),
        (
            "[postgres.timeouts]\nkeepalive_retries = \"3\"",
            "postgres.timeouts.keepalive_retries",
        ),
        (
            "[postgres.retry.backoff]\njitter = \"some\"",
            "postgres.retry.backoff.jitter",
        ),
    ] {
        let err = read(text).unwrap_err();
        assert_eq!(err.path(), path, "{text}: {err}");
    }
}

#[tokio::test]
async fn a_password_never_shows() {
    let config = PostgresConfig {
        connection_string: Some(Secret::new("host=127.0.0.1 user=app password=inthestring")),
        password: Some(Secret::new("hunter2")),
        ..local()
    };
    let shown = format!("{config:?} {:?}", config.build_at(&at()).unwrap());
    for secret in ["hunter2", "inthestring"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // An error about the connection string does not quote it.
    let config = PostgresConfig {
        connection_string: Some(Secret::new("host=a password=inthestring port=x")),
        ..local()
    };
    let err = config.build_pool(&at()).unwrap_err();
    assert_eq!(err.path(), "postgres.connection_string");
    assert!(!err.to_string().contains("inthestring"), "{err}");
    let value: toml::Value = toml::from_str("[postgres]\npassword = 987654").unwrap();
    let err = config::deserialize::<Service, _>(value).unwrap_err();
    assert_eq!(err.path(), "postgres.password");
    assert!(!err.to_string().contains("987654"), "{err}");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_files_are_checked_and_the_sslmode_decides_verification() {
    use super::super::{RootsConfig, TlsConfig};
    let missing = std::env::temp_dir().join("switchover-config-test-no-such-file.pem");
    let mut config = local();
    config.tls = Some(TlsConfig {
        ca_file: Some(missing.clone()),
        ..TlsConfig::default()
    });
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "postgres.tls.ca_file"
    );
    config.tls = Some(TlsConfig {
        roots: Some(RootsConfig::Webpki),
        client_key_file: Some(missing),
        ..TlsConfig::default()
    });
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "postgres.tls.client_cert_file"
    );
    config.tls = Some(TlsConfig {
        verification: Some(crate::tls::Verification::None),
        ..TlsConfig::default()
    });
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "postgres.tls.verification"
    );
    // With roots given, verify-full builds.
    config.tls = Some(TlsConfig {
        roots: Some(RootsConfig::Webpki),
        ..TlsConfig::default()
    });
    config.sslmode = Some(SslMode::VerifyFull);
    let pool = config.build_pool(&at()).unwrap();
    pool.close();
}

//! Unit tests of `redis.rs`.

use super::*;
use crate::config;
use crate::retry::Jitter;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A service's config with the pool under `[redis]`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Service {
    redis: RedisConfig,
}

fn read(text: &str) -> Result<RedisConfig, InvalidConfig> {
    let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
    config::deserialize::<Service, _>(de).map(|s| s.redis)
}

fn at() -> ConfigPath {
    ConfigPath::new("redis")
}

/// A port on loopback with nothing behind it.
fn closed() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", l.local_addr().unwrap().port())
}

fn nodes() -> RedisConfig {
    RedisConfig {
        nodes: vec![closed()],
        ..RedisConfig::default()
    }
}

fn every_field_set() -> RedisConfig {
    RedisConfig {
        nodes: Vec::new(),
        sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
        master_name: Some("cache".into()),
        username: Some("app".into()),
        password: Some(Secret::new("hunter2")),
        sentinel_username: Some("watcher".into()),
        sentinel_password: Some(Secret::new("s3ntinel")),
        db: Some(3),
        timeouts: RedisTimeoutsConfig {
            connect: Some(ms(100)),
            response: Some(ms(400)),
        },
        read_from: Some(ReadFromConfig::LowestLatency),
        max_replica_lag: Some(1 << 20),
        discovery_interval: Some(ms(2000)),
        rediscovery_interval: Some(ms(20)),
        dedicated_pool_size: Some(2),
        heartbeat: Some(None),
        heartbeat_timeout: Some(ms(250)),
        resolve_interval: Some(ms(750)),
        max_connection_age: Some(None),
        retry: RetryConfig {
            max_attempts: Some(7),
            backoff: Some(config::BackoffConfig {
                jitter: Some(Jitter::None),
                ..Default::default()
            }),
            ..RetryConfig::default()
        },
        budget: Some(BudgetConfig {
            capacity: Some(40),
            ..BudgetConfig::default()
        }),
        health: HealthConfig {
            failure_threshold: Some(4),
            ..HealthConfig::default()
        },
        #[cfg(feature = "tls")]
        tls: Some(super::super::TlsConfig {
            roots: Some(super::super::RootsConfig::Webpki),
            server_name: Some("cache.internal".into()),
            ..Default::default()
        }),
        #[cfg(feature = "tls")]
        sentinel_tls: None,
    }
}

#[test]
fn a_redis_config_round_trips_through_toml() {
    let config = every_field_set();
    let text = toml::to_string(&Service {
        redis: config.clone(),
    })
    .unwrap();
    for line in [
        "master_name = \"cache\"",
        "password = \"hunter2\"",
        "read_from = \"lowest_latency\"",
        "rediscovery_interval = \"20ms\"",
        "heartbeat = \"off\"",
        "heartbeat_timeout = \"250ms\"",
        "resolve_interval = \"750ms\"",
        "max_connection_age = \"off\"",
        "[redis.timeouts]",
        "response = \"400ms\"",
        "[redis.retry.backoff]",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert_eq!(read(&text).unwrap(), config);
    // And the static form, with a URL.
    let text = "[redis]\nnodes = [\"redis://127.0.0.1:7000\", \"[::1]:7001\"]\nread_from = \"replica_only\"\n";
    let back = read(text).unwrap();
    assert_eq!(back.read_from, Some(ReadFromConfig::ReplicaOnly));
    let written = toml::to_string(&Service {
        redis: back.clone(),
    })
    .unwrap();
    assert_eq!(read(&written).unwrap(), back);
}

#[test]
fn a_file_sets_what_it_says_on_the_builder() {
    let b = every_field_set().build_at(&at()).unwrap();
    let shown = format!("{b:?}");
    for part in [
        "master: Some(\"cache\")",
        "username: Some(\"app\")",
        "db: 3",
        "connect: 100ms, response: 400ms",
        "max_replica_lag: Some(1048576)",
        "discovery_interval: 2s",
        "rediscovery_interval: 20ms",
        "dedicated_pool_size: 2",
        "heartbeat: None, heartbeat_timeout: Some(250ms)",
        "resolve_interval: 750ms",
        "max: None",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    assert!(shown.contains("Secret(***)"), "{shown}");
}

#[test]
fn an_empty_config_builds_the_builders_defaults() {
    let node = closed();
    let ours = RedisConfig {
        nodes: vec![node.clone()],
        ..RedisConfig::default()
    };
    let theirs = SplitPool::builder().nodes([node]);
    assert_eq!(
        format!("{:?}", ours.build_at(&at()).unwrap()),
        format!("{theirs:?}")
    );
    let ours = RedisConfig {
        sentinels: vec!["127.0.0.1:26379".into()],
        master_name: Some("m".into()),
        ..RedisConfig::default()
    };
    let theirs = SplitPool::builder()
        .sentinels(["127.0.0.1:26379"])
        .master_name("m");
    assert_eq!(
        format!("{:?}", ours.build_at(&at()).unwrap()),
        format!("{theirs:?}")
    );
    // Empty sections are left out of the builder, as an absent one.
    let text =
        "[redis]\nnodes = [\"127.0.0.1:1\"]\n[redis.retry]\n[redis.health]\n[redis.timeouts]\n";
    let read_back = read(text).unwrap();
    assert_eq!(read_back.retry, RetryConfig::default());
    assert_eq!(read_back.health, HealthConfig::default());
    assert_eq!(read_back.timeouts, RedisTimeoutsConfig::default());
}

type Change = Box<dyn Fn(&mut RedisConfig)>;

fn refused() -> Vec<(Change, &'static str)> {
    vec![
        (Box::new(|c| c.nodes.clear()), "redis.nodes"),
        (
            Box::new(|c| c.sentinels = vec!["127.0.0.1:26379".into()]),
            "redis.nodes",
        ),
        (
            Box::new(|c| c.nodes.push("nohost".into())),
            "redis.nodes[1]",
        ),
        (
            Box::new(|c| {
                c.nodes.clear();
                c.sentinels = vec!["127.0.0.1:26379".into(), "unix:///tmp/s.sock".into()];
                c.master_name = Some("m".into());
            }),
            "redis.sentinels[1]",
        ),
        (
            Box::new(|c| {
                c.nodes.clear();
                c.sentinels = vec!["127.0.0.1:26379".into()];
            }),
            "redis.master_name",
        ),
        (
            Box::new(|c| {
                c.nodes.clear();
                c.sentinels = vec!["127.0.0.1:26379".into()];
                c.master_name = Some(" ".into());
            }),
            "redis.master_name",
        ),
        (
            Box::new(|c| c.master_name = Some("m".into())),
            "redis.master_name",
        ),
        (Box::new(|c| c.db = Some(-1)), "redis.db"),
        (Box::new(|c| c.db = Some(65_536)), "redis.db"),
        (
            Box::new(|c| c.timeouts.response = Some(Duration::ZERO)),
            "redis.timeouts.response",
        ),
        (
            Box::new(|c| c.timeouts.connect = Some(ms(2000))),
            "redis.timeouts.connect",
        ),
        (
            Box::new(|c| c.timeouts.connect = Some(Duration::ZERO)),
            "redis.timeouts.connect",
        ),
        (
            Box::new(|c| c.discovery_interval = Some(Duration::ZERO)),
            "redis.discovery_interval",
        ),
        (
            Box::new(|c| c.discovery_interval = Some(Duration::from_secs(2 * 86_400))),
            "redis.discovery_interval",
        ),
        // Against the other interval's default: 1 s, 50 ms.
        (
            Box::new(|c| c.discovery_interval = Some(ms(40))),
            "redis.rediscovery_interval",
        ),
        (
            Box::new(|c| c.rediscovery_interval = Some(ms(1001))),
            "redis.rediscovery_interval",
        ),
        (
            Box::new(|c| c.rediscovery_interval = Some(Duration::ZERO)),
            "redis.rediscovery_interval",
        ),
        (
            Box::new(|c| c.dedicated_pool_size = Some(0)),
            "redis.dedicated_pool_size",
        ),
        (
            Box::new(|c| c.health.failure_threshold = Some(0)),
            "redis.health.failure_threshold",
        ),
        (
            Box::new(|c| c.heartbeat = Some(Some(Duration::ZERO))),
            "redis.heartbeat",
        ),
        (
            Box::new(|c| c.heartbeat_timeout = Some(Duration::ZERO)),
            "redis.heartbeat_timeout",
        ),
        (
            Box::new(|c| c.health.ejection_growth = Some(0.5)),
            "redis.health.ejection_growth",
        ),
        (
            Box::new(|c| c.resolve_interval = Some(Duration::ZERO)),
            "redis.resolve_interval",
        ),
        (
            Box::new(|c| c.max_connection_age = Some(Some(Duration::ZERO))),
            "redis.max_connection_age",
        ),
    ]
}

#[tokio::test]
async fn every_refused_value_names_its_path_and_the_builder_refuses_it_too() {
    for (change, path) in refused() {
        let mut config = nodes();
        change(&mut config);
        let err = config.build_at(&at()).err().unwrap_or_else(|| {
            panic!("{path}: accepted {config:?}");
        });
        assert_eq!(err.path(), path, "{err}");
        assert!(err.to_string().starts_with(&format!("invalid `{path}`")));
        // The builder, given the same values, refuses them before connecting.
        let raw = builder_of(&config);
        let built = raw.build().await.expect_err("refused");
        let e = built
            .config_error()
            .unwrap_or_else(|| panic!("{path}: {built}"));
        // The builder's own field, named here by its path.
        let named = config.rejected(&at(), e);
        let base = |p: &str| p.split('[').next().unwrap().to_owned();
        assert_eq!(base(named.path()), base(path), "{path}: {e}");
    }
    // Retry and budget refusals are the core sections', under their paths.
    let mut config = nodes();
    config.retry.max_attempts = Some(0);
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "redis.retry.max_attempts"
    );
    let mut config = nodes();
    config.budget = Some(BudgetConfig {
        capacity: Some(0),
        ..Default::default()
    });
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "redis.budget.capacity"
    );
}

/// The builder with `config`'s values, set without the config's checks.
fn builder_of(config: &RedisConfig) -> SplitPoolBuilder {
    let mut b = SplitPool::builder()
        .nodes(config.nodes.iter().cloned())
        .sentinels(config.sentinels.iter().cloned())
        .timeouts(config.timeouts.timeouts());
    if let Some(m) = &config.master_name {
        b = b.master_name(m.clone());
    }
    if let Some(db) = config.db {
        b = b.db(db);
    }
    if let Some(d) = config.discovery_interval {
        b = b.discovery_interval(d);
    }
    if let Some(d) = config.rediscovery_interval {
        b = b.rediscovery_interval(d);
    }
    if let Some(n) = config.dedicated_pool_size {
        b = b.dedicated_pool_size(n);
    }
    if let Some(h) = config.heartbeat {
        b = b.heartbeat(h);
    }
    if let Some(t) = config.heartbeat_timeout {
        b = b.heartbeat_timeout(t);
    }
    if let Some(d) = config.resolve_interval {
        b = b.resolve_interval(d);
    }
    if let Some(age) = config.max_connection_age {
        b = b.max_connection_age(age);
    }
    let health = config.health.clone();
    b.health(move |mut h| {
        if let Some(n) = health.failure_threshold {
            h = h.failure_threshold(n);
        }
        if let Some(g) = health.ejection_growth {
            h = h.ejection_growth(g);
        }
        h
    })
}

#[test]
fn every_unreadable_value_names_its_path() {
    for (text, path) in [
        ("[redis]\nnodes = \"127.0.0.1:1\"", "redis.nodes"),
        ("[redis]\ndb = \"zero\"", "redis.db"),
        ("[redis]\nread_from = \"nearest\"", "redis.read_from"),
        (
            "[redis]\ndiscovery_interval = \"1\"",
            "redis.discovery_interval",
        ),
        ("[redis]\npasword = \"x\"", "redis.pasword"),
        (
            "[redis.timeouts]\nresponse = \"2x\"",
            "redis.timeouts.response",
        ),
        (
            "[redis.timeouts]\nattempt = \"1s\"",
            "redis.timeouts.attempt",
        ),
        (
            "[redis.retry]\nmax_attempts = -1",
            "redis.retry.max_attempts",
        ),
        (
            "[redis.health]\nejection_base = 5",
            "redis.health.ejection_base",
        ),
        ("[redis]\npassword = 123456", "redis.password"),
    ] {
        let err = read(text).unwrap_err();
        assert_eq!(err.path(), path, "{text}: {err}");
    }
}

#[tokio::test]
async fn a_password_never_shows() {
    let mut config = every_field_set();
    config.sentinels[0] = "redis://app:urlpass@127.0.0.1:26379".into();
    let shown = format!("{config:?} {:?}", config.build_at(&at()).unwrap());
    for secret in ["hunter2", "s3ntinel", "urlpass"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // Not in the errors either: a password that is not a string (read from a parsed
    // value: `toml::Deserializer::parse` quotes the offending line of the document in
    // every error it gives), a bad URL with one.
    let value: toml::Value = toml::from_str("[redis]\npassword = 987654").unwrap();
    let err = config::deserialize::<Service, _>(value).unwrap_err();
    assert_eq!(err.path(), "redis.password");
    assert!(!err.to_string().contains("987654"), "{err}");
    let config = RedisConfig {
        nodes: vec!["redis://app:urlpass@nohost".into()],
        password: Some(Secret::new("hunter2")),
        ..RedisConfig::default()
    };
    let err = config.build_at(&at()).unwrap_err();
    assert_eq!(err.path(), "redis.nodes[0]");
    let text = format!("{err} {err:?} {config:?}");
    assert!(
        !text.contains("urlpass") && !text.contains("hunter2"),
        "{text}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_files_are_checked_and_builder_errors_are_named_by_path() {
    use super::super::TlsConfig;
    let missing = std::env::temp_dir().join("switchover-config-test-no-such-file.pem");
    let mut config = nodes();
    config.tls = Some(TlsConfig {
        ca_file: Some(missing.clone()),
        ..Default::default()
    });
    let err = config.build_at(&at()).unwrap_err();
    assert_eq!(err.path(), "redis.tls.ca_file", "{err}");
    config.tls = Some(TlsConfig {
        roots: Some(super::super::RootsConfig::Webpki),
        client_cert_file: Some(missing),
        ..Default::default()
    });
    let err = config.build_at(&at()).unwrap_err();
    assert_eq!(err.path(), "redis.tls.client_key_file", "{err}");
    config.tls = None;
    config.sentinel_tls = Some(TlsConfig::default());
    assert_eq!(
        config.build_at(&at()).unwrap_err().path(),
        "redis.sentinel_tls"
    );
    // TLS and plaintext nodes mixed: refused by the builder's build, named here.
    let config = RedisConfig {
        nodes: vec![
            format!("rediss://{}", closed()),
            format!("redis://{}", closed()),
        ],
        ..RedisConfig::default()
    };
    let b = config.build_at(&at()).unwrap();
    let err = b.build().await.err().unwrap();
    let named = config.rejected(&at(), err.config_error().unwrap());
    assert_eq!(named.path(), "redis.nodes");
}

//! Config from files: every core section read from TOML, built with the builders' own
//! validation, errors named by their dotted path, and empty sections equal to the builders'
//! defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchover::config::{
    self, BackoffConfig, BudgetConfig, ConfigPath, FailureRateConfig, HealthConfig, HealthSettings,
    InvalidConfig, RetryConfig, RouterConfig, Section,
};
use switchover::health::HealthTracker;
use switchover::retry::{ExponentialBackoff, Jitter, RetryBudget, RetryPolicy};
use switchover::route::{Failback, Router};

/// What a service's config holds for one dependency.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Dependency {
    retry: RetryConfig,
    budget: BudgetConfig,
    health: HealthConfig,
    router: RouterConfig,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn read(text: &str) -> Result<Dependency, InvalidConfig> {
    let de = toml::Deserializer::parse(text).expect("valid TOML syntax");
    config::deserialize(de)
}

/// Reads and builds every section under `api`, as an application would.
fn build(text: &str) -> Result<(), InvalidConfig> {
    let dep = read(text)?;
    let at = ConfigPath::new("api");
    dep.retry.build_at(&at.join("retry"))?;
    dep.budget.build_at(&at.join("budget"))?;
    dep.health.build_at(&at.join("health"))?;
    dep.router.build_at(&at.join("router"))?;
    Ok(())
}

fn every_field_set() -> Dependency {
    Dependency {
        retry: RetryConfig {
            max_attempts: Some(4),
            deadline: Some(ms(2000)),
            attempt_timeout: Some(ms(500)),
            max_delay: Some(ms(1500)),
            throttle_factor: Some(3.0),
            backoff: Some(BackoffConfig {
                base: Some(ms(20)),
                factor: Some(1.5),
                cap: Some(ms(400)),
                jitter: Some(Jitter::Decorrelated),
                seed: Some(7),
            }),
        },
        budget: BudgetConfig {
            capacity: Some(100),
            retry_cost: Some(4),
            timeout_retry_cost: Some(8),
            success_refill: Some(2),
        },
        health: HealthConfig {
            failure_threshold: Some(5),
            failure_rate: Some(FailureRateConfig {
                ratio: 0.5,
                window: 20,
            }),
            recovery_successes: Some(3),
            ejection_base: Some(ms(250)),
            ejection_growth: Some(1.5),
            ejection_cap: Some(ms(10_000)),
            stable_after: Some(ms(60_000)),
            throttling_marks_down: Some(true),
            probe_interval: Some(ms(100)),
            probe_timeout: Some(ms(50)),
            heartbeat: Some(ms(5000)),
            heartbeat_jitter: Some(0.3),
        },
        router: RouterConfig {
            failback: Some(Failback::After(ms(90_000))),
        },
    }
}

#[test]
fn a_config_round_trips_through_toml() {
    let dep = every_field_set();
    let text = toml::to_string(&dep).unwrap();
    assert!(text.contains("deadline = \"2s\""), "{text}");
    assert!(text.contains("failback = \"1m30s\""), "{text}");
    assert!(text.contains("jitter = \"decorrelated\""), "{text}");
    assert_eq!(read(&text).unwrap(), dep);

    let manual = Dependency {
        router: RouterConfig {
            failback: Some(Failback::Manual),
        },
        ..Dependency::default()
    };
    let text = toml::to_string(&manual).unwrap();
    assert!(text.contains("failback = \"manual\""), "{text}");
    assert_eq!(read(&text).unwrap(), manual);
}

#[test]
fn a_hand_written_file_builds_the_values_it_says() {
    let dep = read(
        r#"
        [retry]
        max_attempts = 4
        deadline = "2s"
        attempt_timeout = "500ms"
        backoff = { base = "20ms", cap = "1s", jitter = "none" }

        [budget]
        capacity = 20

        [health]
        failure_threshold = 2
        ejection_base = "250ms"
        failure_rate = { ratio = 0.5, window = 10 }

        [router]
        failback = "1m"
        "#,
    )
    .unwrap();
    let policy = dep.retry.build().unwrap();
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.deadline(), Some(ms(2000)));
    assert_eq!(policy.attempt_timeout(), Some(ms(500)));
    assert_eq!(policy.max_delay(), RetryPolicy::default().max_delay());
    let expected_backoff = ExponentialBackoff::builder()
        .base(ms(20))
        .cap(ms(1000))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    assert_eq!(*policy.backoff(), expected_backoff);

    let budget = dep.budget.build().unwrap();
    assert_eq!((budget.capacity(), budget.available()), (20, 20));

    let health = dep.health.build().unwrap();
    let tracker = health
        .apply(HealthTracker::builder().endpoint("a"))
        .build()
        .unwrap();
    let by_hand = HealthTracker::builder()
        .endpoint("a")
        .failure_threshold(2)
        .ejection_base(ms(250))
        .failure_rate(switchover::health::FailureRate::new(0.5, 10))
        .build()
        .unwrap();
    assert_eq!(format!("{tracker:?}"), format!("{by_hand:?}"));

    let router = dep.router.build().unwrap();
    assert_eq!(router.failback(), Some(Failback::After(ms(60_000))));
}

#[test]
fn empty_sections_build_the_builders_defaults() {
    let dep = read("").unwrap();
    assert_eq!(dep, Dependency::default());

    let policy = dep.retry.build().unwrap();
    let default = RetryPolicy::default();
    assert_eq!(policy.max_attempts(), default.max_attempts());
    assert_eq!(policy.deadline(), default.deadline());
    assert_eq!(policy.attempt_timeout(), default.attempt_timeout());
    assert_eq!(policy.max_delay(), default.max_delay());
    assert_eq!(policy.throttle_factor(), default.throttle_factor());
    assert_eq!(policy.backoff(), default.backoff());
    assert_eq!(
        BackoffConfig::default().build().unwrap(),
        ExponentialBackoff::default()
    );

    // A budget shows its costs only through what it charges: charge both the same way.
    let (ours, theirs) = (dep.budget.build().unwrap(), RetryBudget::new());
    for budget in [&ours, &theirs] {
        assert!(budget.withdraw_retry(false));
        assert!(budget.withdraw_retry(true));
        budget.deposit_success();
    }
    assert_eq!(
        (ours.capacity(), ours.available()),
        (theirs.capacity(), theirs.available())
    );
    assert_eq!(theirs.available(), 500 - 5 - 10 + 1);

    let health = dep.health.build().unwrap();
    assert_eq!(health, HealthSettings::default());
    let ours = health
        .apply(HealthTracker::<&str>::builder())
        .build()
        .unwrap();
    let theirs = HealthTracker::<&str>::builder().build().unwrap();
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));

    let router = dep.router.build().unwrap();
    let tracker = HealthTracker::new(["a"]);
    let ours = router
        .apply(Router::builder(&tracker).endpoint("a", 0))
        .build()
        .unwrap();
    let theirs = Router::builder(&tracker).endpoint("a", 0).build().unwrap();
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
}

#[test]
fn a_config_over_a_base_policy_changes_only_what_it_sets() {
    let base = RetryPolicy::builder()
        .max_attempts(4)
        .deadline(ms(1000))
        .backoff(
            ExponentialBackoff::builder()
                .base(ms(25))
                .cap(ms(250))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let config = RetryConfig {
        attempt_timeout: Some(ms(100)),
        backoff: Some(BackoffConfig {
            factor: Some(3.0),
            ..BackoffConfig::default()
        }),
        ..RetryConfig::default()
    };
    let policy = config
        .build_from(&base, &ConfigPath::new("dynamo.retry"))
        .unwrap();
    assert_eq!(policy.max_attempts(), 4);
    assert_eq!(policy.deadline(), Some(ms(1000)));
    assert_eq!(policy.attempt_timeout(), Some(ms(100)));
    assert_eq!(policy.backoff().base(), ms(25));
    assert_eq!(policy.backoff().cap(), ms(250));
    assert_eq!(policy.backoff().factor(), 3.0);
}

/// Each value a builder refuses, and the path its error must name.
const REFUSED: &[(&str, &str)] = &[
    ("[retry]\nmax_attempts = 0", "api.retry.max_attempts"),
    ("[retry]\nmax_attempts = 10001", "api.retry.max_attempts"),
    ("[retry]\ndeadline = \"0s\"", "api.retry.deadline"),
    ("[retry]\ndeadline = \"2d\"", "api.retry.deadline"),
    (
        "[retry]\nattempt_timeout = \"0s\"",
        "api.retry.attempt_timeout",
    ),
    ("[retry]\nmax_delay = \"0s\"", "api.retry.max_delay"),
    (
        "[retry]\nthrottle_factor = 0.5",
        "api.retry.throttle_factor",
    ),
    ("[retry.backoff]\nbase = \"0s\"", "api.retry.backoff.base"),
    ("[retry.backoff]\nfactor = 0.5", "api.retry.backoff.factor"),
    // The backoff builder checks the cap against the base and names the base.
    ("[retry.backoff]\ncap = \"10ms\"", "api.retry.backoff.base"),
    ("[budget]\ncapacity = 1", "api.budget.capacity"),
    ("[budget]\nretry_cost = 0", "api.budget.retry_cost"),
    (
        "[budget]\ntimeout_retry_cost = 0",
        "api.budget.timeout_retry_cost",
    ),
    (
        "[health]\nfailure_threshold = 0",
        "api.health.failure_threshold",
    ),
    (
        "[health]\nfailure_rate = { ratio = 1.5, window = 10 }",
        "api.health.failure_rate",
    ),
    (
        "[health]\nfailure_rate = { ratio = 0.5, window = 0 }",
        "api.health.failure_rate",
    ),
    (
        "[health]\nrecovery_successes = 0",
        "api.health.recovery_successes",
    ),
    (
        "[health]\nejection_base = \"0s\"",
        "api.health.ejection_base",
    ),
    (
        "[health]\nejection_growth = 0.5",
        "api.health.ejection_growth",
    ),
    (
        "[health]\nejection_cap = \"10ms\"",
        "api.health.ejection_cap",
    ),
    ("[health]\nstable_after = \"2d\"", "api.health.stable_after"),
    (
        "[health]\nprobe_interval = \"0s\"",
        "api.health.probe_interval",
    ),
    (
        "[health]\nprobe_timeout = \"0s\"",
        "api.health.probe_timeout",
    ),
    ("[health]\nheartbeat = \"0s\"", "api.health.heartbeat"),
    (
        "[health]\nheartbeat_jitter = 1.0",
        "api.health.heartbeat_jitter",
    ),
];

#[test]
fn every_refused_value_names_its_path() {
    for (text, path) in REFUSED {
        let err = build(text).expect_err(text);
        assert_eq!(err.path(), *path, "{text}: {err}");
        assert!(
            err.to_string().starts_with(&format!("invalid `{path}`: ")),
            "{err}"
        );
    }
}

/// Each field that holds something other than a number, and a value of the wrong shape.
const UNREADABLE: &[(&str, &str)] = &[
    ("[retry]\nmax_attempts = \"four\"", "retry.max_attempts"),
    ("[retry]\ndeadline = \"2x\"", "retry.deadline"),
    ("[retry]\nattempt_timeout = 500", "retry.attempt_timeout"),
    ("[retry]\nmax_delay = \"5\"", "retry.max_delay"),
    ("[retry]\nthrottle_factor = \"2\"", "retry.throttle_factor"),
    ("[retry]\nretries = 3", "retry.retries"),
    ("[retry.backoff]\nbase = \"fast\"", "retry.backoff.base"),
    ("[retry.backoff]\nfactor = true", "retry.backoff.factor"),
    ("[retry.backoff]\ncap = \"1 s\"", "retry.backoff.cap"),
    (
        "[retry.backoff]\njitter = \"random\"",
        "retry.backoff.jitter",
    ),
    ("[retry.backoff]\nseed = -1", "retry.backoff.seed"),
    ("[budget]\ncapacity = -5", "budget.capacity"),
    ("[budget]\nretry_cost = 1.5", "budget.retry_cost"),
    (
        "[budget]\ntimeout_retry_cost = \"10\"",
        "budget.timeout_retry_cost",
    ),
    ("[budget]\nsuccess_refill = false", "budget.success_refill"),
    (
        "[health]\nfailure_threshold = \"3\"",
        "health.failure_threshold",
    ),
    (
        "[health]\nfailure_rate = { ratio = 0.5 }",
        "health.failure_rate",
    ),
    (
        "[health]\nrecovery_successes = 2.5",
        "health.recovery_successes",
    ),
    ("[health]\nejection_base = \"1\"", "health.ejection_base"),
    (
        "[health]\nejection_growth = \"x2\"",
        "health.ejection_growth",
    ),
    (
        "[health]\nejection_cap = \"30 seconds\"",
        "health.ejection_cap",
    ),
    ("[health]\nstable_after = 30", "health.stable_after"),
    (
        "[health]\nthrottling_marks_down = \"no\"",
        "health.throttling_marks_down",
    ),
    (
        "[health]\nprobe_interval = \"1sec\"",
        "health.probe_interval",
    ),
    ("[health]\nprobe_timeout = \"\"", "health.probe_timeout"),
    ("[health]\nheartbeat = \"5\"", "health.heartbeat"),
    ("[router]\nfailback = \"never\"", "router.failback"),
    ("[router]\nfailback = 30", "router.failback"),
];

#[test]
fn every_unreadable_value_names_its_path() {
    for (text, path) in UNREADABLE {
        let err = read(text).expect_err(text);
        assert_eq!(err.path(), *path, "{text}: {err}");
    }
    // The reason says what is wrong with a duration.
    let err = read("[retry]\ndeadline = \"2x\"").unwrap_err();
    assert!(err.reason().contains("unknown unit `x`"), "{err}");
    let err = read("[retry]\ndeadline = \"250\"").unwrap_err();
    assert!(err.reason().contains("needs a unit"), "{err}");
}

/// The Redis and Postgres sections, read from one service file as an application would.
#[cfg(any(feature = "redis", feature = "postgres"))]
mod pools {
    use serde::{Deserialize, Serialize};
    use switchover::config::{self, ConfigPath, InvalidConfig, Section};

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Service {
        #[cfg(feature = "redis")]
        redis: config::RedisConfig,
        #[cfg(feature = "postgres")]
        postgres: config::PostgresConfig,
    }

    fn read(text: &str) -> Result<Service, InvalidConfig> {
        config::deserialize(toml::Deserializer::parse(text).expect("valid TOML syntax"))
    }

    #[cfg(feature = "redis")]
    const REDIS: &str = r#"
[redis]
sentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]
master_name = "cache"
password = "hunter2"
read_from = "replica_only"

[redis.timeouts]
response = "300ms"

[redis.retry]
max_attempts = 12
"#;

    #[cfg(feature = "postgres")]
    const POSTGRES: &str = r#"
[postgres]
hosts = ["127.0.0.1:1", "127.0.0.1:2"]
user = "app"
password = "pg-secret"
target_role = "primary"
read_role = "prefer_standby"

[postgres.pool]
max_size = 8
verify_idle_after = "off"

[postgres.timeouts]
acquire = "2s"
"#;

    fn service_text() -> String {
        let mut text = String::new();
        #[cfg(feature = "redis")]
        text.push_str(REDIS);
        #[cfg(feature = "postgres")]
        text.push_str(POSTGRES);
        text
    }

    #[test]
    fn a_service_file_round_trips_through_toml() {
        let service = read(&service_text()).unwrap();
        let written = toml::to_string(&service).unwrap();
        assert_eq!(read(&written).unwrap(), service);
        let shown = format!("{service:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pg-secret"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn every_section_builds_and_names_a_refused_value_by_its_path() {
        let service = read(&service_text()).unwrap();
        #[cfg(feature = "redis")]
        {
            let b = service.redis.build_at(&ConfigPath::new("redis")).unwrap();
            assert!(format!("{b:?}").contains("response: 300ms"));
            let err =
                read("[redis]\nnodes = [\"127.0.0.1:1\"]\n[redis.timeouts]\nresponse = \"0s\"")
                    .unwrap()
                    .redis
                    .build_at(&ConfigPath::new("redis"))
                    .unwrap_err();
            assert_eq!(err.path(), "redis.timeouts.response");
            assert_eq!(
                err.to_string(),
                "invalid `redis.timeouts.response`: must be above zero"
            );
        }
        #[cfg(feature = "postgres")]
        {
            let pool = service
                .postgres
                .build_pool(&ConfigPath::new("postgres"))
                .unwrap();
            pool.close();
            assert_eq!(pool.hosts(), ["127.0.0.1:1", "127.0.0.1:2"]);
            let err = read("[postgres]\nhosts = [\"127.0.0.1:1\"]\n[postgres.pool]\nmax_size = 0")
                .unwrap()
                .postgres
                .build_at(&ConfigPath::new("postgres"))
                .unwrap_err();
            assert_eq!(err.path(), "postgres.pool.max_size");
        }
        #[cfg(all(feature = "redis", feature = "tls"))]
        {
            let err = read("[redis]\nnodes = [\"127.0.0.1:1\"]\n[redis.tls]\nca_file = \"/nonexistent/ca.pem\"")
                .unwrap()
                .redis
                .build_at(&ConfigPath::new("redis"))
                .unwrap_err();
            assert_eq!(err.path(), "redis.tls.ca_file");
        }
    }

    /// An empty Redis section builds the pool the builder builds, against a real server.
    #[cfg(all(feature = "redis", feature = "testing"))]
    #[tokio::test]
    async fn an_empty_redis_section_builds_the_builders_pool() {
        use switchover::redis::SplitPool;
        use switchover::testing::RedisServer;

        let server = RedisServer::start().await.unwrap();
        let addr = server.addr().to_string();
        let text = format!("[redis]\nnodes = [\"{addr}\"]\n");
        let ours = read(&text)
            .unwrap()
            .redis
            .build_at(&ConfigPath::new("redis"))
            .unwrap()
            .build()
            .await
            .unwrap();
        let theirs = SplitPool::builder().nodes([addr]).build().await.unwrap();
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        assert_eq!(
            format!("{:?}", ours.router()),
            format!("{:?}", theirs.router())
        );
        ours.close();
        theirs.close();
    }
}

/// A value refused on a password line is reported without the TOML excerpt that quotes the
/// line (and with it the secret).
#[test]
fn a_refused_value_does_not_quote_the_secret_line() {
    use serde::de::{Deserializer, Error as _, IgnoredAny};

    fn refuse<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        IgnoredAny::deserialize(d)?;
        Err(D::Error::custom("not a valid password"))
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Service {
        #[serde(deserialize_with = "refuse")]
        password: String,
    }
    let text = "password = \"hunter2\"\n";
    let de = toml::Deserializer::parse(text).expect("valid TOML");
    let err = config::deserialize::<Service, _>(de).unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("not a valid password"), "{shown}");
    assert_eq!(err.path(), "password");
}

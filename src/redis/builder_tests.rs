//! Unit tests of `builder.rs`.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The field `validate` refuses, or "accepted". Inside a runtime, as `build` is: the
/// heartbeat's probe task starts with the tracker.
fn field(b: SplitPoolBuilder) -> &'static str {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        match b.validate() {
            Err(e) => e.field(),
            Ok(_) => "accepted",
        }
    })
}

#[test]
fn bad_input_is_refused_at_build() {
    let node = || SplitPool::builder().nodes(["127.0.0.1:1"]);
    let sentinel = || SplitPool::builder().sentinels(["127.0.0.1:26379"]);
    let cases = [
        (SplitPool::builder(), "nodes"),
        (SplitPool::builder().nodes(["nonsense"]), "nodes"),
        (sentinel(), "master_name"),
        (sentinel().master_name(" "), "master_name"),
        (node().sentinels(["127.0.0.1:2"]).master_name("m"), "nodes"),
        (node().master_name("m"), "master_name"),
        (
            node().timeouts(Timeouts::new().response(Duration::ZERO)),
            "response_timeout",
        ),
        (
            node().timeouts(Timeouts::new().connect(Duration::from_secs(2))),
            "connect_timeout",
        ),
        (
            node().rediscovery_interval(Duration::from_secs(2)),
            "rediscovery_interval",
        ),
        (node().db(-1), "db"),
        (node().dedicated_pool_size(0), "dedicated_pool_size"),
        (
            node().health(|h| h.failure_threshold(0)),
            "failure_threshold",
        ),
        (node().heartbeat(Duration::ZERO), "heartbeat"),
        (
            node().heartbeat_timeout(Duration::ZERO),
            "heartbeat_timeout",
        ),
        // A heartbeat more patient than the commands: slow is not dead.
        (
            node()
                .timeouts(Timeouts::new().connect(ms(100)).response(ms(100)))
                .heartbeat_timeout(ms(300)),
            "accepted",
        ),
        (node().heartbeat(None), "accepted"),
        (node().resolve_interval(Duration::ZERO), "resolve_interval"),
        (
            node().max_connection_age(Duration::ZERO),
            "max_connection_age",
        ),
        (node().max_connection_age(None), "accepted"),
        (node().resolve_interval(ms(1)), "accepted"),
        (
            SplitPool::builder().nodes(["127.0.0.1:1", "127.0.0.1:2"]),
            "accepted",
        ),
        (sentinel().master_name("m"), "accepted"),
    ];
    for (i, (builder, expected)) in cases.into_iter().enumerate() {
        assert_eq!(field(builder), expected, "case {i}");
    }
}

#[test]
fn passwords_stay_out_of_debug_and_errors() {
    let b = SplitPool::builder()
        .nodes(["redis://app:hunter2@127.0.0.1:6379"])
        .password("s3cret-pw")
        .sentinel_password("other-pw");
    let shown = format!("{b:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret-pw") && !shown.contains("other-pw"),
        "{shown}"
    );
    let err = SplitPool::builder()
        .nodes(["redis://app:hunter2@nohost"])
        .validate()
        .err()
        .unwrap();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn health_settings_are_validated_before_any_connection() {
    // Port 1 never answers: the error must come from validation, not from a connect.
    let err = SplitPool::builder()
        .nodes(["127.0.0.1:1"])
        .health(|h| h.failure_threshold(0))
        .build()
        .await
        .err()
        .unwrap();
    assert!(err.is_config(), "expected a configuration error, got {err}");
    assert_eq!(
        err.config_error().map(ConfigError::field),
        Some("failure_threshold")
    );
}

#[test]
fn transports_are_checked_at_build() {
    let cases = [
        // A Unix socket takes no TLS; sentinels are reached over TCP.
        (
            SplitPool::builder().nodes(["rediss://127.0.0.1:1", "unix:///tmp/r.sock"]),
            "nodes",
        ),
        (
            SplitPool::builder()
                .sentinels(["unix:///tmp/s.sock"])
                .master_name("m"),
            "sentinels",
        ),
        // All TLS or none.
        (
            SplitPool::builder().nodes(["rediss://127.0.0.1:1", "127.0.0.1:2"]),
            "nodes",
        ),
        (
            SplitPool::builder().nodes(["rediss://127.0.0.1:1", "redis://127.0.0.1:2"]),
            "nodes",
        ),
        (
            SplitPool::builder().nodes(["unix:///tmp/r.sock"]),
            "accepted",
        ),
    ];
    for (i, (builder, expected)) in cases.into_iter().enumerate() {
        assert_eq!(field(builder), expected, "case {i}");
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn rediss_without_the_tls_feature_is_refused_naming_the_field() {
    let err = SplitPool::builder()
        .nodes(["rediss://127.0.0.1:6380"])
        .validate()
        .err()
        .unwrap();
    assert_eq!(err.field(), "nodes");
    assert!(err.to_string().contains("`tls` feature"), "{err}");
    let err = SplitPool::builder()
        .sentinels(["rediss://127.0.0.1:26380"])
        .master_name("m")
        .validate()
        .err()
        .unwrap();
    assert_eq!(err.field(), "sentinels");
}

#[cfg(feature = "tls")]
#[test]
fn bad_tls_input_is_refused_at_build_naming_the_field() {
    use crate::tls::{Roots, TlsOptions};
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let node = || SplitPool::builder().nodes(["127.0.0.1:6380"]);
    let cases = [
        (
            node().tls(TlsOptions::new().roots(Roots::PemFile(dir.path().join("missing.pem")))),
            "roots",
        ),
        (
            node().tls(TlsOptions::new().roots(Roots::PemFile(empty.clone()))),
            "roots",
        ),
        (
            node().tls(
                TlsOptions::new()
                    .roots(Roots::Webpki)
                    .client_key_file(&empty),
            ),
            "client_cert",
        ),
        (
            node().tls(
                TlsOptions::new()
                    .roots(Roots::Webpki)
                    .client_cert_file(&empty),
            ),
            "client_key",
        ),
        (
            node().tls(
                TlsOptions::new()
                    .roots(Roots::Webpki)
                    .server_name("not a name"),
            ),
            "server_name",
        ),
        // A plaintext node beside the TLS setting, sentinel options without sentinels.
        (
            SplitPool::builder()
                .nodes(["redis://127.0.0.1:6380"])
                .tls(TlsOptions::new().roots(Roots::Webpki)),
            "nodes",
        ),
        (
            node().sentinel_tls(TlsOptions::new().roots(Roots::Webpki)),
            "sentinel_tls",
        ),
        (
            SplitPool::builder()
                .nodes(["unix:///tmp/r.sock"])
                .tls(TlsOptions::new().roots(Roots::Webpki)),
            "nodes",
        ),
        (
            node().tls(TlsOptions::new().roots(Roots::Webpki)),
            "accepted",
        ),
        (
            SplitPool::builder()
                .sentinels(["rediss://127.0.0.1:26380", "redis://127.0.0.1:26381"])
                .master_name("m")
                .tls(TlsOptions::new().roots(Roots::Webpki)),
            "accepted",
        ),
    ];
    for (i, (builder, expected)) in cases.into_iter().enumerate() {
        assert_eq!(field(builder), expected, "case {i}");
    }
    // The sentinel given as `redis://` stays plaintext beside TLS ones. (Validation builds
    // the tracker, whose heartbeat task needs a runtime.)
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let parts = rt.block_on(async {
        SplitPool::builder()
            .sentinels(["rediss://127.0.0.1:26380", "redis://127.0.0.1:26381"])
            .master_name("m")
            .validate()
            .ok()
            .unwrap()
    });
    assert!(parts.settings.tls.is_some() && parts.settings.sentinel_tls.is_some());
    assert_eq!(parts.settings.plaintext_sentinels.len(), 1);
}

#[test]
fn default_retry_policy_rides_out_a_failover() {
    let p = default_retry_policy();
    assert_eq!(p.deadline(), Some(Duration::from_secs(10)));
    assert_eq!(p.max_attempts(), 40);
    assert_eq!(p.backoff().cap(), Duration::from_millis(250));
}

//! The Postgres pool over TLS against real Postgres 15 servers started with `ssl=on` by the
//! testing kit: every `sslmode`, certificate refusals, `hostssl`-only and client-certificate
//! `pg_hba.conf` rules, password rotation through a credential provider, and a failover over
//! TLS. Outcomes are asserted, never timings; anything that could hang is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use switchover::auth::{
    CredentialError, CredentialFuture, CredentialProvider, CredentialRequest, Credentials, Secret,
};
use switchover::error::{Classify, ErrorClass};
use switchover::postgres::{Error, ErrorKind, FailoverPool, FailoverPoolBuilder};
use switchover::retry::RetryPolicy;
use switchover::testing::{IssuedCert, LOCALHOST_NAMES, PgCluster, PgNode, TestCa};
use tokio::time::timeout;

/// Bounds every step that could hang if the pool were wrong.
const BOUND: Duration = Duration::from_secs(60);

/// A pool over `conn_str` with short deadlines, a runner that may retry for 20 s.
fn builder(conn_str: String) -> FailoverPoolBuilder {
    FailoverPool::builder()
        .connection_string(conn_str)
        .connect_timeout(Duration::from_millis(500))
        .login_timeout(Duration::from_secs(2))
        .probe_timeout(Duration::from_secs(2))
        .query_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(3))
        .retry_policy(
            RetryPolicy::builder()
                .max_attempts(200)
                .deadline(Duration::from_secs(20))
                .build()
                .unwrap(),
        )
}

/// `host=<host> port=<port> user=postgres dbname=postgres` plus `extra`.
fn conn(host: &str, node: &PgNode, extra: &str) -> String {
    format!(
        "host={host} port={} user=postgres dbname=postgres {extra}",
        node.port()
    )
}

fn verify_full(ca: &TestCa) -> String {
    format!(
        "sslmode=verify-full sslrootcert={}",
        ca.cert_path().display()
    )
}

/// Whether the server sees the pool's connection as encrypted.
async fn encrypted(pool: &FailoverPool) -> Result<bool, Error> {
    let c = timeout(BOUND, pool.get()).await.expect("get hung")?;
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

/// The error and the whole source chain, for assertions on the causes.
fn chain(e: &Error) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `get` fails at once (not at the acquire timeout) with `kind`, permanent, naming `host`.
async fn refused(pool: &FailoverPool, kinds: &[ErrorKind], host: &str) -> String {
    let started = tokio::time::Instant::now();
    let err = timeout(BOUND, pool.get())
        .await
        .expect("get hung")
        .unwrap_err();
    let text = chain(&err);
    assert!(kinds.contains(&err.kind()), "{:?}: {text}", err.kind());
    assert_eq!(err.classify().class(), ErrorClass::Permanent, "{text}");
    assert_eq!(err.host(), Some(host), "{text}");
    assert!(err.to_string().contains(host), "{text}");
    assert!(!text.contains("no host is known"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited {:?} for a permanent refusal: {text}",
        started.elapsed()
    );
    text
}

async fn tls_cluster(cert: &IssuedCert, standbys: usize) -> PgCluster {
    PgCluster::builder()
        .standbys(standbys)
        .tls(cert)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_refuses_another_name() {
    let ca = TestCa::new().unwrap();
    let right = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let cluster = tls_cluster(&right, 0).await;
    let node = cluster.primary();
    // 127.0.0.1 is verified against the certificate's IP SAN.
    let pool = builder(conn("127.0.0.1", node, &verify_full(&ca)))
        .build()
        .unwrap();
    assert!(encrypted(&pool).await.unwrap());
    pool.close();

    // The name a host is verified against is its own: `localhost` (connected through
    // hostaddr) against DNS SANs.
    let by_name = format!(
        "hostaddr=127.0.0.1 {}",
        conn("localhost", node, &verify_full(&ca))
    );
    let pool = builder(by_name).build().unwrap();
    assert!(encrypted(&pool).await.unwrap());
    pool.close();
    drop(cluster);

    // A certificate of the same CA for another name.
    let other = ca.server("other", &["db.example.invalid"]).unwrap();
    let cluster = tls_cluster(&other, 0).await;
    let node = cluster.primary();
    let host = format!("127.0.0.1:{}", node.port());
    let pool = builder(conn("127.0.0.1", node, &verify_full(&ca)))
        .build()
        .unwrap();
    let text = refused(&pool, &[ErrorKind::Tls], &host).await;
    assert!(
        text.contains("certificate not valid for name \"127.0.0.1\""),
        "{text}"
    );

    // verify-ca does not check the name; require with a root certificate behaves the same.
    for mode in ["verify-ca", "require"] {
        let extra = format!("sslmode={mode} sslrootcert={}", ca.cert_path().display());
        let pool = builder(conn("127.0.0.1", node, &extra)).build().unwrap();
        assert!(encrypted(&pool).await.unwrap(), "{mode}");
        pool.close();
    }
}

#[tokio::test]
async fn require_without_a_root_encrypts_without_verifying_and_verify_ca_refuses_a_stranger() {
    let stranger = TestCa::new().unwrap();
    let cert = stranger.server("pg", &["db.example.invalid"]).unwrap();
    let cluster = tls_cluster(&cert, 0).await;
    let node = cluster.primary();
    let pool = builder(conn("127.0.0.1", node, "sslmode=require"))
        .build()
        .unwrap();
    assert!(encrypted(&pool).await.unwrap());
    pool.close();

    let ours = TestCa::new().unwrap();
    let host = format!("127.0.0.1:{}", node.port());
    let extra = format!(
        "sslmode=verify-ca sslrootcert={}",
        ours.cert_path().display()
    );
    let pool = builder(conn("127.0.0.1", node, &extra)).build().unwrap();
    let text = refused(&pool, &[ErrorKind::Tls], &host).await;
    assert!(text.contains("invalid peer certificate"), "{text}");
}

#[tokio::test]
async fn prefer_encrypts_when_offered_and_falls_back_only_when_refused() {
    let ca = TestCa::new().unwrap();
    let cert = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let (tls, plain) = tokio::join!(tls_cluster(&cert, 0), async {
        PgCluster::start(0).await.unwrap()
    });
    let pool = builder(conn("127.0.0.1", tls.primary(), "sslmode=prefer"))
        .build()
        .unwrap();
    assert!(encrypted(&pool).await.unwrap(), "ssl=on: encrypted");
    pool.close();
    let pool = builder(conn("127.0.0.1", plain.primary(), "sslmode=prefer"))
        .build()
        .unwrap();
    assert!(!encrypted(&pool).await.unwrap(), "ssl=off: plaintext");
    pool.close();

    // `require` against the server without TLS: refused, naming the host.
    let host = format!("127.0.0.1:{}", plain.primary().port());
    let pool = builder(conn("127.0.0.1", plain.primary(), "sslmode=require"))
        .build()
        .unwrap();
    let text = refused(&pool, &[ErrorKind::Tls], &host).await;
    assert!(text.contains("server does not support TLS"), "{text}");
}

#[tokio::test]
async fn plaintext_against_a_hostssl_only_server_is_a_permanent_refusal_that_says_tls() {
    let ca = TestCa::new().unwrap();
    let cert = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let cluster = PgCluster::builder()
        .standbys(1)
        .tls(&cert)
        .ssl_only()
        .start()
        .await
        .unwrap();
    let [a, b] = [&cluster.nodes()[0], &cluster.nodes()[1]];
    let conn_str = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres sslmode=disable",
        a.port(),
        b.port()
    );
    let pool = builder(conn_str).build().unwrap();
    let host = format!("127.0.0.1:{}", a.port());
    let text = refused(&pool, &[ErrorKind::Authentication], &host).await;
    assert!(text.contains("only over TLS"), "{text}");
    assert!(text.contains("no encryption"), "{text}");
    // The standby refuses reads the same way.
    let err = timeout(BOUND, pool.get_read()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Authentication, "{}", chain(&err));
    assert_eq!(err.classify().class(), ErrorClass::Permanent);
    pool.close();

    // The same servers over TLS.
    let pool = builder(conn("127.0.0.1", a, &verify_full(&ca)))
        .build()
        .unwrap();
    assert!(encrypted(&pool).await.unwrap());
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_is_refused_without() {
    let ca = TestCa::new().unwrap();
    let cert = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let client = ca.client("postgres-client", "postgres").unwrap();
    let cluster = PgCluster::builder()
        .tls(&cert)
        .client_certs(&ca)
        .start()
        .await
        .unwrap();
    let node = cluster.primary();
    let with = format!(
        "{} sslcert={} sslkey={}",
        verify_full(&ca),
        client.cert_path().display(),
        client.key_path().display()
    );
    let pool = builder(conn("127.0.0.1", node, &with)).build().unwrap();
    assert!(encrypted(&pool).await.unwrap());
    pool.close();

    let host = format!("127.0.0.1:{}", node.port());
    let pool = builder(conn("127.0.0.1", node, &verify_full(&ca)))
        .build()
        .unwrap();
    let text = refused(&pool, &[ErrorKind::Tls, ErrorKind::Authentication], &host).await;
    assert!(text.to_lowercase().contains("certificate"), "{text}");
}

/// A provider whose answer the test changes, counting calls and rejections.
#[derive(Debug)]
struct Rotating {
    password: RwLock<String>,
    calls: AtomicUsize,
    rejected: AtomicUsize,
}

impl CredentialProvider for Rotating {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let password = self.password.read().unwrap().clone();
        Box::pin(async move { Ok(Credentials::new("app", password)) })
    }

    fn rejected(&self, _request: &CredentialRequest<'_>, _secret: &Secret) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_password_rotation_mid_workload_costs_no_failed_operation() {
    let ca = TestCa::new().unwrap();
    let cert = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let cluster = PgCluster::builder()
        .tls(&cert)
        .ssl_only()
        .password_user("app")
        .start()
        .await
        .unwrap();
    let node = cluster.primary();
    node.sql("CREATE ROLE app LOGIN PASSWORD 'first-secret'; CREATE TABLE t (id bigint PRIMARY KEY, v text); GRANT ALL ON t TO app")
        .await
        .unwrap();
    let provider = Arc::new(Rotating {
        password: RwLock::new("first-secret".into()),
        calls: AtomicUsize::new(0),
        rejected: AtomicUsize::new(0),
    });
    let conn_str = format!(
        "host=127.0.0.1 port={} user=app dbname=postgres channel_binding=require {}",
        node.port(),
        verify_full(&ca)
    );
    let pool = builder(conn_str)
        .max_size(2)
        .credentials(provider.clone())
        .build()
        .unwrap();
    let dbg = format!("{pool:?}");
    assert!(!dbg.contains("first-secret"), "{dbg}");

    // Connections are taken out of the pool as fast as they are made, so new logins happen
    // all through the workload.
    let churn = {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(c) = pool.get().await {
                    drop(switchover::postgres::PooledConnection::take(c));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut failed = Vec::new();
    for i in 0..400_i64 {
        if i == 200 {
            // The secret store answers with the new password, then the database takes it.
            *provider.password.write().unwrap() = "second-secret".into();
            node.sql("ALTER ROLE app PASSWORD 'second-secret'")
                .await
                .unwrap();
        }
        let outcome = if i % 2 == 0 {
            pool.idempotent()
                .run(move |c| {
                    Box::pin(async move {
                        c.execute(
                            "INSERT INTO t VALUES ($1, 'i') ON CONFLICT (id) DO UPDATE SET v = 'i'",
                            &[&i],
                        )
                        .await
                        .map(drop)
                    })
                })
                .await
        } else {
            pool.run(move |c| {
                Box::pin(async move {
                    c.execute("INSERT INTO t VALUES ($1, 'n')", &[&i])
                        .await
                        .map(drop)
                })
            })
            .await
        };
        if let Err(e) = outcome {
            failed.push(chain(&e));
        }
    }
    churn.abort();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert_eq!(node.sql("SELECT count(*) FROM t").await.unwrap(), "400");
    let rejected = provider.rejected.load(Ordering::Relaxed);
    assert!(rejected >= 1, "the old secret was rejected at least once");
    // Logins after the rotation used the new secret: the cache fetched it after the rejection.
    assert!(provider.calls.load(Ordering::Relaxed) >= 2);
    let c = pool.get().await.unwrap();
    let row = c
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert!(row.get::<_, bool>(1));
}

/// A provider that fails, or never answers.
#[derive(Debug)]
struct Broken {
    hang: bool,
}

impl CredentialProvider for Broken {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        if self.hang {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async { Err(CredentialError::new("vault is sealed").permanent()) })
        }
    }
}

#[tokio::test]
async fn a_failing_or_hanging_provider_is_an_authentication_error_naming_the_host() {
    let cluster = PgCluster::start(0).await.unwrap();
    let node = cluster.primary();
    let host = format!("127.0.0.1:{}", node.port());
    let pool = builder(conn("127.0.0.1", node, "sslmode=disable"))
        .credentials(Broken { hang: false })
        .build()
        .unwrap();
    let text = refused(&pool, &[ErrorKind::Authentication], &host).await;
    assert!(text.contains("vault is sealed"), "{text}");
    pool.close();

    let pool = builder(conn("127.0.0.1", node, "sslmode=disable"))
        .credentials(Broken { hang: true })
        .build()
        .unwrap();
    let err = timeout(BOUND, pool.get())
        .await
        .expect("get hung")
        .unwrap_err();
    let text = chain(&err);
    assert!(err.is_timeout(), "{text}");
    assert_eq!(err.kind(), ErrorKind::AcquireTimeout, "{text}");
    assert!(
        text.contains(&format!("no credentials for {host} within 500ms")),
        "{text}"
    );
    assert!(!text.contains("no host is known"), "{text}");
}

#[tokio::test]
async fn failover_over_tls_resumes_writes_on_the_promoted_standby() {
    let ca = TestCa::new().unwrap();
    let cert = ca.server("pg", LOCALHOST_NAMES).unwrap();
    let mut cluster = PgCluster::builder()
        .standbys(1)
        .tls(&cert)
        .ssl_only()
        .start()
        .await
        .unwrap();
    cluster
        .primary()
        .sql("CREATE TABLE t (v text)")
        .await
        .unwrap();
    let conn_str = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=postgres {}",
        cluster.nodes()[0].port(),
        cluster.nodes()[1].port(),
        verify_full(&ca)
    );
    let pool = builder(conn_str).build().unwrap();
    let write = |v: &'static str| {
        let pool = pool.clone();
        async move {
            pool.run(move |c| {
                Box::pin(async move {
                    c.execute("INSERT INTO t VALUES ($1)", &[&v])
                        .await
                        .map(drop)
                })
            })
            .await
        }
    };
    timeout(BOUND, write("before")).await.unwrap().unwrap();
    assert!(encrypted(&pool).await.unwrap());
    cluster.wait_for_replay(1, BOUND).await.unwrap();
    cluster.kill_primary().await.unwrap();
    cluster.promote(1).await.unwrap();
    timeout(BOUND, write("after")).await.unwrap().unwrap();
    assert_eq!(
        pool.primary(),
        format!("127.0.0.1:{}", cluster.nodes()[1].port())
    );
    assert!(encrypted(&pool).await.unwrap());
    assert_eq!(
        cluster
            .primary()
            .sql("SELECT count(*) FROM t")
            .await
            .unwrap(),
        "2"
    );
}

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinSet;
use tokio::time::{advance, sleep};

use super::*;
use crate::auth::StaticCredentials;

/// The fixed wall clock of these tests.
const WALL: SystemTime = SystemTime::UNIX_EPOCH;

fn wall() -> SystemTime {
    WALL
}

/// A scripted provider: answers from a queue (the last answer repeats), each after `delay`,
/// counting its calls.
#[derive(Debug)]
struct Script {
    answers: Mutex<VecDeque<Result<Credentials, CredentialError>>>,
    delay: Duration,
    calls: AtomicUsize,
}

impl Script {
    fn new(answers: impl IntoIterator<Item = Result<Credentials, CredentialError>>) -> Self {
        Script {
            answers: Mutex::new(answers.into_iter().collect()),
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
        }
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl CredentialProvider for Script {
    fn credentials<'a>(&'a self, _request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            sleep(self.delay).await;
            let mut answers = lock(&self.answers);
            if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().cloned()
            }
            .expect("the script has answers")
        })
    }
}

/// A token `name` that expires `secs` after the fixed wall clock.
fn token(name: &str, secs: u64) -> Result<Credentials, CredentialError> {
    Ok(Credentials::new("app", name).expiring_at(WALL + Duration::from_secs(secs)))
}

fn cached(script: Script) -> Arc<CachedCredentials<Script>> {
    Arc::new(CachedCredentials::new(script).with_wall_clock(wall))
}

fn req() -> CredentialRequest<'static> {
    CredentialRequest::new("db.internal", 5432).with_user("app")
}

async fn secret<P: CredentialProvider>(c: &CachedCredentials<P>) -> String {
    c.get(&req())
        .await
        .expect("credentials")
        .secret()
        .expose()
        .to_owned()
}

#[tokio::test(start_paused = true)]
async fn refreshes_at_the_exact_instant_five_minutes_before_expiry() {
    let c = cached(Script::new([token("t1", 900), token("t2", 900)]));
    assert_eq!(secret(&c).await, "t1");
    advance(Duration::from_millis(599_999)).await;
    assert_eq!(secret(&c).await, "t1");
    assert_eq!(c.provider().calls(), 1);
    advance(Duration::from_millis(1)).await; // 600 s: 15 min - 5 min
    assert_eq!(secret(&c).await, "t2");
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_lead_is_configurable_and_capped_at_half_the_lifetime() {
    let c = Arc::new(
        CachedCredentials::new(Script::new([
            token("t1", 900),
            token("t2", 120),
            token("t3", 120),
        ]))
        .with_wall_clock(wall)
        .refresh_before(Duration::from_secs(60)),
    );
    assert_eq!(secret(&c).await, "t1");
    advance(Duration::from_millis(839_999)).await;
    assert_eq!(secret(&c).await, "t1");
    advance(Duration::from_millis(1)).await; // 900 s - 60 s
    assert_eq!(secret(&c).await, "t2");
    // t2 has 120 s left when it arrives: 60 s lead, the same as half of it.
    advance(Duration::from_millis(59_999)).await;
    assert_eq!(secret(&c).await, "t2");
    advance(Duration::from_millis(1)).await;
    assert_eq!(secret(&c).await, "t3");

    // The default 5-minute lead on a 120-second token is cut to 60 s.
    let short = cached(Script::new([token("s1", 120), token("s2", 120)]));
    assert_eq!(secret(&short).await, "s1");
    advance(Duration::from_millis(59_999)).await;
    assert_eq!(secret(&short).await, "s1");
    advance(Duration::from_millis(1)).await;
    assert_eq!(secret(&short).await, "s2");
}

#[tokio::test(start_paused = true)]
async fn credentials_without_expiry_are_kept_until_invalidated() {
    let c = cached(Script::new([
        Ok(Credentials::new("app", "p1")),
        Ok(Credentials::new("app", "p2")),
    ]));
    assert_eq!(secret(&c).await, "p1");
    advance(Duration::from_secs(365 * 86_400)).await;
    assert_eq!(secret(&c).await, "p1");
    assert!(c.invalidate(&req()));
    assert!(!c.invalidate(&req()), "nothing left to drop");
    assert!(
        !c.invalidate(&CredentialRequest::new("other", 1)),
        "an unknown key"
    );
    assert_eq!(secret(&c).await, "p2");
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_share_one_fetch() {
    let c = cached(Script::new([token("t1", 900)]).delayed(Duration::from_secs(1)));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..16 {
        let c = c.clone();
        set.spawn(async move { secret(&c).await });
    }
    while let Some(got) = set.join_next().await {
        assert_eq!(got.unwrap(), "t1");
    }
    assert_eq!(c.provider().calls(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_fetch_for_one_key_does_not_block_another() {
    /// Never answers for host "stuck"; answers at once for any other.
    struct Stuck;
    impl CredentialProvider for Stuck {
        fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
            Box::pin(async move {
                if request.host() == "stuck" {
                    std::future::pending::<()>().await;
                }
                Ok(Credentials::password_only(request.host().to_owned()))
            })
        }
    }
    let c = Arc::new(CachedCredentials::new(Stuck));
    let stuck = {
        let c = c.clone();
        tokio::spawn(async move { c.get(&CredentialRequest::new("stuck", 1)).await })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    let other = c.get(&CredentialRequest::new("fine", 1)).await.unwrap();
    assert_eq!(other.secret().expose(), "fine");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert!(!stuck.is_finished());
    stuck.abort();
}

#[tokio::test(start_paused = true)]
async fn keys_are_host_port_and_user() {
    let c = Arc::new(CachedCredentials::new(crate::auth::credentials_fn(
        |r| async move {
            Ok(Credentials::password_only(format!(
                "{}:{}:{:?}",
                r.host(),
                r.port(),
                r.user()
            )))
        },
    )));
    for (r, want) in [
        (CredentialRequest::new("a", 1), "a:1:None"),
        (CredentialRequest::new("a", 2), "a:2:None"),
        (
            CredentialRequest::new("a", 1).with_user("u"),
            "a:1:Some(\"u\")",
        ),
        (CredentialRequest::new("b", 1), "b:1:None"),
    ] {
        assert_eq!(c.get(&r).await.unwrap().secret().expose(), want);
    }
    assert!(
        format!("{c:?}").ends_with("refresh_before: 300s, keys: 4 }"),
        "{c:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_cached() {
    let c = cached(Script::new([
        Err(CredentialError::new("vault sealed")),
        token("t1", 900),
    ]));
    let e = c.get(&req()).await.unwrap_err();
    assert_eq!(e.to_string(), "vault sealed");
    assert_eq!(secret(&c).await, "t1");
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn waiters_of_a_failed_fetch_share_its_error_and_the_next_request_asks_again() {
    let c = cached(
        Script::new([
            Err(CredentialError::new("sts unreachable")),
            token("t1", 900),
        ])
        .delayed(Duration::from_secs(1)),
    );
    let mut set = JoinSet::new();
    for _ in 0..8 {
        let c = c.clone();
        set.spawn(async move { c.get(&req()).await.map(|_| ()).map_err(|e| e.to_string()) });
    }
    while let Some(got) = set.join_next().await {
        assert_eq!(got.unwrap(), Err("sts unreachable".to_owned()));
    }
    assert_eq!(c.provider().calls(), 1);
    assert_eq!(secret(&c).await, "t1");
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_serving_until_expiry() {
    let c = cached(Script::new([
        token("t1", 900),
        Err(CredentialError::new("sts unreachable")),
        token("t2", 900),
    ]));
    assert_eq!(secret(&c).await, "t1");
    advance(Duration::from_secs(600)).await;
    assert_eq!(
        secret(&c).await,
        "t1",
        "the refresh failed; t1 is valid for 5 more minutes"
    );
    assert_eq!(c.provider().calls(), 2);
    assert_eq!(secret(&c).await, "t2", "the next request asks again");
    assert_eq!(c.provider().calls(), 3);

    let expired = cached(Script::new([
        token("t1", 900),
        Err(CredentialError::new("sts unreachable")),
    ]));
    assert_eq!(secret(&expired).await, "t1");
    advance(Duration::from_secs(900)).await;
    assert_eq!(
        expired.get(&req()).await.unwrap_err().to_string(),
        "sts unreachable"
    );
}

#[tokio::test(start_paused = true)]
async fn during_a_refresh_others_get_the_unexpired_credentials_at_once() {
    let c =
        cached(Script::new([token("t1", 900), token("t2", 900)]).delayed(Duration::from_secs(2)));
    assert_eq!(secret(&c).await, "t1");
    advance(Duration::from_secs(600)).await;
    let refresher = {
        let c = c.clone();
        tokio::spawn(async move { secret(&c).await })
    };
    tokio::task::yield_now().await;
    let start = Instant::now();
    assert_eq!(secret(&c).await, "t1");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(refresher.await.unwrap(), "t2");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_hands_the_fetch_to_the_next() {
    let c = cached(Script::new([token("t1", 900)]).delayed(Duration::from_secs(5)));
    let gave_up = tokio::time::timeout(Duration::from_secs(1), c.get(&req())).await;
    assert!(gave_up.is_err());
    let start = Instant::now();
    assert_eq!(secret(&c).await, "t1");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(c.provider().calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_secret_is_dropped_once() {
    let c = cached(Script::new([
        token("old", 900),
        token("new", 900),
        token("newer", 900),
    ]));
    assert_eq!(secret(&c).await, "old");
    // Three connections were refused with "old": the first rejection drops it, the others
    // find "new" cached and keep it.
    c.rejected(&req(), &Secret::new("old"));
    assert_eq!(secret(&c).await, "new");
    c.rejected(&req(), &Secret::new("old"));
    c.rejected(&req(), &Secret::new("old"));
    assert_eq!(secret(&c).await, "new");
    assert_eq!(c.provider().calls(), 2);
    // Through an `Arc<dyn CredentialProvider>`, as a pool holds it.
    let shared: Arc<dyn CredentialProvider> = c.clone();
    shared.rejected(&req(), &Secret::new("new"));
    assert_eq!(
        shared.credentials(&req()).await.unwrap().secret().expose(),
        "newer"
    );
}

#[tokio::test]
async fn debug_of_a_cache_shows_no_secret() {
    let c = CachedCredentials::new(StaticCredentials::new(Credentials::new("app", "hunter2")));
    assert_eq!(secret(&c).await, "hunter2");
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(
        shown,
        "CachedCredentials { provider: StaticCredentials(Credentials { user: Some(\"app\"), secret: Secret(***), expires_at: None }), refresh_before: 300s, keys: 1 }"
    );
}

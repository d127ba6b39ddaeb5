//! The retry executor under Tokio's paused clock: exact virtual delays, deadlines, attempt
//! timeouts, `Retry-After` clamping, idempotency rules and the retry budget.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchover::retry::{
    ConstantBackoff, CustomBackoff, ExponentialBackoff, Jitter, RetryBudget, RetryPolicy,
    StopReason,
};
use switchover::{Classification, Classify, Execution};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A scripted error: what the fake server answers.
#[derive(Debug, Clone, PartialEq)]
enum Fail {
    Refused,
    Timeout,
    BadRequest,
    SlowDown(Option<Duration>),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for Fail {}

impl Classify for Fail {
    fn classify(&self) -> Classification {
        match self {
            Fail::Refused => Classification::transient().not_executed(),
            Fail::Timeout => Classification::transient(),
            Fail::BadRequest => Classification::permanent(),
            Fail::SlowDown(None) => Classification::throttled().not_executed(),
            Fail::SlowDown(Some(d)) => Classification::throttled()
                .not_executed()
                .with_retry_after(*d),
        }
    }
}

/// Exponential backoff without jitter so waits are exact: 100, 200, 400, 800, 1000, ...
fn exact_backoff() -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(ms(100))
        .factor(2.0)
        .cap(ms(1000))
        .jitter(Jitter::None)
        .build()
        .unwrap()
}

/// Runs `policy` over a script of outcomes (`None` = success), recording when each attempt
/// started (virtual ms since the call began).
async fn scripted(
    policy: &RetryPolicy,
    script: Vec<Option<Fail>>,
    idempotent: bool,
) -> (Result<u32, switchover::retry::RetryError<Fail>>, Vec<u64>) {
    let start = Instant::now();
    let mut starts = Vec::new();
    let mut n = 0usize;
    let res = policy
        .retry(|| {
            starts.push(start.elapsed().as_millis() as u64);
            let outcome = script.get(n).cloned().flatten();
            n += 1;
            let attempt = n as u32;
            async move {
                match outcome {
                    None => Ok(attempt),
                    Some(e) => Err(e),
                }
            }
        })
        .idempotent(idempotent)
        .run()
        .await;
    (res, starts)
}

#[tokio::test(start_paused = true)]
async fn exact_virtual_delays_between_attempts() {
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let script = vec![Some(Fail::Refused); 4];
    let (res, starts) = scripted(&policy, script, false).await;
    assert_eq!(res.unwrap(), 5);
    assert_eq!(starts, [0, 100, 300, 700, 1500]);
}

#[tokio::test(start_paused = true)]
async fn attempts_exhausted_keeps_last_error_and_count() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let start = Instant::now();
    let (res, starts) = scripted(&policy, vec![Some(Fail::Refused); 10], false).await;
    let err = res.unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last_error(), Some(&Fail::Refused));
    assert_eq!(starts, [0, 100, 300]);
    // No sleep after the last attempt.
    assert_eq!(start.elapsed(), ms(300));
    assert_eq!(err.to_string(), "attempts exhausted after 3 attempts");
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), "Refused");
}

#[tokio::test(start_paused = true)]
async fn permanent_error_returns_at_once() {
    let policy = RetryPolicy::builder().max_attempts(5).build().unwrap();
    let start = Instant::now();
    let (res, starts) = scripted(&policy, vec![Some(Fail::BadRequest)], true).await;
    let err = res.unwrap_err();
    assert_eq!(err.reason(), StopReason::Permanent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(starts, [0]);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn may_have_executed_is_retried_only_when_idempotent() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(exact_backoff())
        .build()
        .unwrap();

    let (res, starts) = scripted(&policy, vec![Some(Fail::Timeout)], false).await;
    let err = res.unwrap_err();
    assert_eq!(err.reason(), StopReason::NotIdempotent);
    assert_eq!(starts, [0]);

    let (res, starts) = scripted(&policy, vec![Some(Fail::Timeout)], true).await;
    assert_eq!(res.unwrap(), 2);
    assert_eq!(starts, [0, 100]);

    // "Surely not executed" is safe to retry even when not idempotent.
    let (res, starts) = scripted(&policy, vec![Some(Fail::Refused)], false).await;
    assert_eq!(res.unwrap(), 2);
    assert_eq!(starts, [0, 100]);
}

#[tokio::test(start_paused = true)]
async fn deadline_cuts_off_in_the_middle_of_a_sleep() {
    // Attempts at 0, 100, 300, 700; the wait after the 4th attempt (800 ms) would end at
    // 1500 > deadline 1000: the executor gives up at 700 instead of sleeping for nothing.
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .deadline(ms(1000))
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let start = Instant::now();
    let (res, starts) = scripted(&policy, vec![Some(Fail::Refused); 10], false).await;
    let err = res.unwrap_err();
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    assert_eq!(err.attempts(), 4);
    assert_eq!(starts, [0, 100, 300, 700]);
    assert_eq!(start.elapsed(), ms(700));
    assert_eq!(err.last_error(), Some(&Fail::Refused));
}

#[tokio::test(start_paused = true)]
async fn deadline_includes_the_operations_own_time() {
    // Each attempt takes 320 ms and fails; waits are 50 ms. Attempts start at 0, 370, 740;
    // the third is cut by the deadline at 1000 ms, mid-attempt.
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .deadline(ms(1000))
        .backoff(ConstantBackoff::new(ms(50)))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut starts = Vec::new();
    let err = policy
        .retry(|| {
            starts.push(start.elapsed().as_millis() as u64);
            async {
                tokio::time::sleep(ms(320)).await;
                Err::<(), _>(Fail::Refused)
            }
        })
        .run()
        .await
        .unwrap_err();
    assert_eq!(starts, [0, 370, 740]);
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    assert!(err.timed_out());
    assert_eq!(err.attempts(), 3);
    assert_eq!(start.elapsed(), ms(1000));
    // The last error the operation returned is kept.
    assert_eq!(err.last_error(), Some(&Fail::Refused));
}

#[tokio::test(start_paused = true)]
async fn per_attempt_timeout() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .attempt_timeout(ms(200))
        .backoff(ConstantBackoff::new(ms(10)))
        .build()
        .unwrap();

    // Never-ready operation, not idempotent: one attempt, stopped by its timeout.
    let start = Instant::now();
    let err = policy
        .retry(std::future::pending::<Result<(), Fail>>)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptTimedOut);
    assert_eq!(err.attempts(), 1);
    assert!(err.timed_out());
    assert!(err.last_error().is_none());
    assert_eq!(start.elapsed(), ms(200));

    // Idempotent: retried; the second attempt answers in time.
    let start = Instant::now();
    let mut n = 0;
    let got = policy
        .retry(|| {
            n += 1;
            let slow = n == 1;
            async move {
                if slow {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Fail>(n)
            }
        })
        .idempotent(true)
        .run()
        .await
        .unwrap();
    assert_eq!(got, 2);
    assert_eq!(start.elapsed(), ms(210));

    // Idempotent and always hanging: attempts exhausted after 3 × 200 + 2 × 10.
    let start = Instant::now();
    let err = policy
        .retry(std::future::pending::<Result<(), Fail>>)
        .idempotent(true)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert!(err.timed_out());
    assert_eq!(start.elapsed(), ms(620));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_clamped() {
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .max_delay(ms(2_000))
        .backoff(exact_backoff())
        .build()
        .unwrap();
    // 300 ms suggested → waits 300 (not the scheduled 100); 10 s suggested → cut to 2 s.
    let script = vec![
        Some(Fail::SlowDown(Some(ms(300)))),
        Some(Fail::SlowDown(Some(Duration::from_secs(10)))),
    ];
    let (res, starts) = scripted(&policy, script, false).await;
    assert_eq!(res.unwrap(), 3);
    assert_eq!(starts, [0, 300, 2300]);

    // Never past the deadline: a suggestion ending after it stops the call at once.
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .deadline(ms(1_000))
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let start = Instant::now();
    let (res, starts) = scripted(&policy, vec![Some(Fail::SlowDown(Some(ms(5_000))))], false).await;
    assert_eq!(res.unwrap_err().reason(), StopReason::DeadlineExceeded);
    assert_eq!(starts, [0]);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn throttled_errors_wait_longer() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .throttle_factor(3.0)
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let script = vec![Some(Fail::SlowDown(None)), Some(Fail::Refused)];
    let (res, starts) = scripted(&policy, script, false).await;
    assert_eq!(res.unwrap(), 3);
    // 100 × 3 after the throttle, then the plain 200.
    assert_eq!(starts, [0, 300, 500]);
}

#[tokio::test(start_paused = true)]
async fn a_huge_throttle_factor_saturates_at_the_ceiling() {
    // 100 ms × 1e300 overflows a `Duration`: the wait is the 2 s ceiling, not a panic.
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .throttle_factor(1e300)
        .max_delay(ms(2_000))
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let script = vec![Some(Fail::SlowDown(None)), Some(Fail::SlowDown(None))];
    let (res, starts) = scripted(&policy, script, false).await;
    assert_eq!(res.unwrap(), 3);
    assert_eq!(starts, [0, 2_000, 4_000]);
}

/// The waits of one always-failing call through `policy`, as the hook sees them.
async fn waits(policy: &RetryPolicy) -> Vec<Duration> {
    let mut waits = Vec::new();
    let _ = policy
        .retry(|| async { Err::<(), _>(Fail::Refused) })
        .on_retry(|ev| waits.push(ev.delay()))
        .run()
        .await;
    waits
}

#[tokio::test(start_paused = true)]
async fn a_seeded_policy_gives_each_call_its_own_jitter_reproducibly() {
    let seeded = |seed| {
        RetryPolicy::builder()
            .max_attempts(6)
            .backoff(
                ExponentialBackoff::builder()
                    .base(ms(100))
                    .cap(ms(10_000))
                    .jitter(Jitter::Full)
                    .seed(seed)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (seeded(7), seeded(7));
    let first = waits(&a).await;
    assert_eq!(first.len(), 5);
    // Same seed, same first schedule.
    assert_eq!(waits(&b).await, first);
    // Two calls sharing one seeded policy do not wait alike.
    let second = waits(&a).await;
    assert_ne!(second, first);
    // ... and the sequence of schedules is reproducible.
    assert_eq!(waits(&b).await, second);
    // A clone of the policy continues the sequence rather than replaying it.
    assert_ne!(waits(&a.clone()).await, second);
}

/// Pushes `dropped n` to the log when dropped.
struct DropLog(Rc<RefCell<Vec<String>>>, u32);

impl Drop for DropLog {
    fn drop(&mut self) {
        self.0.borrow_mut().push(format!("dropped {}", self.1));
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_is_dropped_as_soon_as_it_ends() {
    // Attempt 1 hangs past its timeout, attempt 2 fails, attempt 3 succeeds: each attempt's
    // future (and what it holds) is gone before the next step of the call.
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .attempt_timeout(ms(100))
        .backoff(ConstantBackoff::new(ms(10)))
        .build()
        .unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut n = 0;
    let got = policy
        .retry(|| {
            n += 1;
            let guard = DropLog(log.clone(), n);
            async move {
                let _guard = guard;
                match n {
                    1 => std::future::pending().await,
                    2 => Err(Fail::Refused),
                    _ => Ok(n),
                }
            }
        })
        .idempotent(true)
        .on_retry(|ev| {
            log.borrow_mut()
                .push(format!("retry after {}", ev.attempt()))
        })
        .run()
        .await
        .unwrap();
    log.borrow_mut().push("returned".into());
    assert_eq!(got, 3);
    assert_eq!(
        *log.borrow(),
        [
            "dropped 1",
            "retry after 1",
            "dropped 2",
            "retry after 2",
            "dropped 3",
            "returned"
        ]
    );

    // A first-try success drops its attempt before the call returns.
    log.borrow_mut().clear();
    let got = policy
        .retry(|| {
            let guard = DropLog(log.clone(), 1);
            async move {
                let _guard = guard;
                Ok::<_, Fail>(1)
            }
        })
        .run()
        .await
        .unwrap();
    log.borrow_mut().push("returned".into());
    assert_eq!(got, 1);
    assert_eq!(*log.borrow(), ["dropped 1", "returned"]);
}

#[tokio::test(start_paused = true)]
async fn budget_exhaustion_stops_retrying() {
    let budget = RetryBudget::builder()
        .capacity(10)
        .retry_cost(5)
        .timeout_retry_cost(10)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .backoff(ConstantBackoff::new(ms(1)))
        .build()
        .unwrap();
    let mut calls = 0;
    let err = policy
        .retry(|| {
            calls += 1;
            async { Err::<(), _>(Fail::Refused) }
        })
        .budget(&budget)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::BudgetExhausted);
    // Two retries paid (5 + 5), the third could not be.
    assert_eq!(calls, 3);
    assert_eq!(budget.available(), 0);

    // A success refills; a first-try success with a full budget leaves it full.
    policy
        .retry(|| async { Ok::<_, Fail>(()) })
        .budget(&budget)
        .run()
        .await
        .unwrap();
    assert_eq!(budget.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn hook_sees_every_retry() {
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(exact_backoff())
        .build()
        .unwrap();
    let mut seen = Vec::new();
    let mut n = 0;
    let _ = policy
        .retry(|| {
            n += 1;
            let fail = if n == 1 { Fail::Refused } else { Fail::Timeout };
            async move { Err::<(), _>(fail) }
        })
        .idempotent(true)
        .on_retry(|ev| {
            seen.push((
                ev.attempt(),
                ev.delay().as_millis() as u64,
                ev.error().cloned(),
                ev.classification().execution(),
            ))
        })
        .run()
        .await;
    assert_eq!(
        seen,
        [
            (1, 100, Some(Fail::Refused), Execution::NotExecuted),
            (2, 200, Some(Fail::Timeout), Execution::MayHaveExecuted),
            (3, 400, Some(Fail::Timeout), Execution::MayHaveExecuted),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn closure_classifier_and_custom_schedule() {
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .backoff(CustomBackoff::new([ms(7), ms(11)]))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut starts = Vec::new();
    let err = policy
        .retry(|| {
            starts.push(start.elapsed().as_millis() as u64);
            async { Err::<(), u16>(503) }
        })
        .classify_with(|status: &u16| {
            if *status >= 500 {
                Classification::transient().not_executed()
            } else {
                Classification::permanent()
            }
        })
        .run()
        .await
        .unwrap_err();
    // The schedule has two waits, so three attempts.
    assert_eq!(starts, [0, 7, 18]);
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert_eq!(err.into_last_error(), Some(503));
}

/// 1 000 concurrent callers against an always-failing operation with one shared budget: the
/// number of retries is bounded by what the budget can pay for, not by callers × attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_storm_stays_within_the_budget() {
    let budget = RetryBudget::new(); // 500 tokens, 5 per retry → at most 100 retries
    let policy = Arc::new(
        RetryPolicy::builder()
            .max_attempts(5)
            .backoff(ConstantBackoff::new(Duration::ZERO))
            .build()
            .unwrap(),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let (budget, policy, calls) = (budget.clone(), policy.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            policy
                .retry(|| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    async { Err::<(), _>(Fail::Refused) }
                })
                .budget(&budget)
                .run()
                .await
                .unwrap_err()
                .reason()
        }));
    }
    let mut budget_stops = 0;
    for t in tasks {
        match t.await.unwrap() {
            StopReason::BudgetExhausted => budget_stops += 1,
            StopReason::AttemptsExhausted => {}
            other => panic!("unexpected stop: {other}"),
        }
    }
    let retries = calls.load(Ordering::Relaxed) - 1_000;
    assert_eq!(
        retries, 100,
        "retries must be exactly what 500 tokens pay for"
    );
    assert_eq!(budget.available(), 0);
    assert!(budget_stops >= 1_000 - 100);
}

/// An operation bounded by itself (it times out after 100 ms on its own) needs no timer of the
/// executor while its limit is at least that, and is timed again once the deadline is tighter.
#[tokio::test(start_paused = true)]
async fn a_self_bounded_attempt_is_timed_only_when_the_deadline_is_tighter() {
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .deadline(ms(250))
        .attempt_timeout(ms(200))
        .backoff(ConstantBackoff::new(ms(10)))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut starts = Vec::new();
    let err = policy
        .retry(|| {
            starts.push(start.elapsed());
            async {
                // The client's own response timeout.
                tokio::time::sleep(ms(100)).await;
                Err::<(), _>(Fail::Timeout)
            }
        })
        .idempotent(true)
        .bounded_by(ms(100))
        .run()
        .await
        .unwrap_err();
    // 0–100 ms (its own timeout), 110–210 ms, then 220 ms with 30 ms left: the executor times
    // that one and the deadline cuts it at 250 ms.
    assert_eq!(starts, [ms(0), ms(110), ms(220)]);
    assert_eq!(start.elapsed(), ms(250));
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    assert!(err.timed_out());
}

/// The executor trusts the bound: an attempt that breaks it is not cut by the attempt timeout
/// (which is why only an operation that enforces its own timeout may declare one).
#[tokio::test(start_paused = true)]
async fn the_executor_trusts_a_declared_bound() {
    let policy = RetryPolicy::builder()
        .attempt_timeout(ms(200))
        .build()
        .unwrap();
    let call = policy
        .retry(std::future::pending::<Result<(), Fail>>)
        .bounded_by(ms(100))
        .run();
    assert!(tokio::time::timeout(ms(1000), call).await.is_err());
    // Without the declaration the attempt timeout cuts it.
    let err = policy
        .retry(std::future::pending::<Result<(), Fail>>)
        .run()
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptTimedOut);
}

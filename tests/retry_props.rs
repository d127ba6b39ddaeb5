//! Property tests of the schedules and the executor's limits.

use std::time::Duration;

use proptest::prelude::*;
use switchover::Classification;
use switchover::retry::{Backoff, ConstantBackoff, ExponentialBackoff, Jitter, RetryPolicy};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

/// (base, cap) with base ≤ cap, in milliseconds.
fn base_cap() -> impl Strategy<Value = (u64, u64)> {
    (1u64..5_000, 0u64..100_000).prop_map(|(base, extra)| (base, base + extra))
}

fn backoff(base: u64, cap: u64, factor: f64, jitter: Jitter, seed: u64) -> ExponentialBackoff {
    ExponentialBackoff::builder()
        .base(Duration::from_millis(base))
        .cap(Duration::from_millis(cap))
        .factor(factor)
        .jitter(jitter)
        .seed(seed)
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn every_delay_is_at_most_the_cap(
        (base, cap) in base_cap(), factor in 1.0f64..10.0, jitter in jitter(), seed: u64,
    ) {
        let b = backoff(base, cap, factor, jitter, seed);
        for d in b.schedule().take(200) {
            prop_assert!(d <= Duration::from_millis(cap), "{d:?} > cap {cap} ms");
        }
    }

    #[test]
    fn equal_jitter_is_at_least_half_the_plain_delay(
        (base, cap) in base_cap(), factor in 1.0f64..10.0, seed: u64,
    ) {
        let plain = backoff(base, cap, factor, Jitter::None, seed);
        let equal = backoff(base, cap, factor, Jitter::Equal, seed);
        for (p, e) in plain.schedule().zip(equal.schedule()).take(100) {
            prop_assert!(e >= p / 2, "{e:?} < half of {p:?}");
            prop_assert!(e <= p);
        }
    }

    #[test]
    fn decorrelated_stays_within_its_bounds(
        (base, cap) in base_cap(), seed: u64,
    ) {
        let b = backoff(base, cap, 2.0, Jitter::Decorrelated, seed);
        let (base, cap) = (Duration::from_millis(base), Duration::from_millis(cap));
        let mut previous = base;
        for d in b.schedule().take(100) {
            let hi = (previous * 3).min(cap);
            prop_assert!(d >= base.min(hi) && d <= hi, "{d:?} outside [{base:?}, {hi:?}]");
            previous = d;
        }
    }

    #[test]
    fn same_seed_same_schedule(
        (base, cap) in base_cap(), factor in 1.0f64..10.0, jitter in jitter(), seed: u64,
    ) {
        let a: Vec<_> = backoff(base, cap, factor, jitter, seed).schedule().take(50).collect();
        let b: Vec<_> = backoff(base, cap, factor, jitter, seed).schedule().take(50).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn attempts_never_exceed_the_maximum_and_time_never_exceeds_the_deadline(
        max_attempts in 1u32..30,
        deadline_ms in 1u64..5_000,
        op_ms in 0u64..400,
        delay_ms in 0u64..400,
        idempotent: bool,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (attempts, elapsed) = rt.block_on(async {
            let policy = RetryPolicy::builder()
                .max_attempts(max_attempts)
                .deadline(Duration::from_millis(deadline_ms))
                .backoff(ConstantBackoff::new(Duration::from_millis(delay_ms)))
                .build()
                .unwrap();
            let start = tokio::time::Instant::now();
            let mut attempts = 0u32;
            let _ = policy
                .retry(|| {
                    attempts += 1;
                    async move {
                        tokio::time::sleep(Duration::from_millis(op_ms)).await;
                        Err::<(), _>(())
                    }
                })
                .idempotent(idempotent)
                .classify_with(|_: &()| Classification::transient())
                .run()
                .await;
            (attempts, start.elapsed())
        });
        prop_assert!(attempts <= max_attempts);
        prop_assert!(attempts >= 1);
        prop_assert!(elapsed <= Duration::from_millis(deadline_ms), "{elapsed:?}");
        if !idempotent {
            prop_assert_eq!(attempts, 1);
        }
    }
}

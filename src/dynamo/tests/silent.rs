//! Silent regions under the paused clock: suspicion, the confirming canary, heartbeats.

use super::*;
use crate::health::HealthTrackerBuilder;

/// A table with the handle's defaults for heartbeats (200 ms, 300 ms bound) and suspicion
/// (100 ms, a 200 ms confirming canary) over `r1` and `r2`, whose probes answer up except
/// where frozen. Each region has a latency sample of 1 ms (a region that was serving, then
/// went silent; with no sample yet, its canary gets the heartbeat's 300 ms bound). The
/// tracker's heartbeat jitter is off, so beats are exactly 200 ms apart.
fn silent(frozen: &[&str]) -> (Table, Prober) {
    silent_with(frozen, |h| h.heartbeat_jitter(0.0))
}

/// [`silent`] with the tracker tuned by `health`.
fn silent_with(
    frozen: &[&str],
    health: impl FnOnce(HealthTrackerBuilder<RegionName>) -> HealthTrackerBuilder<RegionName>
    + Send
    + 'static,
) -> (Table, Prober) {
    let prober = Prober::default();
    for r in ["r1", "r2"] {
        if frozen.contains(&r) {
            prober.freeze(r);
        } else {
            prober.set_up(r);
        }
    }
    let table = defaults()
        .health(health)
        .build_with_probe(prober.probe())
        .unwrap();
    for slot in &table.inner.regions {
        slot.endpoint
            .record_success_with_latency(Duration::from_millis(1));
    }
    (table, prober)
}

#[tokio::test(start_paused = true)]
async fn a_frozen_region_costs_the_first_read_one_suspect_delay_and_later_reads_nothing() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    // Built while r1 is frozen: no request at build.
    let (table, _) = silent(&["r1"]);
    let start = Instant::now();

    // Unanswered for 100 ms: r1 is suspect and the read is re-sent to r2 at once.
    assert_eq!(table.read(backend.op()).send().await.unwrap(), "r2");
    assert_eq!(ms(start), 100);
    assert_eq!(table.region_state("r1"), Some(HealthState::Up));
    assert!(table.inner.regions[0].is_suspect());
    // Later reads do not try r1 at all.
    assert_eq!(table.read(backend.op()).send().await.unwrap(), "r2");
    assert_eq!(ms(start), 100);
    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r2", 100), ("r2", 100)])
    );

    // The silence counted once; the confirming canary (200 ms) missed too: down at 300 ms.
    tokio::time::sleep_until(start + Duration::from_millis(299)).await;
    assert_eq!(stats(&table, "r1").failures_total, 1);
    tokio::time::sleep_until(start + Duration::from_millis(301)).await;
    let r1 = stats(&table, "r1");
    assert_eq!((r1.state, r1.failures_total), (HealthState::Down, 2));
    assert_eq!(table.active_region(), "r2");
    let health = table.health();
    let r1 = &health.checks("dynamodb:region")[0];
    assert_eq!(
        (r1.component_id.as_str(), r1.status),
        ("r1", crate::observe::Status::Warn)
    );
    assert_eq!(r1.observed["suspect"], crate::observe::Value::Flag(true));
}

#[tokio::test(start_paused = true)]
async fn writes_to_a_frozen_active_region_wait_for_its_verdict_not_the_attempt_timeout() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    let (table, _) = silent(&["r1"]);
    let start = Instant::now();

    let in_flight = async {
        let served = table.write(backend.op()).idempotent(true).send().await;
        (served.unwrap(), ms(start))
    };
    let later = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Not idempotent: safe to redirect, since it is never sent to the suspect region.
        let served = table.write(backend.op()).send().await;
        (served.unwrap(), ms(start))
    };
    let (first, second) = tokio::join!(in_flight, later);

    // r1 is down at 300 ms (silence at 100 ms + the canary's 200 ms): the write in flight
    // there ends then and is retried in r2 after the 10 ms backoff; the later write waited
    // for the verdict and went to r2 at once, never to r1.
    assert_eq!(first, (RegionName::new("r2"), 310));
    assert_eq!(second, (RegionName::new("r2"), 300));
    assert_eq!(
        backend.calls(),
        calls(&[("r1", 0), ("r2", 300), ("r2", 310)])
    );
    assert_eq!(table.active_region(), "r2");
}

#[tokio::test(start_paused = true)]
async fn a_write_in_flight_when_its_region_is_declared_down_ends_then_and_may_have_run() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    let (table, _) = silent(&["r1"]);
    let start = Instant::now();

    let err = table.write(backend.op()).send().await.unwrap_err();

    // At the verdict (300 ms), not at the handle's attempt bound (600 ms).
    assert_eq!(ms(start), 300);
    assert_eq!(err.kind(), FailureKind::Timeout);
    assert_eq!(err.stop_reason(), StopReason::NotIdempotent);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.region(), Some("r1"));
    assert_eq!(err.execution(), Execution::MayHaveExecuted);
}

#[tokio::test(start_paused = true)]
async fn a_slow_region_that_answers_its_canary_stays_up_and_gets_its_reads_back() {
    let backend = Backend::new();
    backend.queue("r1", [Step::Slow(Duration::from_millis(120))]);
    let (table, prober) = silent(&[]);
    let start = Instant::now();

    assert_eq!(table.read(backend.op()).send().await.unwrap(), "r2");
    assert_eq!(ms(start), 100);
    // The canary answered: no longer suspect, its streak reset by the answer.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!table.inner.regions[0].is_suspect());
    let r1 = stats(&table, "r1");
    assert_eq!(
        (r1.state, r1.consecutive_failures, r1.failures_total),
        (HealthState::Up, 0, 1)
    );
    assert_eq!(prober.probe_log(), [("r1".to_owned(), 100)]);
    assert_eq!(table.read(backend.op()).send().await.unwrap(), "r1");
    assert_eq!(table.active_region(), "r1");
}

#[tokio::test(start_paused = true)]
async fn a_missed_heartbeat_makes_the_region_suspect_and_two_put_it_down() {
    let backend = Backend::new();
    backend.set("r1", Step::BlackHole);
    let (table, prober) = silent(&["r1"]);
    let start = Instant::now();

    // The heartbeat of 200 ms is cut at 500 ms (its 300 ms bound): suspect, one failure.
    tokio::time::sleep_until(start + Duration::from_millis(501)).await;
    assert!(table.inner.regions[0].is_suspect());
    assert_eq!(stats(&table, "r1").failures_total, 1);
    // A read now goes to r2 without trying r1.
    assert_eq!(table.read(backend.op()).send().await.unwrap(), "r2");
    assert_eq!(backend.calls(), calls(&[("r2", 501)]));
    // The next heartbeat starts at once and is cut at 800 ms: down.
    tokio::time::sleep_until(start + Duration::from_millis(801)).await;
    assert_eq!(table.region_state("r1"), Some(HealthState::Down));
    let r1: Vec<u64> = prober
        .probe_log()
        .iter()
        .filter(|(r, _)| r == "r1")
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(r1, [200, 500]);
}

#[tokio::test(start_paused = true)]
async fn the_default_heartbeat_costs_five_to_six_requests_per_region_per_second() {
    // 200 ms with the tracker's default jitter of 0.2: each beat 160 to 200 ms after the last.
    let (table, prober) = silent_with(&[], |h| h);
    tokio::time::sleep(Duration::from_millis(1001)).await;
    for region in ["r1", "r2"] {
        let beats: Vec<u64> = prober
            .probe_log()
            .iter()
            .filter(|(r, _)| r == region)
            .map(|(_, t)| *t)
            .collect();
        assert!((5..=6).contains(&beats.len()), "{region}: {beats:?}");
        assert!(
            beats
                .windows(2)
                .all(|w| (160..=200).contains(&(w[1] - w[0]))),
            "{region}: {beats:?}"
        );
    }
    drop(table);

    let prober = Prober::default();
    let table = defaults()
        .heartbeat(None)
        .build_with_probe(prober.probe())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert_eq!(prober.probes_of("r1") + prober.probes_of("r2"), 0);
    drop(table);
}

//! The DynamoDB fleet lease: the holder's decisions, takeover, a lost control store and bad
//! records under the paused clock with a scripted store (a fake [`LeaseStore`]); the
//! conditional writes of [`DynamoLeaseStore`] and a fleet's `PrimaryOnly` writes against real
//! DynamoDB Local (no paused clock).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use switchover::Classification;
use switchover::dynamo::fleet::{
    ControlRecord, DynamoLeaseStore, FleetLease, LeaseStore, Report, StoreError,
};
use switchover::dynamo::{FailureKind, RegionConfig, RegionName, Table, Timeouts};
use switchover::health::HealthTracker;
use switchover::route::{AuthorityEvent, Follower, Rejection, Router, WhenUnreachable};
use switchover::testing::{DynamoDbLocal, FaultProxy, Mode};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// The scripted store (paused clock)
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Stored {
    record: Option<ControlRecord>,
    /// The next loads answer "does not parse".
    garbled: bool,
    writes: u64,
}

/// A compare-and-set store in memory, on the paused Tokio clock. Each instance gets its own
/// handle ([`FakeStore::handle`]) that can lose the store on its own.
#[derive(Clone)]
struct FakeStore {
    shared: Arc<Mutex<Stored>>,
    down: Arc<AtomicBool>,
    start: Instant,
}

const BASE_MS: u64 = 1_700_000_000_000;

impl FakeStore {
    fn new() -> Self {
        FakeStore {
            shared: Arc::default(),
            down: Arc::default(),
            start: Instant::now(),
        }
    }

    fn handle(&self) -> Self {
        FakeStore {
            shared: Arc::clone(&self.shared),
            down: Arc::default(),
            start: self.start,
        }
    }

    fn record(&self) -> ControlRecord {
        self.shared
            .lock()
            .unwrap()
            .record
            .clone()
            .expect("a record")
    }

    fn set(&self, f: impl FnOnce(&mut ControlRecord)) {
        let mut s = self.shared.lock().unwrap();
        let r = s.record.get_or_insert_with(ControlRecord::default);
        f(r);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Acquire) {
            Err(StoreError::unreachable("connection refused"))
        } else {
            Ok(())
        }
    }
}

impl LeaseStore for FakeStore {
    async fn load(&self, _resource: &str) -> Result<Option<ControlRecord>, StoreError> {
        self.check()?;
        let s = self.shared.lock().unwrap();
        if s.garbled {
            return Err(StoreError::unparsable(
                "control record: `epoch` is not a number",
            ));
        }
        Ok(s.record.clone())
    }

    async fn write(
        &self,
        _resource: &str,
        record: &ControlRecord,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let mut s = self.shared.lock().unwrap();
        if s.record.as_ref().map(|r| r.version) != expected {
            return Ok(false);
        }
        let reports = s.record.as_ref().map(|r| r.reports.clone());
        let mut new = record.clone();
        if let Some(reports) = reports {
            new.reports = reports;
        }
        s.record = Some(new);
        s.writes += 1;
        Ok(true)
    }

    async fn report(
        &self,
        _resource: &str,
        instance: &str,
        report: &Report,
    ) -> Result<bool, StoreError> {
        self.check()?;
        let mut s = self.shared.lock().unwrap();
        Ok(match s.record.as_mut() {
            Some(r) => {
                r.reports.insert(instance.to_owned(), report.clone());
                true
            }
            None => false,
        })
    }

    fn now_ms(&self) -> u64 {
        BASE_MS + self.start.elapsed().as_millis() as u64
    }
}

fn router() -> Router<RegionName> {
    let names = [RegionName::new("a"), RegionName::new("b")];
    let t = HealthTracker::new(names.clone());
    Router::builder(&t).endpoints(names).build().unwrap()
}

/// The instance loses `region`: its tracker holds it down.
fn lose(r: &Router<RegionName>, region: &str) {
    let e = r.tracker().endpoint(&RegionName::new(region)).unwrap();
    while e.is_available() {
        e.record_failure(Classification::transient());
    }
}

fn active(r: &Router<RegionName>) -> String {
    r.active().id().as_str().to_owned()
}

async fn at(start: Instant, ms: u64) {
    tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
}

fn instance(store: &FakeStore, name: &str, r: &Router<RegionName>) -> Follower<RegionName> {
    FleetLease::builder(store.handle(), "orders", name)
        .failback_after(Duration::from_secs(5))
        .start(r)
        .unwrap()
}

/// Drains the events received so far.
fn drain(
    ev: &mut UnboundedReceiver<AuthorityEvent<RegionName>>,
) -> Vec<AuthorityEvent<RegionName>> {
    std::iter::from_fn(|| ev.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn leader_loss_is_a_takeover_at_lease_expiry() {
    let store = FakeStore::new();
    let start = store.start;
    let (r1, r2) = (router(), router());
    let i1 = instance(&store, "i1", &r1);
    at(start, 100).await;
    let i2 = instance(&store, "i2", &r2);
    at(start, 101).await;
    // i1 wrote the first record at 0 ms: the preferred region, epoch 1; i2 follows it.
    let rec = store.record();
    assert_eq!(
        (rec.active.as_str(), rec.epoch, rec.holder.as_str()),
        ("a", 1, "i1")
    );
    assert_eq!(rec.lease_expiry_ms, BASE_MS + 2_000);
    assert_eq!((i1.epoch(), i2.epoch()), (1, 1));
    // i1 renews once a third of the TTL has passed (polls every 250 ms): at 750 and 1500 ms.
    at(start, 1_501).await;
    assert_eq!(store.record().lease_expiry_ms, BASE_MS + 3_500);
    assert_eq!(store.record().version, 3);
    drop(i1); // the leader dies after its renewal at 1500 ms
    // i2 polls at 100 + 250 k ms: at 3350 the lease (until 3500) still holds, at 3600 it has
    // expired and i2 takes it over; the decision (epoch, region) is unchanged.
    at(start, 3_599).await;
    assert_eq!(store.record().holder, "i1");
    at(start, 3_601).await;
    let rec = store.record();
    assert_eq!(
        (rec.holder.as_str(), rec.epoch, rec.active.as_str()),
        ("i2", 1, "a")
    );
    assert_eq!(rec.lease_expiry_ms, BASE_MS + 5_600);
    assert_eq!(active(&r2), "a");
    // The new holder decides: it loses `a` (the only reporter left), the next poll moves the
    // fleet to `b` under epoch 2.
    let mut ev = i2.subscribe();
    lose(&r2, "a");
    at(start, 3_851).await;
    let rec = store.record();
    assert_eq!((rec.active.as_str(), rec.epoch), ("b", 2));
    assert_eq!(rec.decided_at_ms, BASE_MS + 3_850);
    // i1's last report (at 1000 ms) is still within the 3 s report TTL: 1 of 2 cannot reach.
    assert_eq!(rec.reason, "a unreachable by 1 of 2 instances; b by 0 of 2");
    match drain(&mut ev).as_slice() {
        [
            AuthorityEvent::Followed {
                primary,
                epoch: 2,
                generation: 1,
                reachable: true,
                ..
            },
        ] => {
            assert_eq!(primary, &"b");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(active(&r2), "b");
}

#[tokio::test(start_paused = true)]
async fn a_region_only_the_leader_reaches_is_not_kept_active() {
    let store = FakeStore::new();
    let start = store.start;
    let routers: Vec<_> = (0..3).map(|_| router()).collect();
    let mut fleet = Vec::new();
    let mut events = Vec::new();
    for (i, r) in routers.iter().enumerate() {
        let f = instance(&store, &format!("i{i}"), r);
        events.push(f.subscribe());
        fleet.push(f);
        at(start, 10 * (i as u64 + 1)).await; // i0 at 0 ms (the holder), i1 at 10, i2 at 20
    }
    at(start, 1_000).await;
    assert!(routers.iter().all(|r| active(r) == "a"));
    // Two of three lose `a`; the holder i0 still reaches it.
    lose(&routers[1], "a");
    lose(&routers[2], "a");
    // They keep routing to `a` (the record's) and report at their next polls (1010, 1020);
    // the holder decides at its poll at 1250 ms.
    at(start, 1_249).await;
    assert_eq!(store.record().epoch, 1);
    assert!(
        routers.iter().all(|r| active(r) == "a"),
        "nobody moves alone"
    );
    at(start, 1_251).await;
    let rec = store.record();
    assert_eq!((rec.active.as_str(), rec.epoch), ("b", 2));
    assert_eq!(rec.reason, "a unreachable by 2 of 3 instances; b by 0 of 3");
    assert_eq!(rec.reports["i1"].unreachable, ["a"]);
    // Every instance follows at its next poll: within one poll interval of the decision.
    at(start, 1_500).await;
    for (r, ev) in routers.iter().zip(&mut events) {
        assert_eq!(active(r), "b");
        let followed: Vec<_> = drain(ev)
            .into_iter()
            .filter_map(|e| match e {
                AuthorityEvent::Followed { epoch: 2, at, .. } => Some(at - start),
                _ => None,
            })
            .collect();
        assert_eq!(followed.len(), 1);
        assert!(
            followed[0] <= Duration::from_millis(1_250 + 250),
            "{followed:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn control_store_loss_keeps_the_last_record_or_falls_back() {
    for fallback in [false, true] {
        let store = FakeStore::new();
        let start = store.start;
        store.set(|r| {
            *r = ControlRecord {
                active: "b".into(),
                epoch: 5,
                holder: "elsewhere".into(),
                lease_expiry_ms: u64::MAX,
                version: 9,
                ..ControlRecord::default()
            }
        });
        let r = router();
        let handle = store.handle();
        let when = if fallback {
            WhenUnreachable::FallBackAfter(Duration::from_secs(1))
        } else {
            WhenUnreachable::KeepLast
        };
        let f = FleetLease::builder(handle.clone(), "orders", "i1")
            .when_unreachable(when)
            .start(&r)
            .unwrap();
        let mut ev = f.subscribe();
        at(start, 1).await;
        assert_eq!((f.epoch(), active(&r)), (5, "b".to_owned()));
        handle.down.store(true, Ordering::Release);
        // Polls at 250, 500, ... fail. The first says so; with the fallback, the poll at
        // 1250 ms (1 s later) hands the decision back to local health.
        at(start, 1_251).await;
        let seen = drain(&mut ev);
        match &seen[1..] {
            [
                AuthorityEvent::Unreachable {
                    keeping: 5, at: t, ..
                },
                rest @ ..,
            ] => {
                assert_eq!(*t - start, Duration::from_millis(250));
                if fallback {
                    assert!(
                        matches!(rest, [AuthorityEvent::FellBack { at }] if *at - start == Duration::from_millis(1_250)),
                        "{rest:?}"
                    );
                } else {
                    assert!(rest.is_empty(), "{rest:?}");
                }
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(f.is_local(), fallback);
        // Local health now decides when falling back: it keeps `b` (up) until failback, and
        // a lost `b` moves it to `a`; kept, the record's `b` stays whatever local health says.
        lose(&r, "b");
        assert_eq!(active(&r), if fallback { "a" } else { "b" });
        assert_eq!(r.active().is_all_down(), !fallback);
        handle.down.store(false, Ordering::Release);
        at(start, 1_501).await;
        let seen = drain(&mut ev);
        assert!(
            matches!(seen.first(), Some(AuthorityEvent::Reachable { .. })),
            "{seen:?}"
        );
        assert_eq!(active(&r), "b", "the record is followed again");
    }
}

/// When (ms), what changes in the store, and the rejection expected.
type Step = (u64, Box<dyn Fn(&FakeStore)>, Rejection<RegionName>);

#[tokio::test(start_paused = true)]
async fn bad_records_are_reported_and_the_last_good_one_stands() {
    let store = FakeStore::new();
    let start = store.start;
    let good = ControlRecord {
        active: "b".into(),
        epoch: 5,
        holder: "elsewhere".into(),
        lease_expiry_ms: u64::MAX,
        version: 9,
        reports: BTreeMap::new(),
        ..ControlRecord::default()
    };
    store.set(|r| *r = good.clone());
    let r = router();
    let f = instance(&store, "i1", &r);
    let mut ev = f.subscribe();
    at(start, 1).await;
    assert_eq!(f.epoch(), 5);
    assert!(matches!(
        drain(&mut ev).as_slice(),
        [AuthorityEvent::Followed { epoch: 5, .. }]
    ));
    // An unknown region (polled at 250 ms), an epoch going back (500 ms), a record that does
    // not parse (750 ms): each is one Rejected event, and `b` under epoch 5 stands.
    let steps: [Step; 3] = [
        (
            251,
            Box::new(|s| s.set(|r| (r.active, r.epoch) = ("mars-1".into(), 6))),
            Rejection::UnknownEndpoint {
                primary: RegionName::new("mars-1"),
                epoch: 6,
            },
        ),
        (
            501,
            Box::new(|s| s.set(|r| (r.active, r.epoch) = ("a".into(), 3))),
            Rejection::EpochWentBack { epoch: 3, last: 5 },
        ),
        (
            751,
            Box::new(|s| s.shared.lock().unwrap().garbled = true),
            Rejection::Unparsable {
                reason: "control record: `epoch` is not a number".into(),
            },
        ),
    ];
    for (ms, change, want) in steps {
        change(&store);
        at(start, ms).await;
        match drain(&mut ev).as_slice() {
            [AuthorityEvent::Rejected { rejection, at }] => {
                assert_eq!(rejection, &want);
                assert_eq!(*at - start, Duration::from_millis(ms - 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((f.epoch(), active(&r)), (5, "b".to_owned()));
    }
    // Repaired: a new epoch is followed.
    store.shared.lock().unwrap().garbled = false;
    store.set(|r| (r.active, r.epoch) = ("a".into(), 7));
    at(start, 1_001).await;
    assert_eq!((f.epoch(), active(&r)), (7, "a".to_owned()));
    assert_eq!(
        store.shared.lock().unwrap().writes,
        0,
        "a valid lease elsewhere: no writes"
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_finds_an_unknown_region_decides_anew() {
    let store = FakeStore::new();
    let start = store.start;
    store.set(|r| {
        *r = ControlRecord {
            active: "mars-1".into(),
            epoch: 4,
            holder: "gone".into(),
            lease_expiry_ms: 0,
            version: 2,
            ..ControlRecord::default()
        }
    });
    let r = router();
    let f = instance(&store, "i1", &r);
    at(start, 1).await;
    let rec = store.record();
    assert_eq!(
        (
            rec.active.as_str(),
            rec.epoch,
            rec.holder.as_str(),
            rec.version
        ),
        ("a", 5, "i1", 3)
    );
    assert_eq!(
        rec.reason,
        "the record named `mars-1`, which is not a region of the table"
    );
    assert_eq!((f.epoch(), active(&r)), (5, "a".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn bad_configuration_is_refused() {
    let r = router();
    let e = FleetLease::builder(FakeStore::new(), "orders", "")
        .start(&r)
        .unwrap_err();
    assert_eq!(e.field(), "instance");
    let e = FleetLease::builder(FakeStore::new(), "orders", "i1")
        .lease_ttl(Duration::from_millis(400))
        .start(&r)
        .unwrap_err();
    assert_eq!(e.field(), "lease_ttl");
    let e = FleetLease::builder(FakeStore::new(), "orders", "i1")
        .switch_share(1.5)
        .start(&r)
        .unwrap_err();
    assert_eq!(e.field(), "switch_share");
}

// ---------------------------------------------------------------------------------------------
// Real DynamoDB Local (no paused clock)
// ---------------------------------------------------------------------------------------------

const CONTROL: &str = "control";

async fn control_store() -> (DynamoDbLocal, DynamoLeaseStore) {
    let node = DynamoDbLocal::start("control-1")
        .await
        .expect("DynamoDB Local starts");
    node.create_table(CONTROL, "pk")
        .await
        .expect("control table");
    let store = DynamoLeaseStore::new(node.client(), CONTROL);
    (node, store)
}

fn first(holder: &str, active: &str) -> ControlRecord {
    ControlRecord {
        active: active.into(),
        epoch: 1,
        holder: holder.into(),
        lease_expiry_ms: 0,
        version: 1,
        ..ControlRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_conditional_writes_decide_every_race() {
    let (_node, one) = control_store().await;
    let two = one.clone();
    // Acquire: both create the first record at once; exactly one wins.
    for round in 0..5 {
        let resource = format!("race-{round}");
        let (f1, f2) = (first("i1", "a"), first("i2", "b"));
        let (a, b) = tokio::join!(
            one.write(&resource, &f1, None),
            two.write(&resource, &f2, None),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a ^ b, "exactly one acquires (round {round}: {a} {b})");
        let stored = one.load(&resource).await.unwrap().unwrap();
        assert_eq!(stored.holder, if a { "i1" } else { "i2" });
        assert_eq!(stored.version, 1);
    }
    // Renew and takeover: both write from version 1; exactly one wins, the loser changes
    // nothing, and a report written in between never makes the holder lose.
    let resource = "race-0";
    let report = Report {
        unreachable: vec!["a".into()],
        at_ms: 42,
    };
    assert!(one.report(resource, "i3", &report).await.unwrap());
    let base = one.load(resource).await.unwrap().unwrap();
    let mut renew = base.clone();
    renew.version = 2;
    renew.lease_expiry_ms = 10;
    let mut take = base.clone();
    take.version = 2;
    take.holder = "i9".into();
    let (a, b) = tokio::join!(
        one.write(resource, &renew, Some(1)),
        two.write(resource, &take, Some(1)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a ^ b, "exactly one of renew / takeover wins: {a} {b}");
    let stored = one.load(resource).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.holder, if a { base.holder.as_str() } else { "i9" });
    assert_eq!(
        stored.reports["i3"], report,
        "the decision write kept the reports"
    );
    // A stale write (expected 1, stored 2) loses.
    assert!(!one.write(resource, &renew, Some(1)).await.unwrap());
    // No record yet: a report is refused, nothing is created.
    assert!(!one.report("nothing-here", "i1", &report).await.unwrap());
    assert_eq!(one.load("nothing-here").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_store_lease_takeover_between_two_instances() {
    let (_node, store) = control_store().await;
    let (r1, r2) = (router(), router());
    let i1 = FleetLease::builder(store.clone(), "orders", "i1")
        .lease_ttl(Duration::from_secs(1))
        .start(&r1)
        .unwrap();
    wait_for(|| i1.epoch() == 1).await;
    let i2 = FleetLease::builder(store.clone(), "orders", "i2")
        .lease_ttl(Duration::from_secs(1))
        .start(&r2)
        .unwrap();
    wait_for(|| i2.epoch() == 1).await;
    let rec = store.load("orders").await.unwrap().unwrap();
    assert_eq!((rec.holder.as_str(), rec.active.as_str()), ("i1", "a"));
    // Both keep polling for a while: i1 keeps the lease (renewals), i2 never takes it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rec = store.load("orders").await.unwrap().unwrap();
    assert_eq!(rec.holder, "i1");
    assert!(rec.version >= 2, "renewed: version {}", rec.version);
    assert!(rec.reports.contains_key("i1") && rec.reports.contains_key("i2"));
    drop(i1);
    wait_for_async(|| async { store.load("orders").await.unwrap().unwrap().holder == "i2" }).await;
    let rec = store.load("orders").await.unwrap().unwrap();
    assert_eq!(
        (rec.epoch, rec.active.as_str()),
        (1, "a"),
        "a takeover is no new decision"
    );
    // The new holder moves the fleet when it loses `a`.
    lose(&r2, "a");
    wait_for(|| i2.epoch() == 2).await;
    assert_eq!(active(&r2), "b");
    assert_eq!(store.load("orders").await.unwrap().unwrap().active, "b");
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "condition not met within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_async<F: Future<Output = bool>>(mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "condition not met within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_only_writes_never_leave_the_named_region() {
    let (control, store) = control_store().await;
    let regions = [
        DynamoDbLocal::start("us-east-1").await.unwrap(),
        DynamoDbLocal::start("eu-west-1").await.unwrap(),
    ];
    for r in &regions {
        r.create_table("orders", "pk").await.unwrap();
    }
    let proxies = [
        FaultProxy::start(regions[0].addr()).await.unwrap(),
        FaultProxy::start(regions[1].addr()).await.unwrap(),
    ];
    // Another instance holds the lease and names us-east-1 (it reaches it).
    store
        .write(
            "orders",
            &ControlRecord {
                active: "us-east-1".into(),
                epoch: 3,
                holder: "other".into(),
                lease_expiry_ms: u64::MAX,
                version: 1,
                ..ControlRecord::default()
            },
            None,
        )
        .await
        .unwrap();
    let table = Table::builder("orders")
        .region(RegionConfig::endpoint(
            "us-east-1",
            format!("http://{}", proxies[0].addr()),
        ))
        .region(RegionConfig::endpoint(
            "eu-west-1",
            format!("http://{}", proxies[1].addr()),
        ))
        .timeouts(
            Timeouts::new()
                .attempt(Duration::from_secs(1))
                .operation(Duration::from_secs(3)),
        )
        .authority(FleetLease::dynamodb(
            control.client(),
            CONTROL,
            "orders",
            "me",
        ))
        .build()
        .unwrap();
    let follower = table.follower().unwrap().clone();
    wait_for(|| follower.epoch() == 3).await;
    let item = |pk: &str| HashMap::from([("pk".to_owned(), AttributeValue::S(pk.into()))]);
    table.put_item(item("before")).send().await.unwrap();
    // This instance loses us-east-1 (black hole); the fleet's record still names it.
    proxies[0].set_mode(Mode::BlackHole).await.unwrap();
    let started = Instant::now();
    let err = table.put_item(item("during")).send().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(3) + Duration::from_millis(500),
        "within its deadline: {took:?}"
    );
    assert!(
        matches!(
            err.kind(),
            FailureKind::Timeout | FailureKind::ConnectFailed
        ),
        "{err:?}"
    );
    assert_eq!(err.region(), Some("us-east-1"));
    assert_eq!(
        table.active_region(),
        "us-east-1",
        "the record's region, not a local failover"
    );
    // It reported the loss.
    wait_for_async(|| async {
        store
            .load("orders")
            .await
            .unwrap()
            .unwrap()
            .reports
            .get("me")
            .is_some_and(|r| r.unreachable == ["us-east-1"])
    })
    .await;
    // Nothing reached eu-west-1.
    let scan = regions[1]
        .client()
        .scan()
        .table_name("orders")
        .send()
        .await
        .unwrap();
    assert_eq!(scan.count(), 0, "no write left the named region");
    // A write started now waits for its region or a new decision; the holder moves the fleet
    // to eu-west-1 (epoch 4) while it waits, and it lands there within its deadline.
    let writer = {
        let table = table.clone();
        tokio::spawn(async move { table.put_item(item("held")).send().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut moved = store.load("orders").await.unwrap().unwrap();
    let expected = moved.version;
    moved.active = "eu-west-1".into();
    moved.epoch = 4;
    moved.version += 1;
    assert!(store.write("orders", &moved, Some(expected)).await.unwrap());
    writer
        .await
        .unwrap()
        .expect("the held write follows the new decision");
    assert_eq!(
        (follower.epoch(), table.active_region().as_str()),
        (4, "eu-west-1")
    );
    let got = regions[1]
        .client()
        .get_item()
        .table_name("orders")
        .key("pk", AttributeValue::S("held".into()))
        .send()
        .await
        .unwrap();
    assert!(got.item.is_some(), "the held write is in eu-west-1");
    proxies[0].set_mode(Mode::Pass).await.unwrap();
}

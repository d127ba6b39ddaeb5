//! The pool obeying a scripted authority over the scripted backend of `postgres::tests`, under
//! Tokio's paused clock: nothing is confirmed before the first record, only the named host is
//! ever confirmed or active (a writable host the authority does not name never is), a held
//! write waits through a leaderless window and goes once the newly named host is confirmed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::super::tests::{Answer, Fake, ms, role, topology_obeying};
use crate::postgres::role::ServerRole::{Primary, Standby};
use crate::postgres::topology::Topology;
use crate::route::{
    Authority, AuthorityError, Follower, Held, Record, RouteEvent, SwitchError, SwitchReason,
};

/// An authority whose answer the test sets.
#[derive(Clone)]
struct Script(Arc<Mutex<Result<Record<Arc<str>>, AuthorityError>>>);

impl Script {
    fn new() -> Script {
        Script(Arc::new(Mutex::new(Err(AuthorityError::unreachable(
            "no leader yet",
        )))))
    }

    fn name(&self, host: &str, epoch: u64) {
        *self.0.lock().unwrap() = Ok(Record::new(Arc::from(host), epoch));
    }

    fn none(&self) {
        *self.0.lock().unwrap() = Err(AuthorityError::unreachable("no member names a leader"));
    }
}

impl Authority<Arc<str>> for Script {
    async fn read(&self) -> Result<Record<Arc<str>>, AuthorityError> {
        self.0.lock().unwrap().clone()
    }
}

/// A write as the pool holds it: until the named host is confirmed (looking again after a new
/// record), at most until `end`. Returns when it was released, in ms since `t0`.
async fn held_write(t: &Topology, f: &Follower<Arc<str>>, t0: Instant, end: Instant) -> u64 {
    loop {
        match f.hold(|| t.primary_confirmed(), end).await {
            Held::Ready => return Instant::now().duration_since(t0).as_millis() as u64,
            Held::Moved => {}
            Held::Expired => panic!("held until the deadline"),
        }
    }
}

fn active(t: &Topology) -> String {
    t.router.active().id().to_string()
}

#[tokio::test(start_paused = true)]
async fn only_the_named_host_is_confirmed_and_held_writes_go_when_it_is() {
    // h0 the first leader, h1 a standby Patroni will promote, h2 writable but never named
    // (an old leader cut off from the DCS, say).
    let fake = Fake::new(&[(role(Primary), 5), (role(Standby), 5), (role(Primary), 5)]);
    let t = topology_obeying(&fake);
    let mut route = t.router.subscribe();
    let t0 = Instant::now();
    let script = Script::new();
    let follower = Follower::builder(&t.router)
        .poll_interval(ms(100))
        .confirmed_by(&t.rediscovery)
        .start(script.clone())
        .unwrap();

    // Before the first record, no host is a primary: not even writable h0 and h2.
    let end = t0 + Duration::from_secs(10);
    sleep(ms(450)).await;
    assert!(!t.primary_confirmed());
    assert!(t.router.active().is_all_down());
    assert_eq!(
        t.router.switch_to(&Arc::from("h2:5432")),
        Err(SwitchError::NotNamed)
    );

    // The first record (read at 500 ms) names h0: confirmed by the run it asks for.
    script.name("h0:5432", 1);
    let released = held_write(&t, &follower, t0, end).await;
    // In doubt, a run every 50 ms after the last one ends (each takes the hosts' 5 ms): the
    // one under way at 500 ms started at 495 under the closed gate and finds none; the next
    // starts at 550 and hears h0 at 555. The hold looked again at once at the new record
    // (500 ms), then every 20 ms: it sees h0 confirmed at 560 ms.
    assert_eq!(released, 560);
    assert_eq!(active(&t), "h0:5432");

    // Leaderless: h0 is killed and no member names a leader (from 1000 ms). h2 is writable,
    // but is never confirmed nor active.
    sleep(ms(1000) - t0.elapsed()).await;
    fake.set(0, Answer::Refuse, 5);
    script.none();
    t.rediscovery.suspect(); // as the heartbeat's miss would
    let wait = held_write(&t, &follower, t0, end);
    let promote = async {
        sleep(ms(1950) - t0.elapsed()).await;
        assert!(!t.primary_confirmed(), "nothing confirmed while leaderless");
        assert_eq!(active(&t), "h0:5432", "the last named host stays active");
        // Patroni names h1 (read at 2000 ms) before its Postgres is promoted (at 2300 ms).
        script.name("h1:5432", 2);
        sleep(ms(2300) - t0.elapsed()).await;
        assert_eq!(active(&t), "h1:5432");
        assert!(!t.primary_confirmed(), "h1 still answers as a standby");
        fake.set(1, role(Primary), 5);
    };
    let (released, ()) = tokio::join!(wait, promote);
    // In doubt from 1000 ms, a run starts every 55 ms (5 ms of probes, then the 50 ms gap):
    // the first after 2300 ms starts at 2320 and hears h1 as primary at 2325. The hold looked
    // again at once at the new record (2000 ms), then every 20 ms: it sees it at 2340 ms.
    assert_eq!(released, 2340);
    assert_eq!(active(&t), "h1:5432");
    assert!(t.primary_confirmed());

    // Every switch was the authority's, and none ever went to h2.
    let mut switches = Vec::new();
    while let Ok(e) = route.try_recv() {
        if let RouteEvent::Switched {
            from, to, reason, ..
        } = e
        {
            switches.push((from.to_string(), to.to_string(), reason));
        }
    }
    assert_eq!(
        switches,
        [("h0:5432".into(), "h1:5432".into(), SwitchReason::Authority)]
    );
}

//! When a pool's host names are looked up again: every `interval`, and at once when a
//! discovery run asks ([`Names::kick`]); the interval restarts after each round.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::Name;
use crate::sync::{read, write};

/// The host names of one pool.
#[derive(Debug, Default)]
pub(crate) struct Names {
    names: RwLock<Vec<Arc<Name>>>,
    kick: Notify,
}

impl Names {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Names::default())
    }

    /// Adds `name` to the names looked up again.
    pub(crate) fn add(&self, name: &Arc<Name>) {
        write(&self.names).push(name.clone());
    }

    /// `true` when the pool has no host name to look up.
    pub(crate) fn is_empty(&self) -> bool {
        read(&self.names).is_empty()
    }

    /// Asks for a round now (a discovery run started); a round under way counts.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Looks every name up again, in parallel, each within `limit`: the names whose
    /// addresses changed. A failed lookup keeps the name's addresses and is logged.
    pub(crate) async fn refresh(&self, limit: Duration) -> Vec<Arc<Name>> {
        let names = read(&self.names).clone();
        let mut rounds = tokio::task::JoinSet::new();
        for (i, n) in names.iter().enumerate() {
            let n = n.clone();
            rounds.spawn(async move {
                match n.refresh(limit).await {
                    Ok(changed) => (i, changed),
                    Err(e) => {
                        tracing::warn!(target: "switchover::resolve", host = %n.host(), error = %e, "lookup failed: the last good addresses are kept");
                        (i, false)
                    }
                }
            });
        }
        let mut changed = vec![false; names.len()];
        while let Some(done) = rounds.join_next().await {
            if let Ok((i, c)) = done {
                changed[i] = c;
            }
        }
        names
            .into_iter()
            .zip(changed)
            .filter_map(|(n, c)| c.then_some(n))
            .collect()
    }
}

/// Looks `names` up every `interval` (the first round one interval after the start) and
/// whenever [`kicked`](Names::kick), each lookup within `limit`; after each round hands the
/// names that moved to `after` (often none), and stops when it returns `false`.
pub(crate) async fn refresh_loop<F, Fut>(
    names: Arc<Names>,
    interval: Duration,
    limit: Duration,
    mut after: F,
) where
    F: FnMut(Vec<Arc<Name>>) -> Fut,
    Fut: Future<Output = bool>,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = names.kick.notified() => {}
        }
        let moved = names.refresh(limit).await;
        if !after(moved).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{Resolve, ResolveFuture, Resolver};
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use tokio::time::Instant;

    /// Records when it was asked, and answers a port that grows on every call after `moves_at`
    /// calls, taking `takes` each time.
    struct Clocked {
        asked: Mutex<Vec<Duration>>,
        start: Instant,
        moves_at: usize,
        takes: Duration,
    }

    impl Resolve for Clocked {
        fn resolve<'a>(&'a self, _h: &'a str, _p: u16) -> ResolveFuture<'a> {
            let n = {
                let mut a = self.asked.lock().unwrap();
                a.push(self.start.elapsed());
                a.len()
            };
            let port = if n >= self.moves_at { n as u16 } else { 1 };
            let takes = self.takes;
            Box::pin(async move {
                tokio::time::sleep(takes).await;
                Ok(vec![SocketAddr::from(([10, 0, 0, 1], port))])
            })
        }
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Rounds every interval, a kick at once, the interval restarting after each round; a
    /// change reported after the round that saw it; the loop stops when told.
    #[tokio::test(start_paused = true)]
    async fn rounds_come_every_interval_and_at_once_when_kicked() {
        let r = Arc::new(Clocked {
            asked: Mutex::new(Vec::new()),
            start: Instant::now(),
            moves_at: 4,
            takes: ms(10),
        });
        let names = Names::new();
        names.add(&Name::new("db.test", 1, &Resolver(r.clone())).unwrap());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = reports.clone();
        let start = r.start;
        let task = tokio::spawn(refresh_loop(
            names.clone(),
            ms(5000),
            ms(2000),
            move |moved| {
                seen.lock().unwrap().push((start.elapsed(), moved.len()));
                let go_on = seen.lock().unwrap().len() < 5;
                async move { go_on }
            },
        ));
        tokio::time::sleep(ms(7000)).await;
        names.kick();
        task.await.unwrap();
        // 5000: first round; 7000: kicked; then every 5 s after the end of a round (10 ms).
        assert_eq!(
            *r.asked.lock().unwrap(),
            [ms(5000), ms(7000), ms(12010), ms(17020), ms(22030)]
        );
        // The first answer is a change (from nothing), then calls 4 and 5 move the port.
        assert_eq!(
            *reports.lock().unwrap(),
            [
                (ms(5010), 1),
                (ms(7010), 0),
                (ms(12020), 0),
                (ms(17030), 1),
                (ms(22040), 1)
            ]
        );
    }

    /// A lookup that never answers costs a round its limit, and keeps the addresses.
    #[tokio::test(start_paused = true)]
    async fn a_silent_lookup_costs_one_limit() {
        let r = Arc::new(Clocked {
            asked: Mutex::new(Vec::new()),
            start: Instant::now(),
            moves_at: usize::MAX,
            takes: Duration::from_secs(3600),
        });
        let names = Names::new();
        let n = Name::new("db.test", 1, &Resolver(r.clone())).unwrap();
        names.add(&n);
        let started = Instant::now();
        assert!(names.refresh(ms(300)).await.is_empty());
        assert_eq!(started.elapsed(), ms(300));
        assert_eq!(n.epoch(), 0);
    }
}

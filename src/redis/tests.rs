//! The pool's failover logic against a scripted deployment ([`Fake`], a [`Backend`]) under
//! Tokio's paused clock: exact attempt counts, exact virtual times, no server.
//!
//! Every node of the fake answers after its latency (1 ms unless a test changes it), connects
//! take that latency too, replication to followers is instant, and a node that is down refuses
//! connections and resets the ones it had. The pool runs with discovery only on demand (the
//! backstop is an hour) and a rediscovery interval of 50 ms.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Arg, Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::time::{Instant, sleep};

use super::backend::{Backend, Cut};
use super::command::{Route, route_cmd, route_pipeline};
use super::config::{NodeAddr, Settings};
use super::error::Error;
use super::node::NodeId;
use super::pool::{Inner, Parts, Pool};
use crate::health::{Endpoint, HealthTracker};
use crate::retry::{ExponentialBackoff, Jitter, RetryPolicy};
use crate::route::{PreferReplica, ReadCandidates, ReadPolicy, ReplicaOnly};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FakeRole {
    Master,
    ReplicaOf(usize),
}

struct FakeNode {
    addr: NodeAddr,
    role: FakeRole,
    down: bool,
    latency: Duration,
    /// Bumped when the node dies: the connections it had are broken.
    incarnation: u64,
    data: HashMap<Vec<u8>, Value>,
    /// Every command but `ROLE`, with the virtual time it ran at (since the fake was made).
    log: Vec<(Duration, String)>,
    resets: u32,
}

struct State {
    start: Instant,
    nodes: Vec<FakeNode>,
}

/// A scripted Redis deployment.
#[derive(Clone)]
struct Fake(Arc<Mutex<State>>);

struct FakeConn {
    fake: Fake,
    node: usize,
    incarnation: u64,
    /// Set when the pool's cut of this connection came: every request pending on it fails.
    ended: Arc<Ended>,
}

#[derive(Default)]
struct Ended {
    yes: std::sync::atomic::AtomicBool,
    now: tokio::sync::Notify,
}

impl Clone for FakeConn {
    fn clone(&self) -> Self {
        FakeConn {
            fake: self.fake.clone(),
            node: self.node,
            incarnation: self.incarnation,
            ended: Arc::clone(&self.ended),
        }
    }
}

impl FakeConn {
    /// Waits `latency` unless the connection ends first (a broken pipe, as redis-rs reports a
    /// request whose connection task stopped).
    async fn wait(&self, latency: Duration) -> RedisResult<()> {
        let ended = self.ended.now.notified();
        if self.ended.yes.load(Relaxed) {
            return Err(io_error(io::ErrorKind::BrokenPipe));
        }
        tokio::select! {
            () = sleep(latency) => Ok(()),
            () = ended => Err(io_error(io::ErrorKind::BrokenPipe)),
        }
    }
}

fn name(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(Arg::Simple(n)) => String::from_utf8_lossy(n).to_ascii_uppercase(),
        _ => String::new(),
    }
}

fn arg(cmd: &Cmd, i: usize) -> Vec<u8> {
    match cmd.args_iter().nth(i) {
        Some(Arg::Simple(a)) => a.to_vec(),
        _ => Vec::new(),
    }
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn readonly_reply() -> Value {
    redis::parse_redis_value(b"-READONLY You can't write against a read only replica.\r\n")
        .expect("a RESP error")
}

fn io_error(kind: io::ErrorKind) -> RedisError {
    RedisError::from(io::Error::from(kind))
}

impl Fake {
    /// Node 0 is the master, the others its replicas.
    fn new(n: usize) -> Self {
        let nodes = (0..n)
            .map(|i| FakeNode {
                addr: NodeAddr::new(format!("n{i}"), 6379).unwrap(),
                role: if i == 0 {
                    FakeRole::Master
                } else {
                    FakeRole::ReplicaOf(0)
                },
                down: false,
                latency: ms(1),
                incarnation: 0,
                data: HashMap::new(),
                log: Vec::new(),
                resets: 0,
            })
            .collect();
        Fake(Arc::new(Mutex::new(State {
            start: Instant::now(),
            nodes,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    fn addrs(&self) -> Vec<NodeAddr> {
        self.with(|s| s.nodes.iter().map(|n| n.addr.clone()).collect())
    }

    /// Makes node `i` the master and every other node its replica (a failover or switchover
    /// the pool is not told about).
    fn promote(&self, i: usize) {
        self.with(|s| {
            for (j, n) in s.nodes.iter_mut().enumerate() {
                n.role = if j == i {
                    FakeRole::Master
                } else {
                    FakeRole::ReplicaOf(i)
                };
            }
        });
    }

    /// Kills node `i`: it refuses connections and resets the ones it had.
    fn kill(&self, i: usize) {
        self.with(|s| {
            s.nodes[i].down = true;
            s.nodes[i].incarnation += 1;
        });
    }

    fn set_latency(&self, i: usize, latency: Duration) {
        self.with(|s| s.nodes[i].latency = latency);
    }

    /// The commands node `i` ran, without their times.
    fn log(&self, i: usize) -> Vec<String> {
        self.with(|s| s.nodes[i].log.iter().map(|(_, c)| c.clone()).collect())
    }

    fn resets(&self, i: usize) -> u32 {
        self.with(|s| s.nodes[i].resets)
    }

    fn get(&self, i: usize, key: &str) -> Option<Value> {
        self.with(|s| s.nodes[i].data.get(key.as_bytes()).cloned())
    }

    /// The state of `node` as a request to it sees it: `Err` for a dead node or a broken
    /// connection, else its latency.
    fn reach(&self, node: usize, incarnation: Option<u64>) -> RedisResult<Duration> {
        self.with(|s| {
            let n = &s.nodes[node];
            match incarnation {
                _ if n.down && incarnation.is_none() => {
                    Err(io_error(io::ErrorKind::ConnectionRefused))
                }
                Some(i) if n.down || i != n.incarnation => {
                    Err(io_error(io::ErrorKind::ConnectionReset))
                }
                _ => Ok(n.latency),
            }
        })
    }

    /// Runs `cmd` on node `i`.
    fn execute(&self, i: usize, cmd: &Cmd) -> Value {
        self.with(|s| {
            let name = name(cmd);
            if name == "ROLE" {
                return s.role_reply(i);
            }
            let at = s.start.elapsed();
            s.nodes[i].log.push((at, name.clone()));
            if route_cmd(cmd) == Route::Read {
                let key = arg(cmd, 1);
                return s.nodes[i].data.get(&key).cloned().unwrap_or(Value::Nil);
            }
            if name == "PUBLISH" {
                return Value::Int(0);
            }
            if s.nodes[i].role != FakeRole::Master {
                return readonly_reply();
            }
            let key = arg(cmd, 1);
            let value = match name.as_str() {
                "INCRBY" => {
                    let old = match s.nodes[i].data.get(&key) {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    let by: i64 = String::from_utf8_lossy(&arg(cmd, 2)).parse().unwrap_or(0);
                    Value::Int(old + by)
                }
                _ => Value::BulkString(arg(cmd, 2)),
            };
            // Replication is instant.
            for (j, n) in s.nodes.iter_mut().enumerate() {
                if j == i || n.role == FakeRole::ReplicaOf(i) {
                    n.data.insert(key.clone(), value.clone());
                }
            }
            match value {
                Value::Int(_) => value,
                _ => Value::Okay,
            }
        })
    }
}

impl State {
    fn role_reply(&self, i: usize) -> Value {
        match self.nodes[i].role {
            FakeRole::Master => {
                Value::Array(vec![bulk("master"), Value::Int(100), Value::Array(vec![])])
            }
            FakeRole::ReplicaOf(m) => {
                let master = &self.nodes[m];
                let link = if master.down { "connect" } else { "connected" };
                Value::Array(vec![
                    bulk("slave"),
                    bulk(master.addr.host()),
                    Value::Int(i64::from(master.addr.port())),
                    bulk(link),
                    Value::Int(100),
                ])
            }
        }
    }
}

impl Backend for Fake {
    type Client = usize;
    type Conn = FakeConn;

    fn client(
        &self,
        addr: &NodeAddr,
        _name: Option<Arc<crate::resolve::Name>>,
    ) -> Result<usize, Error> {
        self.with(|s| s.nodes.iter().position(|n| n.addr == *addr))
            .ok_or_else(|| Error::protocol(&addr.to_string(), "not a node of the fake"))
    }

    async fn connect(&self, node: &usize, cut: Cut) -> RedisResult<FakeConn> {
        let latency = self.reach(*node, None)?;
        sleep(latency).await;
        let incarnation = self.with(|s| s.nodes[*node].incarnation);
        let ended = Arc::new(Ended::default());
        tokio::spawn({
            let ended = Arc::clone(&ended);
            async move {
                cut.await;
                ended.yes.store(true, Relaxed);
                ended.now.notify_waiters();
            }
        });
        Ok(FakeConn {
            fake: self.clone(),
            node: *node,
            incarnation,
            ended,
        })
    }

    async fn send(conn: &mut FakeConn, cmd: &Cmd) -> RedisResult<Value> {
        let latency = conn.fake.reach(conn.node, Some(conn.incarnation))?;
        conn.wait(latency).await?;
        Ok(conn.fake.execute(conn.node, cmd))
    }

    async fn send_pipeline(
        conn: &mut FakeConn,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let latency = conn.fake.reach(conn.node, Some(conn.incarnation))?;
        conn.wait(latency).await?;
        Ok(pipeline
            .cmd_iter()
            .skip(offset)
            .take(count)
            .map(|c| conn.fake.execute(conn.node, c))
            .collect())
    }

    fn reset(&self, node: &usize) {
        self.with(|s| s.nodes[*node].resets += 1);
    }

    async fn ask_sentinel(&self, _: &NodeAddr, _: &str) -> RedisResult<(Value, Value, Value)> {
        Err(RedisError::from((
            redis::ErrorKind::Client,
            "the fake has no sentinels",
        )))
    }
}

/// `attempts` attempts, a constant `backoff_ms` between them, no deadline.
fn policy(attempts: u32, backoff_ms: u64) -> RetryPolicy {
    let backoff = ExponentialBackoff::builder()
        .base(ms(backoff_ms))
        .factor(1.0)
        .cap(ms(backoff_ms))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    RetryPolicy::builder()
        .max_attempts(attempts)
        .backoff(backoff)
        .build()
        .unwrap()
}

/// A pool over `fake`, after its first discovery and the 50 ms gap that follows it (so that a
/// doubt is served by a run at once).
async fn start(fake: &Fake, retry: RetryPolicy, read: Box<dyn ReadPolicy<NodeId>>) -> Pool<Fake> {
    let settings = Settings {
        discovery_interval: Duration::from_secs(3600),
        rediscovery_interval: ms(50),
        ..Settings::default()
    };
    let parts = Parts {
        backend: fake.clone(),
        settings,
        retry,
        budget: None,
        read_policy: read,
        tracker: HealthTracker::builder().build().unwrap(),
        initial: fake.addrs(),
        heartbeat: None,
    };
    let pool = Pool::new(Inner::start(parts).await.expect("a primary"));
    sleep(ms(100)).await;
    pool
}

fn endpoint(pool: &Pool<Fake>, i: usize) -> Endpoint<NodeId> {
    pool.inner.topology.nodes()[i].endpoint.clone()
}

async fn query(pool: &Pool<Fake>, cmd: &Cmd) -> RedisResult<Value> {
    pool.command(route_cmd(cmd), cmd).await
}

async fn query_pipeline(pool: &Pool<Fake>, p: &Pipeline) -> RedisResult<Vec<Value>> {
    pool.pipeline(route_pipeline(p), p, 0, p.cmd_iter().count())
        .await
}

/// Reads from the replica whose name starts with `.0`, while it is a candidate.
#[derive(Debug)]
struct Named(&'static str);

impl ReadPolicy<NodeId> for Named {
    fn choose<'r>(&self, c: &ReadCandidates<'r, NodeId>) -> Option<&'r Endpoint<NodeId>> {
        c.replicas().find(|e| e.id().name().starts_with(self.0))
    }
}

#[tokio::test(start_paused = true)]
async fn a_readonly_write_is_retried_once_on_the_new_primary_even_if_not_idempotent() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(5, 100), Box::new(PreferReplica::new())).await;
    let nodes = pool.inner.topology.nodes();
    let epochs = |i: usize| nodes[i].role_epoch.load(Relaxed);
    let (epoch_a, epoch_b) = (epochs(0), epochs(1));
    let (resets_a, resets_b) = (fake.resets(0), fake.resets(1));
    let runs = pool.inner.rediscovery.runs();
    fake.promote(1);

    let started = Instant::now();
    let n = query(&pool, redis::cmd("INCRBY").arg("k").arg(1))
        .await
        .unwrap();
    assert_eq!(n, Value::Int(1));
    // n0: connect 1 ms + INCRBY 1 ms (READONLY); one discovery run, 1 ms (`ROLE` on the
    // control connections, made by the first run); then at once on n1: connect 1 ms + INCRBY
    // 1 ms. No backoff.
    assert_eq!(started.elapsed(), ms(5));
    assert_eq!(
        fake.log(0),
        ["INCRBY"],
        "refused once by the demoted primary"
    );
    assert_eq!(fake.log(1), ["INCRBY"], "then run once on the new primary");
    assert_eq!(fake.get(1, "k"), Some(Value::Int(1)));
    assert_eq!(pool.inner.rediscovery.runs(), runs + 1, "one discovery run");
    assert_eq!(pool.inner.router.active().id().name(), "n1:6379");
    assert_eq!(pool.inner.router.generation(), 1);
    // Eviction: both nodes changed role, so their connections were dropped (the dedicated
    // ones through the backend) and those handed out went stale.
    assert_eq!((epochs(0), epochs(1)), (epoch_a + 1, epoch_b + 1));
    assert_eq!(
        (fake.resets(0), fake.resets(1)),
        (resets_a + 1, resets_b + 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_that_partly_ran_is_repeated_only_through_an_idempotent_handle() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(5, 100), Box::new(PreferReplica::new())).await;
    fake.promote(1);
    let mut p = redis::pipe();
    p.cmd("PUBLISH").arg("news").arg("once").set("k", 1);

    let started = Instant::now();
    let r = query_pipeline(&pool, &p).await;
    let err = r.expect_err("a partly run pipeline is not retried");
    assert!(super::classify::is_readonly(&err), "{err}");
    assert_eq!(started.elapsed(), ms(2), "one attempt, no wait");
    assert_eq!(fake.log(0), ["PUBLISH", "SET"]);

    // Meanwhile discovery (asked by the READONLY) is running; the idempotent handle's attempt
    // on n0 waits for it, learns the primary moved, and goes to n1 at once.
    let mut idem = pool.clone();
    idem.idempotent = true;
    let started = Instant::now();
    let values = query_pipeline(&idem, &p).await.expect("retried on n1");
    assert_eq!(values, [Value::Int(0), Value::Okay]);
    assert_eq!(
        started.elapsed(),
        ms(3),
        "1 ms of discovery, then n1: connect + pipeline"
    );
    assert_eq!(
        fake.log(0),
        ["PUBLISH", "SET"],
        "nothing more was sent to n0"
    );
    assert_eq!(fake.log(1), ["PUBLISH", "SET"]);
}

#[tokio::test(start_paused = true)]
async fn a_read_moves_off_a_failed_replica_and_its_latency_is_recorded() {
    let fake = Fake::new(3);
    let pool = start(&fake, policy(5, 10), Box::new(Named("n1"))).await;
    query(&pool, redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap();
    let runs = pool.inner.rediscovery.runs();
    let c = endpoint(&pool, 2);
    assert_eq!(c.latency(), Some(ms(2)), "the first ROLE: connect + reply");
    fake.kill(1);
    fake.set_latency(2, ms(3));

    let started = Instant::now();
    let v = query(&pool, redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(v, bulk("v"));
    // n1 refuses at once; 10 ms of backoff; n2: connect 3 ms + GET 3 ms.
    assert_eq!(started.elapsed(), ms(16));
    assert_eq!(
        fake.log(2),
        ["GET"],
        "the policy's choice failed: another replica"
    );
    assert_eq!(
        fake.log(0),
        ["SET"],
        "not the primary, while a replica is left"
    );
    assert_eq!(endpoint(&pool, 1).stats().failures_total, 1);
    // The runner recorded the 6 ms read: moving average 2 ms - 2/5 + 6/5.
    assert_eq!(c.latency(), Some(Duration::from_micros(2800)));
    assert_eq!(
        pool.inner.rediscovery.runs(),
        runs,
        "a replica's failure is no doubt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_with_no_primary_fails_with_the_cause_and_the_time_waited() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(2, 100), Box::new(PreferReplica::new())).await;
    fake.kill(0);

    let started = Instant::now();
    let err = query(&pool, redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap_err();
    // n0 refuses at once; 100 ms of backoff; then the second attempt waits for a primary up to
    // the wait limit: one discovery run (connect 250 ms + the heartbeat timeout, 300 ms, for
    // a `ROLE` reply) + 50 ms.
    assert_eq!(started.elapsed(), ms(100 + 600));
    assert!(err.is_connection_refusal(), "surely not executed: {err}");
    let shown = err.to_string();
    assert!(shown.contains("no primary confirmed"), "{shown}");
    assert!(
        shown.contains("n1:6379: replica of n0:6379, link down"),
        "says what the nodes answered: {shown}"
    );
    assert!(
        shown.contains("(waited 600ms in all, over 2 attempts)"),
        "{shown}"
    );
    assert!(fake.log(1).is_empty(), "nothing was written to the replica");
}

/// A write that waited through several attempts says the whole time it waited, not the last
/// attempt's wait (it said "waited 1.3s" after 4 s of waiting).
#[tokio::test(start_paused = true)]
async fn a_write_that_waited_over_several_attempts_says_the_whole_wait() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(4, 100), Box::new(PreferReplica::new())).await;
    fake.kill(0);

    let started = Instant::now();
    let err = query(&pool, redis::cmd("SET").arg("k").arg("v"))
        .await
        .unwrap_err();
    // n0 refuses at once; then 3 attempts that each wait 600 ms for a primary, 100 ms apart.
    assert_eq!(started.elapsed(), ms(100 + 3 * 600 + 2 * 100));
    let shown = err.to_string();
    assert!(
        shown.contains("(waited 2s in all, over 4 attempts)"),
        "{shown}"
    );
    assert!(!shown.contains("waited 600ms"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn writes_resume_on_a_promoted_replica_without_waiting_for_the_next_backoff() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(40, 100), Box::new(PreferReplica::new())).await;
    fake.kill(0);
    let promoter = tokio::spawn({
        let fake = fake.clone();
        async move {
            sleep(ms(400)).await;
            fake.promote(1);
        }
    });

    let started = Instant::now();
    // Not idempotent: every failed attempt surely did not run (refused, or never sent).
    let r = query(&pool, redis::cmd("SET").arg("k").arg("v")).await;
    assert_eq!(r.unwrap(), Value::Okay);
    // Attempt 1 at 0 ms: refused. Discovery runs at 0 (1 ms of ROLE), then every 51 ms (a
    // 50 ms gap + 1 ms of ROLE): 51, 102, ..., 408, which sees the promotion and ends at 409.
    // Attempt 2 (from 100 ms) waits for it and fails as "moved"; attempt 3 at once on n1:
    // connect 1 ms + SET 1 ms.
    assert_eq!(started.elapsed(), ms(411));
    assert_eq!(fake.log(1), ["SET"]);
    assert_eq!(pool.inner.router.active().id().name(), "n1:6379");
    promoter.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_no_replica_a_replica_only_read_fails_at_once_and_blames_no_node() {
    let fake = Fake::new(2);
    let pool = start(&fake, policy(5, 100), Box::new(ReplicaOnly::new())).await;
    endpoint(&pool, 1).drain();

    let started = Instant::now();
    let err = query(&pool, redis::cmd("GET").arg("k")).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(err.to_string().contains("no replica available"), "{err}");
    assert!(err.is_connection_refusal(), "surely not executed: {err}");
    assert!(fake.log(0).is_empty(), "the read did not go to the primary");
    assert_eq!(endpoint(&pool, 0).stats().failures_total, 0);
}

mod silent;

//! A port of redis-rs 1.8.1's `tests/test_async.rs` with a `switchover::redis::SplitPool` handed
//! out instead of redis-rs's connection, run on a single node (`single_node`) and on a primary
//! with one replica (`one_replica`).
//!
//! The tests' bodies and assertions are redis-rs's; only the set-up is adapted (`TestContext`
//! builds a pool over servers of `switchover::testing`, and the helpers of redis-rs's
//! `tests/support` that the bodies use are rewritten here). Tests that cannot apply to a pool
//! are left out, each with a one-line comment saying why. Two tests expect raw redis-rs
//! behaviour the pool replaces on purpose; they are kept and assert the pool's behaviour (see
//! their comments): `test_pipeline_transaction_with_errors` (`READONLY` inside `EXEC` is waited
//! out as a failover) and `test_io_error_on_kill_issue_320` (a killed client connection is
//! reconnected).
//!
//! Ported from redis-rs (<https://github.com/redis-rs/redis-rs>), under its licence:
//!
//! Copyright (c) 2022 by redis-rs contributors
//!
//! Redis cluster code in parts copyright (c) 2018 by Atsushi Koge.
//!
//! Some rights reserved.
//!
//! Redistribution and use in source and binary forms, with or without
//! modification, are permitted provided that the following conditions are
//! met:
//!
//!     * Redistributions of source code must retain the above copyright
//!       notice, this list of conditions and the following disclaimer.
//!
//!     * Redistributions in binary form must reproduce the above
//!       copyright notice, this list of conditions and the following
//!       disclaimer in the documentation and/or other materials provided
//!       with the distribution.
//!
//!     * The names of the contributors may not be used to endorse or
//!       promote products derived from this software without specific
//!       prior written permission.
//!
//! THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
//! "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
//! LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR
//! A PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT
//! OWNER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
//! SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
//! LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
//! DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
//! THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
//! (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
//! OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt, TryFutureExt, future};
use redis::aio::ConnectionLike;
use redis::{
    AsyncCommands, Cmd, ErrorKind, ParsingError, Pipeline, RedisError, RedisFuture, RedisResult,
    ScanOptions, ServerErrorKind, Value, cmd, pipe,
};
use switchover::redis::{DedicatedConnection, SplitPool, SplitPoolBuilder, Target, Timeouts};
use switchover::testing::RedisReplicaSet;
use tokio::time::sleep;

// ---------------------------------------------------------------------------------------------
// Set-up: redis-rs's `TestContext` and `tests/support` helpers, for a pool.
// ---------------------------------------------------------------------------------------------

/// The servers a test runs against.
#[derive(Clone, Copy, Debug)]
enum Topology {
    /// One `redis-server`, the primary.
    Single,
    /// A primary and one replica. redis-rs's tests read their own writes at once; the pool
    /// reads from replicas by default and replication is asynchronous, so this topology hands
    /// out the pool's read-your-writes handle (`SplitPool::read_your_writes`, 1 s window):
    /// with the plain pool, reads right after writes (`test_no_response_skips_response_even_on_error`,
    /// `test_async_scanning_stream`) saw the replica before it caught up in a loaded run.
    OneReplica,
}

/// redis-rs's `TestContext`, holding the servers instead of a `redis::Client`.
struct TestContext {
    set: RedisReplicaSet,
    topology: Topology,
}

impl TestContext {
    async fn new(topology: Topology) -> Self {
        let replicas = match topology {
            Topology::Single => 0,
            Topology::OneReplica => 1,
        };
        let set = RedisReplicaSet::start(replicas)
            .await
            .expect("redis-server");
        TestContext { set, topology }
    }

    /// A pool builder over every node of the topology.
    fn builder(&self) -> SplitPoolBuilder {
        SplitPool::builder().nodes(self.set.nodes().iter().map(|n| n.addr().to_string()))
    }

    /// redis-rs's `ctx.async_connection()`: the pool.
    async fn async_connection(&self) -> RedisResult<SplitPool> {
        let pool = self.builder().build().await.map_err(RedisError::from)?;
        Ok(match self.topology {
            Topology::Single => pool,
            Topology::OneReplica => pool.read_your_writes(Duration::from_secs(1)),
        })
    }

    /// A connection of redis-rs's `transaction_async` (`WATCH` needs a connection of its own:
    /// the shared pool refuses it and points at `SplitPool::dedicated`).
    async fn watch_connection(&self) -> SharedDedicated {
        let pool = self.async_connection().await.unwrap();
        let dedicated = pool.dedicated(Target::Primary).await.unwrap();
        SharedDedicated(Arc::new(tokio::sync::Mutex::new(dedicated)))
    }
}

/// `redis::aio::transaction_async` clones its connection; a dedicated connection is not `Clone`,
/// so the clones share it.
#[derive(Clone)]
struct SharedDedicated(Arc<tokio::sync::Mutex<DedicatedConnection>>);

impl ConnectionLike for SharedDedicated {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move { self.0.lock().await.req_packed_command(cmd).await })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.0
                .lock()
                .await
                .req_packed_commands(cmd, offset, count)
                .await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// redis-rs's `kill_client_async`: `CLIENT INFO` through the connection, `CLIENT KILL ID` from
/// another client (here the kit's own client of each node: the id is one node's).
async fn kill_client_async(
    conn_to_kill: &mut impl ConnectionLike,
    ctx: &TestContext,
) -> RedisResult<()> {
    let info: String = cmd("CLIENT")
        .arg("INFO")
        .query_async(conn_to_kill)
        .await
        .unwrap();
    let id = info.split_once(' ').unwrap().0;
    assert!(id.contains("id="));
    let client_to_kill_id = id.split_once("id=").unwrap().1;

    // Client ids are per server: the node is the one whose address the connection's `laddr` names.
    let laddr = info
        .split(' ')
        .find_map(|f| f.strip_prefix("laddr="))
        .unwrap();
    let node = ctx
        .set
        .nodes()
        .iter()
        .find(|n| n.addr().to_string() == laddr)
        .unwrap();
    let killed = node
        .cmd(&["CLIENT", "KILL", "ID", client_to_kill_id])
        .await
        .unwrap();
    assert_eq!(
        killed.as_int(),
        Some(1),
        "client id={client_to_kill_id} killed"
    );
    Ok(())
}

/// redis-rs's `redis_value!` for the three shapes the ported tests use.
fn simple(s: &str) -> Value {
    Value::SimpleString(s.to_owned())
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// Runs every ported test once per topology. `con` tests take the pool (redis-rs's
/// `#[async_test]` hands its connection in); `ctx` tests build their own context.
macro_rules! ported {
    (con: [$($con:ident),* $(,)?], ctx: [$($ctx:ident),* $(,)?] $(,)?) => {
        mod single_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $con() {
                    let ctx = super::TestContext::new(super::Topology::Single).await;
                    super::$con(ctx.async_connection().await.unwrap()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ctx() {
                    super::$ctx(super::Topology::Single).await;
                }
            )*
        }
        mod one_replica {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $con() {
                    let ctx = super::TestContext::new(super::Topology::OneReplica).await;
                    super::$con(ctx.async_connection().await.unwrap()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $ctx() {
                    super::$ctx(super::Topology::OneReplica).await;
                }
            )*
        }
    };
}

ported! {
    con: [
        test_args,
        test_no_response_skips_response_even_on_error,
        test_nice_hash_api,
        test_nice_hash_api_in_pipe,
        test_pipeline_transaction,
        test_client_tracking_doesnt_block_execution,
        test_pipeline_with_ignore_errors,
        test_pipeline_returns_server_errors,
        test_pipe_over_multiplexed_connection,
        test_running_multiple_commands,
        test_async_transaction,
        test_async_scanning,
        test_async_scanning_iterative,
        test_async_scanning_stream,
        test_script,
        test_script_load,
        test_script_returning_complex_type,
        test_scan_with_options_works,
        test_issue_stream_blocks,
        test_issue_async_commands_scan_broken,
        test_issue_async_commands_scan_finishing_prematurely,
        test_pipe_errors_do_not_affect_subsequent_commands,
        test_non_transaction_errors_do_not_affect_other_results_in_pipeline,
        test_async_basic_pipe_with_parsing_error,
    ],
    ctx: [
        test_can_authenticate_with_username_and_password,
        test_dont_panic_on_closed_multiplexed_connection,
        test_pipeline_transaction_with_errors,
        test_io_error_on_kill_issue_320,
        test_invalid_password_issue_343,
        test_select_db,
        test_fail_on_empty_command,
        test_simple_case_success,
        test_transaction_should_retry_on_watch,
        test_transaction_should_retry_on_none_from_closure,
        test_transaction_abort_if_internal_function_returns_error,
    ],
}

// ---------------------------------------------------------------------------------------------
// The ported tests, in redis-rs's order.
// ---------------------------------------------------------------------------------------------

// Left out: test_block_on_all_panics_from_spawns tests redis-rs's own test harness, not a connection.

async fn test_args(mut con: impl ConnectionLike) {
    redis::cmd("SET")
        .arg("key1")
        .arg(b"foo")
        .exec_async(&mut con)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(&["key2", "bar"])
        .exec_async(&mut con)
        .await
        .unwrap();
    let result = redis::cmd("MGET")
        .arg(&["key1", "key2"])
        .query_async(&mut con)
        .await;
    assert_eq!(result, Ok(("foo".to_string(), b"bar".to_vec())));
}

async fn test_no_response_skips_response_even_on_error(mut con: impl ConnectionLike) {
    redis::cmd("SET")
        .arg("key")
        .arg(b"foo")
        .set_no_response(true)
        .exec_async(&mut con)
        .await
        .unwrap();

    // this should error, since we hset a string value, but we shouldn't receive the error, because we ignore the response
    redis::cmd("HSET")
        .arg("key")
        .arg(b"foo")
        .arg("bar")
        .set_no_response(true)
        .exec_async(&mut con)
        .await
        .unwrap();

    let result = redis::cmd("GET").arg("key").query_async(&mut con).await;
    assert_eq!(result, Ok("foo".to_string()));
}

// Left out: works_with_paused_time_when_no_timeouts_are_set configures a redis-rs connection without timeouts; the pool always has deadlines.
// Left out: test_set_write_backpressure_boundary_does_not_break_connection tests a redis-rs connection option the pool does not expose.

async fn test_can_authenticate_with_username_and_password(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let mut con = ctx.async_connection().await.unwrap();

    let username = "foo";
    let password = "bar";

    // adds a "foo" user with "GET permissions"
    let mut set_user_cmd = redis::Cmd::new();
    set_user_cmd
        .arg("ACL")
        .arg("SETUSER")
        .arg(username)
        .arg("on")
        .arg("+acl")
        // The pool's own discovery and heartbeat send ROLE and PING on its connections.
        .arg("+role")
        .arg("+ping")
        .arg(format!(">{password}"));
    assert_eq!(con.req_packed_command(&set_user_cmd).await, Ok(Value::Okay));

    let mut conn = ctx
        .builder()
        .username(username)
        .password(password)
        .build()
        .await
        .unwrap();

    let result: String = cmd("ACL")
        .arg("whoami")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(result, username);
}

async fn test_nice_hash_api(mut connection: impl AsyncCommands) {
    assert_eq!(
        connection
            .hset_multiple("my_hash", &[("f1", 1), ("f2", 2), ("f3", 4), ("f4", 8)])
            .await,
        Ok(())
    );

    let hm: HashMap<String, isize> = connection.hgetall("my_hash").await.unwrap();
    assert_eq!(hm.len(), 4);
    assert_eq!(hm.get("f1"), Some(&1));
    assert_eq!(hm.get("f2"), Some(&2));
    assert_eq!(hm.get("f3"), Some(&4));
    assert_eq!(hm.get("f4"), Some(&8));
}

async fn test_nice_hash_api_in_pipe(mut connection: impl AsyncCommands) {
    assert_eq!(
        connection
            .hset_multiple("my_hash", &[("f1", 1), ("f2", 2), ("f3", 4), ("f4", 8)])
            .await,
        Ok(())
    );

    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg("my_hash");
    let mut vec: Vec<HashMap<String, isize>> = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(vec.len(), 1);
    let hash = vec.pop().unwrap();
    assert_eq!(hash.len(), 4);
    assert_eq!(hash.get("f1"), Some(&1));
    assert_eq!(hash.get("f2"), Some(&2));
    assert_eq!(hash.get("f3"), Some(&4));
    assert_eq!(hash.get("f4"), Some(&8));
}

async fn test_dont_panic_on_closed_multiplexed_connection(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let connect = ctx.builder().build();
    drop(ctx);

    connect
        .map_err(RedisError::from)
        .and_then(|con| async move {
            let cmd = move || {
                let mut con = con.clone();
                async move {
                    redis::cmd("SET")
                        .arg("key1")
                        .arg(b"foo")
                        .query_async(&mut con)
                        .await
                }
            };
            let result: RedisResult<()> = cmd().await;
            assert_eq!(result.as_ref().unwrap_err().kind(), redis::ErrorKind::Io);
            cmd().await
        })
        .map(|result| {
            assert_eq!(result.as_ref().unwrap_err().kind(), redis::ErrorKind::Io);
        })
        .await;
}

async fn test_pipeline_transaction(mut con: impl ConnectionLike) {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("SET")
        .arg("key_1")
        .arg(42)
        .ignore()
        .cmd("SET")
        .arg("key_2")
        .arg(43)
        .ignore()
        .cmd("MGET")
        .arg(&["key_1", "key_2"]);
    pipe.query_async(&mut con)
        .map_ok(|((k1, k2),): ((i32, i32),)| {
            assert_eq!(k1, 42);
            assert_eq!(k2, 43);
        })
        .await
        .unwrap();
}

async fn test_client_tracking_doesnt_block_execution(mut con: impl AsyncCommands) {
    //It checks if the library distinguish a push-type message from the others and continues its normal operation.

    let mut pipe = redis::pipe();
    pipe.cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .ignore()
        .cmd("GET")
        .arg("key_1")
        .ignore()
        .cmd("SET")
        .arg("key_1")
        .arg(42)
        .ignore();
    let _: RedisResult<()> = pipe.query_async(&mut con).await;
    let num: i32 = con.get("key_1").await.unwrap();
    assert_eq!(num, 42);
}

// The pool changes this test's expectation on purpose. redis-rs hands back the `EXECABORT` with
// both `READONLY` errors; the pool takes `READONLY` (here inside `EXEC`) as the sign of a
// failover: the node it knew as primary is no longer writable, so it waits for a primary within
// the write deadline and then fails with an I/O-kind error (no primary), never applying the
// transaction. The set-up is the test's; the assertions are the pool's behaviour.
async fn test_pipeline_transaction_with_errors(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let mut con = ctx.async_connection().await.unwrap();
    con.set::<_, _, ()>("x", 42).await.unwrap();

    // Make Redis a replica of a nonexistent master, thereby making it read-only.
    redis::cmd("slaveof")
        .arg("1.1.1.1")
        .arg("1")
        .exec_async(&mut con)
        .await
        .unwrap();

    // redis-rs: a write command fails with a READONLY error. The pool: waited out as a failover.
    let started = tokio::time::Instant::now();
    let err = redis::pipe()
        .atomic()
        .ping()
        .set("x", 142)
        .ignore()
        .get("x")
        .set("x", 142)
        .query_async::<()>(&mut con)
        .await
        .unwrap_err();
    let waited = started.elapsed();
    eprintln!("pool's error after {waited:?}: {err}");

    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        err.into_server_errors().is_none(),
        "no server error handed back"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "the pool waited for a primary before failing: {waited:?}"
    );

    // Nothing of the transaction ran: x is still 42 on the node.
    let x = ctx.set.primary().cmd(&["GET", "x"]).await.unwrap();
    assert_eq!(x.as_str(), Some("42"));
}

// Left out: test_module_json_and_pipeline_transaction_with_ignore_errors needs redis-rs's `json` feature and the RedisJSON module.

async fn test_pipeline_with_ignore_errors(mut con: impl AsyncCommands) {
    con.set::<_, _, ()>("x", 42).await.unwrap();

    let mut pipeline = redis::pipe();
    pipeline
        .ping()
        .set("x", 142)
        .ignore()
        .cmd("JSON.GET")
        .arg("x")
        .arg(".path")
        .get("x");

    let result: Vec<RedisResult<Value>> = pipeline
        .ignore_errors()
        .query_async(&mut con)
        .await
        .unwrap();

    assert_eq!(result[0].clone().unwrap(), simple("PONG"));
    assert_eq!(result[2].clone().unwrap(), bulk("142"));

    assert_eq!(
        result[1].clone().unwrap_err().kind(),
        ServerErrorKind::ResponseError.into()
    );
}

async fn test_pipeline_returns_server_errors(mut con: impl AsyncCommands) {
    let mut pipe = redis::pipe();
    pipe.set("x", "x-value")
        .ignore()
        .hset("x", "field", "field_value")
        .ignore()
        .get("x");

    let res = pipe.exec_async(&mut con).await;
    let error_message = res.unwrap_err().to_string();
    assert_eq!(
        &error_message,
        "Pipeline failure: [(Index 1, error: \"WRONGTYPE\": Operation against a key holding the wrong kind of value)]"
    );
}

async fn test_cmd(mut con: impl AsyncCommands + Clone, i: i32) {
    let key = format!("key{i}");
    let key_2 = key.clone();
    let key2 = format!("key{i}_2");
    let key2_2 = key2.clone();

    let foo_val = format!("foo{i}");

    redis::cmd("SET")
        .arg(&key[..])
        .arg(foo_val.as_bytes())
        .exec_async(&mut con)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(&[&key2, "bar"])
        .exec_async(&mut con)
        .await
        .unwrap();
    redis::cmd("MGET")
        .arg(&[&key_2, &key2_2])
        .query_async(&mut con)
        .map(|result| {
            assert_eq!(Ok((foo_val, b"bar".to_vec())), result);
        })
        .await;
}

async fn test_pipe_over_multiplexed_connection(mut con: impl ConnectionLike) {
    let mut pipe = pipe();
    pipe.zrange("zset", 0, 0);
    pipe.zrange("zset", 0, 0);
    let frames = con.req_packed_commands(&pipe, 0, 2).await.unwrap();
    assert_eq!(frames.len(), 2);
    assert!(matches!(frames[0], redis::Value::Array(_)));
    assert!(matches!(frames[1], redis::Value::Array(_)));
}

async fn test_running_multiple_commands(con: impl AsyncCommands + Clone) {
    let cmds = (0..100).map(move |i| test_cmd(con.clone(), i));
    future::join_all(cmds).await;
}

async fn test_async_transaction(con: impl ConnectionLike + Clone) {
    let cmds = (0..100).map(move |i| {
        let mut con = con.clone();
        async move {
            let foo_val = i;
            let bar_val = format!("bar{i}");

            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SET")
                .arg("key")
                .arg(foo_val)
                .ignore()
                .cmd("SET")
                .arg(&["key2", &bar_val[..]])
                .ignore()
                .cmd("MGET")
                .arg(&["key", "key2"]);

            pipe.query_async(&mut con)
                .map(move |result| {
                    assert_eq!(Ok(((foo_val, bar_val.into_bytes()),)), result);
                    result
                })
                .await
        }
    });
    future::try_join_all(cmds)
        .map_ok(|results| {
            assert_eq!(results.len(), 100);
        })
        .map_err(|err| panic!("{err}"))
        .await
        .unwrap();
}

async fn test_async_scanning(mut con: impl ConnectionLike + Send) {
    let mut unseen = std::collections::HashSet::new();

    for x in 0..1000 {
        redis::cmd("SADD")
            .arg("foo")
            .arg(x)
            .exec_async(&mut con)
            .await
            .unwrap();
        unseen.insert(x);
    }

    let mut iter = redis::cmd("SSCAN")
        .arg("foo")
        .cursor_arg(0)
        .clone()
        .iter_async(&mut con)
        .await
        .unwrap();

    while let Some(x) = iter.next_item().await {
        let x = x.unwrap();

        // if this assertion fails, too many items were returned by the iterator.
        assert!(unseen.remove(&x));
    }

    assert!(unseen.is_empty());
}

async fn test_async_scanning_iterative(mut con: impl ConnectionLike + Send) {
    let mut unseen = std::collections::HashSet::new();

    for x in 0..1000 {
        let key_name = format!("key.{x}");
        redis::cmd("SET")
            .arg(key_name.clone())
            .arg("foo")
            .exec_async(&mut con)
            .await
            .unwrap();
        unseen.insert(key_name.clone());
    }

    let mut iter = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg("key*")
        .arg("COUNT")
        .arg(1)
        .clone()
        .iter_async::<String>(&mut con)
        .await
        .unwrap();

    while let Some(item) = iter.next_item().await {
        let item = item.unwrap();

        // if this assertion fails, too many items were returned by the iterator.
        assert!(unseen.remove(&item));
    }

    assert!(unseen.is_empty());
}

async fn test_async_scanning_stream(mut con: impl ConnectionLike + Sync + Send) {
    let mut unseen = std::collections::HashSet::new();

    for x in 0..1000 {
        let key_name = format!("key.{x}");
        redis::cmd("SET")
            .arg(key_name.clone())
            .arg("foo")
            .exec_async(&mut con)
            .await
            .unwrap();
        unseen.insert(key_name.clone());
    }

    let mut iter = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg("key*")
        .arg("COUNT")
        .arg(1)
        .clone()
        .iter_async::<String>(&mut con)
        .await
        .unwrap();

    while let Some(item) = iter.next_item().await {
        let item = item.unwrap();

        // if this assertion fails, too many items were returned by the iterator.
        assert!(unseen.remove(&item));
    }

    assert!(unseen.is_empty());
}

// Found by this port, not fixed here: `BLPOP foo 0` sent alone through a pool built with a 1 ms
// response timeout did not return within 60 s on a single node (every run) and with a replica
// (in a loaded run of the whole file; it passed when run alone). Ignored until fixed, bounded at
// 5 s so that `--ignored` fails instead of hanging.
mod response_timeout {
    async fn bounded(topology: super::Topology) {
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            super::test_response_timeout_multiplexed_connection(topology),
        )
        .await
        .expect("BLPOP bounded by the response timeout");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "fails: BLPOP 0 alone is not bounded by the 1 ms response timeout"]
    async fn single_node() {
        bounded(super::Topology::Single).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "flaky: BLPOP 0 alone was not bounded by the 1 ms response timeout in a loaded run"]
    async fn one_replica() {
        bounded(super::Topology::OneReplica).await;
    }
}

async fn test_response_timeout_multiplexed_connection(topology: Topology) {
    let ctx = TestContext::new(topology).await;

    // redis-rs sets the connection's response timeout to 1 ms after connecting; the pool's
    // response timeout is set on the builder (the connect timeout may not exceed it).
    let mut connection = ctx
        .builder()
        .timeouts(
            Timeouts::new()
                .connect(Duration::from_millis(1))
                .response(Duration::from_millis(1)),
        )
        .build()
        .await
        .unwrap();
    let mut cmd = redis::Cmd::new();
    cmd.arg("BLPOP").arg("foo").arg(0); // 0 timeout blocks indefinitely
    let result = connection.req_packed_command(&cmd).await;
    assert!(result.is_err()); // redis-rs: assert_matches!(result, Err(_))
    assert!(result.unwrap_err().is_timeout());
}

async fn test_script(mut con: impl ConnectionLike) {
    // Note this test runs both scripts twice to test when they have already been loaded
    // into Redis and when they need to be loaded in
    let script1 = redis::Script::new("return redis.call('SET', KEYS[1], ARGV[1])");
    let script2 = redis::Script::new("return redis.call('GET', KEYS[1])");
    let script3 = redis::Script::new("return redis.call('KEYS', '*')");
    script1
        .key("key1")
        .arg("foo")
        .invoke_async::<()>(&mut con)
        .await
        .unwrap();
    let val: String = script2.key("key1").invoke_async(&mut con).await.unwrap();
    assert_eq!(val, "foo");
    let keys: Vec<String> = script3.invoke_async(&mut con).await.unwrap();
    assert_eq!(keys, ["key1"]);
    script1
        .key("key1")
        .arg("bar")
        .invoke_async::<()>(&mut con)
        .await
        .unwrap();
    let val: String = script2.key("key1").invoke_async(&mut con).await.unwrap();
    assert_eq!(val, "bar");
    let keys: Vec<String> = script3.invoke_async(&mut con).await.unwrap();
    assert_eq!(keys, ["key1"]);
}

async fn test_script_load(mut con: impl ConnectionLike) {
    let script = redis::Script::new("return 'Hello World'");

    let hash = script.prepare_invoke().load_async(&mut con).await.unwrap();
    assert_eq!(hash, script.get_hash().to_string());
}

async fn test_script_returning_complex_type(mut con: impl ConnectionLike) {
    redis::Script::new("return {1, ARGV[1], true}")
        .arg("hello")
        .invoke_async(&mut con)
        .map_ok(|(i, s, b): (i32, String, bool)| {
            assert_eq!(i, 1);
            assert_eq!(s, "hello");
            assert!(b);
        })
        .await
        .unwrap();
}

// The pool changes this test's expectation on purpose. redis-rs's connection, once killed by
// `CLIENT KILL`, fails with an I/O error; the pool drops the dead connection and reconnects, so
// the same handle keeps answering. The set-up is the test's; the assertions are the pool's
// behaviour: after the kill every GET through the killed handle succeeds.
async fn test_io_error_on_kill_issue_320(topology: Topology) {
    let ctx = TestContext::new(topology).await;

    let mut conn_to_kill = ctx.async_connection().await.unwrap();
    kill_client_async(&mut conn_to_kill, &ctx).await.unwrap();
    let mut killed_client = conn_to_kill;

    // redis-rs: try until an io error (racing the kill). The pool: never an error.
    for attempt in 0..20 {
        let got = killed_client.get::<_, Option<String>>("a").await;
        assert_eq!(got, Ok(None), "GET {attempt} after the kill");
        sleep(Duration::from_millis(50)).await;
    }
}

async fn test_invalid_password_issue_343(topology: Topology) {
    let ctx = TestContext::new(topology).await;

    let err = ctx
        .builder()
        .password("asdcasc")
        .build()
        .await
        .map_err(RedisError::from)
        .err()
        .unwrap();
    assert_eq!(
        err.kind(),
        ErrorKind::AuthenticationFailed,
        "Unexpected error: {err}",
    );
}

async fn test_scan_with_options_works(mut con: impl AsyncCommands) {
    for i in 0..20usize {
        let _: () = con.append(format!("test/{i}"), i).await.unwrap();
        let _: () = con.append(format!("other/{i}"), i).await.unwrap();
    }
    // scan with pattern
    let opts = ScanOptions::default().with_count(20).with_pattern("test/*");
    let values = con.scan_options::<String>(opts).await.unwrap();
    let values: Vec<_> = tokio::time::timeout(Duration::from_millis(100), values.collect())
        .await
        .unwrap();
    assert_eq!(values.len(), 20);

    // scan without pattern
    let opts = ScanOptions::default();
    let values = con.scan_options::<String>(opts).await.unwrap();
    let values: Vec<_> = tokio::time::timeout(Duration::from_millis(100), values.collect())
        .await
        .unwrap();
    assert_eq!(values.len(), 40);
}

// Test issue of Stream trait blocking if we try to iterate more than 10 items
// https://github.com/mitsuhiko/redis-rs/issues/537 and https://github.com/mitsuhiko/redis-rs/issues/583
async fn test_issue_stream_blocks(mut con: impl AsyncCommands) {
    for i in 0..20usize {
        let _: () = con.append(format!("test/{i}"), i).await.unwrap();
    }
    let values = con.scan_match::<&str, String>("test/*").await.unwrap();
    tokio::time::timeout(Duration::from_millis(100), async move {
        let values: Vec<_> = values.collect().await;
        assert_eq!(values.len(), 20);
    })
    .await
    .unwrap();
}

// Test issue of AsyncCommands::scan returning the wrong number of keys
// https://github.com/redis-rs/redis-rs/issues/759
async fn test_issue_async_commands_scan_broken(mut con: impl AsyncCommands) {
    let mut keys: Vec<String> = (0..100).map(|k| format!("async-key{k}")).collect();
    keys.sort();
    for key in &keys {
        let _: () = con.set(key, b"foo").await.unwrap();
    }

    let iter: redis::AsyncIter<String> = con.scan().await.unwrap();
    let mut keys_from_redis: Vec<_> = iter.map(std::result::Result::unwrap).collect().await;
    keys_from_redis.sort();
    assert_eq!(keys, keys_from_redis);
    assert_eq!(keys.len(), 100);
}

// From redis-rs's `mod pub_sub`: only its three tests that take the connection apply; every
// other test there subscribes on a redis-rs connection (PubSub, a RESP3 push sender, or the
// connection manager), which the shared pool does not hand out (`SplitPool::pubsub` is a plain
// redis-rs `PubSub`):
// Left out: test_pub_sub_subscription subscribes on a redis-rs PubSub connection.
// Left out: test_pub_sub_subscription_to_multiple_channels subscribes on a redis-rs PubSub connection.
// Left out: test_pub_sub_unsubscription subscribes on a redis-rs PubSub connection.
// Left out: test_can_receive_messages_while_sending_requests_from_split_pub_sub tests redis-rs's split PubSub.
// Left out: test_can_send_ping_on_split_pubsub tests redis-rs's split PubSub.
// Left out: test_can_receive_messages_from_split_pub_sub_after_sink_was_dropped tests redis-rs's split PubSub.
// Left out: test_can_receive_messages_from_split_pub_sub_after_into_on_message tests redis-rs's split PubSub.
// Left out: test_cannot_subscribe_on_split_pub_sub_after_stream_was_dropped tests redis-rs's split PubSub.
// Left out: test_automatic_unsubscription tests redis-rs PubSub's unsubscribe on drop.
// Left out: test_automatic_unsubscription_on_split tests redis-rs's split PubSub.
// Left out: test_multiplexed_pub_sub_subscribe_on_multiple_channels needs RESP3 pushes on the connection.
// Left out: test_pub_sub_multiple subscribes on redis-rs PubSub connections.
// Left out: test_pub_sub_requires_resp3 tests subscribing on a RESP2 multiplexed connection.
// Left out: test_push_sender_send_on_disconnect needs a RESP3 push sender on the connection.
// Left out: test_manager_should_resubscribe_to_pubsub_channels_after_disconnect needs redis-rs's connection-manager feature.
// Left out: the 26 issue-2423 tests (pubsub_/multiplexed_/connection_manager_ (p)(un)subscribe) test subscription confirmations on redis-rs connections.

// Test issue of AsyncCommands::scan not returning keys because wrong assumptions about the key type were made
// https://github.com/redis-rs/redis-rs/issues/1309
async fn test_issue_async_commands_scan_finishing_prematurely(mut con: impl AsyncCommands) {
    const PREFIX: &str = "async-key";
    const NUM_KEYS: usize = 100;

    /// Container that is constructed from a string that has [`PREFIX`] as prefix
    struct Container(String);

    impl redis::FromRedisValue for Container {
        fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
            let text = String::from_redis_value(v.clone()).unwrap();

            // If container does not start with [`PREFIX`], return error
            if !text.starts_with(PREFIX) {
                // hack to create a parsing error
                return Err(u64::from_redis_value(v).unwrap_err());
            }

            Ok(Self(text))
        }
    }

    // Insert 100 keys but one with an incorrect prefix
    let keys: Vec<String> = (0..NUM_KEYS)
        .map(|i| format!("{}{i}", if i == 50 { "NOPE" } else { PREFIX }))
        .collect();

    for key in &keys {
        let _: () = con.set(key, "bar".as_bytes()).await.unwrap();
    }

    // Query all keys
    let mut iter: redis::AsyncIter<Container> = con.scan().await.unwrap();

    let mut error = None;
    let mut count = 0;

    while let Some(key) = iter.next_item().await {
        match key {
            Ok(key) => {
                assert!(key.0.starts_with(PREFIX));
                count += 1;
            }
            Err(_) if error.is_some() => {
                panic!("Encountered multiple errors");
            }
            Err(e) => error = Some(e.kind()),
        }
    }

    // Assert that the number of visited keys is all keys minus
    // the one invalid key
    assert_eq!(count, NUM_KEYS - 1);

    // Assert that the encountered error is a type error
    assert_eq!(error, Some(ErrorKind::Parse));
}

async fn test_pipe_errors_do_not_affect_subsequent_commands(mut conn: impl AsyncCommands) {
    conn.lpush::<&str, &str, ()>("key", "value").await.unwrap();

    let err = redis::pipe()
        .get("key") // WRONGTYPE
        .llen("key")
        .exec_async(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Extension);
    let server_errors = err.into_server_errors().unwrap();
    assert_eq!(server_errors.len(), 1);
    assert_eq!(server_errors[0].1.code(), "WRONGTYPE");

    let list: Vec<String> = conn.lrange("key", 0, -1).await.unwrap();

    assert_eq!(list, vec!["value".to_owned()]);
}

async fn test_non_transaction_errors_do_not_affect_other_results_in_pipeline(
    mut conn: impl AsyncCommands,
) {
    conn.lpush::<&str, &str, ()>("key", "value").await.unwrap();

    let mut results: Vec<Value> = conn
        .req_packed_commands(
            redis::pipe()
                .get("key") // WRONGTYPE
                .llen("key"),
            0,
            2,
        )
        .await
        .unwrap();

    assert_eq!(results.pop().unwrap(), Value::Int(1));
    assert!(results.pop().unwrap().extract_error().is_err()); // redis-rs: assert_matches!(.., Err(_))
}

async fn test_async_basic_pipe_with_parsing_error(mut conn: impl ConnectionLike) {
    // Tests a specific case involving repeated errors in transactions.

    // create a transaction where 2 errors are returned.
    // we call EVALSHA twice with no loaded script, thus triggering 2 errors.
    redis::pipe()
        .atomic()
        .cmd("EVALSHA")
        .arg("foobar")
        .arg(0)
        .cmd("EVALSHA")
        .arg("foobar")
        .arg(0)
        .query_async::<((), ())>(&mut conn)
        .await
        .expect_err("should return an error");

    assert!(
        // Arbitrary Redis command that should not return an error.
        redis::cmd("SMEMBERS")
            .arg("nonexistent_key")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .is_ok(),
        "Failed transaction should not interfere with future calls."
    );
}

// Left out: test_connection_manager_reconnect_after_delay needs redis-rs's connection-manager feature.
// Left out: test_manager_should_reconnect_without_actions_if_resp3_is_set needs redis-rs's connection-manager feature.
// Left out: test_manager_should_completely_disconnect_when_drop needs redis-rs's connection-manager feature.
// Left out: test_manager_should_reconnect_without_actions_if_push_sender_is_set_even_after_sender_returns_error needs redis-rs's connection-manager feature.
// Left out: test_multiplexed_connection_kills_connection_on_drop_even_when_blocking counts the server's clients, which the pool's own connections (heartbeat, dedicated, discovery) change.
// Left out: test_monitor needs redis-rs's MONITOR connection (`Client::get_async_monitor`), which the pool does not hand out.
// Left out: mtls_test (test_should_connect_mtls, test_should_not_connect_if_tls_active) needs redis-rs's tls-rustls/tls-native-tls test certificates (the pool's TLS is tested in tests/redis_tls.rs).
// Left out: test_resp3_pushes_connection_manager needs redis-rs's connection-manager feature.

async fn test_select_db(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let mut connection = ctx.builder().db(5).build().await.unwrap();

    let info: String = redis::cmd("CLIENT")
        .arg("info")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(info.contains("db=5"));
}

// Left out: test_multiplexed_connection_send_single_disconnect_on_connection_failure needs a RESP3 push sender on the connection.

async fn test_fail_on_empty_command(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let mut connection = ctx.async_connection().await.unwrap();

    let error: RedisError = redis::Pipeline::new()
        .query_async::<String>(&mut connection)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Client);
    assert_eq!(error.to_string(), "empty command - Client");

    let error: RedisError = redis::Cmd::new()
        .query_async::<String>(&mut connection)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Client);
    assert_eq!(error.to_string(), "empty command - Client");
}

// From redis-rs's `mod transaction`: `transaction_async` sends `WATCH`, which the shared pool
// refuses (it would outlive the call on a shared connection), so these tests get a dedicated
// connection of the primary, the pool's answer for `WATCH`.

async fn check_unwatched(con: &mut impl AsyncCommands) {
    let info: String = cmd("CLIENT").arg("INFO").query_async(con).await.unwrap();
    assert!(
        info.contains("watch=0") || !info.contains("watch"),
        "{info}"
    );
}

async fn test_simple_case_success(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let mut con = ctx.watch_connection().await;
    let res: Vec<usize> =
        redis::aio::transaction_async(con.clone(), &["x", "y"], |mut con, mut pipe| async move {
            pipe.set("x", 42)
                .ignore()
                .set("y", 21)
                .ignore()
                .get("x")
                .get("y")
                .query_async(&mut con)
                .await
        })
        .await
        .unwrap();

    assert_eq!(&res, &[42, 21]);
    check_unwatched(&mut con).await;
}

async fn test_transaction_should_retry_on_watch(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let con1 = ctx.watch_connection().await;
    let mut con2 = ctx.async_connection().await.unwrap();

    let attempts = Arc::new(AtomicUsize::new(0));
    let transaction_started = Arc::new(tokio::sync::Notify::new());
    let transaction_started_clone = transaction_started.clone();
    let interfering_value_sent = Arc::new(tokio::sync::Notify::new());
    let interfering_value_sent_clone = interfering_value_sent.clone();

    let res: Vec<usize> = future::join(
        redis::aio::transaction_async(con1.clone(), &["x", "y"], |mut con, mut pipe| {
            let attempts = attempts.clone();
            let transaction_started = transaction_started_clone.clone();
            let interfering_value_sent = interfering_value_sent_clone.clone();
            async move {
                transaction_started.notify_one();
                interfering_value_sent.notified().await;
                let res = attempts.fetch_add(1, Ordering::Relaxed);

                pipe.set("x", res)
                    .ignore()
                    .get("x")
                    .query_async(&mut con)
                    .await
            }
        }),
        async move {
            transaction_started.notified().await;
            () = con2.set("x", "interfering_value").await.unwrap();
            interfering_value_sent.notify_one();
            // we do this again, in order to let the next transaction pass
            transaction_started.notified().await;
            interfering_value_sent.notify_one();
        },
    )
    .await
    .0
    .unwrap();

    assert_eq!(&res, &[1]);
    check_unwatched(&mut con1.clone()).await;
}

async fn test_transaction_should_retry_on_none_from_closure(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let con = ctx.watch_connection().await;

    let attempts = Arc::new(AtomicUsize::new(0));

    let res: Vec<usize> = redis::aio::transaction_async(con.clone(), &["x", "y"], |_con, _pipe| {
        let attempts = attempts.clone();
        async move {
            let res = attempts.fetch_add(1, Ordering::Relaxed);

            if res > 1 {
                return Ok(Some(vec![res]));
            }

            Ok(None)
        }
    })
    .await
    .unwrap();

    assert_eq!(&res, &[2]);
    check_unwatched(&mut con.clone()).await;
}

async fn test_transaction_abort_if_internal_function_returns_error(topology: Topology) {
    let ctx = TestContext::new(topology).await;
    let con = ctx.watch_connection().await;
    let attempts = Arc::new(AtomicUsize::new(0));

    let res =
        redis::aio::transaction_async::<_, _, (), _, _>(con.clone(), &["z"], |_con, _pipe| {
            let attempts = attempts.clone();
            async move {
                let curr_attempts = attempts.fetch_add(1, Ordering::SeqCst);

                if curr_attempts > 1 {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "Internal error",
                    )));
                }

                // this triggers a retry of the transaction
                Ok(None)
            }
        })
        .await
        .unwrap_err();

    assert_eq!(
        res,
        redis::RedisError::from((redis::ErrorKind::Io, "Internal error",))
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    check_unwatched(&mut con.clone()).await;
}

// Left out: the 4 lazy_connection_manager tests need redis-rs's connection-manager feature.

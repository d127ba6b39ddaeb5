//! Fixture servers do not outlive an aborted test: each test here re-runs itself as a child
//! process that starts a fixture, prints the server's pid and aborts or is killed with
//! `SIGKILL` (no destructor runs), then checks that the server died with it.
//!
//! Needs redis-server, Postgres 15, Java 17 and DynamoDB Local (`scripts/install-deps.sh`); the namespace case needs root,
//! `ip` and `iptables`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchover::testing::{DynamoDbLocal, NetNs, PgCluster, RedisServer, sweep_stale};

/// Set in the child: which fixture to start before aborting.
const CHILD_ENV: &str = "SWITCHOVER_REAPING_CHILD";

/// How long a server may take to die after its test process did.
const REAPED: Duration = Duration::from_secs(10);

/// What a child printed before it aborted.
struct Aborted {
    pids: Vec<u32>,
    netns: Option<String>,
}

/// Runs test `name` of this binary again as a child with [`CHILD_ENV`] = `name`, and returns the
/// pids (and namespace) it printed; asserts that it aborted.
fn run_aborting_child(name: &str) -> Aborted {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, name)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut aborted = Aborted {
        pids: Vec::new(),
        netns: None,
    };
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        // libtest's `test <name> ... ` may precede the first line on the same line.
        let line = line.unwrap();
        if let Some((_, pid)) = line.split_once("server-pid ") {
            aborted.pids.push(pid.trim().parse().unwrap());
        } else if let Some((_, ns)) = line.split_once("netns ") {
            aborted.netns = Some(ns.trim().to_owned());
        }
    }
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child was meant to abort, it exited with {status}"
    );
    assert!(!aborted.pids.is_empty(), "the child printed no server pid");
    aborted
}

/// `true` once `pid` is gone or a zombie (dead, waiting for its new parent to reap it).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

fn assert_all_die(pids: &[u32]) {
    let deadline = Instant::now() + REAPED;
    for &pid in pids {
        while !is_dead(pid) {
            assert!(
                Instant::now() < deadline,
                "server pid {pid} still runs {REAPED:?} after its test aborted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// In the child: report the pid and abort, skipping every destructor.
fn report_and_abort(pids: &[Option<u32>]) -> ! {
    for pid in pids {
        println!("server-pid {}", pid.expect("a started server has a pid"));
    }
    std::process::abort()
}

/// In the child: report the pid and die by `SIGKILL` (as an OOM killer or a CI timeout would).
fn report_and_get_killed(pids: &[Option<u32>]) -> ! {
    for pid in pids {
        println!("server-pid {}", pid.expect("a started server has a pid"));
    }
    let _ = Command::new("kill")
        .args(["-s", "KILL", &std::process::id().to_string()])
        .status();
    unreachable!("SIGKILL did not kill the test process")
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

#[tokio::test]
async fn a_redis_server_dies_with_its_aborted_test() {
    const NAME: &str = "a_redis_server_dies_with_its_aborted_test";
    if is_child(NAME) {
        let server = RedisServer::start().await.unwrap();
        report_and_abort(&[server.pid()]);
    }
    let aborted = tokio::task::spawn_blocking(|| run_aborting_child(NAME))
        .await
        .unwrap();
    assert_all_die(&aborted.pids);
}

#[tokio::test]
async fn postgres_run_as_the_postgres_user_dies_with_its_aborted_test() {
    const NAME: &str = "postgres_run_as_the_postgres_user_dies_with_its_aborted_test";
    if is_child(NAME) {
        let cluster = PgCluster::start(1).await.unwrap();
        let pids: Vec<_> = cluster.nodes().iter().map(|n| n.pid()).collect();
        report_and_abort(&pids);
    }
    let aborted = tokio::task::spawn_blocking(|| run_aborting_child(NAME))
        .await
        .unwrap();
    assert_eq!(aborted.pids.len(), 2);
    assert_all_die(&aborted.pids);
}

#[tokio::test]
async fn a_server_in_a_namespace_dies_with_its_aborted_test_and_the_namespace_is_swept() {
    const NAME: &str =
        "a_server_in_a_namespace_dies_with_its_aborted_test_and_the_namespace_is_swept";
    if is_child(NAME) {
        let ns = NetNs::create().await.unwrap();
        let server = RedisServer::start_in(&ns).await.unwrap();
        println!("netns {}", ns.name());
        report_and_abort(&[server.pid()]);
    }
    let aborted = tokio::task::spawn_blocking(|| run_aborting_child(NAME))
        .await
        .unwrap();
    assert_all_die(&aborted.pids);
    let left = aborted.netns.expect("the child printed its namespace");
    // The child's pid is gone, so its namespace is stale (unless a parallel test of this
    // process swept it first, which is as good).
    let swept = sweep_stale().await.unwrap();
    let listed = tokio::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(left.as_str())),
        "{left} is still there after the sweep (swept {swept:?})"
    );
}

#[tokio::test]
async fn a_dynamodb_local_region_dies_with_its_sigkilled_test() {
    const NAME: &str = "a_dynamodb_local_region_dies_with_its_sigkilled_test";
    if is_child(NAME) {
        let region = DynamoDbLocal::start("us-east-1").await.unwrap();
        report_and_get_killed(&[region.pid()]);
    }
    let aborted = tokio::task::spawn_blocking(|| run_aborting_child(NAME))
        .await
        .unwrap();
    assert_all_die(&aborted.pids);
}

//! The Sentinel fixture: a Redis replica set watched by 1 to 3 `redis-sentinel` processes.

use std::net::SocketAddr;
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use super::Error;
#[cfg(feature = "tls")]
use super::RedisTls;
use super::process::{
    POLL, PORT_ATTEMPTS, STARTUP_TIMEOUT, ServerProcess, find_binary, free_port, log_tail,
    poll_until, port_in_use,
};
use super::redis::{Listen, RedisReplicaSet, loopback, temp_dir};
use super::resp::{Dial, Reply};

/// The name under which the [`RedisSentinel`] fixture monitors its primary: `switchover`.
pub const SENTINEL_MASTER_NAME: &str = "switchover";

const SENTINEL_HINT: &str = "apt-get install redis-sentinel";

/// One `redis-sentinel` process.
#[derive(Debug)]
struct SentinelProcess {
    // Fields drop in order: the process goes before its directory.
    process: Option<ServerProcess>,
    port: u16,
    dir: TempDir,
    dial: Dial,
}

/// A [`RedisReplicaSet`] watched by 1 to 3 Sentinels, monitoring it as
/// [`SENTINEL_MASTER_NAME`] with `down-after-milliseconds 1000`, `failover-timeout 5000`,
/// `parallel-syncs 5`, and a quorum of a majority of the sentinels.
///
/// [`start`](Self::start) returns when every sentinel sees every replica and every other sentinel,
/// so a failover can start right away. Kill the primary with
/// [`kill_primary`](Self::kill_primary), then [`wait_for_failover`](Self::wait_for_failover).
///
/// [`start_tls`](Self::start_tls) (feature `tls`) runs everything on TLS ports only: the nodes
/// replicate over TLS, and the sentinels listen on TLS and talk TLS to the nodes and to each
/// other (`tls-replication yes`).
#[derive(Debug)]
pub struct RedisSentinel {
    // Sentinels go first, so they do not fail over while the set is being torn down.
    sentinels: Vec<SentinelProcess>,
    set: RedisReplicaSet,
}

impl RedisSentinel {
    /// Starts a primary, `replicas` replicas and `sentinels` sentinels (1 to 3), and waits (up to
    /// 30 s) until the sentinels know the whole topology.
    ///
    /// Fails with [`Error::Invalid`] for 0 or more than 3 sentinels, and with
    /// [`Error::MissingBinary`] (hint `apt-get install redis-sentinel`) when `redis-sentinel` is
    /// not installed.
    pub async fn start(replicas: usize, sentinels: usize) -> Result<Self, Error> {
        Self::start_with(replicas, sentinels, Listen::default()).await
    }

    /// As [`start`](Self::start), with every node and sentinel on a TLS port only.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn start_tls(
        replicas: usize,
        sentinels: usize,
        tls: &RedisTls,
    ) -> Result<Self, Error> {
        Self::start_with(replicas, sentinels, Listen::tls(tls)).await
    }

    /// As [`start`](Self::start), with every node in a [`NetNs`](super::NetNs) of its own
    /// ([`RedisReplicaSet::start_in_netns`]), so each can be partitioned alone
    /// ([`RedisServer::partition`](super::RedisServer::partition)). The sentinels run on the
    /// host's `127.0.0.1` (announcing that address to each other) and reach the nodes through
    /// their veth pairs.
    pub async fn start_in_netns(replicas: usize, sentinels: usize) -> Result<Self, Error> {
        Self::start_with(replicas, sentinels, Listen::fresh_netns()).await
    }

    async fn start_with(replicas: usize, sentinels: usize, listen: Listen) -> Result<Self, Error> {
        if !(1..=3).contains(&sentinels) {
            return Err(Error::Invalid(format!(
                "{sentinels} sentinels requested; 1 to 3 are supported"
            )));
        }
        let bin = find_binary("redis-sentinel", SENTINEL_HINT)?;
        let set = RedisReplicaSet::start_with(replicas, listen.clone()).await?;
        let quorum = sentinels / 2 + 1;
        let mut fixture = Self {
            set,
            sentinels: Vec::new(),
        };
        for _ in 0..sentinels {
            let primary = fixture.set.primary().addr();
            let sentinel = start_sentinel(&bin, primary, quorum, &listen).await?;
            fixture.sentinels.push(sentinel);
        }
        fixture.wait_topology(replicas, sentinels).await?;
        Ok(fixture)
    }

    async fn wait_topology(&mut self, replicas: usize, sentinels: usize) -> Result<(), Error> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for s in &mut self.sentinels {
            let addr = loopback(s.port);
            let dial = s.dial.clone();
            loop {
                if let Some(p) = s.process.as_mut() {
                    p.ensure_running()?;
                }
                let seen_replicas = dial
                    .command(&["SENTINEL", "REPLICAS", SENTINEL_MASTER_NAME])
                    .await
                    .map(|r| count_healthy(&r))
                    .unwrap_or(0);
                let seen_sentinels = dial
                    .command(&["SENTINEL", "SENTINELS", SENTINEL_MASTER_NAME])
                    .await
                    .map(|r| count_healthy(&r))
                    .unwrap_or(0);
                if seen_replicas >= replicas && seen_sentinels + 1 >= sentinels {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::timeout(
                        format!(
                            "sentinel {addr} to see {replicas} replicas and {} other sentinels \
                             (sees {seen_replicas} and {seen_sentinels})",
                            sentinels - 1
                        ),
                        STARTUP_TIMEOUT,
                        log_tail(&s.dir.path().join("sentinel.log"), 20),
                    ));
                }
                tokio::time::sleep(POLL * 4).await;
            }
        }
        Ok(())
    }

    /// The name the sentinels monitor: [`SENTINEL_MASTER_NAME`].
    pub fn master_name(&self) -> &'static str {
        SENTINEL_MASTER_NAME
    }

    /// The addresses of the sentinels (`127.0.0.1:port`).
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(|s| loopback(s.port)).collect()
    }

    /// The replica set under watch.
    pub fn replica_set(&self) -> &RedisReplicaSet {
        &self.set
    }

    /// The replica set under watch, mutably (to kill, pause or restart nodes).
    pub fn replica_set_mut(&mut self) -> &mut RedisReplicaSet {
        &mut self.set
    }

    /// Kills the primary with `SIGKILL` and returns its address.
    pub async fn kill_primary(&mut self) -> Result<SocketAddr, Error> {
        self.set.kill_primary().await
    }

    /// Asks the sentinels, in order, for the current primary (`SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`); the first one that answers wins.
    pub async fn current_primary(&self) -> Result<SocketAddr, Error> {
        let mut last = Error::Invalid("no sentinel".into());
        for s in &self.sentinels {
            let reply = match s
                .dial
                .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER_NAME])
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let parts: Option<Vec<&str>> = reply
                .as_array()
                .map(|a| a.iter().filter_map(Reply::as_str).collect());
            if let Some([ip, port]) = parts.as_deref()
                && let (Ok(ip), Ok(port)) = (ip.parse::<std::net::IpAddr>(), port.parse::<u16>())
            {
                return Ok(SocketAddr::new(ip, port));
            }
            last = Error::Protocol(format!(
                "unexpected GET-MASTER-ADDR-BY-NAME reply {reply:?}"
            ));
        }
        Err(last)
    }

    /// Waits until the sentinels name a primary other than `old` and that node reports the
    /// `master` role; then makes it the replica set's [`primary`](RedisReplicaSet::primary) and
    /// returns its address.
    pub async fn wait_for_failover(
        &mut self,
        old: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, Error> {
        let promoted = poll_until(timeout, POLL * 2, || async {
            if let Ok(addr) = self.current_primary().await
                && addr != old
                && let Some(node) = self.set.nodes().iter().find(|n| n.addr() == addr)
                && node.role().await.ok().as_deref() == Some("master")
            {
                return Ok(Some(addr));
            }
            Ok(None)
        })
        .await?;
        let Some(addr) = promoted else {
            let logs: Vec<String> = self
                .sentinels
                .iter()
                .map(|s| log_tail(&s.dir.path().join("sentinel.log"), 8))
                .collect();
            return Err(Error::timeout(
                format!("sentinel to fail over away from {old}"),
                timeout,
                logs.join("\n---\n"),
            ));
        };
        self.set.set_primary_addr(addr);
        Ok(addr)
    }
}

/// Counts the entries of a `SENTINEL REPLICAS|SENTINELS` reply whose flags mark no trouble.
fn count_healthy(reply: &Reply) -> usize {
    let Some(entries) = reply.as_array() else {
        return 0;
    };
    entries
        .iter()
        .filter(|entry| {
            let fields: Vec<&str> = entry
                .as_array()
                .map(|a| a.iter().filter_map(Reply::as_str).collect())
                .unwrap_or_default();
            fields
                .chunks(2)
                .find(|kv| kv.first() == Some(&"flags"))
                .and_then(|kv| kv.get(1))
                .is_some_and(|flags| !flags.contains("down") && !flags.contains("disconnected"))
        })
        .count()
}

async fn start_sentinel(
    bin: &std::path::Path,
    primary: SocketAddr,
    quorum: usize,
    listen: &Listen,
) -> Result<SentinelProcess, Error> {
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let dir = temp_dir("switchover-sentinel-")?;
        let conf = dir.path().join("sentinel.conf");
        let log = dir.path().join("sentinel.log");
        let name = SENTINEL_MASTER_NAME;
        let dial = sentinel_dial(port, listen);
        let text = format!(
            "{ports}bind 127.0.0.1\nprotected-mode no\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
             sentinel monitor {name} {ip} {pport} {quorum}\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 5\n",
            ports = port_lines(port, listen),
            dir = dir.path().display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        // Sentinels announce the address of their link to the primary, here the host side of
        // its veth pair, where they do not listen.
        let text = if listen.netns.is_netns() {
            text + "sentinel announce-ip 127.0.0.1\n"
        } else {
            text
        };
        std::fs::write(&conf, text)
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
        let mut process = ServerProcess::spawn(
            &format!("redis-sentinel on port {port}"),
            bin,
            [conf.as_os_str()],
            dir.path(),
            &log,
        )?;
        let ready = poll_until(STARTUP_TIMEOUT, POLL, || {
            let running = process.ensure_running();
            let dial = dial.clone();
            async move {
                running?;
                let reply = dial.command(&["PING"]).await;
                Ok(reply.is_ok().then_some(()))
            }
        })
        .await
        .and_then(|ready| {
            ready.ok_or_else(|| {
                Error::timeout(
                    format!("redis-sentinel on port {port} to answer PING"),
                    STARTUP_TIMEOUT,
                    log_tail(&log, 20),
                )
            })
        });
        match ready {
            Ok(()) => {
                return Ok(SentinelProcess {
                    port,
                    dir,
                    process: Some(process),
                    dial,
                });
            }
            Err(e) if port_in_use(&log_tail(&log, 20)) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Invalid("no port attempt made".into())))
}

/// The `port` lines of a sentinel's configuration: plaintext, or TLS only.
fn port_lines(port: u16, listen: &Listen) -> String {
    #[cfg(feature = "tls")]
    if let Some(tls) = &listen.tls {
        return format!("port 0\ntls-port {port}\n{}", tls.sentinel_conf());
    }
    let _ = listen;
    format!("port {port}\n")
}

fn sentinel_dial(port: u16, listen: &Listen) -> Dial {
    #[cfg(feature = "tls")]
    return Dial::with_tls(loopback(port), listen.tls.as_ref());
    #[cfg(not(feature = "tls"))]
    {
        let _ = listen;
        Dial::plain(loopback(port))
    }
}

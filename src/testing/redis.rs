//! Redis fixtures: a server and a replica set (Sentinel is in `sentinel.rs`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use tokio::time::Instant;

use super::Error;
#[cfg(feature = "tls")]
use super::RedisTls;
use super::netns::{NetNs, Placement, bind_addr, not_in_netns};
use super::process::{
    POLL, PORT_ATTEMPTS, STARTUP_TIMEOUT, ServerProcess, find_binary, free_port, log_tail,
    poll_until, port_in_use,
};
use super::resp::{DEFAULT_RESP_TIMEOUT, Dial, Reply, RespClient};

const REDIS_HINT: &str = "apt-get install redis-server";

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

pub(super) fn temp_dir(prefix: &str) -> Result<TempDir, Error> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))
}

/// How a server listens besides its TCP port: TLS only (feature `tls`), and a Unix socket.
#[derive(Clone, Debug, Default)]
pub(super) struct Listen {
    #[cfg(feature = "tls")]
    pub(super) tls: Option<RedisTls>,
    pub(super) unix_socket: bool,
    /// Where the servers run: loopback, or network namespaces.
    pub(super) netns: Placement,
}

impl Listen {
    /// Plaintext TCP and a Unix socket.
    fn unix_socket() -> Self {
        Listen {
            #[cfg(feature = "tls")]
            tls: None,
            unix_socket: true,
            netns: Placement::Loopback,
        }
    }
}

/// One `redis-server` process on `127.0.0.1`, without persistence (`save ""`, no AOF), in its own
/// temporary directory. Killed (`SIGKILL`) on drop.
///
/// Because nothing is persisted, a node that is restarted comes back empty (a replica then
/// resyncs from its primary).
///
/// Started with [`start_tls`](Self::start_tls) (feature `tls`), it listens on its TLS port
/// only ([`addr`](Self::addr) is that port) and replicates over TLS; with
/// [`start_with_unix_socket`](Self::start_with_unix_socket) it also listens on a Unix socket.
#[derive(Debug)]
pub struct RedisServer {
    // Fields drop in order: the process goes before its directory.
    process: Option<ServerProcess>,
    name: String,
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    replica_of: Option<SocketAddr>,
    listen: Listen,
    netns: Option<NetNs>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits (up to 30 s) until it answers `PING`.
    ///
    /// Fails with [`Error::MissingBinary`] (hint `apt-get install redis-server`) when
    /// `redis-server` is not installed.
    pub async fn start() -> Result<Self, Error> {
        Self::launch("redis", None, Listen::default()).await
    }

    /// Starts a standalone server that also listens on a Unix socket
    /// ([`unix_socket_path`](Self::unix_socket_path), mode 700) besides its TCP port.
    pub async fn start_with_unix_socket() -> Result<Self, Error> {
        Self::launch("redis", None, Listen::unix_socket()).await
    }

    /// Starts a standalone server on a TLS port only (`--port 0 --tls-port N`), with the
    /// certificates and `tls-auth-clients` mode of `tls`.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn start_tls(tls: &RedisTls) -> Result<Self, Error> {
        Self::launch("redis-tls", None, Listen::tls(tls)).await
    }

    /// Starts a TLS-only server that replicates from `primary` over TLS
    /// (`tls-replication yes`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn start_replica_of_tls(primary: SocketAddr, tls: &RedisTls) -> Result<Self, Error> {
        Self::launch("redis-tls-replica", Some(primary), Listen::tls(tls)).await
    }

    /// Starts a server that replicates from `primary` (`--replicaof`) and waits until it answers
    /// `PING`. It does not wait for the replication link; see
    /// [`wait_link_up`](Self::wait_link_up).
    pub async fn start_replica_of(primary: SocketAddr) -> Result<Self, Error> {
        Self::launch("redis-replica", Some(primary), Listen::default()).await
    }

    /// Starts a standalone server inside `netns`, bound to [`NetNs::addr`] (so
    /// [`addr`](Self::addr) is on that address), and waits until it answers `PING`. The server
    /// keeps the namespace alive; [`partition`](Self::partition) cuts it off.
    pub async fn start_in(netns: &NetNs) -> Result<Self, Error> {
        Self::launch("redis", None, Listen::in_netns(netns)).await
    }

    /// Starts a server inside `netns` that replicates from `primary` (an address reachable from
    /// the namespace, e.g. a server in another namespace). Does not wait for the link.
    pub async fn start_replica_of_in(primary: SocketAddr, netns: &NetNs) -> Result<Self, Error> {
        Self::launch("redis-replica", Some(primary), Listen::in_netns(netns)).await
    }

    pub(super) async fn launch(
        name: &str,
        replica_of: Option<SocketAddr>,
        listen: Listen,
    ) -> Result<Self, Error> {
        let bin = find_binary("redis-server", REDIS_HINT)?;
        let netns = listen.netns.resolve().await?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self {
                name: name.to_owned(),
                bin: bin.clone(),
                port: free_port()?,
                dir: temp_dir("switchover-redis-")?,
                replica_of,
                process: None,
                listen: listen.clone(),
                netns: netns.clone(),
            };
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) if port_in_use(&server.log()) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("no port attempt made".into())))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log(&self) -> String {
        log_tail(&self.log_path(), 20)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let mut args = self.listen_args();
        args.extend(self.common_args());
        if let Some(primary) = self.replica_of {
            args.extend([
                "--replicaof".to_owned(),
                primary.ip().to_string(),
                primary.port().to_string(),
            ]);
        }
        let name = format!("{} on port {}", self.name, self.port);
        let mut cmd = match &self.netns {
            Some(ns) => ns.command(&self.bin),
            None => tokio::process::Command::new(&self.bin),
        };
        cmd.args(&args);
        let process = ServerProcess::spawn_command(&name, cmd, self.dir.path(), &self.log_path())?;
        self.process = Some(process);
        let dial = self.dial();
        poll_until(STARTUP_TIMEOUT, POLL, || {
            let running = self
                .process
                .as_mut()
                .map_or(Ok(()), ServerProcess::ensure_running);
            let dial = dial.clone();
            async move {
                running?;
                let reply = dial.command(&["PING"]).await;
                Ok(reply
                    .is_ok_and(|r| r.as_str() == Some("PONG"))
                    .then_some(()))
            }
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("{name} to answer PING"),
                STARTUP_TIMEOUT,
                self.log(),
            )
        })
    }

    /// The port options: plaintext, or TLS only; and the Unix socket.
    fn listen_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        let mut args: Vec<String> = vec!["--port".into(), port.clone()];
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.listen.tls {
            args = vec!["--port".into(), "0".into(), "--tls-port".into(), port];
            args.extend(tls.server_args());
        }
        if let Some(path) = self.unix_socket_path() {
            args.extend([
                "--unixsocket".to_owned(),
                path.display().to_string(),
                "--unixsocketperm".to_owned(),
                "700".to_owned(),
            ]);
        }
        args
    }

    fn common_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "1",
            "--dir",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(self.dir.path().display().to_string());
        args.extend(["--bind".to_owned(), self.ip().to_string()]);
        args
    }

    /// `127.0.0.1:port` (the TLS port of a TLS server); in a namespace, the namespace's
    /// address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip(), self.port))
    }

    fn ip(&self) -> Ipv4Addr {
        bind_addr(self.netns.as_ref())
    }

    /// The network namespace the server runs in (`None` on the host's loopback).
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// Drops every packet to and from the server's namespace ([`NetNs::partition`]). Fails
    /// with [`Error::Invalid`] for a server not started in a namespace.
    pub async fn partition(&self) -> Result<(), Error> {
        self.own_netns()?.partition().await
    }

    /// Undoes [`partition`](Self::partition) ([`NetNs::heal`]).
    pub async fn heal(&self) -> Result<(), Error> {
        self.own_netns()?.heal().await
    }

    fn own_netns(&self) -> Result<&NetNs, Error> {
        let name = || format!("{} on port {}", self.name, self.port);
        self.netns.as_ref().ok_or_else(|| not_in_netns(&name()))
    }

    /// How the fixtures reach this server (TLS when it listens on TLS only).
    pub(super) fn dial(&self) -> Dial {
        #[cfg(feature = "tls")]
        return Dial::with_tls(self.addr(), self.listen.tls.as_ref());
        #[cfg(not(feature = "tls"))]
        Dial::plain(self.addr())
    }

    /// The Unix socket the server listens on, for one started with
    /// [`start_with_unix_socket`](Self::start_with_unix_socket).
    pub fn unix_socket_path(&self) -> Option<PathBuf> {
        self.listen
            .unix_socket
            .then(|| self.dir.path().join("redis.sock"))
    }

    /// `true` for a server that listens on TLS only.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.listen.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// The TLS settings the server was started with.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(&self) -> Option<&RedisTls> {
        self.listen.tls.as_ref()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/` (`rediss://` for a TLS server; the namespace's address for a
    /// server in one), for client crates that take a URL.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        format!("{scheme}://{}/", self.addr())
    }

    /// The process id, while the fixture holds a process (`None` after [`kill`](Self::kill) or
    /// [`shutdown`](Self::shutdown)).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The primary this node was last told to replicate from (`None` for a primary).
    pub fn replica_of(&self) -> Option<SocketAddr> {
        self.replica_of
    }

    /// Sends one command on a fresh connection (2 s timeout; TLS for a TLS server) and
    /// returns the reply.
    pub async fn cmd(&self, args: &[&str]) -> Result<Reply, Error> {
        self.dial().command(args).await
    }

    /// Opens a [`RespClient`] to this server (TLS for a TLS server).
    pub async fn client(&self) -> Result<RespClient, Error> {
        RespClient::dial(&self.dial(), DEFAULT_RESP_TIMEOUT).await
    }

    /// The text of `INFO replication`.
    pub async fn info_replication(&self) -> Result<String, Error> {
        let reply = self.cmd(&["INFO", "replication"]).await?;
        reply
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("unexpected INFO reply {reply:?}")))
    }

    /// The role this node reports (`ROLE`): `master`, `slave` (a replica) or `sentinel`.
    pub async fn role(&self) -> Result<String, Error> {
        let reply = self.cmd(&["ROLE"]).await?;
        reply
            .as_array()
            .and_then(|a| a.first())
            .and_then(Reply::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Protocol(format!("unexpected ROLE reply {reply:?}")))
    }

    /// Waits until this replica reports `master_link_status:up`.
    pub async fn wait_link_up(&self, timeout: Duration) -> Result<(), Error> {
        poll_until(timeout, POLL, || async {
            let info = self.info_replication().await;
            let up = info.is_ok_and(|i| i.lines().any(|l| l.trim() == "master_link_status:up"));
            Ok(up.then_some(()))
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("the replication link of {} to come up", self.addr()),
                timeout,
                self.log(),
            )
        })
    }

    /// Kills the server with `SIGKILL` (no shutdown, no goodbye to clients) and reaps it.
    pub async fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut p) = self.process.take() {
            p.kill().await?;
        }
        Ok(())
    }

    /// Stops the server gracefully (`SHUTDOWN NOSAVE`) and waits for it to exit; falls back to
    /// `SIGKILL` when it does not exit within 5 s.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        let Some(mut p) = self.process.take() else {
            return Ok(());
        };
        // The server closes the connection instead of replying.
        let _ = self.cmd(&["SHUTDOWN", "NOSAVE"]).await;
        if p.wait_exit(Duration::from_secs(5)).await.is_err() {
            p.kill().await?;
        }
        Ok(())
    }

    /// Freezes the server with `SIGSTOP`: connections stay open, nothing is answered.
    pub fn pause(&mut self) -> Result<(), Error> {
        self.running()?.signal("STOP")
    }

    /// Thaws a paused server with `SIGCONT`.
    pub fn resume(&mut self) -> Result<(), Error> {
        self.running()?.signal("CONT")
    }

    fn running(&mut self) -> Result<&mut ServerProcess, Error> {
        let name = self.name.clone();
        self.process
            .as_mut()
            .ok_or_else(|| Error::Invalid(format!("{name} on port {} is not running", self.port)))
    }

    /// Starts the server again on the same port, with the role it had (primary, or replica of
    /// [`replica_of`](Self::replica_of)). A running process is killed first. The node comes
    /// back empty.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.kill().await?;
        self.spawn_and_wait().await
    }

    /// Starts the server again on the same port as a replica of `primary` (e.g. an old primary
    /// rejoining after a failover). A running process is killed first.
    pub async fn restart_as_replica_of(&mut self, primary: SocketAddr) -> Result<(), Error> {
        self.kill().await?;
        self.replica_of = Some(primary);
        self.spawn_and_wait().await
    }

    /// Promotes this node by hand: `REPLICAOF NO ONE`.
    pub async fn promote(&mut self) -> Result<(), Error> {
        self.cmd(&["REPLICAOF", "NO", "ONE"]).await?;
        self.replica_of = None;
        Ok(())
    }

    /// Makes this node replicate from `primary`: `REPLICAOF host port`. Does not wait for the
    /// link; see [`wait_link_up`](Self::wait_link_up).
    pub async fn replicate_from(&mut self, primary: SocketAddr) -> Result<(), Error> {
        let host = primary.ip().to_string();
        let port = primary.port().to_string();
        self.cmd(&["REPLICAOF", &host, &port]).await?;
        self.replica_of = Some(primary);
        Ok(())
    }

    fn is_alive(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }
}

impl Listen {
    /// Plaintext TCP inside `netns`.
    fn in_netns(netns: &NetNs) -> Self {
        Listen {
            netns: Placement::In(netns.clone()),
            ..Listen::default()
        }
    }

    /// Plaintext TCP, each server in a namespace of its own.
    pub(super) fn fresh_netns() -> Self {
        Listen {
            netns: Placement::Fresh,
            ..Listen::default()
        }
    }

    #[cfg(feature = "tls")]
    pub(super) fn tls(tls: &RedisTls) -> Self {
        Listen {
            tls: Some(tls.clone()),
            unix_socket: false,
            netns: Placement::Loopback,
        }
    }
}

fn info_field(info: &str, key: &str) -> Option<i64> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// A primary and `N` replicas (`--replicaof`), each a [`RedisServer`].
///
/// [`start`](Self::start) returns when every replica reports `master_link_status:up`. Node 0 is
/// the first primary; [`primary`](Self::primary) follows [`promote`](Self::promote) (and, in a
/// [`RedisSentinel`](super::RedisSentinel), the failovers the fixture observes).
#[derive(Debug)]
pub struct RedisReplicaSet {
    nodes: Vec<RedisServer>,
    primary: usize,
}

/// How long the replica-set operations wait for replication links: 30 s.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);

impl RedisReplicaSet {
    /// Starts a primary and `replicas` replicas and waits (up to 30 s) for every replication
    /// link.
    pub async fn start(replicas: usize) -> Result<Self, Error> {
        Self::start_with(replicas, Listen::default()).await
    }

    /// Starts a TLS-only primary and `replicas` replicas that replicate over TLS
    /// (`tls-replication yes`), and waits (up to 30 s) for every replication link.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub async fn start_tls(replicas: usize, tls: &RedisTls) -> Result<Self, Error> {
        Self::start_with(replicas, Listen::tls(tls)).await
    }

    /// As [`start`](Self::start), with every node in a [`NetNs`] of its own (replicating
    /// across namespaces), so each can be partitioned alone ([`RedisServer::partition`]).
    pub async fn start_in_netns(replicas: usize) -> Result<Self, Error> {
        Self::start_with(replicas, Listen::fresh_netns()).await
    }

    pub(super) async fn start_with(replicas: usize, listen: Listen) -> Result<Self, Error> {
        let primary = RedisServer::launch("redis", None, listen.clone()).await?;
        let primary_addr = primary.addr();
        let mut nodes = vec![primary];
        for _ in 0..replicas {
            let replica =
                RedisServer::launch("redis-replica", Some(primary_addr), listen.clone()).await?;
            nodes.push(replica);
        }
        for node in &nodes[1..] {
            node.wait_link_up(LINK_TIMEOUT).await?;
        }
        Ok(Self { nodes, primary: 0 })
    }

    /// The node the fixture considers primary.
    pub fn primary(&self) -> &RedisServer {
        &self.nodes[self.primary]
    }

    /// The node the fixture considers primary, mutably (to kill, pause, restart it).
    pub fn primary_mut(&mut self) -> &mut RedisServer {
        &mut self.nodes[self.primary]
    }

    /// Index of the primary in [`nodes`](Self::nodes).
    pub fn primary_index(&self) -> usize {
        self.primary
    }

    /// All nodes; index 0 was the first primary, the others its replicas in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, mutably. Fails with [`Error::Invalid`] for an index out of range.
    pub fn node_mut(&mut self, index: usize) -> Result<&mut RedisServer, Error> {
        let len = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or_else(|| Error::Invalid(format!("no redis node {index} (the set has {len})")))
    }

    /// The nodes other than the primary.
    pub fn replicas(&self) -> impl Iterator<Item = &RedisServer> {
        let primary = self.primary;
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != primary)
            .map(|(_, n)| n)
    }

    /// Kills the primary with `SIGKILL` and returns its address. The fixture still calls it the
    /// primary until [`promote`](Self::promote) (or a Sentinel failover) picks another.
    pub async fn kill_primary(&mut self) -> Result<SocketAddr, Error> {
        let primary = self.primary_mut();
        primary.kill().await?;
        Ok(primary.addr())
    }

    /// Promotes node `index` by hand (`REPLICAOF NO ONE`), repoints every other running node to
    /// it (`REPLICAOF`), and waits (up to 30 s) until their links are up.
    pub async fn promote(&mut self, index: usize) -> Result<(), Error> {
        self.node_mut(index)?.promote().await?;
        let new_primary = self.nodes[index].addr();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if i != index && node.is_alive() {
                node.replicate_from(new_primary).await?;
            }
        }
        self.primary = index;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if i != index && node.is_alive() {
                node.wait_link_up(LINK_TIMEOUT).await?;
            }
        }
        Ok(())
    }

    /// Waits until every running replica has processed everything the primary has sent so far
    /// (`slave_repl_offset` ≥ the primary's `master_repl_offset`).
    pub async fn wait_for_sync(&mut self, timeout: Duration) -> Result<(), Error> {
        let info = self.primary().info_replication().await?;
        let target = info_field(&info, "master_repl_offset")
            .ok_or_else(|| Error::Protocol("INFO replication without master_repl_offset".into()))?;
        let deadline = Instant::now() + timeout;
        let primary = self.primary;
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if i == primary || !node.is_alive() {
                continue;
            }
            loop {
                let offset = match node.info_replication().await {
                    Ok(info) => info_field(&info, "slave_repl_offset").unwrap_or(-1),
                    Err(_) => -1,
                };
                if offset >= target {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::timeout(
                        format!(
                            "replica {} to reach offset {target} (at {offset})",
                            node.addr()
                        ),
                        timeout,
                        "",
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        }
        Ok(())
    }

    /// Marks the node listening on `addr` as the primary (used after a failover the fixture did
    /// not drive). Returns `false` when no node has that address.
    pub fn set_primary_addr(&mut self, addr: SocketAddr) -> bool {
        match self.nodes.iter().position(|n| n.addr() == addr) {
            Some(i) => {
                self.primary = i;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_with_a_unix_socket_answers_on_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let server = RedisServer::start_with_unix_socket().await.unwrap();
        let path = server.unix_socket_path().unwrap();
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"+PONG\r\n");
        assert!(
            RedisServer::start()
                .await
                .unwrap()
                .unix_socket_path()
                .is_none()
        );
    }
}

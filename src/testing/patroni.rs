//! A Patroni cluster: etcd and 2–3 Patroni members, each running a Postgres 15 on loopback.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;

use super::Error;
use super::postgres::PG_BIN_ENV;
use super::process::{
    COMMAND_TIMEOUT, POLL, ServerProcess, find_binary, free_port, is_root, log_tail, poll_until,
    run, send_signal,
};

const PATRONI_HINT: &str = "apt-get install patroni etcd-server";
const PG_HINT: &str = "apt-get install postgresql-15 (or set SWITCHOVER_PG_BIN)";
/// How long a cluster may take to bootstrap (initdb, then a base backup per replica).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(90);
/// The leader key's TTL, in seconds: a killed leader is replaced about this long after.
pub const PATRONI_TTL: u64 = 5;
/// The scope (cluster name) of every fixture cluster.
const SCOPE: &str = "switchover";

/// One HTTP exchange with a loopback REST API: the status and the body. Patroni answers
/// HTTP/1.0 and closes the connection after the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), Error> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let what = format!("{method} http://{addr}{path}");
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(raw) => raw.map_err(|e| Error::io(what.clone(), e))?,
        Err(_) => return Err(Error::timeout(what, timeout, "")),
    };
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Protocol(format!("{what}: not an HTTP answer: {head:.80}")))?;
    Ok((status, body.to_owned()))
}

/// etcd 3.4 on loopback, one member, in the cluster's directory; the Patroni DCS.
#[derive(Debug)]
struct Etcd {
    /// Held so that etcd stops when the cluster drops.
    _process: ServerProcess,
    client: SocketAddr,
}

impl Etcd {
    async fn start(dir: &Path) -> Result<Etcd, Error> {
        let etcd = find_binary("etcd", PATRONI_HINT)?;
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let client_url = format!("http://{client}");
        let data = dir.join("etcd");
        let log = dir.join("etcd.log");
        let args: Vec<String> = vec![
            "--name".into(),
            "e0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer.clone(),
            "--initial-cluster".into(),
            format!("e0={peer}"),
        ];
        let mut process = ServerProcess::spawn("etcd", &etcd, &args, dir, &log)?;
        poll_until(COMMAND_TIMEOUT, POLL, || {
            let running = process.ensure_running();
            async move {
                running?;
                let answer = http(client, "GET", "/health", "", Duration::from_secs(1)).await;
                Ok(answer
                    .is_ok_and(|(s, b)| s == 200 && b.contains("true"))
                    .then_some(()))
            }
        })
        .await?
        .ok_or_else(|| Error::timeout("etcd to be healthy", COMMAND_TIMEOUT, log_tail(&log, 20)))?;
        Ok(Etcd {
            _process: process,
            client,
        })
    }
}

/// One member of a [`PatroniCluster`]: a Patroni process whose REST API and Postgres listen on
/// `127.0.0.1`.
#[derive(Debug)]
pub struct PatroniMember {
    // Fields drop in order: Patroni goes before the Postgres it started (see `Drop`).
    process: Option<ServerProcess>,
    name: String,
    api: SocketAddr,
    pg_port: u16,
    dir: PathBuf,
    patroni: PathBuf,
    pg_bin: PathBuf,
}

impl PatroniMember {
    /// Patroni's member name (`m0`, `m1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The REST API address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The Postgres address.
    pub fn pg_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.pg_port))
    }

    /// The Postgres port.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// Whether the fixture holds a running Patroni process for this member.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| p.exited().is_none())
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The last lines of Patroni's log (which includes Postgres's).
    pub fn log(&self) -> String {
        log_tail(&self.log_path(), 30)
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let mut cmd = if is_root() {
            let setpriv = find_binary("setpriv", "apt-get install util-linux")?;
            let mut cmd = Command::new(setpriv);
            cmd.args([
                "--reuid",
                "postgres",
                "--regid",
                "postgres",
                "--init-groups",
                "--",
            ]);
            cmd.arg(&self.patroni);
            cmd
        } else {
            Command::new(&self.patroni)
        };
        cmd.arg(self.config_path()).env("HOME", &self.dir);
        let name = format!("patroni {}", self.name);
        self.process = Some(ServerProcess::spawn_command(
            &name,
            cmd,
            &self.dir,
            &self.log_path(),
        )?);
        Ok(())
    }

    /// `GET path` on the REST API: the status, or `None` when it does not answer.
    async fn status(&self, path: &str) -> Option<u16> {
        http(self.api, "GET", path, "", Duration::from_secs(1))
            .await
            .ok()
            .map(|(s, _)| s)
    }

    /// Whether this member holds the leader key and runs as primary (`GET /primary` is 200).
    pub async fn is_leader(&self) -> bool {
        self.status("/primary").await == Some(200)
    }

    /// Whether this member is a running replica (`GET /replica` is 200).
    pub async fn is_replica(&self) -> bool {
        self.status("/replica").await == Some(200)
    }

    /// Runs SQL with `psql` on this member's Unix socket (user `postgres`, `ON_ERROR_STOP`,
    /// one implicit transaction) and returns the rows of the last statement, unaligned.
    pub async fn sql(&self, sql: &str) -> Result<String, Error> {
        let psql = self.pg_bin.join("psql");
        if !psql.is_file() {
            return Err(Error::MissingBinary {
                binary: psql.display().to_string(),
                hint: PG_HINT.into(),
            });
        }
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.pg_port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "5");
        Ok(run(&mut cmd, "psql", COMMAND_TIMEOUT)
            .await?
            .trim_end()
            .to_owned())
    }

    /// The postmaster's pid from `postmaster.pid`, when that process still runs this data
    /// directory (so a reused pid is never signalled).
    fn postmaster(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let data = self.data_dir().display().to_string();
        String::from_utf8_lossy(&cmdline)
            .contains(&data)
            .then_some(pid)
    }

    /// Kills this member like a crashed host: `SIGKILL` to Patroni, then to its Postgres.
    pub async fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut p) = self.process.take() {
            p.kill().await?;
        }
        if let Some(pid) = self.postmaster() {
            send_signal(pid, "KILL")?;
            wait_gone(pid, Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// Asks Patroni to rebuild this replica from the leader (`POST /reinitialize` with
    /// `force`): for a member that rejoined with WAL the new leader never had (an async
    /// replica promoted after its leader was killed) and that `pg_rewind` did not repair.
    /// Waits up to 30 s for the REST API to accept the request.
    pub async fn reinitialize(&self) -> Result<(), Error> {
        let limit = Duration::from_secs(30);
        let api = self.api;
        let answer = poll_until(limit, POLL * 8, || async move {
            let r = http(api, "POST", "/reinitialize", r#"{"force": true}"#, limit).await;
            Ok(r.ok().filter(|(s, _)| *s == 200))
        })
        .await?;
        answer.map(drop).ok_or_else(|| {
            Error::timeout(format!("POST http://{api}/reinitialize"), limit, self.log())
        })
    }

    /// Starts Patroni again on the same data directory (after [`kill`](Self::kill)): it
    /// rejoins as a replica of the current leader (rewinding its data when it diverged).
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Invalid(format!("patroni {} is running", self.name)));
        }
        self.spawn()
    }
}

async fn wait_gone(pid: u32, limit: Duration) {
    let until = Instant::now() + limit;
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
        tokio::time::sleep(POLL).await;
    }
}

impl Drop for PatroniMember {
    fn drop(&mut self) {
        // Patroni first, so that it does not start Postgres again; then the Postgres it
        // detached, by the pid in its own data directory.
        drop(self.process.take());
        if let Some(pid) = self.postmaster() {
            let _ = send_signal(pid, "QUIT");
            for _ in 0..200 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = send_signal(pid, "KILL");
        }
    }
}

/// A Patroni 3 cluster on loopback: one etcd 3.4 (the DCS, v3 API) and 2–3 members, each a
/// Patroni process with its REST API and its Postgres 15 on free ports of `127.0.0.1`, in one
/// temporary directory; everything stopped on drop (Patroni, then each Postgres by the pid in
/// its own data directory, then etcd).
///
/// Short timings so failovers are quick: `ttl` [`PATRONI_TTL`] (5 s), `loop_wait` 1 s,
/// `retry_timeout` 2 s; `use_pg_rewind` with `wal_log_hints`, so a killed leader rejoins as a
/// replica. Authentication is `trust` on loopback for user `postgres`. When the tests run as
/// root, Patroni (and so Postgres) runs as the `postgres` user.
///
/// Patroni detaches the Postgres it starts, so a test process that dies without dropping the
/// fixture leaves those servers behind (Patroni and etcd themselves die with it): find them
/// by their `switchover-patroni-` directories.
#[derive(Debug)]
pub struct PatroniCluster {
    // Fields drop in order: members, then etcd, then the directory.
    members: Vec<PatroniMember>,
    etcd: Etcd,
    dir: TempDir,
}

impl PatroniCluster {
    /// Starts etcd and `members` (2 or 3) Patroni members, and waits (up to 90 s) until one
    /// is the leader and every other one a running replica.
    ///
    /// Fails with [`Error::MissingBinary`] (hint `apt-get install patroni etcd-server`) when
    /// `patroni` or `etcd` is missing, and for the Postgres binaries as
    /// [`PgCluster`](super::PgCluster) does.
    pub async fn start(members: usize) -> Result<Self, Error> {
        if !(2..=3).contains(&members) {
            return Err(Error::Invalid(format!(
                "a patroni cluster has 2 or 3 members, not {members}"
            )));
        }
        let patroni = find_binary("patroni", PATRONI_HINT)?;
        let pg_bin = std::env::var_os(PG_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        if !pg_bin.join("initdb").is_file() {
            return Err(Error::MissingBinary {
                binary: pg_bin.join("initdb").display().to_string(),
                hint: PG_HINT.into(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("switchover-patroni-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let etcd = Etcd::start(dir.path()).await?;
        let mut list = Vec::new();
        for i in 0..members {
            let name = format!("m{i}");
            let mdir = dir.path().join(&name);
            std::fs::create_dir_all(&mdir)
                .map_err(|e| Error::io(format!("creating {}", mdir.display()), e))?;
            let member = PatroniMember {
                process: None,
                name,
                api: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
                pg_port: free_port()?,
                dir: mdir,
                patroni: patroni.clone(),
                pg_bin: pg_bin.clone(),
            };
            std::fs::write(member.config_path(), config(&member, etcd.client))
                .map_err(|e| Error::io("writing patroni.yml", e))?;
            list.push(member);
        }
        hand_over(dir.path()).await?;
        let mut cluster = PatroniCluster {
            members: list,
            etcd,
            dir,
        };
        // The first member bootstraps alone; the others join once it leads.
        cluster.members[0].spawn()?;
        cluster.wait_leader(BOOTSTRAP_TIMEOUT).await?;
        for m in &mut cluster.members[1..] {
            m.spawn()?;
        }
        cluster.wait_replicas(BOOTSTRAP_TIMEOUT).await?;
        Ok(cluster)
    }

    /// The members, in start order.
    pub fn members(&self) -> &[PatroniMember] {
        &self.members
    }

    /// One member, mutably (to kill or restart it).
    pub fn member_mut(&mut self, index: usize) -> Result<&mut PatroniMember, Error> {
        let len = self.members.len();
        self.members
            .get_mut(index)
            .ok_or_else(|| Error::Invalid(format!("no member {index} (the cluster has {len})")))
    }

    /// The members' REST API addresses, `127.0.0.1:port`.
    pub fn api_addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.api.to_string()).collect()
    }

    /// A libpq connection string over every member's Postgres:
    /// `host=127.0.0.1,127.0.0.1 port=A,B user=postgres dbname=postgres`.
    pub fn conn_string(&self) -> String {
        let hosts = vec!["127.0.0.1"; self.members.len()].join(",");
        let ports: Vec<String> = self.members.iter().map(|m| m.pg_port.to_string()).collect();
        format!(
            "host={hosts} port={} user=postgres dbname=postgres",
            ports.join(",")
        )
    }

    /// The etcd client address (the DCS).
    pub fn etcd_addr(&self) -> SocketAddr {
        self.etcd.client
    }

    /// The index of the member that holds the leader key and runs as primary, if one does
    /// now.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.is_leader().await {
                return Some(i);
            }
        }
        None
    }

    /// Waits until a member leads (see [`leader`](Self::leader)) and returns its index.
    pub async fn wait_leader(&mut self, timeout: Duration) -> Result<usize, Error> {
        let found = poll_until(timeout, POLL * 4, || async { Ok(self.leader().await) }).await?;
        found.ok_or_else(|| Error::timeout("a patroni leader", timeout, self.logs()))
    }

    /// Waits until every running member other than the leader is a running replica.
    pub async fn wait_replicas(&mut self, timeout: Duration) -> Result<(), Error> {
        let leader = self.wait_leader(timeout).await?;
        let mut running = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if i != leader && m.is_running() {
                running.push(i);
            }
        }
        let ready = poll_until(timeout, POLL * 4, || {
            let members = &self.members;
            let running = &running;
            async move {
                for &i in running {
                    if !members[i].is_replica().await {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            }
        })
        .await?;
        ready.ok_or_else(|| Error::timeout("the patroni replicas", timeout, self.logs()))
    }

    /// A planned switchover to member `to`: `POST /switchover` on the leader's REST API, which
    /// answers once `to` leads (Patroni stops the old leader first, so no write is accepted
    /// by two members).
    pub async fn switchover(&mut self, to: usize) -> Result<(), Error> {
        let leader = self.wait_leader(Duration::from_secs(10)).await?;
        if leader == to {
            return Err(Error::Invalid(format!("member {to} already leads")));
        }
        let candidate = &self
            .members
            .get(to)
            .ok_or_else(|| Error::Invalid(format!("no member {to}")))?
            .name;
        let body = format!(
            r#"{{"leader": "{}", "candidate": "{candidate}"}}"#,
            self.members[leader].name
        );
        let api = self.members[leader].api;
        let (status, answer) =
            http(api, "POST", "/switchover", &body, Duration::from_secs(60)).await?;
        if status != 200 {
            return Err(Error::Command {
                command: format!("POST http://{api}/switchover"),
                status: format!("HTTP {status}"),
                output: answer,
            });
        }
        Ok(())
    }

    /// Kills the current leader like a crashed host (see [`PatroniMember::kill`]) and returns
    /// its index. Patroni names a new leader when the leader key expires (about
    /// [`PATRONI_TTL`] seconds later).
    pub async fn kill_leader(&mut self) -> Result<usize, Error> {
        let leader = self.wait_leader(Duration::from_secs(10)).await?;
        self.members[leader].kill().await?;
        Ok(leader)
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let _ = write!(out, "\n--- {} ---\n{}", m.name, m.log());
        }
        out
    }

    /// The cluster's directory (configs and logs of every member, etcd's data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Gives `dir` to the `postgres` user when we are root.
async fn hand_over(dir: &Path) -> Result<(), Error> {
    if !is_root() {
        return Ok(());
    }
    let chown = find_binary("chown", "apt-get install coreutils")?;
    run(
        Command::new(chown).arg("-R").arg("postgres:").arg(dir),
        "chown -R postgres: <fixture dir>",
        COMMAND_TIMEOUT,
    )
    .await
    .map(drop)
}

/// A member's `patroni.yml`.
fn config(m: &PatroniMember, etcd: SocketAddr) -> String {
    let dir = m.dir.display();
    format!(
        r#"scope: {SCOPE}
name: {name}
log:
  level: INFO
restapi:
  listen: {api}
  connect_address: {api}
etcd3:
  hosts: {etcd}
bootstrap:
  dcs:
    ttl: {PATRONI_TTL}
    loop_wait: 1
    retry_timeout: 2
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        wal_log_hints: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication all 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {dir}/data
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  authentication:
    replication:
      username: postgres
    superuser:
      username: postgres
  parameters:
    unix_socket_directories: {dir}
    fsync: "off"
    shared_buffers: 16MB
    max_connections: 50
"#,
        name = m.name,
        api = m.api,
        pg = m.pg_port,
        bin = m.pg_bin.display(),
    )
}

//! Postgres 15 fixtures: a primary and streaming standbys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::Command;

use super::Error;
use super::netns::{NetNs, bind_addr, not_in_netns};
use super::postgres_tls::NodeSetup;
mod cluster;

pub use cluster::PgCluster;

use super::process::{
    COMMAND_TIMEOUT, POLL, STARTUP_TIMEOUT, ServerProcess, find_binary, is_root, log_tail,
    poll_until, run, send_signal,
};

/// Environment variable naming the directory that holds `initdb`, `pg_ctl`, `postgres`,
/// `pg_basebackup`, `pg_isready` and `psql`. Default: `/usr/lib/postgresql/15/bin`.
pub const PG_BIN_ENV: &str = "SWITCHOVER_PG_BIN";

const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PG_HINT: &str = "apt-get install postgresql-15 (or set SWITCHOVER_PG_BIN to the directory holding initdb, pg_ctl and postgres)";
/// The unprivileged user the server runs as when the tests run as root.
const PG_USER: &str = "postgres";

/// Where the Postgres binaries are, and how to run them.
#[derive(Debug, Clone)]
struct PgBin {
    dir: PathBuf,
}

impl PgBin {
    fn default_dir() -> PathBuf {
        std::env::var_os(PG_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN))
    }

    fn locate(dir: PathBuf) -> Result<Self, Error> {
        let bin = Self { dir };
        bin.tool("initdb")?;
        Ok(bin)
    }

    fn tool(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::MissingBinary {
                binary: path.display().to_string(),
                hint: PG_HINT.to_owned(),
            })
        }
    }

    /// A command for a server-side tool, run as `postgres` when we are root (the server refuses
    /// to run as root). `setpriv` execs the tool, so a spawned server is our direct child.
    fn server_command(&self, name: &str, cwd: &Path) -> Result<Command, Error> {
        let tool = self.tool(name)?;
        let mut cmd = if is_root() {
            let setpriv = find_binary("setpriv", "apt-get install util-linux")?;
            let mut cmd = Command::new(setpriv);
            cmd.args([
                "--reuid",
                PG_USER,
                "--regid",
                PG_USER,
                "--init-groups",
                "--",
            ]);
            cmd.arg(tool);
            cmd
        } else {
            Command::new(tool)
        };
        cmd.current_dir(cwd).env("HOME", cwd);
        Ok(cmd)
    }
}

/// Gives `dir` to the `postgres` user when we are root.
async fn hand_over(dir: &Path) -> Result<(), Error> {
    if !is_root() {
        return Ok(());
    }
    let chown = find_binary("chown", "apt-get install coreutils")?;
    run(
        Command::new(chown)
            .arg("-R")
            .arg(format!("{PG_USER}:"))
            .arg(dir),
        "chown -R postgres: <fixture dir>",
        COMMAND_TIMEOUT,
    )
    .await
    .map(drop)
}

/// One Postgres 15 server on `127.0.0.1` with `trust` authentication for user `postgres`, in its
/// own temporary directory; stopped on drop (`SIGQUIT`, i.e. immediate shutdown, then `SIGKILL`).
///
/// Settings chosen to start fast and replicate: `fsync=off`, `full_page_writes=off`,
/// `shared_buffers=16MB`, `max_connections=50`, `wal_level=replica`, `hot_standby=on`,
/// `max_wal_senders=10`, `wal_keep_size=128MB`, `wal_retrieve_retry_interval=200ms`.
#[derive(Debug)]
pub struct PgNode {
    // Fields drop in order: the process goes before its directory.
    process: Option<ServerProcess>,
    name: String,
    port: u16,
    dir: TempDir,
    bin: PgBin,
    setup: NodeSetup,
    /// `127.0.0.1`, or the address of [`netns`](Self::netns).
    host: String,
    netns: Option<NetNs>,
}

impl PgNode {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn log(&self) -> String {
        log_tail(&self.log_path(), 20)
    }

    /// `127.0.0.1:port`; in a namespace, the namespace's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((bind_addr(self.netns.as_ref()), self.port))
    }

    /// `127.0.0.1`, or the namespace's address for a node in one.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The network namespace the node runs in (`None` on the host's loopback).
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// Drops every packet to and from the node's namespace ([`NetNs::partition`]): clients and
    /// replication peers see silence. The fixture's own [`sql`](Self::sql) goes through the
    /// Unix socket and keeps working. Fails with [`Error::Invalid`] for a node not started in a
    /// namespace.
    pub async fn partition(&self) -> Result<(), Error> {
        self.own_netns()?.partition().await
    }

    /// Undoes [`partition`](Self::partition) ([`NetNs::heal`]).
    pub async fn heal(&self) -> Result<(), Error> {
        self.own_netns()?.heal().await
    }

    fn own_netns(&self) -> Result<&NetNs, Error> {
        self.netns
            .as_ref()
            .ok_or_else(|| not_in_netns(&format!("{} on port {}", self.name, self.port)))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq key/value connection string:
    /// `host=127.0.0.1 port=N user=postgres dbname=postgres` (the namespace's address for a
    /// node in one).
    pub fn conn_string(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.host, self.port
        )
    }

    /// A URL: `postgres://postgres@127.0.0.1:N/postgres` (the namespace's address for a node
    /// in one).
    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/postgres", self.addr())
    }

    /// The directory of the server's Unix socket (`unix_socket_directories`): connect with
    /// `host=<this dir> port=<port>`; the socket file is `.s.PGSQL.<port>` in it.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `true` when the server runs with `ssl=on` (see [`PgCluster::builder`]).
    pub fn tls(&self) -> bool {
        self.setup.tls()
    }

    /// The postmaster's process id while the fixture holds a process.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    async fn spawn_and_wait(&mut self) -> Result<(), Error> {
        let dir = self.dir.path().to_path_buf();
        let mut cmd = self.bin.server_command("postgres", &dir)?;
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string());
        cmd.arg("-c").arg(format!("listen_addresses={}", self.host));
        cmd.arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()));
        for setting in [
            "fsync=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=50",
            "wal_level=replica",
            "hot_standby=on",
            "max_wal_senders=10",
            "max_replication_slots=10",
            "wal_keep_size=128MB",
            "wal_retrieve_retry_interval=200ms",
            "wal_receiver_status_interval=1s",
            "logging_collector=off",
        ] {
            cmd.arg("-c").arg(setting);
        }
        for setting in self.setup.settings(&dir) {
            cmd.arg("-c").arg(setting);
        }
        let name = format!("{} on port {}", self.name, self.port);
        if let Some(ns) = &self.netns {
            cmd = ns.wrap(&cmd);
        }
        let process = ServerProcess::spawn_command(&name, cmd, &dir, &self.log_path())?
            .with_drop_signal("QUIT");
        self.process = Some(process);
        let isready = self.bin.tool("pg_isready")?;
        poll_until(STARTUP_TIMEOUT, POLL, || {
            let running = self
                .process
                .as_mut()
                .map_or(Ok(()), ServerProcess::ensure_running);
            let mut probe = Command::new(&isready);
            probe.args([
                "-q",
                "-t",
                "1",
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ]);
            async move {
                running?;
                let status = probe.status().await;
                Ok(status.is_ok_and(|s| s.success()).then_some(()))
            }
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("{name} to accept connections"),
                STARTUP_TIMEOUT,
                self.log(),
            )
        })
    }

    /// Runs SQL with `psql` (as user `postgres`, `ON_ERROR_STOP`, one implicit transaction for
    /// the whole string, 30 s timeout) and returns the rows of the last statement, unaligned
    /// (`|` between columns, one row per line, no header).
    ///
    /// A server error becomes [`Error::Sql`] with its SQLSTATE (see [`Error::sqlstate`]).
    pub async fn sql(&self, sql: &str) -> Result<String, Error> {
        let psql = self.bin.tool("psql")?;
        let mut cmd = Command::new(psql);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        // Through the Unix socket (`local ... trust`): the TCP rules of a TLS or password
        // cluster do not apply to the fixture itself.
        .arg("-h")
        .arg(self.socket_dir())
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGAPPNAME", "switchover-testing");
        match run(&mut cmd, "psql", COMMAND_TIMEOUT).await {
            Ok(out) => Ok(out.trim_end().to_owned()),
            Err(Error::Command { output, .. }) => Err(sql_error(&output)),
            Err(e) => Err(e),
        }
    }

    /// Whether the server is in recovery (a standby): `SELECT pg_is_in_recovery()`.
    pub async fn is_in_recovery(&self) -> Result<bool, Error> {
        Ok(self.sql("SELECT pg_is_in_recovery()").await? == "t")
    }

    /// The server's WAL position: `pg_current_wal_lsn()` on a primary,
    /// `pg_last_wal_replay_lsn()` on a standby.
    pub async fn wal_lsn(&self) -> Result<String, Error> {
        self.sql(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
             ELSE pg_current_wal_lsn() END",
        )
        .await
    }

    /// Waits until this standby has replayed WAL up to `lsn` (e.g. from the primary's
    /// [`wal_lsn`](Self::wal_lsn)).
    pub async fn wait_for_replay(&self, lsn: &str, timeout: Duration) -> Result<(), Error> {
        if lsn.is_empty() || !lsn.chars().all(|c| c.is_ascii_hexdigit() || c == '/') {
            return Err(Error::Invalid(format!("{lsn:?} is not a WAL position")));
        }
        let query = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        poll_until(timeout, POLL, || async {
            Ok(self.sql(&query).await.is_ok_and(|r| r == "t").then_some(()))
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("{} to replay up to {lsn}", self.addr()),
                timeout,
                self.log(),
            )
        })
    }

    /// Kills the server like a crash: `pg_ctl stop -m immediate`, then reaps it.
    pub async fn kill(&mut self) -> Result<(), Error> {
        self.stop_with("immediate").await
    }

    /// Stops the server cleanly: `pg_ctl stop -m fast`.
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.stop_with("fast").await
    }

    async fn stop_with(&mut self, mode: &str) -> Result<(), Error> {
        // A paused server would not act on pg_ctl's signal.
        self.resume()?;
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        if process.exited().is_some() {
            return Ok(());
        }
        let data = self.data_dir();
        let mut cmd = self.bin.server_command("pg_ctl", self.dir.path())?;
        cmd.arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", mode, "-w", "-t", "10"]);
        let stopped = run(&mut cmd, &format!("pg_ctl stop -m {mode}"), COMMAND_TIMEOUT).await;
        match process.wait_exit(Duration::from_secs(5)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                process.kill().await?;
                stopped.and(Err(e))
            }
        }
    }

    /// Starts the server again on the same port and data directory (after [`kill`](Self::kill)
    /// or [`stop`](Self::stop); a running server is stopped first). A killed primary comes back
    /// as a primary after crash recovery, a standby as a standby.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// Freezes the server as a stuck host or a paused VM would look: `SIGSTOP` to the
    /// postmaster, then to every process it started (backends, WAL sender and writer,
    /// checkpointer...). The kernel keeps accepting and acknowledging TCP connections, so
    /// clients see no error, only silence: connects hang in the login, queries never answer.
    /// Undone by [`resume`](Self::resume), and before [`stop`](Self::stop), [`kill`](Self::kill),
    /// [`restart`](Self::restart) and on drop.
    ///
    /// # Errors
    ///
    /// The server is not running, or a signal could not be sent.
    pub fn pause(&mut self) -> Result<(), Error> {
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| Error::Invalid(format!("{} is not running", self.name)))?;
        let postmaster = process.pid();
        // The postmaster first, so it forks no new child; then its children, listed twice in
        // case one was forked just before the postmaster stopped.
        process.signal("STOP")?;
        for _ in 0..2 {
            for child in children_of(postmaster) {
                // A child may have exited since it was listed.
                let _ = send_signal(child, "STOP");
            }
        }
        Ok(())
    }

    /// Undoes [`pause`](Self::pause): `SIGCONT` to the postmaster's children, then to the
    /// postmaster. Harmless on a server that is not paused.
    ///
    /// # Errors
    ///
    /// A signal could not be sent to the postmaster.
    pub fn resume(&mut self) -> Result<(), Error> {
        let Some(process) = self.process.as_mut() else {
            return Ok(());
        };
        if process.exited().is_some() {
            return Ok(());
        }
        for child in children_of(process.pid()) {
            let _ = send_signal(child, "CONT");
        }
        process.signal("CONT")
    }

    /// Promotes a standby: `pg_ctl promote`, then waits (up to 30 s) until
    /// `pg_is_in_recovery()` is false.
    pub async fn promote(&mut self) -> Result<(), Error> {
        let mut cmd = self.bin.server_command("pg_ctl", self.dir.path())?;
        cmd.arg("promote")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "30"]);
        run(&mut cmd, "pg_ctl promote", COMMAND_TIMEOUT).await?;
        poll_until(STARTUP_TIMEOUT, POLL, || async {
            Ok((!self.is_in_recovery().await.unwrap_or(true)).then_some(()))
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("{} to leave recovery", self.addr()),
                STARTUP_TIMEOUT,
                self.log(),
            )
        })
    }

    /// Fences the server read-only: `ALTER SYSTEM SET default_transaction_read_only = on` and
    /// `SELECT pg_reload_conf()`, then waits until new sessions see it. Writes in new
    /// transactions then fail with SQLSTATE `25006` (`read_only_sql_transaction`).
    pub async fn fence_read_only(&self) -> Result<(), Error> {
        self.set_read_only(true).await
    }

    /// Lifts [`fence_read_only`](Self::fence_read_only):
    /// `ALTER SYSTEM RESET default_transaction_read_only` and a reload.
    pub async fn unfence(&self) -> Result<(), Error> {
        self.set_read_only(false).await
    }

    async fn set_read_only(&self, on: bool) -> Result<(), Error> {
        // ALTER SYSTEM cannot run in the implicit transaction of a multi-statement string.
        if on {
            self.sql("ALTER SYSTEM SET default_transaction_read_only = on")
                .await?;
        } else {
            self.sql("ALTER SYSTEM RESET default_transaction_read_only")
                .await?;
        }
        self.sql("SELECT pg_reload_conf()").await?;
        let want = if on { "on" } else { "off" };
        let timeout = Duration::from_secs(10);
        poll_until(timeout, POLL, || async {
            Ok((self.sql("SHOW default_transaction_read_only").await? == want).then_some(()))
        })
        .await?
        .ok_or_else(|| Error::timeout("the read-only setting to take effect", timeout, ""))
    }

    /// Points this standby at another primary: `ALTER SYSTEM SET primary_conninfo` and a
    /// reload (the WAL receiver reconnects). Following a promoted standby works when this
    /// standby has not replayed past the point where the new primary's timeline forked.
    pub async fn follow(&self, primary: &PgNode) -> Result<(), Error> {
        self.sql(&format!(
            "ALTER SYSTEM SET primary_conninfo = 'host={} port={} user=postgres'",
            primary.host, primary.port
        ))
        .await?;
        self.sql("SELECT pg_reload_conf()").await.map(drop)
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        // Children left stopped would outlive the postmaster's shutdown.
        let _ = self.resume();
    }
}

/// The processes whose parent is `parent` (from `/proc/<pid>/stat`); empty where `/proc` cannot
/// be read.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

/// Turns psql's stderr into an [`Error::Sql`], picking the SQLSTATE out of the verbose
/// `ERROR:  25006: message` form.
fn sql_error(output: &str) -> Error {
    for line in output.lines() {
        for severity in ["ERROR:  ", "FATAL:  ", "PANIC:  "] {
            if let Some(at) = line.find(severity) {
                let rest = &line[at + severity.len()..];
                let code = rest
                    .get(..5)
                    .filter(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric()));
                if let (Some(code), Some(message)) =
                    (code, rest.get(5..).and_then(|m| m.strip_prefix(": ")))
                {
                    return Error::Sql {
                        sqlstate: Some(code.to_owned()),
                        message: message.to_owned(),
                    };
                }
                return Error::Sql {
                    sqlstate: None,
                    message: rest.to_owned(),
                };
            }
        }
    }
    Error::Sql {
        sqlstate: None,
        message: output.trim().to_owned(),
    }
}

//! Process plumbing shared by the fixtures: finding binaries, free ports, spawning servers,
//! signals, and stopping them on drop.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::Error;

/// How long a fixture waits for a server to become ready.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long helper commands (`initdb`, `pg_ctl`, `psql`, ...) may run.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval of the readiness loops.
pub(crate) const POLL: Duration = Duration::from_millis(25);
/// How many times a fixture retries with a new port when its port was taken meanwhile.
pub(crate) const PORT_ATTEMPTS: usize = 5;

/// Runs `check` at once and then every `every` until it yields a value or returns an error, for
/// at most `timeout`: `Ok(Some(value))` as soon as it yields one, the first error it returns, or
/// `Ok(None)` when a check that ended at or after the deadline yielded nothing. The caller turns
/// `None` into its [`Error::timeout`], so the detail (a log tail) is read only then.
///
/// `check` is a closure returning a future rather than an async closure: the future of an async
/// closure called in a generic function is not provably `Send`, which would make the fixtures'
/// futures unusable with `tokio::spawn`. A check that must touch `&mut` state (e.g.
/// [`ServerProcess::ensure_running`]) does so in the closure, before it builds the future.
pub(crate) async fn poll_until<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<Option<T>, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(every).await;
    }
}

/// Finds `name` (a bare program name searched in `PATH`, or a path) or fails with `hint`.
pub(crate) fn find_binary(name: &str, hint: &str) -> Result<PathBuf, Error> {
    let missing = || Error::MissingBinary {
        binary: name.to_owned(),
        hint: hint.to_owned(),
    };
    let candidate = Path::new(name);
    if candidate.components().count() > 1 {
        return if candidate.is_file() {
            Ok(candidate.to_path_buf())
        } else {
            Err(missing())
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Debian keeps a few daemons in sbin directories that are not always in a test's PATH.
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(missing)
}

/// Whether this process runs with effective uid 0 (cached).
pub(crate) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A free TCP port on 127.0.0.1, never the same one twice in this process.
pub(crate) fn free_port() -> Result<u16, Error> {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    for _ in 0..64 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of a free port", e))?
            .port();
        let mut given = given.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Invalid(
        "could not find an unused port on 127.0.0.1".into(),
    ))
}

/// Whether a server log says its port was taken (so the fixture should retry on another one).
pub(crate) fn port_in_use(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("BindException")
}

/// Reads the last `lines` lines of a log file (empty when it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a short-lived helper command to completion and returns its stdout.
pub(crate) async fn run(cmd: &mut Command, what: &str, timeout: Duration) -> Result<String, Error> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("spawning `{what}`"), e))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|e| Error::io(format!("waiting for `{what}`"), e))?,
        Err(_) => return Err(Error::timeout(format!("`{what}` to finish"), timeout, "")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        Err(Error::Command {
            command: what.to_owned(),
            status: output.status.to_string(),
            output: if stderr.is_empty() {
                stdout.trim().to_owned()
            } else {
                stderr
            },
        })
    }
}

/// Sends `signal` (a name such as `KILL`, `STOP`, `CONT`, `QUIT`) to `pid` with `/bin/kill`.
///
/// Only ever called with the pid of a child this process spawned and has not reaped yet, so the
/// pid cannot have been reused.
pub(crate) fn send_signal(pid: u32, signal: &str) -> Result<(), Error> {
    let kill = find_binary("kill", "apt-get install procps")?;
    let status = std::process::Command::new(kill)
        .args(["-s", signal, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| Error::io(format!("running kill -s {signal} {pid}"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("kill -s {signal} {pid}"),
            status: status.to_string(),
            output: String::new(),
        })
    }
}

/// Rewrites `cmd` so that the server it starts is killed (`SIGKILL`) when the test process
/// dies, however it dies (a panic, a stack overflow, `abort`, `SIGKILL`): every `setpriv` on the
/// exec chain gets `--pdeathsig KILL`, and a chain that does not start with `setpriv` is
/// prefixed with `setpriv --pdeathsig KILL --`.
///
/// The kernel clears the parent-death signal when the credentials change, so a `setpriv
/// --reuid` further down the chain (Postgres run as `postgres`) sets it again itself (it does so
/// after changing the ids); `ip netns exec` keeps it. Every program on the chain execs the
/// next one, so the server keeps the pid of the spawned child.
fn with_parent_death_signal(cmd: &Command) -> Result<std::process::Command, Error> {
    let std = cmd.as_std();
    let is_setpriv = |p: &OsStr| Path::new(p).file_name() == Some(OsStr::new("setpriv"));
    let mut chain: Vec<OsString> = Vec::new();
    if !is_setpriv(std.get_program()) {
        let setpriv = find_binary("setpriv", "apt-get install util-linux")?;
        chain.extend([
            setpriv.into_os_string(),
            "--pdeathsig".into(),
            "KILL".into(),
        ]);
        chain.push("--".into());
    }
    for part in std::iter::once(std.get_program()).chain(std.get_args()) {
        chain.push(part.to_owned());
        if is_setpriv(part) {
            chain.extend(["--pdeathsig".into(), "KILL".into()]);
        }
    }
    let mut out = std::process::Command::new(&chain[0]);
    out.args(&chain[1..]);
    for (key, value) in std.get_envs() {
        match value {
            Some(value) => out.env(key, value),
            None => out.env_remove(key),
        };
    }
    if let Some(dir) = std.get_current_dir() {
        out.current_dir(dir);
    }
    Ok(out)
}

/// Spawns `cmd` from one thread that lives as long as the process: the parent-death signal
/// fires when the *thread* that forked the child ends, so forking from a test's thread or a
/// runtime's blocking pool would kill servers whose fixture moved elsewhere.
fn spawn_from_spawner_thread(cmd: std::process::Command) -> std::io::Result<Child> {
    type Job = (
        std::process::Command,
        mpsc::SyncSender<std::io::Result<Child>>,
    );
    static SPAWNER: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("switchover-fixture-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .map(|_| tx)
            .map_err(|e| e.to_string())
    });
    let tx = spawner
        .as_ref()
        .map_err(|e| std::io::Error::other(format!("starting the spawner thread: {e}")))?;
    let (reply, answer) = mpsc::sync_channel(1);
    let gone = || std::io::Error::other("the fixture spawner thread is gone");
    tx.send((cmd, reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// A long-running server process started by a fixture.
///
/// The process is killed when the test process dies (see [`with_parent_death_signal`]), so an
/// aborted test leaves no server behind. On drop: if `drop_signal` is set it is sent first
/// (after `CONT`, so a paused process can act on it) and the process gets up to two seconds to
/// exit; then `SIGKILL`, and up to one second to be reaped. Drop never panics.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    drop_signal: Option<&'static str>,
}

impl ServerProcess {
    /// Spawns `program args` with stdout and stderr appended to `log`.
    pub(crate) fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        cwd: &Path,
        log: &Path,
    ) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Self::spawn_command(name, cmd, cwd, log)
    }

    /// Spawns a prepared command with stdout and stderr appended to `log`. Only the program,
    /// arguments, environment and directory of `cmd` are used.
    pub(crate) fn spawn_command(
        name: &str,
        cmd: Command,
        cwd: &Path,
        log: &Path,
    ) -> Result<Self, Error> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| Error::io(format!("opening log file {}", log.display()), e))
        };
        let mut cmd = with_parent_death_signal(&cmd)?;
        cmd.current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        let child =
            spawn_from_spawner_thread(cmd).map_err(|e| Error::io(format!("spawning {name}"), e))?;
        let pid = child.id();
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            log: log.to_path_buf(),
            drop_signal: None,
        })
    }

    /// Sets the signal sent before `SIGKILL` on drop (Postgres wants `QUIT` so that it takes its
    /// children down with it).
    pub(crate) fn with_drop_signal(mut self, signal: &'static str) -> Self {
        self.drop_signal = Some(signal);
        self
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log, 20)
    }

    /// `Some(status)` when the process has exited (and is now reaped).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An [`Error::Exited`] when the process is gone, with the tail of its log.
    pub(crate) fn ensure_running(&mut self) -> Result<(), Error> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(Error::Exited {
                what: self.name.clone(),
                status: status.to_string(),
                log: self.log_tail(),
            }),
        }
    }

    /// Sends a signal, unless the process already exited.
    pub(crate) fn signal(&mut self, signal: &str) -> Result<(), Error> {
        self.ensure_running()?;
        send_signal(self.pid, signal)
    }

    /// `SIGKILL`, then waits for the process to be reaped.
    pub(crate) async fn kill(&mut self) -> Result<(), Error> {
        if self.exited().is_some() {
            return Ok(());
        }
        self.child
            .kill()
            .map_err(|e| Error::io(format!("killing {}", self.name), e))?;
        self.wait_exit(Duration::from_secs(5)).await.map(drop)
    }

    /// Waits for the process to exit on its own (polling every 10 ms).
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => {}
                Err(e) => return Err(Error::io(format!("waiting for {}", self.name), e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::timeout(
                    format!("{} to exit", self.name),
                    timeout,
                    self.log_tail(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn reaped_within(&mut self, limit: Duration) -> bool {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        loop {
            if self.exited().is_some() {
                return true;
            }
            if waited >= limit {
                return false;
            }
            std::thread::sleep(step);
            waited += step;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Some(signal) = self.drop_signal {
            let _ = send_signal(self.pid, "CONT");
            if send_signal(self.pid, signal).is_ok() && self.reaped_within(Duration::from_secs(2)) {
                return;
            }
        }
        if self.child.kill().is_ok() && !self.reaped_within(Duration::from_secs(1)) {
            tracing::warn!(pid = self.pid, name = %self.name, "killed server process not reaped within 1 s");
        }
    }
}

//! Real network partitions: a Linux network namespace behind a veth pair, cut by packet drops.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::Error;
use super::process::{COMMAND_TIMEOUT, find_binary, is_root, run};

mod sweep;

pub use sweep::sweep_stale;

/// The prefix of every namespace the kit creates: `swo-<pid>-<counter>`.
pub const NETNS_PREFIX: &str = "swo-";

const IP_HINT: &str = "apt-get install iproute2";
const IPTABLES_HINT: &str = "apt-get install iptables";
/// The host-side interfaces are `swo<index>`; the index picks the /30 and is claimed by creating
/// the interface, which the kernel does at most once system-wide.
const LINK_PREFIX: &str = "swo";
/// Number of /30 subnets in 10.203.0.0/16.
const SUBNETS: u32 = 1 << 14;
/// How many indexes [`NetNs::create`] tries before giving up.
const INDEX_ATTEMPTS: u32 = 256;
/// The interface inside the namespace.
const NS_LINK: &str = "eth0";

/// Which packets a partition drops, inside the namespace (loopback is never touched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// Nothing is dropped.
    None,
    /// Everything in both directions: the namespace is silent and deaf.
    Both,
    /// Packets coming in: the namespace's processes hear nothing, what they send still leaves.
    Inbound,
    /// Packets going out: the namespace's processes still receive, nothing they send arrives.
    Outbound,
}

impl Cut {
    /// The `filter` table for `iptables-restore`: the chains' policies stay `ACCEPT`, the cut is
    /// one `DROP` rule per direction, so a heal is one atomic table swap.
    fn table(self) -> String {
        let (inbound, outbound) = match self {
            Cut::None => (false, false),
            Cut::Both => (true, true),
            Cut::Inbound => (true, false),
            Cut::Outbound => (false, true),
        };
        let mut table = String::from(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        if inbound {
            table.push_str("-A INPUT ! -i lo -j DROP\n");
        }
        if outbound {
            table.push_str("-A OUTPUT ! -o lo -j DROP\n");
        }
        table.push_str("COMMIT\n");
        table
    }
}

/// Where a fixture's server runs: on the host's loopback, in a namespace of its own, or in a
/// given one.
#[derive(Clone, Debug, Default)]
pub(crate) enum Placement {
    /// `127.0.0.1` in the test's own namespace.
    #[default]
    Loopback,
    /// A fresh [`NetNs`] per server.
    Fresh,
    /// This namespace.
    In(NetNs),
}

impl Placement {
    /// The namespace a server goes to (creating one for [`Placement::Fresh`]).
    pub(crate) async fn resolve(&self) -> Result<Option<NetNs>, Error> {
        match self {
            Placement::Loopback => Ok(None),
            Placement::Fresh => NetNs::create().await.map(Some),
            Placement::In(ns) => Ok(Some(ns.clone())),
        }
    }

    /// Whether servers go to namespaces.
    pub(crate) fn is_netns(&self) -> bool {
        !matches!(self, Placement::Loopback)
    }
}

/// The address a server placed in `netns` binds: the namespace's, else `127.0.0.1`.
pub(crate) fn bind_addr(netns: Option<&NetNs>) -> Ipv4Addr {
    netns.map_or(Ipv4Addr::LOCALHOST, NetNs::addr)
}

/// The [`Error`] of a partition asked of a server that is not in a namespace.
pub(crate) fn not_in_netns(what: &str) -> Error {
    Error::Invalid(format!(
        "{what} does not run in a network namespace (start it with a `*_in` / `*_in_netns` constructor)"
    ))
}

/// A Linux network namespace joined to the test's own (root) namespace by a veth pair, whose
/// traffic can be dropped on demand: a real, silent partition.
///
/// # Addressing
///
/// Each namespace gets a `/30` of `10.203.0.0/16`: the host side of the veth (interface
/// `swo<index>` in the root namespace) is [`host_addr`](Self::host_addr), the side inside
/// (`eth0`) is [`addr`](Self::addr). Inside, `lo` is up and the default route goes to the host
/// side, and the host side forwards (`net.ipv4.conf.swo<index>.forwarding=1`, that interface
/// only; the global `ip_forward` is not touched), so:
///
/// - the test process reaches a server bound to [`addr`](Self::addr) directly;
/// - processes in two namespaces reach each other's `addr` (a replica in one namespace
///   replicates from a primary in another);
/// - a process inside reaches a root-namespace service that listens on the host address or on
///   `0.0.0.0`, through [`host_addr`](Self::host_addr); `127.0.0.1` inside is the namespace's own
///   loopback, so services bound to the host's `127.0.0.1` are out of reach.
///
/// # Partitions
///
/// [`partition`](Self::partition) installs `DROP` rules (iptables, `filter` table, inside the
/// namespace, everything except `lo`) and [`heal`](Self::heal) removes them. A drop sends
/// nothing back (no RST, no ICMP): connects time out, established connections hang, and only
/// the peers' keepalive, `TCP_USER_TIMEOUT` or application timeouts notice.
/// [`partition_inbound`](Self::partition_inbound) and
/// [`partition_outbound`](Self::partition_outbound) cut one direction only.
///
/// # Lifetime
///
/// `NetNs` is a cheap handle (`Clone` shares the namespace). When the last handle drops, the
/// veth pair and the namespace are deleted (the rules go with it); errors on that path are
/// logged, never panicked on. A fixture started in a namespace holds a handle, so the namespace
/// outlives its servers. Namespaces are named `swo-<pid>-<n>`; the first
/// [`create`](Self::create) of a process removes those left behind by processes that no longer
/// run (see [`sweep_stale`]).
///
/// # Requirements
///
/// Root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`), `ip` from iproute2 and `iptables` (either
/// backend). A missing one is an [`Error`] naming it and its install command
/// (`apt-get install iproute2 iptables`), never a silent skip.
///
/// ```no_run
/// use switchover::testing::{Error, NetNs, RedisServer};
///
/// # async fn drill() -> Result<(), Error> {
/// let ns = NetNs::create().await?;
/// let server = RedisServer::start_in(&ns).await?;
/// assert_eq!(server.addr().ip(), ns.addr());
/// ns.partition().await?; // the server goes silent
/// ns.heal().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NetNs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    link: String,
    host_addr: Ipv4Addr,
    addr: Ipv4Addr,
    tools: Tools,
    cut: Mutex<Cut>,
}

#[derive(Debug, Clone)]
struct Tools {
    ip: PathBuf,
    iptables_restore: PathBuf,
}

impl Tools {
    fn find() -> Result<Self, Error> {
        if !is_root() {
            return Err(Error::Invalid(
                "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run the tests \
                 as root, e.g. `sudo -E cargo test`"
                    .into(),
            ));
        }
        Ok(Self {
            ip: find_binary("ip", IP_HINT)?,
            iptables_restore: find_binary("iptables-restore", IPTABLES_HINT)?,
        })
    }
}

/// The host and namespace addresses of subnet `index` (0..16384) of 10.203.0.0/16.
fn subnet(index: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(10, 203, 0, 0)) + (index % SUBNETS) * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

impl NetNs {
    /// Creates a namespace `swo-<pid>-<n>` with `lo` up, a veth pair with a fresh `/30` of
    /// `10.203.0.0/16`, a default route to the host side, and no partition.
    ///
    /// Fails with an [`Error`] naming what is missing when not root or when `ip` or
    /// `iptables-restore` is not installed, and with [`Error::Command`] (the tool's message)
    /// when the kernel refuses (no network namespace support).
    pub async fn create() -> Result<Self, Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static SWEPT: OnceLock<()> = OnceLock::new();
        let tools = Tools::find()?;
        if SWEPT.set(()).is_ok() {
            // Leftovers of an aborted earlier run; a failure here must not stop this run.
            if let Err(e) = sweep_stale().await {
                tracing::warn!(error = %e, "sweeping stale network namespaces failed");
            }
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{NETNS_PREFIX}{pid}-{n}");
        ip(&tools, &["netns", "add", &name]).await?;
        // From here on, Drop deletes what was made, also when a later step fails.
        let mut ns = Inner {
            name,
            link: String::new(),
            host_addr: Ipv4Addr::UNSPECIFIED,
            addr: Ipv4Addr::UNSPECIFIED,
            tools,
            cut: Mutex::new(Cut::None),
        };
        let start = pid.wrapping_mul(64).wrapping_add(n.wrapping_mul(7));
        ns.claim_link(start).await?;
        ns.configure().await?;
        ns.apply(Cut::None).await?;
        Ok(Self {
            inner: Arc::new(ns),
        })
    }

    /// The namespace's name, `swo-<pid>-<n>` (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address inside the namespace (`eth0`): servers started in it bind this address.
    pub fn addr(&self) -> Ipv4Addr {
        self.inner.addr
    }

    /// The host side of the veth pair, in the root namespace: the namespace's default gateway.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.inner.host_addr
    }

    /// What is cut now.
    pub fn cut(&self) -> Cut {
        *crate::sync::lock(&self.inner.cut)
    }

    /// Whether any direction is cut.
    pub fn is_partitioned(&self) -> bool {
        self.cut() != Cut::None
    }

    /// Drops every packet in and out of the namespace (except on `lo`), silently.
    pub async fn partition(&self) -> Result<(), Error> {
        self.inner.apply(Cut::Both).await
    }

    /// Drops the packets coming into the namespace only.
    pub async fn partition_inbound(&self) -> Result<(), Error> {
        self.inner.apply(Cut::Inbound).await
    }

    /// Drops the packets leaving the namespace only.
    pub async fn partition_outbound(&self) -> Result<(), Error> {
        self.inner.apply(Cut::Outbound).await
    }

    /// Removes every drop rule; connections that did not time out meanwhile carry on.
    /// Idempotent.
    pub async fn heal(&self) -> Result<(), Error> {
        self.inner.apply(Cut::None).await
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> program`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(&self.inner.tools.ip);
        cmd.args(["netns", "exec", &self.inner.name]).arg(program);
        cmd
    }

    /// `cmd` (its program, arguments, environment and directory) run inside the namespace.
    pub(crate) fn wrap(&self, cmd: &Command) -> Command {
        let std = cmd.as_std();
        let mut out = self.command(std.get_program());
        out.args(std.get_args());
        for (key, value) in std.get_envs() {
            match value {
                Some(value) => out.env(key, value),
                None => out.env_remove(key),
            };
        }
        if let Some(dir) = std.get_current_dir() {
            out.current_dir(dir);
        }
        out
    }
}

impl Inner {
    /// Creates the veth pair with its host side named after the first free index from `start`.
    async fn claim_link(&mut self, start: u32) -> Result<(), Error> {
        for attempt in 0..INDEX_ATTEMPTS {
            let index = start.wrapping_add(attempt) % SUBNETS;
            let link = format!("{LINK_PREFIX}{index}");
            let args = [
                "link", "add", &link, "type", "veth", "peer", "name", NS_LINK, "netns", &self.name,
            ];
            match ip(&self.tools, &args).await {
                Ok(()) => {
                    (self.host_addr, self.addr) = subnet(index);
                    self.link = link;
                    return Ok(());
                }
                Err(Error::Command { output, .. }) if output.contains("File exists") => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Invalid(format!(
            "no free {LINK_PREFIX}<n> interface after {INDEX_ATTEMPTS} tries"
        )))
    }

    async fn configure(&self) -> Result<(), Error> {
        let host = format!("{}/30", self.host_addr);
        let inside = format!("{}/30", self.addr);
        let gateway = self.host_addr.to_string();
        let (name, link) = (self.name.as_str(), self.link.as_str());
        ip(&self.tools, &["link", "set", link, "alias", name]).await?;
        ip(&self.tools, &["addr", "add", &host, "dev", link]).await?;
        ip(&self.tools, &["link", "set", link, "up"]).await?;
        let forwarding = format!("/proc/sys/net/ipv4/conf/{link}/forwarding");
        std::fs::write(&forwarding, "1")
            .map_err(|e| Error::io(format!("enabling forwarding in {forwarding}"), e))?;
        ip(
            &self.tools,
            &["-n", name, "addr", "add", &inside, "dev", NS_LINK],
        )
        .await?;
        ip(&self.tools, &["-n", name, "link", "set", NS_LINK, "up"]).await?;
        ip(&self.tools, &["-n", name, "link", "set", "lo", "up"]).await?;
        ip(
            &self.tools,
            &["-n", name, "route", "add", "default", "via", &gateway],
        )
        .await
    }

    /// Replaces the namespace's `filter` table with the one of `cut` (one atomic swap).
    async fn apply(&self, cut: Cut) -> Result<(), Error> {
        let mut cmd = Command::new(&self.tools.ip);
        cmd.args(["netns", "exec", &self.name])
            .arg(&self.tools.iptables_restore)
            .arg("-w")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("iptables-restore in {} ({cut:?})", self.name);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawning {what}"), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(cut.table().as_bytes())
                .await
                .map_err(|e| Error::io(format!("writing the rules to {what}"), e))?;
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| Error::timeout(what.clone(), COMMAND_TIMEOUT, ""))?
            .map_err(|e| Error::io(format!("waiting for {what}"), e))?;
        if !output.status.success() {
            return Err(Error::Command {
                command: what,
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        *crate::sync::lock(&self.cut) = cut;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; the namespace takes its rules along.
        if !self.link.is_empty() {
            delete(&self.tools.ip, &["link", "del", &self.link]);
        }
        delete(&self.tools.ip, &["netns", "delete", &self.name]);
    }
}

/// Runs one `ip` command (30 s at most).
async fn ip(tools: &Tools, args: &[&str]) -> Result<(), Error> {
    let what = format!("ip {}", args.join(" "));
    run(Command::new(&tools.ip).args(args), &what, COMMAND_TIMEOUT)
        .await
        .map(drop)
}

/// Runs a cleanup command synchronously (from `Drop`), logging a failure.
fn delete(ip: &PathBuf, args: &[&str]) {
    let out = std::process::Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.contains("Cannot find") && !err.contains("No such file") {
                tracing::warn!(command = %args.join(" "), error = %err.trim(), "netns cleanup failed");
            }
        }
        Err(e) => tracing::warn!(command = %args.join(" "), error = %e, "netns cleanup failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_disjoint_slash_30s_of_10_203() {
        assert_eq!(
            subnet(0),
            (Ipv4Addr::new(10, 203, 0, 1), Ipv4Addr::new(10, 203, 0, 2))
        );
        assert_eq!(
            subnet(64),
            (Ipv4Addr::new(10, 203, 1, 1), Ipv4Addr::new(10, 203, 1, 2))
        );
        assert_eq!(
            subnet(SUBNETS - 1),
            (
                Ipv4Addr::new(10, 203, 255, 253),
                Ipv4Addr::new(10, 203, 255, 254)
            )
        );
        assert_eq!(subnet(SUBNETS), subnet(0));
    }

    #[test]
    fn a_cut_is_one_drop_rule_per_direction_and_none_accepts_all() {
        assert!(!Cut::None.table().contains("DROP"));
        let both = Cut::Both.table();
        assert!(both.contains("-A INPUT ! -i lo -j DROP\n"));
        assert!(both.contains("-A OUTPUT ! -o lo -j DROP\n"));
        let inbound = Cut::Inbound.table();
        assert!(inbound.contains("INPUT ! -i lo -j DROP") && !inbound.contains("OUTPUT !"));
        let outbound = Cut::Outbound.table();
        assert!(outbound.contains("OUTPUT ! -o lo -j DROP") && !outbound.contains("INPUT !"));
        for cut in [Cut::None, Cut::Both, Cut::Inbound, Cut::Outbound] {
            assert!(cut.table().starts_with("*filter\n") && cut.table().ends_with("COMMIT\n"));
        }
    }
}

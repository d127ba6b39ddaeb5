//! [`PgCluster`]: a primary and its streaming standbys, each a [`PgNode`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{PgBin, PgNode, hand_over};
use crate::testing::Error;
use crate::testing::netns::{NetNs, Placement, bind_addr};
use crate::testing::postgres_tls::{NodeSetup, PgClusterBuilder};
use crate::testing::process::{
    COMMAND_TIMEOUT, POLL, PORT_ATTEMPTS, STARTUP_TIMEOUT, free_port, poll_until, port_in_use, run,
};

/// A Postgres 15 primary and `N` streaming standbys (`pg_basebackup -R -X stream`), each a
/// [`PgNode`] in its own temporary directory.
///
/// When the tests run as root, the server processes run as the `postgres` user (through
/// `setpriv`) and the fixture directories are given to it. Binaries come from
/// `/usr/lib/postgresql/15/bin` or [`PG_BIN_ENV`](super::PG_BIN_ENV).
#[derive(Debug)]
pub struct PgCluster {
    nodes: Vec<PgNode>,
    primary: usize,
}

impl PgCluster {
    /// Starts a primary (`initdb`, trust auth on 127.0.0.1) and `standbys` standbys, and waits
    /// (up to 30 s each) until every standby streams from the primary.
    ///
    /// Fails with [`Error::MissingBinary`] (hint `apt-get install postgresql-15`) when the
    /// binaries are missing.
    pub async fn start(standbys: usize) -> Result<Self, Error> {
        Self::builder().standbys(standbys).start().await
    }

    /// A cluster with TLS (`ssl=on`), `hostssl`-only or client-certificate rules, or password
    /// users: see [`PgClusterBuilder`].
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// Like [`start`](Self::start), with the binaries taken from `bin_dir` (another Postgres
    /// major version, a custom build) instead of the default or [`PG_BIN_ENV`](super::PG_BIN_ENV).
    pub async fn start_with_bin_dir(
        bin_dir: impl Into<PathBuf>,
        standbys: usize,
    ) -> Result<Self, Error> {
        Self::builder()
            .bin_dir(bin_dir)
            .standbys(standbys)
            .start()
            .await
    }

    pub(in crate::testing) async fn launch_all(
        bin_dir: Option<PathBuf>,
        standbys: usize,
        setup: NodeSetup,
    ) -> Result<Self, Error> {
        Self::launch_nodes(bin_dir, standbys, setup, false).await
    }

    /// As [`start`](Self::start), with every node in a [`NetNs`] of its own: the standbys
    /// stream from the primary across namespaces, and each node can be partitioned alone
    /// ([`PgNode::partition`]). `pg_hba.conf` also trusts `10.203.0.0/16` (the namespaces'
    /// addresses) for connections and replication.
    pub async fn start_in_netns(standbys: usize) -> Result<Self, Error> {
        Self::launch_nodes(None, standbys, NodeSetup::default(), true).await
    }

    async fn launch_nodes(
        bin_dir: Option<PathBuf>,
        standbys: usize,
        setup: NodeSetup,
        netns: bool,
    ) -> Result<Self, Error> {
        let bin = PgBin::locate(bin_dir.unwrap_or_else(PgBin::default_dir))?;
        let place = if netns {
            Placement::Fresh
        } else {
            Placement::Loopback
        };
        let primary_ns = place.resolve().await?;
        let primary = launch(&bin, "postgres-primary", None, &setup, primary_ns).await?;
        let mut nodes = vec![primary];
        for i in 0..standbys {
            let standby = launch(
                &bin,
                &format!("postgres-standby-{}", i + 1),
                Some(&nodes[0]),
                &setup,
                place.resolve().await?,
            )
            .await?;
            nodes.push(standby);
        }
        Ok(Self { nodes, primary: 0 })
    }

    /// The node the fixture considers primary (node 0 until [`promote`](Self::promote)).
    pub fn primary(&self) -> &PgNode {
        &self.nodes[self.primary]
    }

    /// The primary, mutably.
    pub fn primary_mut(&mut self) -> &mut PgNode {
        &mut self.nodes[self.primary]
    }

    /// Index of the primary in [`nodes`](Self::nodes).
    pub fn primary_index(&self) -> usize {
        self.primary
    }

    /// All nodes: index 0 is the first primary, then the standbys in start order.
    pub fn nodes(&self) -> &[PgNode] {
        &self.nodes
    }

    /// One node, mutably. Fails with [`Error::Invalid`] for an index out of range.
    pub fn node_mut(&mut self, index: usize) -> Result<&mut PgNode, Error> {
        let len = self.nodes.len();
        self.nodes.get_mut(index).ok_or_else(|| {
            Error::Invalid(format!("no postgres node {index} (the cluster has {len})"))
        })
    }

    /// Kills the primary (`pg_ctl stop -m immediate`).
    pub async fn kill_primary(&mut self) -> Result<(), Error> {
        self.primary_mut().kill().await
    }

    /// Promotes node `index` (see [`PgNode::promote`]) and makes it the fixture's primary.
    /// Other standbys are not repointed; use [`PgNode::follow`].
    pub async fn promote(&mut self, index: usize) -> Result<(), Error> {
        self.node_mut(index)?.promote().await?;
        self.primary = index;
        Ok(())
    }

    /// Waits until node `index` has replayed everything the primary has written so far.
    pub async fn wait_for_replay(&self, index: usize, timeout: Duration) -> Result<(), Error> {
        let node = self
            .nodes
            .get(index)
            .ok_or_else(|| Error::Invalid(format!("no postgres node {index}")))?;
        let lsn = self.primary().wal_lsn().await?;
        node.wait_for_replay(&lsn, timeout).await
    }
}

/// Creates and starts one node: `initdb` for a primary, `pg_basebackup` from `primary` for a
/// standby. Retries on another port when the port was taken.
async fn launch(
    bin: &PgBin,
    name: &str,
    primary: Option<&PgNode>,
    setup: &NodeSetup,
    netns: Option<NetNs>,
) -> Result<PgNode, Error> {
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let dir = tempfile::Builder::new()
            .prefix("switchover-pg-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        setup.write_files(dir.path())?;
        hand_over(dir.path()).await?;
        let mut node = PgNode {
            process: None,
            name: name.to_owned(),
            port: free_port()?,
            dir,
            bin: bin.clone(),
            setup: setup.clone(),
            host: bind_addr(netns.as_ref()).to_string(),
            netns: netns.clone(),
        };
        let data = node.data_dir();
        let mut cmd = match primary {
            None => {
                let mut cmd = bin.server_command("initdb", node.dir.path())?;
                cmd.arg("-D").arg(&data).args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]);
                cmd
            }
            Some(primary) => {
                let mut cmd = bin.server_command("pg_basebackup", node.dir.path())?;
                cmd.arg("-D").arg(&data).args([
                    "-h",
                    &primary.host,
                    "-p",
                    &primary.port.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ]);
                cmd
            }
        };
        let what = if primary.is_some() {
            "pg_basebackup"
        } else {
            "initdb"
        };
        run(&mut cmd, what, COMMAND_TIMEOUT).await?;
        if primary.is_none() {
            setup.write_hba(&data)?;
            if netns.is_some() {
                trust_namespaces(&data)?;
            }
        }
        match node.spawn_and_wait().await {
            Ok(()) => {}
            Err(e) if port_in_use(&node.log()) => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        }
        if primary.is_some() {
            wait_streaming(&node).await?;
        }
        return Ok(node);
    }
    Err(last.unwrap_or_else(|| Error::Invalid("no port attempt made".into())))
}

/// Appends `trust` rules for the namespaces' addresses (10.203.0.0/16) to `pg_hba.conf`.
fn trust_namespaces(data: &Path) -> Result<(), Error> {
    use std::io::Write;
    let path = data.join("pg_hba.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(
                b"host all all 10.203.0.0/16 trust\nhost replication all 10.203.0.0/16 trust\n",
            )
        })
        .map_err(|e| Error::io(format!("appending to {}", path.display()), e))
}

async fn wait_streaming(node: &PgNode) -> Result<(), Error> {
    poll_until(STARTUP_TIMEOUT, POLL, || async {
        let status = node.sql("SELECT status FROM pg_stat_wal_receiver").await;
        Ok(status.is_ok_and(|s| s == "streaming").then_some(()))
    })
    .await?
    .ok_or_else(|| {
        Error::timeout(
            format!("{} to stream from its primary", node.addr()),
            STARTUP_TIMEOUT,
            node.log(),
        )
    })
}

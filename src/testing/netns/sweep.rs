//! Removing the namespaces an aborted earlier run left behind.

use std::path::Path;

use tokio::process::Command;

use super::{NETNS_PREFIX, Tools};
use crate::testing::Error;
use crate::testing::process::{COMMAND_TIMEOUT, run, send_signal};

/// Deletes every namespace `swo-<pid>-<n>` whose creating process `pid` no longer runs, after
/// killing (`SIGKILL`) the processes still inside it (servers of a test that aborted before its
/// fixtures could stop them); the veth pair goes with the namespace. Returns the names deleted.
///
/// [`NetNs::create`](super::NetNs::create) calls it once per process; namespaces of running
/// processes, and any not named by the kit, are left alone.
pub async fn sweep_stale() -> Result<Vec<String>, Error> {
    let tools = Tools::find()?;
    let list = run(
        Command::new(&tools.ip).args(["netns", "list"]),
        "ip netns list",
        COMMAND_TIMEOUT,
    )
    .await?;
    let mut removed = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = owner(name) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let pids = run(
            Command::new(&tools.ip).args(["netns", "pids", name]),
            "ip netns pids",
            COMMAND_TIMEOUT,
        )
        .await
        .unwrap_or_default();
        for pid in pids.lines().filter_map(|p| p.trim().parse::<u32>().ok()) {
            // Best effort: the process may exit on its own meanwhile.
            let _ = send_signal(pid, "KILL");
        }
        run(
            Command::new(&tools.ip).args(["netns", "delete", name]),
            "ip netns delete",
            COMMAND_TIMEOUT,
        )
        .await?;
        removed.push(name.to_owned());
    }
    Ok(removed)
}

/// The pid in a kit namespace name `swo-<pid>-<n>`.
fn owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(NETNS_PREFIX)?.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn only_kit_names_have_an_owner() {
        assert_eq!(owner("swo-1234-0"), Some(1234));
        assert_eq!(owner("swo-1234-17"), Some(1234));
        assert_eq!(owner("swo-1234"), None);
        assert_eq!(owner("swo-abc-1"), None);
        assert_eq!(owner("swo-12-x"), None);
        assert_eq!(owner("other-12-1"), None);
    }
}

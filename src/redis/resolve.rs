//! Node addresses compared after name resolution: a node configured as `cache-1:6379` and
//! reported by its replicas (`ROLE`) or the sentinels as `10.0.0.5:6379` is one node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::future::join_all;

use super::config::NodeAddr;

/// The IP addresses the host names of one discovery run resolved to. A name that did not
/// resolve (in time) is compared by its spelling only.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    ips: HashMap<String, Vec<IpAddr>>,
}

impl Resolved {
    /// Resolves the host names among `addrs` (IP literals and Unix sockets need nothing) in
    /// parallel, each within `limit`; names already resolved are skipped.
    pub(crate) async fn add<'a>(
        &mut self,
        addrs: impl IntoIterator<Item = &'a NodeAddr>,
        limit: Duration,
    ) {
        let mut names: Vec<&NodeAddr> = Vec::new();
        for a in addrs {
            let host = canon(a.host());
            if a.is_unix() || host.parse::<IpAddr>().is_ok() || self.ips.contains_key(&host) {
                continue;
            }
            if !names.iter().any(|n| canon(n.host()) == host) {
                names.push(a);
            }
        }
        let lookups = names.iter().map(|a| async move {
            let found: Vec<IpAddr> =
                tokio::time::timeout(limit, tokio::net::lookup_host((a.host(), a.port())))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|it| it.map(|s| s.ip()).collect())
                    .unwrap_or_default();
            (canon(a.host()), found)
        });
        for (host, found) in join_all(lookups).await {
            if found.is_empty() {
                tracing::debug!(target: "switchover::redis", host, "host name did not resolve");
            }
            self.ips.insert(host, found);
        }
    }

    /// The IP addresses `host` stands for (none when unknown).
    fn ips_of(&self, host: &str) -> Vec<IpAddr> {
        match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.ips.get(host).cloned().unwrap_or_default(),
        }
    }

    /// Two addresses of the same node: the same port, and the same host (spelled without
    /// case, `localhost` and the loopback addresses as one) or host names that share a
    /// resolved IP address.
    pub(crate) fn same(&self, a: &NodeAddr, b: &NodeAddr) -> bool {
        if a.port() != b.port() || a.is_unix() != b.is_unix() {
            return false;
        }
        let (ha, hb) = (canon(a.host()), canon(b.host()));
        if ha == hb {
            return true;
        }
        if a.is_unix() {
            return false;
        }
        let ips = self.ips_of(&hb);
        self.ips_of(&ha)
            .iter()
            .any(|ip| ips.contains(&canon_ip(*ip)))
    }
}

/// A host name in one spelling: lowercase, `localhost` and the loopback addresses as
/// `127.0.0.1`.
fn canon(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    match h.parse::<IpAddr>() {
        Ok(ip) => canon_ip(ip).to_string(),
        Err(_) if h == "localhost" => "127.0.0.1".to_owned(),
        Err(_) => h,
    }
}

fn canon_ip(ip: IpAddr) -> IpAddr {
    if ip.is_loopback() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> NodeAddr {
        NodeAddr::parse(s).unwrap()
    }

    #[test]
    fn spellings_of_one_host_are_one_node() {
        let r = Resolved::default();
        assert!(r.same(&addr("LOCALHOST:7000"), &addr("127.0.0.1:7000")));
        assert!(r.same(&addr("[::1]:7000"), &addr("localhost:7000")));
        assert!(r.same(&addr("Cache:7000"), &addr("cache:7000")));
        assert!(!r.same(&addr("127.0.0.1:7000"), &addr("127.0.0.1:7001")));
        // Unresolved names are compared by spelling only.
        assert!(!r.same(&addr("cache:7000"), &addr("10.0.0.5:7000")));
    }

    #[test]
    fn names_that_resolve_to_one_address_are_one_node() {
        let mut r = Resolved::default();
        r.ips
            .insert("cache".into(), vec!["10.0.0.5".parse().unwrap()]);
        r.ips.insert(
            "cache-alias".into(),
            vec!["10.0.0.9".parse().unwrap(), "10.0.0.5".parse().unwrap()],
        );
        assert!(r.same(&addr("cache:7000"), &addr("10.0.0.5:7000")));
        assert!(r.same(&addr("10.0.0.5:7000"), &addr("CACHE:7000")));
        assert!(r.same(&addr("cache:7000"), &addr("cache-alias:7000")));
        assert!(!r.same(&addr("cache:7000"), &addr("10.0.0.6:7000")));
        assert!(!r.same(&addr("cache:7000"), &addr("10.0.0.5:7001")));
    }

    /// IP literals, `localhost` and Unix sockets are compared without a lookup.
    #[tokio::test]
    async fn literals_need_no_lookup() {
        let mut r = Resolved::default();
        let names = [
            addr("localhost:7000"),
            addr("127.0.0.2:7000"),
            addr("[::1]:7000"),
            addr("unix:///tmp/r.sock"),
        ];
        r.add(&names, Duration::from_secs(2)).await;
        assert!(r.ips.is_empty());
    }
}

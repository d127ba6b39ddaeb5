//! Node addresses compared after name resolution: a node configured as `cache-1:6379` and
//! reported by its replicas (`ROLE`) or the sentinels as `10.0.0.5:6379` is one node.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::join_all;

use super::config::NodeAddr;
use crate::resolve::Resolver;

/// The socket addresses the host names of one discovery run stand for. A name that did not
/// resolve (in time) is compared by its spelling only.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    addrs: HashMap<(String, u16), Vec<SocketAddr>>,
}

impl Resolved {
    /// Records what `addr` (a host name) resolved to, e.g. a node's current addresses.
    pub(crate) fn learn(&mut self, addr: &NodeAddr, found: Vec<SocketAddr>) {
        if !found.is_empty() {
            self.addrs.insert((canon(addr.host()), addr.port()), found);
        }
    }

    /// Resolves the host names among `addrs` (IP literals and Unix sockets need nothing)
    /// through `resolver` in parallel, each within `limit`; names already known are skipped.
    pub(crate) async fn add<'a>(
        &mut self,
        addrs: impl IntoIterator<Item = &'a NodeAddr>,
        resolver: &Resolver,
        limit: Duration,
    ) {
        let mut names: Vec<&NodeAddr> = Vec::new();
        for a in addrs {
            let key = (canon(a.host()), a.port());
            if a.is_unix() || key.0.parse::<IpAddr>().is_ok() || self.addrs.contains_key(&key) {
                continue;
            }
            if !names
                .iter()
                .any(|n| canon(n.host()) == key.0 && n.port() == key.1)
            {
                names.push(a);
            }
        }
        let lookups = names.iter().map(|a| async move {
            let found: Vec<SocketAddr> =
                tokio::time::timeout(limit, resolver.0.resolve(a.host(), a.port()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            ((canon(a.host()), a.port()), found)
        });
        for (key, found) in join_all(lookups).await {
            if found.is_empty() {
                tracing::debug!(target: "switchover::redis", host = key.0, "host name did not resolve");
            }
            self.addrs.insert(key, found);
        }
    }

    /// The socket addresses `addr` stands for (none when unknown), loopback as `127.0.0.1`.
    fn addrs_of(&self, addr: &NodeAddr) -> Vec<SocketAddr> {
        let host = canon(addr.host());
        match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, addr.port())],
            Err(_) => self
                .addrs
                .get(&(host, addr.port()))
                .map(|v| {
                    v.iter()
                        .map(|s| SocketAddr::new(canon_ip(s.ip()), s.port()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Two addresses of the same node: the same host (spelled without case, `localhost` and
    /// the loopback addresses as one) and port, or addresses that resolve to a shared socket
    /// address.
    pub(crate) fn same(&self, a: &NodeAddr, b: &NodeAddr) -> bool {
        if a.is_unix() != b.is_unix() {
            return false;
        }
        let (ha, hb) = (canon(a.host()), canon(b.host()));
        if ha == hb && a.port() == b.port() {
            return true;
        }
        if a.is_unix() {
            return false;
        }
        let theirs = self.addrs_of(b);
        self.addrs_of(a).iter().any(|s| theirs.contains(s))
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
        r.learn(&addr("cache:7000"), vec!["10.0.0.5:7000".parse().unwrap()]);
        r.learn(
            &addr("cache-alias:7000"),
            vec![
                "10.0.0.9:7000".parse().unwrap(),
                "10.0.0.5:7000".parse().unwrap(),
            ],
        );
        // A test resolver may put a name's port elsewhere: the socket addresses count.
        r.learn(&addr("moved:6379"), vec!["127.0.0.1:7001".parse().unwrap()]);
        assert!(r.same(&addr("moved:6379"), &addr("localhost:7001")));
        assert!(!r.same(&addr("moved:6379"), &addr("127.0.0.1:6379")));
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
        r.add(&names, &Resolver::default(), Duration::from_secs(2))
            .await;
        assert!(r.addrs.is_empty());
    }
}

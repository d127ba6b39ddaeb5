//! [`TestResolver`]: host names a test controls, for the pools' resolver seam.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::resolve::{Resolve, ResolveFuture};
use crate::sync::lock;

/// A [`Resolve`] whose names the test sets and moves: give it to a pool's `resolver` knob,
/// point a name at one server, and move it to another at failover, as a managed service
/// moves its endpoint's DNS record. Nothing on the machine changes (no `/etc/hosts`, no DNS).
///
/// A name maps to whole socket addresses, so several servers on `127.0.0.1` with different
/// ports can stand behind one name and port. An unknown name fails as a lookup would.
/// Clones share their names.
///
/// ```
/// use switchover::testing::TestResolver;
///
/// let names = TestResolver::new();
/// names.set("db.test", ["127.0.0.1:6001".parse().unwrap()]);
/// // ... build the pool with `.resolver(names.clone())`, then at failover:
/// names.set("db.test", ["127.0.0.1:6002".parse().unwrap()]);
/// assert_eq!(names.lookups("db.test"), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct TestResolver {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    names: HashMap<String, Vec<SocketAddr>>,
    lookups: HashMap<String, u64>,
}

impl TestResolver {
    /// No names yet.
    pub fn new() -> Self {
        TestResolver::default()
    }

    /// Points `host` (for every port) at `addrs`; an empty list makes its lookups answer no
    /// address.
    pub fn set(&self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) {
        lock(&self.inner)
            .names
            .insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
    }

    /// Forgets `host`: its lookups fail.
    pub fn remove(&self, host: &str) {
        lock(&self.inner).names.remove(&host.to_ascii_lowercase());
    }

    /// How many times `host` was looked up.
    pub fn lookups(&self, host: &str) -> u64 {
        let inner = lock(&self.inner);
        inner
            .lookups
            .get(&host.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }
}

impl Resolve for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> ResolveFuture<'a> {
        let key = host.to_ascii_lowercase();
        let mut inner = lock(&self.inner);
        *inner.lookups.entry(key.clone()).or_default() += 1;
        let found = inner.names.get(&key).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not a name of this TestResolver"),
            )
        });
        Box::pin(async move { found })
    }
}

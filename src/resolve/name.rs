//! One configured host name: its last good addresses, the epoch they were learned in, and the
//! newest epoch a role check confirmed.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::Resolver;
use crate::sync::{read, write};

/// A host name a pool was given, with the addresses it last resolved to.
///
/// Epochs: 0 before the first good answer, then one more each time the set of addresses
/// changes. A connection is tagged with the epoch of the addresses it went to; it is stale
/// once a role check answered from a newer epoch ([`confirm`](Self::confirm)).
pub(crate) struct Name {
    host: String,
    port: u16,
    resolver: Resolver,
    state: RwLock<State>,
    confirmed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    addrs: Vec<SocketAddr>,
    epoch: u64,
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = read(&self.state);
        f.debug_struct("Name")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("addrs", &s.addrs)
            .field("epoch", &s.epoch)
            .finish()
    }
}

impl Name {
    /// The name `host`, port `port`, resolved by `resolver`; `None` for an IP literal (and an
    /// IPv6 literal in brackets), which needs no lookup.
    pub(crate) fn new(host: &str, port: u16, resolver: &Resolver) -> Option<Arc<Name>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<IpAddr>().is_ok() {
            return None;
        }
        Some(Arc::new(Name {
            host: host.to_owned(),
            port,
            resolver: resolver.clone(),
            state: RwLock::new(State::default()),
            confirmed: watch::Sender::new(0),
        }))
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The epoch of the current addresses (0: never resolved).
    pub(crate) fn epoch(&self) -> u64 {
        read(&self.state).epoch
    }

    /// The current addresses and their epoch (empty, 0: never resolved).
    pub(crate) fn current(&self) -> (u64, Vec<SocketAddr>) {
        let s = read(&self.state);
        (s.epoch, s.addrs.clone())
    }

    /// Looks the name up again, within `limit`. `Ok(true)` when its set of addresses changed
    /// (a new epoch); an empty answer changes nothing. An error names the host.
    pub(crate) async fn refresh(&self, limit: Duration) -> io::Result<bool> {
        let found = tokio::time::timeout(limit, self.resolver.0.resolve(&self.host, self.port))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("resolving {} took longer than {limit:?}", self.host),
                )
            })?
            .map_err(|e| io::Error::new(e.kind(), format!("resolving {}: {e}", self.host)))?;
        if found.is_empty() {
            tracing::debug!(target: "switchover::resolve", host = %self.host, "resolved to no address: the last good ones are kept");
            return Ok(false);
        }
        let mut s = write(&self.state);
        if same_set(&s.addrs, &found) {
            return Ok(false);
        }
        let before = std::mem::replace(&mut s.addrs, found);
        s.epoch += 1;
        let epoch = s.epoch;
        let now = s.addrs.clone();
        drop(s);
        if !before.is_empty() {
            tracing::info!(target: "switchover::resolve", host = %self.host, ?before, ?now, epoch, "host name moved");
        }
        Ok(true)
    }

    /// The addresses to connect to, and their epoch: the current ones, looked up first
    /// (within `limit`) when the name was never resolved.
    pub(crate) async fn addresses(&self, limit: Duration) -> io::Result<(u64, Vec<SocketAddr>)> {
        let (epoch, addrs) = self.current();
        if !addrs.is_empty() {
            return Ok((epoch, addrs));
        }
        self.refresh(limit).await?;
        let (epoch, addrs) = self.current();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolved to no address", self.host),
            ));
        }
        Ok((epoch, addrs))
    }

    /// A role check answered on a connection made in `epoch`: connections of older epochs are
    /// stale from now on. `true` when that retires some (an older epoch was confirmed before).
    pub(crate) fn confirm(&self, epoch: u64) -> bool {
        let mut retired = false;
        self.confirmed.send_if_modified(|c| {
            if epoch > *c {
                retired = *c > 0;
                *c = epoch;
                true
            } else {
                false
            }
        });
        if retired {
            tracing::info!(target: "switchover::resolve", host = %self.host, epoch, "the role check answered from the name's new address: connections to the old one are retired");
        }
        retired
    }

    /// `true` for a connection made in `epoch` once a newer one is confirmed.
    pub(crate) fn is_stale(&self, epoch: u64) -> bool {
        epoch < *self.confirmed.borrow()
    }

    /// Resolves once a connection made in `epoch` is stale.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn retired(&self, epoch: u64) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.confirmed.subscribe();
        async move {
            // The sender lives as long as the name; if it is gone, so is the pool.
            if rx.wait_for(|c| epoch < *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The same addresses, in any order.
fn same_set(a: &[SocketAddr], b: &[SocketAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Opens a TCP stream to the first of `addrs` that accepts, in order; the error of the last.
#[cfg(feature = "redis")]
pub(crate) async fn connect_any(addrs: &[SocketAddr]) -> io::Result<tokio::net::TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for a in addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{Resolve, ResolveFuture};
    use std::sync::Mutex;

    /// Answers from a list the test changes.
    struct Scripted(Mutex<io::Result<Vec<SocketAddr>>>);

    impl Resolve for Scripted {
        fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
            let r = match &*self.0.lock().unwrap() {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            };
            Box::pin(async move { r })
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn name(script: &Arc<Scripted>) -> Arc<Name> {
        Name::new("db.test", 5432, &Resolver(script.clone())).unwrap()
    }

    #[test]
    fn ip_literals_are_no_names() {
        let r = Resolver::default();
        assert!(Name::new("10.0.0.1", 1, &r).is_none());
        assert!(Name::new("[::1]", 1, &r).is_none());
        assert!(Name::new("::1", 1, &r).is_none());
        assert!(Name::new("localhost", 1, &r).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn epochs_follow_changes_of_the_address_set() {
        let script = Arc::new(Scripted(Mutex::new(Ok(vec![sa("10.0.0.1:5432")]))));
        let n = name(&script);
        assert_eq!(n.current(), (0, vec![]));
        let limit = Duration::from_secs(1);
        assert_eq!(n.addresses(limit).await.unwrap().0, 1);
        // The same set in another order is no change.
        *script.0.lock().unwrap() = Ok(vec![sa("10.0.0.1:5432")]);
        assert!(!n.refresh(limit).await.unwrap());
        *script.0.lock().unwrap() = Ok(vec![sa("10.0.0.2:5432"), sa("10.0.0.1:5432")]);
        assert!(n.refresh(limit).await.unwrap());
        *script.0.lock().unwrap() = Ok(vec![sa("10.0.0.1:5432"), sa("10.0.0.2:5432")]);
        assert!(!n.refresh(limit).await.unwrap());
        assert_eq!(n.epoch(), 2);
        // No address: the last good ones are kept.
        *script.0.lock().unwrap() = Ok(vec![]);
        assert!(!n.refresh(limit).await.unwrap());
        assert_eq!(n.current().1.len(), 2);
        // A failing resolver is an error naming the host; the addresses stay.
        *script.0.lock().unwrap() = Err(io::Error::other("SERVFAIL"));
        let e = n.refresh(limit).await.unwrap_err();
        assert!(e.to_string().contains("db.test"), "{e}");
        assert!(e.to_string().contains("SERVFAIL"), "{e}");
        assert_eq!(n.addresses(limit).await.unwrap().0, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_never_resolved_is_an_error_naming_the_host() {
        let script = Arc::new(Scripted(Mutex::new(Ok(vec![]))));
        let e = name(&script)
            .addresses(Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("db.test resolved to no address"),
            "{e}"
        );
    }

    /// A resolver that never answers is cut at the limit, exactly.
    #[tokio::test(start_paused = true)]
    async fn a_silent_resolver_is_bounded_by_the_limit() {
        struct Silent;
        impl Resolve for Silent {
            fn resolve<'a>(&'a self, _h: &'a str, _p: u16) -> ResolveFuture<'a> {
                Box::pin(std::future::pending())
            }
        }
        let n = Name::new("db.test", 1, &Resolver(Arc::new(Silent))).unwrap();
        let started = tokio::time::Instant::now();
        let e = n.addresses(Duration::from_millis(700)).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("db.test"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_of_older_epochs_retire_once_a_newer_one_is_confirmed() {
        let script = Arc::new(Scripted(Mutex::new(Ok(vec![sa("10.0.0.1:1")]))));
        let n = name(&script);
        n.refresh(Duration::from_secs(1)).await.unwrap();
        // The first confirmation retires nothing.
        assert!(!n.confirm(1));
        assert!(!n.is_stale(1));
        let retired = tokio::spawn(n.retired(1));
        *script.0.lock().unwrap() = Ok(vec![sa("10.0.0.2:1")]);
        n.refresh(Duration::from_secs(1)).await.unwrap();
        // Moved but not confirmed: nothing is stale yet.
        assert!(!n.is_stale(1));
        tokio::task::yield_now().await;
        assert!(!retired.is_finished());
        assert!(n.confirm(2));
        assert!(n.is_stale(1) && !n.is_stale(2));
        retired.await.unwrap();
        // An older confirmation changes nothing.
        assert!(!n.confirm(1));
        assert!(n.is_stale(1));
    }
}

//! The decision source of the router: local health (the default) or an external [`Authority`]
//! that names the primary and an epoch, which a [`Follower`] makes the router follow.
//!
//! Following closes the router's gate on the named endpoint: the router switches to it at once,
//! with a generation bump and its [`RouteEvent::Switched`](super::RouteEvent::Switched) (reason
//! [`SwitchReason::Authority`](super::SwitchReason::Authority)), never fails over or fails back
//! by itself while it follows, and [`Router::switch_to`] refuses any other endpoint. Local health
//! still says whether the named primary is reachable
//! ([`Active::is_all_down`](super::Active::is_all_down) is `true` while it is not: writes then
//! wait or fail, they never go elsewhere) and still chooses which replica serves a read.
//!
//! A follower started on its own ([`FollowerBuilder::start`]) also marks the named endpoint
//! [`Role::Primary`] and every other one [`Role::Replica`] (read policies see them so). A
//! follower an adapter starts for its pool (a builder knob taking an [`IntoFollower`], such as
//! `FailoverPoolBuilder::authority`) leaves the roles to the pool's own probes instead: a new
//! record puts the primary in doubt, the pool's re-discovery confirms that the named endpoint
//! is a primary before a write goes there, and writes wait meanwhile
//! ([`Follower::hold`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::named::Gate;
use super::rediscovery::Rediscovery;
use super::router::Router;
use crate::error::ConfigError;
use crate::health::{EndpointId, Role};
use crate::sync::lock;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Authority`] made object-safe (one allocation per poll).
trait AuthorityDyn<K>: Send + Sync {
    fn read_boxed(&self) -> BoxFuture<'_, Result<Record<K>, AuthorityError>>;
}

impl<K: Send + 'static, A: Authority<K>> AuthorityDyn<K> for A {
    fn read_boxed(&self) -> BoxFuture<'_, Result<Record<K>, AuthorityError>> {
        Box::pin(self.read())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    interval: Duration,
    read_timeout: Duration,
    unreachable: WhenUnreachable,
}

struct State<K> {
    last: Option<Record<K>>,
    /// Since when the authority has been unreachable (`None`: it answers).
    unreachable_since: Option<Instant>,
    /// Local health decides (before the first record, or after falling back).
    local: bool,
    subscribers: Vec<mpsc::UnboundedSender<AuthorityEvent<K>>>,
}

struct Shared<K> {
    router: Router<K>,
    /// The pool's re-discovery, which confirms the named endpoint (`None`: the follower marks
    /// the roles itself).
    rediscovery: Option<Rediscovery<K>>,
    authority: Box<dyn AuthorityDyn<K>>,
    config: Config,
    state: Mutex<State<K>>,
    epoch: AtomicU64,
    /// The epoch too, for waiters.
    epoch_tx: watch::Sender<u64>,
    polls: AtomicU64,
    closed: Arc<(AtomicBool, Notify)>,
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        self.closed.0.store(true, Ordering::Release);
        self.closed.1.notify_one();
    }
}

/// Makes a [`Router`] follow an [`Authority`]: polls it every interval, follows each new good
/// record, reports and ignores bad ones, and says when the authority is unreachable.
///
/// Cheap to clone (an `Arc`); the background task stops when the last clone is dropped.
pub struct Follower<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Follower<K> {
    fn clone(&self) -> Self {
        Follower {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: EndpointId> fmt::Debug for Follower<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("epoch", &self.epoch())
            .field("local", &self.is_local())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builder of [`Follower`]; made by [`Follower::builder`].
#[must_use]
pub struct FollowerBuilder<K> {
    router: Router<K>,
    rediscovery: Option<Rediscovery<K>>,
    config: Config,
}

impl<K: EndpointId> fmt::Debug for FollowerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowerBuilder")
            .field("config", &self.config)
            .field("confirmed", &self.rediscovery.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: EndpointId> FollowerBuilder<K> {
    /// The router that will follow (an authority that must know its endpoints reads them here).
    pub fn router(&self) -> &Router<K> {
        &self.router
    }

    /// The named endpoint is confirmed by `rediscovery` (the pool's own, over the same router)
    /// instead of being marked primary: each new record puts the primary in doubt, so no write
    /// goes to the named endpoint before its role probe says it is a primary. The caller has
    /// closed the router's gate ([`Gate::Awaiting`]) before the first discovery run.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn confirmed_by(mut self, rediscovery: &Rediscovery<K>) -> Self {
        self.rediscovery = Some(rediscovery.clone());
        self
    }

    /// `true` when the named endpoint will be confirmed by a pool's re-discovery (see
    /// `confirmed_by`) rather than marked primary.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn is_confirmed(&self) -> bool {
        self.rediscovery.is_some()
    }

    /// How often the authority is read (default 250 ms): a new record is followed within this
    /// plus one read.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// The bound of one read; a read cut by it counts as unreachable (default 1 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.read_timeout = timeout;
        self
    }

    /// What to do while the authority is unreachable (default [`WhenUnreachable::KeepLast`]).
    pub fn when_unreachable(mut self, when: WhenUnreachable) -> Self {
        self.config.unreachable = when;
        self
    }

    /// Starts the background task; its first read is at once. Until a good record arrives,
    /// local health decides.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field for a zero interval, read timeout or fallback delay,
    /// or `runtime` outside a Tokio runtime.
    pub fn start<A: Authority<K>>(self, authority: A) -> Result<Follower<K>, ConfigError> {
        let c = self.config;
        let fallback = match c.unreachable {
            WhenUnreachable::FallBackAfter(d) => Some(d),
            WhenUnreachable::KeepLast => None,
        };
        for (field, d) in [
            ("poll_interval", Some(c.interval)),
            ("read_timeout", Some(c.read_timeout)),
            ("when_unreachable", fallback),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(field, "must be above zero"));
            }
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "must be started inside a Tokio runtime"))?;
        let shared = Arc::new(Shared {
            router: self.router,
            rediscovery: self.rediscovery,
            authority: Box::new(authority),
            config: c,
            state: Mutex::new(State {
                last: None,
                unreachable_since: None,
                local: true,
                subscribers: Vec::new(),
            }),
            epoch: AtomicU64::new(0),
            epoch_tx: watch::Sender::new(0),
            polls: AtomicU64::new(0),
            closed: Arc::default(),
        });
        handle.spawn(poll_loop(
            Arc::downgrade(&shared),
            Arc::clone(&shared.closed),
        ));
        Ok(Follower { shared })
    }
}

impl<K: EndpointId> Follower<K> {
    /// A builder over `router`, with the documented defaults.
    pub fn builder(router: &Router<K>) -> FollowerBuilder<K> {
        FollowerBuilder {
            router: router.clone(),
            rediscovery: None,
            config: Config {
                interval: Duration::from_millis(250),
                read_timeout: Duration::from_secs(1),
                unreachable: WhenUnreachable::KeepLast,
            },
        }
    }

    /// The router that follows.
    pub fn router(&self) -> &Router<K> {
        &self.shared.router
    }

    /// The epoch followed now (0 before the first good record). One atomic load.
    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Waits until the followed epoch is no longer `seen` (a new record was followed).
    pub async fn epoch_changed(&self, seen: u64) {
        let mut rx = self.shared.epoch_tx.subscribe();
        // The sender lives as long as `self`: the wait only ends by a change.
        let _ = rx.wait_for(|e| *e != seen).await;
    }

    /// The last good record, if any.
    pub fn record(&self) -> Option<Record<K>> {
        lock(&self.shared.state).last.clone()
    }

    /// `true` while local health decides: before the first good record, and after falling
    /// back (see [`WhenUnreachable::FallBackAfter`]). A follower a pool's authority knob
    /// started is `true` before its first record too, but then nothing decides: the pool's
    /// writes wait for that record.
    pub fn is_local(&self) -> bool {
        lock(&self.shared.state).local
    }

    /// `true` while the authority is unreachable.
    pub fn is_unreachable(&self) -> bool {
        lock(&self.shared.state).unreachable_since.is_some()
    }

    /// How many reads of the authority have finished.
    pub fn polls(&self) -> u64 {
        self.shared.polls.load(Ordering::Acquire)
    }

    /// A new subscription to every [`AuthorityEvent`], from now on (unbounded: none dropped).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<AuthorityEvent<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.shared.state).subscribers.push(tx);
        rx
    }

    /// Stops polling: the last record stays followed.
    pub fn close(&self) {
        self.shared.closed.0.store(true, Ordering::Release);
        self.shared.closed.1.notify_one();
    }
}

impl<K: EndpointId> Shared<K> {
    /// One poll: read the authority and act on the answer.
    async fn poll_once(&self) {
        let read = tokio::time::timeout(self.config.read_timeout, self.authority.read_boxed());
        let answer = match read.await {
            Ok(answer) => answer,
            Err(_) => Err(AuthorityError::unreachable(format!(
                "no answer within {:?}",
                self.config.read_timeout
            ))),
        };
        let mut state = lock(&self.state);
        let now = Instant::now();
        match answer {
            Ok(record) => {
                if state.unreachable_since.take().is_some() {
                    tracing::info!(target: "switchover::route", "authority reachable again");
                    emit(&mut state, AuthorityEvent::Reachable { at: now });
                }
                self.consider(&mut state, record, now);
            }
            Err(e) if e.is_unparsable() => {
                state.unreachable_since = None;
                let reason = e.reason.clone();
                reject(&mut state, Rejection::Unparsable { reason }, now);
            }
            Err(e) => self.unreachable(&mut state, &e, now),
        }
        drop(state);
        self.polls.fetch_add(1, Ordering::AcqRel);
    }

    /// A record read: follow it if it is new and good, else say why not.
    fn consider(&self, state: &mut State<K>, record: Record<K>, now: Instant) {
        let known = self
            .router
            .endpoints()
            .any(|(e, _)| e.id() == &record.primary);
        if !known {
            let (primary, epoch) = (record.primary, record.epoch);
            return reject(state, Rejection::UnknownEndpoint { primary, epoch }, now);
        }
        if let Some(last) = &state.last {
            if record.epoch < last.epoch {
                let (epoch, last) = (record.epoch, last.epoch);
                return reject(state, Rejection::EpochWentBack { epoch, last }, now);
            }
            if record.epoch == last.epoch {
                if record.primary != last.primary {
                    let (primary, epoch) = (record.primary, record.epoch);
                    return reject(state, Rejection::Conflicting { primary, epoch }, now);
                }
                if !state.local {
                    return; // nothing new
                }
            }
        }
        self.follow(state, record, now);
    }

    /// Makes the router route writes to `record`'s primary: the router's gate closed on it
    /// (the switch happens now); on its own, the follower also marks it Primary and every
    /// other endpoint Replica; confirmed by a pool's re-discovery, the primary is put in doubt
    /// first, so writes wait for the named endpoint's role probe.
    fn follow(&self, state: &mut State<K>, record: Record<K>, now: Instant) {
        let marks = self.rediscovery.is_none();
        match &self.rediscovery {
            Some(r) => r.suspect(),
            None => {
                for (endpoint, _) in self.router.endpoints() {
                    if endpoint.id() == &record.primary {
                        endpoint.set_role(Role::Primary);
                    }
                }
            }
        }
        // `consider` checked that the router routes it.
        let _ = self.router.obey(Gate::Named(&record.primary));
        if let Some(r) = &self.rediscovery {
            // A run that started before the switch may have confirmed the endpoint named
            // before: one more, under the new gate.
            r.suspect();
        }
        if marks {
            for (endpoint, _) in self.router.endpoints() {
                if endpoint.id() != &record.primary {
                    endpoint.set_role(Role::Replica);
                }
            }
        }
        let active = self.router.active();
        let reachable = active.id() == &record.primary && !active.is_all_down();
        let generation = active.generation();
        self.epoch.store(record.epoch, Ordering::Release);
        self.epoch_tx.send_replace(record.epoch);
        let lag = record
            .decided_at
            .and_then(|d| SystemTime::now().duration_since(d).ok());
        tracing::info!(
            target: "switchover::route",
            primary = ?record.primary,
            epoch = record.epoch,
            generation,
            reachable,
            reason = record.reason.as_deref().unwrap_or(""),
            "following the authority's record"
        );
        state.local = false;
        emit(
            state,
            AuthorityEvent::Followed {
                primary: record.primary.clone(),
                epoch: record.epoch,
                generation,
                reachable,
                lag,
                at: now,
            },
        );
        state.last = Some(record);
    }

    /// The authority could not be read: keep the last record, or fall back after the delay.
    fn unreachable(&self, state: &mut State<K>, e: &AuthorityError, now: Instant) {
        let since = match state.unreachable_since {
            Some(since) => since,
            None => {
                state.unreachable_since = Some(now);
                let keeping = self.epoch.load(Ordering::Acquire);
                tracing::warn!(
                    target: "switchover::route",
                    reason = %e.reason,
                    keeping,
                    "authority unreachable; keeping the last record"
                );
                let reason = e.reason.clone();
                emit(
                    state,
                    AuthorityEvent::Unreachable {
                        reason,
                        keeping,
                        at: now,
                    },
                );
                now
            }
        };
        if let WhenUnreachable::FallBackAfter(after) = self.config.unreachable
            && !state.local
            && now.saturating_duration_since(since) >= after
        {
            if self.rediscovery.is_none() {
                for (endpoint, _) in self.router.endpoints() {
                    endpoint.set_role(Role::Unknown);
                }
            }
            let _ = self.router.obey(Gate::Local);
            if let Some(r) = &self.rediscovery {
                // The pool's own discovery decides again, from what its probes say.
                r.suspect();
            }
            state.local = true;
            tracing::warn!(
                target: "switchover::route",
                unreachable_for = ?now.saturating_duration_since(since),
                "authority unreachable; local health decides"
            );
            emit(state, AuthorityEvent::FellBack { at: now });
        }
    }
}

fn reject<K: EndpointId>(state: &mut State<K>, rejection: Rejection<K>, at: Instant) {
    tracing::warn!(
        target: "switchover::route",
        rejection = %rejection,
        last_epoch = state.last.as_ref().map_or(0, |r| r.epoch),
        "authority record ignored; the last good record stands"
    );
    emit(state, AuthorityEvent::Rejected { rejection, at });
}

fn emit<K: Clone>(state: &mut State<K>, event: AuthorityEvent<K>) {
    state
        .subscribers
        .retain(|tx| tx.send(event.clone()).is_ok());
}

async fn poll_loop<K: EndpointId>(weak: Weak<Shared<K>>, closed: Arc<(AtomicBool, Notify)>) {
    loop {
        if closed.0.load(Ordering::Acquire) {
            return;
        }
        let interval = {
            let Some(shared) = weak.upgrade() else { return };
            shared.poll_once().await;
            shared.config.interval
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = closed.1.notified() => return,
        }
    }
}

mod hold;
mod record;

#[cfg(any(feature = "postgres", feature = "dynamodb"))]
pub(crate) use hold::Held;
pub use hold::IntoFollower;
pub use record::{Authority, AuthorityError, AuthorityEvent, Record, Rejection, WhenUnreachable};

#[cfg(test)]
mod tests;

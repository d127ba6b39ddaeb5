//! "The primary is in doubt → one discovery → switch", written once for every adapter.
//!
//! An adapter implements only the protocol part, [`Discover`] (Redis asks `ROLE` and the
//! sentinels, Postgres probes each host's role); [`Rediscovery`] does the rest:
//!
//! - **single flight**: however many callers are in doubt at once, one run at a time; a caller
//!   whose error came before a run started is answered by that run
//!   ([`rediscover_after`](Rediscovery::rediscover_after));
//! - **waiting for a confirmed primary** with a limit ([`primary`](Rediscovery::primary)): the
//!   fast path is two atomic loads;
//! - **readmit + switch**: the endpoint a run names is readmitted in the tracker (its ejection
//!   ends: it just answered as primary) and becomes the router's active endpoint, so the
//!   generation grows by one per change of primary;
//! - **a background task** that runs discovery on demand, every
//!   [`interval`](RediscoveryBuilder::interval) while the primary is in doubt, and every
//!   [`backstop`](RediscoveryBuilder::backstop) otherwise; it stops when the last handle is
//!   dropped or on [`close`](Rediscovery::close).
//!
//! A run that finds no primary puts the primary in doubt, whatever it was before. So does, at
//! once and in the core, a **missed heartbeat** of the router's active endpoint (a heartbeat of
//! the tracker's probe task that timed out or answered down) and the active endpoint being
//! **declared down** (see [`Endpoint::down_signal`]), and the active endpoint's role turning
//! from primary to anything else (a probe that found it fenced or demoted, see
//! [`Endpoint::set_role`]): an adapter configures the tracker's
//! [`heartbeat`](crate::health::HealthTrackerBuilder::heartbeat) and probe, and writes no
//! suspicion code of its own.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::named::Gate;
use super::router::Router;
use crate::error::{Classification, Classify, ConfigError};
use crate::health::{
    Endpoint, EndpointId, HealthEvent, HealthSink, HealthState, ProbeResult, Role,
};
use crate::sync::lock;

/// The protocol part of finding the primary: one run of asking the backend.
///
/// A run records what each endpoint said on its [`Endpoint`] (the role with
/// [`Endpoint::set_role`], the health with [`Endpoint::record_probe`]) and names the endpoint
/// that is the primary now. [`Rediscovery`] does the rest (single flight, readmit, switch).
///
/// ```
/// use std::future::Future;
/// use switchover::route::{Discover, NoPrimary};
///
/// /// A backend whose primary is always "a" (a real one asks the servers).
/// struct Fixed;
///
/// impl Discover<&'static str> for Fixed {
///     fn discover(&self) -> impl Future<Output = Result<&'static str, NoPrimary>> + Send {
///         async { Ok("a") }
///     }
/// }
/// ```
pub trait Discover<K>: Send + Sync + 'static {
    /// One discovery run.
    ///
    /// # Errors
    ///
    /// [`NoPrimary`] saying what was found instead (no endpoint claims the primary role, every
    /// endpoint unreachable, a rejected login — the latter [`permanent`](NoPrimary::permanent)).
    fn discover(&self) -> impl Future<Output = Result<K, NoPrimary>> + Send;
}

/// No primary could be confirmed: why, and how long the caller waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoPrimary {
    reason: Arc<str>,
    permanent: bool,
    waited: Option<Duration>,
}

impl NoPrimary {
    /// No primary, for `reason` (what discovery found instead). Transient: a later run may
    /// find one.
    pub fn new(reason: impl Into<Arc<str>>) -> Self {
        NoPrimary {
            reason: reason.into(),
            permanent: false,
            waited: None,
        }
    }

    /// No primary because of something that will not fix itself (a rejected password): callers
    /// stop waiting at once.
    pub fn permanent(reason: impl Into<Arc<str>>) -> Self {
        NoPrimary {
            permanent: true,
            ..NoPrimary::new(reason)
        }
    }

    /// What discovery found instead of a primary.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// `true` for a cause that will not fix itself.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// How long the caller waited for a primary (`None`: it did not wait).
    pub fn waited(&self) -> Option<Duration> {
        self.waited
    }

    fn after(mut self, waited: Duration) -> Self {
        self.waited = Some(waited);
        self
    }
}

impl fmt::Display for NoPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no primary confirmed: {}", self.reason)?;
        if let Some(w) = self.waited {
            write!(f, " (waited {w:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoPrimary {}

impl Classify for NoPrimary {
    fn classify(&self) -> Classification {
        if self.permanent {
            Classification::permanent()
        } else {
            // Nothing was sent anywhere.
            Classification::transient().not_executed()
        }
    }
}

/// What one finished run found.
#[derive(Clone, Debug)]
struct RunResult {
    started_at: Instant,
    /// The generation after the switch, or why there is no primary.
    outcome: Result<u64, NoPrimary>,
}

#[derive(Clone, Debug, Default)]
struct RunState {
    done: u64,
    last: Option<RunResult>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Discover`] made object-safe (a run is rare: one allocation per run is nothing).
trait DiscoverDyn<K>: Send + Sync {
    fn discover_boxed(&self) -> BoxFuture<'_, Result<K, NoPrimary>>;
}

impl<K: Send + 'static, D: Discover<K>> DiscoverDyn<K> for D {
    fn discover_boxed(&self) -> BoxFuture<'_, Result<K, NoPrimary>> {
        Box::pin(self.discover())
    }
}

struct Shared<K> {
    router: Router<K>,
    discover: Box<dyn DiscoverDyn<K>>,
    in_doubt: AtomicBool,
    state: watch::Sender<RunState>,
    signals: Arc<Signals>,
    config: Config,
    /// The active endpoint a liveness signal put in doubt, for the task to announce (the sink
    /// that sees the signal must not call back into the router).
    announce: Mutex<Option<Endpoint<K>>>,
}

/// What the background task waits on; kept by the task, so the handles can go away.
#[derive(Default)]
struct Signals {
    trigger: Notify,
    shutdown: Notify,
    closed: AtomicBool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    interval: Duration,
    backstop: Option<Duration>,
    wait: Duration,
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        self.signals.closed.store(true, Ordering::Release);
        // A stored permit: the task sees it even if it is not waiting right now.
        self.signals.shutdown.notify_one();
    }
}

/// Single-flight re-discovery of the primary over a [`Router`], for an adapter's
/// [`Discover`]: single flight, a bounded wait for a confirmed primary, readmit and switch.
///
/// Cheap to clone (an `Arc`); the background task stops when the last clone is dropped.
pub struct Rediscovery<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Rediscovery<K> {
    fn clone(&self) -> Self {
        Rediscovery {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: EndpointId> fmt::Debug for Rediscovery<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.state.borrow();
        f.debug_struct("Rediscovery")
            .field("in_doubt", &self.in_doubt())
            .field("runs", &s.done)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builder of [`Rediscovery`]; made by [`Rediscovery::builder`].
#[must_use]
pub struct RediscoveryBuilder<K> {
    router: Router<K>,
    config: Config,
}

impl<K: EndpointId> fmt::Debug for RediscoveryBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RediscoveryBuilder")
            .field("router", &self.router)
            .field("config", &self.config)
            .finish()
    }
}

impl<K: EndpointId> RediscoveryBuilder<K> {
    /// While the primary is in doubt, a run at least this often; also the least time between
    /// the end of one run and the start of the next, so a burst of doubts costs one run
    /// (default 50 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// While the primary is confirmed, a run this often anyway, as a backstop against a missed
    /// signal (default: none, only on demand).
    pub fn backstop(mut self, every: Option<Duration>) -> Self {
        self.config.backstop = every;
        self
    }

    /// How long [`primary`](Rediscovery::primary) and
    /// [`rediscover_after`](Rediscovery::rediscover_after) wait for a run at most (default 2 s).
    pub fn wait_limit(mut self, limit: Duration) -> Self {
        self.config.wait = limit;
        self
    }

    /// Starts the background task (the primary is in doubt until the first run confirms one;
    /// that run starts at once).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field for a zero interval, wait limit or backstop, or
    /// `runtime` when called outside a Tokio runtime.
    pub fn start<D: Discover<K>>(self, discover: D) -> Result<Rediscovery<K>, ConfigError> {
        let c = self.config;
        for (field, d) in [
            ("interval", Some(c.interval)),
            ("backstop", c.backstop),
            ("wait_limit", Some(c.wait)),
        ] {
            if d.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::new(field, "must be above zero"));
            }
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ConfigError::new("runtime", "must be started inside a Tokio runtime"))?;
        let (state, _) = watch::channel(RunState::default());
        let shared = Arc::new(Shared {
            router: self.router,
            discover: Box::new(discover),
            in_doubt: AtomicBool::new(true),
            state,
            signals: Arc::default(),
            config: c,
            announce: Mutex::new(None),
        });
        let sink: Weak<dyn HealthSink<K>> = Arc::downgrade(&shared) as _;
        shared.router.tracker().core().add_sink(sink);
        handle.spawn(run_loop(
            Arc::downgrade(&shared),
            Arc::clone(&shared.signals),
        ));
        Ok(Rediscovery { shared })
    }
}

impl<K: EndpointId> Rediscovery<K> {
    /// A builder over `router`, with the documented defaults.
    pub fn builder(router: &Router<K>) -> RediscoveryBuilder<K> {
        RediscoveryBuilder {
            router: router.clone(),
            config: Config {
                interval: Duration::from_millis(50),
                backstop: None,
                wait: Duration::from_secs(2),
            },
        }
    }

    /// The router it switches.
    pub fn router(&self) -> &Router<K> {
        &self.shared.router
    }

    /// `true` while the primary is in doubt: no run has confirmed one since the last
    /// [`suspect`](Self::suspect), or the last run found none.
    #[inline]
    pub fn in_doubt(&self) -> bool {
        self.shared.in_doubt.load(Ordering::Acquire)
    }

    /// Discovery runs finished.
    pub fn runs(&self) -> u64 {
        self.shared.state.borrow().done
    }

    /// Puts the primary in doubt (an error from it, a `READONLY`, a missed heartbeat) and asks
    /// for a run. Cheap; calls in a burst cost one run.
    pub fn suspect(&self) {
        if !self.shared.in_doubt.swap(true, Ordering::AcqRel) {
            tracing::info!(target: "switchover::route", "primary in doubt; rediscovering");
            let router = &self.shared.router;
            router.observer().suspect(router.active().endpoint());
        }
        self.shared.signals.trigger.notify_one();
    }

    /// The confirmed primary: at once when it is not in doubt (two atomic loads), else after
    /// waiting, up to the wait limit, for a run that confirms one.
    ///
    /// # Errors
    ///
    /// [`NoPrimary`] with the last run's reason and the time waited; at once when the last run
    /// failed for a [permanent](NoPrimary::is_permanent) reason.
    #[inline]
    pub async fn primary(&self) -> Result<&Endpoint<K>, NoPrimary> {
        if !self.in_doubt() {
            let active = self.shared.router.active();
            if !active.is_all_down() && active.endpoint().role() == Role::Primary {
                return Ok(active.endpoint());
            }
        }
        self.wait_for_primary().await
    }

    #[cold]
    async fn wait_for_primary(&self) -> Result<&Endpoint<K>, NoPrimary> {
        let started = Instant::now();
        let mut rx = self.shared.state.subscribe();
        // Already in doubt, the task runs every interval until a run confirms a primary: asking
        // again would only add a run. Not in doubt (the active endpoint is not a confirmed
        // primary, e.g. its role changed), ask for one.
        if !self.in_doubt() {
            self.suspect();
        }
        let limit = self.shared.config.wait;
        let in_doubt = &self.shared.in_doubt;
        let waited = tokio::time::timeout(
            limit,
            rx.wait_for(|s| {
                !in_doubt.load(Ordering::Acquire)
                    || s.last.as_ref().is_some_and(|l| {
                        l.started_at >= started
                            && l.outcome.as_ref().is_err_and(NoPrimary::is_permanent)
                    })
            }),
        )
        .await;
        let last_error = || {
            self.shared
                .state
                .borrow()
                .last
                .as_ref()
                .and_then(|l| l.outcome.clone().err())
        };
        if waited.is_err() || self.in_doubt() {
            let e = last_error().unwrap_or_else(|| NoPrimary::new("no discovery run finished"));
            return Err(e.after(started.elapsed()));
        }
        let active = self.shared.router.active();
        if active.endpoint().role() != Role::Primary {
            return Err(NoPrimary::new(format!(
                "the active endpoint {:?} is not the confirmed primary",
                active.id()
            ))
            .after(started.elapsed()));
        }
        Ok(active.endpoint())
    }

    /// Answers "the primary may have changed, as of `observed_at`" (when the failed attempt
    /// started): with the last run if it started at or after `observed_at`, else after the
    /// next run, which this call asks for. Returns the generation afterwards.
    ///
    /// # Errors
    ///
    /// [`NoPrimary`] when that run found none, or none finished within the wait limit.
    pub async fn rediscover_after(&self, observed_at: Instant) -> Result<u64, NoPrimary> {
        let answered = |s: &RunState| {
            s.last
                .as_ref()
                .filter(|l| l.started_at >= observed_at)
                .map(|l| l.outcome.clone())
        };
        if let Some(outcome) = answered(&self.shared.state.borrow()) {
            return outcome;
        }
        let started = Instant::now();
        let mut rx = self.shared.state.subscribe();
        self.suspect();
        match tokio::time::timeout(
            self.shared.config.wait,
            rx.wait_for(|s| answered(s).is_some()),
        )
        .await
        {
            Ok(Ok(s)) => answered(&s).unwrap_or_else(|| Err(NoPrimary::new("no run answered"))),
            _ => Err(NoPrimary::new("no discovery run finished").after(started.elapsed())),
        }
    }

    /// Runs discovery now (or joins the run that starts next) and waits for it.
    ///
    /// # Errors
    ///
    /// As [`rediscover_after`](Self::rediscover_after).
    pub async fn rediscover(&self) -> Result<u64, NoPrimary> {
        self.rediscover_after(Instant::now()).await
    }

    /// Stops the background task: no more runs, so the primary stays as last confirmed (and a
    /// doubt is never resolved).
    pub fn close(&self) {
        self.shared.signals.closed.store(true, Ordering::Release);
        self.shared.signals.shutdown.notify_one();
    }
}

/// The liveness signals, seen synchronously by the tracker: a missed heartbeat or a `Down`
/// of the active endpoint puts the primary in doubt and asks for a run. Called with locks of
/// the tracker held, so only atomics and this handle's own lock are touched here; the task
/// announces the doubt.
impl<K: EndpointId> HealthSink<K> for Shared<K> {
    fn transition(&self, event: &HealthEvent<K>, _recent: u64) {
        if event.to == HealthState::Down {
            self.liveness_lost(&event.endpoint);
        }
    }

    fn role_changed(&self, id: &K, from: Role, to: Role) {
        // A heartbeat found the primary fenced or demoted (no failure, no missed beat): it
        // must not wait for the backstop.
        if from == Role::Primary && to != Role::Primary {
            self.liveness_lost(id);
        }
    }

    fn probe(&self, _id: &K, _result: &ProbeResult) {}

    fn heartbeat_missed(&self, id: &K) {
        self.liveness_lost(id);
    }
}

impl<K: EndpointId> Shared<K> {
    /// `id` missed a heartbeat, was declared down or is no longer a primary: if it is the
    /// active endpoint (as last
    /// decided; one atomic load), the primary is in doubt and a run is asked for.
    fn liveness_lost(&self, id: &K) {
        if self.signals.closed.load(Ordering::Acquire) {
            return;
        }
        let active = self.router.active_as_decided();
        if active.id() != id {
            return;
        }
        if !self.in_doubt.swap(true, Ordering::AcqRel) {
            *lock(&self.announce) = Some(active.clone());
        }
        self.signals.trigger.notify_one();
    }

    /// Tells the timeline and the log about a doubt raised by a liveness signal.
    fn announce(&self) {
        let Some(endpoint) = lock(&self.announce).take() else {
            return;
        };
        tracing::info!(
            target: "switchover::route",
            endpoint = ?endpoint.id(),
            "primary in doubt: it missed a heartbeat, was declared down or no longer answers as primary; rediscovering"
        );
        self.router.observer().suspect(&endpoint);
    }

    /// One run: discover, then readmit and switch to the primary found.
    async fn run_once(&self) {
        let started_at = Instant::now();
        let observer = self.router.observer();
        observer.rediscovery_started();
        let found = self.discover.discover_boxed().await;
        let found_at = Instant::now();
        let outcome = match &found {
            Ok(id) => self.confirm(id),
            Err(e) => Err(e.clone()),
        };
        let seen = match (&found, &outcome) {
            (Ok(id), Ok(generation)) => Ok((id.clone(), *generation)),
            (_, Err(e)) => Err(Arc::from(e.reason())),
            (Err(e), Ok(_)) => Err(Arc::from(e.reason())),
        };
        observer.rediscovery_finished(seen, found_at, found_at - started_at);
        match &outcome {
            Ok(_) => self.in_doubt.store(false, Ordering::Release),
            Err(e) => {
                if !self.in_doubt.swap(true, Ordering::AcqRel) {
                    observer.suspect(self.router.active().endpoint());
                    tracing::warn!(target: "switchover::route", reason = %e.reason(), "discovery found no primary");
                } else {
                    tracing::debug!(target: "switchover::route", reason = %e.reason(), "discovery found no primary");
                }
            }
        }
        self.state.send_modify(|s| {
            s.done += 1;
            s.last = Some(RunResult {
                started_at,
                outcome,
            });
        });
    }

    /// Makes `id` the router's active endpoint: readmitted first (it just answered as
    /// primary, so an ejection from failed calls during its promotion must not keep writes
    /// away), then switched to.
    fn confirm(&self, id: &K) -> Result<u64, NoPrimary> {
        let router = &self.router;
        let Some(endpoint) = router.endpoints().map(|(e, _)| e).find(|e| e.id() == id) else {
            return Err(NoPrimary::new(format!(
                "discovery named {id:?}, which is not routed"
            )));
        };
        match router.gate() {
            Gate::Local => {}
            Gate::Named(named) if named == id => {}
            Gate::Named(named) => {
                return Err(NoPrimary::new(format!(
                    "discovery found {id:?} writable, but the authority names {named:?}"
                )));
            }
            Gate::Awaiting => {
                return Err(NoPrimary::new(format!(
                    "discovery found {id:?} writable; the authority has named no primary yet"
                )));
            }
        }
        endpoint.set_role(Role::Primary);
        if !endpoint.is_available() {
            endpoint.readmit();
        }
        let before = router.active();
        let (from, before_gen) = (before.id().clone(), before.generation());
        match router.switch_to(id) {
            Ok(generation) => {
                if generation != before_gen {
                    tracing::warn!(
                        target: "switchover::route",
                        from = ?from,
                        to = ?id,
                        generation,
                        "discovery switched the primary"
                    );
                }
                Ok(generation)
            }
            Err(e) => Err(NoPrimary::new(format!(
                "{id:?} answered as primary but the router cannot switch to it: {e}"
            ))),
        }
    }
}

async fn run_loop<K: EndpointId>(weak: Weak<Shared<K>>, signals: Arc<Signals>) {
    loop {
        if signals.closed.load(Ordering::Acquire) {
            return;
        }
        let Some((in_doubt, backstop, interval)) = weak.upgrade().map(|s| {
            (
                s.in_doubt.load(Ordering::Acquire),
                s.config.backstop,
                s.config.interval,
            )
        }) else {
            return;
        };
        // In doubt: run now (the gap after the last run is over). Confirmed: on demand, or at
        // the backstop.
        if !in_doubt {
            let backstop = async {
                match backstop {
                    Some(p) => tokio::time::sleep(p).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signals.trigger.notified() => {}
                _ = backstop => {}
                _ = signals.shutdown.notified() => return,
            }
            if signals.closed.load(Ordering::Acquire) {
                return;
            }
        }
        {
            let Some(shared) = weak.upgrade() else { return };
            // This run answers every doubt raised so far; one raised while it runs asks for
            // the next.
            take_permit(&signals.trigger);
            shared.announce();
            shared.run_once().await;
        }
        // Coalesce bursts: triggers that arrive meanwhile are kept by the `Notify` and served by
        // the next run.
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = signals.shutdown.notified() => return,
        }
    }
}

/// Consumes a stored `notify_one` permit, if any, without waiting.
fn take_permit(notify: &Notify) {
    let notified = std::pin::pin!(notify.notified());
    let _ = notified.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

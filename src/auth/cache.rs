//! [`CachedCredentials`]: a provider's answers kept per (host, port, user) until shortly
//! before they expire, fetched once for all the connections that need them at the same time.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{
    CredentialError, CredentialFuture, CredentialProvider, CredentialRequest, Credentials, Secret,
};
use crate::sync::lock;

/// The default [`refresh_before`](CachedCredentials::refresh_before): 5 minutes.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Wraps a provider and caches its credentials per (host, port, configured user).
///
/// - **Refresh before expiry.** Credentials with an expiry are fetched again once less than
///   `refresh_before` of their lifetime is left (default 5 minutes), but never before half
///   their lifetime has passed: a 15-minute IAM token is replaced after 10 minutes, a
///   1-minute token after 30 seconds. Credentials without an expiry are kept until
///   [invalidated](CachedCredentials::invalidate). The lifetime is read from the wall clock
///   once, when the credentials arrive, and then counted on Tokio's clock.
/// - **Single flight per key.** Concurrent requests for the same key that find nothing usable
///   share one call to the provider and all get its answer (the credentials or the error);
///   requests for other keys never wait for it. No lock is held across the provider's
///   await except the key's own flight lock, and a caller that gives up (its connect timeout
///   fired) hands the flight to the next waiter.
/// - **Stale while refreshing.** While one caller refreshes, others get the cached
///   credentials at once if they have not expired yet; if the refresh fails they are kept and
///   served until they expire (a secret store that is down for less than `refresh_before`
///   costs nothing), and the next request tries again.
/// - **Errors are never cached**: after a failed fetch the next request asks the provider
///   again.
/// - **Rejections.** A pool whose login was refused calls
///   [`rejected`](CredentialProvider::rejected) with the secret it used; the cache drops that
///   secret (only if it still holds it, so N connections refused with the same old secret
///   cost one new fetch) and the pool's second try gets a fresh one.
///
/// Keys are never evicted; a pool has one per host and user.
pub struct CachedCredentials<P> {
    provider: P,
    refresh_before: Duration,
    slots: Mutex<Vec<Arc<Slot>>>,
    wall: fn() -> SystemTime,
}

/// The cache of one (host, port, user).
struct Slot {
    host: String,
    port: u16,
    user: Option<String>,
    state: Mutex<State>,
    /// Held by the caller fetching for this key, across the provider's await.
    flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    /// Fetches completed (successfully or not); a waiter that sees it move knows a flight
    /// ended while it waited.
    finished: u64,
    /// The error of the last completed fetch, if it failed.
    failed: Option<CredentialError>,
}

struct Cached {
    credentials: Credentials,
    /// When to fetch again; `None`: never.
    refresh_at: Option<Instant>,
    /// When the secret stops being accepted; `None`: never.
    expires_at: Option<Instant>,
}

impl Cached {
    fn is_fresh(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn is_usable(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl State {
    fn fresh(&self, now: Instant) -> Option<Credentials> {
        self.cached
            .as_ref()
            .filter(|c| c.is_fresh(now))
            .map(|c| c.credentials.clone())
    }

    fn usable(&self, now: Instant) -> Option<Credentials> {
        self.cached
            .as_ref()
            .filter(|c| c.is_usable(now))
            .map(|c| c.credentials.clone())
    }
}

impl<P: CredentialProvider> CachedCredentials<P> {
    /// Caches `provider`'s answers, refreshing [`DEFAULT_REFRESH_BEFORE`] before expiry.
    pub fn new(provider: P) -> Self {
        CachedCredentials {
            provider,
            refresh_before: DEFAULT_REFRESH_BEFORE,
            slots: Mutex::new(Vec::new()),
            wall: SystemTime::now,
        }
    }

    /// Fetch again once less than `lead` of the credentials' lifetime is left (capped at half
    /// the lifetime). Default [`DEFAULT_REFRESH_BEFORE`]; `Duration::ZERO` keeps them until
    /// they expire.
    pub fn refresh_before(mut self, lead: Duration) -> Self {
        self.refresh_before = lead;
        self
    }

    /// The wall clock that measures the lifetime of new credentials (tests fix it).
    #[cfg(test)]
    pub(crate) fn with_wall_clock(mut self, wall: fn() -> SystemTime) -> Self {
        self.wall = wall;
        self
    }

    /// The wrapped provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Drops the credentials cached for `request`, so the next request fetches new ones.
    /// Returns `true` if there were any.
    pub fn invalidate(&self, request: &CredentialRequest<'_>) -> bool {
        match self.find(request) {
            Some(slot) => lock(&slot.state).cached.take().is_some(),
            None => false,
        }
    }

    /// The credentials for `request`: cached ones if still fresh, else from the provider.
    pub async fn get(
        &self,
        request: &CredentialRequest<'_>,
    ) -> Result<Credentials, CredentialError> {
        let slot = self.slot(request);
        let seen = {
            let state = lock(&slot.state);
            if let Some(c) = state.fresh(Instant::now()) {
                return Ok(c);
            }
            state.finished
        };
        let _flight = match slot.flight.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Someone is fetching: serve what has not expired yet, else wait for them.
                if let Some(c) = lock(&slot.state).usable(Instant::now()) {
                    return Ok(c);
                }
                slot.flight.lock().await
            }
        };
        {
            let state = lock(&slot.state);
            let now = Instant::now();
            if let Some(c) = state.fresh(now) {
                return Ok(c);
            }
            if state.finished != seen
                && let Some(e) = &state.failed
            {
                // The flight we waited for failed: its answer is ours too.
                return state.usable(now).ok_or_else(|| e.clone());
            }
        }
        let result = self.provider.credentials(request).await;
        self.settle(&slot, result)
    }

    /// Records the outcome of a fetch for `slot` and answers the caller that made it.
    fn settle(
        &self,
        slot: &Slot,
        result: Result<Credentials, CredentialError>,
    ) -> Result<Credentials, CredentialError> {
        let mut state = lock(&slot.state);
        state.finished += 1;
        let now = Instant::now();
        let e = match result {
            Ok(credentials) => {
                state.failed = None;
                state.cached = Some(self.entry(credentials.clone(), now));
                return Ok(credentials);
            }
            Err(e) => e,
        };
        state.failed = Some(e.clone());
        let Some(c) = state.usable(now) else {
            return Err(e);
        };
        tracing::warn!(
            target: "switchover::auth",
            host = %slot.host, port = slot.port, error = %e,
            "refreshing credentials failed; the cached ones have not expired yet"
        );
        Ok(c)
    }

    fn entry(&self, credentials: Credentials, now: Instant) -> Cached {
        let Some(at) = credentials.expires_at() else {
            return Cached {
                credentials,
                refresh_at: None,
                expires_at: None,
            };
        };
        let left = at.duration_since((self.wall)()).unwrap_or(Duration::ZERO);
        let lead = self.refresh_before.min(left / 2);
        Cached {
            credentials,
            refresh_at: now.checked_add(left - lead),
            expires_at: now.checked_add(left),
        }
    }

    fn find(&self, request: &CredentialRequest<'_>) -> Option<Arc<Slot>> {
        lock(&self.slots).iter().find(|s| s.is(request)).cloned()
    }

    fn slot(&self, request: &CredentialRequest<'_>) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.iter().find(|s| s.is(request)) {
            return s.clone();
        }
        let slot = Arc::new(Slot {
            host: request.host().to_owned(),
            port: request.port(),
            user: request.user().map(str::to_owned),
            state: Mutex::new(State::default()),
            flight: tokio::sync::Mutex::new(()),
        });
        slots.push(slot.clone());
        slot
    }
}

impl Slot {
    fn is(&self, request: &CredentialRequest<'_>) -> bool {
        self.port == request.port()
            && self.host == request.host()
            && self.user.as_deref() == request.user()
    }
}

impl<P: CredentialProvider> CredentialProvider for CachedCredentials<P> {
    fn credentials<'a>(&'a self, request: &'a CredentialRequest<'a>) -> CredentialFuture<'a> {
        Box::pin(self.get(request))
    }

    /// Drops the cached credentials for `request` if they still hold `secret`, and tells the
    /// wrapped provider.
    fn rejected(&self, request: &CredentialRequest<'_>, secret: &Secret) {
        if let Some(slot) = self.find(request) {
            let mut state = lock(&slot.state);
            if state
                .cached
                .as_ref()
                .is_some_and(|c| c.credentials.secret() == secret)
            {
                state.cached = None;
            }
        }
        self.provider.rejected(request, secret);
    }
}

impl<P: fmt::Debug> fmt::Debug for CachedCredentials<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("provider", &self.provider)
            .field("refresh_before", &self.refresh_before)
            .field("keys", &lock(&self.slots).len())
            .finish()
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;

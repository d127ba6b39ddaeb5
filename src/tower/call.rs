//! A call through [`Retry`](super::Retry) as the executor's [`Run`] runs it: the first attempt
//! is the service's own future, polled in place; only after it failed do the retries start, in
//! one allocation, through the executor's retry loop.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::attempt::{Failure, finish, fresh, read};
use super::error::Error;
use super::policy::Policy;
use super::replay::Replay;
use super::service::Config;
use crate::error::Execution;
use crate::retry::{ExponentialBackoff, FirstAttempt, RetryPolicy, Run};

/// The retries of a call, once its first attempt failed: boxed here, so that the layer's
/// future has a name (the executor boxes them once more, a 16-byte allocation: this is the
/// failure path).
pub(super) type Retries<Res, E> = Pin<Box<dyn Future<Output = Result<Res, Error<E>>> + Send>>;

/// The executor's future over one call of the layer.
pub(super) type CallRun<S, P, R, Req> = Run<
    Call<S, P, R, Req>,
    <S as Service<Req>>::Future,
    Retries<<S as Service<Req>>::Response, <S as Service<Req>>::Error>,
    Failed<S, P, R, Req>,
>;

/// What starts the retries of a failed call.
pub(super) type StartRetries<S, P, R, Req> =
    fn(Failed<S, P, R, Req>) -> Retries<<S as Service<Req>>::Response, <S as Service<Req>>::Error>;

/// One call, besides its first attempt (the service's future, given to `Run::started`): what
/// the retries need (the
/// layer's configuration, a clone of the service and a copy of the request).
pub(super) struct Call<S: Service<Req>, P, R, Req> {
    config: Arc<Config<P, R>>,
    /// Each retry sends a replay of `template` through a fresh clone of `source`.
    source: Option<S>,
    template: Option<Req>,
    idempotent: bool,
    /// The policy allows retries but the request could not be copied: one attempt, within the
    /// same deadline and attempt timeout.
    sent_once: bool,
}

impl<S: Service<Req>, P, R, Req> Call<S, P, R, Req> {
    pub(super) fn new(
        config: Arc<Config<P, R>>,
        source: Option<S>,
        template: Option<Req>,
        idempotent: bool,
        sent_once: bool,
    ) -> Self {
        Call {
            config,
            source,
            template,
            idempotent,
            sent_once,
        }
    }

    fn retry_policy(&self) -> &RetryPolicy {
        if self.sent_once {
            &self.config.once
        } else {
            &self.config.retry
        }
    }
}

/// An attempt's outcome as the executor reads it.
type Outcome<S, Req> = Result<
    <S as Service<Req>>::Response,
    Failure<<S as Service<Req>>::Response, <S as Service<Req>>::Error>,
>;

/// A call whose first attempt failed (`outcome`; `None`: its limit cut it).
pub(super) struct Failed<S: Service<Req>, P, R, Req> {
    call: Call<S, P, R, Req>,
    deadline_at: Option<Instant>,
    limit: Option<(Duration, bool)>,
    outcome: Option<Outcome<S, Req>>,
}

impl<S, P, R, Req> FirstAttempt for Call<S, P, R, Req>
where
    S: Service<Req>,
    P: Policy<Req, S::Response, S::Error>,
{
    type Backoff = ExponentialBackoff;
    type Attempt = S::Future;
    type Ok = S::Response;
    type Err = Failure<S::Response, S::Error>;
    type Handover = Failed<S, P, R, Req>;

    const RETRIES_OUT_OF_LINE: bool = true;

    #[inline]
    fn policy(&self) -> &RetryPolicy {
        self.retry_policy()
    }

    #[inline]
    fn started_at(&self) -> Option<Instant> {
        None
    }

    #[inline]
    fn ends_within(&self, _: Duration) -> bool {
        false
    }

    #[inline]
    fn first_attempt(&mut self) -> S::Future {
        unreachable!("the first attempt is the service's future, started by `Service::call`")
    }

    #[inline]
    fn outcome(
        &self,
        output: Result<S::Response, S::Error>,
    ) -> Result<S::Response, Failure<S::Response, S::Error>> {
        read::<Req, _, _, _>(&self.config.policy, output)
    }

    #[inline]
    fn succeeded(&self) {
        if let Some(budget) = &self.config.budget {
            budget.deposit_success();
        }
    }

    fn hand_over(
        self,
        deadline_at: Option<Instant>,
        limit: Option<(Duration, bool)>,
        outcome: Option<Outcome<S, Req>>,
    ) -> Failed<S, P, R, Req> {
        Failed {
            call: self,
            deadline_at,
            limit,
            outcome,
        }
    }
}

/// The retries of a failed call, boxed: what [`Run`] starts after a failed first attempt.
pub(super) fn start_retries<S, P, R, Req>(
    failed: Failed<S, P, R, Req>,
) -> Retries<S::Response, S::Error>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    P: Policy<Req, S::Response, S::Error> + Send + Sync + 'static,
    R: Replay<Req> + Send + Sync + 'static,
    Req: Send + 'static,
{
    Box::pin(retries(failed))
}

/// The executor's retry loop from where the first attempt left off; each retry sends a replay
/// of the template through a fresh clone of the service.
async fn retries<S, P, R, Req>(failed: Failed<S, P, R, Req>) -> Result<S::Response, Error<S::Error>>
where
    S: Service<Req> + Clone,
    P: Policy<Req, S::Response, S::Error>,
    R: Replay<Req>,
{
    let Failed {
        call,
        deadline_at,
        limit,
        outcome,
    } = failed;
    let Call {
        config,
        source,
        template,
        idempotent,
        sent_once,
        ..
    } = call;
    let retry = if sent_once {
        &config.once
    } else {
        &config.retry
    };
    let (policy, replay) = (&config.policy, &config.replay);
    // A first attempt cut by its limit may have executed.
    let executed = AtomicBool::new(outcome.is_none());
    let executed = &executed;
    let op = move || {
        fresh(
            source.clone(),
            template.as_ref().and_then(|t| replay.replay(t)),
            policy,
            executed,
        )
    };
    let classify = |f: &Failure<S::Response, S::Error>| {
        let c = f.classify::<Req, P>(policy);
        if c.execution() == Execution::MayHaveExecuted {
            executed.store(true, Ordering::Relaxed);
        }
        c
    };
    let mut run = retry
        .retry(op)
        .idempotent(idempotent)
        .classify_with(classify);
    if let Some(budget) = &config.budget {
        run = run.budget(budget);
    }
    match run.resume(deadline_at, limit, outcome).await {
        Ok(res) => Ok(res),
        Err(e) => finish(e, None, executed.load(Ordering::Relaxed), sent_once),
    }
}

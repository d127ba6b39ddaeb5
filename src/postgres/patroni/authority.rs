//! [`Patroni`]: the leader Patroni names, read from its REST API, as an [`Authority`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

use super::cluster::{self, ClusterView, Leader};
use super::epoch::Epochs;
use super::http::{self, HttpError};
use crate::route::{Authority, AuthorityError, Record};
use crate::sync::lock;

/// The leader of a Patroni cluster as an [`Authority`] over a pool's hosts: one
/// [`read`](Authority::read) asks `GET /cluster` of every configured member at once and names
/// the leader's Postgres (`host:port`, which must be one of the pool's hosts, written the same
/// way), with the epoch described in the [module docs](super#epochs).
///
/// Made by [`PatroniBuilder`](super::PatroniBuilder); usually started at once with
/// [`follow`](super::PatroniBuilder::follow).
///
/// Bad answers never stop the others from counting: a member that is unreachable, answers
/// with an HTTP error, or sends a body that does not parse (not JSON, no `members`, two
/// leaders) is logged (a `tracing` warning when its problem changes, target
/// `switchover::postgres`) and ignored. When several members answer, the answer with the
/// highest epoch wins, so a member with a stale view cannot move the pool back. The read fails
/// only when no member names a usable leader: [`AuthorityError::unparsable`] when every
/// answer was bad, else [`AuthorityError::unreachable`] (which includes "no member names a
/// leader", Patroni's state during a switchover).
pub struct Patroni {
    members: Vec<Arc<str>>,
    hosts: Vec<Arc<str>>,
    request_timeout: Duration,
    /// A new leader is followed only once its Postgres runs as primary (`false` for the pool's
    /// knob: its role probes confirm the leader, so it is followed as soon as it is named).
    wait_promoted: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    epochs: Epochs,
    /// The highest epoch returned so far.
    returned: u64,
    /// The last problem logged per member, so a lasting one is warned about once.
    problems: Vec<Option<String>>,
}

impl fmt::Debug for Patroni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patroni")
            .field("members", &self.members)
            .field("hosts", &self.hosts)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What one member said.
#[derive(Debug)]
pub(super) enum Answer {
    View(ClusterView),
    /// No answer (refused, reset, timed out).
    Unreachable(String),
    /// An HTTP error status or a body that does not parse.
    Bad(String),
}

/// Following when named: how long the other members may still answer once one named a leader.
const SLOW_MEMBER_GRACE: Duration = Duration::from_millis(100);

/// The best leader of a read so far.
struct Best {
    id: Arc<str>,
    epoch: u64,
    leader: Leader,
    member: usize,
}

impl Patroni {
    pub(super) fn new(
        members: Vec<Arc<str>>,
        hosts: Vec<Arc<str>>,
        request_timeout: Duration,
    ) -> Self {
        let state = State {
            problems: vec![None; members.len()],
            ..State::default()
        };
        Patroni {
            members,
            hosts,
            request_timeout,
            wait_promoted: true,
            state: Mutex::new(state),
        }
    }

    /// A new leader is followed as soon as `/cluster` names it, before its Postgres is
    /// promoted, with the epoch `/cluster` gives (its `/patroni` is asked only when that epoch
    /// would look stale), and a read waits at most 100 ms for the other members once one named
    /// a leader: for a pool whose role probes confirm the leader before a write goes there.
    pub(super) fn follow_when_named(mut self) -> Self {
        self.wait_promoted = false;
        self
    }

    /// The REST API addresses asked, as `host:port`.
    pub fn members(&self) -> impl Iterator<Item = &str> + '_ {
        self.members.iter().map(|m| &**m)
    }

    /// Every member's answer, in member order.
    async fn ask_all(&self) -> Vec<Answer> {
        let mut set = JoinSet::new();
        for (i, member) in self.members.iter().enumerate() {
            let (member, timeout) = (member.clone(), self.request_timeout);
            set.spawn(async move { (i, ask(&member, timeout).await) });
        }
        let mut answers: Vec<Answer> = self
            .members
            .iter()
            .map(|_| Answer::Unreachable("no answer".into()))
            .collect();
        // Following when named, a member that answers slowly (a leader busy demoting) does not
        // hold up the others: once one names a leader, the rest get a short grace.
        let mut until: Option<tokio::time::Instant> = None;
        loop {
            let joined = match until {
                Some(t) => match tokio::time::timeout_at(t, set.join_next()).await {
                    Ok(joined) => joined,
                    Err(_) => break,
                },
                None => set.join_next().await,
            };
            let Some(joined) = joined else { break };
            if let Ok((i, answer)) = joined {
                let names = matches!(&answer, Answer::View(v) if v.leader.is_some());
                answers[i] = answer;
                if names && !self.wait_promoted && until.is_none() {
                    until = Some(tokio::time::Instant::now() + SLOW_MEMBER_GRACE);
                }
            }
        }
        answers
    }

    /// The pool's id of `addr` (`host:port`), if it is one of its hosts.
    fn host(&self, addr: &str) -> Option<&Arc<str>> {
        self.hosts.iter().find(|h| &***h == addr)
    }

    /// Logs member `i`'s problem: a warning when it is new, else at debug.
    fn note(&self, state: &mut State, i: usize, problem: Option<String>) {
        if state.problems[i] == problem {
            if let Some(p) = &problem {
                tracing::debug!(target: "switchover::postgres", member = %self.members[i], problem = %p, "patroni member");
            }
            return;
        }
        match &problem {
            Some(p) => tracing::warn!(
                target: "switchover::postgres",
                member = %self.members[i],
                problem = %p,
                "patroni member answer ignored"
            ),
            None => tracing::info!(
                target: "switchover::postgres",
                member = %self.members[i],
                "patroni member answers again"
            ),
        }
        state.problems[i] = problem;
    }

    /// Remembers `d` as followed and returns its record.
    pub(super) fn follow_now(&self, d: Decision) -> Record<Arc<str>> {
        let mut state = lock(&self.state);
        self.commit(&mut state, d)
    }

    fn commit(&self, state: &mut State, mut d: Decision) -> Record<Arc<str>> {
        if d.retimed
            && let Some(epoch) = state.epochs.epoch(d.record.primary(), d.timeline)
        {
            let reason = d.record.reason().unwrap_or_default().to_owned();
            let reason = format!("{reason}; runs on timeline {}", d.timeline.unwrap_or(0));
            d.record = Record::new(d.record.primary().clone(), epoch).with_reason(reason);
        }
        if d.record.epoch() >= state.returned {
            state.epochs.follow(d.record.primary(), d.timeline);
            state.returned = d.record.epoch();
        }
        d.record
    }

    /// Picks the record of one round of answers.
    pub(super) fn decide(&self, answers: Vec<Answer>) -> Result<Decided, AuthorityError> {
        let mut state = lock(&self.state);
        let mut best: Option<Best> = None;
        let mut unknown: Option<(Leader, usize)> = None;
        let mut summary = Vec::new();
        let mut bad = 0;
        let mut answered = 0;
        for (i, answer) in answers.into_iter().enumerate() {
            let member = &self.members[i];
            let leader = match answer {
                Answer::View(view) => {
                    answered += 1;
                    match view.leader {
                        Some(leader) => leader,
                        None => {
                            self.note(&mut state, i, None);
                            summary.push(format!("{member}: no leader"));
                            continue;
                        }
                    }
                }
                Answer::Unreachable(why) => {
                    summary.push(format!("{member}: {why}"));
                    tracing::debug!(target: "switchover::postgres", member = %member, problem = %why, "patroni member unreachable");
                    continue;
                }
                Answer::Bad(why) => {
                    bad += 1;
                    summary.push(format!("{member}: {why}"));
                    self.note(&mut state, i, Some(why));
                    continue;
                }
            };
            let Some(id) = self.host(&leader.addr).cloned() else {
                let why = format!(
                    "leader {:?} at {}, which is not one of the pool's hosts",
                    leader.name, leader.addr
                );
                summary.push(format!("{member}: {why}"));
                self.note(&mut state, i, Some(why));
                unknown.get_or_insert((leader, i));
                continue;
            };
            self.note(&mut state, i, None);
            let Some(epoch) = state.epochs.epoch(&id, leader.timeline) else {
                summary.push(format!(
                    "{member}: leader {:?} has no timeline yet",
                    leader.name
                ));
                continue;
            };
            if best.as_ref().is_none_or(|b| epoch > b.epoch) {
                best = Some(Best {
                    id,
                    epoch,
                    leader,
                    member: i,
                });
            }
        }
        if let Some(b) = best {
            // Another leader than the one followed: checked first (see `read`).
            let new = state.epochs.current() != Some(&b.id);
            let check = new.then(|| b.leader.api.clone()).flatten();
            let timeline = b
                .leader
                .timeline
                .map_or("unpublished".into(), |t| t.to_string());
            let reason = format!(
                "patroni leader {:?} ({}, timeline {timeline}) per {}",
                b.leader.name, b.leader.state, self.members[b.member]
            );
            let decision = Decision {
                record: Record::new(b.id, b.epoch).with_reason(reason),
                timeline: b.leader.timeline,
                name: b.leader.name,
                retimed: false,
            };
            return Ok(match check {
                Some(api) => Decided::Check(decision, api),
                None => Decided::Follow(self.commit(&mut state, decision)),
            });
        }
        if let Some((leader, _)) = unknown {
            // The follower reports a record naming an endpoint it does not route.
            let id: Arc<str> = Arc::from(leader.addr.as_str());
            let epoch = state.epochs.epoch(&id, leader.timeline).unwrap_or(0);
            return Ok(Decided::Follow(
                Record::new(id, epoch).with_reason(format!("patroni leader {:?}", leader.name)),
            ));
        }
        let summary = summary.join("; ");
        if bad > 0 && answered == 0 {
            Err(AuthorityError::unparsable(summary))
        } else {
            Err(AuthorityError::unreachable(summary))
        }
    }
}

/// One member's answer to `GET /cluster`.
async fn ask(member: &str, timeout: Duration) -> Answer {
    match http::get(member, "/cluster", timeout).await {
        Ok(r) => Answer::from_response(r.status, &r.body),
        Err(HttpError::Unreachable(e)) => Answer::Unreachable(e),
        Err(HttpError::Malformed(e)) => Answer::Bad(e),
    }
}

impl Answer {
    /// A member's answer from its HTTP status and body.
    pub(super) fn from_response(status: u16, body: &[u8]) -> Answer {
        if status != 200 {
            return Answer::Bad(format!("/cluster answered HTTP {status}"));
        }
        match cluster::parse(body) {
            Ok(view) => Answer::View(view),
            Err(e) => Answer::Bad(format!("/cluster body: {e}")),
        }
    }
}

impl Authority<Arc<str>> for Patroni {
    async fn read(&self) -> Result<Record<Arc<str>>, AuthorityError> {
        let answers = self.ask_all().await;
        match self.decide(answers)? {
            Decided::Follow(record) => Ok(record),
            // The pool confirms the promotion itself: follow as named, at once, unless that
            // epoch would look stale (a former leader named again before `/cluster` shows its
            // new timeline): then its own API gives the timeline.
            Decided::Check(decision, _)
                if !self.wait_promoted && decision.record.epoch() > lock(&self.state).returned =>
            {
                Ok(self.follow_now(decision))
            }
            Decided::Check(decision, api) => {
                // A new leader: follow it once its Postgres runs as primary, so the pool's own
                // role probes (which see a standby until then) agree with the record. A leader
                // whose API does not say is followed at once: the leader key decides.
                let answer = http::get(&api, "/patroni", self.request_timeout).await;
                let promoted = answer
                    .ok()
                    .filter(|r| r.status == 200 || r.status == 503)
                    .and_then(|r| cluster::promoted(&r.body));
                match promoted {
                    Some((false, _)) if self.wait_promoted => {
                        Err(AuthorityError::unreachable(format!(
                            "leader {:?} named, its Postgres not promoted yet",
                            decision.name
                        )))
                    }
                    // The server's own timeline: `/cluster` shows the new one a loop later.
                    Some((true, Some(t))) => Ok(self.follow_now(decision.on_timeline(t))),
                    _ => Ok(self.follow_now(decision)),
                }
            }
        }
    }
}

/// A leader chosen from one round of answers, not yet remembered.
pub(super) struct Decision {
    record: Record<Arc<str>>,
    timeline: Option<u64>,
    name: String,
    /// The timeline came from the leader itself: the epoch is computed again.
    retimed: bool,
}

impl Decision {
    /// The same leader on `timeline`, when that is above what `/cluster` showed.
    fn on_timeline(mut self, timeline: u64) -> Decision {
        if self.timeline.is_some_and(|t| t >= timeline) {
            return self;
        }
        self.timeline = Some(timeline);
        self.retimed = true;
        self
    }
}

/// What a round of answers leads to.
pub(super) enum Decided {
    /// Return this record.
    Follow(Record<Arc<str>>),
    /// A new leader: follow it once its REST API (`host:port`) says it runs as primary.
    Check(Decision, String),
}

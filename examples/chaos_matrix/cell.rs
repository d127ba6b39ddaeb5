//! The matrix itself: backends, faults, which cells the quick form runs, and one cell's row.

use std::fmt;
use std::time::Duration;

/// A backend under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Postgres,
    Dynamo,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Redis, Backend::Postgres, Backend::Dynamo];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
            Backend::Dynamo => "dynamodb",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|b| b.name() == s || (s == "dynamo" && *b == Backend::Dynamo))
    }
}

/// A fault injected into a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The primary (preferred region) killed with SIGKILL.
    Kill,
    /// The primary stopped gracefully (Redis `SHUTDOWN`, `pg_ctl stop -m fast`, SIGTERM).
    Stop,
    /// The primary frozen with SIGSTOP: the kernel keeps the connections open.
    Freeze,
    /// Packets to and from the primary dropped (network namespace).
    Partition,
    /// Every connection to the primary reset (TCP RST) at once.
    Reset,
    /// Every reply of the primary delayed for a while.
    Latency,
    /// The primary fenced read-only / demoted while another node takes over.
    Demote,
    /// The primary's network flaps: reset, back, reset, back...
    Flap,
    /// Every server down, then back.
    AllDown,
    /// Failover, then the preferred node comes back and traffic returns to it.
    Failback,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::Kill,
        Fault::Stop,
        Fault::Freeze,
        Fault::Partition,
        Fault::Reset,
        Fault::Latency,
        Fault::Demote,
        Fault::Flap,
        Fault::AllDown,
        Fault::Failback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill9",
            Fault::Stop => "stop",
            Fault::Freeze => "sigstop",
            Fault::Partition => "partition",
            Fault::Reset => "rst",
            Fault::Latency => "latency",
            Fault::Demote => "demote",
            Fault::Flap => "flap",
            Fault::AllDown => "alldown",
            Fault::Failback => "failback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub backend: Backend,
    pub fault: Fault,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.backend.name(), self.fault.name())
    }
}

/// The cells of `-- quick` (about two minutes here): per backend one loud failover (kill -9)
/// and its silent ones (frozen process, packet-drop partition), plus the Postgres read-only
/// fence, the one wrong-role path a caller could see.
const QUICK: [(Backend, Fault); 8] = [
    (Backend::Redis, Fault::Kill),
    (Backend::Redis, Fault::Partition),
    (Backend::Postgres, Fault::Kill),
    (Backend::Postgres, Fault::Freeze),
    (Backend::Postgres, Fault::Demote),
    (Backend::Dynamo, Fault::Kill),
    (Backend::Dynamo, Fault::Freeze),
    (Backend::Dynamo, Fault::Partition),
];

/// Which cells a run covers.
pub enum Selection {
    All,
    Quick,
    Only(Backend, Option<Fault>),
}

impl Selection {
    /// From the command line: nothing, `quick`, or `only <backend>[/<fault>]`.
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        match args {
            [] => Ok(Selection::All),
            [q] if q == "quick" => Ok(Selection::Quick),
            [o, what] if o == "only" => {
                let (b, f) = match what.split_once('/') {
                    Some((b, f)) => (b, Some(f)),
                    None => (what.as_str(), None),
                };
                let backend = Backend::parse(b)
                    .ok_or_else(|| format!("unknown backend `{b}` (redis, postgres, dynamodb)"))?;
                let fault = match f {
                    Some(f) => Some(Fault::parse(f).ok_or_else(|| {
                        let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                        format!("unknown fault `{f}` ({})", names.join(", "))
                    })?),
                    None => None,
                };
                Ok(Selection::Only(backend, fault))
            }
            _ => Err("usage: chaos_matrix [quick | only <backend>[/<fault>]]".into()),
        }
    }

    pub fn cells(&self) -> Vec<Cell> {
        let all = Backend::ALL.into_iter().flat_map(|backend| {
            Fault::ALL
                .into_iter()
                .map(move |fault| Cell { backend, fault })
        });
        match self {
            Selection::All => all.collect(),
            Selection::Quick => QUICK
                .iter()
                .map(|&(backend, fault)| Cell { backend, fault })
                .collect(),
            Selection::Only(b, f) => all
                .filter(|c| c.backend == *b && f.is_none_or(|f| c.fault == f))
                .collect(),
        }
    }
}

/// How a cell ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The fault means nothing for this backend: printed, not counted as passed.
    NotApplicable(String),
}

/// What one cell measured.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Calls made (reads and writes).
    pub ops: u64,
    /// Calls that returned an error.
    pub failed: u64,
    /// Acked writes missing afterwards that the server itself did not lose.
    pub lost: u64,
    /// Acked writes missing afterwards that the server may have lost (replication lag at the
    /// fault, or a server that came back empty).
    pub server_lost: u64,
    /// Non-idempotent writes applied more than once.
    pub doubled: u64,
    /// Errors naming the wrong role (`READONLY`, SQLSTATE 25006) returned to a caller.
    pub wrong_role: u64,
    /// The client gap (see the README), `None` when no write succeeded after the anchor.
    pub client_gap: Option<Duration>,
    /// The worst time a call took beyond its deadline.
    pub max_over_deadline: Duration,
}

/// A finished cell: its counts and its verdict, plus a note on what happened.
pub struct Outcome {
    pub cell: Cell,
    pub counts: Counts,
    pub verdict: Verdict,
    pub took: Duration,
}

/// The largest client gap a cell may show.
pub const MAX_GAP: Duration = Duration::from_millis(1000);
/// How far beyond its deadline a call may return.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(100);

impl Counts {
    /// The verdict of the checks every cell makes; `note` is added to its reason.
    pub fn verdict(&self, note: &str) -> Verdict {
        let mut why = Vec::new();
        if self.lost > 0 {
            why.push(format!("{} acked writes lost", self.lost));
        }
        if self.doubled > 0 {
            why.push(format!("{} writes applied twice", self.doubled));
        }
        if self.wrong_role > 0 {
            why.push(format!(
                "{} wrong-role errors reached callers",
                self.wrong_role
            ));
        }
        match self.client_gap {
            None => why.push("no write succeeded after the fault".into()),
            Some(g) if g > MAX_GAP => why.push(format!("client gap {} ms > 1000", g.as_millis())),
            Some(_) => {}
        }
        if self.max_over_deadline > DEADLINE_SLACK {
            why.push(format!(
                "a call returned {} ms after its deadline",
                self.max_over_deadline.as_millis()
            ));
        }
        if why.is_empty() {
            Verdict::Pass
        } else {
            if !note.is_empty() {
                why.push(note.to_owned());
            }
            Verdict::Fail(why.join("; "))
        }
    }
}

pub fn header() -> String {
    format!(
        "{:<9} {:<9} {:>6} {:>6} {:>5} {:>11} {:>7} {:>10} {:>13} {:>20}  {}",
        "backend",
        "fault",
        "ops",
        "failed",
        "lost",
        "server_lost",
        "doubled",
        "wrong_role",
        "client_gap_ms",
        "max_over_deadline_ms",
        "verdict"
    )
}

impl Outcome {
    pub fn row(&self) -> String {
        let c = &self.counts;
        let gap = c
            .client_gap
            .map_or("none".to_owned(), |g| g.as_millis().to_string());
        let (gap, verdict) = match &self.verdict {
            Verdict::NotApplicable(why) => ("-".to_owned(), format!("n/a: {why}")),
            Verdict::Pass => (gap, format!("PASS ({:.0} s)", self.took.as_secs_f64())),
            Verdict::Fail(why) => (gap, format!("FAIL: {why}")),
        };
        format!(
            "{:<9} {:<9} {:>6} {:>6} {:>5} {:>11} {:>7} {:>10} {:>13} {:>20}  {}",
            self.cell.backend.name(),
            self.cell.fault.name(),
            c.ops,
            c.failed,
            c.lost,
            c.server_lost,
            c.doubled,
            c.wrong_role,
            gap,
            c.max_over_deadline.as_millis(),
            verdict
        )
    }
}

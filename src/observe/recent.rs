//! The last classified failures of an endpoint, packed in one word so that recording one costs
//! a load and a store on the failure path.

use std::fmt;

use crate::error::{Classification, ErrorClass, Execution};

/// The last (up to 8) classified failures recorded on an endpoint, newest first: what a
/// timeline event says "led to it". Only the classification is kept, never the error's text (it
/// may hold a query or a credential).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentFailures(u64);

/// One classified failure in [`RecentFailures`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureNote {
    /// The class (transient or throttled: permanent errors are not kept).
    pub class: ErrorClass,
    /// `true` unless the request surely did not run.
    pub may_have_executed: bool,
    /// `true` when the attempt was cut by the policy's attempt timeout or deadline.
    pub timed_out: bool,
    /// `true` when the error carried a retry-after.
    pub retry_after: bool,
}

const VALID: u8 = 0x80;
const THROTTLED: u8 = 0x01;
const PERMANENT: u8 = 0x02;
const MAY_HAVE_EXECUTED: u8 = 0x04;
const TIMED_OUT: u8 = 0x08;
const RETRY_AFTER: u8 = 0x10;

impl RecentFailures {
    /// The one-byte code of a failure.
    pub(crate) fn code(c: Classification, timed_out: bool) -> u8 {
        let class = match c.class() {
            ErrorClass::Throttled => THROTTLED,
            ErrorClass::Permanent => PERMANENT,
            _ => 0,
        };
        let mut code = VALID | class;
        if c.execution() == Execution::MayHaveExecuted {
            code |= MAY_HAVE_EXECUTED;
        }
        if timed_out {
            code |= TIMED_OUT;
        }
        if c.retry_after().is_some() {
            code |= RETRY_AFTER;
        }
        code
    }

    /// Just one failure.
    pub(crate) fn one(c: Classification, timed_out: bool) -> Self {
        RecentFailures(u64::from(Self::code(c, timed_out)))
    }

    /// The outcome label of the newest failure (`transient` when there is none).
    pub(crate) fn outcome(&self) -> &'static str {
        self.iter().next().map_or("transient", |n| n.outcome())
    }

    pub(crate) fn from_bits(bits: u64) -> Self {
        RecentFailures(bits)
    }

    /// Only the newest `n` (at most 8).
    pub(crate) fn newest(self, n: usize) -> Self {
        match n {
            0 => RecentFailures(0),
            n if n >= 8 => self,
            n => RecentFailures(self.0 & ((1u64 << (8 * n)) - 1)),
        }
    }

    /// The failures, newest first.
    pub fn iter(&self) -> impl Iterator<Item = FailureNote> + '_ {
        (0..8)
            .map(|i| (self.0 >> (8 * i)) as u8)
            .take_while(|b| b & VALID != 0)
            .map(|b| FailureNote {
                class: match b & 0x03 {
                    THROTTLED => ErrorClass::Throttled,
                    PERMANENT => ErrorClass::Permanent,
                    _ => ErrorClass::Transient,
                },
                may_have_executed: b & MAY_HAVE_EXECUTED != 0,
                timed_out: b & TIMED_OUT != 0,
                retry_after: b & RETRY_AFTER != 0,
            })
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// `true` when none is kept.
    pub fn is_empty(&self) -> bool {
        self.0 as u8 & VALID == 0
    }
}

impl fmt::Debug for RecentFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FailureNote {
    /// `transient`, `throttled`, `timeout` (a cut attempt) or `permanent`: the `outcome` label
    /// of the attempt metric and the `class` of a timeline error.
    pub fn outcome(&self) -> &'static str {
        match (self.timed_out, self.class) {
            (true, _) => "timeout",
            (_, ErrorClass::Throttled) => "throttled",
            (_, ErrorClass::Permanent) => "permanent",
            _ => "transient",
        }
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for FailureNote {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("FailureNote", 3)?;
        st.serialize_field("class", self.outcome())?;
        st.serialize_field("mayHaveExecuted", &self.may_have_executed)?;
        st.serialize_field("retryAfter", &self.retry_after)?;
        st.end()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for RecentFailures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn codes_round_trip_newest_first_and_keep_eight() {
        let mut bits = 0u64;
        let push =
            |bits: &mut u64, c, t| *bits = (*bits << 8) | u64::from(RecentFailures::code(c, t));
        push(&mut bits, Classification::transient().not_executed(), false);
        push(
            &mut bits,
            Classification::throttled().with_retry_after(Duration::ZERO),
            false,
        );
        push(&mut bits, Classification::transient(), true);
        let notes: Vec<_> = RecentFailures::from_bits(bits).iter().collect();
        assert_eq!(notes.len(), 3);
        assert_eq!(notes[0].outcome(), "timeout");
        assert!(notes[0].may_have_executed);
        assert_eq!(notes[1].class, ErrorClass::Throttled);
        assert!(notes[1].retry_after);
        assert_eq!(notes[2].outcome(), "transient");
        assert!(!notes[2].may_have_executed);
        for _ in 0..20 {
            push(&mut bits, Classification::transient(), false);
        }
        assert_eq!(RecentFailures::from_bits(bits).len(), 8);
        assert!(RecentFailures::default().is_empty());
    }
}

//! The lease holder's decision: which region the fleet writes to, from every instance's reports.

use std::time::Duration;

use super::record::Report;

/// The rules of the decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Rules {
    /// Move away from the active region once at least this share of the reporting instances
    /// cannot reach it (and another region is reachable by more of them).
    pub(super) switch_share: f64,
    /// Move back to a more preferred region once every reporting instance has reached it for
    /// this long (`None`: never by itself).
    pub(super) failback_after: Option<Duration>,
}

/// What the holder keeps between decisions: since when a failback candidate has been
/// reachable by everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Memory {
    pub(super) failback: Option<(String, u64)>,
}

/// The region to switch to and why, or `None` to keep `active`.
///
/// `regions` are in order of preference; `reports` are the fresh reports (the holder's own
/// included), so "reach" is how many reporting instances can reach a region.
pub(super) fn decide(
    regions: &[&str],
    active: &str,
    reports: &[&Report],
    rules: Rules,
    memory: &mut Memory,
    now_ms: u64,
) -> Option<(String, String)> {
    let m = reports.len();
    let reach = |r: &str| {
        reports
            .iter()
            .filter(|rep| !rep.unreachable.iter().any(|u| u == r))
            .count()
    };
    // The most reachable region, the more preferred on a tie.
    let best = regions
        .iter()
        .copied()
        .fold(None::<(&str, usize)>, |best, r| match best {
            Some((_, n)) if n >= reach(r) => best,
            _ => Some((r, reach(r))),
        });
    let (best, best_reach) = best?;
    let Some(position) = regions.iter().position(|r| *r == active) else {
        memory.failback = None;
        return Some((
            best.to_owned(),
            format!("the record named `{active}`, which is not a region of the table"),
        ));
    };
    let current = reach(active);
    let cut = m - current;
    if m > 0 && cut as f64 >= rules.switch_share * m as f64 && best_reach > current {
        memory.failback = None;
        return Some((
            best.to_owned(),
            format!(
                "{active} unreachable by {cut} of {m} instances; {best} by {} of {m}",
                m - best_reach
            ),
        ));
    }
    // Failback: the most preferred region everyone reaches, if it is preferred to `active`.
    let after = rules.failback_after?;
    let preferred = regions[..position].iter().find(|r| reach(r) == m && m > 0);
    let Some(p) = preferred else {
        memory.failback = None;
        return None;
    };
    match &memory.failback {
        Some((r, since)) if r == p => {
            if now_ms.saturating_sub(*since) >= after.as_millis() as u64 {
                memory.failback = None;
                return Some((
                    (*p).to_owned(),
                    format!("failback: {p} reachable by all {m} instances for {after:?}"),
                ));
            }
        }
        _ => memory.failback = Some(((*p).to_owned(), now_ms)),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(unreachable: &[&str]) -> Report {
        Report {
            unreachable: unreachable.iter().map(|s| (*s).to_owned()).collect(),
            at_ms: 0,
        }
    }

    const RULES: Rules = Rules {
        switch_share: 0.5,
        failback_after: Some(Duration::from_secs(5)),
    };

    #[test]
    fn half_the_fleet_cut_off_moves_it_one_instance_does_not() {
        let regions = ["a", "b"];
        let cut = rep(&["a"]);
        let fine = rep(&[]);
        let mut mem = Memory::default();
        let one: Vec<&Report> = std::iter::once(&cut)
            .chain(std::iter::repeat_n(&fine, 19))
            .collect();
        assert_eq!(decide(&regions, "a", &one, RULES, &mut mem, 0), None);
        let half: Vec<&Report> = std::iter::repeat_n(&cut, 10)
            .chain(std::iter::repeat_n(&fine, 10))
            .collect();
        let (to, why) = decide(&regions, "a", &half, RULES, &mut mem, 0).unwrap();
        assert_eq!(to, "b");
        assert_eq!(why, "a unreachable by 10 of 20 instances; b by 0 of 20");
        // Nobody reaches anything: nothing is better, keep.
        let none = rep(&["a", "b"]);
        assert_eq!(
            decide(&regions, "a", &[&none, &none], RULES, &mut mem, 0),
            None
        );
    }

    #[test]
    fn failback_after_everyone_reaches_the_preferred_region_for_the_delay() {
        let regions = ["a", "b"];
        let fine = rep(&[]);
        let all = [&fine, &fine, &fine];
        let mut mem = Memory::default();
        assert_eq!(decide(&regions, "b", &all, RULES, &mut mem, 1_000), None);
        assert_eq!(decide(&regions, "b", &all, RULES, &mut mem, 5_999), None);
        let (to, _) = decide(&regions, "b", &all, RULES, &mut mem, 6_000).unwrap();
        assert_eq!(to, "a");
        // One instance losing `a` restarts the clock.
        let cut = rep(&["a"]);
        assert_eq!(
            decide(&regions, "b", &[&fine, &cut], RULES, &mut mem, 7_000),
            None
        );
        assert_eq!(
            decide(&regions, "b", &[&fine, &fine], RULES, &mut mem, 8_000),
            None
        );
        assert_eq!(
            decide(&regions, "b", &[&fine, &fine], RULES, &mut mem, 12_999),
            None
        );
        assert!(decide(&regions, "b", &[&fine, &fine], RULES, &mut mem, 13_000).is_some());
    }

    #[test]
    fn an_unknown_active_region_is_replaced_by_the_most_reachable() {
        let mut mem = Memory::default();
        let r = rep(&["a"]);
        let (to, why) = decide(&["a", "b"], "mars-1", &[&r], RULES, &mut mem, 0).unwrap();
        assert_eq!(to, "b");
        assert_eq!(
            why,
            "the record named `mars-1`, which is not a region of the table"
        );
    }
}

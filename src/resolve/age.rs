//! The maximum age of a connection, drawn per connection up to 10 % below the configured
//! maximum so that the connections of a fleet do not all reconnect at once.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::sync::lock;

/// The share of the maximum a connection's limit may fall below it.
const SPREAD: f64 = 0.1;

/// A pool's maximum connection age (`None`: no limit), and the random source of each
/// connection's own limit.
pub(crate) struct AgeLimit {
    max: Option<Duration>,
    rng: Mutex<SmallRng>,
}

impl std::fmt::Debug for AgeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgeLimit")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl AgeLimit {
    /// `seed`: a fixed sequence of limits (tests); `None`: from the OS.
    pub(crate) fn new(max: Option<Duration>, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => SmallRng::seed_from_u64(s),
            None => rand::make_rng(),
        };
        AgeLimit {
            max,
            rng: Mutex::new(rng),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn max(&self) -> Option<Duration> {
        self.max
    }

    /// The limit of one new connection: between 90 % and 100 % of the maximum.
    pub(crate) fn draw(&self) -> Option<Duration> {
        let max = self.max?;
        let cut: f64 = lock(&self.rng).random_range(0.0..SPREAD);
        Some(max.mul_f64(1.0 - cut))
    }

    /// When a connection made now stops being handed out (`None`: never).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.draw().map(|d| Instant::now() + d)
    }
}

/// `true` once `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fall_within_ten_percent_below_the_maximum_and_follow_the_seed() {
        let max = Duration::from_secs(600);
        let a = AgeLimit::new(Some(max), Some(7));
        let b = AgeLimit::new(Some(max), Some(7));
        let c = AgeLimit::new(Some(max), Some(8));
        let (mut xs, mut ys, mut zs) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..1000 {
            xs.push(a.draw().unwrap());
            ys.push(b.draw().unwrap());
            zs.push(c.draw().unwrap());
        }
        assert_eq!(xs, ys, "the same seed draws the same limits");
        assert_ne!(xs, zs);
        let low = Duration::from_secs(540);
        assert!(xs.iter().all(|d| *d > low && *d <= max));
        // Spread over the whole band, not bunched: both tenths of it are used.
        assert!(xs.iter().any(|d| *d < Duration::from_secs(546)));
        assert!(xs.iter().any(|d| *d > Duration::from_secs(594)));
        assert_eq!(AgeLimit::new(None, Some(7)).draw(), None);
    }

    /// A connection's deadline passes exactly at its drawn limit, not a tick before.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_passes_at_its_drawn_limit() {
        let ages = AgeLimit::new(Some(Duration::from_secs(10)), Some(3));
        let limit = AgeLimit::new(Some(Duration::from_secs(10)), Some(3))
            .draw()
            .unwrap();
        let deadline = ages.deadline();
        tokio::time::sleep(limit - Duration::from_millis(1)).await;
        assert!(!expired(deadline));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(expired(deadline));
        assert!(!expired(None));
    }
}

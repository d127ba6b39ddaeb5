use std::fmt;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::error::ConfigError;

/// Something that hands out a fresh schedule of delays for each call.
///
/// A schedule is just an [`Iterator`] of [`Duration`]s: the delay before the 2nd attempt, before
/// the 3rd, and so on. When it ends, the executor stops retrying. The executor asks for a
/// schedule only after the first failure, so a first-try success never pays for one.
pub trait Backoff {
    /// The iterator of delays for one call.
    type Schedule: Iterator<Item = Duration>;

    /// A new schedule, starting from the first retry.
    fn schedule(&self) -> Self::Schedule;
}

/// How random jitter spreads the delays of an [`ExponentialBackoff`].
///
/// With `d = min(cap, base × factor^n)`:
///
/// | jitter | delay |
/// |---|---|
/// | [`None`](Jitter::None) | `d` |
/// | [`Full`](Jitter::Full) (default) | uniform in `[0, d]` |
/// | [`Equal`](Jitter::Equal) | `d/2` + uniform in `[0, d/2]` |
/// | [`Decorrelated`](Jitter::Decorrelated) | `min(cap, uniform in [base, 3 × previous])` |
///
/// Whatever the jitter, no delay exceeds the cap.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: the plain exponential delay.
    None,
    /// Uniform between zero and the exponential delay (AWS "full jitter"). The default.
    #[default]
    Full,
    /// Half the exponential delay plus a uniform share of the other half.
    Equal,
    /// Each delay uniform between `base` and three times the previous one, capped.
    Decorrelated,
}

/// Exponential backoff with a cap and jitter: the default schedule.
///
/// Defaults: `base` 50 ms, `factor` 2, `cap` 5 s, [`Jitter::Full`], entropy-seeded RNG.
/// Build it with [`ExponentialBackoff::builder`]; values are validated by
/// [`build`](ExponentialBackoffBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::{Backoff, ExponentialBackoff, Jitter};
///
/// let backoff = ExponentialBackoff::builder()
///     .base(Duration::from_millis(100))
///     .factor(2.0)
///     .cap(Duration::from_secs(1))
///     .jitter(Jitter::None)
///     .build()?;
/// let delays: Vec<_> = backoff.schedule().take(5).map(|d| d.as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000]);
/// # Ok::<(), switchover::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct ExponentialBackoff {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
    seed: Option<u64>,
}

impl fmt::Debug for ExponentialBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialBackoff")
            .field("base", &self.base)
            .field("factor", &self.factor)
            .field("cap", &self.cap)
            .field("jitter", &self.jitter)
            .field("seeded", &self.seed.is_some())
            .finish()
    }
}

impl Default for ExponentialBackoff {
    fn default() -> Self {
        ExponentialBackoff {
            base: Duration::from_millis(50),
            factor: 2.0,
            cap: Duration::from_secs(5),
            jitter: Jitter::Full,
            seed: None,
        }
    }
}

impl ExponentialBackoff {
    /// A builder starting from the defaults.
    pub const fn builder() -> ExponentialBackoffBuilder {
        ExponentialBackoffBuilder {
            base: Duration::from_millis(50),
            factor: 2.0,
            cap: Duration::from_secs(5),
            jitter: Jitter::Full,
            seed: None,
        }
    }

    /// The first delay before jitter.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor per attempt.
    pub const fn factor(&self) -> f64 {
        self.factor
    }

    /// The largest delay the schedule ever yields.
    pub const fn cap(&self) -> Duration {
        self.cap
    }

    /// The jitter.
    pub const fn jitter(&self) -> Jitter {
        self.jitter
    }
}

/// Builder of [`ExponentialBackoff`]; `Copy`, with `const` setters.
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct ExponentialBackoffBuilder {
    base: Duration,
    factor: f64,
    cap: Duration,
    jitter: Jitter,
    seed: Option<u64>,
}

impl ExponentialBackoffBuilder {
    /// The first delay before jitter (default 50 ms). Must be above zero and at most `cap`.
    pub const fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The growth factor per attempt (default 2). Must be finite and at least 1.
    pub const fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The largest delay (default 5 s). Jitter never pushes a delay above it.
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// The jitter (default [`Jitter::Full`]).
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seeds the jitter RNG: every schedule of the built backoff is then the same sequence.
    /// Without a seed (the default) each schedule is seeded from entropy.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when `base` is zero or above `cap`, or `factor` is
    /// below 1 or not finite.
    pub fn build(self) -> Result<ExponentialBackoff, ConfigError> {
        if self.base.is_zero() {
            return Err(ConfigError::new("base", "must be above zero"));
        }
        if self.base > self.cap {
            return Err(ConfigError::new(
                "base",
                format!("{:?} is above the cap of {:?}", self.base, self.cap),
            ));
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(ConfigError::new(
                "factor",
                format!("must be a finite number of at least 1, got {}", self.factor),
            ));
        }
        Ok(ExponentialBackoff {
            base: self.base,
            factor: self.factor,
            cap: self.cap,
            jitter: self.jitter,
            seed: self.seed,
        })
    }
}

impl Backoff for ExponentialBackoff {
    type Schedule = ExponentialSchedule;

    fn schedule(&self) -> ExponentialSchedule {
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        ExponentialSchedule {
            backoff: *self,
            attempt: 0,
            previous: self.base,
            rng,
        }
    }
}

/// The delays of one call under an [`ExponentialBackoff`]. Endless; the executor's attempt
/// limit and deadline end it.
pub struct ExponentialSchedule {
    backoff: ExponentialBackoff,
    attempt: u32,
    previous: Duration,
    rng: SmallRng,
}

impl fmt::Debug for ExponentialSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialSchedule")
            .field("backoff", &self.backoff)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// `min(cap, base × factor^n)`, saturating: never overflows, whatever `n`.
fn exponential(base: Duration, factor: f64, cap: Duration, n: u32) -> Duration {
    // powi saturates to +inf for huge n; the min() below then yields the cap.
    let nanos = base.as_nanos() as f64 * factor.powi(n.min(i32::MAX as u32) as i32);
    let cap_nanos = cap.as_nanos() as f64;
    if !nanos.is_finite() || nanos >= cap_nanos {
        cap
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

/// Uniform in `[lo, hi]` (inclusive) in nanoseconds.
fn uniform(rng: &mut SmallRng, lo: Duration, hi: Duration) -> Duration {
    let lo = lo.as_nanos().min(u64::MAX as u128) as u64;
    let hi = hi.as_nanos().min(u64::MAX as u128) as u64;
    if hi <= lo {
        return Duration::from_nanos(lo);
    }
    Duration::from_nanos(rng.random_range(lo..=hi))
}

impl Iterator for ExponentialSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ExponentialBackoff {
            base,
            factor,
            cap,
            jitter,
            ..
        } = self.backoff;
        let d = exponential(base, factor, cap, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let delay = match jitter {
            Jitter::None => d,
            Jitter::Full => uniform(&mut self.rng, Duration::ZERO, d),
            Jitter::Equal => {
                let half = d / 2;
                half + uniform(&mut self.rng, Duration::ZERO, d - half)
            }
            Jitter::Decorrelated => {
                let hi = self.previous.saturating_mul(3).min(cap);
                let next = uniform(&mut self.rng, base, hi).min(cap);
                self.previous = next;
                next
            }
        };
        Some(delay.min(cap))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

/// The same delay before every retry.
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::{Backoff, ConstantBackoff};
///
/// let b = ConstantBackoff::new(Duration::from_millis(10));
/// assert!(b.schedule().take(3).all(|d| d == Duration::from_millis(10)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstantBackoff {
    delay: Duration,
}

impl ConstantBackoff {
    /// Every retry waits `delay` (zero is allowed: retry at once).
    pub const fn new(delay: Duration) -> Self {
        ConstantBackoff { delay }
    }
}

impl Backoff for ConstantBackoff {
    type Schedule = std::iter::Repeat<Duration>;

    fn schedule(&self) -> Self::Schedule {
        std::iter::repeat(self.delay)
    }
}

/// A delay that grows by a fixed step per retry, up to a cap: `min(cap, initial + step × n)`.
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::{Backoff, LinearBackoff};
///
/// let b = LinearBackoff::new(
///     Duration::from_millis(100),
///     Duration::from_millis(50),
///     Duration::from_millis(220),
/// )?;
/// let delays: Vec<_> = b.schedule().take(4).map(|d| d.as_millis()).collect();
/// assert_eq!(delays, [100, 150, 200, 220]);
/// # Ok::<(), switchover::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearBackoff {
    initial: Duration,
    step: Duration,
    cap: Duration,
}

impl LinearBackoff {
    /// A linear schedule.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `initial` is above `cap`.
    pub fn new(initial: Duration, step: Duration, cap: Duration) -> Result<Self, ConfigError> {
        if initial > cap {
            return Err(ConfigError::new(
                "initial",
                format!("{initial:?} is above the cap of {cap:?}"),
            ));
        }
        Ok(LinearBackoff { initial, step, cap })
    }
}

/// The delays of one call under a [`LinearBackoff`].
#[derive(Clone, Debug)]
pub struct LinearSchedule {
    backoff: LinearBackoff,
    n: u32,
}

impl Backoff for LinearBackoff {
    type Schedule = LinearSchedule;

    fn schedule(&self) -> LinearSchedule {
        LinearSchedule {
            backoff: *self,
            n: 0,
        }
    }
}

impl Iterator for LinearSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let b = self.backoff;
        let d = b
            .initial
            .saturating_add(b.step.saturating_mul(self.n))
            .min(b.cap);
        self.n = self.n.saturating_add(1);
        Some(d)
    }
}

/// Any cloneable iterator of delays as a schedule: each call replays it from the start.
///
/// ```
/// use std::time::Duration;
/// use switchover::retry::{Backoff, CustomBackoff};
///
/// let b = CustomBackoff::new([10, 20, 20].map(Duration::from_millis));
/// assert_eq!(b.schedule().count(), 3); // three retries at most
/// ```
#[derive(Clone, Debug)]
pub struct CustomBackoff<I> {
    iter: I,
}

impl<I> CustomBackoff<I>
where
    I: Iterator<Item = Duration> + Clone,
{
    /// Replays `iter` for every call.
    pub fn new(iter: impl IntoIterator<IntoIter = I>) -> Self {
        CustomBackoff {
            iter: iter.into_iter(),
        }
    }
}

impl<I> Backoff for CustomBackoff<I>
where
    I: Iterator<Item = Duration> + Clone,
{
    type Schedule = I;

    fn schedule(&self) -> I {
        self.iter.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_without_jitter_is_exact_and_capped() {
        let b = ExponentialBackoff::builder()
            .base(ms(10))
            .factor(3.0)
            .cap(ms(500))
            .jitter(Jitter::None)
            .build()
            .unwrap();
        let got: Vec<_> = b.schedule().take(6).collect();
        assert_eq!(got, [ms(10), ms(30), ms(90), ms(270), ms(500), ms(500)]);
    }

    #[test]
    fn huge_attempt_numbers_saturate_at_the_cap() {
        let cap = Duration::from_secs(60);
        for n in [64, 1_000, 100_000, u32::MAX] {
            assert_eq!(exponential(ms(1), 2.0, cap, n), cap);
        }
        let mut s = ExponentialBackoff::builder()
            .cap(cap)
            .jitter(Jitter::None)
            .build()
            .unwrap()
            .schedule();
        s.attempt = u32::MAX - 1;
        assert_eq!(s.next(), Some(cap));
        assert_eq!(s.next(), Some(cap));
        assert_eq!(s.attempt, u32::MAX);
    }

    #[test]
    fn same_seed_same_schedule() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let b = ExponentialBackoff::builder()
                .jitter(jitter)
                .seed(7)
                .build()
                .unwrap();
            let a: Vec<_> = b.schedule().take(20).collect();
            let c: Vec<_> = b.schedule().take(20).collect();
            assert_eq!(a, c, "{jitter:?}");
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = ExponentialBackoff::builder()
            .factor(0.5)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "factor");
        let e = ExponentialBackoff::builder()
            .factor(f64::NAN)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "factor");
        let e = ExponentialBackoff::builder()
            .base(Duration::from_secs(10))
            .cap(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "base");
        let e = ExponentialBackoff::builder()
            .base(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(e.field(), "base");
        let e = LinearBackoff::new(ms(10), ms(1), ms(5)).unwrap_err();
        assert_eq!(e.field(), "initial");
    }

    #[test]
    fn linear_and_constant() {
        let l = LinearBackoff::new(ms(0), ms(5), ms(12)).unwrap();
        assert_eq!(
            l.schedule().take(5).collect::<Vec<_>>(),
            [ms(0), ms(5), ms(10), ms(12), ms(12)]
        );
        let mut big = l.schedule();
        big.n = u32::MAX;
        assert_eq!(big.next(), Some(ms(12)));
    }
}

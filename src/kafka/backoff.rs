//! Exponential backoff with jitter for retry loops: each step doubles from `initial`
//! up to `max`, and the jitter spreads instances that failed together (a coordinator
//! move hits every member at once) so they do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// How a step is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Uniform in `[0, step]`: the widest spread, but a delay may be near zero.
    Full,
    /// `step / 2` plus uniform in `[0, step / 2]`: spread, and never below half a step.
    Equal,
    /// Exactly the step (tests, or a single caller with nobody to collide with).
    None,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
    attempt: u32,
}

impl Backoff {
    /// `max` below `initial` is raised to `initial`.
    pub fn new(initial: Duration, max: Duration, jitter: Jitter) -> Self {
        Self {
            initial,
            max: max.max(initial),
            jitter,
            attempt: 0,
        }
    }

    /// The next step before jitter: `initial * 2^attempts`, at most `max`.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next retry; advances to the next step.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step();
        // Past 31 doublings the step is pinned at max anyway.
        self.attempt = self.attempt.saturating_add(1).min(32);
        jittered(step, self.jitter)
    }

    /// Back to `initial`, after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

fn jittered(step: Duration, jitter: Jitter) -> Duration {
    let nanos = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
    let mut rng = rand::rng();
    let nanos = match jitter {
        Jitter::None => nanos,
        Jitter::Full => rng.random_range(0..=nanos),
        Jitter::Equal => {
            let half = nanos / 2;
            half + rng.random_range(0..=nanos - half)
        }
    };
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn steps_double_up_to_max() {
        let mut b = Backoff::new(100 * MS, 1000 * MS, Jitter::None);
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Jitter::None,
        );
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert_eq!(b.step(), Duration::from_secs(30));
        let mut huge = Backoff::new(Duration::MAX, Duration::MAX, Jitter::Full);
        for _ in 0..40 {
            let _ = huge.next_delay();
        }
    }

    #[test]
    fn max_below_initial_is_initial() {
        let mut b = Backoff::new(500 * MS, 100 * MS, Jitter::None);
        assert_eq!(b.next_delay(), 500 * MS);
        assert_eq!(b.next_delay(), 500 * MS);
    }

    #[test]
    fn full_jitter_stays_within_the_step() {
        let mut b = Backoff::new(100 * MS, 800 * MS, Jitter::Full);
        for _ in 0..200 {
            let step = b.step();
            let d = b.next_delay();
            assert!(d <= step, "{d:?} > {step:?}");
        }
    }

    #[test]
    fn equal_jitter_stays_between_half_and_the_step() {
        let mut b = Backoff::new(100 * MS, 800 * MS, Jitter::Equal);
        let mut spread = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let step = b.step();
            let d = b.next_delay();
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside [{:?}, {step:?}]",
                step / 2
            );
            spread.insert(d);
        }
        // Randomised, not one fixed value per step.
        assert!(spread.len() > 10);
    }

    #[test]
    fn zero_initial_is_zero() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, Jitter::Full);
        assert_eq!(b.next_delay(), Duration::ZERO);
    }
}

//! The token bucket behind every rate in voxgate: new connections per client address (the
//! server's `client_limits`), frames and input bytes per session (`session::input_rate`), and the
//! pacing of audio to an upstream stream (`audio_buffer`). One type, so that the refill arithmetic
//! and its guards against extreme settings live in one place.
//!
//! Pure arithmetic on instants the caller gives, so it is tested without a clock. Two ways to take:
//! [`TokenBucket::try_take`] takes only what is there (else says how long to wait for it), and
//! [`TokenBucket::take_with_debt`] takes regardless, letting the level go negative — a debt the
//! caller waits out.

use std::time::{Duration, Instant};

/// Tokens refilling at a constant rate up to a capacity.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens available (negative: a debt, after [`TokenBucket::take_with_debt`]).
    level: f64,
    /// Most tokens the bucket holds: the burst.
    capacity: f64,
    /// Tokens added per second.
    rate: f64,
    /// When `level` was last brought up to date.
    last: Instant,
}

/// `secs` as a duration; `Duration::MAX` when it is beyond one (extreme rates), never a panic.
fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilling at `rate` per second.
    pub fn full(capacity: f64, rate: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            level: capacity,
            capacity,
            rate,
            last: now,
        }
    }

    /// Adds what has accrued since the last update, up to the capacity.
    pub fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Takes `n` tokens if they are there; otherwise takes nothing and returns how long until
    /// they will be (`Duration::MAX` if never: no rate, or more than the capacity).
    pub fn try_take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.level >= n {
            self.level -= n;
            return Ok(());
        }
        if self.rate <= 0.0 || n > self.capacity {
            return Err(Duration::MAX);
        }
        Err(duration((n - self.level) / self.rate))
    }

    /// Takes `n` tokens whether or not they are there; returns how long until the level is back
    /// to zero (zero when it is not in debt, or when there is no rate to wait for).
    pub fn take_with_debt(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        self.level -= n;
        if self.level >= 0.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            duration(-self.level / self.rate)
        }
    }

    /// Whether the bucket will be full at `now` (nothing taken from it still counts: a client's
    /// bucket that can be forgotten).
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level + elapsed * self.rate >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_take_takes_what_is_there_and_says_when_the_rest_comes() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(3.0, 10.0, t0);
        for _ in 0..3 {
            assert_eq!(bucket.try_take(1.0, t0), Ok(()));
        }
        assert_eq!(bucket.try_take(1.0, t0), Err(Duration::from_millis(100)));
        assert_eq!(
            bucket.try_take(1.0, t0 + Duration::from_millis(100)),
            Ok(())
        );
        assert_eq!(
            bucket.try_take(4.0, t0 + Duration::from_secs(10)),
            Err(Duration::MAX),
            "more than the capacity never comes"
        );
        assert_eq!(
            bucket.try_take(3.0, t0 + Duration::from_secs(10)),
            Ok(()),
            "refilled to the capacity, no further"
        );
    }

    #[test]
    fn take_with_debt_goes_negative_and_the_debt_is_waited_out() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(1_000.0, 2_000.0, t0);
        assert_eq!(bucket.take_with_debt(1_000.0, t0), Duration::ZERO);
        assert_eq!(
            bucket.take_with_debt(1_000.0, t0),
            Duration::from_millis(500)
        );
        let mut unpaced = TokenBucket::full(0.0, 0.0, t0);
        assert_eq!(unpaced.take_with_debt(5.0, t0), Duration::ZERO);
    }

    #[test]
    fn a_bucket_is_full_again_once_its_refill_time_has_passed() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(2.0, 1.0, t0);
        assert!(bucket.is_full_at(t0));
        assert_eq!(bucket.try_take(2.0, t0), Ok(()));
        assert!(!bucket.is_full_at(t0 + Duration::from_millis(1_999)));
        assert!(bucket.is_full_at(t0 + Duration::from_secs(2)));
    }

    /// Rates far outside any configuration give a duration, never a panic.
    #[test]
    fn extreme_rates_do_not_panic() {
        let t0 = Instant::now();
        for rate in [1e-300, f64::MIN_POSITIVE, 1e300, f64::INFINITY] {
            let mut bucket = TokenBucket::full(1.0, rate, t0);
            assert_eq!(bucket.try_take(1.0, t0), Ok(()));
            let _ = bucket.try_take(1.0, t0);
            let _ = bucket.take_with_debt(1e300, t0);
            let _ = bucket.is_full_at(t0);
        }
    }
}

//! `mirror.replication.throttled.rate`: a token bucket per link, shared by the link's
//! source fetchers on this instance. A fetch asks for at most the bytes the bucket
//! holds; what it brings back is taken afterwards (a batch larger than the bucket still
//! comes whole, as Kafka returns at least one batch), so the bucket can go into debt and
//! the next fetch waits until the debt is paid. Over any long stretch the link copies
//! at the rate, and a burst is at most one second of it.
//!
//! In a fleet every instance copies its share of the link's partitions, and its bucket
//! fills at the same share of the rate (`set_rate`), so the whole link keeps the rate.
//!
//! A mirror may have a rate of its own (within its link's): its partitions then wait
//! for its bucket too, without holding up the link's other partitions.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The most a fetch waits in one go, so a raised rate takes effect soon.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// A fetch waits for this many tokens (or one second's worth, if less), so a low rate
/// is not spent in fetches of one batch each.
const MIN_FETCH: f64 = 64.0 * 1024.0;

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; None: unlimited.
    rate: Option<f64>,
    /// Bytes that may be fetched now; negative while in debt.
    tokens: f64,
    filled_at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let elapsed = now.saturating_duration_since(self.filled_at).as_secs_f64();
            // A bucket holds at most one second of its rate.
            self.tokens = (self.tokens + elapsed * rate).min(rate);
        }
        self.filled_at = now;
    }
}

/// The throttle of one link on this instance.
#[derive(Debug)]
pub struct Throttle {
    bucket: Mutex<Bucket>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                rate: None,
                tokens: 0.0,
                filled_at: Instant::now(),
            }),
        }
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets this instance's rate in bytes per second (None: unlimited). A debt taken at
    /// the old rate is kept; unused tokens beyond one second of the new rate are not.
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut bucket = self.lock();
        let now = Instant::now();
        bucket.refill(now);
        let rate = rate.map(|r| (r as f64).max(1.0));
        if bucket.rate.is_none() {
            // From unlimited: start with an empty bucket, not a burst.
            bucket.tokens = 0.0;
        }
        bucket.rate = rate;
        if let Some(rate) = rate {
            bucket.tokens = bucket.tokens.min(rate);
        }
    }

    /// The rate this instance copies at, if limited.
    pub fn rate(&self) -> Option<u64> {
        self.lock().rate.map(|r| r as u64)
    }

    /// How many bytes a fetch may ask for now without waiting: `usize::MAX` when
    /// unlimited, 0 until the bucket holds enough for a fetch.
    pub fn available(&self) -> usize {
        let mut bucket = self.lock();
        let Some(rate) = bucket.rate else {
            return usize::MAX;
        };
        bucket.refill(Instant::now());
        if bucket.tokens >= MIN_FETCH.min(rate) {
            bucket.tokens as usize
        } else {
            0
        }
    }

    /// Waits until the bucket holds tokens and returns how many bytes a fetch may ask
    /// for now (`usize::MAX` when unlimited).
    pub async fn wait_for_tokens(&self) -> usize {
        loop {
            let wait = {
                let mut bucket = self.lock();
                let Some(rate) = bucket.rate else {
                    return usize::MAX;
                };
                bucket.refill(Instant::now());
                let enough = MIN_FETCH.min(rate);
                if bucket.tokens >= enough {
                    return bucket.tokens as usize;
                }
                Duration::from_secs_f64((enough - bucket.tokens) / rate)
            };
            tokio::time::sleep(wait.min(MAX_WAIT)).await;
        }
    }

    /// Takes `bytes` just fetched (the bucket may go into debt).
    pub fn take(&self, bytes: usize) {
        let mut bucket = self.lock();
        if bucket.rate.is_some() {
            bucket.refill(Instant::now());
            bucket.tokens -= bytes as f64;
        }
    }
}

/// This instance's part of a link's `rate`: the share of the link's copied partitions
/// it runs (`here` of `total`). None when unlimited; at least 1 byte/s when limited.
pub fn share_of(rate: Option<u64>, here: usize, total: usize) -> Option<u64> {
    let rate = rate?;
    if total == 0 || here >= total {
        return Some(rate.max(1));
    }
    Some((u128::from(rate) * here as u128 / total as u128).max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let throttle = Throttle::default();
        assert_eq!(throttle.wait_for_tokens().await, usize::MAX);
        throttle.take(1 << 30);
        assert_eq!(throttle.wait_for_tokens().await, usize::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_debt_is_paid_at_the_rate() {
        let throttle = Throttle::default();
        throttle.set_rate(Some(1000));
        let start = Instant::now();
        // Starts empty: a fetch waits for a second's worth (less than MIN_FETCH).
        assert_eq!(throttle.wait_for_tokens().await, 1000);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        throttle.take(5000);
        throttle.wait_for_tokens().await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(5990) && waited <= Duration::from_millis(6100),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_one_second_at_most() {
        let throttle = Throttle::default();
        throttle.set_rate(Some(1000));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(throttle.wait_for_tokens().await, 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_rate_keeps_the_debt_and_unlimited_clears_the_wait() {
        let throttle = Throttle::default();
        throttle.set_rate(Some(1000));
        tokio::time::sleep(Duration::from_secs(1)).await;
        throttle.set_rate(Some(100));
        assert_eq!(throttle.wait_for_tokens().await, 100);
        throttle.take(300);
        throttle.set_rate(None);
        assert_eq!(throttle.wait_for_tokens().await, usize::MAX);
        assert_eq!(throttle.rate(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn available_never_waits() {
        let throttle = Throttle::default();
        assert_eq!(throttle.available(), usize::MAX);
        throttle.set_rate(Some(1000));
        assert_eq!(throttle.available(), 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(throttle.available(), 1000);
        throttle.take(1500);
        assert_eq!(throttle.available(), 0);
    }

    #[test]
    fn an_instance_gets_its_share_of_the_link_rate() {
        assert_eq!(share_of(None, 1, 4), None);
        assert_eq!(share_of(Some(1000), 1, 4), Some(250));
        assert_eq!(share_of(Some(1000), 4, 4), Some(1000));
        assert_eq!(share_of(Some(1000), 0, 0), Some(1000));
        assert_eq!(share_of(Some(3), 1, 4), Some(1));
    }
}

//! Token buckets limiting a NIC's transmit rate in bytes and in packets,
//! in the manner of Firecracker's rate limiter.

use std::time::{Duration, Instant};

/// A bucket of `capacity` tokens refilled at `rate` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: u64,
    rate: u64,
    tokens: u64,
    /// Remainder of the refill in token·nanoseconds, so slow rates do not round to zero.
    carry_ns: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `rate` per second.
    pub fn new(capacity: u64, rate: u64, now: Instant) -> Self {
        Self {
            capacity,
            rate,
            tokens: capacity,
            carry_ns: 0,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let scaled = elapsed.as_nanos() * u128::from(self.rate) + self.carry_ns;
        let add = scaled / 1_000_000_000;
        self.carry_ns = scaled % 1_000_000_000;
        self.tokens = u64::try_from(u128::from(self.tokens) + add)
            .unwrap_or(u64::MAX)
            .min(self.capacity);
        if self.tokens == self.capacity {
            self.carry_ns = 0;
        }
    }

    /// Whether `n` tokens are available at `now` (a request larger than the
    /// capacity is allowed once the bucket is full, so it cannot stall forever).
    fn available(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= n.min(self.capacity)
    }

    fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n);
    }

    /// Time until `n` tokens will be available.
    fn wait_for(&self, n: u64) -> Duration {
        let missing = n.min(self.capacity).saturating_sub(self.tokens);
        if self.rate == 0 {
            return Duration::MAX;
        }
        Duration::from_nanos(
            u64::try_from(u128::from(missing) * 1_000_000_000 / u128::from(self.rate))
                .unwrap_or(u64::MAX),
        )
    }
}

/// Optional byte and packet buckets for one direction of a NIC.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    bytes: Option<TokenBucket>,
    packets: Option<TokenBucket>,
}

impl RateLimiter {
    /// A limiter from optional `(capacity, rate per second)` pairs for bytes and packets.
    pub fn new(bytes: Option<(u64, u64)>, packets: Option<(u64, u64)>) -> Self {
        let now = Instant::now();
        Self {
            bytes: bytes.map(|(c, r)| TokenBucket::new(c, r, now)),
            packets: packets.map(|(c, r)| TokenBucket::new(c, r, now)),
        }
    }

    /// Whether any bucket is configured.
    pub fn is_limiting(&self) -> bool {
        self.bytes.is_some() || self.packets.is_some()
    }

    /// Consume one packet of `len` bytes at `now`; `false` (and nothing consumed) if over the limit.
    pub fn try_consume(&mut self, len: u64, now: Instant) -> bool {
        let bytes_ok = self.bytes.as_mut().is_none_or(|b| b.available(len, now));
        let packets_ok = self.packets.as_mut().is_none_or(|b| b.available(1, now));
        if !(bytes_ok && packets_ok) {
            return false;
        }
        if let Some(b) = self.bytes.as_mut() {
            b.take(len);
        }
        if let Some(b) = self.packets.as_mut() {
            b.take(1);
        }
        true
    }

    /// How long until a packet of `len` bytes could pass.
    pub fn retry_after(&self, len: u64) -> Duration {
        let b = self
            .bytes
            .as_ref()
            .map_or(Duration::ZERO, |b| b.wait_for(len));
        let p = self
            .packets
            .as_ref()
            .map_or(Duration::ZERO, |b| b.wait_for(1));
        b.max(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_bucket_limits_then_refills() {
        let t0 = Instant::now();
        let mut rl = RateLimiter {
            bytes: None,
            packets: Some(TokenBucket::new(2, 10, t0)),
        };
        assert!(rl.try_consume(100, t0));
        assert!(rl.try_consume(100, t0));
        assert!(!rl.try_consume(100, t0));
        assert_eq!(rl.retry_after(100), Duration::from_millis(100));
        assert!(!rl.try_consume(100, t0 + Duration::from_millis(50)));
        assert!(rl.try_consume(100, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn byte_bucket_refuses_without_consuming_packets() {
        let t0 = Instant::now();
        let mut rl = RateLimiter {
            bytes: Some(TokenBucket::new(1000, 1000, t0)),
            packets: Some(TokenBucket::new(10, 1, t0)),
        };
        assert!(rl.try_consume(900, t0));
        assert!(!rl.try_consume(200, t0));
        assert_eq!(rl.packets.as_ref().map(|b| b.tokens), Some(9));
        // Oversized packets pass once the bucket is full again.
        assert!(rl.try_consume(5000, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn slow_rates_accumulate_fractional_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        b.take(10);
        for i in 1..=3 {
            b.refill(t0 + Duration::from_millis(100 * i));
        }
        assert_eq!(b.tokens, 0);
        b.refill(t0 + Duration::from_millis(400));
        assert_eq!(b.tokens, 1);
    }

    #[test]
    fn unlimited_limiter_always_passes() {
        let mut rl = RateLimiter::new(None, None);
        assert!(!rl.is_limiting());
        assert!(rl.try_consume(u64::MAX, Instant::now()));
    }
}

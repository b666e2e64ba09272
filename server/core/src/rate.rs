//! A token bucket: what a client may do at once (`burst`), then how often (`per_sec`). Used for
//! what a client can make the server do repeatedly: sync answers, updates, new documents.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32, per_sec: f64) -> TokenBucket {
        TokenBucket { tokens: f64::from(burst), burst: f64::from(burst), per_sec, at: Instant::now() }
    }

    /// Takes one token; false when none is left.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_nothing_without_refill() {
        let mut b = TokenBucket::new(3, 0.0);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[test]
    fn tokens_come_back_with_time() {
        let mut b = TokenBucket::new(1, 1000.0);
        assert!(b.take());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(b.take());
    }
}

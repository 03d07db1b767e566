//! Per-object exponential backoff with jitter: each failure of an object doubles its delay
//! (up to a cap), success resets it, and jitter keeps many failing objects from retrying
//! in lockstep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Backoff state of many objects, by key.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::default(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it: a random
    /// delay in the upper half of `base * 2^(failures-1)`, capped at `max`.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(*count - 1).unwrap_or(u32::MAX))
            .min(self.max);
        jitter(ceiling)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// A random duration in `[d/2, d]`.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..6).map(|_| backoff.failed("a")).collect();
        for (i, ceiling) in [1, 2, 4, 8, 8, 8].into_iter().enumerate() {
            let ceiling = Duration::from_secs(ceiling);
            assert!(
                delays[i] <= ceiling && delays[i] >= ceiling / 2,
                "{i}: {delays:?}"
            );
        }
        // Another object has its own count.
        assert!(backoff.failed("b") <= Duration::from_secs(1));
        backoff.succeeded("a");
        assert!(backoff.failed("a") <= Duration::from_secs(1));
    }
}

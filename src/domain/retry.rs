//! The durable retry schedule: a pure function of the attempt number, so it
//! gives the same answer after a restart. Randomness (full jitter) is passed
//! in, which keeps it testable.

use std::time::Duration;

/// How a failed delivery attempt is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Connect errors, timeouts, TLS handshake failures, 408, 429, 5xx.
    Retryable,
    /// Anything else: the batch goes to `dead` at once.
    Permanent,
}

impl FailureClass {
    pub fn of_http_status(status: u16) -> Self {
        match status {
            408 | 429 | 500..=599 => Self::Retryable,
            _ => Self::Permanent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
            max_attempts: 20,
            deadline: Some(Duration::from_secs(3 * 24 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// What to do after attempt number `attempt` (1-based) failed.
    ///
    /// * `jitter` is a uniform sample in `[0, 1)`: full jitter picks the
    ///   delay uniformly in `[0, min(cap, base * 2^(attempt-1))]`.
    /// * `retry_after` from the server is honoured as a lower bound, even
    ///   above the cap: the bank said when it can take more.
    /// * `elapsed` is the time since the first attempt, for the deadline.
    pub fn after_failure(
        &self,
        attempt: u32,
        jitter: f64,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(30));
        let ceiling = exp.min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        let mut delay = ceiling.mul_f64(jitter);
        if let Some(ra) = retry_after {
            delay = delay.max(ra);
        }
        if let Some(deadline) = self.deadline
            && elapsed.saturating_add(delay) > deadline
        {
            return RetryDecision::GiveUp;
        }
        RetryDecision::RetryAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            max_attempts: 10,
            deadline: Some(Duration::from_secs(3600)),
        }
    }

    #[test]
    fn exponential_until_the_cap() {
        let p = policy();
        let full = |n| match p.after_failure(n, 0.999_999, None, Duration::ZERO) {
            RetryDecision::RetryAfter(d) => d.as_secs_f64().round() as u64,
            RetryDecision::GiveUp => panic!("gave up"),
        };
        assert_eq!(full(1), 1);
        assert_eq!(full(2), 2);
        assert_eq!(full(3), 4);
        assert_eq!(full(7), 60);
        assert_eq!(full(9), 60);
        assert_eq!(
            p.after_failure(10, 0.5, None, Duration::ZERO),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_the_deadline_ends_it() {
        let p = policy();
        assert_eq!(
            p.after_failure(1, 0.0, Some(Duration::from_secs(120)), Duration::ZERO),
            RetryDecision::RetryAfter(Duration::from_secs(120))
        );
        assert_eq!(
            p.after_failure(2, 0.5, None, Duration::from_secs(3600)),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn classifies_statuses() {
        for s in [408, 429, 500, 502, 503, 599] {
            assert_eq!(
                FailureClass::of_http_status(s),
                FailureClass::Retryable,
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(
                FailureClass::of_http_status(s),
                FailureClass::Permanent,
                "{s}"
            );
        }
    }

    proptest! {
        #[test]
        fn delay_is_bounded(attempt in 1u32..200, jitter in 0.0f64..1.0) {
            let p = RetryPolicy { max_attempts: 1000, deadline: None, ..policy() };
            match p.after_failure(attempt, jitter, None, Duration::ZERO) {
                RetryDecision::RetryAfter(d) => prop_assert!(d <= p.cap),
                RetryDecision::GiveUp => prop_assert!(false, "gave up early"),
            }
        }
    }
}

//! The per-institution circuit breaker, as pure functions over what the
//! store keeps: the count of consecutive failures and, while open, the
//! instant until which nothing is sent.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the breaker.
    pub failure_threshold: i64,
    /// How long an open breaker stops all traffic before one probe.
    pub cool_down: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// What the dispatcher may send to an institution now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: up to the in-flight limit.
    Normal,
    /// Cool-down over: exactly one batch, whose outcome closes or reopens.
    Probe,
    /// Open: nothing until the instant given.
    Blocked { until: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerState {
    pub consecutive_failures: i64,
    pub open_until: Option<i64>,
}

impl BreakerPolicy {
    pub fn admission(&self, s: BreakerState, now: i64) -> Admission {
        match s.open_until {
            Some(until) if until > now => Admission::Blocked { until },
            Some(_) => Admission::Probe,
            None => Admission::Normal,
        }
    }

    /// While a probe is out the breaker stays shut to everything else; the
    /// lease bounds how long a lost probe can hold it.
    pub fn while_probing(&self, now: i64, lease_ms: i64) -> BreakerState {
        BreakerState {
            consecutive_failures: self.failure_threshold,
            open_until: Some(now + lease_ms),
        }
    }

    /// The state after an attempt: success closes, failures count up and
    /// open the breaker at the threshold.
    pub fn after_attempt(&self, s: BreakerState, success: bool, now: i64) -> BreakerState {
        if success {
            return BreakerState {
                consecutive_failures: 0,
                open_until: None,
            };
        }
        let failures = s.consecutive_failures + 1;
        BreakerState {
            consecutive_failures: failures,
            open_until: (failures >= self.failure_threshold)
                .then(|| now + self.cool_down.as_millis() as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p() -> BreakerPolicy {
        BreakerPolicy {
            failure_threshold: 3,
            cool_down: Duration::from_millis(1000),
        }
    }

    #[test]
    fn opens_after_threshold_then_probes_then_closes() {
        let p = p();
        let mut s = BreakerState {
            consecutive_failures: 0,
            open_until: None,
        };
        for _ in 0..2 {
            s = p.after_attempt(s, false, 0);
            assert_eq!(p.admission(s, 0), Admission::Normal);
        }
        s = p.after_attempt(s, false, 0);
        assert_eq!(p.admission(s, 10), Admission::Blocked { until: 1000 });
        assert_eq!(p.admission(s, 1000), Admission::Probe);
        let probing = p.while_probing(1000, 500);
        assert_eq!(
            p.admission(probing, 1200),
            Admission::Blocked { until: 1500 }
        );
        // A failed probe reopens for a full cool-down; a good one closes.
        let failed = p.after_attempt(probing, false, 1300);
        assert_eq!(
            p.admission(failed, 1400),
            Admission::Blocked { until: 2300 }
        );
        let ok = p.after_attempt(failed, true, 2400);
        assert_eq!(p.admission(ok, 2400), Admission::Normal);
        assert_eq!(ok.consecutive_failures, 0);
    }

    proptest! {
        /// Whatever the outcomes, the breaker is open exactly when the last
        /// `threshold` attempts all failed.
        #[test]
        fn open_iff_threshold_consecutive_failures(outcomes in prop::collection::vec(any::<bool>(), 0..40)) {
            let p = p();
            let mut s = BreakerState { consecutive_failures: 0, open_until: None };
            for ok in &outcomes {
                s = p.after_attempt(s, *ok, 0);
            }
            let trailing = outcomes.iter().rev().take_while(|ok| !**ok).count() as i64;
            prop_assert_eq!(s.open_until.is_some(), trailing >= p.failure_threshold);
        }
    }
}

//! Restart delays: capped exponential backoff with jitter, reset after a stable run, and the
//! optional give-up rule. Pure: the caller supplies the clock and the random sample.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The restart-delay settings (the `[restart]` table).
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Delay after the first crash of a child that never ran `stable_after`.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Fraction (0..=1) by which a delay may be shortened at random, so that many agents
    /// crashing together do not restart in lockstep.
    pub jitter: f64,
    /// A child that ran at least this long is restarted at once, and the backoff starts over.
    pub stable_after: Duration,
}

/// Give up after `max_restarts` restarts within `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    pub max_restarts: u32,
    pub window: Duration,
}

/// The backoff state of one supervised agent.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Crashes since the last stable run.
    unstable_crashes: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            unstable_crashes: 0,
        }
    }

    /// The delay before the next start, for a child that ran `uptime`. `sample` is a random
    /// number in `[0, 1)`.
    pub fn next_delay(&mut self, uptime: Duration, sample: f64) -> Duration {
        if uptime >= self.policy.stable_after {
            self.unstable_crashes = 0;
            return Duration::ZERO;
        }
        self.unstable_crashes = self.unstable_crashes.saturating_add(1);
        let exponent = (self.unstable_crashes - 1).min(31);
        let raw = self
            .policy
            .initial
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.policy.max);
        let capped = raw.min(self.policy.max);
        let jitter = self.policy.jitter.clamp(0.0, 1.0) * sample.clamp(0.0, 1.0);
        capped.mul_f64(1.0 - jitter)
    }
}

/// Counts restarts in a sliding window to decide when to give up.
#[derive(Debug, Clone)]
pub struct RestartWindow {
    rule: Option<GiveUp>,
    starts: VecDeque<Instant>,
}

impl RestartWindow {
    pub fn new(rule: Option<GiveUp>) -> Self {
        RestartWindow {
            rule,
            starts: VecDeque::new(),
        }
    }

    /// Records a restart about to happen at `now`; true if that exceeds the rule (give up).
    pub fn exceeded_by_restart(&mut self, now: Instant) -> bool {
        let Some(rule) = &self.rule else {
            return false;
        };
        while let Some(first) = self.starts.front() {
            if now.duration_since(*first) > rule.window {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        if self.starts.len() as u32 >= rule.max_restarts {
            return true;
        }
        self.starts.push_back(now);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            jitter: 0.0,
            stable_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn grows_and_caps() {
        let mut b = Backoff::new(policy());
        let delays: Vec<u64> = (0..7)
            .map(|_| b.next_delay(Duration::from_millis(5), 0.5).as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn stable_run_resets_and_restarts_at_once() {
        let mut b = Backoff::new(policy());
        for _ in 0..5 {
            b.next_delay(Duration::ZERO, 0.0);
        }
        assert_eq!(b.next_delay(Duration::from_secs(10), 0.9), Duration::ZERO);
        assert_eq!(
            b.next_delay(Duration::ZERO, 0.0),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn jitter_shortens_but_never_exceeds_the_cap() {
        let mut p = policy();
        p.jitter = 0.5;
        let mut b = Backoff::new(p);
        for _ in 0..10 {
            b.next_delay(Duration::ZERO, 0.0);
        }
        let d = b.next_delay(Duration::ZERO, 0.999);
        assert!(
            d <= Duration::from_millis(1000) && d >= Duration::from_millis(500),
            "{d:?}"
        );
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let mut p = policy();
        p.initial = Duration::from_secs(u64::MAX / 4);
        p.max = Duration::from_secs(u64::MAX / 2);
        let mut b = Backoff::new(p);
        for _ in 0..100 {
            b.next_delay(Duration::ZERO, 0.0);
        }
    }

    #[test]
    fn give_up_window() {
        let t0 = Instant::now();
        let mut w = RestartWindow::new(Some(GiveUp {
            max_restarts: 3,
            window: Duration::from_secs(60),
        }));
        assert!(!w.exceeded_by_restart(t0));
        assert!(!w.exceeded_by_restart(t0 + Duration::from_secs(1)));
        assert!(!w.exceeded_by_restart(t0 + Duration::from_secs(2)));
        assert!(w.exceeded_by_restart(t0 + Duration::from_secs(3)));
        // Old restarts slide out of the window.
        let mut w = RestartWindow::new(Some(GiveUp {
            max_restarts: 2,
            window: Duration::from_secs(10),
        }));
        assert!(!w.exceeded_by_restart(t0));
        assert!(!w.exceeded_by_restart(t0 + Duration::from_secs(5)));
        assert!(!w.exceeded_by_restart(t0 + Duration::from_secs(20)));
        let mut never = RestartWindow::new(None);
        assert!((0..1000).all(|i| !never.exceeded_by_restart(t0 + Duration::from_millis(i))));
    }
}

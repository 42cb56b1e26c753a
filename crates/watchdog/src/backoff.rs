//! Retry delays. [`Doubling`] is the one capped exponential backoff of both programs: the
//! supervisor's restarts, the publisher's and the watcher's reconnects, the watcher's take-over
//! retries and notification retries, and Connect task remediation all wait by it ([`Retry`]
//! keeps the count for a loop). For the supervisor, [`Backoff`] adds jitter and the reset
//! after a stable run, and [`RestartWindow`] the optional give-up rule. Pure: the caller
//! supplies the clock and the random sample.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Capped exponential growth: `initial` after the first failure, twice as long after each one
/// more, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    pub initial: Duration,
    pub max: Duration,
}

impl Doubling {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Doubling { initial, max }
    }

    /// The delay after `failures` failures in a row: zero for none, `initial` for one, then
    /// doubling, at most `max`.
    pub fn after(&self, failures: u32) -> Duration {
        match failures {
            0 => Duration::ZERO,
            n => self
                .initial
                .checked_mul(1u32 << (n - 1).min(31))
                .unwrap_or(self.max)
                .min(self.max),
        }
    }
}

/// A retry loop's count of failures in a row, and the delay each one asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    doubling: Doubling,
    failures: u32,
}

impl Retry {
    pub const fn new(doubling: Doubling) -> Self {
        Retry {
            doubling,
            failures: 0,
        }
    }

    /// One more failure: the delay to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.doubling.after(self.failures)
    }

    /// A success: the next failure waits `initial` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

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
        let capped =
            Doubling::new(self.policy.initial, self.policy.max).after(self.unstable_crashes);
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
    fn doubling_starts_at_initial_doubles_and_caps() {
        let d = Doubling::new(Duration::from_millis(200), Duration::from_secs(5));
        let ms = |n| d.after(n).as_millis();
        let cases = [
            (0, 0),
            (1, 200),
            (2, 400),
            (3, 800),
            (5, 3200),
            (6, 5000),
            (40, 5000),
        ];
        for (failures, delay) in cases {
            assert_eq!(ms(failures), delay, "{failures} failures");
        }
        // A huge initial delay caps instead of overflowing.
        let huge = Doubling::new(Duration::MAX / 2, Duration::from_secs(60));
        assert_eq!(huge.after(3), Duration::from_secs(60));
    }

    #[test]
    fn a_retry_counts_failures_until_a_success() {
        let mut r = Retry::new(Doubling::new(
            Duration::from_secs(1),
            Duration::from_secs(3),
        ));
        let delays: Vec<u64> = (0..4).map(|_| r.failed().as_secs()).collect();
        assert_eq!(delays, [1, 2, 3, 3]);
        r.succeeded();
        assert_eq!(r.failed(), Duration::from_secs(1));
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

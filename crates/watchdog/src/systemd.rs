//! systemd readiness and liveness for both programs: with `Type=notify` a unit is started once
//! the program says `READY=1`, and with `WatchdogSec=` systemd restarts a program that stops
//! saying `WATCHDOG=1` (a hung main loop). Outside systemd (`NOTIFY_SOCKET` unset) every call
//! does nothing. The messages go through the `sd-notify` crate; when to send is decided here
//! ([`Liveness`], pure).

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// When the main loop owes systemd its next `WATCHDOG=1` (pure: the caller supplies the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Half of `WatchdogSec` (systemd's advice), `None` when the watchdog is off.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Liveness {
    /// `watchdog`: the unit's `WatchdogSec`, when set.
    pub fn new(watchdog: Option<Duration>) -> Self {
        Liveness {
            every: watchdog.map(|d| (d / 2).max(Duration::from_millis(1))),
            last: None,
        }
    }

    /// From the environment systemd gives the process (`WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub fn from_env() -> Self {
        Liveness::new(sd_notify::watchdog_enabled())
    }

    /// When the next ping is due (`None`: never).
    pub fn due(&self, now: Instant) -> Option<Instant> {
        let every = self.every?;
        Some(self.last.map_or(now, |last| last + every))
    }

    /// Whether a ping is due at `now`; if so, it counts as sent.
    pub fn take(&mut self, now: Instant) -> bool {
        match self.due(now) {
            Some(due) if due <= now => {
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Sends `WATCHDOG=1` if it is due: call it from the main loop, each time round.
    pub fn feed(&mut self, now: Instant) {
        if self.take(now) {
            send(&[NotifyState::Watchdog]);
        }
    }
}

/// `READY=1`, with a status line for `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`, with a status line.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The variables through which systemd talks to the program, which its child must not
/// inherit (an agent that speaks sd_notify itself would report for the watchdog).
pub const ENVIRONMENT: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_due_every_half_watchdog_period_and_never_without_one() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut off = Liveness::new(None);
        assert_eq!(off.due(t0), None);
        assert!(!off.take(s(100)));

        let mut on = Liveness::new(Some(Duration::from_secs(20)));
        // The first one at once, then every 10 s.
        let cases = [
            (0, true),
            (1, false),
            (9, false),
            (10, true),
            (15, false),
            (21, true),
        ];
        for (at, expected) in cases {
            assert_eq!(on.take(s(at)), expected, "at {at}s");
        }
        assert_eq!(on.due(s(22)), Some(s(31)));
    }
}

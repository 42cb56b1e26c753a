//! When the watcher reports its own loss of ZooKeeper, and its return, as a pure state machine.
//!
//! A watcher that cannot work with ZooKeeper (down, unreachable, refusing its credentials, a
//! failed TLS handshake) is blind: it can announce nothing about the agents. Once that has
//! lasted `zk-loss-alert-after`, the on-call hears it, once; when the watcher is connected
//! again, they hear that it is back, but only if they heard of the loss. A short disconnection
//! the client rides out is no news. The driver (`watch.rs`) feeds the events and sends the
//! notices; the clock is an argument, so every rule is tested here.

use std::time::{Duration, Instant};

use zkwatchdog::registry::Timestamp;

/// The watcher's connection to ZooKeeper, as far as reporting its loss goes.
#[derive(Debug, Clone)]
pub struct ZkLoss {
    /// Since when the watcher has been without ZooKeeper (monotonic, and as a wall-clock time
    /// for the notice); `None` while connected.
    since: Option<(Instant, Timestamp)>,
    /// The loss has been reported (and its return is due once it ends).
    reported: bool,
    alert_after: Duration,
}

/// A loss to report now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// When it began (wall clock).
    pub since: Timestamp,
    /// How long it has lasted.
    pub down_for: Duration,
}

/// A reported loss that just ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Back {
    /// When it began (wall clock).
    pub since: Timestamp,
    /// How long it lasted.
    pub down_for: Duration,
}

impl ZkLoss {
    /// A watcher that starts without ZooKeeper (it has not connected yet) since `now`: not
    /// reaching ZooKeeper at start is reported like a loss.
    pub fn starting(now: Instant, wall: Timestamp, alert_after: Duration) -> Self {
        ZkLoss {
            since: Some((now, wall)),
            reported: false,
            alert_after,
        }
    }

    /// The watcher lost ZooKeeper (disconnected, session ended, a connect failed) at `now`. A
    /// loss already under way keeps its start.
    pub fn disconnected(&mut self, now: Instant, wall: Timestamp) {
        if self.since.is_none() {
            self.since = Some((now, wall));
        }
    }

    /// The watcher works with ZooKeeper again at `now`: the loss is over. Returns the return to
    /// announce, if the loss was announced.
    pub fn connected(&mut self, now: Instant) -> Option<Back> {
        let (since, at) = self.since.take()?;
        std::mem::take(&mut self.reported).then(|| Back {
            since: at,
            down_for: now.saturating_duration_since(since),
        })
    }

    /// The loss to report at `now`: once, when it has lasted `alert_after`.
    pub fn check(&mut self, now: Instant) -> Option<Lost> {
        let (since, at) = self.since?;
        let down_for = now.saturating_duration_since(since);
        if self.reported || down_for < self.alert_after {
            return None;
        }
        self.reported = true;
        Some(Lost {
            since: at,
            down_for,
        })
    }

    /// When [`check`](Self::check) will next have something to report, if ever.
    pub fn due(&self) -> Option<Instant> {
        match self.since {
            Some((since, _)) if !self.reported => Some(since + self.alert_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(60);

    fn wall(secs: u64) -> Timestamp {
        Timestamp(std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs))
    }

    /// A sequence of events at seconds after `t0`, and what each one yields.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Disconnected(u64),
        Connected(u64),
        Check(u64),
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Nothing,
        Lost { since: u64, down_for: u64 },
        Back { since: u64, down_for: u64 },
    }

    fn play(start: Option<u64>, steps: &[Step]) -> Vec<Out> {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut z = match start {
            Some(s) => ZkLoss::starting(at(s), wall(s), AFTER),
            None => {
                let mut z = ZkLoss::starting(t0, wall(0), AFTER);
                assert_eq!(z.connected(t0), None);
                z
            }
        };
        let secs = |w: Timestamp| {
            w.0.duration_since(wall(0).0)
                .expect("after the epoch of the test")
                .as_secs()
        };
        steps
            .iter()
            .map(|step| match *step {
                Step::Disconnected(s) => {
                    z.disconnected(at(s), wall(s));
                    Out::Nothing
                }
                Step::Connected(s) => match z.connected(at(s)) {
                    Some(b) => Out::Back {
                        since: secs(b.since),
                        down_for: b.down_for.as_secs(),
                    },
                    None => Out::Nothing,
                },
                Step::Check(s) => match z.check(at(s)) {
                    Some(l) => Out::Lost {
                        since: secs(l.since),
                        down_for: l.down_for.as_secs(),
                    },
                    None => Out::Nothing,
                },
            })
            .collect()
    }

    #[test]
    fn loss_and_return_are_reported_once_each_and_only_when_long() {
        use Out::*;
        use Step::*;
        type Case = (&'static str, Option<u64>, Vec<Step>, Vec<Out>);
        let cases: Vec<Case> = vec![
            (
                "a short disconnection is no news, in either direction",
                None,
                vec![Disconnected(10), Check(50), Connected(55), Check(200)],
                vec![Nothing, Nothing, Nothing, Nothing],
            ),
            (
                "a long one is reported once, with its start; its end is reported",
                None,
                vec![
                    Disconnected(10),
                    Check(69),
                    Check(70),
                    Check(80),
                    Connected(100),
                ],
                vec![
                    Nothing,
                    Nothing,
                    Lost {
                        since: 10,
                        down_for: 60,
                    },
                    Nothing,
                    Back {
                        since: 10,
                        down_for: 90,
                    },
                ],
            ),
            (
                "a failed reconnect inside a loss keeps the loss's start",
                None,
                vec![Disconnected(10), Disconnected(40), Check(70)],
                vec![
                    Nothing,
                    Nothing,
                    Lost {
                        since: 10,
                        down_for: 60,
                    },
                ],
            ),
            (
                "not reaching ZooKeeper at start counts from the start",
                Some(0),
                vec![Check(59), Check(60), Connected(61)],
                vec![
                    Nothing,
                    Lost {
                        since: 0,
                        down_for: 60,
                    },
                    Back {
                        since: 0,
                        down_for: 61,
                    },
                ],
            ),
            (
                "after a return, a new loss is a new report",
                None,
                vec![
                    Disconnected(0),
                    Check(60),
                    Connected(61),
                    Disconnected(100),
                    Check(130),
                    Check(160),
                ],
                vec![
                    Nothing,
                    Lost {
                        since: 0,
                        down_for: 60,
                    },
                    Back {
                        since: 0,
                        down_for: 61,
                    },
                    Nothing,
                    Nothing,
                    Lost {
                        since: 100,
                        down_for: 60,
                    },
                ],
            ),
        ];
        for (name, start, steps, want) in cases {
            assert_eq!(play(start, &steps), want, "{name}");
        }
    }

    #[test]
    fn due_is_the_report_time_until_reported() {
        let t0 = Instant::now();
        let mut z = ZkLoss::starting(t0, wall(0), AFTER);
        assert_eq!(z.due(), Some(t0 + AFTER));
        assert!(z.check(t0 + AFTER).is_some());
        assert_eq!(z.due(), None, "reported: nothing more is due");
        assert!(z.connected(t0 + AFTER * 2).is_some());
        assert_eq!(z.due(), None);
        z.disconnected(t0 + AFTER * 3, wall(180));
        assert_eq!(z.due(), Some(t0 + AFTER * 4), "a new loss is due again");
    }
}

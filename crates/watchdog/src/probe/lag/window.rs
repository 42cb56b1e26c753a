//! The sliding window of one partition of a consumer group (its last N samples of committed
//! and log-end offset) and the rules judged on it. Pure: the caller supplies the clock. The
//! rules are written out in the module doc of [`super`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One probe's reading of a partition whose group has committed an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The group's committed offset.
    pub committed: i64,
    /// The partition's log-end offset read in the same probe.
    pub log_end: i64,
    /// When the probe read it.
    pub at: Instant,
}

impl Sample {
    /// Log-end minus committed, never negative (the two are read one after the other, so the
    /// committed offset can be ahead of a log-end read a moment earlier).
    pub fn lag(&self) -> i64 {
        self.log_end.saturating_sub(self.committed).max(0)
    }
}

/// What the window says of a partition (besides a rewind, an event judged on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fewer samples than the window holds: not judged yet.
    Filling,
    /// Lag 0 in at least one sample: the group caught up within the window (an idle group
    /// on an idle topic is always this).
    CaughtUp,
    /// No rule applies: progressing, or not unchanged for long enough to tell.
    Fine,
    /// Committed offset unchanged over the whole window and for at least `unchanged_for`,
    /// lag > 0 throughout, and the group has no consuming members: STOP.
    Stopped {
        /// How long the committed offset has not moved (as far as this window knows).
        unchanged_for: Duration,
    },
    /// As [`Verdict::Stopped`], but the group is `Stable` (members hold its partitions):
    /// STALL.
    Stalled {
        /// How long the committed offset has not moved (as far as this window knows).
        unchanged_for: Duration,
    },
    /// The committed offset advanced over the window, never went back and still advances in
    /// its later half (the group is consuming), yet the lag grew at every step: WARN.
    FallingBehind {
        /// The lag at the window's oldest sample.
        from: i64,
        /// The lag now.
        to: i64,
    },
}

/// The last samples of one partition.
#[derive(Debug, Clone)]
pub struct Window {
    samples: VecDeque<Sample>,
    /// When the committed offset took its current value (the first sample that showed it);
    /// kept after that sample has left the window.
    since: Instant,
}

impl Window {
    /// A window holding its first sample.
    pub fn new(first: Sample) -> Self {
        Window {
            samples: VecDeque::from([first]),
            since: first.at,
        }
    }

    /// Adds the newest sample, dropping the oldest beyond `capacity` (at least 2).
    pub fn push(&mut self, sample: Sample, capacity: usize) {
        if self.samples.back().map(|s| s.committed) != Some(sample.committed) {
            self.since = sample.at;
        }
        self.samples.push_back(sample);
        while self.samples.len() > capacity.max(2) {
            self.samples.pop_front();
        }
    }

    /// The samples held, oldest first.
    pub fn samples(&self) -> &VecDeque<Sample> {
        &self.samples
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The latest step in the window in which the committed offset went back:
    /// `(before, after)`. It stays reported while both samples of the step are in the window.
    pub fn rewind(&self) -> Option<(i64, i64)> {
        self.steps()
            .filter(|(a, b)| b.committed < a.committed)
            .last()
            .map(|(a, b)| (a.committed, b.committed))
    }

    fn steps(&self) -> impl Iterator<Item = (&Sample, &Sample)> {
        self.samples.iter().zip(self.samples.iter().skip(1))
    }

    /// Judges the window. `capacity`: the samples a full window holds; `consuming`: the group
    /// has members holding its partitions (state `Stable`); `min_unchanged`: STOP and STALL
    /// need the committed offset unchanged at least this long.
    pub fn judge(
        &self,
        capacity: usize,
        consuming: bool,
        min_unchanged: Duration,
        now: Instant,
    ) -> Verdict {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Verdict::Filling;
        };
        if self.samples.len() < capacity.max(2) {
            return Verdict::Filling;
        }
        if self.samples.iter().any(|s| s.lag() == 0) {
            return Verdict::CaughtUp;
        }
        if self.samples.iter().all(|s| s.committed == first.committed) {
            // `since` is at or before the oldest sample, so this is also at least the window's
            // span (Burrow's "longer since the last commit than the window covers").
            let unchanged_for = now.saturating_duration_since(self.since);
            return if unchanged_for < min_unchanged {
                Verdict::Fine
            } else if consuming {
                Verdict::Stalled { unchanged_for }
            } else {
                Verdict::Stopped { unchanged_for }
            };
        }
        let advanced = last.committed > first.committed
            && self.steps().all(|(a, b)| b.committed >= a.committed);
        // Still consuming: a commit in the later half of the window. A consumer that died
        // early in the window (its last commits in the first samples, the lag growing since)
        // is not slow but gone: the threshold judges it now, STOP once the window holds only
        // its last offset.
        let steps = self.samples.len() - 1;
        let still_consuming = self
            .steps()
            .skip(steps / 2)
            .any(|(a, b)| b.committed > a.committed);
        if advanced && still_consuming && self.steps().all(|(a, b)| b.lag() > a.lag()) {
            return Verdict::FallingBehind {
                from: first.lag(),
                to: last.lag(),
            };
        }
        Verdict::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 5;
    const MIN: Duration = Duration::from_secs(60);

    /// A window fed one sample per 30 s from `(committed, log_end)` pairs; returns it and the
    /// time of the last sample.
    fn fed(points: &[(i64, i64)]) -> (Window, Instant) {
        let t0 = Instant::now();
        let at = |i: usize| t0 + Duration::from_secs(30 * i as u64);
        let mut w = Window::new(Sample {
            committed: points[0].0,
            log_end: points[0].1,
            at: at(0),
        });
        for (i, &(committed, log_end)) in points.iter().enumerate().skip(1) {
            w.push(
                Sample {
                    committed,
                    log_end,
                    at: at(i),
                },
                N,
            );
        }
        (w, at(points.len() - 1))
    }

    /// (what, samples (committed, log_end), consuming, verdict, rewind)
    type Row = (
        &'static str,
        &'static [(i64, i64)],
        bool,
        Verdict,
        Option<(i64, i64)>,
    );

    #[test]
    fn rules_table() {
        use Verdict::*;
        let secs = Duration::from_secs;
        let table: [Row; 13] = [
            (
                "filling",
                &[(0, 10), (0, 20), (0, 30), (0, 40)],
                false,
                Filling,
                None,
            ),
            (
                "stopped: unchanged, lag > 0, no members",
                &[(100, 150), (100, 160), (100, 160), (100, 170), (100, 180)],
                false,
                Stopped {
                    unchanged_for: secs(120),
                },
                None,
            ),
            (
                "stalled: same but the group is Stable",
                &[(100, 150), (100, 160), (100, 160), (100, 170), (100, 180)],
                true,
                Stalled {
                    unchanged_for: secs(120),
                },
                None,
            ),
            (
                "stopped counts from the change, not from the window",
                &[
                    (90, 150),
                    (100, 150),
                    (100, 150),
                    (100, 150),
                    (100, 150),
                    (100, 150),
                    (100, 150),
                ],
                false,
                Stopped {
                    unchanged_for: secs(150),
                },
                None,
            ),
            (
                "idle group on an idle topic",
                &[(500, 500); 5],
                false,
                CaughtUp,
                None,
            ),
            (
                "caught up once in the window",
                &[(100, 150), (100, 160), (160, 160), (160, 170), (160, 200)],
                false,
                CaughtUp,
                None,
            ),
            (
                "falling behind",
                &[(100, 150), (110, 170), (110, 180), (130, 210), (140, 240)],
                true,
                FallingBehind { from: 50, to: 100 },
                None,
            ),
            (
                "a consumer gone after the window's first step is not falling behind",
                &[(100, 101), (105, 110), (105, 115), (105, 120), (105, 125)],
                true,
                Fine,
                None,
            ),
            (
                "lag grows but once falls: catching up at a commit",
                &[(100, 150), (100, 170), (160, 180), (160, 210), (160, 240)],
                true,
                Fine,
                None,
            ),
            (
                "lag creeps, commits do not move, members present",
                &[(100, 150), (100, 151), (100, 152), (100, 153), (100, 154)],
                true,
                Stalled {
                    unchanged_for: secs(120),
                },
                None,
            ),
            (
                "rewound inside the window",
                &[(100, 150), (110, 160), (20, 170), (30, 180), (40, 190)],
                true,
                Fine,
                Some((110, 20)),
            ),
            (
                "rewind left the window",
                &[
                    (100, 150),
                    (10, 160),
                    (20, 170),
                    (30, 180),
                    (40, 190),
                    (50, 200),
                ],
                true,
                Fine,
                None,
            ),
            (
                "lag grows while offsets advance but one step went back",
                &[(100, 150), (110, 170), (105, 180), (130, 210), (140, 240)],
                true,
                Fine,
                Some((110, 105)),
            ),
        ];
        for (what, points, consuming, verdict, rewind) in table {
            let (w, now) = fed(points);
            assert_eq!(w.judge(N, consuming, MIN, now), verdict, "{what}");
            assert_eq!(w.rewind(), rewind, "{what}");
            assert!(w.samples().len() <= N, "{what}");
        }
    }

    #[test]
    fn stop_waits_for_min_unchanged() {
        let (w, now) = fed(&[(100, 150); 5]);
        // Unchanged for 120 s over a full window: judged with a 60 s floor, not with 180 s.
        assert_eq!(
            w.judge(N, false, MIN, now),
            Verdict::Stopped {
                unchanged_for: Duration::from_secs(120)
            }
        );
        assert_eq!(
            w.judge(N, false, Duration::from_secs(180), now),
            Verdict::Fine
        );
        assert_eq!(
            w.judge(
                N,
                false,
                Duration::from_secs(180),
                now + Duration::from_secs(60)
            ),
            Verdict::Stopped {
                unchanged_for: Duration::from_secs(180)
            }
        );
    }

    #[test]
    fn lag_is_never_negative() {
        let s = Sample {
            committed: 120,
            log_end: 100,
            at: Instant::now(),
        };
        assert_eq!(s.lag(), 0);
    }
}

//! What the publisher must write next: a pure function of what it knows it has written in the
//! current session and of what the registry should show. The publisher performs one [`Step`],
//! updates what it knows, and asks again until nothing is left.
//!
//! The order is the registry contract (DESIGN.md section 2): whose node is at the liveness path
//! is looked at before anything is written (so that another live watchdog with our id is
//! neither overwritten nor deleted); then the marker (an exit record must be readable before
//! the liveness node goes); then the liveness node: our old one deleted, the new one created,
//! or only its health set.

/// What the publisher knows about the registry in the current session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The liveness path was inspected since this session began.
    pub claimed: bool,
    /// A watch on our node fired: look at it again.
    pub check: bool,
    /// The liveness path was inspected in this round already.
    pub inspected: bool,
    /// The marker needs writing.
    pub marker_stale: bool,
    /// The generation of the liveness node we know is ours.
    pub live_written: Option<u64>,
    /// A node of ours may exist although we do not know it (after a failed operation).
    pub live_maybe: bool,
    /// The health our node shows is the health it should show.
    pub health_current: bool,
}

/// One thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Look at the liveness path and judge a node in the way.
    Inspect,
    /// Write the marker.
    WriteMarker,
    /// Delete our liveness node (only if it is ours).
    DeleteOurs,
    /// Create the liveness node of this generation.
    Create(u64),
    /// Only the health changed: set it on our node.
    SetHealth,
}

/// The next step towards a registry that shows `wanted` (the generation of the liveness node
/// that should exist, if any); `None` when the registry is in line.
pub fn next(known: &Known, wanted: Option<u64>) -> Option<Step> {
    let creating = wanted.is_some() && known.live_written != wanted;
    if !known.inspected && (!known.claimed || known.check || creating) {
        return Some(Step::Inspect);
    }
    if known.marker_stale {
        return Some(Step::WriteMarker);
    }
    match wanted {
        None if known.live_maybe || known.live_written.is_some() => Some(Step::DeleteOurs),
        None => None,
        // Our node of an older generation first: its deletion is what watchers see.
        Some(_) if creating && known.live_written.is_some() => Some(Step::DeleteOurs),
        Some(generation) if creating => Some(Step::Create(generation)),
        Some(_) if !known.health_current => Some(Step::SetHealth),
        Some(_) => None,
    }
}

/// Most steps one round can take (inspect, marker, delete, create, plus slack): a round that
/// needs more is a bug, reported rather than looped on.
pub const MAX_STEPS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// A session in which everything is written: generation 3 with current health.
    const SETTLED: Known = Known {
        claimed: true,
        check: false,
        inspected: false,
        marker_stale: false,
        live_written: Some(3),
        live_maybe: true,
        health_current: true,
    };

    #[test]
    fn each_situation_has_one_next_step() {
        let cases: [(&str, Known, Option<u64>, Option<Step>); 13] = [
            ("all written", SETTLED, Some(3), None),
            (
                "a new session: inspect before anything",
                Known {
                    claimed: false,
                    marker_stale: true,
                    live_written: None,
                    ..SETTLED
                },
                Some(3),
                Some(Step::Inspect),
            ),
            (
                "a new child: inspect the path before the marker says running",
                Known {
                    marker_stale: true,
                    ..SETTLED
                },
                Some(4),
                Some(Step::Inspect),
            ),
            (
                "inspected: the marker first",
                Known {
                    marker_stale: true,
                    inspected: true,
                    ..SETTLED
                },
                Some(4),
                Some(Step::WriteMarker),
            ),
            (
                "marker written: our old node goes",
                Known {
                    inspected: true,
                    ..SETTLED
                },
                Some(4),
                Some(Step::DeleteOurs),
            ),
            (
                "old node gone: create the new one",
                Known {
                    inspected: true,
                    live_written: None,
                    live_maybe: false,
                    ..SETTLED
                },
                Some(4),
                Some(Step::Create(4)),
            ),
            (
                "a create whose answer was lost, inspected and found ours: nothing to do",
                Known {
                    inspected: true,
                    live_written: Some(4),
                    ..SETTLED
                },
                Some(4),
                None,
            ),
            (
                "the child exited: marker (with the exit record) first",
                Known {
                    marker_stale: true,
                    ..SETTLED
                },
                None,
                Some(Step::WriteMarker),
            ),
            (
                "then the liveness node goes",
                SETTLED,
                None,
                Some(Step::DeleteOurs),
            ),
            (
                "no child and no node of ours: nothing",
                Known {
                    live_written: None,
                    live_maybe: false,
                    ..SETTLED
                },
                None,
                None,
            ),
            (
                "only the health changed",
                Known {
                    health_current: false,
                    ..SETTLED
                },
                Some(3),
                Some(Step::SetHealth),
            ),
            (
                "the watch fired: look at the node first",
                Known {
                    check: true,
                    health_current: false,
                    ..SETTLED
                },
                Some(3),
                Some(Step::Inspect),
            ),
            (
                "found deleted by someone else: the marker is rewritten, then the node",
                Known {
                    inspected: true,
                    marker_stale: true,
                    live_written: None,
                    live_maybe: false,
                    ..SETTLED
                },
                Some(3),
                Some(Step::WriteMarker),
            ),
        ];
        for (what, known, wanted, want) in cases {
            assert_eq!(next(&known, wanted), want, "{what}");
        }
    }

    /// Carrying out the steps as the publisher does ends in a registry in line, within
    /// [`MAX_STEPS`], from every starting point.
    #[test]
    fn every_round_ends() {
        for claimed in [false, true] {
            for check in [false, true] {
                for marker_stale in [false, true] {
                    for live_written in [None, Some(2), Some(3)] {
                        for live_maybe in [false, true] {
                            for health_current in [false, true] {
                                for wanted in [None, Some(3)] {
                                    let mut k = Known {
                                        claimed,
                                        check,
                                        inspected: false,
                                        marker_stale,
                                        live_written,
                                        live_maybe,
                                        health_current,
                                    };
                                    let mut steps = 0;
                                    while let Some(step) = next(&k, wanted) {
                                        steps += 1;
                                        assert!(steps <= MAX_STEPS, "{k:?} {wanted:?}");
                                        match step {
                                            Step::Inspect => {
                                                k.inspected = true;
                                                k.claimed = true;
                                                k.check = false;
                                            }
                                            Step::WriteMarker => k.marker_stale = false,
                                            Step::DeleteOurs => {
                                                k.live_written = None;
                                                k.live_maybe = false;
                                            }
                                            Step::Create(g) => {
                                                k.live_written = Some(g);
                                                k.live_maybe = true;
                                                k.health_current = true;
                                            }
                                            Step::SetHealth => k.health_current = true,
                                        }
                                    }
                                    assert_eq!(k.live_written, wanted, "{k:?}");
                                    assert!(!k.marker_stale);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

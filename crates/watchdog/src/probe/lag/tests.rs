//! The lag checks as a user sees them: findings after a sequence of probes.

use super::*;
use crate::kafka::snapshot::PartitionOffsets;

const STEP: Duration = Duration::from_secs(30);

fn settings() -> LagSettings {
    LagSettings {
        threshold: None,
        per_topic: BTreeMap::new(),
        window: 4,
        min_unchanged: Duration::from_secs(60),
    }
}

fn po(topic: &str, partition: i32, committed: Option<i64>, log_end: i64) -> PartitionOffsets {
    PartitionOffsets {
        topic: topic.into(),
        partition,
        committed,
        log_end,
    }
}

fn group(name: &str, state: &str, partitions: Vec<PartitionOffsets>) -> GroupOffsets {
    GroupOffsets {
        group: name.into(),
        state: Some(state.into()),
        protocol: Some("classic".into()),
        coordinator: Some(1),
        partitions,
    }
}

/// Feeds the probes one per [`STEP`], every group judged; returns each probe's report.
fn run(w: &mut LagWindows, probes: &[Vec<GroupOffsets>]) -> Vec<Report> {
    let t0 = Instant::now();
    probes
        .iter()
        .enumerate()
        .map(|(i, groups)| w.observe(groups, Scope::Every, t0 + STEP * i as u32))
        .collect()
}

fn keys(r: &Report) -> Vec<(String, Check)> {
    r.findings.iter().map(Finding::key).collect()
}

fn key(component: &str, check: Check) -> Vec<(String, Check)> {
    vec![(component.to_string(), check)]
}

/// `billing` on `orders` partitions 0 and 1 with the given (committed, log_end) each probe.
fn billing(state: &str, points: &[[(i64, i64); 2]]) -> Vec<Vec<GroupOffsets>> {
    points
        .iter()
        .map(|[(c0, e0), (c1, e1)]| {
            vec![group(
                "billing",
                state,
                vec![
                    po("orders", 0, Some(*c0), *e0),
                    po("orders", 1, Some(*c1), *e1),
                ],
            )]
        })
        .collect()
}

/// (what, group state, probes of partitions 0 and 1, checks of the last report)
type Row = (
    &'static str,
    &'static str,
    Vec<[(i64, i64); 2]>,
    Vec<(String, Check)>,
);

#[test]
fn window_rules_table() {
    let table: [Row; 8] = [
        (
            "stopped: no commit, lag > 0, group Empty",
            "Empty",
            vec![[(100, 800), (50, 550)]; 4],
            key("group billing topic orders", Check::ConsumerStopped),
        ),
        (
            "stalled: the same with members present",
            "Stable",
            vec![[(100, 800), (50, 550)]; 4],
            key("group billing topic orders", Check::ConsumerStalled),
        ),
        (
            "window not yet full: nothing judged",
            "Empty",
            vec![[(100, 800), (50, 550)]; 3],
            vec![],
        ),
        (
            "idle group on an idle topic",
            "Empty",
            vec![[(800, 800), (550, 550)]; 4],
            vec![],
        ),
        (
            "caught up once in the window",
            "Stable",
            vec![
                [(100, 800), (50, 550)],
                [(800, 800), (550, 550)],
                [(800, 900), (550, 600)],
                [(800, 1000), (550, 700)],
            ],
            vec![],
        ),
        (
            "falling behind: commits advance, lag grows every probe",
            "Stable",
            vec![
                [(100, 200), (100, 200)],
                [(150, 300), (150, 300)],
                [(200, 400), (200, 400)],
                [(250, 500), (250, 500)],
            ],
            key("group billing topic orders", Check::ConsumerFallingBehind),
        ),
        (
            "consuming steadily",
            "Stable",
            vec![
                [(100, 200), (100, 200)],
                [(200, 300), (200, 300)],
                [(300, 400), (300, 400)],
                [(400, 500), (400, 500)],
            ],
            vec![],
        ),
        (
            "rewound",
            "Stable",
            vec![
                [(100, 200), (100, 200)],
                [(200, 300), (200, 300)],
                [(0, 400), (300, 400)],
                [(100, 500), (400, 500)],
            ],
            key("group billing topic orders", Check::OffsetRewind),
        ),
    ];
    for (what, state, points, want) in table {
        let mut w = LagWindows::new(settings());
        let reports = run(&mut w, &billing(state, &points));
        let last = reports.last().expect("probes");
        assert_eq!(keys(last), want, "{what}: {:?}", last.findings);
    }
}

#[test]
fn details_give_the_figures() {
    let mut w = LagWindows::new(settings());
    let r = run(&mut w, &billing("Empty", &[[(100, 800), (50, 550)]; 4]));
    assert_eq!(
        r[3].findings[0].detail,
        "group billing topic orders: lag 1200 (partitions 0: 700, 1: 500), STOP: committed \
         offsets unchanged for 1m 30s while lag > 0 at each of the last 4 probes, group state \
         Empty (no member consuming)"
    );
    assert_eq!(
        r[3].summary,
        "1 group judged here, 2 partitions, lag 1200; window 4/4 probes"
    );
    assert_eq!(
        r[0].summary,
        "1 group judged here, 2 partitions, lag 1200; window 1/4 probes"
    );

    let mut w = LagWindows::new(settings());
    let r = run(&mut w, &billing("Stable", &[[(100, 800), (50, 550)]; 4]));
    assert_eq!(
        r[3].findings[0].detail,
        "group billing topic orders: lag 1200 (partitions 0: 700, 1: 500), STALL: committed \
         offsets unchanged for 1m 30s while lag > 0 at each of the last 4 probes, group state \
         Stable (members hold the partitions, no progress)"
    );

    let mut w = LagWindows::new(settings());
    let r = run(
        &mut w,
        &billing(
            "Stable",
            &[
                [(100, 200), (100, 200)],
                [(150, 300), (200, 300)],
                [(200, 400), (300, 400)],
                [(250, 500), (400, 500)],
            ],
        ),
    );
    // Partition 1 keeps up: only partition 0 is named.
    assert_eq!(
        r[3].findings[0].detail,
        "group billing topic orders: lag 250 (partitions 0: 250), WARN: lag grew at each of \
         the last 3 probes while committed offsets advanced (0: 100 → 250)"
    );
}

#[test]
fn stop_waits_for_min_unchanged_even_with_a_full_window() {
    let mut w = LagWindows::new(LagSettings {
        min_unchanged: Duration::from_secs(100),
        ..settings()
    });
    let r = run(&mut w, &billing("Empty", &[[(100, 800), (50, 550)]; 5]));
    // Full at the 4th probe (90 s unchanged), stopped at the 5th (120 s).
    assert!(r[3].findings.is_empty(), "{:?}", r[3].findings);
    assert_eq!(
        keys(&r[4]),
        key("group billing topic orders", Check::ConsumerStopped)
    );
}

#[test]
fn a_rewind_is_one_incident_that_clears_when_the_window_passes_it() {
    let mut w = LagWindows::new(settings());
    let mut points = vec![[(100, 200), (100, 200)], [(200, 300), (200, 300)]];
    // Partition 0 reset to 0, then both consume steadily.
    points.push([(0, 400), (300, 400)]);
    for i in 1..6 {
        points.push([(100 * i, 400 + 100 * i), (300 + 100 * i, 400 + 100 * i)]);
    }
    let reports = run(&mut w, &billing("Stable", &points));
    let rewound: Vec<bool> = reports
        .iter()
        .map(|r| r.findings.iter().any(|f| f.check == Check::OffsetRewind))
        .collect();
    // Window of 4: the step 200 → 0 (probes 1 → 2) stays while probe 1 is in the window.
    assert_eq!(
        rewound,
        [false, false, true, true, true, false, false, false]
    );
    assert_eq!(
        reports[2].findings[0].detail,
        "group billing topic orders: REWIND: committed offset went back on partitions 0 (200 → 0)"
    );
}

#[test]
fn threshold_per_topic_and_default() {
    let mut s = settings();
    s.threshold = Some(1000);
    s.per_topic.insert("clicks".into(), 5000);
    let probe = vec![group(
        "billing",
        "Stable",
        vec![
            po("orders", 0, Some(100), 800),
            po("orders", 1, Some(50), 550),
            po("orders", 2, Some(550), 550),
            po("clicks", 0, Some(0), 4000),
            po("audit", 0, None, 1500),
        ],
    )];
    let mut w = LagWindows::new(s.clone());
    let r = run(&mut w, std::slice::from_ref(&probe));
    assert_eq!(
        keys(&r[0]),
        vec![
            ("group billing topic audit".to_string(), Check::ConsumerLag),
            ("group billing topic orders".to_string(), Check::ConsumerLag),
        ]
    );
    assert_eq!(
        r[0].findings[0].detail,
        "group billing topic audit: lag 1500 > threshold 1000 (partitions 0: 1500 (nothing committed))"
    );
    assert_eq!(
        r[0].findings[1].detail,
        "group billing topic orders: lag 1200 > threshold 1000 (partitions 0: 700, 1: 500)"
    );
    assert_eq!(
        r[0].notes,
        ["group billing topic audit partitions 0: nothing committed, judged by threshold only"]
    );
    // Nothing committed: no window, so never STOP however long it stays.
    assert_eq!(w.tracked(), 4);

    s.per_topic.insert("clicks".into(), 3000);
    s.threshold = None;
    let mut w = LagWindows::new(s);
    let r = run(&mut w, &[probe]);
    assert_eq!(
        keys(&r[0]),
        key("group billing topic clicks", Check::ConsumerLag)
    );
}

#[test]
fn a_vanished_group_is_forgotten_and_starts_over() {
    let mut w = LagWindows::new(settings());
    let stuck = billing("Empty", &[[(100, 800), (50, 550)]])
        .pop()
        .expect("one probe");
    let mut probes = vec![stuck.clone(); 4];
    probes.push(vec![]);
    probes.extend(vec![stuck; 3]);
    let r = run(&mut w, &probes);
    assert_eq!(
        keys(&r[3]),
        key("group billing topic orders", Check::ConsumerStopped)
    );
    assert!(r[4].findings.is_empty());
    assert_eq!(r[4].summary, "no consumer groups");
    // Back again: a new window, not yet full.
    assert!(r[7].findings.is_empty(), "{:?}", r[7].findings);
    assert_eq!(w.tracked(), 2);

    // A partition that disappears is forgotten too.
    let one = vec![group("billing", "Empty", vec![po("orders", 0, Some(1), 2)])];
    w.observe(&one, Scope::Every, Instant::now());
    assert_eq!(w.tracked(), 1);
}

#[test]
fn the_coordinator_judges_a_group_and_nobody_else() {
    let mut g = group("billing", "Empty", vec![po("orders", 0, Some(100), 800)]);
    g.coordinator = Some(2);
    let mut orphan = group("audit", "Empty", vec![po("audit", 0, Some(0), 10)]);
    orphan.coordinator = None;
    let groups = vec![g, orphan];
    let s = LagSettings {
        threshold: Some(5),
        ..settings()
    };
    let now = Instant::now();
    // Two brokers (1 and 2) read the same groups.
    let cluster = Cluster {
        brokers: [2, 1]
            .iter()
            .map(|&id| crate::kafka::snapshot::Broker {
                id,
                host: "h".into(),
                port: 9092,
                rack: None,
            })
            .collect(),
        ..Cluster::default()
    };
    let mut all = Vec::new();
    for me in [1, 2] {
        let mut w = LagWindows::new(s.clone());
        let r = w.observe(&groups, Scope::broker(me, &cluster), now);
        all.extend(keys(&r).into_iter().map(|k| (me, k)));
        let want = if me == 1 {
            "1 group judged here, 1 partition, lag 10, 1 group left to their coordinators; window 1/4 probes"
        } else {
            "1 group judged here, 1 partition, lag 700, 1 group left to their coordinators; window 1/4 probes"
        };
        assert_eq!(r.summary, want);
    }
    assert_eq!(
        all,
        vec![
            (
                1,
                ("group audit topic audit".to_string(), Check::ConsumerLag)
            ),
            (
                2,
                ("group billing topic orders".to_string(), Check::ConsumerLag)
            ),
        ]
    );
    let mut w = LagWindows::new(s);
    let r = w.observe(&groups, Scope::broker(3, &cluster), now);
    assert!(r.findings.is_empty());
    assert_eq!(
        r.summary,
        "no groups judged here (2 left to their coordinators)"
    );
    assert_eq!(w.tracked(), 0);
}

#[test]
fn memory_is_bounded_by_the_window_and_the_last_probe() {
    let mut w = LagWindows::new(LagSettings {
        window: 1_000_000,
        ..settings()
    });
    let t0 = Instant::now();
    for i in 0..250u32 {
        let g = group(
            "g",
            "Stable",
            vec![po("t", (i % 3) as i32, Some(i as i64), 1000)],
        );
        w.observe(&[g], Scope::Every, t0 + STEP * i);
    }
    assert_eq!(w.tracked(), 1);
    let longest = w
        .groups
        .values()
        .flat_map(BTreeMap::values)
        .map(|win| win.samples().len())
        .max();
    assert_eq!(longest, Some(1));

    // Every probe the same partition: the window stops at MAX_WINDOW.
    for i in 0..250u32 {
        let g = group("g", "Stable", vec![po("t", 0, Some(i as i64), 1000)]);
        w.observe(&[g], Scope::Every, t0 + STEP * i);
    }
    let longest = w
        .groups
        .values()
        .flat_map(BTreeMap::values)
        .map(|win| win.samples().len())
        .max();
    assert_eq!(longest, Some(MAX_WINDOW));
}

#[test]
fn a_partition_listed_twice_counts_once() {
    let g = group(
        "g",
        "Empty",
        vec![po("t", 0, Some(1), 10), po("t", 0, Some(1), 10)],
    );
    let mut w = LagWindows::new(settings());
    let r = w.observe(&[g], Scope::Every, Instant::now());
    assert_eq!(
        r.summary,
        "1 group judged here, 1 partition, lag 9; window 1/4 probes"
    );
}

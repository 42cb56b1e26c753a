//! The Flume probe's evaluator: parses the `/metrics` JSON of a Flume agent (every value a
//! string, numbers possibly in Java's scientific notation) and checks channel fill, stalled
//! sinks and growing sink connection failures, remembering what earlier probes saw. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{figure, Check, Finding, Report};

/// The Flume checks' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FlumeSettings {
    /// A channel fuller than this (percent) is degraded.
    pub fill_threshold: f64,
    /// A sink is stalled after this many probes in a row in which its channel's
    /// `EventTakeSuccessCount` did not move while the channel held events.
    pub stalled_after: u32,
}

/// The metrics of one answer: component (`CHANNEL.c1`) → field → value, as sent.
pub type Metrics = BTreeMap<String, BTreeMap<String, Value>>;

/// Parses a `/metrics` body. Components that are not objects are ignored; only a body that is
/// not a JSON object is an error.
pub fn parse_metrics(body: &[u8]) -> Result<Metrics, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("metrics are not JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("metrics are not a JSON object".to_string());
    };
    Ok(top
        .into_iter()
        .filter_map(|(component, fields)| match fields {
            Value::Object(fields) => Some((component, fields.into_iter().collect())),
            _ => None,
        })
        .collect())
}

/// Reads a number written the way Flume writes them (`"93.2"`, `"5.0E-4"`, `"1.0E7"`), or as a
/// plain JSON number. The error says why, for the report's notes.
pub fn number(fields: &BTreeMap<String, Value>, name: &str) -> Result<f64, String> {
    let parsed = match fields.get(name) {
        None | Some(Value::Null) => return Err(format!("{name} missing")),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(format!("{name} empty")),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "{name} {} is not a number",
            super::truncate(
                &fields.get(name).map(Value::to_string).unwrap_or_default(),
                40
            )
        )),
    }
}

#[derive(Debug, Clone, Default)]
struct ChannelTrack {
    take: Option<f64>,
    /// Probes in a row that saw the take count unchanged while the channel held events.
    flat: u32,
}

#[derive(Debug, Clone, Default)]
struct SinkTrack {
    drain: Option<f64>,
    /// Probes in a row that saw the drain count unchanged.
    drain_flat: u32,
    failed: Option<f64>,
}

/// What earlier probes of the current child saw; start a new one for each child.
#[derive(Debug, Clone, Default)]
pub struct FlumeHistory {
    channels: BTreeMap<String, ChannelTrack>,
    sinks: BTreeMap<String, SinkTrack>,
}

impl FlumeHistory {
    /// Evaluates one answer and remembers its counters for the next.
    pub fn evaluate(&mut self, metrics: &Metrics, settings: &FlumeSettings) -> Report {
        let mut report = Report::default();
        let mut summary = Vec::new();
        let mut sink_moved = BTreeMap::new();

        for (name, fields) in metrics.iter().filter(|(k, _)| k.starts_with("SINK.")) {
            let track = self.sinks.entry(name.clone()).or_default();
            match number(fields, "EventDrainSuccessCount") {
                Ok(drain) => {
                    let moved = track.drain.map(|before| drain != before);
                    track.drain_flat = if moved == Some(false) {
                        track.drain_flat.saturating_add(1)
                    } else {
                        0
                    };
                    summary.push(match moved {
                        Some(true) => format!("{name} draining"),
                        Some(false) => format!("{name} idle"),
                        None => format!("{name} drained {}", figure(drain)),
                    });
                    sink_moved.insert(name.clone(), track.drain_flat);
                    track.drain = Some(drain);
                }
                Err(why) => {
                    track.drain = None;
                    track.drain_flat = 0;
                    report.notes.push(format!("{name} {why}"));
                }
            }
            match number(fields, "ConnectionFailedCount") {
                Ok(failed) => {
                    if let Some(before) = track.failed.filter(|b| failed > *b) {
                        report.findings.push(Finding::new(
                            name.clone(),
                            Check::ConnectionFailures,
                            format!(
                                "{name} ConnectionFailedCount grew {} → {}",
                                figure(before),
                                figure(failed)
                            ),
                        ));
                    }
                    track.failed = Some(failed);
                }
                Err(why) => {
                    track.failed = None;
                    report.notes.push(format!("{name} {why}"));
                }
            }
        }

        for (name, fields) in metrics.iter().filter(|(k, _)| k.starts_with("CHANNEL.")) {
            let size = number(fields, "ChannelSize");
            let capacity = number(fields, "ChannelCapacity");
            let fill =
                number(fields, "ChannelFillPercentage").or_else(|why| match (&size, &capacity) {
                    (Ok(s), Ok(c)) if *c > 0.0 => Ok(s / c * 100.0),
                    _ => Err(why),
                });
            match fill {
                Ok(fill) => {
                    let counts = match (&size, &capacity) {
                        (Ok(s), Ok(c)) => format!(" ({}/{})", figure(*s), figure(*c)),
                        _ => String::new(),
                    };
                    if fill > settings.fill_threshold {
                        report.findings.push(Finding::new(
                            name.clone(),
                            Check::ChannelFill,
                            format!(
                                "{name} fill {fill:.1}% > {:.1}%{counts}",
                                settings.fill_threshold
                            ),
                        ));
                    }
                    summary.insert(0, format!("{name} fill {fill:.1}%"));
                }
                Err(why) => report.notes.push(format!("{name} fill: {why}")),
            }

            let track = self.channels.entry(name.clone()).or_default();
            match (size, number(fields, "EventTakeSuccessCount")) {
                (Ok(size), Ok(take)) => {
                    track.flat = if size > 0.0 && track.take == Some(take) {
                        track.flat.saturating_add(1)
                    } else {
                        0
                    };
                    track.take = Some(take);
                    if track.flat >= settings.stalled_after {
                        report.findings.push(stalled(
                            name,
                            take,
                            size,
                            track.flat,
                            &sink_moved,
                            settings.stalled_after,
                        ));
                    }
                }
                (size, take) => {
                    track.take = None;
                    track.flat = 0;
                    let why: Vec<String> = [size.err(), take.err()].into_iter().flatten().collect();
                    report
                        .notes
                        .push(format!("{name} stall: {}", why.join(", ")));
                }
            }
        }

        // Components gone from the answer are forgotten.
        self.channels.retain(|k, _| metrics.contains_key(k));
        self.sinks.retain(|k, _| metrics.contains_key(k));
        report.summary = if summary.is_empty() {
            "no channels or sinks reported".to_string()
        } else {
            summary.join(", ")
        };
        report
    }
}

/// The finding for a channel whose take count stood still: it names the sinks that drained
/// nothing over the same probes (Flume's metrics do not say which sink reads which channel),
/// or the channel itself when every sink moved.
fn stalled(
    channel: &str,
    take: f64,
    size: f64,
    flat: u32,
    sink_flat: &BTreeMap<String, u32>,
    stalled_after: u32,
) -> Finding {
    let sinks: Vec<&str> = sink_flat
        .iter()
        .filter(|(_, f)| **f >= stalled_after)
        .map(|(name, _)| name.as_str())
        .collect();
    let figures = format!(
        "EventTakeSuccessCount flat at {} for {flat} probes",
        figure(take)
    );
    if sinks.is_empty() {
        Finding::new(
            channel,
            Check::SinkStalled,
            format!(
                "{channel} stalled: {figures} while it holds {} events",
                figure(size)
            ),
        )
    } else {
        let names = sinks.join(", ");
        Finding::new(
            names.clone(),
            Check::SinkStalled,
            format!(
                "{names} stalled: {figures} while {channel} holds {} events",
                figure(size)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> FlumeSettings {
        FlumeSettings {
            fill_threshold: 80.0,
            stalled_after: 3,
        }
    }

    fn metrics(v: Value) -> Metrics {
        parse_metrics(v.to_string().as_bytes()).expect("parses")
    }

    fn agent(size: &str, take: &str, drain: &str, failed: &str) -> Metrics {
        metrics(json!({
            "SOURCE.r1": {"Type": "SOURCE", "EventReceivedCount": "1.0E7"},
            "CHANNEL.c1": {
                "Type": "CHANNEL", "ChannelCapacity": "10000", "ChannelSize": size,
                "ChannelFillPercentage": format!("{}", size.parse::<f64>().unwrap_or(0.0) / 100.0),
                "EventPutSuccessCount": "1.0E7", "EventTakeSuccessCount": take,
            },
            "SINK.k1": {
                "Type": "SINK", "EventDrainSuccessCount": drain, "ConnectionFailedCount": failed,
            },
        }))
    }

    #[test]
    fn java_style_numbers() {
        let m = metrics(json!({"X.a": {
            "a": "5.0E-4", "b": "1.0E7", "c": "93.2", "d": " 12 ", "e": 7, "f": "", "g": "abc",
            "h": null, "i": ["1"], "j": "NaN", "k": "Infinity"
        }}));
        let f = &m["X.a"];
        assert_eq!(number(f, "a"), Ok(0.0005));
        assert_eq!(number(f, "b"), Ok(10_000_000.0));
        assert_eq!(number(f, "c"), Ok(93.2));
        assert_eq!(number(f, "d"), Ok(12.0));
        assert_eq!(number(f, "e"), Ok(7.0));
        assert_eq!(number(f, "f"), Err("f empty".to_string()));
        assert!(number(f, "g").is_err_and(|e| e.contains("not a number")));
        assert_eq!(number(f, "h"), Err("h missing".to_string()));
        assert_eq!(number(f, "missing"), Err("missing missing".to_string()));
        for bad in ["i", "j", "k"] {
            assert!(number(f, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_that_are_not_an_object_are_errors_and_odd_components_are_ignored() {
        assert!(parse_metrics(b"not json").is_err());
        assert!(parse_metrics(b"[1,2]").is_err());
        let m = parse_metrics(br#"{"CHANNEL.c1": "weird", "SINK.k1": {}}"#).expect("parses");
        assert_eq!(m.len(), 1);
        let r = FlumeHistory::default().evaluate(&m, &settings());
        assert!(r.findings.is_empty());
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("SINK.k1 EventDrainSuccessCount missing")));
    }

    #[test]
    fn fill_above_threshold_names_channel_and_figures() {
        let mut h = FlumeHistory::default();
        let r = h.evaluate(&agent("9320", "1200", "1200", "0"), &settings());
        assert_eq!(r.findings.len(), 1, "{r:?}");
        assert_eq!(r.findings[0].check, Check::ChannelFill);
        assert_eq!(r.findings[0].component, "CHANNEL.c1");
        assert_eq!(
            r.findings[0].detail,
            "CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)"
        );
        let r = h.evaluate(&agent("1200", "2000", "2000", "0"), &settings());
        assert!(r.findings.is_empty(), "{r:?}");
        assert_eq!(r.detail(), "CHANNEL.c1 fill 12.0%, SINK.k1 draining");
    }

    #[test]
    fn fill_from_size_and_capacity_when_the_percentage_is_missing_or_garbage() {
        let m = metrics(json!({"CHANNEL.c1": {
            "ChannelCapacity": "1.0E4", "ChannelSize": "9.5E3", "ChannelFillPercentage": "x",
            "EventTakeSuccessCount": "5"
        }}));
        let r = FlumeHistory::default().evaluate(&m, &settings());
        assert_eq!(
            r.findings[0].detail,
            "CHANNEL.c1 fill 95.0% > 80.0% (9500/10000)"
        );
        let m = metrics(json!({"CHANNEL.c1": {"ChannelFillPercentage": "", "ChannelSize": "3"}}));
        let r = FlumeHistory::default().evaluate(&m, &settings());
        assert!(r.findings.is_empty());
        assert!(
            r.notes
                .iter()
                .any(|n| n == "CHANNEL.c1 fill: ChannelFillPercentage empty"),
            "{:?}",
            r.notes
        );
        assert!(r.detail().contains("skipped: "), "{}", r.detail());
    }

    #[test]
    fn stall_after_n_flat_probes_while_the_channel_holds_events() {
        let mut h = FlumeHistory::default();
        let s = settings();
        // A baseline, then three probes without progress.
        for i in 0..3 {
            let r = h.evaluate(&agent("500", "1200", "1200", "0"), &s);
            assert!(r.findings.is_empty(), "probe {i}: {r:?}");
        }
        let r = h.evaluate(&agent("500", "1200", "1200", "0"), &s);
        assert_eq!(r.findings.len(), 1, "{r:?}");
        assert_eq!(r.findings[0].component, "SINK.k1");
        assert_eq!(
            r.findings[0].detail,
            "SINK.k1 stalled: EventTakeSuccessCount flat at 1200 for 3 probes while CHANNEL.c1 holds 500 events"
        );
        // Figures change, the finding stays the same finding.
        let r = h.evaluate(&agent("600", "1200", "1200", "0"), &s);
        assert!(r.findings[0]
            .detail
            .contains("for 4 probes while CHANNEL.c1 holds 600"));
        // Progress ends the stall.
        let r = h.evaluate(&agent("600", "1300", "1300", "0"), &s);
        assert!(r.findings.is_empty(), "{r:?}");
    }

    #[test]
    fn an_empty_channel_is_never_stalled() {
        let mut h = FlumeHistory::default();
        for _ in 0..6 {
            let r = h.evaluate(&agent("0", "1200", "1200", "0"), &settings());
            assert!(r.findings.is_empty(), "{r:?}");
        }
    }

    #[test]
    fn a_stalled_channel_whose_sinks_all_move_is_named_itself() {
        let mut h = FlumeHistory::default();
        let mut r = Report::default();
        for i in 0..4 {
            let drain = (1000 + i).to_string();
            r = h.evaluate(&agent("500", "1200", &drain, "0"), &settings());
        }
        assert_eq!(r.findings[0].component, "CHANNEL.c1");
        assert!(
            r.findings[0].detail.starts_with("CHANNEL.c1 stalled: "),
            "{r:?}"
        );
    }

    #[test]
    fn connection_failures_growing() {
        let mut h = FlumeHistory::default();
        assert!(h
            .evaluate(&agent("1", "1", "1", "3"), &settings())
            .findings
            .is_empty());
        let r = h.evaluate(&agent("1", "2", "2", "7"), &settings());
        assert_eq!(r.findings.len(), 1);
        assert_eq!(
            r.findings[0].detail,
            "SINK.k1 ConnectionFailedCount grew 3 → 7"
        );
        assert_eq!(r.findings[0].check, Check::ConnectionFailures);
        // Flat again: fine.
        assert!(h
            .evaluate(&agent("1", "3", "3", "7"), &settings())
            .findings
            .is_empty());
    }

    #[test]
    fn extra_components_and_unknown_fields_are_ignored() {
        let m = metrics(json!({
            "SOURCE.r1": {"Whatever": "x"},
            "INTERCEPTOR.i1": {"ChannelSize": "99999"},
            "CHANNEL.c1": {"ChannelFillPercentage": "5.0E-4", "ChannelSize": "0",
                           "EventTakeSuccessCount": "0", "Future": {"a": 1}},
        }));
        let r = FlumeHistory::default().evaluate(&m, &settings());
        assert!(r.findings.is_empty(), "{r:?}");
        assert_eq!(r.summary, "CHANNEL.c1 fill 0.0%");
    }
}

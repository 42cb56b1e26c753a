//! The Flume probe's evaluator: parses the `/metrics` JSON of a Flume agent (every value a
//! string, numbers possibly in Java's scientific notation) and checks channel fill, stalled
//! sinks, and growing source and sink failure counters, remembering what earlier probes saw.
//! Pure.
//!
//! Facts of real Flume (1.11) it is built on:
//! - a channel without a capacity (the Kafka channel) reports `ChannelCapacity` 0 and
//!   `ChannelFillPercentage` `"1.7976931348623157E308"` (Java's `Double.MAX_VALUE`): its fill is
//!   not judged, only whether its sinks take what its sources put;
//! - a configuration reload restarts every component and the monitoring, so every counter
//!   starts again from 0 and the component's `StartTime` changes: that is a reset, after which
//!   tracking starts over from the new figures, never a stall or a growing failure count;
//! - sources count `EventReadFail`, `ChannelWriteFail`, `GenericProcessingFail`, sinks
//!   `EventWriteFail`, `ChannelReadFail` and `ConnectionFailedCount`; older versions and some
//!   components register none of them, so an absent counter is simply not checked.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{figure, Check, Finding, Report};

/// Source counters that count failures.
pub const SOURCE_FAILURES: [&str; 3] =
    ["EventReadFail", "ChannelWriteFail", "GenericProcessingFail"];
/// Sink counters that count failures (besides `ConnectionFailedCount`, a check of its own).
pub const SINK_FAILURES: [&str; 2] = ["EventWriteFail", "ChannelReadFail"];

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

/// Whether `value` is a fill figure: a percentage from 0 to 100. Anything else (a channel without
/// a capacity reports `Double.MAX_VALUE`) is not.
fn is_percentage(value: f64) -> bool {
    (0.0..=100.0).contains(&value)
}

/// `ChannelFillPercentage` when it is a percentage; otherwise why not, quoting what was sent.
fn fill_percentage(fields: &BTreeMap<String, Value>) -> Result<f64, String> {
    const NAME: &str = "ChannelFillPercentage";
    let value = number(fields, NAME)?;
    if is_percentage(value) {
        return Ok(value);
    }
    let sent = match fields.get(NAME) {
        Some(Value::String(s)) => s.trim().to_string(),
        other => other.map(Value::to_string).unwrap_or_default(),
    };
    Err(format!(
        "{NAME} {} is not a percentage",
        super::truncate(&sent, 40)
    ))
}

/// A component's `StartTime` as sent (a string of milliseconds, or a number).
fn start_time(fields: &BTreeMap<String, Value>) -> Option<String> {
    match fields.get("StartTime")? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What earlier probes saw of one component (source, channel or sink).
#[derive(Debug, Clone, Default)]
struct Track {
    /// Its `StartTime` when last seen: Flume restarts components on a configuration reload.
    start: Option<String>,
    /// The counters read last time.
    counters: BTreeMap<&'static str, f64>,
    /// Probes in a row without progress: a sink's drain count unchanged; a channel's take count
    /// unchanged while it has events to take.
    flat: u32,
    /// A channel without a capacity: its `EventPutSuccessCount` when its take count last moved.
    put_mark: Option<f64>,
}

impl Track {
    /// Reads counter `name`, remembering it: `(before, now)`, `before` being `None` on the first
    /// sight. Missing or unparsable: forgotten, and the reason.
    fn counter(
        &mut self,
        fields: &BTreeMap<String, Value>,
        name: &'static str,
    ) -> Result<(Option<f64>, f64), String> {
        match number(fields, name) {
            Ok(now) => Ok((self.counters.insert(name, now), now)),
            Err(why) => {
                self.counters.remove(name);
                Err(why)
            }
        }
    }

    /// Failure counters among `names` that grew since the last probe (`ChannelWriteFail grew
    /// 3 → 9`). Absent counters are skipped silently; unparsable ones are noted.
    fn grown(
        &mut self,
        component: &str,
        fields: &BTreeMap<String, Value>,
        names: &[&'static str],
        notes: &mut Vec<String>,
    ) -> Vec<String> {
        let mut grew = Vec::new();
        for &name in names {
            if !fields.contains_key(name) {
                self.counters.remove(name);
                continue;
            }
            match self.counter(fields, name) {
                Ok((Some(before), now)) if now > before => {
                    grew.push(format!("{name} grew {} → {}", figure(before), figure(now)))
                }
                Ok(_) => {}
                Err(why) => notes.push(format!("{component} {why}")),
            }
        }
        grew
    }
}

/// What earlier probes of the current child saw; start a new one for each child.
#[derive(Debug, Clone, Default)]
pub struct FlumeHistory {
    components: BTreeMap<String, Track>,
}

/// What a channel without progress still has to deliver.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// A channel with a capacity holds this many events.
    Holds(f64),
    /// A channel without one (Kafka) had this many events put since its take count last moved.
    Put(f64),
}

impl FlumeHistory {
    /// The track of `name`, started over when Flume restarted the component since the last
    /// probe (its `StartTime` changed, or a counter went down): a note says so.
    fn track(
        &mut self,
        name: &str,
        fields: &BTreeMap<String, Value>,
        notes: &mut Vec<String>,
    ) -> &mut Track {
        let track = self.components.entry(name.to_string()).or_default();
        let start = start_time(fields);
        let why = match (&track.start, &start) {
            (Some(before), Some(now)) if before != now => Some("StartTime changed".to_string()),
            _ => track.counters.iter().find_map(|(counter, before)| {
                number(fields, counter)
                    .ok()
                    .filter(|now| now < before)
                    .map(|now| format!("{counter} went down {} → {}", figure(*before), figure(now)))
            }),
        };
        if let Some(why) = why {
            notes.push(format!(
                "{name} counters reset ({why}): tracking starts over"
            ));
            *track = Track::default();
        }
        track.start = start;
        track
    }

    /// Evaluates one answer and remembers its counters for the next.
    pub fn evaluate(&mut self, metrics: &Metrics, settings: &FlumeSettings) -> Report {
        let mut report = Report::default();
        let mut channel_summary = Vec::new();
        let mut sink_summary = Vec::new();
        let mut sink_flat = BTreeMap::new();
        let of_type =
            |prefix: &'static str| metrics.iter().filter(move |(k, _)| k.starts_with(prefix));

        for (name, fields) in of_type("SOURCE.") {
            let track = self.track(name, fields, &mut report.notes);
            let grew = track.grown(name, fields, &SOURCE_FAILURES, &mut report.notes);
            if !grew.is_empty() {
                report.findings.push(Finding::new(
                    name.clone(),
                    Check::SourceFailures,
                    format!("{name} {}", grew.join(", ")),
                ));
            }
        }

        for (name, fields) in of_type("SINK.") {
            let track = self.track(name, fields, &mut report.notes);
            match track.counter(fields, "EventDrainSuccessCount") {
                Ok((before, drain)) => {
                    let moved = before.map(|before| drain != before);
                    track.flat = if moved == Some(false) {
                        track.flat.saturating_add(1)
                    } else {
                        0
                    };
                    sink_summary.push(match moved {
                        Some(true) => format!("{name} draining"),
                        Some(false) => format!("{name} idle"),
                        None => format!("{name} drained {}", figure(drain)),
                    });
                    sink_flat.insert(name.clone(), track.flat);
                }
                Err(why) => {
                    track.flat = 0;
                    report.notes.push(format!("{name} {why}"));
                }
            }
            let connection =
                track.grown(name, fields, &["ConnectionFailedCount"], &mut report.notes);
            if !connection.is_empty() {
                report.findings.push(Finding::new(
                    name.clone(),
                    Check::ConnectionFailures,
                    format!("{name} {}", connection.join(", ")),
                ));
            }
            let grew = track.grown(name, fields, &SINK_FAILURES, &mut report.notes);
            if !grew.is_empty() {
                report.findings.push(Finding::new(
                    name.clone(),
                    Check::SinkFailures,
                    format!("{name} {}", grew.join(", ")),
                ));
            }
        }

        for (name, fields) in of_type("CHANNEL.") {
            let size = number(fields, "ChannelSize");
            let capacity = number(fields, "ChannelCapacity");
            let bounded = !matches!(capacity, Ok(c) if c <= 0.0);
            if bounded {
                let fill = fill_percentage(fields).or_else(|why| match (&size, &capacity) {
                    (Ok(s), Ok(c)) if is_percentage(s / c * 100.0) => Ok(s / c * 100.0),
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
                        channel_summary.push(format!("{name} fill {fill:.1}%"));
                    }
                    Err(why) => report.notes.push(format!("{name} fill: {why}")),
                }
            } else {
                channel_summary.push(format!(
                    "{name} no capacity (Kafka channel): fill not judged"
                ));
            }

            let track = self.track(name, fields, &mut report.notes);
            let take = track.counter(fields, "EventTakeSuccessCount");
            let pending = if bounded {
                size.map(|size| (size > 0.0).then_some(Pending::Holds(size)))
            } else {
                track
                    .counter(fields, "EventPutSuccessCount")
                    .map(|(_, put)| {
                        let moved = take
                            .as_ref()
                            .is_ok_and(|(before, now)| *before != Some(*now));
                        if moved || track.put_mark.is_none() {
                            track.put_mark = Some(put);
                        }
                        let put = put - track.put_mark.unwrap_or(put);
                        (put > 0.0).then_some(Pending::Put(put))
                    })
            };
            match (take, pending) {
                (Ok((before, take)), Ok(pending)) => {
                    track.flat = match pending {
                        Some(_) if before == Some(take) => track.flat.saturating_add(1),
                        _ => 0,
                    };
                    if let Some(pending) = pending.filter(|_| track.flat >= settings.stalled_after)
                    {
                        report.findings.push(stalled(
                            name,
                            take,
                            pending,
                            track.flat,
                            &sink_flat,
                            settings.stalled_after,
                        ));
                    }
                }
                (take, pending) => {
                    track.flat = 0;
                    let why: Vec<String> =
                        [take.err(), pending.err()].into_iter().flatten().collect();
                    report
                        .notes
                        .push(format!("{name} stall: {}", why.join(", ")));
                }
            }
        }

        // Components gone from the answer are forgotten.
        self.components.retain(|k, _| metrics.contains_key(k));
        channel_summary.extend(sink_summary);
        report.summary = if channel_summary.is_empty() {
            "no channels or sinks reported".to_string()
        } else {
            channel_summary.join(", ")
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
    pending: Pending,
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
    let (component, what) = if sinks.is_empty() {
        (channel.to_string(), channel.to_string())
    } else {
        (sinks.join(", "), sinks.join(", "))
    };
    let pending = match pending {
        Pending::Holds(size) if sinks.is_empty() => format!("it holds {} events", figure(size)),
        Pending::Holds(size) => format!("{channel} holds {} events", figure(size)),
        Pending::Put(put) if sinks.is_empty() => {
            format!("{} events were put into it", figure(put))
        }
        Pending::Put(put) => format!("{} events were put into {channel}", figure(put)),
    };
    Finding::new(
        component,
        Check::SinkStalled,
        format!("{what} stalled: {figures} while {pending}"),
    )
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

    /// A real Flume 1.11.0 answer (exec source, memory channel, avro sink).
    const REAL: &str = r#"{"SINK.k1":{"ConnectionCreatedCount":"1","BatchCompleteCount":"0","EventWriteFail":"0","EventDrainAttemptCount":"103492","BatchEmptyCount":"0","StartTime":"1796541093812","BatchUnderflowCount":"0","ChannelReadFail":"0","ConnectionFailedCount":"0","Type":"SINK","ConnectionClosedCount":"0","EventDrainSuccessCount":"103400","StopTime":"0"},"CHANNEL.c1":{"ChannelCapacity":"1000","ChannelFillPercentage":"0.0","Type":"CHANNEL","ChannelSize":"0","EventTakeSuccessCount":"103500","StartTime":"1796541093310","EventTakeAttemptCount":"103568","EventPutAttemptCount":"103567","EventPutSuccessCount":"103566","StopTime":"0"},"SOURCE.r1":{"AppendBatchAcceptedCount":"0","GenericProcessingFail":"0","EventAcceptedCount":"103566","AppendReceivedCount":"0","StartTime":"1796541093817","AppendBatchReceivedCount":"0","ChannelWriteFail":"0","EventReceivedCount":"0","Type":"SOURCE","EventReadFail":"0","AppendAcceptedCount":"0","OpenConnectionCount":"0","StopTime":"0"}}"#;

    /// `REAL` with fields replaced (`("SINK.k1", "EventWriteFail", "2")`).
    fn real(changes: &[(&str, &str, &str)]) -> Metrics {
        let mut v: Value = serde_json::from_str(REAL).expect("real JSON");
        for (component, field, value) in changes {
            v[*component][*field] = json!(value);
        }
        metrics(v)
    }

    #[test]
    fn a_real_flume_answer_is_healthy_and_summarised() {
        let mut h = FlumeHistory::default();
        let r = h.evaluate(
            &parse_metrics(REAL.as_bytes()).expect("parses"),
            &settings(),
        );
        assert_eq!(r.findings, vec![]);
        assert_eq!(r.notes, Vec::<String>::new());
        assert_eq!(r.detail(), "CHANNEL.c1 fill 0.0%, SINK.k1 drained 103400");
        let r = h.evaluate(
            &real(&[
                ("SINK.k1", "EventDrainSuccessCount", "103500"),
                ("CHANNEL.c1", "EventTakeSuccessCount", "103600"),
            ]),
            &settings(),
        );
        assert_eq!(r.detail(), "CHANNEL.c1 fill 0.0%, SINK.k1 draining");
    }

    fn kafka_channel(put: &str, take: &str) -> Metrics {
        metrics(json!({
            "CHANNEL.c1": {
                "Type": "CHANNEL", "ChannelCapacity": "0", "ChannelSize": "0",
                "ChannelFillPercentage": "1.7976931348623157E308", "StartTime": "1796541093310",
                "EventPutSuccessCount": put, "EventTakeSuccessCount": take,
            },
            "SINK.k1": {"Type": "SINK", "EventDrainSuccessCount": take},
        }))
    }

    #[test]
    fn a_channel_without_capacity_is_never_a_fill_alarm() {
        let mut h = FlumeHistory::default();
        for i in 0..6 {
            let n = (1000 * i).to_string();
            let r = h.evaluate(&kafka_channel(&n, &n), &settings());
            assert!(r.findings.is_empty(), "probe {i}: {r:?}");
            assert!(r.notes.is_empty(), "probe {i}: {r:?}");
            assert_eq!(
                r.summary,
                if i == 0 {
                    "CHANNEL.c1 no capacity (Kafka channel): fill not judged, SINK.k1 drained 0"
                } else {
                    "CHANNEL.c1 no capacity (Kafka channel): fill not judged, SINK.k1 draining"
                }
            );
        }
    }

    #[test]
    fn a_channel_without_capacity_stalls_when_puts_advance_and_takes_stay_flat() {
        // (put, take, stalled finding expected)
        let table: [(&str, &str, Option<&str>); 8] = [
            ("100", "100", None), // baseline
            ("100", "100", None), // idle: nothing put, nothing to take
            ("100", "100", None),
            ("150", "100", None), // 50 put, none taken: 1 probe
            ("180", "100", None), // 2 probes
            ("180", "100", Some("SINK.k1 stalled: EventTakeSuccessCount flat at 100 for 3 probes while 80 events were put into CHANNEL.c1")),
            ("200", "100", Some("SINK.k1 stalled: EventTakeSuccessCount flat at 100 for 4 probes while 100 events were put into CHANNEL.c1")),
            ("210", "200", None), // takes again
        ];
        let mut h = FlumeHistory::default();
        for (i, (put, take, expected)) in table.into_iter().enumerate() {
            let r = h.evaluate(&kafka_channel(put, take), &settings());
            let got: Vec<&str> = r.findings.iter().map(|f| f.detail.as_str()).collect();
            assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "row {i}");
            assert!(r.findings.iter().all(|f| f.check == Check::SinkStalled));
        }
    }

    #[test]
    fn figures_that_are_not_a_fill_are_not_judged() {
        // (capacity, size, percentage) → the summary's or the note's words
        let table: [(Option<&str>, Option<&str>, &str, &str); 6] = [
            (
                Some("0"),
                Some("0"),
                "1.7976931348623157E308",
                "no capacity (Kafka channel): fill not judged",
            ),
            (
                Some("-1"),
                Some("5"),
                "95.0",
                "no capacity (Kafka channel): fill not judged",
            ),
            (
                None,
                Some("5"),
                "1.7976931348623157E308",
                "fill: ChannelFillPercentage 1.7976931348623157E308 is not a percentage",
            ),
            (
                None,
                None,
                "150",
                "fill: ChannelFillPercentage 150 is not a percentage",
            ),
            (
                Some("100"),
                Some("150"),
                "-3",
                "fill: ChannelFillPercentage -3 is not a percentage",
            ),
            (
                Some("1000"),
                Some("50"),
                "1.7976931348623157E308",
                "fill 5.0%",
            ),
        ];
        for (capacity, size, pct, words) in table {
            let mut c = serde_json::Map::new();
            c.insert("ChannelFillPercentage".into(), json!(pct));
            c.insert("EventTakeSuccessCount".into(), json!("1"));
            c.insert("EventPutSuccessCount".into(), json!("1"));
            if let Some(capacity) = capacity {
                c.insert("ChannelCapacity".into(), json!(capacity));
            }
            if let Some(size) = size {
                c.insert("ChannelSize".into(), json!(size));
            }
            let r = FlumeHistory::default().evaluate(
                &metrics(json!({"CHANNEL.c1": c})),
                &FlumeSettings {
                    fill_threshold: 1.0,
                    stalled_after: 3,
                },
            );
            let fill: Vec<_> = r
                .findings
                .iter()
                .filter(|f| f.check == Check::ChannelFill)
                .collect();
            let expected_finding = words == "fill 5.0%";
            assert_eq!(
                !fill.is_empty(),
                expected_finding,
                "{capacity:?} {pct}: {r:?}"
            );
            assert!(
                r.detail().contains(&format!("CHANNEL.c1 {words}")),
                "{capacity:?} {pct}: {}",
                r.detail()
            );
        }
    }

    #[test]
    fn a_reload_resets_counters_and_tracking_starts_over() {
        let s = settings();
        let reloaded = "1796541200000";
        // (changes to REAL, findings expected, a reset note expected)
        type Changes<'a> = Vec<(&'a str, &'a str, &'a str)>;
        let table: Vec<(Changes, Vec<Check>, bool)> = vec![
            (
                vec![
                    ("SINK.k1", "ConnectionFailedCount", "3"),
                    ("SOURCE.r1", "ChannelWriteFail", "3"),
                ],
                vec![],
                false,
            ),
            // Counters back near 0 after a reload, StartTime changed: no "grew", no stall.
            (
                vec![
                    ("SINK.k1", "StartTime", reloaded),
                    ("SINK.k1", "EventDrainSuccessCount", "0"),
                    ("SINK.k1", "ConnectionFailedCount", "0"),
                    ("CHANNEL.c1", "StartTime", reloaded),
                    ("CHANNEL.c1", "EventTakeSuccessCount", "0"),
                    ("CHANNEL.c1", "ChannelSize", "40"),
                    ("SOURCE.r1", "StartTime", reloaded),
                    ("SOURCE.r1", "ChannelWriteFail", "1"),
                ],
                vec![],
                true,
            ),
            // Growing from the new baseline is a finding again.
            (
                vec![
                    ("SINK.k1", "StartTime", reloaded),
                    ("SINK.k1", "EventDrainSuccessCount", "10"),
                    ("SINK.k1", "ConnectionFailedCount", "2"),
                    ("CHANNEL.c1", "StartTime", reloaded),
                    ("CHANNEL.c1", "EventTakeSuccessCount", "10"),
                    ("SOURCE.r1", "StartTime", reloaded),
                    ("SOURCE.r1", "ChannelWriteFail", "1"),
                ],
                vec![Check::ConnectionFailures],
                false,
            ),
        ];
        let mut h = FlumeHistory::default();
        for (i, (changes, checks, reset)) in table.into_iter().enumerate() {
            let r = h.evaluate(&real(&changes), &s);
            let got: Vec<Check> = r.findings.iter().map(|f| f.check).collect();
            assert_eq!(got, checks, "row {i}: {r:?}");
            assert_eq!(
                r.notes.iter().any(|n| n.contains("counters reset")),
                reset,
                "row {i}: {r:?}"
            );
        }
        let r = h.evaluate(&real(&[]), &s);
        assert!(r.findings.is_empty(), "{r:?}");
        assert!(
            r.notes.contains(
                &"SINK.k1 counters reset (StartTime changed): tracking starts over".to_string()
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_counter_going_down_without_start_time_is_a_reset_too() {
        let mut h = FlumeHistory::default();
        let s = settings();
        // Three probes flat while holding events, then the counters restart at 0: not stalled.
        for _ in 0..3 {
            assert!(h
                .evaluate(&agent("500", "1200", "1200", "7"), &s)
                .findings
                .is_empty());
        }
        let r = h.evaluate(&agent("500", "0", "0", "0"), &s);
        assert!(r.findings.is_empty(), "{r:?}");
        assert!(r.notes.contains(
            &"CHANNEL.c1 counters reset (EventTakeSuccessCount went down 1200 → 0): tracking starts over"
                .to_string()
        ), "{r:?}");
        assert!(
            r.notes
                .iter()
                .any(|n| n.starts_with("SINK.k1 counters reset (")),
            "{r:?}"
        );
        // The stall count starts over from the new baseline.
        for _ in 0..2 {
            assert!(h
                .evaluate(&agent("500", "0", "0", "0"), &s)
                .findings
                .is_empty());
        }
        let r = h.evaluate(&agent("500", "0", "0", "1"), &s);
        let got: Vec<Check> = r.findings.iter().map(|f| f.check).collect();
        assert_eq!(got, vec![Check::ConnectionFailures, Check::SinkStalled]);
    }

    #[test]
    fn source_and_sink_failure_counters_growing_are_findings() {
        // (component, counter, check)
        let table = [
            ("SOURCE.r1", "EventReadFail", Check::SourceFailures),
            ("SOURCE.r1", "ChannelWriteFail", Check::SourceFailures),
            ("SOURCE.r1", "GenericProcessingFail", Check::SourceFailures),
            ("SINK.k1", "EventWriteFail", Check::SinkFailures),
            ("SINK.k1", "ChannelReadFail", Check::SinkFailures),
            (
                "SINK.k1",
                "ConnectionFailedCount",
                Check::ConnectionFailures,
            ),
        ];
        for (component, counter, check) in table {
            let mut h = FlumeHistory::default();
            let drain = |n: &'static str| ("SINK.k1", "EventDrainSuccessCount", n);
            assert!(h
                .evaluate(&real(&[(component, counter, "3"), drain("1")]), &settings())
                .findings
                .is_empty());
            let r = h.evaluate(&real(&[(component, counter, "9"), drain("2")]), &settings());
            assert_eq!(r.findings.len(), 1, "{counter}: {r:?}");
            assert_eq!(r.findings[0].check, check);
            assert_eq!(r.findings[0].component, component);
            assert_eq!(
                r.findings[0].detail,
                format!("{component} {counter} grew 3 → 9")
            );
            // Flat again: fine.
            let r = h.evaluate(&real(&[(component, counter, "9"), drain("3")]), &settings());
            assert!(r.findings.is_empty(), "{counter}: {r:?}");
        }
        // Two counters of one component: one finding naming both.
        let mut h = FlumeHistory::default();
        h.evaluate(&real(&[]), &settings());
        let r = h.evaluate(
            &real(&[
                ("SOURCE.r1", "EventReadFail", "1"),
                ("SOURCE.r1", "ChannelWriteFail", "4"),
            ]),
            &settings(),
        );
        assert_eq!(
            r.findings[0].detail,
            "SOURCE.r1 EventReadFail grew 0 → 1, ChannelWriteFail grew 0 → 4"
        );
        assert_eq!(r.findings[0].check.as_str(), "source-failures");
        assert_eq!(Check::SinkFailures.as_str(), "sink-failures");
    }

    #[test]
    fn absent_failure_counters_are_skipped_and_garbage_is_a_note() {
        // A source and a sink that register no failure counters (older Flume): nothing.
        let m = |write_fail: Option<&str>| {
            let mut sink = json!({"EventDrainSuccessCount": "5"});
            if let Some(v) = write_fail {
                sink["EventWriteFail"] = json!(v);
            }
            metrics(json!({"SOURCE.r1": {"EventAcceptedCount": "5"}, "SINK.k1": sink}))
        };
        let mut h = FlumeHistory::default();
        for _ in 0..3 {
            let r = h.evaluate(&m(None), &settings());
            assert!(r.findings.is_empty() && r.notes.is_empty(), "{r:?}");
        }
        let r = h.evaluate(&m(Some("lots")), &settings());
        assert!(r.findings.is_empty(), "{r:?}");
        assert_eq!(
            r.notes,
            vec!["SINK.k1 EventWriteFail \"lots\" is not a number".to_string()]
        );
    }
}

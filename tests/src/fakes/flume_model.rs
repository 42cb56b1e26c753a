//! The simulated Flume agent behind `fake-flume`: its components' counters, how one `GET /metrics`
//! advances them, and their rendering as Flume's HTTP monitoring JSON.
//!
//! [`FlumeState`] is also what `GET /control/state` answers (and what
//! [`FakeFlume::state`](super::FakeFlume::state) returns).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::java::double_to_string;

/// Events a source puts, and a running sink drains, per step (one `GET /metrics`).
pub const EVENTS_PER_STEP: u64 = 100;

/// A channel: its capacity, the size the test set, and its put/take counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    pub capacity: u64,
    pub size: u64,
    pub put_attempt: u64,
    pub put_success: u64,
    pub take_attempt: u64,
    pub take_success: u64,
}

/// A sink: the channel it drains, whether it is stalled, and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    pub channel: String,
    pub stalled: bool,
    /// Connection failures added at each step while stalled.
    pub failures_per_step: u64,
    pub drain_attempt: u64,
    pub drain_success: u64,
    pub connection_created: u64,
    pub connection_closed: u64,
    pub connection_failed: u64,
    pub batch_empty: u64,
    pub batch_underflow: u64,
    pub batch_complete: u64,
}

/// A source and its counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    pub received: u64,
    pub accepted: u64,
    pub append_batch_received: u64,
    pub append_batch_accepted: u64,
    pub open_connections: u64,
}

/// The whole simulated agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlumeState {
    /// The components' `StartTime` (ms since the epoch).
    pub start_time_ms: u64,
    /// How many `GET /metrics` have been answered.
    pub steps: u64,
    /// Whether non-control requests are held unanswered (filled in by the server when reporting).
    pub hung: bool,
    /// Whether `GET /metrics` answers a non-JSON body.
    pub malformed: bool,
    pub channels: BTreeMap<String, ChannelState>,
    pub sinks: BTreeMap<String, SinkState>,
    pub sources: BTreeMap<String, SourceState>,
    /// Field names left out of every component.
    pub omitted_fields: BTreeSet<String>,
    /// Extra components of an unknown type (such as `"OTHER.x"`), shown with two fields.
    pub extra_components: BTreeSet<String>,
}

impl FlumeState {
    /// An agent with these channels (`(name, capacity)`), sinks (`(name, channel)`, the first
    /// channel when `None`) and sources, all counters at zero and every channel empty.
    pub fn new(
        channels: &[(String, u64)],
        sinks: &[(String, Option<String>)],
        sources: &[String],
        start_time_ms: u64,
    ) -> Result<Self, String> {
        let first = channels
            .first()
            .map(|(name, _)| name.clone())
            .ok_or("an agent needs at least one channel")?;
        let channels: BTreeMap<_, _> = channels
            .iter()
            .map(|(name, capacity)| (name.clone(), ChannelState::new(*capacity)))
            .collect();
        let mut sink_states = BTreeMap::new();
        for (name, channel) in sinks {
            let channel = channel.clone().unwrap_or_else(|| first.clone());
            if !channels.contains_key(&channel) {
                return Err(format!("sink {name}: no channel {channel}"));
            }
            sink_states.insert(name.clone(), SinkState::new(channel));
        }
        Ok(FlumeState {
            start_time_ms,
            steps: 0,
            hung: false,
            malformed: false,
            channels,
            sinks: sink_states,
            sources: sources
                .iter()
                .map(|name| (name.clone(), SourceState::default()))
                .collect(),
            omitted_fields: BTreeSet::new(),
            extra_components: BTreeSet::new(),
        })
    }

    /// One step of flow: every source puts [`EVENTS_PER_STEP`] events into every channel, every
    /// running sink takes as many from its channel; a stalled sink's counters stay flat (but for
    /// its `failures_per_step`). Channel sizes stay where the test set them.
    pub fn step(&mut self) {
        self.steps += 1;
        let n = EVENTS_PER_STEP;
        for source in self.sources.values_mut() {
            source.received += n;
            source.accepted += n;
            source.append_batch_received += 1;
            source.append_batch_accepted += 1;
        }
        if !self.sources.is_empty() {
            for channel in self.channels.values_mut() {
                channel.put_attempt += n;
                channel.put_success += n;
            }
        }
        for sink in self.sinks.values_mut() {
            if sink.stalled {
                sink.connection_failed += sink.failures_per_step;
                continue;
            }
            sink.drain_attempt += n;
            sink.drain_success += n;
            sink.batch_complete += 1;
            if let Some(channel) = self.channels.get_mut(&sink.channel) {
                channel.take_attempt += n;
                channel.take_success += n;
            }
        }
    }

    pub fn set_channel_size(&mut self, channel: &str, size: u64) -> Result<(), String> {
        self.channels
            .get_mut(channel)
            .map(|c| c.size = size)
            .ok_or_else(|| format!("no channel {channel}"))
    }

    /// Stalls a sink; while stalled, each step adds `failures_per_step` connection failures.
    pub fn stall_sink(&mut self, sink: &str, failures_per_step: u64) -> Result<(), String> {
        let s = self.sink_mut(sink)?;
        s.stalled = true;
        s.failures_per_step = failures_per_step;
        Ok(())
    }

    pub fn resume_sink(&mut self, sink: &str) -> Result<(), String> {
        let s = self.sink_mut(sink)?;
        s.stalled = false;
        s.failures_per_step = 0;
        Ok(())
    }

    pub fn add_connection_failures(&mut self, sink: &str, n: u64) -> Result<(), String> {
        let s = self.sink_mut(sink)?;
        s.connection_failed = s.connection_failed.saturating_add(n);
        Ok(())
    }

    fn sink_mut(&mut self, sink: &str) -> Result<&mut SinkState, String> {
        self.sinks
            .get_mut(sink)
            .ok_or_else(|| format!("no sink {sink}"))
    }

    /// The `GET /metrics` body: `"TYPE.name"` → field → value, every value a string.
    pub fn metrics(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let start = self.start_time_ms;
        let mut out = BTreeMap::new();
        for (name, c) in &self.channels {
            // Flume's ChannelCounter answers Double.MAX_VALUE for a zero capacity.
            let fill = if c.capacity == 0 {
                f64::MAX
            } else {
                c.size as f64 / c.capacity as f64 * 100.0
            };
            let mut fields = fields("CHANNEL", start);
            put(&mut fields, "ChannelSize", c.size);
            put(&mut fields, "ChannelCapacity", c.capacity);
            fields.insert("ChannelFillPercentage".into(), double_to_string(fill));
            put(&mut fields, "EventPutAttemptCount", c.put_attempt);
            put(&mut fields, "EventPutSuccessCount", c.put_success);
            put(&mut fields, "EventTakeAttemptCount", c.take_attempt);
            put(&mut fields, "EventTakeSuccessCount", c.take_success);
            out.insert(format!("CHANNEL.{name}"), fields);
        }
        for (name, s) in &self.sinks {
            let mut fields = fields("SINK", start);
            put(&mut fields, "EventDrainAttemptCount", s.drain_attempt);
            put(&mut fields, "EventDrainSuccessCount", s.drain_success);
            put(&mut fields, "ConnectionCreatedCount", s.connection_created);
            put(&mut fields, "ConnectionClosedCount", s.connection_closed);
            put(&mut fields, "ConnectionFailedCount", s.connection_failed);
            put(&mut fields, "BatchEmptyCount", s.batch_empty);
            put(&mut fields, "BatchUnderflowCount", s.batch_underflow);
            put(&mut fields, "BatchCompleteCount", s.batch_complete);
            out.insert(format!("SINK.{name}"), fields);
        }
        for (name, s) in &self.sources {
            let mut fields = fields("SOURCE", start);
            put(&mut fields, "EventReceivedCount", s.received);
            put(&mut fields, "EventAcceptedCount", s.accepted);
            put(&mut fields, "AppendReceivedCount", 0);
            put(&mut fields, "AppendAcceptedCount", 0);
            put(
                &mut fields,
                "AppendBatchReceivedCount",
                s.append_batch_received,
            );
            put(
                &mut fields,
                "AppendBatchAcceptedCount",
                s.append_batch_accepted,
            );
            put(&mut fields, "OpenConnectionCount", s.open_connections);
            out.insert(format!("SOURCE.{name}"), fields);
        }
        for name in &self.extra_components {
            let kind = name.split('.').next().unwrap_or(name);
            let mut fields = fields(kind, start);
            fields.insert("Flavour".into(), "unknown to the probe".into());
            out.insert(name.clone(), fields);
        }
        for fields in out.values_mut() {
            fields.retain(|field, _| !self.omitted_fields.contains(field));
        }
        out
    }
}

impl ChannelState {
    fn new(capacity: u64) -> Self {
        ChannelState {
            capacity,
            size: 0,
            put_attempt: 0,
            put_success: 0,
            take_attempt: 0,
            take_success: 0,
        }
    }
}

impl SinkState {
    fn new(channel: String) -> Self {
        SinkState {
            channel,
            stalled: false,
            failures_per_step: 0,
            drain_attempt: 0,
            drain_success: 0,
            connection_created: 1,
            connection_closed: 0,
            connection_failed: 0,
            batch_empty: 0,
            batch_underflow: 0,
            batch_complete: 0,
        }
    }
}

/// The fields every Flume component has: `Type`, `StartTime`, `StopTime` ("0": running).
fn fields(kind: &str, start_time_ms: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("Type".to_owned(), kind.to_owned()),
        ("StartTime".to_owned(), start_time_ms.to_string()),
        ("StopTime".to_owned(), "0".to_owned()),
    ])
}

/// A Java `long` field.
fn put(fields: &mut BTreeMap<String, String>, name: &str, value: u64) {
    fields.insert(name.to_owned(), value.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> FlumeState {
        FlumeState::new(
            &[("c1".into(), 1_000_000)],
            &[("k1".into(), None), ("k2".into(), Some("c1".into()))],
            &["r1".into()],
            1_700_000_000_000,
        )
        .expect("a valid agent")
    }

    #[test]
    fn running_sinks_drain_and_a_stalled_one_stays_flat() {
        let mut a = agent();
        a.set_channel_size("c1", 5).expect("c1 exists");
        a.stall_sink("k2", 3).expect("k2 exists");
        a.step();
        a.step();
        let m = a.metrics();
        assert_eq!(m["CHANNEL.c1"]["ChannelSize"], "5");
        assert_eq!(m["CHANNEL.c1"]["ChannelFillPercentage"], "5.0E-4");
        assert_eq!(m["CHANNEL.c1"]["EventPutSuccessCount"], "200");
        assert_eq!(m["CHANNEL.c1"]["EventTakeSuccessCount"], "200");
        assert_eq!(m["SINK.k1"]["EventDrainSuccessCount"], "200");
        assert_eq!(m["SINK.k2"]["EventDrainSuccessCount"], "0");
        assert_eq!(m["SINK.k2"]["ConnectionFailedCount"], "6");
        assert_eq!(m["SOURCE.r1"]["EventAcceptedCount"], "200");
        assert_eq!(m["SOURCE.r1"]["Type"], "SOURCE");
    }

    #[test]
    fn omitted_fields_and_extra_components() {
        let mut a = agent();
        a.omitted_fields.insert("ChannelFillPercentage".into());
        a.extra_components.insert("OTHER.x".into());
        let m = a.metrics();
        assert!(!m["CHANNEL.c1"].contains_key("ChannelFillPercentage"));
        assert_eq!(m["OTHER.x"]["Type"], "OTHER");
    }

    #[test]
    fn bad_names_are_errors_not_panics() {
        let mut a = agent();
        assert!(a.set_channel_size("nope", 1).is_err());
        assert!(a.stall_sink("nope", 0).is_err());
        assert!(FlumeState::new(&[], &[], &[], 0).is_err());
        assert!(FlumeState::new(
            &[("c1".into(), 1)],
            &[("k".into(), Some("c9".into()))],
            &[],
            0
        )
        .is_err());
    }
}

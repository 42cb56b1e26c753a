//! Sending: one send in flight per channel, retry with capped exponential backoff (or the
//! server's `Retry-After`), and a least interval between messages per channel (webhook rate
//! limits). What is due comes from the [`Book`](crate::book::Book); results come back through a
//! channel so the driver records deliveries in ZooKeeper.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};
use zkwatchdog::backoff::{Doubling, Retry};

use crate::book::Batch;
use crate::lease::Fence;
use crate::notice::{Notice, NoticeKey, Origin};
use crate::notify::Channel;

/// The outcome of one send.
#[derive(Debug)]
pub struct Sent {
    pub channel: String,
    /// What the message carried, item by item (agent, phase, incident occurrence).
    pub items: Vec<NoticeKey>,
    pub result: Result<(), String>,
    retry_after: Option<Duration>,
}

#[derive(Debug)]
struct Lane {
    channel: Channel,
    in_flight: bool,
    not_before: Instant,
    failures: u32,
}

/// Per-channel sending state.
#[derive(Debug)]
pub struct Dispatcher {
    lanes: BTreeMap<String, Lane>,
    origin: Origin,
    retry_initial: Duration,
    retry_max: Duration,
    results: mpsc::Sender<Sent>,
    /// Counts every attempt and failure per channel.
    metrics: std::sync::Arc<crate::metrics::WatcherMetrics>,
}

impl Dispatcher {
    pub fn new(
        channels: Vec<Channel>,
        origin: Origin,
        retry_initial: Duration,
        retry_max: Duration,
        metrics: std::sync::Arc<crate::metrics::WatcherMetrics>,
    ) -> (Self, mpsc::Receiver<Sent>) {
        let (tx, rx) = mpsc::channel(64);
        let now = Instant::now();
        let lanes = channels
            .into_iter()
            .map(|channel| {
                (
                    channel.name().to_string(),
                    Lane {
                        channel,
                        in_flight: false,
                        not_before: now,
                        failures: 0,
                    },
                )
            })
            .collect();
        (
            Dispatcher {
                lanes,
                origin,
                retry_initial,
                retry_max,
                results: tx,
                metrics,
            },
            rx,
        )
    }

    /// Names of the channels.
    pub fn names(&self) -> Vec<String> {
        self.lanes.keys().cloned().collect()
    }

    /// Channels free to send now.
    pub fn ready(&self, now: Instant) -> Vec<String> {
        self.lanes
            .iter()
            .filter(|(_, l)| !l.in_flight && l.not_before <= now)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// When a channel that is blocked by backoff or rate limit becomes free.
    pub fn next_free(&self, now: Instant) -> Option<Instant> {
        self.lanes
            .values()
            .filter(|l| !l.in_flight && l.not_before > now)
            .map(|l| l.not_before)
            .min()
    }

    /// True while any send is in flight.
    pub fn busy(&self) -> bool {
        self.lanes.values().any(|l| l.in_flight)
    }

    /// Starts sending `batch` on its channel, step by step while `fence`'s lease holds.
    pub fn send(&mut self, batch: Batch, fence: Fence) {
        let Some(lane) = self.lanes.get_mut(&batch.channel) else {
            return;
        };
        lane.in_flight = true;
        let channel = lane.channel.clone();
        let origin = self.origin.clone();
        let tx = self.results.clone();
        let items: Vec<NoticeKey> = batch.items.iter().map(|i| i.key()).collect();
        let notice = Notice::Incidents { items: batch.items };
        tokio::spawn(async move {
            let result = fence.guard(channel.send(&notice, &origin)).await;
            let (result, retry_after) = match result {
                Ok(Ok(())) => (Ok(()), None),
                Ok(Err(e)) => (Err(e.message), e.retry_after),
                Err(lapsed) => (Err(lapsed.to_string()), None),
            };
            let _ = tx
                .send(Sent {
                    channel: channel.name().to_string(),
                    items,
                    result,
                    retry_after,
                })
                .await;
        });
    }

    /// Records the outcome of a send; returns true if it was accepted.
    pub fn finished(&mut self, sent: &Sent) -> bool {
        let Some(lane) = self.lanes.get_mut(&sent.channel) else {
            return false;
        };
        lane.in_flight = false;
        self.metrics.attempt(&sent.channel, sent.result.is_ok());
        let now = Instant::now();
        match &sent.result {
            Ok(()) => {
                lane.failures = 0;
                lane.not_before = now + lane.channel.min_interval();
                match sent.items.as_slice() {
                    [one] => {
                        info!(channel = %sent.channel, agent = %one.agent, agents = 1, "notification accepted")
                    }
                    items => {
                        info!(channel = %sent.channel, agents = items.len(), "notification accepted")
                    }
                }
                true
            }
            Err(reason) => {
                lane.failures += 1;
                let delay = Doubling::new(self.retry_initial, self.retry_max)
                    .after(lane.failures)
                    .max(sent.retry_after.unwrap_or_default());
                lane.not_before = now + delay;
                warn!(
                    channel = %sent.channel,
                    attempt = lane.failures,
                    retry_in = %humantime::format_duration(delay),
                    error = %reason,
                    "notification failed; it stays pending and will be retried"
                );
                false
            }
        }
    }

    /// Sends a message about the watcher itself on every channel, retrying each a few times, in
    /// the background (ZooKeeper is not there to record it).
    pub fn broadcast(&self, notice: Notice) {
        for lane in self.lanes.values() {
            let channel = lane.channel.clone();
            let origin = self.origin.clone();
            let notice = notice.clone();
            let (initial, max) = (self.retry_initial, self.retry_max);
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let mut retry = Retry::new(Doubling::new(initial, max));
                for attempt in 1..=5 {
                    let result = channel.send(&notice, &origin).await;
                    metrics.attempt(channel.name(), result.is_ok());
                    match result {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(channel = %channel.name(), attempt, error = %e.message, "watcher notice failed");
                            tokio::time::sleep(retry.failed()).await;
                        }
                    }
                }
            });
        }
    }
}

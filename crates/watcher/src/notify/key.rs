//! The identity of one notification on one channel, so that a resend is recognisable: the email's
//! `Message-ID` and the generic webhook's idempotency key.
//!
//! A leader killed after the server accepted a message and before the acceptance was recorded in
//! ZooKeeper makes the next leader send it again (docs/alerts.md, "The at-least-once window").
//! Both sends are made from the same incident records, so a key computed from them
//! alone is the same on every replica: a mail store that deduplicates by `Message-ID`, or a
//! receiver that honours `Idempotency-Key`, drops the copy.
//!
//! The key hashes the channel name and, per item, the agent id, the phase, the incident's
//! `opened_at`, its occurrence's `seq` (which outage of the record: a reopened incident is
//! another notification), `occurrences` and `resolved_at`. A reminder repeats the same incident
//! in the same phase, so its key also carries when the channel last accepted a notice of it
//! (`NoticeItem::last_sent`, from the incident record): the next reminder comes only after this
//! one was accepted and recorded, so it differs; a resend of this one, by any replica at any
//! time, does not.
//!
//! One line per item: `item <len>:<agent> <phase> opened <opened_at> seq <seq> occurrences <n>
//! resolved <resolved_at or nothing>`, plus ` after <last_sent or "none">` for a reminder;
//! the lines sorted, each followed by `\n`, after `zkwatcher notification v2\n` and
//! `channel <len>:<channel>\n`; the key is the first 16 bytes of their SHA-256, in hex.
//! Timestamps are RFC 3339 with milliseconds (`2027-01-15T08:00:00.123Z`).

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::notice::{Notice, Phase};

/// Domain of every `Message-ID` the watcher makes.
const DOMAIN: &str = "zkwatcher";

/// 32 hex digits (128 bits of SHA-256) naming `notice` on `channel`; `now` matters only for
/// test messages.
pub(crate) fn notification_key(channel: &str, notice: &Notice, now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut lines: Vec<String> = match notice {
        Notice::Incidents { items } => items
            .iter()
            .map(|item| {
                let slot = match (item.phase, item.last_sent) {
                    (Phase::Reminder, Some(t)) => format!(" after {t}"),
                    (Phase::Reminder, None) => " after none".to_string(),
                    _ => String::new(),
                };
                let resolved = item.resolved_at.map(|t| t.to_string()).unwrap_or_default();
                // Length-prefixed rather than Debug-quoted: the key must not change with the
                // Rust version that built the watcher (a rolling upgrade resends with it).
                format!(
                    "item {}:{} {} opened {} seq {} occurrences {} resolved {resolved}{slot}",
                    item.agent.len(),
                    item.agent,
                    phase_name(item.phase),
                    item.opened_at,
                    item.occurrence.seq,
                    item.occurrences,
                )
            })
            .collect(),
        Notice::ZkLost { since, trouble, .. } => {
            vec![format!("zk-lost {since} {}", trouble.kind())]
        }
        Notice::ZkBack { since, .. } => vec![format!("zk-back {since}")],
        // Every `test-notify` is a new message.
        Notice::Test => vec![format!("test {}", since_epoch.as_nanos())],
    };
    // The same items in another order are the same notification.
    lines.sort();
    let mut hash = Sha256::new();
    hash.update(b"zkwatcher notification v2\n");
    hash.update(format!("channel {}:{channel}\n", channel.len()).as_bytes());
    for line in &lines {
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `<KEY@zkwatcher>`.
pub(crate) fn message_id(key: &str) -> String {
    format!("<{key}@{DOMAIN}>")
}

/// The phase as the generic webhook and the key spell it.
pub(crate) fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Opened => "opened",
        Phase::Reminder => "reminder",
        Phase::OpenedAndResolved => "opened-and-resolved",
        Phase::Resolved => "resolved",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zkwatchdog::registry::Timestamp;

    use super::*;
    use crate::notice::{NoticeItem, ZkTrouble};
    use crate::notify::render::tests::{ago, crashed, lost};

    /// Computed independently with Python's hashlib from the documented derivation (module
    /// documentation): `hashlib.sha256(b"zkwatcher notification v2\n" + b"channel 5:email\n" +
    /// b"".join(line.encode() + b"\n" for line in sorted(lines))).hexdigest()[:32]`.
    const PINNED: &str = "ea222c460ff26335b4d2d6bb5c8dc6c5";
    /// The same with a reminder of a second agent (`… resolved  after <last_sent>`).
    const PINNED_WITH_REMINDER: &str = "7e1d6d44113288867c917c838502742c";

    fn notice(items: Vec<NoticeItem>) -> Notice {
        Notice::Incidents { items }
    }

    fn key(channel: &str, items: Vec<NoticeItem>) -> String {
        notification_key(channel, &notice(items), SystemTime::now())
    }

    #[test]
    fn the_same_batch_has_the_same_key_whoever_sends_it() {
        let a = crashed("a@h");
        let b = lost("b@h", ago(30));
        let first = key("email", vec![a.clone(), b.clone()]);
        assert_eq!(first.len(), 32);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        // Another replica, later, with its own fresh marker reads: the same records.
        let mut a2 = a.clone();
        a2.marker = None;
        assert_eq!(key("email", vec![a2, b.clone()]), first);
        // Order does not matter.
        assert_eq!(key("email", vec![b.clone(), a.clone()]), first);
        assert_eq!(message_id(&first), format!("<{first}@zkwatcher>"));
    }

    #[test]
    fn the_derivation_is_pinned() {
        // Replicas of different versions must agree: changing the derivation makes a resend
        // across an upgrade look new. Change this vector only on purpose.
        let opened_at = Timestamp(UNIX_EPOCH + Duration::from_millis(1_800_000_000_123));
        let mut item = crashed("flume-nginx@host-a");
        item.opened_at = opened_at;
        item.occurrence.seq = 3;
        item.occurrences = 2;
        assert_eq!(
            notification_key("email", &notice(vec![item.clone()]), UNIX_EPOCH),
            PINNED
        );
        let mut reminder = crashed("kafka-a@host-b");
        reminder.phase = Phase::Reminder;
        reminder.opened_at = opened_at;
        reminder.last_sent = Some(Timestamp(
            UNIX_EPOCH + Duration::from_millis(1_800_000_600_456),
        ));
        assert_eq!(
            notification_key("email", &notice(vec![item, reminder]), UNIX_EPOCH),
            PINNED_WITH_REMINDER
        );
    }

    #[test]
    fn anything_that_makes_another_notification_makes_another_key() {
        let base = crashed("a@h");
        let reference = key("email", vec![base.clone()]);
        let mut variants: Vec<(&str, String)> = Vec::new();
        variants.push(("channel", key("slack-1", vec![base.clone()])));
        let mut v = base.clone();
        v.agent = "b@h".into();
        variants.push(("agent", key("email", vec![v])));
        for phase in [Phase::Resolved, Phase::OpenedAndResolved, Phase::Reminder] {
            let mut v = base.clone();
            v.phase = phase;
            variants.push((phase_name(phase), key("email", vec![v])));
        }
        let mut v = base.clone();
        v.opened_at = Timestamp(base.opened_at.0 + Duration::from_millis(1));
        variants.push(("opened_at", key("email", vec![v])));
        let mut v = base.clone();
        v.occurrences += 1;
        variants.push(("occurrences", key("email", vec![v])));
        let mut v = base.clone();
        v.occurrence.seq += 1;
        variants.push(("occurrence seq", key("email", vec![v])));
        let mut v = base.clone();
        v.resolved_at = Some(ago(1));
        variants.push(("resolved_at", key("email", vec![v])));
        variants.push((
            "one more item",
            key("email", vec![base.clone(), crashed("c@h")]),
        ));
        for (what, k) in &variants {
            assert_ne!(k, &reference, "{what} changes the key");
        }
    }

    #[test]
    fn reminders_differ_by_the_last_acceptance_and_other_messages_are_stable() {
        let mut reminder = crashed("a@h");
        reminder.phase = Phase::Reminder;
        reminder.last_sent = Some(ago(600));
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_000 / 60 * 60);
        let n = notice(vec![reminder.clone()]);
        // A resend of the same reminder, whenever it happens (another minute, another
        // replica): the same key.
        assert_eq!(
            notification_key("email", &n, t),
            notification_key("email", &n, t + Duration::from_secs(3600))
        );
        // The next reminder comes after the channel accepted this one: another key, even
        // within the same minute.
        let mut next = reminder.clone();
        next.last_sent = Some(Timestamp(ago(600).0 + Duration::from_secs(1)));
        assert_ne!(
            notification_key("email", &n, t),
            notification_key("email", &notice(vec![next]), t)
        );
        // Other phases do not depend on the clock.
        let opened = notice(vec![crashed("a@h")]);
        assert_eq!(
            notification_key("email", &opened, t),
            notification_key("email", &opened, t + Duration::from_secs(3600))
        );

        let lost_zk = Notice::ZkLost {
            since: ago(90),
            down_for: Duration::from_secs(90),
            trouble: ZkTrouble::Unreachable(None),
        };
        assert_eq!(
            notification_key("email", &lost_zk, t),
            notification_key("email", &lost_zk, t + Duration::from_secs(30))
        );
        assert_ne!(
            notification_key("email", &Notice::Test, t),
            notification_key("email", &Notice::Test, t + Duration::from_nanos(1))
        );
    }
}

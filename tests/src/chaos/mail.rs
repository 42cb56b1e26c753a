//! What the on-call received, read from the capturing SMTP server: each accepted message becomes
//! a [`Mail`] with the agents it speaks of ([`Item`]), parsed from the body the watcher renders
//! (one block per agent: a summary line `CRASHED chaos-03: …`, then indented fields, among them
//! `when:` = when the incident was opened).

use serde::{Deserialize, Serialize};

use crate::smtp::CapturedMail;

/// Headlines that say an agent went down (the down notices that are scored).
pub const DOWN_HEADLINES: [&str; 5] = ["PROBE RESTART", "CRASHED", "LOST", "FATAL", "RESTARTED"];
/// Other headlines an item can carry.
const OTHER_HEADLINES: [&str; 3] = ["DEGRADED", "RECOVERED", "RESOLVED"];

/// One agent's item in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub agent: String,
    /// The words before the agent id: `CRASHED`, `LOST and RECOVERED`, `STILL DOWN LOST`, …
    pub label: String,
    /// A down notice: a down headline, first announcement (not a reminder, not a recovery).
    pub down: bool,
    /// When the incident was opened (the `when:` field), ms since the epoch.
    pub opened_ms: Option<u64>,
    /// When the exit it reports happened (the `exit:` field of a crash: `… at TIME, generation
    /// N`), ms since the epoch.
    #[serde(default)]
    pub exit_ms: Option<u64>,
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// Position in the capture, from 0.
    pub index: usize,
    /// When the SMTP server accepted it, ms since the epoch.
    pub accepted_ms: u64,
    pub subject: String,
    pub message_id: Option<String>,
    /// About the watcher itself (lost ZooKeeper, back), not about agents.
    pub watcher_notice: bool,
    pub items: Vec<Item>,
}

/// Parses every captured message; `agents` are the ids the suite runs (only those are items).
pub fn parse_all(captured: &[CapturedMail], agents: &[String]) -> Vec<Mail> {
    captured
        .iter()
        .enumerate()
        .map(|(index, m)| parse(index, m, agents))
        .collect()
}

/// Parses one message.
pub fn parse(index: usize, mail: &CapturedMail, agents: &[String]) -> Mail {
    let lines: Vec<&str> = mail.body.lines().collect();
    let mut items = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let Some((label, agent)) = summary(line, agents) else {
            continue;
        };
        let field = |name: &str| {
            lines[i + 1..]
                .iter()
                .take_while(|l| l.starts_with(char::is_whitespace))
                .find_map(|l| l.trim_start().strip_prefix(name).map(str::to_string))
        };
        let opened_ms = field("when:")
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
            .and_then(|t| parse_rfc3339_ms(&t));
        let exit_ms = field("exit:")
            .and_then(|rest| {
                rest.split_once(" at ")
                    .and_then(|(_, t)| t.split([' ', ',']).next().map(str::to_string))
            })
            .and_then(|t| parse_rfc3339_ms(&t));
        if items.iter().any(|it: &Item| it.agent == agent) {
            continue;
        }
        let down =
            !label.starts_with("STILL ") && DOWN_HEADLINES.iter().any(|h| label.starts_with(h));
        items.push(Item {
            agent: agent.to_string(),
            label,
            down,
            opened_ms,
            exit_ms,
        });
    }
    Mail {
        index,
        accepted_ms: parse_rfc3339_ms(&mail.received_at).unwrap_or(0),
        subject: mail.subject.clone(),
        message_id: header(&mail.raw, "message-id"),
        watcher_notice: items.is_empty() && mail.subject.contains("WATCHER "),
        items,
    }
}

/// `(label, agent)` if `line` is an item's summary line about one of `agents`.
fn summary<'a>(line: &str, agents: &'a [String]) -> Option<(String, &'a str)> {
    let rest = line.strip_prefix("STILL DOWN ").unwrap_or(line);
    let rest = rest.strip_prefix("STILL ").unwrap_or(rest);
    let headline = DOWN_HEADLINES
        .iter()
        .chain(OTHER_HEADLINES.iter())
        .find(|h| rest.starts_with(*h))?;
    let mut after = &rest[headline.len()..];
    for tail in [" and RECOVERED", " and RESOLVED"] {
        if let Some(a) = after.strip_prefix(tail) {
            after = a;
        }
    }
    let after = after.strip_prefix(' ')?;
    let agent = agents.iter().find(|id| {
        after
            .strip_prefix(id.as_str())
            .is_some_and(|tail| tail.is_empty() || tail.starts_with([':', ';', ' ']))
    })?;
    let label = line[..line.len() - after.len() - 1].to_string();
    Some((label, agent.as_str()))
}

/// The value of the first header `name` (case-insensitive) of a raw message.
fn header(raw: &str, name: &str) -> Option<String> {
    raw.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Milliseconds since the epoch of an RFC 3339 time (`2026-12-06T22:38:04.123Z`,
/// `2026-12-06T22:38:04.123456+00:00`); `None` if it is not one.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Split the zone off the clock time.
    let (clock, offset_s) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0i64)
    } else {
        let pos = time.rfind(['+', '-'])?;
        let (c, zone) = time.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let h: i64 = h.parse().ok()?;
        let m: i64 = m.parse().ok()?;
        (c, sign * (h * 3600 + m * 60))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.parse().ok()?;
    if t.next().is_some() || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(subject: &str, body: &str) -> CapturedMail {
        CapturedMail {
            received_at: "2026-12-06T22:38:05.250000+00:00".into(),
            mail_from: String::new(),
            rcpt_tos: vec![],
            subject: subject.into(),
            from: String::new(),
            to: String::new(),
            body: body.into(),
            message_id: "<abc@host>".into(),
            html: None,
            tls: false,
            auth_user: None,
            raw: "Subject: x\r\nMessage-ID: <abc@host>\r\n\r\nbody".into(),
        }
    }

    fn ids() -> Vec<String> {
        ["chaos-01", "chaos-1", "chaos-02"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn rfc3339_both_forms() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T22:38:04.123Z"),
            Some(1_796_596_684_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-12-06T23:38:04.123456+01:00"),
            Some(1_796_596_684_123)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn grouped_message_items_labels_and_opened_times() {
        let body = "3 agents: 1 CRASHED, 1 LOST and RECOVERED, 1 RECOVERED\n\n\
            CRASHED chaos-01: killed by SIGKILL after 4s\n  agent:       chaos-01\n  when:        2026-12-06T22:38:04.123Z (1s ago)\n  exit:        killed by signal SIGKILL at 2026-12-06T22:38:04.000Z (1s ago), generation 2\n  stderr:\n    LOST chaos-02 (a tail line)\n\n\
            LOST and RECOVERED chaos-02: last heard 3s ago; running again (generation 4)\n  when:        2026-12-06T22:38:03.000Z (2s ago)\n\n\
            RECOVERED chaos-1: running again (generation 2)\n  when:        2026-12-06T22:37:00.000Z (1m ago)\n\n\
            All agents at a glance:\n  zkwatcher status\n";
        let m = parse(3, &captured("[zkwatchdog] 3 agents: …", body), &ids());
        assert_eq!(m.index, 3);
        assert_eq!(m.accepted_ms, 1_796_596_685_250);
        assert_eq!(m.message_id.as_deref(), Some("<abc@host>"));
        assert!(!m.watcher_notice);
        assert_eq!(m.items[0].exit_ms, Some(1_796_596_684_000));
        assert_eq!(m.items[1].exit_ms, None);
        let got: Vec<(&str, &str, bool, Option<u64>)> = m
            .items
            .iter()
            .map(|i| (i.agent.as_str(), i.label.as_str(), i.down, i.opened_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("chaos-01", "CRASHED", true, Some(1_796_596_684_123)),
                (
                    "chaos-02",
                    "LOST and RECOVERED",
                    true,
                    Some(1_796_596_683_000)
                ),
                ("chaos-1", "RECOVERED", false, Some(1_796_596_620_000)),
            ]
        );
    }

    #[test]
    fn reminders_restarts_fatal_and_watcher_notices() {
        let cases = [
            (
                "STILL DOWN LOST chaos-01: last heard 5m ago",
                "STILL DOWN LOST",
                false,
            ),
            (
                "RESTARTED chaos-01 while unobserved (generation 3 -> 5)",
                "RESTARTED",
                true,
            ),
            ("FATAL chaos-01: gave up after 5 restarts", "FATAL", true),
            (
                "CRASHED and RECOVERED chaos-01: exited with code 3",
                "CRASHED and RECOVERED",
                true,
            ),
            ("RESOLVED chaos-01: stopped deliberately", "RESOLVED", false),
            ("DEGRADED chaos-01: probe", "DEGRADED", false),
        ];
        for (line, label, down) in cases {
            let m = parse(0, &captured("s", line), &ids());
            assert_eq!(m.items.len(), 1, "{line}");
            assert_eq!(m.items[0].label, label, "{line}");
            assert_eq!(m.items[0].down, down, "{line}");
            assert_eq!(m.items[0].agent, "chaos-01", "{line}");
        }
        // An id that is a prefix of another is not confused with it; unknown ids are no items.
        let m = parse(
            0,
            &captured("s", "LOST chaos-1: x\nLOST other-9: y"),
            &ids(),
        );
        assert_eq!(m.items.len(), 1);
        assert_eq!(m.items[0].agent, "chaos-1");
        let w = parse(
            0,
            &captured(
                "[zkwatchdog] WATCHER zkwatcher@h lost ZooKeeper a:1 for 30s: unreachable",
                "The watcher on h has been disconnected",
            ),
            &ids(),
        );
        assert!(w.watcher_notice && w.items.is_empty());
    }
}

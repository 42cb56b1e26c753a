//! What a notice says, in words for the on-call operator: the subject line, a plain-text body
//! (email, Feishu, Slack) and a markdown body (DingTalk). Pure: no I/O, only the clock for
//! "N ago".

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use zkwatchdog::registry::{AgentState, LastExit, Marker, Timestamp};

use crate::incident::{Cause, Resolution};
use crate::notice::{Notice, NoticeItem, Origin, Phase, ZkTrouble};

/// Subject prefix used when the channel has none configured.
pub const DEFAULT_SUBJECT_PREFIX: &str = "[zkwatchdog]";

/// Largest markdown body, in bytes. DingTalk rejects messages over 20 000 bytes; the rest of the
/// JSON document needs some room too.
pub const MARKDOWN_CAP: usize = 18_000;

/// Longest one-agent subject, in bytes (a probe's detail can carry a stack trace; the body has
/// it in full).
const SUBJECT_CAP: usize = 200;

/// Above this many agents the markdown body lists one line per agent.
const MARKDOWN_DETAILED_MAX: usize = 20;

/// Longest stderr line kept in the markdown body.
const MARKDOWN_STDERR_LINE: usize = 300;

/// Largest text body (the email), in bytes. Mail servers refuse messages over their size limit
/// (often 10 MB, sometimes much less); a body this size, even base64-encoded, passes most. The
/// email channel splits a batch whose agents cannot all be named within it, and halves a batch
/// the server refuses as too big (`email.rs`).
pub const TEXT_CAP: usize = 1_000_000;

/// At most this many agents are described in full in the text body; the others get one line each
/// and, once one-liners would crowd out the rest, only their ids.
const TEXT_DETAILED_MAX: usize = 20;

/// The full descriptions stop once the body is this long (long stderr tails).
const TEXT_DETAIL_BUDGET: usize = 200_000;

/// One-line entries stop once the body is this long; the remaining agents are named by id.
const TEXT_COMPACT_BUDGET: usize = 500_000;

/// Room kept at the end of the text body for its closing lines.
const TEXT_CLOSING_ROOM: usize = 4_096;

/// Longest stderr or probe-detail line in the text body; longer lines end in "…".
const TEXT_LINE_CAP: usize = 500;

/// Most stderr or probe-detail lines per agent in the text body (the last ones of a tail).
const TEXT_TAIL_LINES: usize = 40;

/// Longest field value or one-line entry in the text body.
const TEXT_FIELD_CAP: usize = 1_000;

/// One notice, formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: `[zkwatchdog] CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m`.
    pub subject: String,
    /// Plain text listing every agent in full, with how to inspect the registry.
    pub text: String,
    /// Markdown for DingTalk, at most [`MARKDOWN_CAP`] bytes.
    pub markdown: String,
    /// How many agents of the notice the text does not name, because naming them all would pass
    /// [`TEXT_CAP`] (0 in all but giant batches of very long ids).
    pub unlisted: usize,
}

/// Formats `notice`. `subject_prefix` starts the subject (`[zkwatchdog]`; may be empty).
pub fn render(notice: &Notice, origin: &Origin, subject_prefix: &str) -> Rendered {
    render_with(notice, origin, subject_prefix, TEXT_DETAILED_MAX)
}

/// [`render`] with every agent on one line in the text body: for a message the mail server
/// refused as too big even for one agent.
pub(crate) fn render_brief(notice: &Notice, origin: &Origin, subject_prefix: &str) -> Rendered {
    render_with(notice, origin, subject_prefix, 0)
}

fn render_with(
    notice: &Notice,
    origin: &Origin,
    subject_prefix: &str,
    detailed: usize,
) -> Rendered {
    let now = SystemTime::now();
    let headline = headline(notice, origin);
    let subject = match subject_prefix.trim() {
        "" => headline,
        prefix => format!("{prefix} {headline}"),
    };
    let (text, unlisted) = text_body(notice, origin, now, detailed);
    let markdown = markdown_body(notice, origin, &subject, now);
    Rendered {
        subject,
        text,
        markdown,
        unlisted,
    }
}

/// The subject without its prefix.
fn headline(notice: &Notice, origin: &Origin) -> String {
    let watcher = format!("zkwatcher@{}", origin.watcher_host);
    match notice {
        Notice::Incidents { items } => match items.as_slice() {
            [] => "no incidents".to_string(),
            [item] => truncate_bytes(&item_summary(item), SUBJECT_CAP),
            items => format!("{} agents: {}", items.len(), label_counts(items)),
        },
        Notice::ZkLost {
            down_for, trouble, ..
        } => format!(
            "WATCHER {watcher} lost ZooKeeper {} for {}: {}",
            origin.zk_hosts,
            humanize(*down_for),
            trouble.summary()
        ),
        Notice::ZkBack { down_for, .. } => format!(
            "WATCHER {watcher} reconnected to ZooKeeper {} after {}",
            origin.zk_hosts,
            humanize(*down_for)
        ),
        Notice::Test => format!("TEST from {watcher}"),
    }
}

/// One line saying what happened to one agent, without the subject prefix:
/// `CRASHED x@h: exited with code 1 after 4s`.
pub(crate) fn item_summary(item: &NoticeItem) -> String {
    let agent = &item.agent;
    let cause = cause_tail(&item.cause, item.marker.as_ref());
    let resolution = || resolution_tail(item);
    match item.phase {
        Phase::Opened => format!("{} {agent}{cause}", item.cause.headline()),
        Phase::Reminder => format!("{} {agent}{cause}", label(item)),
        Phase::OpenedAndResolved => format!("{} {agent}{cause}; {}", label(item), resolution()),
        Phase::Resolved => format!("{} {agent}: {}", label(item), resolution()),
    }
}

/// The word(s) that classify an item in subjects and counts.
fn label(item: &NoticeItem) -> String {
    let headline = item.cause.headline();
    let resolved = match item.resolution {
        Some(Resolution::Stopped) => "RESOLVED",
        Some(_) => "RECOVERED",
        None => "RESOLVED",
    };
    match item.phase {
        Phase::Opened => headline.to_string(),
        Phase::Reminder if matches!(item.cause, Cause::Degraded { .. }) => {
            "STILL DEGRADED".to_string()
        }
        Phase::Reminder => format!("STILL DOWN {headline}"),
        Phase::OpenedAndResolved => format!("{headline} and {resolved}"),
        Phase::Resolved => resolved.to_string(),
    }
}

/// Sort key: the worst news first.
fn label_rank(item: &NoticeItem) -> u8 {
    let cause = match item.cause.headline() {
        "FATAL" => 0,
        "CRASHED" => 1,
        "LOST" => 2,
        "RESTARTED" => 3,
        _ => 4,
    };
    match item.phase {
        Phase::Opened => cause,
        Phase::Reminder => 10 + cause,
        Phase::OpenedAndResolved => 20 + cause,
        Phase::Resolved => 30,
    }
}

/// `2 CRASHED, 1 RECOVERED`.
fn label_counts(items: &[NoticeItem]) -> String {
    let mut counts: Vec<(u8, String, usize)> = Vec::new();
    for item in items {
        let label = label(item);
        match counts.iter_mut().find(|(_, l, _)| *l == label) {
            Some((_, _, n)) => *n += 1,
            None => counts.push((label_rank(item), label, 1)),
        }
    }
    counts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let parts: Vec<String> = counts.iter().map(|(_, l, n)| format!("{n} {l}")).collect();
    parts.join(", ")
}

/// What follows the agent id in a summary: `: killed by SIGKILL after 3h12m`.
fn cause_tail(cause: &Cause, marker: Option<&Marker>) -> String {
    match cause {
        // The launcher put the agent in the background: say so first, the fix is in the body.
        Cause::Crashed { exit, .. } if exit.daemonized.is_some() => format!(
            ": its command daemonized ({} after {}, leaving processes running); run it in the \
             foreground",
            exit_status(exit),
            humanize(Duration::from_millis(exit.uptime_ms))
        ),
        Cause::Crashed {
            exit,
            state: AgentState::Fatal,
            ..
        } => {
            let last = match (&exit.signal, exit.code) {
                (Some(signal), _) => format!("last killed by {signal}"),
                (None, Some(code)) => format!("last exit code {code}"),
                (None, None) => "last exit unknown".to_string(),
            };
            match marker {
                Some(m) => format!(": gave up after {} restarts, {last}", m.restarts),
                None => format!(": gave up restarting, {last}"),
            }
        }
        Cause::Crashed { exit, .. } => format!(": {}", exit_phrase(exit)),
        Cause::Lost {
            state, last_update, ..
        } => format!(
            ": no contact with its watchdog since {} (state {})",
            clock(*last_update),
            state.as_str()
        ),
        Cause::Bounced {
            from_generation,
            to_generation,
            ..
        } => format!(" while unobserved (generation {from_generation} -> {to_generation})"),
        Cause::Degraded { detail } => format!(": {}", one_line(detail)),
    }
}

/// `running again (generation 7) after 12s down`, `stopped deliberately`.
fn resolution_tail(item: &NoticeItem) -> String {
    let down = match (item.phase, item.resolved_at) {
        (Phase::Resolved, Some(at)) => Some(duration_between(item.opened_at, at)),
        _ => None,
    };
    match (&item.resolution, down) {
        (Some(Resolution::Recovered { generation }), Some(down)) => format!(
            "running again (generation {generation}) after {} down",
            humanize(down)
        ),
        (Some(Resolution::Recovered { generation }), None) => {
            format!("running again (generation {generation})")
        }
        (Some(Resolution::Healthy), Some(down)) => {
            format!("healthy again after {} degraded", humanize(down))
        }
        (Some(Resolution::Healthy), None) => "healthy again".to_string(),
        (Some(Resolution::Stopped), _) => "stopped deliberately".to_string(),
        (None, _) => "resolved".to_string(),
    }
}

/// `killed by SIGKILL after 3h12m`, `exited with code 1 after 4s`; for a child the watchdog
/// restarted because its probe kept failing, that reason first.
fn exit_phrase(exit: &LastExit) -> String {
    let uptime = humanize(Duration::from_millis(exit.uptime_ms));
    if let Some(why) = &exit.probe_restart {
        let how = match (&exit.signal, exit.code) {
            (Some(signal), _) => format!("stopped with {signal}"),
            (None, Some(code)) => format!("exited with code {code}"),
            (None, None) => "stopped".to_string(),
        };
        return format!(
            "restarted by its watchdog after failed health probes ({}), {how} after {uptime}",
            one_line(why)
        );
    }
    match (&exit.signal, exit.code) {
        (Some(signal), _) => format!("killed by {signal} after {uptime}"),
        (None, Some(code)) => format!("exited with code {code} after {uptime}"),
        (None, None) => format!("exited after {uptime}"),
    }
}

/// `signal SIGKILL` or `code 1`.
fn exit_status(exit: &LastExit) -> String {
    match (&exit.signal, exit.code) {
        (Some(signal), _) => format!("killed by signal {signal}"),
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "unknown".to_string(),
    }
}

/// What the cause means, in a sentence.
fn explanation(cause: &Cause) -> String {
    match cause {
        Cause::Crashed { exit, .. } if exit.daemonized.is_some() => format!(
            "{}; it stays down until someone acts",
            one_line(exit.daemonized.as_deref().unwrap_or_default())
        ),
        Cause::Crashed { exit, state, .. } => {
            let next = match state {
                AgentState::Restarting => "the watchdog is restarting it".to_string(),
                AgentState::Backoff => {
                    "the watchdog waits before restarting it (crash loop backoff)".to_string()
                }
                AgentState::Fatal => {
                    "the watchdog gave up restarting it: it stays down until someone acts"
                        .to_string()
                }
                other => format!("the watchdog reports state {}", other.as_str()),
            };
            let how = match (&exit.signal, exit.code) {
                _ if exit.probe_restart.is_some() => "was ",
                (Some(_), _) => "was ",
                _ => "",
            };
            format!("the agent's process {how}{}; {next}", exit_phrase(exit))
        }
        Cause::Lost { generation, .. } => format!(
            "the watchdog's ZooKeeper session expired without an exit record for generation \
             {generation} (host down, watchdog killed or frozen, or network partition): the \
             agent may still be running, or may have exited or been given up on while its \
             watchdog could not reach ZooKeeper"
        ),
        Cause::Bounced {
            from_generation,
            to_generation,
            ..
        } => format!(
            "the agent restarted while no watcher was looking (generation {from_generation} \
             -> {to_generation})"
        ),
        Cause::Degraded { detail } => {
            format!(
                "the agent runs but its health probe says: {}",
                one_line(detail.lines().next().unwrap_or_default())
            )
        }
    }
}

/// The exit the item can tell about, and whether it belongs to this incident.
fn exit_of(item: &NoticeItem) -> Option<(&LastExit, bool)> {
    match &item.cause {
        Cause::Crashed { exit, .. } => Some((exit, true)),
        Cause::Bounced {
            exit: Some(exit), ..
        } => Some((exit, true)),
        Cause::Lost { .. } => item
            .marker
            .as_ref()
            .and_then(|m| m.last_exit.as_ref())
            .map(|exit| (exit, false)),
        _ => None,
    }
}

/// The text body and how many agents it does not name.
fn text_body(
    notice: &Notice,
    origin: &Origin,
    now: SystemTime,
    detailed: usize,
) -> (String, usize) {
    let mut out = String::new();
    let mut unlisted = 0;
    let watcher = &origin.watcher_host;
    match notice {
        Notice::Incidents { items } => {
            if items.len() > 1 {
                let _ = writeln!(out, "{} agents: {}\n", items.len(), label_counts(items));
            }
            unlisted = agent_list(&mut out, items, origin, now, detailed);
            let _ = writeln!(out, "All agents at a glance:");
            let _ = writeln!(out, "  {}", status_command(origin));
        }
        Notice::ZkLost {
            since,
            down_for,
            trouble,
        } => {
            let hosts = &origin.zk_hosts;
            let down_for = humanize(*down_for);
            let (state, check) = match trouble {
                ZkTrouble::Unreachable(_) => (
                    format!("has been disconnected from ZooKeeper {hosts} for {down_for}"),
                    format!("Check the ZooKeeper ensemble and the network from {watcher}:"),
                ),
                ZkTrouble::Tls(_) => (
                    format!(
                        "has been unable to connect to ZooKeeper {hosts} for {down_for}: the \
                         TLS handshake fails"
                    ),
                    format!(
                        "Check the watcher's [zk-tls] settings on {watcher} against the servers' \
                         certificates, as the cause says:"
                    ),
                ),
                ZkTrouble::Refused(_) => (
                    format!(
                        "has been unable to work with ZooKeeper {hosts} for {down_for}: the \
                         servers answer, but refuse this watcher's credentials"
                    ),
                    format!(
                        "Check the watcher's [zk-auth] user and password on {watcher} and the \
                         registry's ACLs, as the cause says (the servers are reachable):"
                    ),
                ),
            };
            let _ = writeln!(out, "The watcher on {watcher} {state} (since {since}).\n");
            if let Some(reason) = trouble.reason() {
                let _ = writeln!(out, "Cause: {reason}\n");
            }
            let _ = writeln!(
                out,
                "Until it is back it draws no conclusions about agents: crashes and lost agents \
                 are detected once it works with ZooKeeper again and reconciles the registry, \
                 not before. Another watcher replica that works, if any, keeps alerting.\n"
            );
            let _ = writeln!(out, "{check}");
            let _ = writeln!(out, "  {}", status_command(origin));
        }
        Notice::ZkBack { since, down_for } => {
            let _ = writeln!(
                out,
                "The watcher on {watcher} is connected to ZooKeeper {} again after {} \
                 (disconnected since {since}).\n",
                origin.zk_hosts,
                humanize(*down_for)
            );
            let _ = writeln!(
                out,
                "It reconciles the registry now: agents that went down meanwhile are reported \
                 in their own messages.\n"
            );
            let _ = writeln!(out, "  {}", status_command(origin));
        }
        Notice::Test => {
            let _ = writeln!(
                out,
                "This is a test message from zkwatcher on {watcher} (zkwatcher test-notify). \
                 If you can read it, this channel works.\n"
            );
            let _ = writeln!(out, "Registry: {} {}", origin.zk_hosts, origin.root);
            let _ = writeln!(out, "  {}", status_command(origin));
        }
    }
    let _ = write!(out, "\n-- \nsent by zkwatcher on {watcher}\n");
    (out, unlisted)
}

/// The agents of a grouped message, bounded by [`TEXT_CAP`]: the first `detailed` in full
/// (within [`TEXT_DETAIL_BUDGET`]), then one line each while that leaves room to name the rest,
/// then the rest by id, one a line. Returns how many agents it could not name at all.
fn agent_list(
    out: &mut String,
    items: &[NoticeItem],
    origin: &Origin,
    now: SystemTime,
    detailed: usize,
) -> usize {
    let limit = TEXT_CAP - TEXT_CLOSING_ROOM;
    let id_line = |item: &NoticeItem| item.agent.len() + 3;
    // ids_after[i]: bytes that naming items[i..] by id takes.
    let mut ids_after = vec![0; items.len() + 1];
    for (i, item) in items.iter().enumerate().rev() {
        ids_after[i] = ids_after[i + 1] + id_line(item);
    }
    let mut index = 0;
    while index < items.len().min(detailed) {
        let mut block = String::new();
        agent_block(&mut block, &items[index], origin, now);
        block.push('\n');
        if index > 0 && out.len() + block.len() > TEXT_DETAIL_BUDGET {
            break;
        }
        out.push_str(&block);
        index += 1;
    }
    let detailed_end = index;
    if index < items.len() && index > 0 {
        let _ = writeln!(out, "The other {} agents:", items.len() - index);
    }
    while index < items.len() {
        let line = format!(
            "- {}\n",
            truncate_bytes(&compact_line(&items[index]), TEXT_FIELD_CAP)
        );
        let end = out.len() + line.len();
        if end > TEXT_COMPACT_BUDGET || end + ids_after[index + 1] > limit {
            break;
        }
        out.push_str(&line);
        index += 1;
    }
    if index < items.len() {
        let _ = writeln!(
            out,
            "\n{} more agents, by id (details: zkwatcher status):",
            items.len() - index
        );
        while index < items.len() && out.len() + id_line(&items[index]) <= limit {
            let _ = writeln!(out, "  {}", items[index].agent);
            index += 1;
        }
    }
    let unlisted = items.len() - index;
    if detailed_end == items.len() {
        return unlisted;
    }
    if unlisted > 0 {
        let _ = writeln!(
            out,
            "… and {unlisted} more agents not named here: the message reached its size limit"
        );
    }
    out.push('\n');
    unlisted
}

/// The last `max` of `lines`, each cut to [`TEXT_LINE_CAP`], and how many were left out.
fn last_lines<'a>(lines: impl Iterator<Item = &'a str>, max: usize) -> (Vec<String>, usize) {
    let all: Vec<&str> = lines.collect();
    let skipped = all.len().saturating_sub(max);
    let kept = all[skipped..]
        .iter()
        .map(|l| truncate_bytes(l.trim_end(), TEXT_LINE_CAP))
        .collect();
    (kept, skipped)
}

/// The full description of one agent's item, bounded: long lines are cut and long tails keep
/// their last lines.
fn agent_block(out: &mut String, item: &NoticeItem, origin: &Origin, now: SystemTime) {
    let _ = writeln!(
        out,
        "{}",
        truncate_bytes(&item_summary(item), TEXT_FIELD_CAP)
    );
    let mut field = |name: &str, value: String| {
        let value = truncate_bytes(&value, TEXT_FIELD_CAP);
        let _ = writeln!(out, "  {:<12} {value}", format!("{name}:"));
    };
    field("agent", item.agent.clone());
    match &item.marker {
        Some(m) => {
            field("host", m.host.clone());
            field("kind", m.kind.as_str().to_string());
            if let Some(conflict) = &m.conflict {
                field("CONFLICT", conflict_line(conflict));
            }
        }
        None => field(
            "marker",
            "gone: the agent was stopped or deregistered since".to_string(),
        ),
    }
    field("severity", item.cause.severity().as_str().to_string());
    field("happened", explanation(&item.cause));
    field("when", stamp(item.opened_at, now));
    if let Cause::Lost { last_update, .. } = &item.cause {
        field("last heard", stamp(*last_update, now));
    }
    let exit = exit_of(item);
    if let Some((exit, current)) = exit {
        let which = if current { "exit" } else { "earlier exit" };
        field(
            which,
            format!(
                "{} at {}, generation {}",
                exit_status(exit),
                stamp(exit.at, now),
                exit.generation
            ),
        );
        field("uptime", humanize(Duration::from_millis(exit.uptime_ms)));
    }
    if let Some(m) = &item.marker {
        field("restarts", m.restarts.to_string());
        field("generation", m.generation.to_string());
        field(
            "state now",
            format!(
                "{} (marker updated {})",
                m.state.as_str(),
                stamp(m.updated_at, now)
            ),
        );
    }
    if item.occurrences > 1 {
        field(
            "occurrences",
            format!("{} while the incident was open", item.occurrences),
        );
    }
    if let Some(at) = item.resolved_at.filter(|_| item.phase != Phase::Opened) {
        field(
            "back",
            format!("{}: {}", stamp(at, now), resolution_tail(item)),
        );
    }
    if let Cause::Degraded { detail } = &item.cause {
        if detail.lines().nth(1).is_some() {
            let (lines, skipped) = last_lines(detail.lines(), TEXT_TAIL_LINES);
            let _ = writeln!(out, "  health probe detail:");
            if skipped > 0 {
                let _ = writeln!(out, "      … {skipped} lines left out");
            }
            for line in lines {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    if let Some((exit, _)) = exit.filter(|(e, _)| !e.stderr_tail.is_empty()) {
        let (lines, skipped) =
            last_lines(exit.stderr_tail.iter().map(String::as_str), TEXT_TAIL_LINES);
        let count = match skipped {
            0 => format!("last {} lines", lines.len()),
            _ => format!("last {} of {} lines", lines.len(), exit.stderr_tail.len()),
        };
        let _ = writeln!(
            out,
            "  stderr tail (generation {}, {count}):",
            exit.generation
        );
        for line in lines {
            let _ = writeln!(out, "      {line}");
        }
    }
    let _ = writeln!(out, "  inspect:");
    for command in zkcli_commands(origin, &item.agent) {
        let _ = writeln!(out, "      {command}");
    }
}

fn markdown_body(notice: &Notice, origin: &Origin, subject: &str, now: SystemTime) -> String {
    let footer = format!("\n---\nsent by zkwatcher on {}\n", origin.watcher_host);
    let mut out = format!("#### {}\n\n", subject);
    let Notice::Incidents { items } = notice else {
        // The watcher's own messages are short: the text body, as paragraphs.
        let (text, _) = text_body(notice, origin, now, 0);
        let body = text.split("\n-- \n").next().unwrap_or_default();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let _ = write!(out, "{}\n\n", line.trim());
        }
        out.push_str(&footer);
        return truncate_bytes(&out, MARKDOWN_CAP);
    };
    let detailed = items.len() <= MARKDOWN_DETAILED_MAX;
    let closing = format!(
        "\n{}\n\n`{}`\n{footer}",
        "All agents at a glance:",
        status_command(origin)
    );
    // Room kept for the "and N more" line.
    let budget = MARKDOWN_CAP.saturating_sub(closing.len() + 120);
    for (index, item) in items.iter().enumerate() {
        let block = if detailed {
            markdown_block(item, origin, now)
        } else {
            format!("- {}\n", compact_line(item))
        };
        if out.len() + block.len() > budget {
            let _ = write!(
                out,
                "\n… and {} more (the email lists every agent)\n",
                items.len() - index
            );
            break;
        }
        out.push_str(&block);
    }
    out.push_str(&closing);
    truncate_bytes(&out, MARKDOWN_CAP)
}

fn markdown_block(item: &NoticeItem, origin: &Origin, now: SystemTime) -> String {
    let mut out = format!("**{}**\n\n", item_summary(item));
    let mut line = |text: String| {
        let _ = writeln!(out, "- {}", &text);
    };
    match &item.marker {
        Some(m) => line(format!("host {}, kind {}", m.host, m.kind.as_str())),
        None => line("marker gone: the agent was stopped or deregistered since".into()),
    }
    if let Some(conflict) = item.marker.as_ref().and_then(|m| m.conflict.as_deref()) {
        line(format!(
            "**CONFLICT**: {}",
            truncate_bytes(&conflict_line(conflict), MARKDOWN_STDERR_LINE)
        ));
    }
    line(format!(
        "severity {}, when: {}",
        item.cause.severity().as_str(),
        stamp(item.opened_at, now)
    ));
    if let Cause::Degraded { detail } = &item.cause {
        for l in detail.lines().skip(1) {
            line(format!(
                "probe: {}",
                truncate_bytes(l.trim(), MARKDOWN_STDERR_LINE)
            ));
        }
    }
    if let Cause::Crashed { exit, .. } = &item.cause {
        if let Some(why) = &exit.daemonized {
            line(truncate_bytes(&one_line(why), MARKDOWN_STDERR_LINE * 2));
        }
    }
    let exit = exit_of(item);
    if let Some((exit, current)) = exit {
        line(format!(
            "{}: {}, uptime {}",
            if current { "exit" } else { "earlier exit" },
            exit_status(exit),
            humanize(Duration::from_millis(exit.uptime_ms))
        ));
    }
    if let Some(m) = &item.marker {
        line(format!(
            "state {}, restarts {}, generation {}",
            m.state.as_str(),
            m.restarts,
            m.generation
        ));
    }
    if item.occurrences > 1 {
        line(format!("occurrences: {}", item.occurrences));
    }
    if let Some(at) = item.resolved_at.filter(|_| item.phase != Phase::Opened) {
        line(format!(
            "back: {}: {}",
            stamp(at, now),
            resolution_tail(item)
        ));
    }
    if let Some((exit, _)) = exit.filter(|(e, _)| !e.stderr_tail.is_empty()) {
        out.push_str("- stderr tail:\n\n");
        for l in &exit.stderr_tail {
            let l = truncate_bytes(l.trim_end(), MARKDOWN_STDERR_LINE);
            let _ = writeln!(out, "> {l}  ");
        }
        out.push('\n');
    }
    if let Some(command) = zkcli_commands(origin, &item.agent).first() {
        let _ = write!(out, "\n`{command}`\n\n");
    }
    out
}

/// `cause` bounded as the text body bounds it, for machine-readable copies (the generic
/// webhook's items): a stderr tail keeps its last [`TEXT_TAIL_LINES`] lines, after one saying how
/// many earlier ones were left out; a health probe's detail keeps its first line and its last
/// [`TEXT_TAIL_LINES`]; every line is cut to [`TEXT_LINE_CAP`] bytes, other texts to
/// [`TEXT_FIELD_CAP`].
pub(crate) fn bounded_cause(cause: &Cause) -> Cause {
    let mut cause = cause.clone();
    match &mut cause {
        Cause::Crashed { exit, .. }
        | Cause::Bounced {
            exit: Some(exit), ..
        } => {
            exit.stderr_tail = shown_tail(&exit.stderr_tail);
            for text in [
                &mut exit.signal,
                &mut exit.probe_restart,
                &mut exit.daemonized,
            ]
            .into_iter()
            .flatten()
            {
                *text = truncate_bytes(text, TEXT_FIELD_CAP);
            }
        }
        Cause::Degraded { detail } => {
            let first = detail.lines().next().unwrap_or_default();
            let (rest, skipped) = last_lines(detail.lines().skip(1), TEXT_TAIL_LINES);
            let mut lines = vec![truncate_bytes(first, TEXT_LINE_CAP)];
            if skipped > 0 {
                lines.push(format!("… {skipped} lines left out"));
            }
            lines.extend(rest);
            *detail = lines.join("\n");
        }
        Cause::Bounced { exit: None, .. } | Cause::Lost { .. } => {}
    }
    cause
}

/// A stderr tail as far as any notice shows it: at most [`TEXT_TAIL_LINES`] lines, each cut to
/// [`TEXT_LINE_CAP`] bytes, the newest ones, after one saying how many earlier ones were left
/// out. The watcher keeps no more than this of a tail it reads (an incident copies it, and a
/// mass outage writes hundreds of incidents at once); applied again, it changes nothing.
pub(crate) fn shown_tail(tail: &[String]) -> Vec<String> {
    if tail.len() <= TEXT_TAIL_LINES {
        let (lines, _) = last_lines(tail.iter().map(String::as_str), TEXT_TAIL_LINES);
        return lines;
    }
    let (mut lines, skipped) = last_lines(tail.iter().map(String::as_str), TEXT_TAIL_LINES - 1);
    lines.insert(0, format!("… {skipped} earlier lines left out"));
    lines
}

/// [`item_summary`] cut to [`TEXT_FIELD_CAP`] bytes.
pub(crate) fn bounded_summary(item: &NoticeItem) -> String {
    truncate_bytes(&item_summary(item), TEXT_FIELD_CAP)
}

/// The marker's `conflict` as one line, saying what it most likely means.
fn conflict_line(conflict: &str) -> String {
    format!(
        "{} (another watchdog configured with the same agent id? this agent's reports cannot \
         be trusted until it is fixed)",
        one_line(conflict)
    )
}

/// One line per agent, for long lists: `CRASHED x@h: exited with code 1 after 4s (host-a,
/// restarting)`.
pub(crate) fn compact_line(item: &NoticeItem) -> String {
    match &item.marker {
        Some(m) => format!(
            "{} (host {}, now {}{})",
            item_summary(item),
            m.host,
            m.state.as_str(),
            if m.conflict.is_some() {
                ", agent id CONFLICT"
            } else {
                ""
            }
        ),
        None => format!("{} (marker gone)", item_summary(item)),
    }
}

/// Plain text for chat webhooks (Feishu, Slack): the subject, `separator` and the full text when
/// that fits in `cap` bytes, otherwise the subject and one line per agent, cut at `cap`.
pub(crate) fn chat_text(
    notice: &Notice,
    origin: &Origin,
    rendered: &Rendered,
    separator: &str,
    cap: usize,
) -> String {
    let full = format!("{}{separator}{}", rendered.subject, rendered.text);
    if full.len() <= cap {
        return full;
    }
    let Notice::Incidents { items } = notice else {
        return truncate_bytes(&full, cap);
    };
    let footer = format!(
        "\n{}\nsent by zkwatcher on {}\n",
        status_command(origin),
        origin.watcher_host
    );
    let budget = cap.saturating_sub(footer.len() + 120);
    let mut out = format!("{}{separator}", rendered.subject);
    for (index, item) in items.iter().enumerate() {
        let line = format!("- {}\n", compact_line(item));
        if out.len() + line.len() > budget {
            let _ = writeln!(
                out,
                "… and {} more (the email lists every agent)",
                items.len() - index
            );
            break;
        }
        out.push_str(&line);
    }
    out.push_str(&footer);
    truncate_bytes(&out, cap)
}

/// `zkCli.sh` commands that show the agent's marker and liveness node.
fn zkcli_commands(origin: &Origin, agent: &str) -> [String; 2] {
    let root = origin.root.trim_end_matches('/');
    let server = shell_quote(&origin.zk_hosts);
    ["agents", "live"].map(|dir| {
        format!(
            "zkCli.sh -server {server} get {}",
            shell_quote(&format!("{root}/{dir}/{agent}"))
        )
    })
}

fn status_command(origin: &Origin) -> String {
    format!(
        "zkwatcher status --zk {} --root {}",
        shell_quote(&origin.zk_hosts),
        shell_quote(&origin.root)
    )
}

/// Quotes `s` for a POSIX shell when it holds anything beyond the usual id characters.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `s` on one line, runs of whitespace as one space: record text must not add lines (or forge
/// rows of a table) where one line is shown.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `2026-11-22T03:04:05.678Z (12m ago)`.
fn stamp(at: Timestamp, now: SystemTime) -> String {
    match now.duration_since(at.0) {
        Ok(ago) if ago >= Duration::from_secs(1) => format!("{at} ({} ago)", humanize(ago)),
        Ok(_) => format!("{at} (just now)"),
        Err(_) => at.to_string(),
    }
}

/// `03:04:05Z` for instants within the last 20 hours, the full date otherwise.
fn clock(at: Timestamp) -> String {
    let full = humantime::format_rfc3339_seconds(at.0).to_string();
    if at.elapsed() < Duration::from_secs(20 * 3600) {
        full.split_once('T')
            .map(|(_, time)| time.to_string())
            .unwrap_or(full)
    } else {
        full
    }
}

fn duration_between(from: Timestamp, to: Timestamp) -> Duration {
    to.0.duration_since(from.0).unwrap_or_default()
}

/// `850ms`, `4s`, `1m05s`, `2m`, `3h12m`, `2d4h`.
pub fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, mins, s) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, 0) => format!("{m}m"),
        (0, 0, m, s) => format!("{m}m{s:02}s"),
        (0, h, 0, _) => format!("{h}h"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, 0, _, _) => format!("{d}d"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use zkwatchdog::registry::AgentKind;

    use super::*;
    use crate::notify::settings::{EmailSettings, EmailTls, Secret, WebhookKind, WebhookSettings};

    #[test]
    fn a_tail_is_kept_as_notices_show_it_and_keeping_it_again_changes_nothing() {
        let lines = |n: usize| -> Vec<String> { (0..n).map(|i| format!("line {i}")).collect() };
        let long = "x".repeat(TEXT_LINE_CAP + 10);
        let cases: Vec<(Vec<String>, Vec<String>)> = vec![
            (vec![], vec![]),
            (lines(3), lines(3)),
            (lines(TEXT_TAIL_LINES), lines(TEXT_TAIL_LINES)),
            (
                lines(TEXT_TAIL_LINES + 1),
                std::iter::once("… 2 earlier lines left out".to_string())
                    .chain(lines(TEXT_TAIL_LINES + 1).into_iter().skip(2))
                    .collect(),
            ),
            (
                lines(1000),
                std::iter::once("… 961 earlier lines left out".to_string())
                    .chain(lines(1000).into_iter().skip(961))
                    .collect(),
            ),
            (
                vec![long.clone()],
                vec![truncate_bytes(&long, TEXT_LINE_CAP)],
            ),
        ];
        for (tail, shown) in cases {
            let kept = shown_tail(&tail);
            assert_eq!(kept, shown, "{} lines", tail.len());
            assert!(kept.len() <= TEXT_TAIL_LINES);
            assert_eq!(shown_tail(&kept), kept, "again, {} lines", tail.len());
        }
    }

    pub(crate) fn origin() -> Origin {
        Origin {
            zk_hosts: "zk1:2181,zk2:2181".into(),
            root: "/zkwatchdog".into(),
            watcher_host: "w1".into(),
        }
    }

    pub(crate) fn ago(secs: u64) -> Timestamp {
        Timestamp(SystemTime::now() - Duration::from_secs(secs))
    }

    pub(crate) fn exit(code: Option<i32>, signal: Option<&str>, uptime_ms: u64) -> LastExit {
        LastExit {
            at: ago(60),
            generation: 5,
            code,
            signal: signal.map(str::to_string),
            uptime_ms,
            stderr_tail: vec![
                "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space".into(),
                "\tat org.apache.flume.channel.MemoryChannel.put".into(),
            ],
            probe_restart: None,
            reload: false,
            daemonized: None,
        }
    }

    pub(crate) fn marker(id: &str, state: AgentState) -> Marker {
        Marker {
            v: 1,
            id: id.into(),
            name: id.split('@').next().unwrap_or(id).into(),
            kind: AgentKind::Flume,
            host: id.split('@').nth(1).unwrap_or("h").into(),
            command: vec!["flume-ng".into(), "agent".into()],
            labels: BTreeMap::new(),
            version: "0.1.0".into(),
            registered_at: ago(86_400),
            updated_at: ago(60),
            state,
            generation: 5,
            restarts: 4,
            last_exit: None,
            session_id: "0x1".into(),
            conflict: None,
        }
    }

    pub(crate) fn item(agent: &str, phase: Phase, cause: Cause) -> NoticeItem {
        NoticeItem {
            agent: agent.into(),
            phase,
            occurrence: crate::incident::Occurrence {
                opened_at: ago(120),
                seq: 0,
            },
            cause,
            occurrences: 1,
            opened_at: ago(120),
            resolved_at: None,
            resolution: None,
            last_sent: None,
            marker: Some(marker(agent, AgentState::Restarting)),
        }
    }

    pub(crate) fn crashed(agent: &str) -> NoticeItem {
        item(
            agent,
            Phase::Opened,
            Cause::Crashed {
                generation: 5,
                exit: exit(None, Some("SIGKILL"), (3 * 3600 + 12 * 60) * 1000 + 7_000),
                state: AgentState::Restarting,
            },
        )
    }

    pub(crate) fn lost(agent: &str, last_update: Timestamp) -> NoticeItem {
        item(
            agent,
            Phase::Opened,
            Cause::Lost {
                generation: 5,
                state: AgentState::Running,
                last_update,
            },
        )
    }

    fn incidents(items: Vec<NoticeItem>) -> Notice {
        Notice::Incidents { items }
    }

    fn subject(items: Vec<NoticeItem>) -> String {
        render(&incidents(items), &origin(), "[zkwatchdog]").subject
    }

    #[test]
    fn humanize_is_short() {
        let cases = [
            (Duration::from_millis(850), "850ms"),
            (Duration::from_millis(4_900), "4s"),
            (Duration::from_secs(65), "1m05s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3 * 3600 + 12 * 60 + 9), "3h12m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(2 * 86_400 + 4 * 3600 + 5), "2d4h"),
        ];
        for (d, want) in cases {
            assert_eq!(humanize(d), want, "{d:?}");
        }
    }

    #[test]
    fn subjects_of_single_agents() {
        assert_eq!(
            subject(vec![crashed("flume-nginx@host-a")]),
            "[zkwatchdog] CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m"
        );

        let code = item(
            "x@h",
            Phase::Opened,
            Cause::Crashed {
                generation: 2,
                exit: exit(Some(1), None, 4_321),
                state: AgentState::Backoff,
            },
        );
        assert_eq!(
            subject(vec![code]),
            "[zkwatchdog] CRASHED x@h: exited with code 1 after 4s"
        );

        let last = ago(300);
        let time = humantime::format_rfc3339_seconds(last.0).to_string();
        let time = &time[11..];
        assert_eq!(
            subject(vec![lost("x@h", last)]),
            format!(
                "[zkwatchdog] LOST x@h: no contact with its watchdog since {time} (state running)"
            )
        );
        assert!(time.ends_with('Z') && time.len() == 9, "{time}");

        let mut fatal = item(
            "x@h",
            Phase::Opened,
            Cause::Crashed {
                generation: 6,
                exit: exit(Some(1), None, 200),
                state: AgentState::Fatal,
            },
        );
        assert_eq!(
            subject(vec![fatal.clone()]),
            "[zkwatchdog] FATAL x@h: gave up after 4 restarts, last exit code 1"
        );
        fatal.marker = None;
        assert_eq!(
            subject(vec![fatal]),
            "[zkwatchdog] FATAL x@h: gave up restarting, last exit code 1"
        );

        let bounced = item(
            "x@h",
            Phase::Opened,
            Cause::Bounced {
                from_generation: 3,
                to_generation: 5,
                exit: None,
            },
        );
        assert_eq!(
            subject(vec![bounced]),
            "[zkwatchdog] RESTARTED x@h while unobserved (generation 3 -> 5)"
        );

        let degraded = item(
            "x@h",
            Phase::Opened,
            Cause::Degraded {
                detail: "channel c1 is 97% full".into(),
            },
        );
        assert_eq!(
            subject(vec![degraded.clone()]),
            "[zkwatchdog] DEGRADED x@h: channel c1 is 97% full"
        );
        let still = NoticeItem {
            phase: Phase::Reminder,
            ..degraded
        };
        assert_eq!(
            subject(vec![still]),
            "[zkwatchdog] STILL DEGRADED x@h: channel c1 is 97% full"
        );
    }

    #[test]
    fn a_probe_restart_says_why_and_is_a_warning() {
        let mut stopped = exit(None, Some("SIGTERM"), 125_000);
        stopped.probe_restart = Some("CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)".into());
        let item = item(
            "flume@h",
            Phase::Opened,
            Cause::Crashed {
                generation: 3,
                exit: stopped,
                state: AgentState::Restarting,
            },
        );
        assert_eq!(item.cause.severity().as_str(), "warning");
        assert_eq!(
            subject(vec![item.clone()]),
            "[zkwatchdog] PROBE RESTART flume@h: restarted by its watchdog after failed health \
             probes (CHANNEL.c1 fill 93.2% > 80.0% (9320/10000)), stopped with SIGTERM after 2m05s"
        );
        let mut long = item.clone();
        long.cause = Cause::Degraded {
            detail: format!("connector c task 0 FAILED: {}", "x".repeat(500)),
        };
        let long = subject(vec![long]);
        assert!(
            long.len() <= 200 + "[zkwatchdog] ".len() && long.ends_with('…'),
            "{long}"
        );
        let body = render(&incidents(vec![item]), &origin(), "").text;
        assert!(body.contains("severity:    warning"), "{body}");
        assert!(
            body.contains("the agent's process was restarted by its watchdog"),
            "{body}"
        );
    }

    #[test]
    fn a_daemonized_launcher_is_fatal_and_the_body_names_the_fix() {
        let mut quit = exit(Some(0), None, 40);
        quit.stderr_tail.clear();
        quit.daemonized = Some(
            "the command daemonized: it returned exit code 0 after 40ms while 1 process of its \
             process group kept running (pid 4242); a daemon cannot be supervised, so zkwatchdog \
             stops them and gives up; run it in the foreground: e.g. kafka-server-start.sh \
             without -daemon, flume-ng agent without &, or `exec` in a wrapper script"
                .into(),
        );
        let mut item = item(
            "kafka@h",
            Phase::Opened,
            Cause::Crashed {
                generation: 1,
                exit: quit,
                state: AgentState::Fatal,
            },
        );
        item.marker = Some(marker("kafka@h", AgentState::Fatal));
        assert_eq!(item.cause.headline(), "FATAL");
        assert_eq!(item.cause.severity().as_str(), "critical");
        assert_eq!(
            subject(vec![item.clone()]),
            "[zkwatchdog] FATAL kafka@h: its command daemonized (exit code 0 after 40ms, leaving \
             processes running); run it in the foreground"
        );
        let rendered = render(&incidents(vec![item]), &origin(), "");
        for body in [&rendered.text, &rendered.markdown] {
            assert!(
                body.contains("kafka-server-start.sh without -daemon"),
                "{body}"
            );
            assert!(body.contains("pid 4242"), "{body}");
        }
        assert!(
            rendered.text.contains("it stays down until someone acts"),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn subjects_of_resolutions_and_reminders() {
        let mut recovered = crashed("x@h");
        recovered.phase = Phase::Resolved;
        recovered.resolved_at = Some(Timestamp(recovered.opened_at.0 + Duration::from_secs(12)));
        recovered.resolution = Some(Resolution::Recovered { generation: 7 });
        assert_eq!(
            subject(vec![recovered.clone()]),
            "[zkwatchdog] RECOVERED x@h: running again (generation 7) after 12s down"
        );

        let mut stopped = recovered.clone();
        stopped.resolution = Some(Resolution::Stopped);
        stopped.marker = None;
        assert_eq!(
            subject(vec![stopped.clone()]),
            "[zkwatchdog] RESOLVED x@h: stopped deliberately"
        );
        let text = render(&incidents(vec![stopped]), &origin(), "[zkwatchdog]").text;
        assert!(text.contains("marker:"), "{text}");
        assert!(text.contains("gone"), "{text}");

        let mut both = item(
            "x@h",
            Phase::OpenedAndResolved,
            Cause::Crashed {
                generation: 4,
                exit: exit(None, Some("SIGKILL"), 3_200),
                state: AgentState::Restarting,
            },
        );
        both.resolved_at = Some(ago(1));
        both.resolution = Some(Resolution::Recovered { generation: 5 });
        assert_eq!(
            subject(vec![both]),
            "[zkwatchdog] CRASHED and RECOVERED x@h: killed by SIGKILL after 3s; \
             running again (generation 5)"
        );

        let mut reminder = crashed("x@h");
        reminder.phase = Phase::Reminder;
        let s = subject(vec![reminder]);
        assert!(
            s.starts_with("[zkwatchdog] STILL DOWN CRASHED x@h: "),
            "{s}"
        );

        // A custom prefix, and none.
        let rendered = render(&incidents(vec![crashed("x@h")]), &origin(), "[prod]");
        assert!(rendered.subject.starts_with("[prod] CRASHED x@h"));
        let rendered = render(&incidents(vec![crashed("x@h")]), &origin(), "");
        assert!(rendered.subject.starts_with("CRASHED x@h"));
    }

    #[test]
    fn watcher_subjects() {
        let o = origin();
        let lost = Notice::ZkLost {
            since: ago(65),
            down_for: Duration::from_secs(65),
            trouble: ZkTrouble::Unreachable(Some("no available hosts".into())),
        };
        let r = render(&lost, &o, "[zkwatchdog]");
        assert_eq!(
            r.subject,
            "[zkwatchdog] WATCHER zkwatcher@w1 lost ZooKeeper zk1:2181,zk2:2181 for 1m05s: unreachable"
        );
        assert!(r.text.contains("no conclusions about agents"), "{}", r.text);
        assert!(r.text.contains("Cause: no available hosts\n"), "{}", r.text);
        assert!(r.text.contains("sent by zkwatcher on w1"));
        assert!(r.markdown.len() <= MARKDOWN_CAP);

        let back = Notice::ZkBack {
            since: ago(120),
            down_for: Duration::from_secs(120),
        };
        assert_eq!(
            render(&back, &o, "[zkwatchdog]").subject,
            "[zkwatchdog] WATCHER zkwatcher@w1 reconnected to ZooKeeper zk1:2181,zk2:2181 after 2m"
        );
        let test = render(&Notice::Test, &o, "[zkwatchdog]");
        assert_eq!(test.subject, "[zkwatchdog] TEST from zkwatcher@w1");
        assert!(test.text.contains("test message"));
    }

    /// The ACL explanation the watcher gets from `NodeAcls::denied` for its election node.
    const NOAUTH: &str = "zookeeper refused access to /zkwatchdog/watchers/n- (NoAuth): this \
        session is authenticated as digest:watcher:x (zk-auth.user \"watcher\" and its password), \
        but /zkwatchdog/watchers/n- or its parent /zkwatchdog/watchers belongs to another identity";

    fn zk_lost(trouble: ZkTrouble) -> Notice {
        Notice::ZkLost {
            since: ago(90),
            down_for: Duration::from_secs(90),
            trouble,
        }
    }

    #[test]
    fn a_refused_watcher_says_its_credentials_are_refused_not_that_zookeeper_is_down() {
        let r = render(
            &zk_lost(ZkTrouble::Refused(NOAUTH.into())),
            &origin(),
            "[zkwatchdog]",
        );
        assert_eq!(
            r.subject,
            "[zkwatchdog] WATCHER zkwatcher@w1 lost ZooKeeper zk1:2181,zk2:2181 for 1m30s: \
             credentials refused"
        );
        assert!(
            r.text.starts_with(
                "The watcher on w1 has been unable to work with ZooKeeper zk1:2181,zk2:2181 for \
                 1m30s: the servers answer, but refuse this watcher's credentials (since "
            ),
            "{}",
            r.text
        );
        assert!(r.text.contains(&format!("Cause: {NOAUTH}\n")), "{}", r.text);
        assert!(r.text.contains("[zk-auth] user and password"), "{}", r.text);
        assert!(!r.text.contains("disconnected"), "{}", r.text);
        assert!(!r.text.contains("ensemble and the network"), "{}", r.text);
        // DingTalk's markdown carries the cause too.
        assert!(
            r.markdown.contains("/zkwatchdog/watchers/n- (NoAuth)"),
            "{}",
            r.markdown
        );
    }

    #[test]
    fn a_tls_failure_names_the_zk_tls_key_to_fix() {
        let diagnosis = "127.0.0.1:2281: TLS handshake failed: the server's certificate is not \
                         trusted (invalid peer certificate: UnknownIssuer); zk-tls.ca-file must \
                         hold the CA that signed it";
        let r = render(
            &zk_lost(ZkTrouble::Tls(diagnosis.into())),
            &origin(),
            "[zkwatchdog]",
        );
        assert!(
            r.subject.ends_with("for 1m30s: TLS handshake fails"),
            "{}",
            r.subject
        );
        assert!(
            r.text.contains("the TLS handshake fails (since "),
            "{}",
            r.text
        );
        assert!(
            r.text.contains(&format!("Cause: {diagnosis}\n")),
            "{}",
            r.text
        );
        assert!(r.text.contains("[zk-tls] settings on w1"), "{}", r.text);
    }

    #[test]
    fn an_outage_without_a_client_error_has_no_cause_line() {
        let r = render(&zk_lost(ZkTrouble::Unreachable(None)), &origin(), "");
        assert_eq!(
            r.subject,
            "WATCHER zkwatcher@w1 lost ZooKeeper zk1:2181,zk2:2181 for 1m30s: unreachable"
        );
        assert!(
            r.text.contains("has been disconnected from ZooKeeper"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("Cause:"), "{}", r.text);
        assert!(
            r.text.contains("Check the ZooKeeper ensemble"),
            "{}",
            r.text
        );
    }

    #[test]
    fn grouped_subject_counts_the_worst_first() {
        let mut recovered = crashed("c@h");
        recovered.phase = Phase::Resolved;
        recovered.resolved_at = Some(ago(1));
        recovered.resolution = Some(Resolution::Recovered { generation: 6 });
        assert_eq!(
            subject(vec![recovered, crashed("a@h"), crashed("b@h")]),
            "[zkwatchdog] 3 agents: 2 CRASHED, 1 RECOVERED"
        );
    }

    #[test]
    fn fifty_lost_agents_are_all_listed() {
        let items: Vec<NoticeItem> = (0..50)
            .map(|i| lost(&format!("agent-{i:02}@rack7-host{i:02}"), ago(40)))
            .collect();
        let r = render(&incidents(items), &origin(), "[zkwatchdog]");
        assert_eq!(r.subject, "[zkwatchdog] 50 agents: 50 LOST");
        // The first 20 in full in the text, the other 30 on one line each.
        for i in 0..50 {
            let id = format!("agent-{i:02}@rack7-host{i:02}");
            let want = match i {
                0..20 => format!("\n  agent:       {id}\n"),
                _ => format!("\n- LOST {id}: no contact with its watchdog since "),
            };
            assert!(r.text.contains(&want), "{want:?} in text");
            assert!(r.markdown.contains(&id), "{id} in markdown");
        }
        assert!(r.text.contains("\nThe other 30 agents:\n- LOST agent-20@"));
        assert!(r.markdown.len() <= MARKDOWN_CAP, "{}", r.markdown.len());
        // One line per agent in markdown beyond 20 agents.
        assert_eq!(
            r.markdown.matches("\n- LOST ").count(),
            50,
            "{}",
            r.markdown
        );
    }

    #[test]
    fn huge_groups_are_capped_in_markdown_and_chat_text() {
        let items: Vec<NoticeItem> = (0..2000)
            .map(|i| crashed(&format!("kafka-connect-worker-{i:04}@dc1-host-{i:04}")))
            .collect();
        let notice = incidents(items);
        let r = render(&notice, &origin(), "[zkwatchdog]");
        assert!(r.markdown.len() <= MARKDOWN_CAP, "{}", r.markdown.len());
        assert!(r.markdown.contains("… and "), "capped with a count");
        assert!(
            r.markdown.contains("sent by zkwatcher on w1"),
            "footer kept"
        );
        // The text (email) keeps every agent.
        assert!(r.text.contains("kafka-connect-worker-1999@dc1-host-1999"));

        let chat = chat_text(&notice, &origin(), &r, "\n\n", 18_000);
        assert!(chat.len() <= 18_000);
        assert!(chat.starts_with("[zkwatchdog] 2000 agents: 2000 CRASHED\n\n"));
        assert!(chat.contains("… and "));

        // Detailed markdown (few agents) with long stderr lines is capped too.
        let mut big = crashed("x@h");
        if let Cause::Crashed { exit, .. } = &mut big.cause {
            exit.stderr_tail = vec!["y".repeat(5000); 50];
        }
        let r = render(&incidents(vec![big; 10]), &origin(), "[zkwatchdog]");
        assert!(r.markdown.len() <= MARKDOWN_CAP, "{}", r.markdown.len());
    }

    /// Every whitespace-separated word of `text`, without a trailing `:`.
    fn words(text: &str) -> std::collections::HashSet<&str> {
        text.split_whitespace()
            .map(|w| w.trim_end_matches(':'))
            .collect()
    }

    #[test]
    fn ten_thousand_lost_agents_are_one_bounded_message_naming_every_agent() {
        let ids: Vec<String> = (0..10_000)
            .map(|i| format!("flume-agent-{i:05}@rack-{:02}-host-{i:05}", i % 40))
            .collect();
        let items: Vec<NoticeItem> = ids.iter().map(|id| lost(id, ago(40))).collect();
        let r = render(&incidents(items), &origin(), "[zkwatchdog]");
        assert_eq!(r.subject, "[zkwatchdog] 10000 agents: 10000 LOST");
        assert!(r.text.len() <= TEXT_CAP, "{} bytes", r.text.len());
        eprintln!("10,000 lost agents: a text body of {} bytes", r.text.len());
        assert_eq!(r.unlisted, 0);
        let seen = words(&r.text);
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{} ids missing, e.g. {:?}",
            missing.len(),
            missing.first()
        );
        // The first agents in full, the others on one line or by id.
        assert_eq!(r.text.matches("\n  agent:       ").count(), 20);
        assert!(
            r.text.contains("The other 9980 agents:\n- LOST "),
            "compact lines"
        );
        assert!(r
            .text
            .contains(" more agents, by id (details: zkwatcher status):\n"));
        assert!(r.text.ends_with("sent by zkwatcher on w1\n"));
        // No line a mail server would refuse (998 bytes).
        assert!(r.text.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn a_thousand_java_stack_traces_are_trimmed_under_the_cap() {
        let trace: Vec<String> = (0..600)
            .map(|i| {
                format!(
                    "\tat org.apache.flume.channel.ChannelProcessor.put(CP.java:{i}) {}",
                    "x".repeat(50)
                )
            })
            .collect();
        let items: Vec<NoticeItem> = (0..1000)
            .map(|i| {
                let mut item = crashed(&format!("kafka-connect-{i:04}@dc1-{i:04}"));
                if let Cause::Crashed { exit, .. } = &mut item.cause {
                    exit.stderr_tail = trace.clone();
                    exit.stderr_tail.push("y".repeat(2000));
                }
                item
            })
            .collect();
        let r = render(&incidents(items), &origin(), "[zkwatchdog]");
        assert!(r.text.len() <= TEXT_CAP, "{} bytes", r.text.len());
        assert!(
            r.text.len() <= 400_000,
            "{} bytes: the tails dominate",
            r.text.len()
        );
        assert_eq!(r.unlisted, 0);
        let seen = words(&r.text);
        for i in 0..1000 {
            assert!(
                seen.contains(format!("kafka-connect-{i:04}@dc1-{i:04}").as_str()),
                "{i}"
            );
        }
        assert!(r
            .text
            .contains("stderr tail (generation 5, last 40 of 601 lines):"));
        assert!(
            r.text.contains(&format!("      {}…\n", "y".repeat(497))),
            "long lines cut"
        );
        assert!(r.text.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn ids_too_many_for_the_cap_are_counted_not_silently_dropped() {
        let items: Vec<NoticeItem> = (0..6000)
            .map(|i| lost(&format!("{i:05}-{}", "a".repeat(190)), ago(40)))
            .collect();
        let r = render(&incidents(items), &origin(), "[zkwatchdog]");
        assert!(r.text.len() <= TEXT_CAP, "{} bytes", r.text.len());
        assert!(r.unlisted > 0 && r.unlisted < 6000, "{}", r.unlisted);
        assert!(
            r.text.contains(&format!(
                "… and {} more agents not named here: the message reached its size limit",
                r.unlisted
            )),
            "{}",
            &r.text[r.text.len() - 500..]
        );
        // One agent alone, described on one line.
        let brief = render_brief(&incidents(vec![crashed("x@h")]), &origin(), "[zkwatchdog]");
        assert!(!brief.text.contains("stderr tail"), "{}", brief.text);
        assert!(
            brief.text.starts_with("- CRASHED x@h: killed by SIGKILL"),
            "{}",
            brief.text
        );
    }

    #[test]
    fn a_marker_conflict_is_one_line_in_every_format() {
        let mut item = lost("x@h", ago(30));
        if let Some(m) = item.marker.as_mut() {
            m.conflict = Some("liveness node replaced twice\nby session 0x9".into());
        }
        let rendered = render(&incidents(vec![item.clone()]), &origin(), "");
        let want = "liveness node replaced twice by session 0x9 (another watchdog configured \
                    with the same agent id?";
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains("CONFLICT"))
                .map(str::to_string)
                .collect()
        };
        for (format, text) in [("text", &rendered.text), ("markdown", &rendered.markdown)] {
            let found = lines(text);
            assert_eq!(found.len(), 1, "{format}: {text}");
            assert!(found[0].contains(want), "{format}: {found:?}");
        }
        assert!(compact_line(&item).contains("agent id CONFLICT"));
        // Without a conflict, nothing is said.
        let plain = render(&incidents(vec![lost("x@h", ago(30))]), &origin(), "");
        assert!(!plain.text.contains("CONFLICT"), "{}", plain.text);
        assert!(!plain.markdown.contains("CONFLICT"), "{}", plain.markdown);
    }

    #[test]
    fn lost_says_the_session_expired_and_the_agent_may_run_or_not() {
        let text = render(&incidents(vec![lost("x@h", ago(30))]), &origin(), "").text;
        for want in [
            "the watchdog's ZooKeeper session expired",
            "host down, watchdog killed or frozen, or network partition",
            "the agent may still be running, or may have exited or been given up on while its \
             watchdog could not reach ZooKeeper",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
    }

    #[test]
    fn body_tells_what_happened_and_how_to_inspect() {
        let mut crash = crashed("flume-nginx@host-a");
        crash.occurrences = 3;
        let r = render(&incidents(vec![crash]), &origin(), "[zkwatchdog]");
        let text = &r.text;
        for want in [
            "CRASHED flume-nginx@host-a: killed by SIGKILL after 3h12m\n",
            "agent:       flume-nginx@host-a",
            "host:        host-a",
            "kind:        flume",
            "killed by signal SIGKILL at ",
            "uptime:      3h12m",
            "restarts:    4",
            "generation:  5",
            "state now:   restarting",
            "occurrences: 3 while the incident was open",
            "the watchdog is restarting it",
            "      Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n",
            "zkCli.sh -server zk1:2181,zk2:2181 get /zkwatchdog/agents/flume-nginx@host-a",
            "zkCli.sh -server zk1:2181,zk2:2181 get /zkwatchdog/live/flume-nginx@host-a",
            "zkwatcher status --zk zk1:2181,zk2:2181 --root /zkwatchdog",
            "sent by zkwatcher on w1",
            " ago)",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(
            r.markdown.contains("java.lang.OutOfMemoryError"),
            "{}",
            r.markdown
        );
        assert!(r
            .markdown
            .contains("zkCli.sh -server zk1:2181,zk2:2181 get"));
        assert!(r
            .markdown
            .starts_with("#### [zkwatchdog] CRASHED flume-nginx@host-a"));

        // The resolution says when and how it came back.
        let mut back = crashed("flume-nginx@host-a");
        back.phase = Phase::Resolved;
        back.resolved_at = Some(ago(10));
        back.resolution = Some(Resolution::Recovered { generation: 6 });
        let text = render(&incidents(vec![back]), &origin(), "[zkwatchdog]").text;
        assert!(text.contains("back:        "), "{text}");
        assert!(
            text.contains("running again (generation 6) after 1m50s down"),
            "{text}"
        );
    }

    #[test]
    fn odd_ids_are_shell_quoted() {
        let mut o = origin();
        o.root = "/zk watchdog".into();
        let r = render(&incidents(vec![crashed("it's@h")]), &o, "[zkwatchdog]");
        assert!(
            r.text.contains(r"get '/zk watchdog/agents/it'\''s@h'"),
            "{}",
            r.text
        );
    }

    #[test]
    fn settings_never_print_secrets() {
        let email = EmailSettings {
            host: "mail".into(),
            port: 25,
            tls: EmailTls::StartTls,
            username: Some("alerts".into()),
            password: Some(Secret("smtp-pass-hunter2".into())),
            from: "a@example.com".into(),
            to: vec!["b@example.com".into()],
            ca_file: None,
            timeout: Duration::from_secs(10),
            subject_prefix: "[zkwatchdog]".into(),
        };
        let debug = format!("{email:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let hook = WebhookSettings {
            name: "dingtalk-1".into(),
            kind: WebhookKind::DingTalk,
            url: "https://oapi.dingtalk.com/robot/send?access_token=tok".into(),
            secret: Some(Secret("SEC-signing-hunter2".into())),
            timeout: Duration::from_secs(10),
            min_interval: Duration::from_secs(3),
        };
        let debug = format!("{hook:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}

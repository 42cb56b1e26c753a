//! Text from records, made harmless for chat services that render markup (DingTalk's Markdown,
//! which also takes HTML tags like `<font>`; Feishu's text, which takes `[text](url)` links and
//! `<at>` tags).
//!
//! Everything a watchdog publishes (host, signal, stderr tail, probe detail, agent id, command
//! line) can be written by anyone who can write to ZooKeeper or to the agent's stderr. Such text
//! must never turn into a link, an image or a tag in an alert: `[click](http://evil)` in a stderr
//! line has to arrive as text. Backslash escapes are not enough, because neither service
//! documents that it honours them; the characters that open links, images, tags and code spans
//! (`[ ] < > \``) are replaced by their full-width look-alikes instead, which no renderer reads as
//! markup and every reader still recognises. Line breaks inside one-line fields become spaces, so
//! that a field cannot start a heading or a list of its own.

use zkwatchdog::registry::{LastExit, Marker};

use crate::incident::Cause;
use crate::notice::{Notice, NoticeItem};

/// `s` with the markup-opening characters replaced by full-width look-alikes.
pub(crate) fn defang(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '[' => '［',
            ']' => '］',
            '<' => '＜',
            '>' => '＞',
            '`' => '｀',
            c => c,
        })
        .collect()
}

/// [`defang`], and every control character (line breaks, tabs) a space: for fields that are one
/// line in a message.
pub(crate) fn defang_line(s: &str) -> String {
    defang(s)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A copy of `notice` whose text from records is defanged: what the DingTalk and Feishu
/// renderings are made from. The agent id in a `zkCli.sh` command is defanged too (an id with
/// brackets is not copy-paste ready in chat; the email has it verbatim).
pub(crate) fn defang_notice(notice: &Notice) -> Notice {
    match notice {
        Notice::Incidents { items } => Notice::Incidents {
            items: items.iter().map(defang_item).collect(),
        },
        other => other.clone(),
    }
}

fn defang_item(item: &NoticeItem) -> NoticeItem {
    let mut item = item.clone();
    item.agent = defang_line(&item.agent);
    match &mut item.cause {
        Cause::Crashed { exit, .. } => defang_exit(exit),
        Cause::Bounced {
            exit: Some(exit), ..
        } => defang_exit(exit),
        Cause::Bounced { exit: None, .. } | Cause::Lost { .. } => {}
        // Multi-line on purpose (the first line is the summary, the rest is listed).
        Cause::Degraded { detail } => {
            *detail = detail
                .lines()
                .map(defang_line)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
    if let Some(marker) = &mut item.marker {
        defang_marker(marker);
    }
    item
}

fn defang_exit(exit: &mut LastExit) {
    for s in [
        &mut exit.signal,
        &mut exit.probe_restart,
        &mut exit.daemonized,
    ]
    .into_iter()
    .flatten()
    {
        *s = defang_line(s);
    }
    for line in &mut exit.stderr_tail {
        *line = defang_line(line);
    }
}

fn defang_marker(marker: &mut Marker) {
    for s in [
        &mut marker.id,
        &mut marker.name,
        &mut marker.host,
        &mut marker.version,
        &mut marker.session_id,
    ] {
        *s = defang_line(s);
    }
    for arg in &mut marker.command {
        *arg = defang_line(arg);
    }
    marker.labels = std::mem::take(&mut marker.labels)
        .into_iter()
        .map(|(k, v)| (defang_line(&k), defang_line(&v)))
        .collect();
    if let Some(exit) = &mut marker.last_exit {
        defang_exit(exit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_openers_become_look_alikes() {
        let cases = [
            ("plain text: ok (42%)", "plain text: ok (42%)"),
            ("[click](http://evil)", "［click］(http://evil)"),
            ("![x](http://evil/p.png)", "!［x］(http://evil/p.png)"),
            ("<font color=red>x</font>", "＜font color=red＞x＜/font＞"),
            ("<at user_id=\"all\">", "＜at user_id=\"all\"＞"),
            ("`code`", "｀code｀"),
            ("[1]: http://evil", "［1］: http://evil"),
            ("中文 é 😀", "中文 é 😀"),
        ];
        for (raw, want) in cases {
            assert_eq!(defang(raw), want, "{raw:?}");
        }
        assert_eq!(
            defang_line("host\n# title\r\n- [x](y)"),
            "host # title  - ［x］(y)"
        );
        assert_eq!(defang("a\nb"), "a\nb");
    }
}

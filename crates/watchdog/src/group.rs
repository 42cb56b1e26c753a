//! What is left of a process group once its leader (the child) has been reaped: the small I/O
//! helper behind the daemonize check and the wait for a daemon's leftovers to go. The decision
//! itself is pure ([`crate::supervisor::daemonized`]).
//!
//! A process that died but was not reaped yet (a zombie: its new parent, init or a subreaper,
//! has not waited for it) still counts for `killpg(pgid, 0)`, so members are read from
//! `/proc/<pid>/stat` and zombies are skipped.

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;

/// Pids of the live (not zombie) processes whose process group is `pgid`, in `/proc` order.
pub fn live_members(pgid: u32) -> Vec<u32> {
    // Fast path: no process at all has this group any more.
    if killpg(Pid::from_raw(pgid as i32), None) == Err(Errno::ESRCH) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc to tell zombies apart: trust the kernel's answer; the group id stands in for
        // the unknown pids.
        return vec![pgid];
    };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process that is gone by now is simply skipped.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some(s) = parse_stat(&stat) {
            if s.pgrp == pgid && s.alive() {
                members.push(s.pid);
            }
        }
    }
    members
}

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: u32,
    /// One letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub pgrp: u32,
}

impl Stat {
    /// Not a zombie and not dead: the process still runs (or sleeps, or is stopped).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `pid (comm) state ppid pgrp …`. The command name may hold spaces and parentheses, so
/// the fields after it are found after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { pid, state, pgrp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        assert_eq!(
            parse_stat("4242 (sleep) S 1 4240 4240 0 -1 4194560 95 0 0 0"),
            Some(Stat {
                pid: 4242,
                state: 'S',
                pgrp: 4240
            })
        );
        let odd = parse_stat("7 (a) b (c)) Z 1 9 9 0").expect("parses");
        assert_eq!((odd.pid, odd.state, odd.pgrp), (7, 'Z', 9));
        assert!(!odd.alive(), "a zombie is not alive");
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1").is_none());
    }

    #[test]
    fn members_of_a_live_group_are_found_and_a_gone_group_has_none() {
        // Our own group has at least this process in it.
        let own = nix::unistd::getpgrp().as_raw() as u32;
        assert!(!live_members(own).is_empty());
        // A group id no process has.
        assert!(live_members(u32::MAX / 2).is_empty());
    }
}

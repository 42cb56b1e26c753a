//! The generic probes' evaluators: an HTTP GET that should answer 2xx, a command that should
//! exit 0. Pure.

use super::{Check, Finding, Report};

/// An HTTP status line as reported (`503 Service Unavailable`).
pub fn status_text(code: u16, reason: Option<&str>) -> String {
    match reason {
        Some(r) if !r.is_empty() => format!("{code} {r}"),
        _ => code.to_string(),
    }
}

/// Evaluates the status of `GET url`: 2xx is healthy, anything else a finding.
pub fn http(url: &str, code: u16, reason: Option<&str>) -> Report {
    let status = status_text(code, reason);
    if (200..300).contains(&code) {
        Report {
            summary: format!("GET {url} answered {status}"),
            ..Report::default()
        }
    } else {
        Report {
            findings: vec![Finding::new(
                url,
                Check::BadAnswer,
                format!("GET {url} answered {status}"),
            )],
            ..Report::default()
        }
    }
}

/// How a probe command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEnd {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal (named).
    Signal(String),
    /// Could not be started.
    SpawnFailed(String),
}

/// Evaluates a probe command's end: exit 0 is healthy. `program` names it; `last_line` is the
/// last non-blank line it printed (stdout or stderr), quoted in a failure.
pub fn command(program: &str, end: &CommandEnd, last_line: Option<&str>) -> Report {
    let said = last_line
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!(": {}", super::truncate(l, 300)))
        .unwrap_or_default();
    let failed = |what: String| Report {
        findings: vec![Finding::new(
            program,
            Check::CommandFailed,
            format!("probe command {program} {what}{said}"),
        )],
        ..Report::default()
    };
    match end {
        CommandEnd::Code(0) => Report {
            summary: format!("probe command {program} exited 0"),
            ..Report::default()
        },
        CommandEnd::Code(code) => failed(format!("exited {code}")),
        CommandEnd::Signal(signal) => failed(format!("was killed by {signal}")),
        CommandEnd::SpawnFailed(why) => failed(format!("could not start ({why})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_2xx_is_healthy_anything_else_a_finding() {
        let ok = http("http://127.0.0.1:1/health", 204, Some("No Content"));
        assert!(ok.findings.is_empty());
        assert_eq!(
            ok.detail(),
            "GET http://127.0.0.1:1/health answered 204 No Content"
        );
        let bad = http(
            "http://127.0.0.1:1/health",
            503,
            Some("Service Unavailable"),
        );
        assert_eq!(
            bad.detail(),
            "GET http://127.0.0.1:1/health answered 503 Service Unavailable"
        );
        assert_eq!(bad.findings[0].check, Check::BadAnswer);
        assert_eq!(http("u", 302, None).detail(), "GET u answered 302");
    }

    #[test]
    fn command_exit_zero_is_healthy() {
        let ok = command("check.sh", &CommandEnd::Code(0), Some("fine"));
        assert!(ok.findings.is_empty());
        let bad = command("check.sh", &CommandEnd::Code(2), Some("  queue stuck \n"));
        assert_eq!(bad.detail(), "probe command check.sh exited 2: queue stuck");
        let killed = command("check.sh", &CommandEnd::Signal("SIGKILL".into()), None);
        assert_eq!(
            killed.detail(),
            "probe command check.sh was killed by SIGKILL"
        );
        let missing = command(
            "nope",
            &CommandEnd::SpawnFailed("No such file".into()),
            None,
        );
        assert_eq!(missing.findings[0].check, Check::CommandFailed);
    }
}

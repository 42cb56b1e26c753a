//! How a child process ended, as a typed value, and whether that counts as a success.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::sys::signal::Signal;

/// How a child ended: its own exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The child called `exit(code)`.
    Code(i32),
    /// The child was terminated by this signal number.
    Signal(i32),
}

impl From<ExitStatus> for ExitKind {
    fn from(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitKind::Code(code),
            (None, Some(signal)) => ExitKind::Signal(signal),
            // Neither a code nor a signal only happens for stopped/continued statuses, which
            // `wait` does not report for a reaped child; treat it as a failure.
            (None, None) => ExitKind::Code(-1),
        }
    }
}

impl ExitKind {
    /// True when this exit is a success under the configured success codes. A signal never is.
    pub fn is_success(&self, success_codes: &[i32]) -> bool {
        match self {
            ExitKind::Code(code) => success_codes.contains(code),
            ExitKind::Signal(_) => false,
        }
    }

    /// The exit code, if the child exited by itself.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitKind::Code(code) => Some(*code),
            ExitKind::Signal(_) => None,
        }
    }

    /// The signal's name (`SIGKILL`), if the child was killed by a signal.
    pub fn signal_name(&self) -> Option<String> {
        match self {
            ExitKind::Code(_) => None,
            ExitKind::Signal(n) => Some(signal_name(*n)),
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitKind::Code(code) => write!(f, "exit code {code}"),
            ExitKind::Signal(n) => write!(f, "killed by {}", signal_name(*n)),
        }
    }
}

/// The conventional name of a signal number (`SIGTERM`), or `SIG<n>` for ones nix does not name.
pub fn signal_name(n: i32) -> String {
    match Signal::try_from(n) {
        Ok(signal) => signal.as_str().to_string(),
        Err(_) => format!("SIG{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_status() {
        assert_eq!(
            ExitKind::from(ExitStatus::from_raw(3 << 8)),
            ExitKind::Code(3)
        );
        assert_eq!(ExitKind::from(ExitStatus::from_raw(9)), ExitKind::Signal(9));
    }

    #[test]
    fn success_policy() {
        assert!(ExitKind::Code(0).is_success(&[0]));
        assert!(!ExitKind::Code(1).is_success(&[0]));
        assert!(ExitKind::Code(143).is_success(&[0, 143]));
        assert!(!ExitKind::Signal(15).is_success(&[0, 143]));
    }

    #[test]
    fn display() {
        assert_eq!(ExitKind::Code(2).to_string(), "exit code 2");
        assert_eq!(ExitKind::Signal(9).to_string(), "killed by SIGKILL");
        assert_eq!(
            ExitKind::Signal(9).signal_name().as_deref(),
            Some("SIGKILL")
        );
        assert_eq!(signal_name(40), "SIG40");
    }
}

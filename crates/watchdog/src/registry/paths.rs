//! Znode paths of the registry and the validation of agent ids and the root.
//!
//! Nothing else in the workspace spells a registry path: both programs and every test go through
//! [`Layout`].

use std::fmt;

use thiserror::Error;

/// Longest agent id accepted, in bytes (the id is a single znode name).
pub const MAX_ID_LEN: usize = 200;

/// Default registry root.
pub const DEFAULT_ROOT: &str = "/zkwatchdog";

/// Why an id or a root path was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    #[error("id is empty")]
    EmptyId,
    #[error("id {0:?} is longer than {MAX_ID_LEN} bytes")]
    IdTooLong(String),
    #[error("id {0:?} contains '/'")]
    IdHasSlash(String),
    #[error("id {0:?} is reserved ('.' and '..' are not znode names)")]
    IdReserved(String),
    #[error("id {0:?} contains a non-printable character")]
    IdNotPrintable(String),
    #[error("root {0:?} must start with '/'")]
    RootNotAbsolute(String),
    #[error("root {0:?} must not end with '/' or contain empty, '.' or '..' components")]
    RootMalformed(String),
    #[error("root {0:?} contains a non-printable character")]
    RootNotPrintable(String),
}

/// A validated agent id: a single printable znode name of at most [`MAX_ID_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(String);

impl AgentId {
    /// Validates `id` as a single znode name.
    pub fn new(id: impl Into<String>) -> Result<Self, PathError> {
        let id = id.into();
        if id.is_empty() {
            return Err(PathError::EmptyId);
        }
        if id.len() > MAX_ID_LEN {
            return Err(PathError::IdTooLong(id));
        }
        if id.contains('/') {
            return Err(PathError::IdHasSlash(id));
        }
        if id == "." || id == ".." || id == "zookeeper" {
            return Err(PathError::IdReserved(id));
        }
        if !printable(&id) {
            return Err(PathError::IdNotPrintable(id));
        }
        Ok(AgentId(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Printable: no control characters, no whitespace other than a plain space, and not the
/// characters ZooKeeper rejects in paths (U+0000, U+D800–U+F8FF, U+FFF0–U+FFFF).
fn printable(s: &str) -> bool {
    s.chars().all(|c| {
        !c.is_control()
            && (c == ' ' || !c.is_whitespace())
            && !('\u{E000}'..='\u{F8FF}').contains(&c)
            && !('\u{FFF0}'..='\u{FFFF}').contains(&c)
    })
}

/// The registry layout under one root (DESIGN.md section 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// Validates `root`: absolute, no trailing slash, no empty/`.`/`..` components.
    pub fn new(root: &str) -> Result<Self, PathError> {
        if !root.starts_with('/') {
            return Err(PathError::RootNotAbsolute(root.to_string()));
        }
        if root == "/" {
            return Ok(Layout {
                root: String::new(),
            });
        }
        let malformed = root[1..]
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
        if malformed {
            return Err(PathError::RootMalformed(root.to_string()));
        }
        if !printable(root) {
            return Err(PathError::RootNotPrintable(root.to_string()));
        }
        Ok(Layout {
            root: root.to_string(),
        })
    }

    /// The root as configured (`/` for the top of the tree).
    pub fn root(&self) -> &str {
        if self.root.is_empty() {
            "/"
        } else {
            &self.root
        }
    }

    /// `<root>/agents`: the PERSISTENT markers.
    pub fn agents_dir(&self) -> String {
        format!("{}/agents", self.root)
    }

    /// `<root>/live`: the EPHEMERAL liveness nodes.
    pub fn live_dir(&self) -> String {
        format!("{}/live", self.root)
    }

    /// `<root>/incidents`: open incidents, written by the leading watcher.
    pub fn incidents_dir(&self) -> String {
        format!("{}/incidents", self.root)
    }

    /// `<root>/silences`: per-agent notification silences.
    pub fn silences_dir(&self) -> String {
        format!("{}/silences", self.root)
    }

    /// `<root>/watchers`: watcher leader election.
    pub fn watchers_dir(&self) -> String {
        format!("{}/watchers", self.root)
    }

    /// `<root>/agents/<id>`.
    pub fn marker(&self, id: &AgentId) -> String {
        format!("{}/agents/{}", self.root, id)
    }

    /// `<root>/live/<id>`.
    pub fn live(&self, id: &AgentId) -> String {
        format!("{}/live/{}", self.root, id)
    }

    /// `<root>/incidents/<id>`.
    pub fn incident(&self, id: &AgentId) -> String {
        format!("{}/incidents/{}", self.root, id)
    }

    /// `<root>/silences/<id>`.
    pub fn silence(&self, id: &AgentId) -> String {
        format!("{}/silences/{}", self.root, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(AgentId::new("flume-nginx@host-a").is_ok());
        assert!(AgentId::new("with space").is_ok());
        assert_eq!(AgentId::new(""), Err(PathError::EmptyId));
        assert!(matches!(AgentId::new("a/b"), Err(PathError::IdHasSlash(_))));
        assert!(matches!(AgentId::new("."), Err(PathError::IdReserved(_))));
        assert!(matches!(AgentId::new(".."), Err(PathError::IdReserved(_))));
        assert!(matches!(
            AgentId::new("a\nb"),
            Err(PathError::IdNotPrintable(_))
        ));
        assert!(matches!(
            AgentId::new("a\tb"),
            Err(PathError::IdNotPrintable(_))
        ));
        assert!(AgentId::new("x".repeat(200)).is_ok());
        assert!(matches!(
            AgentId::new("x".repeat(201)),
            Err(PathError::IdTooLong(_))
        ));
        // 200 bytes, not characters.
        assert!(AgentId::new("é".repeat(101)).is_err());
    }

    #[test]
    fn layout() {
        let l = Layout::new("/zkwatchdog").expect("valid root");
        let id = AgentId::new("a@h").expect("valid id");
        assert_eq!(l.marker(&id), "/zkwatchdog/agents/a@h");
        assert_eq!(l.live(&id), "/zkwatchdog/live/a@h");
        assert_eq!(l.incident(&id), "/zkwatchdog/incidents/a@h");
        assert_eq!(l.silence(&id), "/zkwatchdog/silences/a@h");
        assert_eq!(l.watchers_dir(), "/zkwatchdog/watchers");
        let top = Layout::new("/").expect("valid root");
        assert_eq!(top.marker(&id), "/agents/a@h");
        assert_eq!(top.root(), "/");
        assert!(Layout::new("/a/b").is_ok());
        assert!(Layout::new("a").is_err());
        assert!(Layout::new("/a/").is_err());
        assert!(Layout::new("/a//b").is_err());
        assert!(Layout::new("/a/../b").is_err());
    }
}

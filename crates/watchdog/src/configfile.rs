//! Config-file machinery both programs share: TOML with every unknown key named, problems
//! collected per key so that a file's mistakes are reported all at once, and duration parsing.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as written in the file (`restart.stop-timeout`).
    pub key: String,
    pub message: String,
}

/// Everything wrong with a configuration, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `command line` when no file was given.
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({}):", self.origin)?;
        for p in &self.problems {
            if p.key.is_empty() {
                write!(f, "\n  - {}", p.message)?;
            } else {
                write!(f, "\n  - {}: {}", p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads a TOML file into two records that each take part of it: a program's own keys (`A`)
/// and the keys both programs share (`B`, [`crate::config::zk::RawShared`]). A key is unknown
/// when neither takes it.
pub fn read_toml_split<A: DeserializeOwned, B: DeserializeOwned>(
    path: &Path,
) -> Result<(A, B, Vec<String>), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        problems: vec![Problem {
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse_toml_split(&text, &origin)
}

/// [`read_toml_split`] of TOML text; `origin` names it in errors.
pub fn parse_toml_split<A: DeserializeOwned, B: DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<(A, B, Vec<String>), ConfigError> {
    let (a, ignored_a) = deserialize::<A>(text);
    let (b, ignored_b) = deserialize::<B>(text);
    let unknown = ignored_by_both(&ignored_a, &ignored_b);
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b, unknown)),
        (a, b) => {
            // The same syntax error is found by both parses: say it once.
            let mut messages: Vec<String> = [a.err(), b.err()].into_iter().flatten().collect();
            messages.dedup();
            Err(failed(origin, unknown, messages))
        }
    }
}

/// The keys two parses of one text both left alone: each of them, or a table holding it, was
/// ignored by both (a program's record ignores the whole `[zk-tls]` table that the shared one
/// reads key by key).
fn ignored_by_both(a: &[String], b: &[String]) -> Vec<String> {
    let covered = |key: &str, by: &[String]| {
        by.iter().any(|s| {
            key == s
                || key
                    .strip_prefix(s.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    };
    let mut keys: Vec<String> = a
        .iter()
        .chain(b)
        .filter(|k| covered(k, a) && covered(k, b))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `T` from TOML text, and the keys (dotted) no field took; the error on one line.
fn deserialize<T: DeserializeOwned>(text: &str) -> (Result<T, String>, Vec<String>) {
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => return (Err(one_line(&e.to_string())), Vec::new()),
    };
    let mut ignored = Vec::new();
    let raw: Result<T, _> = serde_ignored::deserialize(de, |path| {
        // `?` segments stand for `Option`s; they are not part of the key a person wrote.
        let key = path.to_string();
        ignored.push(
            key.split('.')
                .filter(|s| *s != "?")
                .collect::<Vec<_>>()
                .join("."),
        );
    });
    (raw.map_err(|e| one_line(&e.to_string())), ignored)
}

fn failed(origin: &str, unknown: Vec<String>, messages: Vec<String>) -> ConfigError {
    let mut problems: Vec<Problem> = unknown.into_iter().map(unknown_key).collect();
    problems.extend(messages.into_iter().map(|message| Problem {
        key: String::new(),
        message,
    }));
    ConfigError {
        origin: origin.to_string(),
        problems,
    }
}

/// The problem reported for a key no setting has.
pub fn unknown_key(key: String) -> Problem {
    Problem {
        key,
        message: "unknown key".to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Longest duration accepted anywhere (100 years): longer ones would overflow the clock
/// arithmetic they feed (`Instant + d`, `SystemTime + d`) and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600); // humantime: 1y = 365.25 d

/// Parses a human-readable duration (`500ms`, `10s`, `1h 30m`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"500ms\", \"10s\", \"5m\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!("duration {text:?} is longer than 100 years"));
    }
    Ok(d)
}

/// Collects problems while validating.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Starts with one "unknown key" problem per key.
    pub fn with_unknown(keys: Vec<String>) -> Self {
        Problems(keys.into_iter().map(unknown_key).collect())
    }

    pub fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value, or `None` with the error recorded as a problem of `key`.
    pub fn check<T, E: fmt::Display>(&mut self, key: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(key, e.to_string())).ok()
    }

    /// Parses an optional value with `parse`, recording a problem on failure.
    pub fn parse<T>(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match value {
            None => default,
            Some(v) => match parse(v) {
                Ok(t) => t,
                Err(message) => {
                    self.add(key, message);
                    default
                }
            },
        }
    }

    /// The collected problems as an error for `origin`, or `Ok(())` when there are none.
    pub fn into_result(self, origin: &str) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                origin: origin.to_string(),
                problems: self.0,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Own {
        id: Option<String>,
        restart: Option<Table>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Shared {
        zk_hosts: Option<String>,
        zk_tls: Option<Table>,
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Table {
        ca_file: Option<String>,
    }

    #[test]
    fn a_file_split_between_two_records_names_the_keys_neither_takes() {
        let text = "zk-hosts = \"a\"\nbogus = 1\nid = \"x\"\n[zk-tls]\nca-file = \"c\"\nnope = 2\n\
                    [restart]\nca-file = \"q\"\nzzz = 3\n[whole]\nk = 1\n";
        let (own, shared, unknown) =
            parse_toml_split::<Own, Shared>(text, "f.toml").expect("parses");
        assert_eq!(own.id.as_deref(), Some("x"));
        assert_eq!(own.restart.and_then(|r| r.ca_file).as_deref(), Some("q"));
        assert_eq!(shared.zk_hosts.as_deref(), Some("a"));
        assert_eq!(shared.zk_tls.and_then(|t| t.ca_file).as_deref(), Some("c"));
        assert_eq!(unknown, ["bogus", "restart.zzz", "whole", "zk-tls.nope"]);

        // A wrong type is reported with where it is, once, with the unknown keys.
        let err = parse_toml_split::<Own, Shared>("zk-hosts = 5\nbogus = 1\n", "f.toml")
            .expect_err("a number for a string");
        let text = err.to_string();
        assert!(
            text.contains("f.toml") && text.contains("bogus: unknown key"),
            "{text}"
        );
        assert!(text.contains("line 1"), "{text}");
        // A syntax error, found by both parses, is said once.
        let err = parse_toml_split::<Own, Shared>("zk-hosts = \n", "f.toml").expect_err("no value");
        assert_eq!(err.problems.len(), 1, "{err}");
    }

    #[test]
    fn durations_beyond_a_century_are_refused_not_overflowed() {
        assert_eq!(parse_duration(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("100y").map(|_| ()), Ok(()));
        let err = parse_duration("580000000000y").expect_err("too long");
        assert!(err.contains("longer than 100 years"), "{err}");
        // What a caller does with an accepted duration must not overflow.
        let _ = std::time::Instant::now() + MAX_DURATION;
        let _ = std::time::SystemTime::now() + MAX_DURATION;
    }
}

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

/// Reads and parses a TOML file into `T`, returning the keys no field took.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<(T, Vec<String>), ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        problems: vec![Problem {
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse_toml(&text, &origin)
}

/// Parses TOML text into `T`; `origin` names it in errors. Unknown keys are returned (all of
/// them, by their dotted key) rather than failing, so that they are reported together with the
/// validation problems.
pub fn parse_toml<T: DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<(T, Vec<String>), ConfigError> {
    let fail = |problems| ConfigError {
        origin: origin.to_string(),
        problems,
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        fail(vec![Problem {
            key: String::new(),
            message: one_line(&e.to_string()),
        }])
    })?;
    let mut unknown = Vec::new();
    let raw: Result<T, _> = serde_ignored::deserialize(de, |path| {
        // `?` segments stand for `Option`s; they are not part of the key a person wrote.
        let key = path.to_string();
        unknown.push(
            key.split('.')
                .filter(|s| *s != "?")
                .collect::<Vec<_>>()
                .join("."),
        );
    });
    match raw {
        Ok(raw) => Ok((raw, unknown)),
        Err(e) => {
            let mut problems: Vec<Problem> = unknown.into_iter().map(unknown_key).collect();
            problems.push(Problem {
                key: String::new(),
                message: one_line(&e.to_string()),
            });
            Err(fail(problems))
        }
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

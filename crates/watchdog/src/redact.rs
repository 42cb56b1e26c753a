//! Redaction of secrets in what leaves the watchdog: the command line and the exit record
//! published in the marker, the health details of the liveness node (Connect traces, probe
//! findings), and the log lines that quote them. Records are readable by any ZooKeeper client
//! and are copied into incidents, logs, emails and chat, so a password given on a command line
//! or printed by a failing agent must not get there.
//!
//! Built in: the value of every argument or property whose name says `password`, `passwd`,
//! `secret`, `token`, `key`, `credential` or is `sasl.jaas.config`, in the forms
//! `--password x` (two arguments), `--password=x`, `-Dfoo.password=x`, `password=x` or
//! `password: x` in a line, `"password": "x"` (JSON), and the password of a URL
//! (`scheme://user:pass@host`). Extra patterns come from the config (`redact-patterns`): each
//! match is replaced, or only its first capture group when it has one.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What a redacted value is replaced with.
pub const MASK: &str = "***";

/// A name that says its value is secret (a flag, a property, a JSON key), as a regex fragment.
const NAME: &str =
    r"[A-Za-z0-9_.\-]*(?:password|passwd|secret|token|key|credential)[A-Za-z0-9_.\-]*";

/// `sasl.jaas.config=…` up to the `;` that ends a JAAS entry (the value has spaces).
static JAAS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(sasl\.jaas\.config["']?\s*[=:]\s*)[^;\n]*"#).expect("a valid regex")
});

/// `"password": "x"`.
static JSON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r#"(?i)("{NAME}"\s*:\s*)"(?:[^"\\]|\\.)*""#)).expect("a valid regex")
});

/// `password=x`, `--password=x`, `-Dfoo.password=x`, `password: x`, with a quoted or a bare
/// value (a bare one ends at white space, `,`, `;` or `&`).
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)({NAME}\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&"']+)"#
    ))
    .expect("a valid regex")
});

/// `scheme://user:password@host`.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([a-z][a-z0-9+.\-]*://[^/\s:@]*):([^/\s@]+)@").expect("a valid regex")
});

/// A flag whose value is the next argument: `--password`, `-token`.
static SECRET_FLAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)^-{{1,2}}{NAME}$")).expect("a valid regex"));

/// The redaction rules: the built-in ones plus the configured extra patterns.
#[derive(Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns: Vec<&str> = self.extra.iter().map(Regex::as_str).collect();
        f.debug_struct("Redactor")
            .field("extra", &patterns)
            .finish()
    }
}

impl PartialEq for Redactor {
    fn eq(&self, other: &Self) -> bool {
        self.extra.len() == other.extra.len()
            && self
                .extra
                .iter()
                .zip(&other.extra)
                .all(|(a, b)| a.as_str() == b.as_str())
    }
}

impl Eq for Redactor {}

impl Redactor {
    /// The built-in rules plus `extra` patterns; the first pattern that is not a valid regular
    /// expression is returned with the parser's message.
    pub fn new(extra: &[String]) -> Result<Self, (String, String)> {
        let extra = extra
            .iter()
            .map(|p| Regex::new(p).map_err(|e| (p.clone(), one_line(&e.to_string()))))
            .collect::<Result<_, _>>()?;
        Ok(Redactor { extra })
    }

    /// Redacts one line of text (a stderr line, a health detail, one argument).
    pub fn text(&self, text: &str) -> String {
        let mut out: Cow<'_, str> = Cow::Borrowed(text);
        for rule in [&*JAAS, &*JSON, &*ASSIGNMENT] {
            if let Cow::Owned(s) = rule.replace_all(&out, |c: &Captures<'_>| {
                let mut kept = c[1].to_string();
                if rule.as_str() == JSON.as_str() {
                    kept.push('"');
                    kept.push_str(MASK);
                    kept.push('"');
                } else {
                    kept.push_str(MASK);
                }
                kept
            }) {
                out = Cow::Owned(s);
            }
        }
        if let Cow::Owned(s) = URL_PASSWORD.replace_all(&out, format!("${{1}}:{MASK}@").as_str()) {
            out = Cow::Owned(s);
        }
        for rule in &self.extra {
            if let Cow::Owned(s) = rule.replace_all(&out, |c: &Captures<'_>| match c.get(1) {
                // Only the first group is secret: keep the rest of the match.
                Some(group) => {
                    let whole = c.get(0).expect("group 0 always matches");
                    let mut kept = whole.as_str()[..group.start() - whole.start()].to_string();
                    kept.push_str(MASK);
                    kept.push_str(&whole.as_str()[group.end() - whole.start()..]);
                    kept
                }
                None => MASK.to_string(),
            }) {
                out = Cow::Owned(s);
            }
        }
        out.into_owned()
    }

    /// Redacts a command line: every argument as text, and the argument after a flag whose
    /// name says secret (`--password x`).
    pub fn command(&self, args: &[String]) -> Vec<String> {
        let mut out = Vec::with_capacity(args.len());
        let mut secret_next = false;
        for arg in args {
            if secret_next {
                out.push(MASK.to_string());
                secret_next = false;
                continue;
            }
            secret_next = SECRET_FLAG.is_match(arg);
            out.push(self.text(arg));
        }
        out
    }

    /// Redacts every line.
    pub fn lines(&self, lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| self.text(l)).collect()
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_rules() {
        let r = Redactor::default();
        let cases = [
            ("--password=hunter2", "--password=***"),
            (
                "-Dssl.keystore.password=hunter2",
                "-Dssl.keystore.password=***",
            ),
            ("password=hunter2 user=bob", "password=*** user=bob"),
            ("db_password: hunter2, next", "db_password: ***, next"),
            ("API_TOKEN='a b c' rest", "API_TOKEN=*** rest"),
            (r#"client.secret="x y""#, "client.secret=***"),
            (
                r#"{"password": "hu\"nter2", "user": "bob"}"#,
                r#"{"password": "***", "user": "bob"}"#,
            ),
            (
                r#"{"aws_secret_access_key":"abc"}"#,
                r#"{"aws_secret_access_key":"***"}"#,
            ),
            (
                "jdbc:postgresql://bob:hunter2@db:5432/x",
                "jdbc:postgresql://bob:***@db:5432/x",
            ),
            (
                "http://bob:hunter2@h/p?token=abc&x=1",
                "http://bob:***@h/p?token=***&x=1",
            ),
            (
                r#"sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";"#,
                "sasl.jaas.config=***;",
            ),
            ("credentials=abc", "credentials=***"),
            (
                "Caused by: java.io.IOException: no such file",
                "Caused by: java.io.IOException: no such file",
            ),
            ("nothing secret here", "nothing secret here"),
            ("http://h:8083/connectors", "http://h:8083/connectors"),
        ];
        for (input, want) in cases {
            assert_eq!(r.text(input), want, "{input}");
        }
    }

    #[test]
    fn command_lines() {
        let r = Redactor::default();
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: [(&[&str], &[&str]); 5] = [
            (
                &["app", "--password", "hunter2", "--port", "1"],
                &["app", "--password", "***", "--port", "1"],
            ),
            (&["app", "-token", "abc"], &["app", "-token", "***"]),
            (&["app", "--password=hunter2"], &["app", "--password=***"]),
            (
                &["java", "-Dfoo.secret=s", "-cp", "x.jar"],
                &["java", "-Dfoo.secret=***", "-cp", "x.jar"],
            ),
            (&["app", "--api-key"], &["app", "--api-key"]),
        ];
        for (input, want) in cases {
            assert_eq!(r.command(&args(input)), args(want), "{input:?}");
        }
    }

    #[test]
    fn extra_patterns_mask_the_match_or_its_first_group() {
        let r = Redactor::new(&["AKIA[0-9A-Z]{16}".to_string(), r"pin (\d+)".to_string()])
            .expect("valid");
        assert_eq!(
            r.text("id AKIAABCDEFGHIJKLMNOP and pin 1234 ok"),
            "id *** and pin *** ok"
        );
        let (pattern, error) = Redactor::new(&["(".to_string()]).expect_err("invalid");
        assert_eq!(pattern, "(");
        assert!(!error.contains('\n') && !error.is_empty(), "{error}");
    }
}

//! Logging set-up shared by both programs: human-readable lines (the default) or one JSON
//! object per line (`--log-format json`), with the agent id as a top-level `"agent"` key on
//! every line a watchdog writes, the child's stderr lines included.
//!
//! The agent id is injected by the formatter itself rather than through a span, so that events
//! from tasks that never entered a span (the registry publisher, the probe driver, the
//! ZooKeeper client's own warnings) carry it too.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `tracing`'s usual one-line text format (ANSI colours on a terminal).
    #[default]
    Human,
    /// One JSON object per line: `timestamp`, `level`, `target`, `agent` (watchdog), `message`
    /// and the event's fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected human or json)"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        })
    }
}

/// What [`init`] chose, for the parts of the program that write to stderr themselves.
#[derive(Debug)]
struct Chosen {
    format: LogFormat,
    agent: Option<String>,
}

static CHOSEN: OnceLock<Chosen> = OnceLock::new();

/// The default filter of both programs: `info`, and only warnings from the ZooKeeper client.
pub const DEFAULT_FILTER: &str = "info,zookeeper_client=warn";

/// Installs the global subscriber, writing to stderr. `filter_env` names the environment
/// variable holding an `EnvFilter` directive (e.g. `ZKWATCHDOG_LOG`); `agent` is put on every
/// JSON line. Calling it twice keeps the first set-up.
pub fn init(format: LogFormat, filter_env: &str, agent: Option<&str>) {
    let filter =
        EnvFilter::try_from_env(filter_env).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let chosen = Chosen {
        format,
        agent: agent.map(str::to_string),
    };
    if CHOSEN.set(chosen).is_err() {
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonLines {
                agent: agent.map(str::to_string),
            })
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("cannot set up logging: {e}");
    }
}

/// The format chosen by [`init`] ([`LogFormat::Human`] before it ran).
pub fn format() -> LogFormat {
    CHOSEN.get().map(|c| c.format).unwrap_or_default()
}

/// How both programs say why they exit (or warn before they run): `PROGRAM: reason` on stderr
/// with human logs, an error event with JSON logs (a log shipper sees it like any other line).
pub fn say(program: &str, reason: &str) {
    match format() {
        LogFormat::Human => eprintln!("{program}: {reason}"),
        LogFormat::Json => tracing::error!("{reason}"),
    }
}

/// `e` and every cause under it: "error: cause: cause". A cause whose text the line already
/// holds (an error that prints its source itself) is not repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// One line the child wrote to `stream`, as the JSON log line to write in its place (with a
/// trailing newline), or `None` in human mode, where the child's bytes pass through unchanged.
/// `partial` marks a piece of a line longer than the pass-through buffer.
pub fn child_line(stream: &str, line: &str, partial: bool) -> Option<String> {
    let chosen = CHOSEN.get()?;
    if chosen.format != LogFormat::Json {
        return None;
    }
    let mut fields = vec![
        ("stream".to_string(), Value::String(stream.into())),
        ("line".to_string(), Value::String(line.into())),
    ];
    if partial {
        fields.push(("partial".into(), Value::Bool(true)));
    }
    let mut text = object("INFO", "child", chosen.agent.as_deref(), fields);
    text.push('\n');
    Some(text)
}

fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// One JSON object, keys in a fixed order: `timestamp`, `level`, `target`, `agent`, then the
/// fields as recorded (a repeated key keeps its last value, in its first place).
fn object(level: &str, target: &str, agent: Option<&str>, fields: Vec<(String, Value)>) -> String {
    let mut entries: Vec<(String, Value)> = vec![
        ("timestamp".into(), Value::String(now())),
        ("level".into(), Value::String(level.into())),
        ("target".into(), Value::String(target.into())),
    ];
    if let Some(agent) = agent {
        entries.push(("agent".into(), Value::String(agent.into())));
    }
    for (key, value) in fields {
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => entries.push((key, value)),
        }
    }
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The JSON event formatter: flat objects, the agent id at the top level.
#[derive(Debug)]
struct JsonLines {
    agent: Option<String>,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Vec::new();
        event.record(&mut Fields(&mut fields));
        let line = object(
            meta.level().as_str(),
            meta.target(),
            self.agent.as_deref(),
            fields,
        );
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields into the JSON object, keeping numbers and booleans typed.
struct Fields<'a>(&'a mut Vec<(String, Value)>);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        // The formatter's own keys are not overwritten by a field of the same name; `agent` is
        // not reserved: an event about an agent names it (the watcher), and a watchdog's events
        // name its own.
        let name = field.name();
        let key = match name {
            "timestamp" | "level" | "target" => format!("field.{name}"),
            _ => name.to_string(),
        };
        self.0.push((key, value));
    }
}

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string()));
        self.put(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.into()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|l| l as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_is_said_with_every_cause_once() {
        let io = Layer("No such file or directory (os error 2)", None);
        let ca = Layer("email.ca-file /etc/ca.pem", Some(Box::new(io)));
        assert_eq!(
            chain(&Layer("cannot build the email channel", Some(Box::new(ca)))),
            "cannot build the email channel: email.ca-file /etc/ca.pem: No such file or directory (os error 2)"
        );
        // An error that prints its cause itself does not get it twice.
        let inner = Layer("connection refused", None);
        let outer = Layer("cannot connect: connection refused", Some(Box::new(inner)));
        assert_eq!(chain(&outer), "cannot connect: connection refused");
    }

    #[test]
    fn formats_parse_and_print() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("human".parse::<LogFormat>(), Ok(LogFormat::Human));
        let err = "xml".parse::<LogFormat>().expect_err("unknown");
        assert!(err.contains("xml"), "{err}");
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn json_events_are_flat_objects_with_the_agent() {
        use tracing_subscriber::layer::SubscriberExt;
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(JsonLines {
                agent: Some("a@h".into()),
            })
            .with_writer(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(pid = 7u32, ok = true, level = "x", error = %"boom", "child exited");
        });
        let text = String::from_utf8(buf.lock().expect("lock").clone()).expect("utf-8");
        let v: Value = serde_json::from_str(text.trim_end()).expect("one JSON object");
        assert_eq!(v["agent"], "a@h");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "child exited");
        assert_eq!(v["pid"], 7);
        assert_eq!(v["ok"], true);
        assert_eq!(v["error"], "boom");
        assert_eq!(v["field.level"], "x");
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        let order: Vec<usize> = [
            "\"level\"",
            "\"target\"",
            "\"agent\"",
            "\"message\"",
            "\"pid\"",
        ]
        .iter()
        .map(|k| text.find(k).expect("key present"))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

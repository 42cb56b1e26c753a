//! Config loading (`parse_raw` + `validate`): arbitrary text and generated documents built from
//! the real key names with random values and types never panic, and every error names a key or
//! the file.

use proptest::prelude::*;
use zkwatchdog::config::parse_raw;
use zkwatchdog::configfile::ConfigError;

const ORIGIN: &str = "/etc/zkwatchdog/prop.toml";

const TOP: &[&str] = &[
    "zk-hosts",
    "root",
    "session-timeout",
    "id",
    "name",
    "kind",
    "command",
    "labels",
    "stderr-tail-lines",
    "child-outlives-watchdog",
    "log-format",
    "metrics-addr",
];
const RESTART: &[&str] = &[
    "policy",
    "success-codes",
    "stable-after",
    "stop-signal",
    "stop-timeout",
    "backoff-initial",
    "backoff-max",
    "backoff-jitter",
    "max-restarts",
    "restart-window",
];
const ZK_AUTH: &[&str] = &["scheme", "user", "password-env", "password-file", "admin"];
const ZK_TLS: &[&str] = &["ca-file", "cert-file", "key-file"];
const PROBE: &[&str] = &[
    "kind",
    "url",
    "command",
    "interval",
    "timeout",
    "start-grace",
    "channel-fill-threshold",
    "stalled-after",
    "restart-failed-tasks",
    "task-restart-initial",
    "task-restart-max",
    "task-restart-limit",
    "restart-after-failures",
    "worker-id",
    "username",
    "password-env",
    "password-file",
    "ca-file",
];

/// Values that are plausible for some key and wrong for others.
fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(toml::Value::String),
        proptest::sample::select(vec![
            "json",
            "human",
            "JSON",
            "10s",
            "0s",
            "-1s",
            "500ms",
            "1000000000y",
            "580000000000y",
            "SIGTERM",
            "KILL",
            "99",
            "flume",
            "kafka-connect",
            "generic",
            "http",
            "command",
            "always",
            "on-failure",
            "never",
            "http://127.0.0.1:1/metrics",
            "ftp://x",
            "/zkwatchdog",
            "/",
            "a/b",
            "",
            "127.0.0.1:2181",
            "0.0.0.0:9464",
            "[::1]:0",
            "localhost:9464",
            "digest",
            "sasl",
            "admin:x1nq8J5GOJVPY6zgBh+o9nGwGqU=",
            "PATH",
            "/etc/hostname",
        ])
        .prop_map(|s| toml::Value::String(s.to_string())),
        any::<i64>().prop_map(toml::Value::Integer),
        (-5i64..5).prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::btree_map("[a-z-]{1,8}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

fn entries(keys: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, toml::Value)>> {
    proptest::collection::vec(
        (
            prop_oneof![
                9 => proptest::sample::select(keys).prop_map(str::to_string),
                1 => "[a-z-]{1,10}",
            ],
            toml_value(),
        ),
        0..6,
    )
}

/// A TOML document: top-level keys, maybe `[restart]`, `[probe]`, `[zk-auth]` and `[zk-tls]`
/// tables (or a key of that name with a scalar value). The `[zk-auth]` and `[zk-tls]` values
/// name environment variables and files, so those paths (reading the environment, reading
/// and parsing PEM files) run too.
fn document() -> impl Strategy<Value = String> {
    (
        entries(TOP),
        proptest::option::of(entries(RESTART)),
        proptest::option::of(entries(PROBE)),
        proptest::option::of(entries(ZK_AUTH)),
        proptest::option::of(entries(ZK_TLS)),
    )
        .prop_map(|(top, restart, probe, zk_auth, zk_tls)| {
            let mut doc = toml::Table::new();
            for (k, v) in top {
                doc.insert(k, v);
            }
            for (name, table) in [
                ("restart", restart),
                ("probe", probe),
                ("zk-auth", zk_auth),
                ("zk-tls", zk_tls),
            ] {
                if let Some(entries) = table {
                    doc.insert(
                        name.to_string(),
                        toml::Value::Table(entries.into_iter().collect()),
                    );
                }
            }
            toml::to_string(&doc).unwrap_or_default()
        })
}

/// Every problem names a key, or (a TOML syntax or type error) carries a message that locates
/// it; the error names the file.
fn check_error(e: &ConfigError, text: &str) {
    assert_eq!(e.origin, ORIGIN);
    assert!(e.to_string().contains(ORIGIN), "{e}");
    assert!(!e.problems.is_empty(), "an error with no problem: {e}");
    for p in &e.problems {
        assert!(!p.message.trim().is_empty(), "empty message in {e}");
        if p.key.is_empty() {
            // Parse errors from the toml crate say where: a line/column or the key.
            let located = p.message.contains("line")
                || p.message.contains('`')
                || p.message.contains("key")
                || p.message.contains("cannot read");
            assert!(
                located,
                "a problem that says neither key nor place: {p:?}\n{text}"
            );
        }
    }
}

fn load(text: &str) {
    match parse_raw(text, ORIGIN) {
        Ok(raw) => {
            if let Err(e) = raw.validate(ORIGIN, true) {
                check_error(&e, text);
            }
        }
        Err(e) => check_error(&e, text),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        load(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in "([a-z-]{1,12} = (\"[a-z0-9 ]{0,8}\"|[0-9-]{1,4}|true|\\[[0-9, ]{0,6}\\])\n|\\[(restart|probe)\\]\n){0,8}") {
        load(&text);
    }

    #[test]
    fn generated_documents_never_panic_and_errors_name_keys(doc in document()) {
        load(&doc);
    }
}
